//! Starting a sandbox: the front's side ([`run_sandbox`]), and the first steps of the gofer
//! ([`gofer_main`]) and of the kernel ([`kernel_main`]) in their new namespaces.
//!
//! The kernel process finds what the front hands it at fixed fd numbers: 0-2 its stdio (the
//! caller's, donated to the application), [`KERNEL_GOFER_FD`] its end of the gofer's socket,
//! [`KERNEL_SPEC_FD`] a pipe carrying the [`KernelSpec`], and
//! [`KERNEL_LOG_FD`] the debug log, opened by the front (the kernel could not open it later).
//! [`KERNEL_CONTROL_FD`] is a `SOCK_SEQPACKET` socket to the front carrying [`Message`]s:
//! host signals and `start` to the kernel; the program's start, failure and exit back.

use std::ffi::{CStr, CString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use moat_kernel::inspect::{Inspect, ProcessEntry, SandboxStats};
use moat_kernel::{
    ExecCall, ExitStatus, HostSignal, KernelError, LoadError, SandboxConfig, SignalTarget,
};
use rustix::process::{Pid, WaitOptions};

use crate::confine::{self, Served};
use crate::control::{self, Message, Status};
use crate::seccomp::{self, Refusal};
use crate::spec::{Confinement, KernelSpec};
use crate::RuntimeError;

pub const KERNEL_GOFER_FD: i32 = 3;
pub const KERNEL_SPEC_FD: i32 = 4;
pub const KERNEL_CONTROL_FD: i32 = 5;
pub const KERNEL_LOG_FD: i32 = 6;
/// The packet socket on the external interface (`--network=sandbox`), when there is one.
pub const KERNEL_NET_FD: i32 = 7;

/// Exit codes, following the shell: 126 found but cannot run, 127 not found, 125 Moat failed.
pub const EXIT_CANNOT_RUN: u8 = 126;
pub const EXIT_NOT_FOUND: u8 = 127;
pub const EXIT_MOAT_FAILED: u8 = 125;

/// Host signals the front passes on to the sandbox's init: ^C, `kill`, a hang-up.
const FORWARDED_SIGNALS: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGWINCH,
];

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("moat: {msg}");
    ExitCode::from(code)
}

/// A running sandbox, as the front sees it: the host pids of its kernel and gofer.
#[derive(Debug)]
pub struct Sandbox {
    pub kernel: Pid,
    pub gofer: Pid,
}

fn cstring(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref().to_vec()).unwrap_or_else(|_| c"?".to_owned())
}

fn confinement_arg(c: Confinement) -> &'static str {
    match c {
        Confinement::Full => "full",
        Confinement::LogSeccomp => "log-seccomp",
        Confinement::None => "none",
    }
}

/// Parse the gofer's `--confine` argument.
pub fn parse_confinement(arg: &str) -> Option<Confinement> {
    match arg {
        "full" => Some(Confinement::Full),
        "log-seccomp" => Some(Confinement::LogSeccomp),
        "none" => Some(Confinement::None),
        _ => None,
    }
}

/// Start a sandbox process (`moat gofer`, `moat kernel`) in fresh namespaces; with
/// `host_network` it stays in the host's network namespace (the kernel of a
/// `--network=host` sandbox).
fn spawn(
    args: &[&str],
    confinement: Confinement,
    host_network: bool,
    fds: Vec<(std::os::fd::BorrowedFd<'_>, i32)>,
) -> Result<Pid, RuntimeError> {
    let euid = rustix::process::geteuid();
    let unprivileged = !euid.is_root();
    let argv: Vec<CString> = std::iter::once("moat")
        .chain(args.iter().copied())
        .map(cstring)
        .collect();
    // Nothing of the caller's environment: the application's travels in the spec. Moat's
    // own debugging and tuning variables do pass: the systrap platform reads its tuning in
    // the kernel process. (Not `MOAT_SYSTRAP_DISPATCH`: a confined kernel needs Syscall User
    // Dispatch in its stubs, see `moat_platform::systrap`.)
    const PASSED: &[&str] = &[
        "RUST_BACKTRACE",
        "RUST_LOG",
        "MOAT_SYSTRAP_PATCH",
        "MOAT_SYSTRAP_PIN",
        "MOAT_SYSTRAP_SPIN_US",
        "MOAT_SYSTRAP_STATS",
    ];
    let envp: Vec<CString> = PASSED
        .iter()
        .filter_map(|k| {
            std::env::var_os(k).map(|v| cstring([k.as_bytes(), b"=", v.as_bytes()].concat()))
        })
        .collect();
    let confined = confinement != Confinement::None;
    let pid = moat_platform::confine::spawn(&moat_platform::confine::Spawn {
        program: c"/proc/self/exe",
        argv: &argv,
        envp: &envp,
        namespaces: if confined && host_network {
            confine::namespaces(unprivileged) & !libc::CLONE_NEWNET
        } else if confined {
            confine::namespaces(unprivileged)
        } else {
            0
        },
        map_root_to: (confined && unprivileged)
            .then(|| (euid.as_raw(), rustix::process::getegid().as_raw())),
        fds,
    })
    .map_err(RuntimeError::io("starting a sandbox process"))?;
    Pid::from_raw(pid).ok_or(RuntimeError::Spec("no pid"))
}

/// Wait for host process `pid` (a child of ours) to end.
/// `None` if it is not ours to wait for (cannot happen).
fn wait(pid: Pid) -> Option<rustix::process::WaitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Some(status),
            Err(rustix::io::Errno::INTR) | Ok(None) => {}
            Err(_) => return None,
        }
    }
}

