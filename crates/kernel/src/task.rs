//! A task: one application thread, owned by the host thread that runs it.
//!
//! What a task may share with others, by `clone` flags, is behind `Arc<Mutex<..>>`: the memory
//! manager (`CLONE_VM`), the fd table (`CLONE_FILES`) and the filesystem context (`CLONE_FS`).
//! What other tasks may touch (pending signals, the wake-up) is in its [`TaskHandle`]; its
//! process is a [`ThreadGroup`] and its place in the process tree is in the kernel's
//! [`ProcessTree`](crate::process::ProcessTree).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use moat_abi::{Errno, Regs, Rlimit, SigAction};
use moat_platform::{Context, Trap};

use crate::fs::{host::HostFile, FdTable, OpenFile};
use crate::loader::{self, ExecRequest};
use crate::mm::{Fault, MemoryManager};
use crate::process::{Guard, ProcessNode, TaskHandle, TaskSignals, ThreadGroup};
use crate::vfs::{FsContext, Resolve, VfsPath};
use crate::wait::{WaitQueue, Waker};
use crate::{Credentials, Kernel, KernelError, SandboxConfig, RLIMIT_COUNT};

pub use crate::process::ExitStatus;

/// Flat (x86-64 long mode) segment selectors for user code and data.
pub const USER_CS: u64 = 0x33;
pub const USER_DS: u64 = 0x2b;

/// An alternate signal stack as `sigaltstack` sets it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AltStack {
    pub base: u64,
    pub size: u64,
    pub autodisarm: bool,
}

impl AltStack {
    /// Whether `sp` is on this stack.
    pub fn contains(&self, sp: u64) -> bool {
        self.size != 0 && sp > self.base && sp - self.base <= self.size
    }
}

/// Signalled once: the end of a `vfork` child's use of its parent's memory (exec or exit).
#[derive(Default)]
pub struct Completion {
    done: Mutex<bool>,
    pub queue: WaitQueue,
}

impl Completion {
    pub fn complete(&self) {
        *self.done.guard() = true;
        self.queue.notify();
    }

    pub fn is_done(&self) -> bool {
        *self.done.guard()
    }
}

/// One application thread.
pub struct Task {
    pub kernel: Arc<Kernel>,
    pub handle: Arc<TaskHandle>,
    pub tid: i32,
    pub tgid: i32,
    pub regs: Regs,
    pub context: Box<dyn Context>,
    pub mm: Arc<Mutex<MemoryManager>>,
    pub files: Arc<Mutex<FdTable>>,
    /// Root, working directory and umask.
    pub fs: Arc<Mutex<FsContext>>,
    pub creds: Credentials,
    pub altstack: AltStack,
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    /// Staging buffer for read/write copies between files and application memory.
    pub io_buffer: Vec<u8>,
    /// Set when the thread is leaving (its own `exit`, or its group's end).
    pub exiting: Option<ExitStatus>,
    /// The last system call asked to be restarted if a signal interrupted it.
    pub restart: Option<Errno>,
    /// The mask to restore after a signal handler started by `rt_sigsuspend`/`ppoll` returns.
    pub saved_mask: Option<u64>,
    /// A `vfork` parent waiting for this child to exec or exit.
    pub vfork_done: Option<Arc<Completion>>,
    /// The last fault the kernel resolved (address, rip) and how often it came back at once.
    pub last_fault: (u64, u64),
    pub fault_repeats: u32,
}

