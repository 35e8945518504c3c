//! `moat do`: gather what the sandbox inherits from the caller (program, arguments,
//! environment, stdio, working directory, credentials, limits) and run the kernel.
//!
//! This is the runtime side: the one place before the sandbox starts where Moat reads a host
//! file (the program). From issue "Filesystems" on, the gofer serves files instead.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use moat_abi::Rlimit;
use moat_kernel::{
    AuxFacts, Credentials, ExitStatus, KernelError, LoadError, SandboxConfig, RLIMIT_COUNT,
};

use crate::DoArgs;

/// Exit codes, following the shell: 126 found but cannot run, 127 not found, 125 Moat failed.
const EXIT_CANNOT_RUN: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;
const EXIT_MOAT_FAILED: u8 = 125;

/// Default size of the memory file's range: the ceiling on the sandbox's memory.
const MEMORY_FILE_SIZE: u64 = 64 << 30;

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("moat: {msg}");
    ExitCode::from(code)
}

/// Find the program like a shell does: a name with a '/' is a path, others are looked up in
/// `PATH`.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn init_logging(args: &DoArgs) -> Result<(), String> {
    use tracing_subscriber::fmt;
    match &args.debug_log {
        Some(path) => {
            let file =
                std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            fmt()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .init();
        }
        None => fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::ERROR)
            .init(),
    }
    Ok(())
}

fn host_limits() -> [Rlimit; RLIMIT_COUNT] {
    use rustix::process::Resource as R;
    let resources = [
        R::Cpu,
        R::Fsize,
        R::Data,
        R::Stack,
        R::Core,
        R::Rss,
        R::Nproc,
        R::Nofile,
        R::Memlock,
        R::As,
        R::Locks,
        R::Sigpending,
        R::Msgqueue,
        R::Nice,
        R::Rtprio,
        R::Rttime,
    ];
    let mut limits = [Rlimit::default(); RLIMIT_COUNT];
    for (i, r) in resources.into_iter().enumerate() {
        let l = rustix::process::getrlimit(r);
        limits[i] = Rlimit {
            cur: l.current.unwrap_or(u64::MAX),
            max: l.maximum.unwrap_or(u64::MAX),
        };
    }
    limits
}

fn cpu_mask() -> Vec<u8> {
    let set = rustix::thread::sched_getaffinity(None).unwrap_or_else(|_| {
        let mut s = rustix::thread::CpuSet::new();
        s.set(0);
        s
    });
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&i| set.is_set(i))
        .collect();
    let highest = cpus.last().copied().unwrap_or(0);
    // Whole 64-bit words, as Linux's cpumask is.
    let mut mask = vec![0u8; (highest / 64 + 1) * 8];
    for c in cpus {
        mask[c / 8] |= 1 << (c % 8);
    }
    mask
}

fn stdio() -> Vec<OwnedFd> {
    // Donate duplicates: the kernel owns them; a closed host fd is simply absent in the sandbox.
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

/// Start the gofer for the host's root as a separate process: `moat gofer`, re-executed from
/// our own binary with its end of a `SOCK_SEQPACKET` pair as stdin.
fn start_gofer(
    mounts: &[String],
) -> Result<(std::process::Child, std::sync::Arc<moat_gofer::GoferClient>), String> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| e.to_string())?;
    let child = std::process::Command::new("/proc/self/exe")
        .arg("gofer")
        .args(mounts.iter().flat_map(|m| ["--mount", m.as_str()]))
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let client = moat_gofer::GoferClient::connect(ours).map_err(|e| e.to_string())?;
    Ok((child, std::sync::Arc::new(client)))
}

/// `--volume HOST:SANDBOX[:ro]` options: the kernel's bind mounts (gofer mounts 1, 2, ...)
/// and the gofer's `--mount` arguments for them.
fn parse_volumes(specs: &[String]) -> Result<(Vec<moat_kernel::Volume>, Vec<String>), String> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (rest, read_only) = match spec.strip_suffix(":ro") {
            Some(r) => (r, true),
            None => (spec.strip_suffix(":rw").unwrap_or(spec), false),
        };
        let Some((host, sandbox)) = rest.split_once(':') else {
            return Err(format!(
                "--volume {spec}: expected HOST_DIR:SANDBOX_DIR[:ro]"
            ));
        };
        if !sandbox.starts_with('/') {
            return Err(format!(
                "--volume {spec}: the sandbox path must be absolute"
            ));
        }
        let host =
            std::fs::canonicalize(host).map_err(|e| format!("--volume {spec}: {host}: {e}"))?;
        if !host.is_dir() {
            return Err(format!(
                "--volume {spec}: {} is not a directory",
                host.display()
            ));
        }
        let host = host
            .to_str()
            .ok_or_else(|| format!("--volume {spec}: path is not UTF-8"))?;
        mounts.push(if read_only {
            format!("{host}:ro")
        } else {
            host.to_string()
        });
        volumes.push(moat_kernel::Volume {
            path: sandbox.as_bytes().to_vec(),
            mount: i as u64 + 1,
            read_only,
        });
    }
    Ok((volumes, mounts))
}