/// Start the gofer for `served` and the kernel for `spec` (which the kernel reads at once).
/// Returns the sandbox's pids and the front's end of the control socket.
pub fn start_sandbox(
    spec: &KernelSpec,
    served: &[Served],
    log: Option<OwnedFd>,
    net: Option<OwnedFd>,
) -> Result<(Sandbox, OwnedFd), RuntimeError> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let pair = || {
        socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| RuntimeError::io("creating a socket pair")(e.into()))
    };
    let (ours, theirs) = pair()?;
    let null = std::fs::File::open("/dev/null").map_err(RuntimeError::io("opening /dev/null"))?;
    let mut gofer_args = vec!["gofer", "--confine", confinement_arg(spec.confinement)];
    let mounts: Vec<String> = served
        .iter()
        .map(|s| {
            let path = s.host_path.to_string_lossy().into_owned();
            if s.read_only {
                format!("{path}:ro")
            } else {
                path
            }
        })
        .collect();
    for m in &mounts {
        gofer_args.extend(["--mount", m.as_str()]);
    }
    let gofer = spawn(
        &gofer_args,
        spec.confinement,
        false,
        vec![(theirs.as_fd(), 0), (null.as_fd(), 1)],
    )?;
    drop(theirs);

    let (spec_r, spec_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RuntimeError::io("creating a pipe")(e.into()))?;
    let (control, control_kernel) = pair()?;
    let mut fds = vec![
        (ours.as_fd(), KERNEL_GOFER_FD),
        (spec_r.as_fd(), KERNEL_SPEC_FD),
        (control_kernel.as_fd(), KERNEL_CONTROL_FD),
    ];
    if let Some(log) = &log {
        fds.push((log.as_fd(), KERNEL_LOG_FD));
    }
    let host_network = spec.network == moat_kernel::NetworkMode::Host;
    if let Some(net) = &net {
        fds.push((net.as_fd(), KERNEL_NET_FD));
    }
    let kernel = match spawn(&["kernel"], spec.confinement, host_network, fds) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = rustix::process::kill_process(gofer, rustix::process::Signal::KILL);
            let _ = wait(gofer);
            return Err(e);
        }
    };
    drop((ours, spec_r, control_kernel, log, net));
    let sandbox = Sandbox { kernel, gofer };
    tracing::debug!(?sandbox, "started");
    // A kernel that died early closes the pipe: its status says why.
    let _ = std::fs::File::from(spec_w).write_all(&spec.encode());
    Ok((sandbox, control))
}

/// How the kernel process ended, as the sandbox's result: the program's status if it ran
/// (the `Exited` message the kernel sends last), else a message for a kernel that died.
pub fn wait_sandbox(sandbox: &Sandbox, reported: Option<Status>) -> Result<Status, String> {
    let status = wait(sandbox.kernel);
    let gofer_status = wait(sandbox.gofer);
    if gofer_status.and_then(rustix::process::WaitStatus::terminating_signal) == Some(libc::SIGSYS)
    {
        eprintln!("moat: the gofer was killed by seccomp (a disallowed host system call)");
    }
    if let Some(code) = status.and_then(rustix::process::WaitStatus::exit_status) {
        return Ok(reported.unwrap_or(Status::Exited(code)));
    }
    Err(
        match status.and_then(rustix::process::WaitStatus::terminating_signal) {
            Some(libc::SIGSYS) => "sandbox kernel killed by seccomp (a disallowed host system call; debug builds name it above)".to_string(),
            Some(sig) => format!("sandbox kernel killed by signal {sig}"),
            None => "sandbox kernel ended oddly".to_string(),
        },
    )
}

