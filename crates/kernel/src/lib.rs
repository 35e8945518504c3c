//! Moat's application kernel: it serves every system call of the sandboxed program with its
//! own implementation of the Linux ABI (tasks, address spaces, files, time, futexes).
//!
//! The kernel never forwards an application system call to the host. It makes host calls only
//! on objects it owns: the memory file, the stubs (through the platform), and host fds that
//! were donated to it (stdio). The syscall logic contains no `unsafe` code.

#![forbid(unsafe_code)]

pub mod capability;
pub mod exit;
pub mod fs;
pub mod futex;
pub mod inspect;
pub mod loader;
pub mod mm;
pub mod net;
pub mod oom;
pub mod process;
pub mod signal;
pub mod strace;
pub mod syscalls;
pub mod task;
pub mod timer;
pub mod vdso;
pub mod vfs;
pub mod wait;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use moat_abi::Rlimit;
use moat_memory::{MemoryError, MemoryFile};
use moat_platform::{Platform, PlatformError};

pub use loader::{AuxFacts, LoadError};
pub use net::ext::InterfaceConfig;
pub use net::NetworkMode;
pub use task::ExitStatus;

/// Number of resource limits (`RLIM_NLIMITS`).
pub const RLIMIT_COUNT: usize = 16;

/// The application's credentials (per thread, as in Linux).
/// Each carries its own capability sets, which the ID changes, `execve`, `capset` and `prctl`
/// move by Linux's rules (`capability.rs`); privilege checks ask `Credentials::has`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    /// The IDs file permission checks use: they follow the effective IDs unless
    /// `setfsuid`/`setfsgid` set them apart.
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    pub caps: capability::CapSets,
    /// `PR_SET_SECUREBITS` flags (`capability::SECBIT_*`).
    pub securebits: u32,
}

/// A bind mount of a directory the gofer serves.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Where it appears in the sandbox (absolute).
    pub path: Vec<u8>,
    /// The gofer's mount number.
    pub mount: u64,
    pub read_only: bool,
}

/// A fresh tmpfs mounted in the sandbox (an OCI `tmpfs` mount).
#[derive(Clone, Debug)]
pub struct TmpfsMount {
    /// Where it appears in the sandbox (absolute).
    pub path: Vec<u8>,
    pub mode: u32,
    pub read_only: bool,
}

