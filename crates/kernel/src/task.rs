//! A task: one application thread, with the process state it owns at this stage (a single
//! thread per process; thread groups arrive with `clone`).

use std::sync::Arc;

use moat_abi::{Regs, Rlimit, SigAction};
use moat_platform::{Context, Trap};

use crate::fs::{host::HostFile, FdTable, OpenFile};
use crate::loader::{self, ExecRequest};
use crate::mm::MemoryManager;
use crate::vfs::{FsContext, Resolve, VfsPath};
use crate::{Credentials, Kernel, KernelError, SandboxConfig, RLIMIT_COUNT};

/// How the application ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit_group(code)`: the low 8 bits of the code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Flat (x86-64 long mode) segment selectors for user code and data.
const USER_CS: u64 = 0x33;
const USER_DS: u64 = 0x2b;

/// Signal state recorded by `rt_sigaction`/`rt_sigprocmask` (delivery arrives with issue 4).
#[derive(Clone, Debug)]
pub struct SignalState {
    pub actions: [SigAction; 64],
    pub mask: u64,
    /// The alternate signal stack (`sigaltstack`): base, size and `SS_AUTODISARM`; size 0
    /// when there is none.
    pub altstack: AltStack,
}

/// An alternate signal stack as `sigaltstack` sets it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AltStack {
    pub base: u64,
    pub size: u64,
    pub autodisarm: bool,
}

/// One application thread and, for now, its whole process.
pub struct Task {
    pub kernel: Arc<Kernel>,
    pub tid: i32,
    pub tgid: i32,
    pub ppid: i32,
    pub regs: Regs,
    pub context: Box<dyn Context>,
    pub mm: MemoryManager,
    pub files: FdTable,
    pub creds: Credentials,
    /// Root, working directory and umask.
    pub fs: FsContext,
    pub signals: SignalState,
    pub limits: [Rlimit; RLIMIT_COUNT],
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    /// Staging buffer for read/write copies between files and application memory.
    pub io_buffer: Vec<u8>,
    /// Set when the task has exited; the run loop stops.
    pub exit: Option<ExitStatus>,
}

impl Task {
    /// Create the first task: an address space with the program loaded, stdio installed.
    pub fn start(kernel: Arc<Kernel>, config: SandboxConfig) -> Result<Task, KernelError> {
        let (aspace, context) = kernel.platform.new_address_space(&kernel.memory)?;
        let mut mm = MemoryManager::new(kernel.memory.clone(), aspace);
        mm.limit_as = config.limits[libc::RLIMIT_AS as usize].cur;
        mm.limit_data = config.limits[libc::RLIMIT_DATA as usize].cur;
        let fs = crate::sandbox_fs(&config, kernel.boot)?;
        let image = crate::read_executable(&fs, &config.creds, &config.filename).map_err(|e| {
            KernelError::Load(loader::LoadError::Open(
                String::from_utf8_lossy(&config.filename).into_owned(),
                e,
            ))
        })?;
        let req = ExecRequest {
            image: &image,
            filename: &config.filename,
            argv: &config.argv,
            envp: &config.envp,
            aux: &config.aux,
            stack_size: config.limits[libc::RLIMIT_STACK as usize].cur,
        };
        let creds = config.creds.clone();
        let mut read_interp = |name: &[u8]| {
            crate::read_executable(&fs, &creds, name)
                .map_err(|_| loader::LoadError::Dynamic(String::from_utf8_lossy(name).into_owned()))
        };
        let loaded = loader::load(&mut mm, &req, &mut read_interp, &mut crate::random_u64)?;

        let mut files = FdTable::default();
        for (i, fd) in config.stdio.into_iter().enumerate() {
            let (host, mode) = HostFile::new(fd).map_err(KernelError::Stdio)?;
            let file = Arc::new(OpenFile::new(Box::new(host), mode));
            files
                .install_at(i as i32, file, false)
                .map_err(KernelError::Stdio)?;
        }

        let regs = Regs {
            rip: loaded.entry,
            rsp: loaded.stack_pointer,
            cs: USER_CS,
            ss: USER_DS,
            eflags: 0x202,
            ..Regs::default()
        };
        Ok(Task {
            kernel,
            tid: 1,
            tgid: 1,
            ppid: 0,
            regs,
            context,
            mm,
            files,
            creds: config.creds,
            fs,
            signals: SignalState {
                actions: [SigAction::default(); 64],
                mask: 0,
                altstack: AltStack::default(),
            },
            limits: config.limits,
            clear_child_tid: 0,
            robust_list: (0, 0),
            io_buffer: Vec::new(),
            exit: None,
        })
    }

    /// Run the application until it exits.
    pub fn run(&mut self) -> Result<ExitStatus, KernelError> {
        loop {
            match self.context.switch(&mut self.regs)? {
                Trap::Syscall => crate::syscalls::dispatch(self),
                Trap::Fault { signo, code, addr } => self.fault(signo, code, addr),
                Trap::Interrupted => {}
            }
            if let Some(status) = self.exit {
                return Ok(status);
            }
        }
    }

    /// A synchronous fault: a page the kernel has not supplied yet, or a real fault, which
    /// kills the process with the signal (handlers run once signal delivery exists).
    fn fault(&mut self, signo: i32, code: i32, addr: u64) {
        const SEGV_MAPERR: i32 = 1;
        if signo == libc::SIGSEGV && code == SEGV_MAPERR && self.mm.handle_fault(addr) {
            return;
        }
        tracing::info!(
            "task {} killed by signal {signo} (code {code}, address {addr:#x}, rip {:#x})",
            self.tid,
            self.regs.rip
        );
        self.exit = Some(ExitStatus::Signaled(signo));
    }

    /// A path resolution on this task's behalf.
    pub fn resolver(&self) -> Resolve<'_> {
        Resolve {
            fs: &self.fs,
            creds: &self.creds,
        }
    }

    /// Where a relative path starts: the working directory for `AT_FDCWD`, else the directory
    /// open at `dirfd` (`ENOTDIR` if it is not one).
    pub fn start_dir(&self, dirfd: i32) -> Result<VfsPath, moat_abi::Errno> {
        if dirfd == libc::AT_FDCWD {
            return Ok(self.fs.cwd.clone());
        }
        let file = self.files.get(dirfd)?;
        let path = file.path().ok_or(moat_abi::Errno::ENOTDIR)?;
        if path.inode().kind() != crate::vfs::FileKind::Directory {
            return Err(moat_abi::Errno::ENOTDIR);
        }
        Ok(path.clone())
    }

    /// The soft limit of a resource.
    pub fn limit(&self, resource: u32) -> u64 {
        self.limits[resource as usize].cur
    }
}