/// Start the gofer for `served` and the kernel for `spec`, pass host signals on until the
/// kernel ends, and return the exit code `moat do` ends with. `log` is the debug log file.
pub fn run_sandbox(
    spec: &KernelSpec,
    served: &[Served],
    log: Option<OwnedFd>,
    net: Option<OwnedFd>,
) -> Result<ExitCode, RuntimeError> {
    let (sandbox, control) = start_sandbox(spec, served, log, net)?;
    forward_signals(&control, &FORWARDED_SIGNALS);
    // The kernel's own exit code is the program's (128+N for a signal), as `moat do` ends.
    Ok(match wait_sandbox(&sandbox, None) {
        Ok(status) => ExitCode::from(status.shell_code()),
        Err(message) => fail(EXIT_MOAT_FAILED, &message),
    })
}

/// Catch `signals` sent to this process (^C, `kill`, a hang-up) and send each to the
/// kernel, which passes it to the sandbox's init: the program decides, as it would natively.
/// (SIGKILL still ends Moat: the kernel and gofer die with the front.)
pub fn forward_signals(control: &OwnedFd, signals: &[i32]) {
    let Ok(control) = rustix::io::fcntl_dupfd_cloexec(control, 3) else {
        return;
    };
    let Ok(mut caught) = signal_hook::iterator::Signals::new(signals) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("moat-host-signals".into())
        .spawn(move || {
            for signo in caught.forever() {
                let m = Message::Signal { signo, all: false };
                if control::send(&control, &m, &[]).is_err() {
                    return;
                }
            }
        });
}

/// What the control thread hands the kernel's main thread before the program starts.
enum BeforeStart {
    /// With the fds of `create --preserve-fds`.
    Start(Vec<OwnedFd>),
    Signal(i32),
}