/// A file written into the root's overlay before the program starts: an OCI bind mount of a
/// single host file arrives as a copy (the gofer serves directories, not single files).
#[derive(Clone, Debug)]
pub struct SeedFile {
    /// Where it appears in the sandbox (absolute).
    pub path: Vec<u8>,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Everything needed to start a sandbox with one program in it.
pub struct SandboxConfig {
    pub platform: Arc<dyn Platform>,
    /// The program to run: a path in the sandbox's tree (also `AT_EXECFN`).
    pub filename: Vec<u8>,
    /// The gofer serving the host's root, which becomes the lower layer of the sandbox's root
    /// overlay; without one the root is an empty tmpfs.
    pub gofer: Option<Arc<moat_gofer::GoferClient>>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    /// Host fds donated as the application's fds 0, 1 and 2.
    pub stdio: Vec<OwnedFd>,
    /// Host fds donated as init's fds 3, 4, ... (OCI `create --preserve-fds`), made Moat
    /// files as stdio is.
    pub preserved_fds: Vec<OwnedFd>,
    pub cwd: Vec<u8>,
    /// The working directory was asked for (`--cwd`): its absence is an error, not `/`.
    pub cwd_required: bool,
    /// Host directories the gofer serves as mounts 1, 2, ... bind-mounted into the tree.
    pub volumes: Vec<Volume>,
    /// The root is mounted read-only (an OCI bundle's `root.readonly`).
    pub root_read_only: bool,
    /// Fresh tmpfs mounts, made after the volumes.
    pub tmpfs_mounts: Vec<TmpfsMount>,
    /// Files written into the root's overlay before the program starts.
    pub seed_files: Vec<SeedFile>,
    /// Start init with NO_NEW_PRIVS set (OCI `process.noNewPrivileges`).
    pub no_new_privs: bool,
    /// Look a `filename` without '/' up in the `PATH` of `envp`, inside the sandbox's tree
    /// (as `execvp` does; an OCI `process.args[0]` is such a name).
    pub search_path: bool,
    /// Called once init is loaded, just before its first instruction runs (an OCI `start`
    /// runs its `startContainer` hooks in the sandbox, then learns that the program was found
    /// and loaded). An error ends the sandbox before init runs ([`KernelError::Start`]).
    pub on_start: Option<Box<dyn FnOnce() -> Result<(), String> + Send>>,
    pub creds: Credentials,
    pub umask: u32,
    pub limits: [Rlimit; RLIMIT_COUNT],
    pub hostname: String,
    pub aux: AuxFacts,
    /// Print every system call, strace-style, on stderr.
    pub strace: bool,
    /// Size of the memory file's address range (the sandbox's memory ceiling).
    pub memory_size: u64,
    /// The most memory the sandbox may use (`u64::MAX`: no limit of its own): beyond it page
    /// faults are served by killing the largest process (`oom.rs`).
    pub memory_limit: u64,
    /// CPUs the sandbox reports (`sched_getaffinity`), as a bitmask in bytes.
    pub cpu_mask: Vec<u8>,
    /// Signals sent to `moat` itself (^C on the terminal, `kill`), to pass on to the
    /// sandbox's init as if sent from outside the sandbox.
    pub forwarded_signals: Option<std::sync::mpsc::Receiver<HostSignal>>,
    /// Processes to start in the running sandbox (OCI `exec`).
    pub exec_calls: Option<std::sync::mpsc::Receiver<ExecCall>>,
    /// Whose network TCP and UDP sockets use.
    pub network: net::NetworkMode,
    /// Questions about the sandbox from outside (OCI `ps`, `events --stats`).
    pub inspect: Option<std::sync::mpsc::Receiver<inspect::Inspect>>,
    /// The external interface (`--network=sandbox`): its configuration and a packet socket
    /// on it. `None`: loopback only.
    pub external: Option<(InterfaceConfig, OwnedFd)>,
    /// The host's interfaces, shown to programs with `--network=host` (read by the runtime
    /// at start).
    pub host_interfaces: Vec<net::iface::Iface>,
}

/// A signal sent to the sandbox from the host (`moat do` caught it, or `moat kill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostSignal {
    pub signo: i32,
    pub target: SignalTarget,
}

/// Whom a [`HostSignal`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalTarget {
    Init,
    /// Every process of the sandbox (`moat kill --all`).
    All,
    /// One process (an exec'd one, by its pid in the sandbox).
    Process(i32),
}

/// A process to start in the running sandbox from outside (OCI `exec`).
pub struct ExecCall {
    pub filename: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub creds: Credentials,
    pub umask: u32,
    pub search_path: bool,
    pub no_new_privs: bool,
    /// Host fds donated as its fds 0, 1 and 2.
    pub stdio: Vec<OwnedFd>,
    /// Told the new process's pid once it is loaded, or why it could not start.
    pub started: Option<ExecStarted>,
    /// Told its status when it ends.
    pub exited: Option<Box<dyn FnOnce(ExitStatus) + Send>>,
}

/// Failures that end the sandbox (the application's own errors are errnos, never these).
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// What had to happen before init's first instruction failed (a `startContainer` hook).
    #[error("{0}")]
    Start(String),
    #[error("setting up the standard file descriptors: {0}")]
    Stdio(moat_abi::Errno),
    #[error("setting up the root filesystem: {0}")]
    Root(moat_abi::Errno),
    #[error("cannot change to the working directory: {0}")]
    Cwd(moat_abi::Errno),
    #[error("mapping a forked address space: {0}")]
    Attach(moat_abi::Errno),
}