/// Everything a new task needs, prepared by `clone` on the parent's host thread and turned
/// into a [`Task`] on the child's own.
pub struct TaskSeed {
    pub handle: Arc<TaskHandle>,
    pub regs: Regs,
    pub mm: Arc<Mutex<MemoryManager>>,
    /// The new thread's platform context: a thread in the parent's address space
    /// (`CLONE_VM`), or `None` for a new address space to attach `mm` to.
    pub thread: Option<Box<dyn moat_platform::ThreadSeed>>,
    /// For a fork: the platform's copy of the parent's address space, if it made one.
    pub aspace: Option<Box<dyn moat_platform::AddressSpaceSeed>>,
    pub files: Arc<Mutex<FdTable>>,
    pub fs: Arc<Mutex<FsContext>>,
    pub creds: Credentials,
    pub altstack: AltStack,
    pub clear_child_tid: u64,
    pub vfork_done: Option<Arc<Completion>>,
    /// Where to write the child's tid in the child's memory (`CLONE_CHILD_SETTID`).
    pub child_settid: Option<u64>,
    /// The parent's floating-point state (control words are preserved across calls).
    pub fp_state: Option<Vec<u8>>,
}

/// What [`Task::load`] starts.
struct Program<'a> {
    filename: &'a [u8],
    argv: &'a [Vec<u8>],
    envp: &'a [Vec<u8>],
    cwd: &'a [u8],
    creds: &'a Credentials,
    search_path: bool,
    no_new_privs: bool,
    limits: &'a [Rlimit; RLIMIT_COUNT],
    stdio: Vec<std::os::fd::OwnedFd>,
    /// Donated as fds 3, 4, ... (init only: `create --preserve-fds`).
    preserved: Vec<std::os::fd::OwnedFd>,
}

impl Task {
    /// Create the sandbox's first task (init, pid 1) on this host thread: an address space
    /// with the program loaded, stdio installed.
    pub fn start(kernel: Arc<Kernel>, config: SandboxConfig) -> Result<Task, KernelError> {
        let fs = crate::sandbox_fs(&config, &kernel)?;
        *kernel.root.guard() = Some(fs.root.clone());
        let program = Program {
            filename: &config.filename,
            argv: &config.argv,
            envp: &config.envp,
            cwd: &config.cwd,
            creds: &config.creds,
            search_path: config.search_path,
            no_new_privs: config.no_new_privs,
            limits: &config.limits,
            stdio: config.stdio,
            preserved: config.preserved_fds,
        };
        Task::load(kernel, fs, program, 1, 0)
    }

    /// Start a process in the running sandbox on this host thread, from outside it (OCI
    /// `exec`): a new session with no parent in the sandbox, the root of init's tree, the
    /// working directory `call.cwd` (which must exist), init's limits. Its end is reported
    /// to `exited` rather than to a parent.
    pub fn start_exec(
        kernel: &Arc<Kernel>,
        call: &mut crate::ExecCall,
    ) -> Result<Task, KernelError> {
        let root = kernel
            .root
            .guard()
            .clone()
            .ok_or(KernelError::Root(Errno::ESRCH))?;
        let cwd = Resolve {
            root: root.clone(),
            creds: &call.creds,
        }
        .path(&root, &call.cwd, true)
        .map_err(KernelError::Cwd)?;
        if cwd.inode().kind() != crate::vfs::FileKind::Directory {
            return Err(KernelError::Cwd(Errno::ENOTDIR));
        }
        let fs = FsContext {
            root,
            cwd,
            umask: call.umask,
        };
        let limits = {
            let tree = kernel.tree.guard();
            let limits = tree
                .process(1)
                .map(|n| *n.group.limits.guard())
                .ok_or(KernelError::Root(Errno::ESRCH))?;
            limits
        };
        let pid = kernel
            .tree
            .guard()
            .allocate_pid()
            .ok_or(KernelError::Root(Errno::EAGAIN))?;
        let program = Program {
            filename: &call.filename,
            argv: &call.argv,
            envp: &call.envp,
            cwd: &call.cwd,
            creds: &call.creds,
            search_path: call.search_path,
            no_new_privs: call.no_new_privs,
            limits: &limits,
            stdio: std::mem::take(&mut call.stdio),
            preserved: Vec::new(),
        };
        if let Some(exited) = call.exited.take() {
            kernel.exec_watchers.guard().insert(pid, exited);
        }
        let task = Task::load(kernel.clone(), fs, program, pid, 0);
        if task.is_err() {
            kernel.exec_watchers.guard().remove(&pid);
        }
        task
    }