/// Where the control thread sends what it reads: before the start, to the main thread;
/// after it, signals to the kernel's signal thread.
struct Routes {
    before_start: Mutex<Option<std::sync::mpsc::Sender<BeforeStart>>>,
    signals: std::sync::mpsc::Sender<HostSignal>,
    execs: std::sync::mpsc::Sender<ExecCall>,
    /// Questions for the kernel (`ps`, `events`), once it runs.
    inspect: std::sync::mpsc::Sender<Inspect>,
    /// The sandbox pid of each running exec'd process, by the front's exec number.
    exec_pids: Arc<Mutex<std::collections::HashMap<u64, i32>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An exec request from the front, as the kernel's call: its start and end are reported
/// back on the control socket.
fn exec_call(
    id: u64,
    spec: control::ExecSpec,
    stdio: Vec<OwnedFd>,
    control: &Arc<OwnedFd>,
    pids: &Arc<Mutex<std::collections::HashMap<u64, i32>>>,
) -> ExecCall {
    let shown = String::from_utf8_lossy(&spec.filename).into_owned();
    let cwd = String::from_utf8_lossy(&spec.cwd).into_owned();
    let (on_start, on_exit) = (control.clone(), control.clone());
    let (pids_start, pids_exit) = (pids.clone(), pids.clone());
    ExecCall {
        filename: spec.filename,
        argv: spec.argv,
        envp: spec.envp,
        cwd: spec.cwd,
        creds: spec.creds,
        umask: spec.umask,
        search_path: spec.search_path,
        no_new_privs: spec.no_new_privs,
        stdio,
        started: Some(Box::new(move |result| {
            let m = match result {
                Ok(pid) => {
                    lock(&pids_start).insert(id, pid);
                    Message::ExecStarted { id, pid }
                }
                Err(e) => Message::ExecFailed {
                    id,
                    message: match outcome(Err(e), &shown, &cwd) {
                        Err((_, message)) => message,
                        Ok(_) => "exec failed".into(),
                    },
                },
            };
            let _ = control::send(&*on_start, &m, &[]);
        })),
        exited: Some(Box::new(move |status| {
            lock(&pids_exit).remove(&id);
            let status = match status {
                ExitStatus::Exited(code) => Status::Exited(code),
                ExitStatus::Signaled { signo, .. } => Status::Signaled(signo),
            };
            let _ = control::send(&*on_exit, &Message::ExecExited { id, status }, &[]);
        })),
    }
}

/// Read the front's messages on the control socket until it hangs up.
fn read_control(control: Arc<OwnedFd>, routes: Arc<Routes>) {
    let _ = std::thread::Builder::new()
        .name("moat-control".into())
        .spawn(move || loop {
            let (message, fds) = match control::recv(&*control) {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    continue;
                }
            };
            let before = lock(&routes.before_start).clone();
            match (message, before) {
                (Message::Start, Some(tx)) => {
                    let _ = tx.send(BeforeStart::Start(fds));
                }
                (Message::Signal { signo, .. }, Some(tx)) => {
                    let _ = tx.send(BeforeStart::Signal(signo));
                }
                (Message::Signal { signo, all }, None) => {
                    let target = if all {
                        SignalTarget::All
                    } else {
                        SignalTarget::Init
                    };
                    let _ = routes.signals.send(HostSignal { signo, target });
                }
                (Message::Exec { id, .. }, Some(_)) => {
                    let m = Message::ExecFailed {
                        id,
                        message: "the container has not started".into(),
                    };
                    let _ = control::send(&*control, &m, &[]);
                }
                (Message::Exec { id, spec }, None) => {
                    let call = exec_call(id, spec, fds, &control, &routes.exec_pids);
                    let _ = routes.execs.send(call);
                }
                (Message::Ps { id }, before) => {
                    let list = if before.is_some() {
                        Vec::new()
                    } else {
                        ask(&routes.inspect, Inspect::Processes).unwrap_or_default()
                    };
                    send_processes(&control, id, &list);
                }
                (Message::Stats { id }, before) => {
                    let stats = if before.is_some() {
                        None
                    } else {
                        ask(&routes.inspect, Inspect::Stats)
                    };
                    let stats = stats.unwrap_or(SandboxStats {
                        memory_limit: u64::MAX,
                        ..SandboxStats::default()
                    });
                    let _ = control::send(&*control, &Message::StatsReport { id, stats }, &[]);
                }
                (Message::ExecSignal { id, signo }, _) => {
                    if let Some(&pid) = lock(&routes.exec_pids).get(&id) {
                        let target = SignalTarget::Process(pid);
                        let _ = routes.signals.send(HostSignal { signo, target });
                    }
                }
                (other, _) => tracing::warn!("control socket: unexpected {other:?}"),
            }
        });
}

/// Ask the kernel's inspect thread; `None` once the sandbox has ended.
fn ask<T>(
    inspect: &std::sync::mpsc::Sender<Inspect>,
    question: impl FnOnce(std::sync::mpsc::Sender<T>) -> Inspect,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    inspect.send(question(tx)).ok()?;
    rx.recv().ok()
}

/// The process list in parts that fit a control message (at least one, maybe empty).
fn send_processes(control: &OwnedFd, id: u64, list: &[ProcessEntry]) {
    let mut parts = list.chunks(control::PROCESSES_PER_MESSAGE).peekable();
    if parts.peek().is_none() {
        let m = Message::Processes {
            id,
            list: Vec::new(),
            more: false,
        };
        let _ = control::send(control, &m, &[]);
    }
    while let Some(part) = parts.next() {
        let m = Message::Processes {
            id,
            list: part.to_vec(),
            more: parts.peek().is_some(),
        };
        let _ = control::send(control, &m, &[]);
    }
}

/// Whether a signal's default action ends a process (what a not yet started init does).
fn kills_by_default(signo: i32) -> bool {
    !matches!(
        signo,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGURG
            | libc::SIGWINCH
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
    ) && (1..=64).contains(&signo)
}

fn init_logging(log: Option<OwnedFd>) {
    use tracing_subscriber::fmt;
    match log {
        Some(fd) => {
            let _ = fmt()
                .with_writer(std::sync::Mutex::new(std::fs::File::from(fd)))
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .try_init();
        }
        None => {
            let _ = fmt()
                .with_writer(std::io::stderr)
                .with_max_level(tracing::Level::ERROR)
                .try_init();
        }
    }
}

