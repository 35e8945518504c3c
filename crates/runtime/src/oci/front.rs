//! A container's front: the host process whose pid `create` writes to `--pid-file`.
//!
//! `create` starts it (`moat front`, Moat's binary re-executed, with the container's stdio
//! as its own 0-2) and hands it the plan on a socket (the "sync" socket). The front starts
//! the gofer and the kernel at once, confined as for `moat do`; the kernel confines itself
//! and then waits for a start message before it loads anything, so no application code runs
//! before `start` (runc's `runc init` waits on `exec.fifo` the same way). The front then
//! serves the container's control socket (`ROOT/ID/ctl.sock`, `SOCK_SEQPACKET`):
//!
//! - `Start` (from `moat start`): passed to the kernel; the answer (`Started`, or `Failed`
//!   with the shell's message when the program cannot be found or loaded) goes back.
//! - `Signal` (from `moat kill`): passed to the kernel, which sends it to init or to every
//!   process. Signals sent to the front itself are passed on the same way.
//! - `Exec` with stdio fds (from a `moat exec` process): passed to the kernel with a number;
//!   the exec'd process's start and exit come back on the same connection, and the exec
//!   process's `ExecSignal`s go the other way.
//!
//! The front ends when the kernel does, with the status of the container's init — the exit
//! code, or death by the same signal — because that is what the containerd shim and conmon
//! learn by waiting for the pid in `--pid-file`.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use super::log::Log;
use crate::confine::Served;
use crate::control::{self, Message, Status};
use crate::spec::{Reader, Writer};
use crate::{KernelSpec, RuntimeError};

/// Signals the front passes on to the container's init when it receives them itself.
pub const FORWARDED_SIGNALS: [i32; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGALRM,
];

/// What `create` hands the front.
#[derive(Debug)]
pub struct FrontSpec {
    pub kernel: KernelSpec,
    pub served: Vec<Served>,
    /// Make stdin (a pty's slave) the front's controlling terminal: ^C reaches the front,
    /// which passes it on.
    pub terminal: bool,
    /// The network namespace whose interface the sandbox takes (`Plan::netns`).
    pub netns: Option<PathBuf>,
}

impl FrontSpec {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.bytes(&self.kernel.encode());
        w.u64(self.served.len() as u64);
        for s in &self.served {
            w.bytes(std::os::unix::ffi::OsStrExt::as_bytes(
                s.host_path.as_os_str(),
            ));
            w.bool(s.read_only);
        }
        w.bool(self.terminal);
        w.bool(self.netns.is_some());
        if let Some(p) = &self.netns {
            w.bytes(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()));
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<FrontSpec, RuntimeError> {
        let mut r = Reader(bytes);
        let kernel = KernelSpec::decode(&r.bytes()?)?;
        let n = r.len()?;
        let mut served = Vec::with_capacity(n);
        for _ in 0..n {
            served.push(Served {
                host_path: PathBuf::from(
                    <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(r.bytes()?),
                ),
                read_only: r.bool()?,
            });
        }
        let terminal = r.bool()?;
        let netns = if r.bool()? {
            Some(PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(r.bytes()?),
            ))
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(RuntimeError::Spec("trailing bytes"));
        }
        Ok(FrontSpec {
            kernel,
            served,
            terminal,
            netns,
        })
    }
}

/// A unix socket address for `path`, which may be longer than an address holds (107
/// bytes; docker's state directories are deeper): then the name is reached through an
/// `O_PATH` fd of its directory, `/proc/self/fd/N/NAME`, the fd kept open alongside.
fn socket_addr(path: &Path) -> std::io::Result<(rustix::net::SocketAddrUnix, Option<OwnedFd>)> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().len() < 100 {
        return Ok((rustix::net::SocketAddrUnix::new(path)?, None));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let dir = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string())
        .join(name);
    Ok((rustix::net::SocketAddrUnix::new(short)?, Some(dir)))
}

fn seqpacket() -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A connected `SOCK_SEQPACKET` socket to `path`.
pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let sock = seqpacket()?;
    let (addr, _dir) = socket_addr(path)?;
    rustix::net::connect(&sock, &addr)?;
    Ok(sock)
}

fn listen(path: &Path) -> std::io::Result<OwnedFd> {
    let sock = seqpacket()?;
    let _ = std::fs::remove_file(path);
    let (addr, _dir) = socket_addr(path)?;
    rustix::net::bind(&sock, &addr)?;
    rustix::net::listen(&sock, 64)?;
    Ok(sock)
}

