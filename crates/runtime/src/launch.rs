//! Starting a sandbox: the front's side ([`run_sandbox`]), and the first steps of the gofer
//! ([`gofer_main`]) and of the kernel ([`kernel_main`]) in their new namespaces.
//!
//! The kernel process finds what the front hands it at fixed fd numbers: 0-2 its stdio (the
//! caller's, donated to the application), [`KERNEL_GOFER_FD`] its end of the gofer's socket,
//! [`KERNEL_SPEC_FD`] a pipe carrying the [`KernelSpec`], [`KERNEL_SIGNALS_FD`] a pipe on
//! which the front writes each host signal it catches (one byte: the number), and
//! [`KERNEL_LOG_FD`] the debug log, opened by the front (the kernel could not open it later).

use std::ffi::{CStr, CString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::sync::Arc;

use moat_kernel::{ExitStatus, KernelError, LoadError, SandboxConfig};
use rustix::process::{Pid, WaitOptions};

use crate::confine::{self, Served};
use crate::seccomp::{self, Refusal};
use crate::spec::{Confinement, KernelSpec};
use crate::RuntimeError;

pub const KERNEL_GOFER_FD: i32 = 3;
pub const KERNEL_SPEC_FD: i32 = 4;
pub const KERNEL_SIGNALS_FD: i32 = 5;
pub const KERNEL_LOG_FD: i32 = 6;

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

fn spawn(
    args: &[&str],
    confinement: Confinement,
    fds: Vec<(std::os::fd::BorrowedFd<'_>, i32)>,
) -> Result<Pid, RuntimeError> {
    let euid = rustix::process::geteuid();
    let unprivileged = !euid.is_root();
    let argv: Vec<CString> = std::iter::once("moat")
        .chain(args.iter().copied())
        .map(cstring)
        .collect();
    // Nothing of the caller's environment: the application's travels in the spec.
    let envp: Vec<CString> = ["RUST_BACKTRACE", "RUST_LOG"]
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
        namespaces: if confined {
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

/// Start the gofer for `served` and the kernel for `spec`, pass host signals on until the
/// kernel ends, and return the exit code `moat do` ends with. `log` is the debug log file.
pub fn run_sandbox(
    spec: &KernelSpec,
    served: &[Served],
    log: Option<OwnedFd>,
) -> Result<ExitCode, RuntimeError> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RuntimeError::io("creating the gofer's socket")(e.into()))?;
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
        vec![(theirs.as_fd(), 0), (null.as_fd(), 1)],
    )?;
    drop(theirs);

    let (spec_r, spec_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RuntimeError::io("creating a pipe")(e.into()))?;
    let (signals_r, signals_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RuntimeError::io("creating a pipe")(e.into()))?;
    let mut fds = vec![
        (ours.as_fd(), KERNEL_GOFER_FD),
        (spec_r.as_fd(), KERNEL_SPEC_FD),
        (signals_r.as_fd(), KERNEL_SIGNALS_FD),
    ];
    if let Some(log) = &log {
        fds.push((log.as_fd(), KERNEL_LOG_FD));
    }
    let kernel = spawn(&["kernel"], spec.confinement, fds)?;
    drop((ours, spec_r, signals_r, log));
    let sandbox = Sandbox { kernel, gofer };
    tracing::debug!(?sandbox, "started");

    // A kernel that died early closes the pipe: its status says why.
    let _ = std::fs::File::from(spec_w).write_all(&spec.encode());
    forward_signals(signals_w);

    let status = wait(kernel);
    let gofer_status = wait(gofer);
    if gofer_status.and_then(rustix::process::WaitStatus::terminating_signal) == Some(libc::SIGSYS)
    {
        eprintln!("moat: the gofer was killed by seccomp (a disallowed host system call)");
    }
    Ok(
        if let Some(code) = status.and_then(rustix::process::WaitStatus::exit_status) {
            ExitCode::from(code as u8)
        } else {
            match status.and_then(rustix::process::WaitStatus::terminating_signal) {
            Some(libc::SIGSYS) => fail(
                EXIT_MOAT_FAILED,
                "sandbox kernel killed by seccomp (a disallowed host system call; debug builds name it above)",
            ),
            Some(sig) => fail(
                EXIT_MOAT_FAILED,
                &format!("sandbox kernel killed by signal {sig}"),
            ),
            None => fail(EXIT_MOAT_FAILED, "sandbox kernel ended oddly"),
        }
        },
    )
}

/// Catch the signals a user or a supervisor sends to `moat` (^C, `kill`, a hang-up) and write
/// each to the kernel, which passes it to the sandbox's init: the program decides, as it
/// would natively. (SIGKILL still ends Moat: the kernel and gofer die with the front.)
fn forward_signals(pipe: OwnedFd) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new(FORWARDED_SIGNALS) else {
        return;
    };
    let mut pipe = std::fs::File::from(pipe);
    let _ = std::thread::Builder::new()
        .name("moat-host-signals".into())
        .spawn(move || {
            for signo in signals.forever() {
                if pipe.write_all(&[signo as u8]).is_err() {
                    return;
                }
            }
        });
}

