//! The OCI commands' work, runc's semantics: `create`, `start`, `kill`, `delete`, `state`,
//! `list`, `ps`, `exec`, `pause`/`resume`. The `moat` binary parses the command line and
//! calls these; each takes the container's lock for as long as it reads or changes it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::log::Log;
use super::state::{self, Container, Record, Status};
use super::{bundle, cgroup, console, front, hooks, OciError};
use crate::control::{self, ExecSpec, Message};
use moat_kernel::inspect::ProcessEntry;

/// Global options: `--root`, `--log`, `--log-format`, `--debug`.
#[derive(Debug)]
pub struct Globals {
    pub root: PathBuf,
    /// `--network`: whose network containers' TCP and UDP sockets use.
    pub network: moat_kernel::NetworkMode,
    pub log_path: Option<PathBuf>,
    pub log_json: bool,
    pub debug: bool,
    pub log: Log,
}

/// `create`'s options.
#[derive(Debug, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds N`: the caller's fds 3 .. 3+N, taken at the start of `main`; they
    /// become the container process's 3 .. 3+N.
    pub preserved_fds: Vec<OwnedFd>,
    /// `run` keeps its own terminal when there is no console socket.
    pub allow_inherited_terminal: bool,
}

fn sync_pair() -> Result<(OwnedFd, OwnedFd), OciError> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| OciError::io("creating a socket pair")(e.into()))
}

/// Write `pid` to `path` as runc does (no newline), through a temporary file.
fn write_pid_file(path: &Path, pid: i32) -> Result<(), OciError> {
    let tmp = path.with_extension("moat-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(OciError::io(format!(
            "writing the pid file {}",
            path.display()
        )))
}

/// Arguments that give a child `moat` process our log.
fn log_args(g: &Globals) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(p) = &g.log_path {
        args.push("--log".into());
        args.push(p.to_string_lossy().into_owned());
    }
    args.push("--log-format".into());
    args.push(if g.log_json { "json" } else { "text" }.into());
    if g.debug {
        args.push("--debug".into());
    }
    args
}

/// Clear close-on-exec on `fd` so that a child started by `Command` inherits it at its
/// number (`Command` closes nothing else itself; every other fd of ours is close-on-exec).
fn inheritable(fd: &OwnedFd) -> Result<i32, OciError> {
    use std::os::fd::AsRawFd;
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
        .map_err(|e| OciError::io("passing a socket")(e.into()))?;
    Ok(fd.as_raw_fd())
}

/// `create`: make the state, start the front (gofer and kernel confined, waiting for
/// `start`), run the createRuntime and createContainer hooks, write the pid file. Returns
/// the front (`run` waits for it).
pub fn create(g: &Globals, o: &CreateOptions) -> Result<Child, OciError> {
    state::check_id(&o.id)?;
    let bundle = std::fs::canonicalize(&o.bundle)
        .map_err(OciError::io(format!("bundle {}", o.bundle.display())))?;
    let (spec, raw) = bundle::load(&bundle)?;
    let mut plan = bundle::plan(&bundle, &spec, &raw, moat_platform::PLATFORMS[0])?;
    let mut warnings = std::mem::take(&mut plan.warnings);
    plan.spec.network = bundle::network_mode(
        g.network,
        plan.annotations
            .get(bundle::NETWORK_ANNOTATION)
            .map(String::as_str),
        plan.network_namespace,
        &mut warnings,
    );
    plan.warnings = warnings;
    if o.preserved_fds.len() > control::MAX_FDS {
        return Err(OciError::Failed(format!(
            "--preserve-fds {}: Moat passes at most {} fds into a container",
            o.preserved_fds.len(),
            control::MAX_FDS
        )));
    }
    let record = Record {
        id: o.id.clone(),
        bundle: bundle.clone(),
        rootfs: plan.rootfs.clone(),
        pid: 0,
        pid_start: 0,
        status: "creating".into(),
        created: state::now_rfc3339(),
        annotations: plan.annotations.clone(),
        hooks: plan.hooks.clone(),
        cgroups: Vec::new(),
        execs: Vec::new(),
    };
    let mut container = Container::create(&g.root, &o.id, record)?;
    match create_in(g, o, &mut container, plan) {
        Ok(child) => Ok(child),
        Err(e) => {
            if container.record.pid > 0 {
                kill_front(&container);
            }
            cgroup::remove(&container.record.cgroups);
            let _ = container.remove();
            Err(e)
        }
    }
}