/// Duplicates of the kernel process's stdio, donated to the application as fds 0-2; a
/// closed host fd is simply absent in the sandbox.
fn stdio() -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for fd in [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ] {
        match rustix::io::fcntl_dupfd_cloexec(fd, 3) {
            Ok(owned) => fds.push(owned),
            Err(_) => break,
        }
    }
    fds
}

fn refusal(confinement: Confinement) -> Refusal {
    if confinement == Confinement::LogSeccomp {
        Refusal::Log
    } else {
        Refusal::default_for_build()
    }
}

/// `moat kernel`: confine this process, then run the sandbox's kernel; the exit code is the
/// program's (128+N for a signal) or one of the `EXIT_*` codes with a message.
pub fn kernel_main() -> ExitCode {
    let mut fds = moat_platform::confine::take_inherited_fds(&[
        KERNEL_GOFER_FD,
        KERNEL_SPEC_FD,
        KERNEL_CONTROL_FD,
        KERNEL_LOG_FD,
        KERNEL_NET_FD,
    ])
    .into_iter();
    let (gofer, spec_pipe, control, log, net) = (
        fds.next().flatten(),
        fds.next().flatten(),
        fds.next().flatten(),
        fds.next().flatten(),
        fds.next().flatten(),
    );
    let (Some(gofer), Some(spec_pipe), Some(control)) = (gofer, spec_pipe, control) else {
        return fail(
            EXIT_MOAT_FAILED,
            "`moat kernel` is started by `moat do`, not by hand",
        );
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::fs::File::from(spec_pipe).read_to_end(&mut bytes) {
        return fail(EXIT_MOAT_FAILED, &format!("reading the kernel spec: {e}"));
    }
    let spec = match KernelSpec::decode(&bytes) {
        Ok(spec) => spec,
        Err(e) => return fail(EXIT_MOAT_FAILED, &e.to_string()),
    };
    init_logging(if spec.debug_log { log } else { None });
    // Confined, systrap needs Syscall User Dispatch: without it the application's calls in a
    // stub meet the kernel's own seccomp filter (which stubs inherit) before the stub's, and
    // its kill beats the stub's trap. Such hosts (Linux before 5.11) get the ptrace platform.
    let name = if spec.platform == "systrap"
        && !matches!(spec.confinement, Confinement::None)
        && !moat_platform::systrap::dispatch_available()
    {
        tracing::warn!("no Syscall User Dispatch on this host: using the ptrace platform");
        "ptrace"
    } else {
        spec.platform.as_str()
    };
    let Some(platform) = moat_platform::by_name(name) else {
        return fail(2, &format!("unknown platform {}", spec.platform));
    };
    let control = Arc::new(control);
    let outcome = start_kernel(spec, platform, gofer, &control, net)
        .unwrap_or_else(|e| Err((EXIT_MOAT_FAILED, format!("sandbox kernel: {e}"))));
    let status = match outcome {
        Ok(status) => status,
        Err((code, message)) => {
            eprintln!("moat: {message}");
            let _ = control::send(&*control, &Message::Failed(message), &[]);
            Status::Exited(i32::from(code))
        }
    };
    let _ = control::send(&*control, &Message::Exited(status), &[]);
    ExitCode::from(status.shell_code())
}

/// Confine the kernel process, wait for the start if asked to, and run the sandbox: the
/// program's status, or the exit code and message of a failure.
fn start_kernel(
    spec: KernelSpec,
    platform: Arc<dyn moat_platform::Platform>,
    gofer: OwnedFd,
    control: &Arc<OwnedFd>,
    net: Option<OwnedFd>,
) -> Result<Result<Status, (u8, String)>, RuntimeError> {
    let stdio = stdio();
    if spec.confinement != Confinement::None {
        if let Some(proc_dir) = confine::kernel_root()? {
            moat_platform::ptrace::set_proc_dir(proc_dir);
        }
        // A core file would be written by the host, outside the sandbox.
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Core,
            rustix::process::Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        );
        confine::drop_privileges(rustix::thread::CapabilitySet::empty())?;
    }
    let client =
        Arc::new(
            moat_gofer::GoferClient::connect(gofer).map_err(|e| RuntimeError::Io {
                what: "connecting to the gofer",
                source: std::io::Error::other(e.to_string()),
            })?,
        );
    let (signals_tx, signals_rx) = std::sync::mpsc::channel();
    let (start_tx, start_rx) = std::sync::mpsc::channel();
    let (execs_tx, execs_rx) = std::sync::mpsc::channel();
    let (inspect_tx, inspect_rx) = std::sync::mpsc::channel();
    let routes = Arc::new(Routes {
        inspect: inspect_tx,
        before_start: Mutex::new(spec.wait_for_start.then_some(start_tx)),
        signals: signals_tx,
        execs: execs_tx,
        exec_pids: Arc::default(),
    });
    read_control(control.clone(), routes.clone());
    // Names that tell Moat's processes apart in `ps` and in the host's audit log.
    let _ = rustix::thread::set_name(c"moat-kernel");
    if spec.confinement != Confinement::None {
        seccomp::install(
            &seccomp::kernel_allowlist(platform.as_ref(), spec.network),
            refusal(spec.confinement),
            0,
            c"sandbox kernel",
        )?;
        tracing::debug!("kernel process confined");
    }
    if spec.probe_seccomp {
        // The test hook: a call no allowlist has. It must not return.
        let probe = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::STREAM,
            None,
        );
        return Ok(Err((
            EXIT_MOAT_FAILED,
            format!("the seccomp probe survived: {probe:?}"),
        )));
    }
    let mut preserved_fds = Vec::new();
    if spec.wait_for_start {
        // OCI `create` is done: nothing of the application runs before `start`.
        loop {
            match start_rx.recv() {
                Ok(BeforeStart::Start(fds)) => {
                    preserved_fds = fds;
                    break;
                }
                Ok(BeforeStart::Signal(signo)) if kills_by_default(signo) => {
                    client.hang_up();
                    return Ok(Ok(Status::Signaled(signo)));
                }
                Ok(BeforeStart::Signal(_)) => {}
                Err(_) => {
                    // The front is gone: so is the container.
                    client.hang_up();
                    return Ok(Ok(Status::Signaled(libc::SIGKILL)));
                }
            }
        }
        *lock(&routes.before_start) = None;
    }
    let started = control.clone();
    let start_hooks = spec.start_hooks;
    let hook_context = crate::start_hooks::HookContext {
        cwd: spec.cwd.clone(),
        creds: spec.creds.clone(),
        umask: spec.umask,
        state: spec.hook_state,
    };
    let (hook_execs, hook_signals) = (routes.execs.clone(), routes.signals.clone());
    let shown = String::from_utf8_lossy(spec.argv.first().map_or(&b"?"[..], |a| a)).into_owned();
    let cwd_shown = String::from_utf8_lossy(&spec.cwd).into_owned();
    let config = SandboxConfig {
        platform,
        filename: spec.filename,
        gofer: Some(client.clone()),
        argv: spec.argv,
        envp: spec.envp,
        stdio,
        preserved_fds,
        cwd: spec.cwd,
        cwd_required: spec.cwd_required,
        volumes: spec.volumes,
        root_read_only: spec.root_read_only,
        tmpfs_mounts: spec.tmpfs_mounts,
        seed_files: spec.seed_files,
        search_path: spec.search_path,
        no_new_privs: spec.no_new_privs,
        on_start: Some(Box::new(move || {
            crate::start_hooks::run(&start_hooks, &hook_context, &hook_execs, &hook_signals)?;
            let _ = control::send(&*started, &Message::Started, &[]);
            Ok(())
        })),
        creds: spec.creds,
        umask: spec.umask,
        limits: spec.limits,
        hostname: spec.hostname,
        aux: spec.aux,
        strace: spec.strace,
        memory_size: spec.memory_size,
        memory_limit: spec.memory_limit,
        cpu_mask: spec.cpu_mask,
        forwarded_signals: Some(signals_rx),
        exec_calls: Some(execs_rx),
        network: spec.network,
        inspect: Some(inspect_rx),
        external: spec.interface.clone().zip(net),
        host_interfaces: spec.host_interfaces.clone(),
    };
    let platform = spec.platform.clone();
    let result = moat_kernel::run(config);
    if platform == "systrap" {
        // How the platform's waits ended: spinning or sleeping (see `moat_platform::systrap`).
        let stats = moat_platform::systrap::stats();
        tracing::info!("systrap waits: {stats:?}");
        if std::env::var_os("MOAT_SYSTRAP_STATS").is_some() {
            eprintln!("moat: systrap waits: {stats:?}");
        }
    }
    // The sandbox is over: hang up on the gofer, which then exits.
    client.hang_up();
    Ok(outcome(result, &shown, &cwd_shown))
}

