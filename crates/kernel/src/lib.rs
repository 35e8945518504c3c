//! Moat's application kernel: it serves every system call of the sandboxed program with its
//! own implementation of the Linux ABI (tasks, address spaces, files, time, futexes).
//!
//! The kernel never forwards an application system call to the host. It makes host calls only
//! on objects it owns: the memory file, the stubs (through the platform), and host fds that
//! were donated to it (stdio). The syscall logic contains no `unsafe` code.

#![forbid(unsafe_code)]

pub mod fs;
pub mod futex;
pub mod loader;
pub mod mm;
pub mod strace;
pub mod syscalls;
pub mod task;
pub mod vfs;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use moat_abi::Rlimit;
use moat_memory::{MemoryError, MemoryFile};
use moat_platform::{Platform, PlatformError};

pub use loader::{AuxFacts, LoadError};
pub use task::ExitStatus;

/// Number of resource limits (`RLIM_NLIMITS`).
pub const RLIMIT_COUNT: usize = 16;

/// The application's credentials.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
}

/// Everything needed to start a sandbox with one program in it.
pub struct SandboxConfig {
    pub platform: Arc<dyn Platform>,
    /// The executable's bytes and the name it was invoked by (`AT_EXECFN`).
    pub executable: Vec<u8>,
    pub filename: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    /// Host fds donated as the application's fds 0, 1 and 2.
    pub stdio: Vec<OwnedFd>,
    pub cwd: Vec<u8>,
    pub creds: Credentials,
    pub umask: u32,
    pub limits: [Rlimit; RLIMIT_COUNT],
    pub hostname: String,
    pub aux: AuxFacts,
    /// Print every system call, strace-style, on stderr.
    pub strace: bool,
    /// Size of the memory file's address range (the sandbox's memory ceiling).
    pub memory_size: u64,
    /// CPUs the sandbox reports (`sched_getaffinity`), as a bitmask in bytes.
    pub cpu_mask: Vec<u8>,
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
    #[error("setting up the standard file descriptors: {0}")]
    Stdio(moat_abi::Errno),
}

/// State shared by every task of a sandbox.
pub struct Kernel {
    pub memory: Arc<MemoryFile>,
    pub platform: Arc<dyn Platform>,
    pub hostname: String,
    pub strace: bool,
    pub cpu_mask: Vec<u8>,
    pub futexes: futex::FutexTable,
    /// System calls already reported as unimplemented (each is logged once).
    unimplemented: Mutex<HashSet<u64>>,
}

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

/// The sandbox's file tree. Until the gofer serves the host's root, the root is a tmpfs holding
/// the working directory the program was started in, and `/tmp`.
pub fn sandbox_fs(cwd: &[u8], umask: u32, creds: &Credentials) -> vfs::FsContext {
    let root = fs::tmpfs::Tmpfs::new_root(0o755, 0, 0);
    let mount = vfs::Mount::new_root(root, "tmpfs", false);
    let root_path = vfs::VfsPath::root_of(&mount);
    let mut cwd_path = root_path.clone();
    let tmp = vfs::NewNode::Directory { mode: 0o1777 };
    if let Ok(inode) = root_path.inode().create(b"tmp", &tmp, 0, 0) {
        root_path.dentry.add_child(b"tmp", inode);
    }
    let dir = vfs::NewNode::Directory { mode: 0o755 };
    if let Ok(inode) = root_path.inode().create(b"dev", &dir, 0, 0) {
        let at = vfs::VfsPath {
            mount: mount.clone(),
            dentry: root_path.dentry.add_child(b"dev", inode),
        };
        let _ = vfs::Mount::new_at(&at, fs::dev::new_devfs(), "devtmpfs", false);
    }
    for part in cwd.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        let dir = vfs::NewNode::Directory { mode: 0o755 };
        let next = match cwd_path.dentry.child(part) {
            Ok(d) => d,
            Err(_) => match cwd_path.inode().create(part, &dir, creds.euid, creds.egid) {
                Ok(inode) => cwd_path.dentry.add_child(part, inode),
                Err(_) => break,
            },
        };
        cwd_path = vfs::VfsPath {
            mount: mount.clone(),
            dentry: next,
        };
    }
    vfs::FsContext {
        root: root_path,
        cwd: cwd_path,
        umask,
    }
}

/// Read a whole file of the sandbox's tree (the program interpreter, scripts' interpreters).
pub fn read_whole_file(
    fs: &vfs::FsContext,
    creds: &Credentials,
    path: &[u8],
) -> Result<Vec<u8>, LoadError> {
    let name = || String::from_utf8_lossy(path).into_owned();
    let resolver = vfs::Resolve { fs, creds };
    let target = resolver
        .path(&fs.cwd, path, true)
        .map_err(|_| LoadError::Dynamic(name()))?;
    let st = target
        .inode()
        .stat()
        .map_err(|_| LoadError::Dynamic(name()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || !vfs::permitted(&st, creds, vfs::MAY_EXEC) {
        return Err(LoadError::Dynamic(name()));
    }
    let file = fs::OpenFile::with_path(
        target
            .inode()
            .open(libc::O_RDONLY as u32)
            .map_err(|_| LoadError::Dynamic(name()))?,
        0,
        Some(target),
    );
    let mut out = vec![0u8; st.st_size as usize];
    let mut done = 0;
    while done < out.len() {
        match file.read_at(&mut out[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) => return Err(LoadError::Dynamic(name())),
        }
    }
    out.truncate(done);
    Ok(out)
}

/// Start the sandbox: create the first address space, load the program and run it until it
/// exits. Must run on the host thread that will drive the application (ptrace binds them).
pub fn run(config: SandboxConfig) -> Result<ExitStatus, KernelError> {
    let memory = Arc::new(MemoryFile::new(config.memory_size)?);
    let kernel = Arc::new(Kernel {
        memory: memory.clone(),
        platform: config.platform.clone(),
        hostname: config.hostname.clone(),
        strace: config.strace,
        cpu_mask: config.cpu_mask.clone(),
        futexes: futex::FutexTable::default(),
        unimplemented: Mutex::new(HashSet::new()),
    });
    let mut task = task::Task::start(kernel, config)?;
    task.run()
}