fn create_in(
    g: &Globals,
    o: &CreateOptions,
    container: &mut Container,
    mut plan: bundle::Plan,
) -> Result<Child, OciError> {
    let pty = match (&o.console_socket, plan.terminal) {
        (Some(socket), true) => {
            let pty = console::open_pty(plan.console_size)?;
            console::send_master(socket, &pty)?;
            Some(pty)
        }
        (None, true) if !o.allow_inherited_terminal => {
            return Err(OciError::Failed(
                "process.terminal is set but no --console-socket was given".into(),
            ))
        }
        (Some(_), false) => {
            plan.warnings
                .push("--console-socket given but process.terminal is false: unused".into());
            None
        }
        _ => None,
    };
    for w in &plan.warnings {
        g.log.warn(w);
    }
    let (ours, theirs) = sync_pair()?;
    let fd = inheritable(&theirs)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(log_args(g))
        .arg("front")
        .arg("--sync-fd")
        .arg(fd.to_string())
        .arg(&container.dir)
        .env_clear();
    for k in ["RUST_BACKTRACE", "RUST_LOG"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    if let Some(pty) = &pty {
        let dup = |fd: &OwnedFd| -> Result<Stdio, OciError> {
            Ok(Stdio::from(
                fd.try_clone()
                    .map_err(OciError::io("duplicating the terminal"))?,
            ))
        };
        cmd.stdin(dup(&pty.slave)?)
            .stdout(dup(&pty.slave)?)
            .stderr(dup(&pty.slave)?);
    }
    let child = cmd
        .spawn()
        .map_err(OciError::io("starting the container's front"))?;
    drop(theirs);
    drop(pty);
    let pid = child.id() as i32;
    container.record.pid = pid;
    container.record.pid_start = state::proc_stat(pid).map_or(0, |(_, s)| s);
    // The front joins the container's cgroups before it starts anything.
    if let Some(path) = &plan.cgroups_path {
        let mut warnings = Vec::new();
        container.record.cgroups = cgroup::apply(path, plan.resources.as_ref(), pid, &mut warnings);
        for w in &warnings {
            g.log.warn(w);
        }
    } else if plan
        .resources
        .as_ref()
        .is_some_and(|r| r.memory().is_some() || r.cpu().is_some() || r.pids().is_some())
    {
        g.log
            .warn("linux.resources without linux.cgroupsPath: limits are not applied");
    }
    if !plan.spec.start_hooks.is_empty() {
        // What runc's startContainer hooks read: the state as it is when they run (the
        // container created, not yet running), its pid the container's (the front's).
        let mut state = container.state_json();
        state["status"] = "created".into();
        plan.spec.hook_state = state.to_string().into_bytes();
    }
    let front_spec = front::FrontSpec {
        kernel: plan.spec,
        served: plan.served,
        terminal: o.console_socket.is_some() && plan.terminal,
        netns: plan.netns,
    };
    let plan_path = container.dir.join(front::PLAN_FILE);
    std::fs::write(&plan_path, front_spec.encode())
        .map_err(OciError::io("writing the sandbox's plan"))?;
    // The fds to preserve (3, 4, ... of ours, as runc takes them) go to the front with "go";
    // it hands them to the kernel with `start`, and they become the program's 3, 4, ...
    let preserved: Vec<_> = o.preserved_fds.iter().map(AsFd::as_fd).collect();
    control::send(&ours, &Message::Start, &preserved)
        .map_err(OciError::io("talking to the container's front"))?;
    match control::recv(&ours)? {
        Some((Message::Done, _)) => {}
        Some((Message::Failed(text), _)) => return Err(OciError::Failed(text)),
        _ => {
            return Err(OciError::Failed(
                "the container's front died while starting the sandbox".into(),
            ))
        }
    }
    container.record.status = "created".into();
    container.save()?;
    let state = container.state_json();
    if let Some(h) = &plan.hooks {
        let mut create_runtime = h.prestart().clone().unwrap_or_default();
        create_runtime.extend(h.create_runtime().clone().unwrap_or_default());
        hooks::run(&create_runtime, &state, "createRuntime")?;
        if let Some(list) = h.create_container() {
            g.log.info(
                "createContainer hooks run on the host (a Moat sandbox has no host namespaces \
                 to run them in)",
            );
            hooks::run(list, &state, "createContainer")?;
        }
    }
    if let Some(path) = &o.pid_file {
        write_pid_file(path, pid)?;
    }
    Ok(child)
}

/// SIGKILL the front (the kernel and the gofer die with it) and wait until it is gone.
fn kill_front(c: &Container) {
    if state::alive(c.record.pid, c.record.pid_start) {
        if let Some(pid) = rustix::process::Pid::from_raw(c.record.pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    wait_gone(c, std::time::Duration::from_secs(10));
}

/// Wait until the front has ended (it is not our child: watch /proc).
fn wait_gone(c: &Container, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while state::alive(c.record.pid, c.record.pid_start) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}

fn request(c: &Container, m: &Message) -> Result<Message, OciError> {
    let conn = front::connect(&c.control_socket()).map_err(OciError::io(format!(
        "connecting to container {}",
        c.record.id
    )))?;
    control::send(&conn, m, &[]).map_err(OciError::io("talking to the container"))?;
    match control::recv(&conn)? {
        Some((reply, _)) => Ok(reply),
        None => Err(OciError::Failed("the container's front hung up".into())),
    }
}

/// `start`: let the program run; then the poststart hooks.
pub fn start(g: &Globals, id: &str) -> Result<(), OciError> {
    let mut c = Container::open(&g.root, id)?;
    match c.status() {
        Status::Created => {}
        Status::Running | Status::Paused => {
            return Err(OciError::WrongState(
                "cannot start an already running container".into(),
            ))
        }
        Status::Stopped => {
            return Err(OciError::WrongState(
                "cannot start a container that has stopped".into(),
            ))
        }
    }
    match request(&c, &Message::Start)? {
        Message::Started => {}
        Message::Failed(text) => return Err(OciError::Failed(text)),
        other => return Err(OciError::Failed(format!("unexpected answer {other:?}"))),
    }
    c.record.status = "running".into();
    c.save()?;
    if let Some(list) = c.record.hooks.as_ref().and_then(|h| h.poststart().clone()) {
        if let Err(e) = hooks::run(&list, &c.state_json(), "poststart") {
            g.log.warn(&e.to_string());
        }
    }
    Ok(())
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(text: &str) -> Result<i32, OciError> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let names = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("IOT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("POLL", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];
    if let Some(&(_, n)) = names.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if (0..=30).contains(&off) {
            return Ok(34 + off);
        }
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('-').parse().unwrap_or(-1)
        };
        if (0..=30).contains(&off) {
            return Ok(64 - off);
        }
    }
    Err(OciError::Failed(format!("unknown signal {text:?}")))
}

/// `kill`: a signal for the container's init (or every process with `all`).
pub fn kill(g: &Globals, id: &str, signo: i32, all: bool) -> Result<(), OciError> {
    let c = Container::open(&g.root, id)?;
    if c.status() == Status::Stopped {
        return Err(OciError::WrongState("container not running".into()));
    }
    if signo == libc::SIGKILL {
        // Needs no cooperation: the kernel and the gofer die with the front, which dies of
        // SIGKILL as init would.
        if let Some(pid) = rustix::process::Pid::from_raw(c.record.pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        return Ok(());
    }
    match request(&c, &Message::Signal { signo, all })? {
        Message::Done => Ok(()),
        Message::Failed(text) => Err(OciError::Failed(text)),
        other => Err(OciError::Failed(format!("unexpected answer {other:?}"))),
    }
}

/// `delete`: remove a stopped container (a created one is killed first, as runc does; a
/// running one only with `force`), running the poststop hooks.
pub fn delete(g: &Globals, id: &str, force: bool) -> Result<(), OciError> {
    let c = match Container::open(&g.root, id) {
        Ok(c) => c,
        Err(OciError::NotFound) if force => {
            // A directory left by a create that failed half-way goes too.
            if let Ok(dir) = state::container_dir(&g.root, id) {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match c.status() {
        Status::Stopped => {}
        Status::Created => kill_front(&c),
        Status::Running | Status::Paused if force => {
            // A frozen front cannot die: thaw it first.
            if c.status() == Status::Paused {
                if let Some(f) = cgroup::freezer(&c.record.cgroups) {
                    let thawed = if f.ends_with("cgroup.freeze") {
                        "0"
                    } else {
                        "THAWED"
                    };
                    let _ = std::fs::write(f, thawed);
                }
            }
            kill_front(&c);
        }
        s @ (Status::Running | Status::Paused) => {
            return Err(OciError::WrongState(format!(
                "cannot delete container {id} that is not stopped: {}",
                s.as_str()
            )))
        }
    }
    if let Some(list) = c.record.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        let mut state = c.state_json();
        state["status"] = "stopped".into();
        if let Err(e) = hooks::run(&list, &state, "poststop") {
            g.log.warn(&e.to_string());
        }
    }
    cgroup::remove(&c.record.cgroups);
    c.remove()
}

/// `state`: the OCI state document.
pub fn state(g: &Globals, id: &str) -> Result<serde_json::Value, OciError> {
    Ok(Container::open(&g.root, id)?.state_json())
}

/// `list`: every container's state.
pub fn list(g: &Globals) -> Vec<serde_json::Value> {
    state::list(&g.root)
        .into_iter()
        .filter_map(|id| Container::open(&g.root, &id).ok())
        .map(|c| c.state_json())
        .collect()
}

/// `ps`: the container's processes as the sandbox sees them (pid, parent, user, CPU time,
/// command), asked of Moat's kernel through the front, as runsc lists a sandbox's processes
/// (runc lists the host pids of its cgroup; a Moat sandbox's processes have none).
pub fn ps(g: &Globals, id: &str) -> Result<Vec<ProcessEntry>, OciError> {
    let c = Container::open(&g.root, id)?;
    if c.status() == Status::Stopped {
        return Ok(Vec::new());
    }
    let conn = ask(&c, &Message::Ps { id: 0 })?;
    let mut list = Vec::new();
    loop {
        match control::recv(&conn)? {
            Some((
                Message::Processes {
                    list: part, more, ..
                },
                _,
            )) => {
                list.extend(part);
                if !more {
                    return Ok(list);
                }
            }
            Some((Message::Failed(text), _)) => return Err(OciError::Failed(text)),
            _ => return Err(OciError::Failed("the container's front hung up".into())),
        }
    }
}

/// `events --stats`: the container's figures in runc's shape (`types.Stats`): memory, pids
/// and CPU from Moat's kernel; the limits from its cgroup where it has one.
pub fn stats(g: &Globals, id: &str) -> Result<serde_json::Value, OciError> {
    let c = Container::open(&g.root, id)?;
    if c.status() == Status::Stopped {
        return Err(OciError::WrongState("container not running".into()));
    }
    let conn = ask(&c, &Message::Stats { id: 0 })?;
    let s = match control::recv(&conn)? {
        Some((Message::StatsReport { stats, .. }, _)) => stats,
        Some((Message::Failed(text), _)) => return Err(OciError::Failed(text)),
        _ => return Err(OciError::Failed("the container's front hung up".into())),
    };
    let read = |file: &str| {
        c.record.cgroups.iter().find_map(|dir| {
            std::fs::read_to_string(dir.join(file))
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    // The smaller of Moat's own limit and the host cgroup's (whose "no limit" is huge).
    let limit = [
        Some(s.memory_limit),
        read("memory.limit_in_bytes"),
        read("memory.max"),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(u64::MAX);
    let pids_limit = read("pids.max").unwrap_or(0);
    let cpu = s.cpu.as_nanos() as u64;
    Ok(serde_json::json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {
                "usage": {"total": cpu, "percpu": [], "kernel": 0, "user": cpu},
                "throttling": {}
            },
            "memory": {
                "usage": {
                    "usage": s.memory_usage,
                    "limit": limit,
                    "failcnt": s.oom_kills
                },
                "swap": {"usage": 0, "limit": 0},
                "cache": 0,
                "raw": {"oom_kill": s.oom_kills, "allocated": s.memory_allocated}
            },
            "pids": {"current": s.tasks, "limit": pids_limit},
            "blkio": {},
            "hugetlb": {}
        }
    }))
}

/// Send a question to the container's front; the connection its answer comes on (which
/// gives up after 10 s rather than hang on a sandbox that cannot answer).
fn ask(c: &Container, m: &Message) -> Result<OwnedFd, OciError> {
    if c.status() == Status::Paused {
        return Err(OciError::WrongState(
            "container is paused: its kernel, frozen with it, cannot answer".into(),
        ));
    }
    let conn = front::connect(&c.control_socket()).map_err(OciError::io(format!(
        "connecting to container {}",
        c.record.id
    )))?;
    rustix::net::sockopt::set_socket_timeout(
        &conn,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(10)),
    )
    .map_err(|e| OciError::io("talking to the container")(e.into()))?;
    control::send(&conn, m, &[]).map_err(OciError::io("talking to the container"))?;
    Ok(conn)
}

/// `pause` (`freeze`: true) and `resume`: freeze or thaw the container's cgroup (every
/// host process of the sandbox stops where it is).
pub fn freeze(g: &Globals, id: &str, freeze: bool) -> Result<(), OciError> {
    let c = Container::open(&g.root, id)?;
    match (c.status(), freeze) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Paused, true) => {
            return Err(OciError::WrongState("container already paused".into()))
        }
        (Status::Running, false) => {
            return Err(OciError::WrongState("container not paused".into()))
        }
        _ => return Err(OciError::WrongState("container not running".into())),
    }
    let Some(file) = cgroup::freezer(&c.record.cgroups) else {
        return Err(OciError::Unsupported(
            if freeze { "pause" } else { "resume" },
            "the container has no freezer cgroup (no linux.cgroupsPath, or no freezer here)",
        ));
    };
    let value = match (file.ends_with("cgroup.freeze"), freeze) {
        (true, true) => "1",
        (true, false) => "0",
        (false, true) => "FROZEN",
        (false, false) => "THAWED",
    };
    std::fs::write(&file, value).map_err(OciError::io(format!("writing {}", file.display())))
}

/// `exec`'s options.
#[derive(Debug)]
pub struct ExecOptions {
    pub id: String,
    pub process: ExecSpec,
    pub terminal: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
}

/// `exec`: start a process in a running container. Detached, a `moat exec-front` process
/// stays for it (its pid in the pid file; it ends with the process's status); otherwise
/// this process does, and the returned code is the process's.
pub fn exec(g: &Globals, o: &ExecOptions) -> Result<u8, OciError> {
    let socket = {
        let c = Container::open(&g.root, &o.id)?;
        match c.status() {
            Status::Running => {}
            Status::Paused => {
                return Err(OciError::WrongState(
                    "cannot exec in a paused container".into(),
                ))
            }
            Status::Created => {
                return Err(OciError::WrongState(
                    "cannot exec in a created container: start it first".into(),
                ))
            }
            Status::Stopped => {
                return Err(OciError::WrongState(
                    "cannot exec in a stopped container".into(),
                ))
            }
        }
        c.control_socket()
    };
    let pty = match (&o.console_socket, o.terminal) {
        (Some(sock), true) => {
            let pty = console::open_pty(None)?;
            console::send_master(sock, &pty)?;
            Some(pty)
        }
        (None, true) if o.detach => {
            return Err(OciError::Failed(
                "cannot allocate a terminal for a detached exec without --console-socket".into(),
            ))
        }
        _ => None,
    };
    if !o.detach {
        let conn = exec_start(&socket, &o.process, pty.as_ref().map(|p| &p.slave))?;
        drop(pty);
        if let Some(path) = &o.pid_file {
            write_pid_file(path, std::process::id() as i32)?;
        }
        return Ok(exec_wait(&conn, &g.log).shell_code());
    }
    let (ours, theirs) = sync_pair()?;
    let fd = inheritable(&theirs)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(log_args(g))
        .arg("exec-front")
        .arg("--sync-fd")
        .arg(fd.to_string())
        .arg(&socket)
        .env_clear();
    if let Some(pty) = &pty {
        let dup = |fd: &OwnedFd| -> Result<Stdio, OciError> {
            Ok(Stdio::from(
                fd.try_clone()
                    .map_err(OciError::io("duplicating the terminal"))?,
            ))
        };
        cmd.stdin(dup(&pty.slave)?)
            .stdout(dup(&pty.slave)?)
            .stderr(dup(&pty.slave)?);
    }
    let child = cmd
        .spawn()
        .map_err(OciError::io("starting the exec process"))?;
    drop(theirs);
    drop(pty);
    control::send(
        &ours,
        &Message::Exec {
            id: 0,
            spec: o.process.clone(),
        },
        &[],
    )
    .map_err(OciError::io("talking to the exec process"))?;
    match control::recv(&ours)? {
        Some((Message::Done, _)) => {}
        Some((Message::Failed(text), _)) => return Err(OciError::Failed(text)),
        _ => return Err(OciError::Failed("the exec process died".into())),
    }
    let pid = child.id() as i32;
    if let Some(path) = &o.pid_file {
        write_pid_file(path, pid)?;
    }
    if let Ok(mut c) = Container::open(&g.root, &o.id) {
        c.record
            .execs
            .retain(|&p| Path::new(&format!("/proc/{p}")).exists());
        c.record.execs.push(pid);
        let _ = c.save();
    }
    Ok(0)
}

/// Ask the front at `socket` to start `spec` with our stdio (or `tty`); returns the
/// connection once the process runs.
fn exec_start(socket: &Path, spec: &ExecSpec, tty: Option<&OwnedFd>) -> Result<OwnedFd, OciError> {
    let conn = front::connect(socket).map_err(OciError::io("connecting to the container"))?;
    let stdio = [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ];
    let fds: Vec<_> = match tty {
        Some(t) => vec![t.as_fd(); 3],
        None => stdio.to_vec(),
    };
    control::send(
        &conn,
        &Message::Exec {
            id: 0,
            spec: spec.clone(),
        },
        &fds,
    )
    .map_err(OciError::io("talking to the container"))?;
    match control::recv(&conn)? {
        Some((Message::ExecStarted { .. }, _)) => Ok(conn),
        Some((Message::ExecFailed { message, .. }, _)) => Err(OciError::Failed(message)),
        _ => Err(OciError::Failed("the container hung up".into())),
    }
}

/// Pass our signals to the exec'd process and wait for its end.
fn exec_wait(conn: &OwnedFd, log: &Log) -> crate::control::Status {
    if let (Ok(dup), Ok(mut signals)) = (
        rustix::io::fcntl_dupfd_cloexec(conn, 3),
        signal_hook::iterator::Signals::new(front::FORWARDED_SIGNALS),
    ) {
        let _ = std::thread::Builder::new()
            .name("moat-exec-signals".into())
            .spawn(move || {
                for signo in signals.forever() {
                    let m = Message::ExecSignal { id: 0, signo };
                    if control::send(&dup, &m, &[]).is_err() {
                        return;
                    }
                }
            });
    }
    loop {
        match control::recv(conn) {
            Ok(Some((Message::ExecExited { status, .. }, _))) => return status,
            Ok(Some((Message::ExecFailed { message, .. }, _))) => {
                log.error(&message);
                return crate::control::Status::Exited(i32::from(crate::launch::EXIT_MOAT_FAILED));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                log.error("the container ended before the exec'd process");
                return crate::control::Status::Signaled(libc::SIGKILL);
            }
        }
    }
}

/// `moat exec-front`: the process a detached exec leaves, ending as the exec'd one ends.
pub fn exec_front_main(socket: &Path, sync_fd: i32, log: &Log) -> std::process::ExitCode {
    let sync = moat_platform::confine::take_inherited_fds(&[sync_fd])
        .pop()
        .flatten();
    let Some(sync) = sync else {
        log.error("`moat exec-front` is started by `moat exec`, not by hand");
        return std::process::ExitCode::from(crate::launch::EXIT_MOAT_FAILED);
    };
    let _ = rustix::process::setsid();
    let Ok(Some((Message::Exec { spec, .. }, _))) = control::recv(&sync) else {
        return std::process::ExitCode::from(crate::launch::EXIT_MOAT_FAILED);
    };
    // Our stdio is the exec'd process's (a terminal's slave, or the caller's).
    let conn = match exec_start(socket, &spec, None) {
        Ok(conn) => conn,
        Err(e) => {
            let _ = control::send(&sync, &Message::Failed(e.to_string()), &[]);
            return std::process::ExitCode::from(crate::launch::EXIT_MOAT_FAILED);
        }
    };
    let _ = control::send(&sync, &Message::Done, &[]);
    drop(sync);
    let status = exec_wait(&conn, log);
    front_exit(status)
}

/// End as `status` says (see the front).
fn front_exit(status: crate::control::Status) -> std::process::ExitCode {
    match status {
        crate::control::Status::Exited(code) => std::process::ExitCode::from(code as u8),
        crate::control::Status::Signaled(signo) => {
            if signo == libc::SIGKILL {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            }
            let _ = signal_hook::low_level::emulate_default_handler(signo);
            std::process::ExitCode::from(status.shell_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("SIGRTMIN+2").unwrap(), 36);
        assert_eq!(parse_signal("RTMAX").unwrap(), 64);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("NOPE").is_err());
    }
}
