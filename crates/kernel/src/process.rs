//! Processes as the rest of the sandbox sees them: the pid namespace, the process tree, thread
//! groups and the parts of a task other tasks may touch (signals, wake-ups).
//!
//! A [`Task`](crate::task::Task) is owned by the host thread that runs it; everything another
//! task may need — to signal it, wait for it, list it — lives in its [`TaskHandle`] and its
//! [`ThreadGroup`]. Relationships (parent, children, process group, session, zombies) are kept
//! in one [`ProcessTree`] behind one lock, as Linux keeps them under `tasklist_lock`: the tree
//! changes rarely and a single lock cannot deadlock against itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use moat_abi::{Rlimit, SigAction, SigInfo};
use moat_platform::Interrupter;

use crate::wait::{WaitQueue, Waker};
use crate::{Credentials, RLIMIT_COUNT};

/// Lock a mutex, ignoring poisoning (a panicking task thread must not wedge the others).
pub trait Guard<T> {
    fn guard(&self) -> MutexGuard<'_, T>;
}

impl<T> Guard<T> for Mutex<T> {
    fn guard(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The largest pid handed out before wrapping (Linux's default `pid_max`).
pub const PID_MAX: i32 = 4_194_304;

/// How a process ended, as `wait` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit`/`exit_group(code)`: the low 8 bits of the code.
    Exited(i32),
    /// Killed by this signal (`core`: the default action dumps core).
    Signaled { signo: i32, core: bool },
}

impl ExitStatus {
    /// The `wait` status word.
    pub fn wait_status(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => (code & 0xff) << 8,
            ExitStatus::Signaled { signo, core } => signo | if core { 0x80 } else { 0 },
        }
    }

    /// `si_code` and `si_status` for `waitid` and `SIGCHLD`.
    pub fn child_code(self) -> (i32, i32) {
        match self {
            ExitStatus::Exited(code) => (moat_abi::CLD_EXITED, code & 0xff),
            ExitStatus::Signaled { signo, core: false } => (moat_abi::CLD_KILLED, signo),
            ExitStatus::Signaled { signo, core: true } => (moat_abi::CLD_DUMPED, signo),
        }
    }
}

/// Signals waiting for delivery: a set, and the `siginfo` of each (standard signals are not
/// queued twice; real-time signals queue every instance).
#[derive(Clone, Debug, Default)]
pub struct SigPending {
    pub set: u64,
    pub queue: Vec<SigInfo>,
}

/// Bit of signal `signo` in a signal set.
pub fn sigbit(signo: i32) -> u64 {
    1u64 << (signo - 1)
}

/// The first real-time signal.
pub const SIGRTMIN: i32 = 32;

impl SigPending {
    /// Queue `info`; `false` if a standard signal of that number was already pending.
    pub fn add(&mut self, info: SigInfo) -> bool {
        let bit = sigbit(info.signo);
        if info.signo < SIGRTMIN && self.set & bit != 0 {
            return false;
        }
        self.set |= bit;
        self.queue.push(info);
        true
    }

    /// Take the lowest-numbered pending signal not in `blocked`.
    pub fn take(&mut self, blocked: u64) -> Option<SigInfo> {
        let ready = self.set & !blocked;
        if ready == 0 {
            return None;
        }
        let signo = ready.trailing_zeros() as i32 + 1;
        self.take_signal(signo)
    }

    /// Take the first queued instance of `signo`.
    pub fn take_signal(&mut self, signo: i32) -> Option<SigInfo> {
        let i = self.queue.iter().position(|i| i.signo == signo)?;
        let info = self.queue.remove(i);
        if !self.queue.iter().any(|i| i.signo == signo) {
            self.set &= !sigbit(signo);
        }
        Some(info)
    }