    /// Load `program` into a new address space as process `pid` (its own session and
    /// process group) with `parent`, and enter it in the process tree.
    fn load(
        kernel: Arc<Kernel>,
        fs: FsContext,
        program: Program<'_>,
        pid: i32,
        parent: i32,
    ) -> Result<Task, KernelError> {
        let (aspace, context) = kernel.platform.new_address_space(&kernel.memory)?;
        let mut mm = MemoryManager::new(kernel.memory.clone(), aspace);
        mm.limit_as = program.limits[libc::RLIMIT_AS as usize].cur;
        mm.limit_data = program.limits[libc::RLIMIT_DATA as usize].cur;
        let (image, found) = if program.search_path && !program.filename.contains(&b'/') {
            crate::search_path(&fs, program.creds, program.envp, program.filename)
        } else {
            crate::read_executable(&fs, program.creds, program.filename)
                .map(|image| (image, program.filename.to_vec()))
        }
        .map_err(|e| {
            KernelError::Load(loader::LoadError::Open(
                String::from_utf8_lossy(program.filename).into_owned(),
                e,
            ))
        })?;
        // A `#!` script runs its interpreter, as execve would.
        let (mut image, mut filename, mut argv) = (image, found, program.argv.to_vec());
        for _ in 0..crate::syscalls::exec::MAX_INTERP_DEPTH {
            let Some((interp, arg)) = crate::syscalls::exec::shebang(&image.head) else {
                break;
            };
            let mut new_argv = vec![interp.clone()];
            new_argv.extend(arg);
            new_argv.push(filename.clone());
            new_argv.extend(argv.into_iter().skip(1));
            argv = new_argv;
            image = crate::read_executable(&fs, program.creds, &interp).map_err(|e| {
                KernelError::Load(loader::LoadError::Open(
                    String::from_utf8_lossy(&interp).into_owned(),
                    e,
                ))
            })?;
            filename = interp;
        }
        let exe_path = crate::real_path(&fs, program.creds, &filename)
            .unwrap_or_else(|| crate::absolute_exe(program.cwd, &filename));
        let req = ExecRequest {
            image: &image,
            filename: &filename,
            path: &exe_path,
            argv: &argv,
            envp: program.envp,
            aux: &kernel.aux,
            stack_size: program.limits[libc::RLIMIT_STACK as usize].cur,
            vdso: Some(&kernel.vdso),
        };
        let creds = program.creds.clone();
        let mut read_interp = |name: &[u8]| {
            crate::read_executable(&fs, &creds, name)
                .map_err(|_| loader::LoadError::Dynamic(String::from_utf8_lossy(name).into_owned()))
        };
        let loaded = loader::load(&mut mm, &req, &mut read_interp, &mut crate::random_u64)?;

        let mut files = FdTable::default();
        let numbered = (0..).zip(program.stdio).chain((3..).zip(program.preserved));
        for (i, fd) in numbered {
            let (host, mode) = HostFile::new(fd).map_err(KernelError::Stdio)?;
            let file = Arc::new(OpenFile::new(Box::new(host), mode));
            files
                .install_at(i, file, false)
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
        // The credentials were the caller's (the runtime's, for init), less what the sandbox
        // withholds; the program gets them as an execve would move them.
        let mut creds = program.creds.clone();
        creds.caps.withhold();
        crate::capability::on_exec(&mut creds, program.no_new_privs);
        let group = ThreadGroup::new(pid, [SigAction::default(); 64], *program.limits);
        let handle = new_handle(pid, group.clone(), &creds, comm_of(program.filename));
        *handle.interrupter.guard() = Some(context.interrupter());
        handle
            .no_new_privs
            .store(program.no_new_privs, Ordering::Relaxed);
        {
            let mut tree = kernel.tree.guard();
            tree.tasks.insert(pid, handle.clone());
            tree.processes.insert(
                pid,
                ProcessNode {
                    group,
                    parent,
                    children: std::collections::BTreeSet::new(),
                    pgid: pid,
                    sid: pid,
                    threads: [pid].into(),
                    exit_signal: libc::SIGCHLD,
                    zombie: None,
                    event: None,
                    subreaper: false,
                    execed: false,
                    exe: exe_path.clone(),
                    argv: program.argv.to_vec(),
                    envp: program.envp.to_vec(),
                    cpu_exited: std::time::Duration::ZERO,
                    cpu_children: std::time::Duration::ZERO,
                },
            );
        }
        Ok(Task {
            kernel,
            handle,
            tid: pid,
            tgid: pid,
            regs,
            context,
            mm: Arc::new(Mutex::new(mm)),
            files: Arc::new(Mutex::new(files)),
            creds,
            fs: Arc::new(Mutex::new(fs)),
            altstack: AltStack::default(),
            clear_child_tid: 0,
            robust_list: (0, 0),
            io_buffer: Vec::new(),
            exiting: None,
            restart: None,
            saved_mask: None,
            vfork_done: None,
            last_fault: (0, 0),
            fault_repeats: 0,
        })
    }

    /// Build a cloned task on its own host thread: attach its platform context (a new thread
    /// in the shared address space, or a new address space for a forked memory manager).
    pub fn from_seed(kernel: Arc<Kernel>, seed: TaskSeed) -> Result<Task, KernelError> {
        let context = match (seed.thread, seed.aspace) {
            (Some(thread), _) => thread.attach()?,
            (None, Some(copy)) => {
                let (aspace, context) = copy.attach()?;
                seed.mm.guard().attach_inherited(aspace);
                context
            }
            (None, None) => {
                let (aspace, context) = kernel.platform.new_address_space(&kernel.memory)?;
                seed.mm
                    .guard()
                    .attach(aspace)
                    .map_err(KernelError::Attach)?;
                context
            }
        };
        let mut context = context;
        if let Some(fp) = &seed.fp_state {
            context.set_fp_state(fp)?;
        }
        *seed.handle.interrupter.guard() = Some(context.interrupter());
        let tid = seed.handle.tid();
        let tgid = seed.handle.group.tgid;
        let task = Task {
            kernel,
            handle: seed.handle,
            tid,
            tgid,
            regs: seed.regs,
            context,
            mm: seed.mm,
            files: seed.files,
            fs: seed.fs,
            creds: seed.creds,
            altstack: seed.altstack,
            clear_child_tid: seed.clear_child_tid,
            robust_list: (0, 0),
            io_buffer: Vec::new(),
            exiting: None,
            restart: None,
            saved_mask: None,
            vfork_done: seed.vfork_done,
            last_fault: (0, 0),
            fault_repeats: 0,
        };
        if let Some(addr) = seed.child_settid {
            // Linux ignores a bad address here: the child just does not learn its tid.
            let _ = task.mm.guard().write_obj(addr, &tid);
        }
        Ok(task)
    }

    /// Run the task until it exits, then leave the process tree.
    pub fn run(&mut self) -> Result<(), KernelError> {
        crate::process::set_current(self.tgid, self.tid);
        self.publish_resources();
        let result = self.run_loop();
        if result.is_err() {
            self.kill_process();
        }
        self.exit_thread();
        result
    }

    /// The platform failed under this task (its stub died, or the stub's shared memory held
    /// garbage): the process cannot go on, and ends as if killed (`SIGKILL`).
    fn kill_process(&mut self) {
        let status = ExitStatus::Signaled {
            signo: libc::SIGKILL,
            core: false,
        };
        self.handle.group.start_exit(status);
        let tree = self.kernel.tree.guard();
        for tid in tree
            .process(self.tgid)
            .map(|n| n.threads.clone())
            .unwrap_or_default()
        {
            if let Some(t) = tree.task(tid) {
                t.notify();
            }
        }
        drop(tree);
        self.exiting = Some(status);
    }

    fn run_loop(&mut self) -> Result<(), KernelError> {
        loop {
            if self.exiting.is_some() {
                return Ok(());
            }
            // Announce that we run application code, then look for news: a sender sets its
            // news before checking `in_app`, so one of us sees the other. Only with news (or
            // an interrupted call to settle) does the task go through signal handling.
            self.handle.in_app.store(true, Ordering::SeqCst);
            if self.restart.is_some()
                || self.saved_mask.is_some()
                || self.handle.interrupted()
                || self.stop_pending()
            {
                self.handle.in_app.store(false, Ordering::SeqCst);
                self.handle_signals();
                continue;
            }
            let trap = self.context.switch(&mut self.regs);
            self.handle.traps.fetch_add(1, Ordering::SeqCst);
            self.handle.in_app.store(false, Ordering::SeqCst);
            match trap? {
                Trap::Syscall => {
                    self.last_fault = (0, 0);
                    if self.context.patchable_trap() {
                        self.mm
                            .guard()
                            .consider_patching(self.regs.rip, self.regs.orig_rax);
                    }
                    crate::syscalls::dispatch(self);
                }
                Trap::Fault { signo, code, addr } => self.fault(signo, code, addr),
                Trap::Interrupted => {}
            }
        }
    }

    /// A synchronous fault: a page the kernel has not supplied yet or a copy-on-write page,
    /// or a real fault, which becomes a signal for the thread.
    fn fault(&mut self, signo: i32, code: i32, addr: u64) {
        if matches!(signo, libc::SIGILL | libc::SIGTRAP) && self.patched_site_fault(signo) {
            return;
        }
        const SEGV_MAPERR: i32 = 1;
        const SEGV_ACCERR: i32 = 2;
        const MAX_FAULT_REPEATS: u32 = 16;
        // The same fault again and again, with no system call between, means the kernel's
        // answer did not help: never loop forever (a real program meets the same fault twice
        // in a row only when another thread forks in between).
        let repeated = self.last_fault == (addr, self.regs.rip);
        self.last_fault = (addr, self.regs.rip);
        // An instruction fetch from memory that is not executable is the application's
        // fault; ptrace does not say which access faulted, but a fetch faults at `rip`.
        let rip = self.regs.rip;
        let outcome = if signo == libc::SIGSEGV
            && matches!(code, SEGV_MAPERR | SEGV_ACCERR)
            && !(repeated && self.fault_repeats >= MAX_FAULT_REPEATS)
        {
            let mut mm = self.mm.guard();
            let fetch_denied =
                addr == rip && mm.find_vma(addr).is_some_and(|(_, v)| !v.prot.executable());
            if fetch_denied {
                Fault::Unresolved
            } else {
                mm.handle_fault(addr, code == SEGV_ACCERR)
            }
        } else {
            Fault::Unresolved
        };
        match outcome {
            Fault::Resolved => {
                self.fault_repeats = if repeated { self.fault_repeats + 1 } else { 0 };
                return;
            }
            Fault::OutOfMemory => {
                // The sandbox is at its memory limit: the OOM killer frees memory (perhaps
                // by killing this very process, which the loop then sees before the retry),
                // and the instruction is retried after a pause that lets the victim go.
                crate::oom::out_of_memory(&self.kernel);
                self.last_fault = (0, 0);
                self.fault_repeats = 0;
                if !self.handle.interrupted() {
                    let pause = std::time::Duration::from_millis(5);
                    self.handle
                        .waker
                        .sleep(Some(std::time::Instant::now() + pause));
                }
                return;
            }
            Fault::Unresolved => {}
        }
        self.fault_repeats = 0;
        self.last_fault = (0, 0);

        if tracing::enabled!(tracing::Level::DEBUG) {
            let mm = self.mm.guard();
            let (at_addr, at_rip) = (
                mm.find_vma(addr).map(|(s, v)| (s, *v)),
                mm.find_vma(rip).map(|(s, v)| (s, *v)),
            );
            drop(mm);
            tracing::debug!(
                "task {}: fault signal {signo} (code {code}, address {addr:#x}, rip {rip:#x}; \
                 mapping there {at_addr:x?}, at rip {at_rip:x?})",
                self.tid,
            );
        }
        // The host maps nothing for an inaccessible mapping, but the application did map it:
        // an access there is a protection fault, as Linux reports it; past the end of a mapped
        // file it is a bus error.
        let kind = self.mm.guard().find_vma(addr).map(|(_, v)| v.kind);
        const BUS_ADRERR: i32 = 2;
        let (signo, code) = match kind {
            Some(k) if signo == libc::SIGSEGV && !k.populates() && code == SEGV_MAPERR => {
                (libc::SIGBUS, BUS_ADRERR)
            }
            Some(_) if signo == libc::SIGSEGV && code == SEGV_MAPERR => (signo, SEGV_ACCERR),
            _ => (signo, code),
        };
        self.force_signal(moat_abi::SigInfo::fault(signo, code, addr));
    }

    /// A fault on the bytes of a patched system call site (`mm/patch.rs`) is that site's
    /// system call: serve it, and return after the site as `syscall` would.
    fn patched_site_fault(&mut self, signo: i32) -> bool {
        let Some(fault) = self.mm.guard().patched_site_fault(signo, self.regs.rip) else {
            return false;
        };
        let ret = match fault {
            crate::mm::SiteFault::SyscallInRax { ret } => {
                self.regs.orig_rax = self.regs.rax;
                ret
            }
            crate::mm::SiteFault::Site { nr, ret } => {
                self.regs.rax = u64::from(nr);
                self.regs.orig_rax = u64::from(nr);
                ret
            }
        };
        self.regs.rip = ret;
        self.regs.rcx = ret;
        self.regs.r11 = self.regs.eflags;
        self.last_fault = (0, 0);
        crate::syscalls::dispatch(self);
        true
    }

    /// Let others (procfs) see the task's current memory, fds and filesystem context.
    pub fn publish_resources(&self) {
        *self.handle.resources.guard() = Some(crate::process::TaskResources {
            mm: self.mm.clone(),
            files: self.files.clone(),
            fs: self.fs.clone(),
        });
    }

    /// A path resolution on this task's behalf.
    pub fn resolver(&self) -> Resolve<'_> {
        Resolve {
            root: self.fs.guard().root.clone(),
            creds: &self.creds,
        }
    }