/// State shared by every task of a sandbox.
pub struct Kernel {
    pub memory: Arc<MemoryFile>,
    pub platform: Arc<dyn Platform>,
    /// The sandbox's host and domain names (`uname`; `sethostname`, `setdomainname`).
    pub uts: Mutex<syscalls::system::Uts>,
    pub strace: bool,
    pub cpu_mask: Vec<u8>,
    pub futexes: futex::FutexTable,
    /// When the sandbox started: its uptime (`sysinfo`, `/proc/uptime`).
    pub boot: std::time::Instant,
    /// System calls already reported as unimplemented (each is logged once).
    unimplemented: Mutex<HashSet<u64>>,
    /// The pid namespace and process tree.
    pub tree: Mutex<process::ProcessTree>,
    /// Host threads running tasks other than init (joined at the end of the sandbox).
    pub threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Init's exit status, once it has died.
    pub exit_status: Mutex<Option<ExitStatus>>,
    /// Completed when init dies: the sandbox is over.
    pub ended: task::Completion,
    /// What every exec passes in the auxiliary vector about the host CPU.
    pub aux: AuxFacts,
    /// Deadlines that send signals (`alarm`, `setitimer`).
    pub timers: Arc<timer::Timers>,
    /// Bound unix sockets, by socket file and by abstract name.
    pub unix_names: Arc<net::unix::UnixNames>,
    /// The vDSO every program gets, and the clock line it reads.
    pub vdso: Arc<vdso::Vdso>,
    /// Pseudo-terminals (`/dev/ptmx`, `/dev/pts`).
    pub ptys: Arc<fs::pty::PtyTable>,
    /// The root of the sandbox's file tree (set when init starts; exec'd processes share it).
    pub root: Mutex<Option<vfs::VfsPath>>,
    /// Processes started from outside (OCI `exec`), by pid: whom to tell of their end.
    pub exec_watchers: Mutex<std::collections::HashMap<i32, ExecWatcher>>,
    /// The sandbox's own network: TCP and UDP ports on its loopback interface.
    pub inet: Arc<net::inet::Stack>,
    /// Whose network TCP and UDP sockets use: the sandbox's stack, or the host's.
    pub network: net::NetworkMode,
    /// The OOM killer's state (a sandbox with a memory limit).
    pub oom: oom::OomState,
}

/// Told the pid of a process started from outside once it is loaded, or why it could not.
pub type ExecStarted = Box<dyn FnOnce(Result<i32, KernelError>) + Send>;

/// Told the status of a process started from outside when it ends.
pub type ExecWatcher = Box<dyn FnOnce(ExitStatus) + Send>;

impl Kernel {
    /// Log an unimplemented system call (or variant) the first time it is seen.
    pub fn report_unimplemented(&self, nr: u64, what: &str) {
        let mut seen = self
            .unimplemented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.insert(nr) {
            tracing::warn!("unimplemented syscall {what} ({nr}): returning ENOSYS");
        }
    }

    /// Log, once per `key`, a request Moat refuses though Linux might serve it (a kind of
    /// socket it does not make), and the errno the application gets instead.
    pub fn report_unsupported(&self, key: u64, what: &str, errno: moat_abi::Errno) {
        let mut seen = self
            .unimplemented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.insert(key) {
            tracing::warn!("unsupported {what}: returning {errno:?}");
        }
    }
}

/// A random 64-bit number from the host's entropy (for ASLR, `AT_RANDOM`).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    u64::from_le_bytes(b)
}

/// Fill `buf` from the host's entropy pool (the kernel's own randomness source).
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            // getrandom without flags fails only on bad arguments; never leave zeros silently.
            Err(e) => panic!("host getrandom failed: {e}"),
        }
    }
}