    /// Drop every pending instance of the signals in `set`.
    pub fn discard(&mut self, set: u64) {
        self.queue.retain(|i| sigbit(i.signo) & set == 0);
        self.set &= !set;
    }
}

/// What a task keeps about signals that other tasks may change.
#[derive(Debug, Default)]
pub struct TaskSignals {
    /// Blocked signals.
    pub mask: u64,
    /// Signals sent to this thread (`tgkill`, faults).
    pub pending: SigPending,
    /// Blocked signals the thread is waiting for in `rt_sigtimedwait`: they wake it and are
    /// not discarded as ignored (Linux's `real_blocked`).
    pub waiting: u64,
}

impl TaskSignals {
    /// Whether the thread can take `signo` now (unblocked, or waited for).
    pub fn accepts(&self, signo: i32) -> bool {
        self.mask & sigbit(signo) == 0 || self.waiting & sigbit(signo) != 0
    }
}

/// A task as other tasks see it.
pub struct TaskHandle {
    /// The thread id; it changes once at most, when a thread other than the leader execs
    /// and takes over the process's pid.
    pub(crate) tid: std::sync::atomic::AtomicI32,
    pub group: Arc<ThreadGroup>,
    pub waker: Arc<Waker>,
    pub signals: Mutex<TaskSignals>,
    /// Kicks the task out of application code (set once its context exists).
    pub interrupter: Mutex<Option<Arc<dyn Interrupter>>>,
    /// The task is running application code (not in the kernel): a signal must kick it.
    pub in_app: AtomicBool,
    /// `comm`: the thread's name (`PR_SET_NAME`, `/proc/PID/comm`).
    pub name: Mutex<Vec<u8>>,
    /// A copy of the task's credentials for permission checks by others.
    pub creds: Mutex<Credentials>,
    /// `PR_SET_PDEATHSIG`: the signal this task gets when its parent dies (0: none).
    pub pdeathsig: Mutex<i32>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: AtomicBool,
    /// This one thread is to end (another thread of its process called exec).
    pub killed: AtomicBool,
    /// The task's memory, fds and filesystem context, for `/proc` (kept current by exec).
    pub resources: Mutex<Option<TaskResources>>,
    /// Affinity, scheduling policy and nice value (`syscalls/sched.rs`).
    pub sched: Mutex<crate::syscalls::sched::SchedState>,
    /// How many times the task has come back from application code into the kernel
    /// (`membarrier` waits for it to move).
    pub traps: std::sync::atomic::AtomicU64,
}

/// What a task shares by `clone` flags, as others may look at it.
#[derive(Clone)]
pub struct TaskResources {
    pub mm: Arc<Mutex<crate::mm::MemoryManager>>,
    pub files: Arc<Mutex<crate::fs::FdTable>>,
    pub fs: Arc<Mutex<crate::vfs::FsContext>>,
}

thread_local! {
    /// The (tgid, tid) of the task this host thread runs: every task has its own host thread,
    /// so `/proc/self` can ask which task is looking.
    static CURRENT: std::cell::Cell<(i32, i32)> = const { std::cell::Cell::new((0, 0)) };
}

/// Record which task this host thread runs.
pub fn set_current(tgid: i32, tid: i32) {
    CURRENT.with(|c| c.set((tgid, tid)));
}

/// The (tgid, tid) of the task running on this host thread.
pub fn current() -> (i32, i32) {
    CURRENT.with(std::cell::Cell::get)
}

impl TaskHandle {
    pub fn tid(&self) -> i32 {
        self.tid.load(Ordering::SeqCst)
    }

    pub fn set_tid(&self, tid: i32) {
        self.tid.store(tid, Ordering::SeqCst);
    }

    /// Tell the task something changed: wake it if it sleeps, kick it if it runs.
    pub fn notify(&self) {
        self.waker.wake();
        if self.in_app.load(Ordering::SeqCst) {
            if let Some(i) = self.interrupter.guard().as_ref() {
                i.interrupt();
            }
        }
    }