    /// The memory manager (locked).
    pub fn mm(&self) -> MutexGuard<'_, MemoryManager> {
        self.mm.guard()
    }

    /// Where a relative path starts: the working directory for `AT_FDCWD`, else the directory
    /// open at `dirfd` (`ENOTDIR` if it is not one).
    pub fn start_dir(&self, dirfd: i32) -> Result<VfsPath, Errno> {
        if dirfd == libc::AT_FDCWD {
            return Ok(self.fs.guard().cwd.clone());
        }
        let file = self.files.guard().get(dirfd)?;
        let path = file.path().ok_or(Errno::ENOTDIR)?;
        if path.inode().kind() != crate::vfs::FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(path.clone())
    }

    /// The soft limit of a resource.
    pub fn limit(&self, resource: u32) -> u64 {
        self.handle.group.limits.guard()[resource as usize].cur
    }

    /// The process's resource limits.
    pub fn limits(&self) -> MutexGuard<'_, [Rlimit; RLIMIT_COUNT]> {
        self.handle.group.limits.guard()
    }

    /// The open file at `fd`.
    pub fn file(&self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        self.files.guard().get(fd)
    }

    /// Sleep until `ready` gives a result, with this task's waker registered on `queues`.
    /// A signal the task does not block ends the wait with `ERESTARTSYS` (the caller's
    /// system call then restarts or fails with `EINTR`), a passed `deadline` with `ETIMEDOUT`.
    pub fn block_on<R>(
        &mut self,
        queues: &[&WaitQueue],
        deadline: Option<std::time::Instant>,
        mut ready: impl FnMut(&mut Task) -> Result<Option<R>, Errno>,
    ) -> Result<R, Errno> {
        let waker = self.handle.waker.clone();
        let _registrations: Vec<_> = queues.iter().map(|q| q.register(&waker)).collect();
        loop {
            if let Some(r) = ready(self)? {
                return Ok(r);
            }
            if self.handle.interrupted() {
                return Err(Errno::ERESTARTSYS);
            }
            if !waker.sleep(deadline) {
                return Err(Errno::ETIMEDOUT);
            }
        }
    }

    /// Sleep until `deadline` or a signal (`ERESTARTSYS`); `Ok` when the time has passed.
    pub fn sleep_until(&mut self, deadline: std::time::Instant) -> Result<(), Errno> {
        match self.block_on(&[], Some(deadline), |_| Ok(None::<()>)) {
            Err(Errno::ETIMEDOUT) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    /// Leave: release what the thread holds, and if it is the last of its process, make the
    /// process a zombie for its parent (or end the sandbox if it is init).
    fn exit_thread(&mut self) {
        let status = self
            .handle
            .group
            .exiting()
            .or(self.exiting)
            .unwrap_or(ExitStatus::Exited(0));
        // Read before the joiner wakes: the host call is the slow part of leaving, and the
        // joiner may look for this thread in the tree as soon as it wakes.
        let cpu = self.context.cpu_time().unwrap_or_default();
        // CLONE_CHILD_CLEARTID: zero the tid word and wake a joiner.
        if self.clear_child_tid != 0 {
            let addr = self.clear_child_tid;
            if self.mm.guard().write_obj(addr, &0u32).is_ok() {
                let key = crate::futex::key_for(self, addr);
                self.kernel.futexes.wake(key, u32::MAX, 1);
            }
        }
        crate::futex::release_robust_list(self);
        if let Some(done) = self.vfork_done.take() {
            done.complete();
        }
        *self.handle.resources.guard() = None;
        crate::exit::leave(self, status, cpu);
    }
}

/// A new task handle with an empty signal state.
pub fn new_handle(
    tid: i32,
    group: Arc<ThreadGroup>,
    creds: &Credentials,
    name: Vec<u8>,
) -> Arc<TaskHandle> {
    Arc::new(TaskHandle {
        tid: std::sync::atomic::AtomicI32::new(tid),
        group,
        waker: Arc::new(Waker::default()),
        signals: Mutex::new(TaskSignals::default()),
        interrupter: Mutex::new(None),
        in_app: std::sync::atomic::AtomicBool::new(false),
        name: Mutex::new(name),
        creds: Mutex::new(creds.clone()),
        pdeathsig: Mutex::new(0),
        no_new_privs: std::sync::atomic::AtomicBool::new(false),
        killed: std::sync::atomic::AtomicBool::new(false),
        resources: Mutex::new(None),
        sched: Mutex::default(),
        traps: std::sync::atomic::AtomicU64::new(0),
    })
}

/// `comm` from a program path: its last component, at most 15 bytes.
pub fn comm_of(path: &[u8]) -> Vec<u8> {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    base[..base.len().min(15)].to_vec()
}

/// Start `seed` on a new host thread; the thread leaves the tree when the task ends.
pub fn spawn(kernel: &Arc<Kernel>, seed: TaskSeed) -> Result<(), Errno> {
    let kernel2 = kernel.clone();
    let tid = seed.handle.tid();
    let handle = std::thread::Builder::new()
        .name(format!("task-{tid}"))
        .stack_size(1 << 20)
        .spawn(move || {
            let handle = seed.handle.clone();
            match Task::from_seed(kernel2.clone(), seed) {
                Ok(mut task) => {
                    if let Err(e) = task.run() {
                        tracing::error!("task {tid}: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!("task {tid} could not start: {e}");
                    crate::exit::abandon(&kernel2, &handle);
                }
            }
        })
        .map_err(|_| Errno::EAGAIN)?;
    kernel.threads.guard().push(handle);
    Ok(())
}