/// The sandbox's file tree: an overlay of an in-memory tmpfs over the host's root (served by
/// the gofer), or just a tmpfs without a gofer; `/dev` on top. The working directory is the
/// one given if it exists in the tree (a tmpfs root gets it created), else `/`.
pub fn sandbox_fs(
    config: &SandboxConfig,
    kernel: &Arc<Kernel>,
) -> Result<vfs::FsContext, KernelError> {
    let boot = kernel.boot;
    let upper = fs::tmpfs::Tmpfs::new_root_in(kernel.memory.clone(), 0o755, 0, 0);
    let (root, fs_type): (vfs::InodeRef, _) = match &config.gofer {
        Some(client) => {
            let lower =
                fs::gofer::GoferInode::root(client.clone(), kernel.memory.clone(), 0, false)
                    .map_err(KernelError::Root)?;
            (fs::overlay::OverlayFs::new_root(lower, upper), "overlay")
        }
        None => (upper, "tmpfs"),
    };
    let mount = vfs::Mount::new_root(root, fs_type, config.root_read_only);
    let root_path = vfs::VfsPath::root_of(&mount);
    let ctx = vfs::FsContext {
        root: root_path.clone(),
        cwd: root_path.clone(),
        umask: config.umask,
    };
    let creds = &config.creds;
    let ensure_dir =
        |at: &vfs::VfsPath, name: &[u8], mode: u32, uid: u32, gid: u32| -> Option<vfs::VfsPath> {
            let dentry = match at.dentry.child(name) {
                Ok(d) => d,
                Err(_) => {
                    let inode = at
                        .inode()
                        .create(name, &vfs::NewNode::Directory { mode }, uid, gid)
                        .ok()?;
                    at.dentry.add_child(name, inode)
                }
            };
            Some(vfs::VfsPath {
                mount: at.mount.clone(),
                dentry,
            })
        };
    ensure_dir(&root_path, b"tmp", 0o1777, 0, 0);
    let process = process_info(config, boot);
    if let Some(proc_dir) = ensure_dir(&root_path, b"proc", 0o555, 0, 0) {
        let procfs = fs::proc::new_procfs(&process, &Arc::downgrade(kernel));
        vfs::Mount::new_at(&proc_dir, procfs, "proc", false).map_err(KernelError::Root)?;
    }
    if let Some(sys_dir) = ensure_dir(&root_path, b"sys", 0o555, 0, 0) {
        let sysfs = fs::sys::new_sysfs(&process.cpus);
        vfs::Mount::new_at(&sys_dir, sysfs, "sysfs", true).map_err(KernelError::Root)?;
    }
    if let Some(dev) = ensure_dir(&root_path, b"dev", 0o755, 0, 0) {
        let devfs = vfs::Mount::new_at(
            &dev,
            fs::dev::new_devfs(kernel.memory.clone()),
            "devtmpfs",
            false,
        )
        .map_err(KernelError::Root)?;
        // devpts on /dev/pts, inside the devtmpfs just mounted.
        if let Some(pts) = ensure_dir(&vfs::VfsPath::root_of(&devfs), b"pts", 0o755, 0, 0) {
            let devpts = fs::pty::PtsDir::root(kernel.ptys.clone());
            vfs::Mount::new_at(&pts, devpts, "devpts", false).map_err(KernelError::Root)?;
        }
    }
    for volume in &config.volumes {
        let client = config
            .gofer
            .as_ref()
            .ok_or(KernelError::Root(moat_abi::Errno::ENODEV))?;
        // The mount point is made in the overlay as needed (the host's root is unchanged).
        let mut at = root_path.clone();
        for part in volume.path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            at = ensure_dir(&at, part, 0o755, 0, 0)
                .ok_or(KernelError::Root(moat_abi::Errno::ENOTDIR))?;
        }
        let root = fs::gofer::GoferInode::root(
            client.clone(),
            kernel.memory.clone(),
            volume.mount,
            !volume.read_only,
        )
        .map_err(KernelError::Root)?;
        vfs::Mount::new_at(&at, root, "bind", volume.read_only).map_err(KernelError::Root)?;
    }
    let make_dirs = |path: &[u8]| -> Result<vfs::VfsPath, KernelError> {
        let mut at = root_path.clone();
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            at = ensure_dir(&at, part, 0o755, 0, 0)
                .ok_or(KernelError::Root(moat_abi::Errno::ENOTDIR))?;
        }
        Ok(at)
    };
    for mount in &config.tmpfs_mounts {
        let at = make_dirs(&mount.path)?;
        let tmpfs = fs::tmpfs::Tmpfs::new_root_in(kernel.memory.clone(), mount.mode, 0, 0);
        vfs::Mount::new_at(&at, tmpfs, "tmpfs", mount.read_only).map_err(KernelError::Root)?;
    }
    for file in &config.seed_files {
        let Some(split) = file.path.iter().rposition(|&b| b == b'/') else {
            return Err(KernelError::Root(moat_abi::Errno::EINVAL));
        };
        let (dir, name) = (&file.path[..split], &file.path[split + 1..]);
        let at = make_dirs(dir)?;
        // A symlink there (systemd's /etc/resolv.conf is one) is replaced, not followed:
        // the seed is the file the sandbox sees.
        if let Ok(d) = at.dentry.child(name) {
            if d.inode().kind() == vfs::FileKind::Symlink {
                at.inode().unlink(name, false).map_err(KernelError::Root)?;
                at.dentry.remove_child(name);
            }
        }
        let inode = match at.dentry.child(name) {
            Ok(d) => d.inode(),
            Err(_) => {
                let inode = at
                    .inode()
                    .create(name, &vfs::NewNode::File { mode: file.mode }, 0, 0)
                    .map_err(KernelError::Root)?;
                at.dentry.add_child(name, inode.clone());
                inode
            }
        };
        let open = fs::OpenFile::new(
            inode
                .open((libc::O_WRONLY | libc::O_TRUNC) as u32)
                .map_err(KernelError::Root)?,
            libc::O_WRONLY as u32,
        );
        let mut done = 0;
        while done < file.contents.len() {
            match open.write_at(&file.contents[done..], done as u64) {
                Ok(0) | Err(_) => return Err(KernelError::Root(moat_abi::Errno::EIO)),
                Ok(n) => done += n,
            }
        }
    }
    let resolver = vfs::Resolve {
        root: ctx.root.clone(),
        creds,
    };
    let cwd = match resolver.path(&root_path, &config.cwd, true) {
        Ok(p) if p.inode().kind() == vfs::FileKind::Directory => p,
        Ok(_) if config.cwd_required => return Err(KernelError::Cwd(moat_abi::Errno::ENOTDIR)),
        Err(e) if config.cwd_required => return Err(KernelError::Cwd(e)),
        _ if config.gofer.is_none() => {
            let mut at = root_path.clone();
            for part in config.cwd.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
                match ensure_dir(&at, part, 0o755, creds.euid, creds.egid) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            at
        }
        _ => root_path.clone(),
    };
    Ok(vfs::FsContext { cwd, ..ctx })
}