    /// Whether something should interrupt what the task is doing: a pending signal it does
    /// not block, or the end of its thread group.
    pub fn interrupted(&self) -> bool {
        if self.group.exiting().is_some() || self.killed.load(Ordering::SeqCst) {
            return true;
        }
        let takes = {
            let sig = self.signals.guard();
            let takes = !sig.mask | sig.waiting;
            if sig.pending.set & takes != 0 {
                return true;
            }
            takes
        };
        self.group.signals.guard().pending.set & takes != 0
    }
}

/// Shared signal state of a thread group.
#[derive(Debug)]
pub struct GroupSignals {
    /// Dispositions (shared by the group's threads, `CLONE_SIGHAND`).
    pub actions: [SigAction; 64],
    /// Signals sent to the process as a whole.
    pub pending: SigPending,
}

/// Job-control state of a thread group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobState {
    #[default]
    Running,
    /// Stopped by this signal.
    Stopped(i32),
}

/// A process: what its threads share apart from memory, files and the filesystem context
/// (those are shared by `clone` flags and live in the task).
pub struct ThreadGroup {
    pub tgid: i32,
    pub signals: Mutex<GroupSignals>,
    /// Set when the whole group is going: `exit_group` or a fatal signal.
    exiting: Mutex<Option<ExitStatus>>,
    /// Job control: stopped or running, and what `wait` has yet to report.
    pub job: Mutex<JobState>,
    /// Wakes the group's threads out of a stop.
    pub job_changed: WaitQueue,
    /// Notified when a child changes state (exits, stops, continues): `wait4` sleeps here.
    pub child_events: WaitQueue,
    pub limits: Mutex<[Rlimit; RLIMIT_COUNT]>,
    /// Set by the first thread to exit once the group is exiting, so only one reports it.
    pub dead: AtomicBool,
    /// `ITIMER_REAL` (`alarm`, `setitimer`), and a generation that retires old callbacks.
    pub real_timer: Mutex<Option<RealTimer>>,
    pub real_timer_generation: std::sync::atomic::AtomicU64,
    /// `ITIMER_VIRTUAL` and `ITIMER_PROF` (expiry as process CPU time), and whether the
    /// kernel's timer service is sampling the process's CPU time for them.
    pub cpu_timers: Mutex<CpuTimers>,
    /// Notified at every signal sent to the process or its threads (signalfd readers).
    pub signal_events: WaitQueue,
    /// Notified when the process dies (pidfd pollers).
    pub exited: WaitQueue,
    /// POSIX timers (`timer_create`), by id.
    pub posix_timers: Mutex<BTreeMap<i32, crate::syscalls::posix_timer::PosixTimer>>,
    /// `membarrier` commands the process registered for (a mask of `REGISTER_*` commands).
    pub membarrier: std::sync::atomic::AtomicU32,
    /// The largest resident size `getrusage` has seen, in bytes (`ru_maxrss`).
    pub maxrss: std::sync::atomic::AtomicU64,
}

/// The CPU-time interval timers of a process.
#[derive(Debug, Default)]
pub struct CpuTimers {
    /// `[ITIMER_VIRTUAL, ITIMER_PROF]`.
    pub timers: [Option<CpuTimer>; 2],
    pub polling: bool,
}

/// An armed CPU-time interval timer.
#[derive(Clone, Copy, Debug)]
pub struct CpuTimer {
    /// The process CPU time at which it fires.
    pub expires: std::time::Duration,
    pub interval: std::time::Duration,
}

/// An armed `ITIMER_REAL`.
pub struct RealTimer {
    pub id: crate::timer::TimerId,
    pub interval: std::time::Duration,
}

impl ThreadGroup {
    pub fn new(
        tgid: i32,
        actions: [SigAction; 64],
        limits: [Rlimit; RLIMIT_COUNT],
    ) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            tgid,
            signals: Mutex::new(GroupSignals {
                actions,
                pending: SigPending::default(),
            }),
            exiting: Mutex::new(None),
            job: Mutex::new(JobState::Running),
            job_changed: WaitQueue::default(),
            child_events: WaitQueue::default(),
            limits: Mutex::new(limits),
            dead: AtomicBool::new(false),
            real_timer: Mutex::new(None),
            real_timer_generation: std::sync::atomic::AtomicU64::new(0),
            cpu_timers: Mutex::new(CpuTimers::default()),
            signal_events: WaitQueue::default(),
            exited: WaitQueue::default(),
            posix_timers: Mutex::new(BTreeMap::new()),
            membarrier: std::sync::atomic::AtomicU32::new(0),
            maxrss: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The group's exit status once it has started exiting.
    pub fn exiting(&self) -> Option<ExitStatus> {
        *self.exiting.guard()
    }