/// Read forwarded signals from the front's pipe (see [`forward_signals`]).
fn receive_signals(pipe: OwnedFd) -> Option<std::sync::mpsc::Receiver<i32>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut pipe = std::fs::File::from(pipe);
    std::thread::Builder::new()
        .name("moat-signals-in".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = pipe.read(&mut byte) {
                if tx.send(i32::from(byte[0])).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    Some(rx)
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
        KERNEL_SIGNALS_FD,
        KERNEL_LOG_FD,
    ])
    .into_iter();
    let (gofer, spec_pipe, signals, log) = (
        fds.next().flatten(),
        fds.next().flatten(),
        fds.next().flatten(),
        fds.next().flatten(),
    );
    let (Some(gofer), Some(spec_pipe), Some(signals)) = (gofer, spec_pipe, signals) else {
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
    let Some(platform) = moat_platform::by_name(&spec.platform) else {
        return fail(2, &format!("unknown platform {}", spec.platform));
    };
    match start_kernel(spec, platform, gofer, signals) {
        Ok(code) => code,
        Err(e) => fail(EXIT_MOAT_FAILED, &format!("sandbox kernel: {e}")),
    }
}

fn start_kernel(
    spec: KernelSpec,
    platform: Arc<dyn moat_platform::Platform>,
    gofer: OwnedFd,
    signals: OwnedFd,
) -> Result<ExitCode, RuntimeError> {
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
    let forwarded_signals = receive_signals(signals);
    // Names that tell Moat's processes apart in `ps` and in the host's audit log.
    let _ = rustix::thread::set_name(c"moat-kernel");
    if spec.confinement != Confinement::None {
        seccomp::install(
            &seccomp::kernel_allowlist(platform.as_ref()),
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
        return Ok(fail(
            EXIT_MOAT_FAILED,
            &format!("the seccomp probe survived: {probe:?}"),
        ));
    }
    let shown = String::from_utf8_lossy(spec.argv.first().map_or(&b"?"[..], |a| a)).into_owned();
    let cwd_shown = String::from_utf8_lossy(&spec.cwd).into_owned();
    let config = SandboxConfig {
        platform,
        filename: spec.filename,
        gofer: Some(client.clone()),
        argv: spec.argv,
        envp: spec.envp,
        stdio,
        cwd: spec.cwd,
        cwd_required: spec.cwd_required,
        volumes: spec.volumes,
        creds: spec.creds,
        umask: spec.umask,
        limits: spec.limits,
        hostname: spec.hostname,
        aux: spec.aux,
        strace: spec.strace,
        memory_size: spec.memory_size,
        cpu_mask: spec.cpu_mask,
        forwarded_signals,
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
    Ok(exit_code(result, &shown, &cwd_shown))
}

/// How `moat do` ends for the kernel's result, with the shell's messages.
fn exit_code(result: Result<ExitStatus, KernelError>, shown: &str, cwd: &str) -> ExitCode {
    match result {
        Ok(ExitStatus::Exited(code)) => ExitCode::from(code as u8),
        Ok(ExitStatus::Signaled { signo, .. }) => ExitCode::from(128 + signo as u8),
        Err(KernelError::Load(e @ LoadError::Dynamic(_))) => {
            fail(EXIT_CANNOT_RUN, &format!("{shown}: {e}"))
        }
        Err(KernelError::Load(LoadError::NotExecutable | LoadError::Malformed(_))) => {
            fail(EXIT_CANNOT_RUN, &format!("{shown}: Exec format error"))
        }
        Err(KernelError::Load(LoadError::TooBig)) => {
            fail(EXIT_CANNOT_RUN, &format!("{shown}: Argument list too long"))
        }
        Err(KernelError::Load(LoadError::Open(_, e))) if e == moat_abi::Errno::ENOENT => fail(
            EXIT_NOT_FOUND,
            &format!("{shown}: No such file or directory"),
        ),
        Err(KernelError::Load(LoadError::Open(_, e))) => {
            fail(EXIT_CANNOT_RUN, &format!("{shown}: {}", strerror(e)))
        }
        Err(KernelError::Cwd(e)) => fail(
            EXIT_MOAT_FAILED,
            &format!("cannot change to {cwd}: {}", strerror(e)),
        ),
        Err(e) => fail(EXIT_MOAT_FAILED, &format!("sandbox failed: {e}")),
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