/// `moat gofer`: serve the mounts on the socket that is our stdin until the kernel hangs up.
pub fn run_gofer(mounts: &[String]) -> ExitCode {
    let mounts: Vec<moat_gofer::Mount> = mounts
        .iter()
        .map(|m| match m.strip_suffix(":ro") {
            Some(path) => moat_gofer::Mount {
                host_path: PathBuf::from(path),
                read_only: true,
            },
            None => moat_gofer::Mount {
                host_path: PathBuf::from(m),
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
    match moat_gofer::serve(&sock, &mounts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_MOAT_FAILED, &format!("gofer: {e}")),
    }
}

/// `moat do`.
pub fn run_do(args: &DoArgs) -> ExitCode {
    if let Err(e) = init_logging(args) {
        return fail(EXIT_MOAT_FAILED, &format!("cannot open the debug log {e}"));
    }
    let program = PathBuf::from(&args.command[0]);
    let shown = program.display().to_string();
    let Some(path) = resolve(&program) else {
        return fail(
            EXIT_NOT_FOUND,
            &format!("{shown}: No such file or directory"),
        );
    };
    // Whether it exists is the sandbox's question (a volume or --cwd may change the answer).
    let (volumes, mut gofer_mounts) = match parse_volumes(&args.volumes) {
        Ok(v) => v,
        Err(e) => return fail(2, &e),
    };
    gofer_mounts.insert(0, "/:ro".to_string());
    let (gofer, client) = match start_gofer(&gofer_mounts) {
        Ok(g) => g,
        Err(e) => return fail(EXIT_MOAT_FAILED, &format!("cannot start the gofer: {e}")),
    };
    let Some(platform) = moat_platform::by_name(&args.platform) else {
        return fail(2, &format!("unknown platform {}", args.platform));
    };

    let (hwcap, hwcap2) = rustix::param::linux_hwcap();
    let creds = Credentials {
        uid: rustix::process::getuid().as_raw(),
        euid: rustix::process::geteuid().as_raw(),
        suid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        egid: rustix::process::getegid().as_raw(),
        sgid: rustix::process::getegid().as_raw(),
        fsuid: rustix::process::geteuid().as_raw(),
        fsgid: rustix::process::getegid().as_raw(),
        groups: rustix::process::getgroups()
            .unwrap_or_default()
            .iter()
            .map(|g| g.as_raw())
            .collect(),
    };
    let aux = AuxFacts {
        hwcap: hwcap as u64,
        hwcap2: hwcap2 as u64,
        minsigstksz: rustix::param::linux_minsigstksz() as u64,
        uid: creds.uid,
        euid: creds.euid,
        gid: creds.gid,
        egid: creds.egid,
    };
    let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(umask);

    let config = SandboxConfig {
        platform,
        filename: path.as_os_str().as_bytes().to_vec(),
        gofer: Some(client.clone()),
        argv: args.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: std::env::vars_os()
            .map(|(k, v)| {
                let mut kv: OsString = k;
                kv.push("=");
                kv.push(v);
                kv.into_vec()
            })
            .collect(),
        stdio: stdio(),
        cwd: match &args.cwd {
            Some(dir) => dir.as_os_str().as_bytes().to_vec(),
            None => std::env::current_dir()
                .map_or_else(|_| b"/".to_vec(), |p| p.into_os_string().into_vec()),
        },
        cwd_required: args.cwd.is_some(),
        volumes,
        creds,
        umask: umask.as_raw_mode(),
        limits: host_limits(),
        hostname: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        aux,
        strace: args.strace,
        memory_size: MEMORY_FILE_SIZE,
        cpu_mask: cpu_mask(),
        forwarded_signals: forward_signals(),
    };

    let result = moat_kernel::run(config);
    if args.platform == "systrap" {
        // How the platform's waits ended: spinning or sleeping (see `moat_platform::systrap`).
        let stats = moat_platform::systrap::stats();
        tracing::info!("systrap waits: {stats:?}");
        if std::env::var_os("MOAT_SYSTRAP_STATS").is_some() {
            eprintln!("moat: systrap waits: {stats:?}");
        }
    }
    // The sandbox is over: hang up on the gofer, which then exits.
    client.hang_up();
    let mut gofer = gofer;
    let _ = gofer.wait();
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
        Err(KernelError::Cwd(e)) => {
            let dir = args.cwd.as_deref().unwrap_or(Path::new("."));
            fail(
                EXIT_MOAT_FAILED,
                &format!("cannot change to {}: {}", dir.display(), strerror(e)),
            )
        }
        Err(e) => fail(EXIT_MOAT_FAILED, &format!("sandbox failed: {e}")),
    }
}

/// The C library's wording for an errno, as a shell would print it.
/// Catch the signals a user or a supervisor sends to `moat` (^C, `kill`, a hang-up) and hand
/// them to the kernel, which passes them to the sandbox's init: the program decides, as it
/// would natively. (A second ^C while init ignores it does nothing; SIGKILL still ends Moat.)
fn forward_signals() -> Option<std::sync::mpsc::Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGWINCH};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGWINCH])
            .ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("moat-host-signals".into())
        .spawn(move || {
            for signo in signals.forever() {
                if tx.send(signo).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    Some(rx)
}

fn strerror(e: moat_abi::Errno) -> String {
    let text = std::io::Error::from_raw_os_error(e.0).to_string();
    // "No such file or directory (os error 2)" → "No such file or directory"
    text.split(" (os error").next().unwrap_or(&text).to_string()
}