    /// Start the group's exit with `status` (the first cause wins).
    pub fn start_exit(&self, status: ExitStatus) -> bool {
        let mut e = self.exiting.guard();
        if e.is_some() {
            return false;
        }
        *e = Some(status);
        true
    }
}

/// Something `wait` can report about a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEvent {
    Stopped(i32),
    Continued,
}

/// A process in the tree.
pub struct ProcessNode {
    pub group: Arc<ThreadGroup>,
    /// The parent's tgid; 0 for init.
    pub parent: i32,
    pub children: BTreeSet<i32>,
    pub pgid: i32,
    pub sid: i32,
    /// Live threads.
    pub threads: BTreeSet<i32>,
    /// Signal sent to the parent at exit (`SIGCHLD` for fork; the low byte of clone's flags).
    pub exit_signal: i32,
    /// Set when every thread is gone: the process is a zombie until reaped.
    pub zombie: Option<ExitStatus>,
    /// A stop or continue not yet reported to `wait`.
    pub event: Option<ChildEvent>,
    /// `PR_SET_CHILD_SUBREAPER`.
    pub subreaper: bool,
    /// The process has called exec since fork (its parent may no longer `setpgid` it).
    pub execed: bool,
    /// The executable's path and the argv/envp of the last exec (`/proc`).
    pub exe: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    /// CPU time of threads that have exited, and of reaped children (`RUSAGE_CHILDREN`).
    pub cpu_exited: std::time::Duration,
    pub cpu_children: std::time::Duration,
}

/// The pid namespace and the process tree.
#[derive(Default)]
pub struct ProcessTree {
    pub tasks: BTreeMap<i32, Arc<TaskHandle>>,
    pub processes: BTreeMap<i32, ProcessNode>,
    last_pid: i32,
}

impl ProcessTree {
    /// A free pid: the next after the last one handed out, wrapping at `PID_MAX`.
    pub fn allocate_pid(&mut self) -> Option<i32> {
        for _ in 0..PID_MAX {
            self.last_pid = if self.last_pid >= PID_MAX - 1 {
                2
            } else {
                self.last_pid + 1
            };
            let p = self.last_pid;
            if !self.tasks.contains_key(&p)
                && !self.processes.contains_key(&p)
                && !self.processes.values().any(|n| n.pgid == p || n.sid == p)
            {
                return Some(p);
            }
        }
        None
    }

    pub fn task(&self, tid: i32) -> Option<&Arc<TaskHandle>> {
        self.tasks.get(&tid)
    }

    pub fn process(&self, tgid: i32) -> Option<&ProcessNode> {
        self.processes.get(&tgid)
    }

    pub fn process_mut(&mut self, tgid: i32) -> Option<&mut ProcessNode> {
        self.processes.get_mut(&tgid)
    }

    /// Live (not zombie) processes of process group `pgid`.
    pub fn group_members(&self, pgid: i32) -> Vec<i32> {
        self.processes
            .iter()
            .filter(|(_, n)| n.pgid == pgid && n.zombie.is_none())
            .map(|(&p, _)| p)
            .collect()
    }

    /// Where an orphan goes: the nearest live subreaper among its ancestors, else init.
    pub fn reaper_for(&self, dying: i32) -> i32 {
        let mut at = self.processes.get(&dying).map_or(0, |n| n.parent);
        while at != 0 {
            match self.processes.get(&at) {
                Some(n) if n.subreaper && n.zombie.is_none() => return at,
                Some(n) => at = n.parent,
                None => break,
            }
        }
        1
    }
}