/// Where the kernel's messages go.
#[derive(Default)]
struct Routes {
    /// The `moat start` waiting for `Started` or `Failed`.
    start: Option<Sender<Message>>,
    /// Exec connections by exec number.
    execs: HashMap<u64, Sender<Message>>,
    /// `ps` and `events` connections waiting for the kernel's answer, by question number.
    questions: HashMap<u64, Sender<Message>>,
    /// Init's status, once the kernel said it.
    exited: Option<Status>,
}

struct Front {
    kernel: OwnedFd,
    /// `create --preserve-fds`: handed to the kernel with the (first) `start`.
    preserved: Mutex<Vec<OwnedFd>>,
    routes: Mutex<Routes>,
    next_exec: AtomicU64,
    log: Log,
}

impl Front {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn to_kernel(&self, m: &Message, fds: &[std::os::fd::BorrowedFd<'_>]) -> bool {
        control::send(&self.kernel, m, fds).is_ok()
    }
}

/// Read the kernel's messages until it exits; route each.
fn read_kernel(front: &Front) {
    loop {
        let message = match control::recv(&front.kernel) {
            Ok(Some((m, _))) => m,
            Ok(None) => break,
            Err(e) => {
                front.log.warn(&format!("kernel control message: {e}"));
                continue;
            }
        };
        let mut routes = front.routes();
        match message {
            Message::Started | Message::Failed(_) => match routes.start.take() {
                Some(tx) => {
                    let _ = tx.send(message);
                }
                None => {
                    if let Message::Failed(text) = message {
                        front.log.error(&text);
                    }
                }
            },
            Message::ExecStarted { id, .. } => {
                if let Some(tx) = routes.execs.get(&id) {
                    let _ = tx.send(message);
                }
            }
            Message::ExecFailed { id, .. } | Message::ExecExited { id, .. } => {
                if let Some(tx) = routes.execs.remove(&id) {
                    let _ = tx.send(message);
                }
            }
            Message::Processes { id, more, .. } => {
                let route = if more {
                    routes.questions.get(&id).cloned()
                } else {
                    routes.questions.remove(&id)
                };
                if let Some(tx) = route {
                    let _ = tx.send(message);
                }
            }
            Message::StatsReport { id, .. } => {
                if let Some(tx) = routes.questions.remove(&id) {
                    let _ = tx.send(message);
                }
            }
            Message::Exited(status) => routes.exited = Some(status),
            other => front
                .log
                .warn(&format!("unexpected from the kernel: {other:?}")),
        }
    }
    // The kernel is gone: whoever waits on it hears so (their senders drop).
    let mut routes = front.routes();
    routes.start = None;
    routes.execs.clear();
}

/// Serve one client of the control socket.
fn serve(front: &Arc<Front>, conn: &OwnedFd) {
    let Ok(Some((request, fds))) = control::recv(conn) else {
        return;
    };
    let reply = |m: &Message| {
        let _ = control::send(conn, m, &[]);
    };
    match request {
        Message::Start => {
            let (tx, rx) = channel();
            front.routes().start = Some(tx);
            let preserved = std::mem::take(
                &mut *front
                    .preserved
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            let borrowed: Vec<_> = preserved.iter().map(AsFd::as_fd).collect();
            if !front.to_kernel(&Message::Start, &borrowed) {
                reply(&Message::Failed("the sandbox has ended".into()));
                return;
            }
            match rx.recv() {
                Ok(m) => reply(&m),
                Err(_) => reply(&Message::Failed(
                    "the sandbox ended before the program started".into(),
                )),
            }
        }
        Message::Signal { signo, all } => {
            if front.to_kernel(&Message::Signal { signo, all }, &[]) {
                reply(&Message::Done);
            } else {
                reply(&Message::Failed("container not running".into()));
            }
        }
        Message::Exec { spec, .. } => exec(front, conn, spec, &fds),
        Message::Ps { .. } => ask(front, conn, |id| Message::Ps { id }),
        Message::Stats { .. } => ask(front, conn, |id| Message::Stats { id }),
        other => reply(&Message::Failed(format!("unexpected request {other:?}"))),
    }
}

/// Pass a question (`ps`, `events`) to the kernel under a number of ours and relay the
/// answer's parts to `conn`.
fn ask(front: &Arc<Front>, conn: &OwnedFd, question: impl FnOnce(u64) -> Message) {
    let id = front.next_exec.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = channel();
    front.routes().questions.insert(id, tx);
    if !front.to_kernel(&question(id), &[]) {
        front.routes().questions.remove(&id);
        let _ = control::send(conn, &Message::Failed("container not running".into()), &[]);
        return;
    }
    while let Ok(m) = rx.recv() {
        let last = !matches!(m, Message::Processes { more: true, .. });
        if control::send(conn, &m, &[]).is_err() || last {
            break;
        }
    }
    front.routes().questions.remove(&id);
}

/// Start an exec'd process and relay its life to the `moat exec` process on `conn`.
fn exec(front: &Arc<Front>, conn: &OwnedFd, spec: control::ExecSpec, fds: &[OwnedFd]) {
    let id = front.next_exec.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = channel();
    front.routes().execs.insert(id, tx);
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    if !front.to_kernel(&Message::Exec { id, spec }, &borrowed) {
        front.routes().execs.remove(&id);
        let _ = control::send(
            conn,
            &Message::ExecFailed {
                id,
                message: "container not running".into(),
            },
            &[],
        );
        return;
    }
    // Signals from the exec process, until it hangs up. An exec process that goes away
    // (killed with SIGKILL, as a shim kills runc's exec'd process) takes its process with it.
    if let Ok(reader) = rustix::io::fcntl_dupfd_cloexec(conn, 3) {
        let front = front.clone();
        let _ = std::thread::Builder::new()
            .name("moat-exec-in".into())
            .spawn(move || {
                while let Ok(Some((Message::ExecSignal { signo, .. }, _))) = control::recv(&reader)
                {
                    front.to_kernel(&Message::ExecSignal { id, signo }, &[]);
                }
                if front.routes().execs.contains_key(&id) {
                    let signo = libc::SIGKILL;
                    front.to_kernel(&Message::ExecSignal { id, signo }, &[]);
                }
            });
    }
    loop {
        let m = rx.recv().unwrap_or(Message::ExecFailed {
            id,
            message: "the sandbox has ended".into(),
        });
        let last = !matches!(m, Message::ExecStarted { .. });
        if control::send(conn, &m, &[]).is_err() || last {
            return;
        }
    }
}

/// End this process as init ended: the same code, or death by the same signal.
fn exit_like(status: Status) -> ExitCode {
    match status {
        Status::Exited(code) => ExitCode::from(code as u8),
        Status::Signaled(signo) => {
            // A core file of the front would say nothing about the container.
            let _ = rustix::process::setrlimit(
                rustix::process::Resource::Core,
                rustix::process::Rlimit {
                    current: Some(0),
                    maximum: Some(0),
                },
            );
            if signo == libc::SIGKILL {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            }
            let _ = signal_hook::low_level::emulate_default_handler(signo);
            // A signal whose default is not to die: end with the shell's number for it.
            ExitCode::from(Status::Signaled(signo).shell_code())
        }
    }
}

/// `moat front`: the container's front process (see the module's doc).
pub fn front_main(state_dir: &Path, sync_fd: i32, log: Log) -> ExitCode {
    let sync = moat_platform::confine::take_inherited_fds(&[sync_fd])
        .pop()
        .flatten();
    let Some(sync) = sync else {
        log.error("`moat front` is started by `moat create`, not by hand");
        return ExitCode::from(crate::launch::EXIT_MOAT_FAILED);
    };
    let fail = |message: String| {
        log.error(&message);
        let _ = control::send(&sync, &Message::Failed(message), &[]);
        ExitCode::from(crate::launch::EXIT_MOAT_FAILED)
    };
    // Out of the caller's session and process group: its terminal's signals are not ours.
    let _ = rustix::process::setsid();
    // `create` writes the plan to a file (seeded files can be large) and says go.
    let Ok(Some((Message::Start, preserved))) = control::recv(&sync) else {
        return ExitCode::from(crate::launch::EXIT_MOAT_FAILED);
    };
    let plan_path = state_dir.join(PLAN_FILE);
    let plan = std::fs::read(&plan_path);
    let _ = std::fs::remove_file(&plan_path);
    let plan = match plan
        .map_err(|e| e.to_string())
        .and_then(|b| FrontSpec::decode(&b).map_err(|e| e.to_string()))
    {
        Ok(plan) => plan,
        Err(e) => return fail(format!("reading the plan: {e}")),
    };
    if plan.terminal {
        // The pty's slave (our stdin) becomes our controlling terminal: ^C typed on it
        // reaches us, and we pass it on.
        let _ = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin());
    }
    let mut plan = plan;
    // The container's network namespace, if its spec names one: its interface is the
    // sandbox's (with the sandbox's own network only: `none` takes nothing, `host` uses the
    // host's sockets). A namespace that cannot be taken leaves the sandbox loopback-only.
    let netns = plan
        .netns
        .clone()
        .filter(|_| plan.kernel.network == moat_kernel::NetworkMode::Sandbox);
    // With the host's network, programs see the host's interfaces.
    if plan.kernel.network == moat_kernel::NetworkMode::Host {
        match crate::network::host_interfaces() {
            Ok(interfaces) => plan.kernel.host_interfaces = interfaces,
            Err(e) => log.warn(&format!("reading the host's interfaces: {e}")),
        }
    }
    let mut give_back = None;
    let net = netns
        .as_deref()
        .and_then(|path| match crate::network::take_interface_of(path) {
            Ok(Some(taken)) => {
                plan.kernel.interface = Some(taken.config);
                give_back = Some(taken.give_back);
                Some(taken.fd)
            }
            Ok(None) => None,
            Err(e) => {
                log.warn(&format!(
                    "the network namespace {}: {e}; the sandbox is loopback-only",
                    path.display()
                ));
                None
            }
        });
    let (sandbox, kernel) =
        match crate::launch::start_sandbox(&plan.kernel, &plan.served, None, net) {
            Ok(started) => started,
            Err(e) => return fail(format!("starting the sandbox: {e}")),
        };
    let listener = match listen(&state_dir.join(CONTROL_SOCKET)) {
        Ok(l) => l,
        Err(e) => {
            let _ = rustix::process::kill_process(sandbox.kernel, rustix::process::Signal::KILL);
            return fail(format!("making the control socket: {e}"));
        }
    };
    crate::launch::forward_signals(&kernel, &FORWARDED_SIGNALS);
    let front = Arc::new(Front {
        kernel,
        preserved: Mutex::new(preserved),
        routes: Mutex::new(Routes::default()),
        next_exec: AtomicU64::new(1),
        log,
    });
    {
        let front = front.clone();
        let _ = std::thread::Builder::new()
            .name("moat-accept".into())
            .spawn(move || loop {
                match rustix::net::accept_with(&listener, rustix::net::SocketFlags::CLOEXEC) {
                    Ok(conn) => {
                        let front = front.clone();
                        let _ = std::thread::Builder::new()
                            .name("moat-client".into())
                            .spawn(move || serve(&front, &conn));
                    }
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => {}
                    Err(_) => return,
                }
            });
    }
    let reader = {
        let front = front.clone();
        std::thread::Builder::new()
            .name("moat-kernel-in".into())
            .spawn(move || read_kernel(&front))
    };
    let _ = control::send(&sync, &Message::Done, &[]);
    drop(sync);
    if let Ok(reader) = reader {
        let _ = reader.join();
    }
    let reported = front.routes().exited;
    let ended = crate::launch::wait_sandbox(&sandbox, reported);
    // The namespace outlives the container (a pod's does, for the next container): its
    // interface gets its addresses back.
    if let (Some(path), Some(give_back)) = (netns.as_deref(), give_back) {
        if let Err(e) = crate::network::give_back_in(path, give_back) {
            front.log.warn(&format!(
                "giving the addresses back to {}: {e}",
                path.display()
            ));
        }
    }
    match ended {
        Ok(status) => exit_like(status),
        Err(message) => {
            front.log.error(&message);
            ExitCode::from(crate::launch::EXIT_MOAT_FAILED)
        }
    }
}

/// The plan's file in the state directory, read (and removed) by the front.
pub const PLAN_FILE: &str = "plan";
/// The control socket's name in the state directory.
pub const CONTROL_SOCKET: &str = super::state::CONTROL_SOCKET;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_survives_the_trip_and_malformed_ones_are_errors() {
        let dir = std::env::temp_dir().join(format!("moat-front-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": "rootfs"},
                "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}
            })
            .to_string(),
        )
        .unwrap();
        let (spec, raw) = super::super::bundle::load(&dir).unwrap();
        let plan = super::super::bundle::plan(&dir, &spec, &raw, "ptrace").unwrap();
        let front = FrontSpec {
            kernel: plan.spec,
            served: plan.served,
            terminal: true,
            netns: Some(PathBuf::from("/run/netns/x")),
        };
        let bytes = front.encode();
        let back = FrontSpec::decode(&bytes).unwrap();
        assert_eq!(format!("{front:?}"), format!("{back:?}"));
        for n in 0..bytes.len() {
            assert!(FrontSpec::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn long_socket_paths_go_through_the_directory_fd() {
        let deep = std::env::temp_dir()
            .join(format!("moat-deep-{}", std::process::id()))
            .join("a".repeat(60))
            .join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join(CONTROL_SOCKET);
        let listener = listen(&path).unwrap();
        let client = connect(&path).unwrap();
        let server = rustix::net::accept(&listener).unwrap();
        control::send(&client, &Message::Done, &[]).unwrap();
        assert_eq!(control::recv(&server).unwrap().unwrap().0, Message::Done);
        let _ = std::fs::remove_dir_all(deep.parent().unwrap().parent().unwrap());
    }
}