/// The kernel's result as the program's status, or an exit code and the shell's message.
fn outcome(
    result: Result<ExitStatus, KernelError>,
    shown: &str,
    cwd: &str,
) -> Result<Status, (u8, String)> {
    match result {
        Ok(ExitStatus::Exited(code)) => Ok(Status::Exited(code)),
        Ok(ExitStatus::Signaled { signo, .. }) => Ok(Status::Signaled(signo)),
        Err(KernelError::Load(e @ LoadError::Dynamic(_))) => {
            Err((EXIT_CANNOT_RUN, format!("{shown}: {e}")))
        }
        Err(KernelError::Load(LoadError::NotExecutable | LoadError::Malformed(_))) => {
            Err((EXIT_CANNOT_RUN, format!("{shown}: Exec format error")))
        }
        Err(KernelError::Load(LoadError::TooBig)) => {
            Err((EXIT_CANNOT_RUN, format!("{shown}: Argument list too long")))
        }
        Err(KernelError::Load(LoadError::Open(_, e))) if e == moat_abi::Errno::ENOENT => Err((
            EXIT_NOT_FOUND,
            format!("{shown}: No such file or directory"),
        )),
        Err(KernelError::Load(LoadError::Open(_, e))) => {
            Err((EXIT_CANNOT_RUN, format!("{shown}: {}", strerror(e))))
        }
        Err(KernelError::Cwd(e)) => Err((
            EXIT_MOAT_FAILED,
            format!("cannot change to {cwd}: {}", strerror(e)),
        )),
        Err(KernelError::Start(message)) => Err((EXIT_MOAT_FAILED, message)),
        Err(e) => Err((EXIT_MOAT_FAILED, format!("sandbox failed: {e}"))),
    }
}