/// What `/proc` shows about the sandbox's first process.
fn process_info(config: &SandboxConfig, boot: std::time::Instant) -> fs::proc::ProcessInfo {
    let exe = if config.filename.starts_with(b"/") {
        config.filename.clone()
    } else {
        let mut p = config.cwd.clone();
        p.push(b'/');
        p.extend_from_slice(&config.filename);
        p
    };
    let cpus = (0..config.cpu_mask.len() * 8)
        .filter(|&i| config.cpu_mask[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    fs::proc::ProcessInfo {
        pid: 1,
        ppid: 0,
        exe,
        argv: config.argv.clone(),
        envp: config.envp.clone(),
        creds: config.creds.clone(),
        umask: config.umask,
        cpus,
        boot,
    }
}

/// The absolute path of the file `path` names, every symlink resolved (`/proc/PID/exe`).
pub fn real_path(fs: &vfs::FsContext, creds: &Credentials, path: &[u8]) -> Option<Vec<u8>> {
    let resolver = vfs::Resolve {
        root: fs.root.clone(),
        creds,
    };
    let target = resolver.path(&fs.cwd, path, true).ok()?;
    Some(target.absolute(&fs.root))
}

/// Read a whole executable file of the sandbox's tree: the program, its interpreter.
/// `EACCES` unless it is a regular file the caller may execute (as `execve` checks).
pub fn read_executable(
    fs: &vfs::FsContext,
    creds: &Credentials,
    path: &[u8],
) -> Result<loader::ExecFile, moat_abi::Errno> {
    use moat_abi::Errno;
    let resolver = vfs::Resolve {
        root: fs.root.clone(),
        creds,
    };
    let target = resolver.path(&fs.cwd, path, true)?;
    let st = target.inode().stat()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || !vfs::permitted(&st, creds, vfs::MAY_EXEC) {
        return Err(Errno::EACCES);
    }
    open_executable(target, &fs.root, &st)
}

/// Open a regular file the caller may execute, for the loader: its headers are read, its
/// segments will be mapped from its pages (or, for a file without pages of its own, it is
/// read whole).
pub(crate) fn open_executable(
    target: vfs::VfsPath,
    root: &vfs::VfsPath,
    st: &moat_abi::Stat,
) -> Result<loader::ExecFile, moat_abi::Errno> {
    use moat_abi::Errno;
    let size = u64::try_from(st.st_size).map_err(|_| Errno::ENOEXEC)?;
    // An executable's size is bounded by what fits in the address space anyway.
    if size > 1 << 32 {
        return Err(Errno::ENOMEM);
    }
    let pages = target.inode().page_source();
    let path = target.absolute(root);
    // A file with a page cache: its headers come from the cache (read from the host once
    // per sandbox), with no open and no read of the file for each exec.
    if let Some(head) = pages.as_deref().and_then(|p| head_from_pages(p, size)) {
        return Ok(loader::ExecFile {
            head,
            size,
            path: Some(path),
            dev: st.st_dev,
            ino: st.st_ino,
            pages,
        });
    }
    let file =
        fs::OpenFile::with_path(target.inode().open(libc::O_RDONLY as u32)?, 0, Some(target));
    let read_up_to = |out: &mut Vec<u8>, want: usize| -> Result<(), Errno> {
        let mut done = out.len();
        out.resize(want, 0);
        while done < want {
            match file.read_at(&mut out[done..], done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        out.truncate(done);
        Ok(())
    };
    let mut head = Vec::new();
    if pages.is_some() {
        // Only the headers: the segments come from the pages.
        read_up_to(&mut head, (size as usize).min(4096))?;
        loop {
            let needed = loader::head_needed(&head).min(size as usize);
            if needed <= head.len() {
                break;
            }
            read_up_to(&mut head, needed)?;
        }
    } else {
        read_up_to(&mut head, size as usize)?;
    }
    Ok(loader::ExecFile {
        head,
        size,
        path: Some(path),
        dev: st.st_dev,
        ino: st.st_ino,
        pages,
    })
}

/// An executable's headers (as much as the loader needs) read from its pages; `None` if they
/// cannot be had that way.
fn head_from_pages(pages: &dyn mm::PageSource, size: u64) -> Option<Vec<u8>> {
    let read = |want: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; want];
        // Fewer bytes than the file's size promises (the cache saw another size): the
        // ordinary way, which reads what is there.
        let n = pages.read_at(0, &mut buf)?.ok()?;
        (n == want).then_some(buf)
    };
    let size = usize::try_from(size).ok()?;
    let mut head = read(size.min(4096))?;
    loop {
        let needed = loader::head_needed(&head).min(size);
        if needed <= head.len() {
            return Some(head);
        }
        head = read(needed)?;
    }
}

/// Start the sandbox: create the first address space, load the program and run it as init
/// (pid 1) on this host thread, until init dies; then every other task is killed and joined.
/// Must run on the host thread that will drive init (ptrace binds them).
pub fn run(config: SandboxConfig) -> Result<ExitStatus, KernelError> {
    use process::Guard;
    let mut config = config;
    if config.network == net::NetworkMode::Host {
        net::iface::set_host(std::mem::take(&mut config.host_interfaces));
    }
    let external = config.external.take().and_then(|(iface, fd)| {
        let name = iface.name.clone();
        match net::ext::External::start(iface, fd) {
            Ok(ext) => {
                net::iface::set_external(ext.clone());
                Some(ext)
            }
            Err(e) => {
                tracing::warn!("the external interface {name} cannot start: {e:?}");
                None
            }
        }
    });
    let memory = Arc::new(MemoryFile::new(config.memory_size)?);
    memory.set_limit(config.memory_limit);
    let vdso = Arc::new(vdso::Vdso::new(memory.clone())?);
    vdso.start_clock();
    let kernel = Arc::new(Kernel {
        memory: memory.clone(),
        platform: config.platform.clone(),
        uts: Mutex::new(syscalls::system::Uts::new(config.hostname.as_bytes())),
        strace: config.strace,
        cpu_mask: config.cpu_mask.clone(),
        futexes: futex::FutexTable::default(),
        boot: std::time::Instant::now(),
        unimplemented: Mutex::new(HashSet::new()),
        tree: Mutex::new(process::ProcessTree::default()),
        threads: Mutex::new(Vec::new()),
        exit_status: Mutex::new(None),
        ended: task::Completion::default(),
        aux: config.aux.clone(),
        timers: Arc::new(timer::Timers::default()),
        unix_names: Arc::new(net::unix::UnixNames::default()),
        vdso,
        ptys: Arc::new(fs::pty::PtyTable::default()),
        root: Mutex::new(None),
        exec_watchers: Mutex::new(std::collections::HashMap::new()),
        inet: Arc::new(net::inet::Stack::new(external)),
        network: config.network,
        oom: oom::OomState::default(),
    });
    kernel.ptys.set_kernel(Arc::downgrade(&kernel));
    if let Some(signals) = config.forwarded_signals.take() {
        forward_signals(&kernel, signals);
    }
    if let Some(calls) = config.exec_calls.take() {
        serve_exec_calls(&kernel, calls);
    }
    if let Some(questions) = config.inspect.take() {
        inspect::serve(&kernel, questions);
    }
    let on_start = config.on_start.take();
    let result = task::Task::start(kernel.clone(), config).and_then(|mut init| {
        if let Some(f) = on_start {
            f().map_err(KernelError::Start)?;
        }
        init.run()
    });
    if result.is_err() {
        exit::kill_all(&kernel.tree.guard());
    } else {
        // Init's main thread may leave before its other threads: wait for the process.
        let waker = Arc::new(wait::Waker::default());
        let _r = kernel.ended.queue.register(&waker);
        while !kernel.ended.is_done() {
            waker.sleep(None);
        }
    }
    loop {
        let handle = kernel.threads.guard().pop();
        match handle {
            Some(h) => {
                let _ = h.join();
            }
            None => break,
        }
    }
    if let Some(ext) = &kernel.inet.ext {
        ext.linger(std::time::Duration::from_secs(10));
    }
    kernel.vdso.stop_clock();
    result?;
    let status = kernel.exit_status.guard().unwrap_or(ExitStatus::Signaled {
        signo: libc::SIGKILL,
        core: false,
    });
    Ok(status)
}

/// Pass signals that reach Moat on to init (pid 1), sent from outside the sandbox (`si_pid` 0,
/// as Linux shows a sender in an ancestor pid namespace). The thread ends with the sandbox.
fn forward_signals(kernel: &Arc<Kernel>, signals: std::sync::mpsc::Receiver<HostSignal>) {
    use process::Guard;
    let weak = Arc::downgrade(kernel);
    let _ = std::thread::Builder::new()
        .name("moat-signals".into())
        .spawn(move || {
            while let Ok(HostSignal { signo, target }) = signals.recv() {
                let Some(kernel) = weak.upgrade() else {
                    return;
                };
                if !(1..=64).contains(&signo) {
                    continue;
                }
                let info = moat_abi::SigInfo::from_process(signo, moat_abi::SI_USER, 0, 0);
                let tree = kernel.tree.guard();
                let targets: Vec<i32> = match target {
                    SignalTarget::All => {
                        // Init last: its death kills the rest before they see the signal.
                        let mut all: Vec<i32> = tree.processes.keys().copied().collect();
                        all.sort_by_key(|&p| (p == 1, p));
                        all
                    }
                    SignalTarget::Init => vec![1],
                    SignalTarget::Process(pid) => vec![pid],
                };
                for tgid in targets {
                    signal::send_to_process_locked(&tree, tgid, info);
                }
            }
        });
}

/// Find a program named without '/' in the `PATH` of `envp` (the default search path of
/// `execvp` if none), as `execvp` does: the first directory with an executable file of that
/// name wins; `EACCES` if only non-executable ones were found, else `ENOENT`.
pub fn search_path(
    fs: &vfs::FsContext,
    creds: &Credentials,
    envp: &[Vec<u8>],
    name: &[u8],
) -> Result<(loader::ExecFile, Vec<u8>), moat_abi::Errno> {
    let path = envp
        .iter()
        .find_map(|kv| kv.strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut error = moat_abi::Errno::ENOENT;
    for dir in path.split(|&b| b == b':') {
        let mut candidate = if dir.is_empty() {
            b".".to_vec()
        } else {
            dir.to_vec()
        };
        candidate.push(b'/');
        candidate.extend_from_slice(name);
        match read_executable(fs, creds, &candidate) {
            Ok(image) => return Ok((image, candidate)),
            Err(moat_abi::Errno::EACCES) => error = moat_abi::Errno::EACCES,
            Err(_) => {}
        }
    }
    Err(error)
}

/// Start each process asked for from outside on a host thread of its own (ptrace binds a
/// task to the thread that created its address space), until the sandbox ends.
fn serve_exec_calls(kernel: &Arc<Kernel>, calls: std::sync::mpsc::Receiver<ExecCall>) {
    use process::Guard;
    let weak = Arc::downgrade(kernel);
    let _ = std::thread::Builder::new()
        .name("moat-exec".into())
        .spawn(move || {
            while let Ok(mut call) = calls.recv() {
                let Some(kernel) = weak.upgrade() else {
                    return;
                };
                if kernel.ended.is_done() {
                    if let Some(started) = call.started.take() {
                        started(Err(KernelError::Root(moat_abi::Errno::ESRCH)));
                    }
                    continue;
                }
                let k = kernel.clone();
                let thread = std::thread::Builder::new()
                    .name("task-exec".into())
                    .stack_size(1 << 20)
                    .spawn(move || {
                        let started = call.started.take();
                        match task::Task::start_exec(&k, &mut call) {
                            Ok(mut task) => {
                                if let Some(f) = started {
                                    f(Ok(task.tgid));
                                }
                                if let Err(e) = task.run() {
                                    tracing::error!("exec'd task: {e}");
                                }
                            }
                            Err(e) => {
                                if let Some(f) = started {
                                    f(Err(e));
                                }
                            }
                        }
                    });
                if let Ok(handle) = thread {
                    kernel.threads.guard().push(handle);
                }
            }
        });
}

/// The absolute path of a program named relative to `cwd`.
pub fn absolute_exe(cwd: &[u8], filename: &[u8]) -> Vec<u8> {
    if filename.starts_with(b"/") {
        return filename.to_vec();
    }
    let mut p = cwd.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(filename);
    p
}