/// The C library's wording for an errno, as a shell would print it.
fn strerror(e: moat_abi::Errno) -> String {
    let text = std::io::Error::from_raw_os_error(e.0).to_string();
    // "No such file or directory (os error 2)" → "No such file or directory"
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// `moat gofer`: confine this process to the trees it serves, then serve them on the socket
/// that is our stdin until the kernel hangs up.
pub fn gofer_main(mounts: &[String], confinement: Confinement) -> ExitCode {
    let served: Vec<Served> = mounts
        .iter()
        .map(|m| match m.strip_suffix(":ro") {
            Some(path) => Served {
                host_path: path.into(),
                read_only: true,
            },
            None => Served {
                host_path: m.into(),
                read_only: false,
            },
        })
        .collect();
    // Every file the kernel has cached holds one of our fds: allow as many as the host lets
    // us (the kernel prunes its cache well below that).
    let mut nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    nofile.current = nofile.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, nofile);
    let sock = match rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3) {
        Ok(fd) => fd,
        Err(e) => return fail(EXIT_MOAT_FAILED, &format!("gofer: no socket on stdin: {e}")),
    };
    let served = if confinement == Confinement::None {
        served
    } else {
        match confine_gofer(&served, &sock, confinement) {
            Ok(moved) => moved,
            Err(e) => return fail(EXIT_MOAT_FAILED, &format!("gofer: {e}")),
        }
    };
    let mounts: Vec<moat_gofer::Mount> = served
        .into_iter()
        .map(|s| moat_gofer::Mount {
            host_path: s.host_path,
            read_only: s.read_only,
        })
        .collect();
    match moat_gofer::serve(&sock, &mounts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_MOAT_FAILED, &format!("gofer: {e}")),
    }
}

fn confine_gofer(
    served: &[Served],
    sock: &OwnedFd,
    confinement: Confinement,
) -> Result<Vec<Served>, RuntimeError> {
    use std::os::fd::AsRawFd;
    let _ = rustix::thread::set_name(c"moat-gofer");
    let moved = confine::gofer_root(served)?;
    confine::drop_privileges(confine::GOFER_CAPABILITIES)?;
    seccomp::install(
        &seccomp::gofer_allowlist(),
        refusal(confinement),
        sock.as_raw_fd() as u32,
        GOFER_NAME,
    )?;
    Ok(moved)
}

const GOFER_NAME: &CStr = c"gofer";
