//! Signals: generation (to a process or a thread), default actions, job control, and delivery
//! to a handler with a Linux-compatible frame (`rt_sigframe`: return address, `ucontext`,
//! `siginfo`, and the XSAVE area), undone by `rt_sigreturn`.

use std::sync::Arc;

use moat_abi::{Errno, SigAction, SigInfo};

use crate::process::{
    sigbit, ChildEvent, ExitStatus, Guard, JobState, ProcessTree, TaskHandle, ThreadGroup,
};
use crate::task::{Task, USER_CS, USER_DS};

/// SIGKILL and SIGSTOP can be neither caught nor blocked.
pub const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// What `SIG_DFL` does with a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    Terminate,
    /// Terminate, reporting a core dump (none is written).
    Core,
    Ignore,
    Stop,
    Continue,
}

pub fn default_action(signo: i32) -> DefaultAction {
    match signo {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH => DefaultAction::Ignore,
        libc::SIGCONT => DefaultAction::Continue,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => DefaultAction::Stop,
        libc::SIGQUIT
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGSEGV
        | libc::SIGXCPU
        | libc::SIGXFSZ
        | libc::SIGSYS => DefaultAction::Core,
        _ => DefaultAction::Terminate,
    }
}

const STOP_SIGNALS: u64 = (1 << (libc::SIGSTOP - 1))
    | (1 << (libc::SIGTSTP - 1))
    | (1 << (libc::SIGTTIN - 1))
    | (1 << (libc::SIGTTOU - 1));

/// Whether a disposition makes the signal vanish at generation.
fn ignored(act: &SigAction, signo: i32) -> bool {
    act.handler == SIG_IGN
        || (act.handler == SIG_DFL && default_action(signo) == DefaultAction::Ignore)
}

/// The effects a signal has when it is generated, before anyone dequeues it: SIGKILL ends the
/// group, SIGCONT resumes it, stop and continue signals cancel each other.
fn generation_effects(tree: &ProcessTree, group: &Arc<ThreadGroup>, signo: i32) {
    if signo == libc::SIGKILL {
        group.start_exit(ExitStatus::Signaled { signo, core: false });
        group.job_changed.notify();
        notify_threads(tree, group.tgid);
    } else if signo == libc::SIGCONT {
        group.signals.guard().pending.discard(STOP_SIGNALS);
        for t in threads_of(tree, group.tgid) {
            t.signals.guard().pending.discard(STOP_SIGNALS);
        }
        let was_stopped = {
            let mut job = group.job.guard();
            let stopped = matches!(*job, JobState::Stopped(_));
            *job = JobState::Running;
            stopped
        };
        if was_stopped {
            group.job_changed.notify();
            report_to_parent(tree, group.tgid, ChildEvent::Continued);
        }
    } else if sigbit(signo) & STOP_SIGNALS != 0 {
        group.signals.guard().pending.discard(sigbit(libc::SIGCONT));
    }
}

fn threads_of(tree: &ProcessTree, tgid: i32) -> Vec<Arc<TaskHandle>> {
    tree.process(tgid)
        .map(|n| {
            n.threads
                .iter()
                .filter_map(|t| tree.task(*t).cloned())
                .collect()
        })
        .unwrap_or_default()
}

fn notify_threads(tree: &ProcessTree, tgid: i32) {
    for t in threads_of(tree, tgid) {
        t.notify();
    }
}

/// Send a signal to a process (`kill`, `SIGCHLD`, timers). Returns `false` if there is no
/// such live process. The tree must be locked by the caller.
pub fn send_to_process_locked(tree: &ProcessTree, tgid: i32, info: SigInfo) -> bool {
    let Some(node) = tree.process(tgid) else {
        return false;
    };
    if node.zombie.is_some() {
        // Signalling a zombie succeeds and does nothing.
        return true;
    }
    let group = node.group.clone();
    let signo = info.signo;
    generation_effects(tree, &group, signo);
    let threads = threads_of(tree, tgid);
    {
        let mut sig = group.signals.guard();
        let act = sig.actions[(signo - 1) as usize];
        let blocked_everywhere = threads
            .iter()
            .all(|t| t.signals.guard().mask & sigbit(signo) != 0);
        if signo != libc::SIGKILL && ignored(&act, signo) && !blocked_everywhere {
            return true;
        }
        sig.pending.add(info);
    }
    group.signal_events.notify();
    // Wake one thread that can take it (Linux prefers the main thread); if every thread
    // blocks it, it stays pending for whichever unblocks it first.
    if let Some(t) = threads.iter().find(|t| t.signals.guard().accepts(signo)) {
        t.notify();
    }
    true
}

/// Send a signal to one thread (`tgkill`, `tkill`). Returns `false` if there is no such task.
pub fn send_to_thread_locked(tree: &ProcessTree, tid: i32, info: SigInfo) -> bool {
    let Some(task) = tree.task(tid).cloned() else {
        return false;
    };
    let signo = info.signo;
    generation_effects(tree, &task.group, signo);
    {
        let act = task.group.signals.guard().actions[(signo - 1) as usize];
        let mut sig = task.signals.guard();
        if signo != libc::SIGKILL && ignored(&act, signo) && sig.mask & sigbit(signo) == 0 {
            return true;
        }
        sig.pending.add(info);
    }
    task.group.signal_events.notify();
    task.notify();
    true
}

/// Tell a stopped or continued child's parent (`SIGCHLD` unless `SA_NOCLDSTOP`; `wait`).
fn report_to_parent(tree: &ProcessTree, tgid: i32, event: ChildEvent) {
    let Some(node) = tree.process(tgid) else {
        return;
    };
    let parent = node.parent;
    let Some(pnode) = tree.process(parent) else {
        return;
    };
    let nocldstop =
        pnode.group.signals.guard().actions[(libc::SIGCHLD - 1) as usize].flags & SA_NOCLDSTOP != 0;
    if !nocldstop {
        let (code, status) = match event {
            ChildEvent::Stopped(sig) => (moat_abi::CLD_STOPPED, sig),
            ChildEvent::Continued => (moat_abi::CLD_CONTINUED, libc::SIGCONT),
        };
        let info = SigInfo::child(code, tgid, 0, status, 0, 0);
        send_to_process_locked(tree, parent, info);
    }
    pnode.group.child_events.notify();
}

/// Record a stop/continue event for `wait` in the tree, then tell the parent.
fn set_event(task: &Task, event: ChildEvent) {
    let mut tree = task.kernel.tree.guard();
    if let Some(n) = tree.process_mut(task.tgid) {
        n.event = Some(event);
    }
    report_to_parent(&tree, task.tgid, event);
}

/// Layout of the signal frame (x86-64 `rt_sigframe`).
const UCONTEXT_SIZE: u64 = 304;
const SIGINFO_SIZE: u64 = 128;
/// Return address + ucontext + siginfo.
const FRAME_SIZE: u64 = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
const MCONTEXT_OFFSET: usize = 40;
/// `uc_flags`: the frame has XSAVE state and a saved `ss` that must be restored.
const UC_FLAGS: u64 = 0x1 | 0x2 | 0x4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Where in the FXSAVE area the kernel keeps its software-reserved bytes (`_fpx_sw_bytes`).
const SW_BYTES_OFFSET: usize = 464;
/// The `eflags` bits a handler's frame may change (`FIX_EFLAGS`).
const FIX_EFLAGS: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x1_0000;
const SS_ONSTACK: i32 = 1;
const SS_DISABLE: i32 = 2;

/// The XSAVE image of a freshly initialised FPU, shaped like `current` (its size and
/// `MXCSR_MASK`): every component in its initial state.
fn init_fp_state(current: &[u8]) -> Vec<u8> {
    let mut init = vec![0u8; current.len()];
    if init.len() >= 512 {
        init[0..2].copy_from_slice(&0x037f_u16.to_le_bytes()); // FCW
        init[24..28].copy_from_slice(&0x1f80_u32.to_le_bytes()); // MXCSR
        init[28..32].copy_from_slice(&current[28..32]); // MXCSR_MASK
    }
    // The XSAVE header (at 512) stays zero: no component holds live state.
    init
}

fn put(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn get32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

impl Task {
    /// Whether the task's process is stopped (job control).
    pub fn stop_pending(&self) -> bool {
        matches!(*self.handle.group.job.guard(), JobState::Stopped(_))
    }

    /// Take the next deliverable signal: the thread's own first, then the process's.
    pub fn dequeue_signal(&self, blocked: u64) -> Option<SigInfo> {
        if let Some(info) = self.handle.signals.guard().pending.take(blocked) {
            return Some(info);
        }
        self.handle.group.signals.guard().pending.take(blocked)
    }

    /// A synchronous signal (a fault): if the thread blocks or ignores it, the default action
    /// is forced, as Linux does — a fault cannot be skipped.
    pub fn force_signal(&mut self, info: SigInfo) {
        let signo = info.signo;
        {
            let mut sig = self.handle.group.signals.guard();
            let act = &mut sig.actions[(signo - 1) as usize];
            let blocked = self.handle.signals.guard().mask & sigbit(signo) != 0;
            if blocked || act.handler == SIG_IGN {
                act.handler = SIG_DFL;
            }
        }
        let mut sig = self.handle.signals.guard();
        sig.mask &= !sigbit(signo);
        sig.pending.add(info);
    }

    /// Before returning to the application: act on pending signals — run default actions,
    /// stop for job control, or set up handler frames — and settle an interrupted system
    /// call (restart it or make it fail with `EINTR`).
    pub fn handle_signals(&mut self) {
        let mut handler_ran = false;
        loop {
            if let Some(status) = self.handle.group.exiting() {
                self.exiting = Some(status);
                return;
            }
            if self.handle.killed.load(std::sync::atomic::Ordering::SeqCst) {
                self.exiting = Some(ExitStatus::Signaled {
                    signo: libc::SIGKILL,
                    core: false,
                });
                return;
            }
            if self.stop_pending() {
                self.wait_while_stopped();
                continue;
            }
            let mask = self.handle.signals.guard().mask;
            let Some(info) = self.dequeue_signal(mask) else {
                break;
            };
            let signo = info.signo;
            let act = self.handle.group.signals.guard().actions[(signo - 1) as usize];
            if act.handler == SIG_IGN {
                continue;
            }
            if act.handler == SIG_DFL {
                match default_action(signo) {
                    DefaultAction::Ignore | DefaultAction::Continue => continue,
                    DefaultAction::Stop => {
                        self.stop_group(signo);
                        continue;
                    }
                    action => {
                        let status = ExitStatus::Signaled {
                            signo,
                            core: action == DefaultAction::Core,
                        };
                        self.handle.group.start_exit(status);
                        let tree = self.kernel.tree.guard();
                        notify_threads(&tree, self.tgid);
                        drop(tree);
                        self.exiting = Some(status);
                        return;
                    }
                }
            }
            // A handler: settle the interrupted call first, as its registers go in the frame.
            if let Some(restart) = self.restart.take() {
                if (restart == Errno::ERESTARTSYS && act.flags & SA_RESTART != 0)
                    || restart == Errno::ERESTARTNOINTR
                {
                    self.rewind_syscall();
                } else {
                    self.regs.rax = Errno::EINTR.as_return();
                }
            }
            if self.setup_frame(&info, &act).is_err() {
                // The frame could not be written: the thread dies of SIGSEGV, as on Linux.
                self.force_default(libc::SIGSEGV);
                continue;
            }
            handler_ran = true;
        }
        if let Some(_restart) = self.restart.take() {
            // Nothing ran a handler: the call restarts transparently.
            self.rewind_syscall();
        }
        if !handler_ran {
            if let Some(mask) = self.saved_mask.take() {
                self.handle.signals.guard().mask = mask;
            }
        }
    }

    /// Point the thread back at its `syscall` instruction with the original number.
    fn rewind_syscall(&mut self) {
        self.regs.rax = self.regs.orig_rax;
        self.regs.rip -= 2;
    }

    /// Kill the process with `signo`'s default action even if it is handled.
    fn force_default(&mut self, signo: i32) {
        self.handle.group.signals.guard().actions[(signo - 1) as usize].handler = SIG_DFL;
        self.force_signal(SigInfo {
            signo,
            code: moat_abi::SI_KERNEL,
            ..SigInfo::default()
        });
    }

    /// Job control: the process stops with `signo`.
    fn stop_group(&mut self, signo: i32) {
        {
            let mut job = self.handle.group.job.guard();
            if *job != JobState::Running {
                return;
            }
            *job = JobState::Stopped(signo);
        }
        set_event(self, ChildEvent::Stopped(signo));
        let tree = self.kernel.tree.guard();
        notify_threads(&tree, self.tgid);
    }

    /// Sleep while the process is stopped; SIGKILL and SIGCONT end the stop.
    fn wait_while_stopped(&mut self) {
        let group = self.handle.group.clone();
        let waker = self.handle.waker.clone();
        let _r = group.job_changed.register(&waker);
        while self.stop_pending() && group.exiting().is_none() {
            waker.sleep(None);
        }
    }

    /// `trapno`, `err` and `cr2` of the signal frame's `sigcontext` for a fault. ptrace does
    /// not give the hardware error code, so it is derived: a fault at the instruction pointer
    /// is an instruction fetch, a protection fault on a readable page a write; a missing page
    /// elsewhere is reported as a read.
    fn fault_context(&self, info: &SigInfo) -> (u64, u64, u64) {
        const PF_PROT: u64 = 1;
        const PF_WRITE: u64 = 2;
        const PF_USER: u64 = 4;
        const PF_INSTR: u64 = 16;
        const SEGV_ACCERR: i32 = 2;
        if info.code <= 0 {
            // Sent by a process, not raised by the CPU.
            return (0, 0, 0);
        }
        match info.signo {
            libc::SIGSEGV if info.code == moat_abi::SI_KERNEL => (13, 0, 0),
            libc::SIGSEGV | libc::SIGBUS => {
                let addr = info.fields[0];
                let mut err = PF_USER;
                if info.code == SEGV_ACCERR && info.signo == libc::SIGSEGV {
                    err |= PF_PROT;
                }
                if addr == self.regs.rip {
                    err |= PF_INSTR;
                } else if info.code == SEGV_ACCERR {
                    let prot = self.mm.guard().find_vma(addr).map(|(_, v)| v.prot);
                    if prot.is_some_and(|p| p.readable() && !p.writable()) {
                        err |= PF_WRITE;
                    }
                }
                (14, err, addr)
            }
            libc::SIGFPE => (0, 0, 0),
            libc::SIGILL => (6, 0, 0),
            libc::SIGTRAP => (3, 0, 0),
            _ => (0, 0, 0),
        }
    }

    /// Build the handler's frame on the user stack and point the thread at the handler.
    fn setup_frame(&mut self, info: &SigInfo, act: &SigAction) -> Result<(), Errno> {
        if act.flags & SA_RESTORER == 0 {
            // x86-64 has no vDSO trampoline to fall back on.
            return Err(Errno::EFAULT);
        }
        let signo = info.signo;
        let old_mask = self
            .saved_mask
            .take()
            .unwrap_or(self.handle.signals.guard().mask);
        let regs = self.regs;
        let alt = self.altstack;
        let on_alt = alt.contains(regs.rsp);
        let mut sp = if act.flags & SA_ONSTACK != 0 && alt.size != 0 && !on_alt {
            alt.base + alt.size
        } else {
            // Skip the red zone below the interrupted code's stack pointer.
            regs.rsp.wrapping_sub(128)
        };
        let mut fp = self.context.fp_state().map_err(|_| Errno::EFAULT)?;
        let xstate_size = fp.len();
        if xstate_size >= SW_BYTES_OFFSET + 32 {
            // ptrace's XSAVE image keeps XCR0 where the signal frame keeps its sw bytes.
            let xfeatures = get(&fp, SW_BYTES_OFFSET);
            fp[SW_BYTES_OFFSET..SW_BYTES_OFFSET + 48].fill(0);
            fp[SW_BYTES_OFFSET..SW_BYTES_OFFSET + 4]
                .copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
            fp[SW_BYTES_OFFSET + 4..SW_BYTES_OFFSET + 8]
                .copy_from_slice(&((xstate_size + 4) as u32).to_le_bytes());
            put(&mut fp, SW_BYTES_OFFSET + 8, xfeatures);
            fp[SW_BYTES_OFFSET + 16..SW_BYTES_OFFSET + 20]
                .copy_from_slice(&(xstate_size as u32).to_le_bytes());
        }
        fp.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        sp = sp.wrapping_sub(fp.len() as u64) & !63;
        let fp_addr = sp;
        sp = (sp.wrapping_sub(FRAME_SIZE) & !15).wrapping_sub(8);
        let frame_addr = sp;

        let mut frame = vec![0u8; FRAME_SIZE as usize];
        put(&mut frame, 0, act.restorer);
        let uc = 8;
        put(&mut frame, uc, UC_FLAGS);
        put(&mut frame, uc + 16, alt.base);
        let ss_flags = if alt.size == 0 {
            SS_DISABLE
        } else if on_alt {
            SS_ONSTACK
        } else {
            0
        };
        put(&mut frame, uc + 24, ss_flags as u32 as u64);
        put(&mut frame, uc + 32, alt.size);
        let mc = uc + MCONTEXT_OFFSET;
        let gprs = [
            regs.r8,
            regs.r9,
            regs.r10,
            regs.r11,
            regs.r12,
            regs.r13,
            regs.r14,
            regs.r15,
            regs.rdi,
            regs.rsi,
            regs.rbp,
            regs.rbx,
            regs.rdx,
            regs.rax,
            regs.rcx,
            regs.rsp,
            regs.rip,
            regs.eflags,
        ];
        for (i, v) in gprs.iter().enumerate() {
            put(&mut frame, mc + 8 * i, *v);
        }
        // cs, gs, fs, ss as four 16-bit fields.
        let segs = (regs.cs & 0xffff) | ((regs.ss & 0xffff) << 48);
        put(&mut frame, mc + 144, segs);
        let (trapno, err, cr2) = self.fault_context(info);
        put(&mut frame, mc + 152, err);
        put(&mut frame, mc + 160, trapno);
        put(&mut frame, mc + 168, old_mask);
        put(&mut frame, mc + 176, cr2);
        put(&mut frame, mc + 184, fp_addr);
        put(&mut frame, uc + 296, old_mask);
        let info_at = uc + UCONTEXT_SIZE as usize;
        frame[info_at..info_at + SIGINFO_SIZE as usize]
            .copy_from_slice(zerocopy::IntoBytes::as_bytes(info));

        {
            let mut mm = self.mm.guard();
            mm.write_bytes(fp_addr, &fp)?;
            mm.write_bytes(frame_addr, &frame)?;
        }
        // The handler starts with a clean FP state (default MXCSR and x87 control word), as
        // on Linux; the interrupted state is in the frame for sigreturn.
        let _ = self
            .context
            .set_fp_state(&init_fp_state(&fp[..xstate_size]));
        self.regs.rsp = frame_addr;
        self.regs.rip = act.handler;
        self.regs.rdi = signo as u64;
        self.regs.rsi = frame_addr + 8 + UCONTEXT_SIZE;
        self.regs.rdx = frame_addr + 8;
        self.regs.rax = 0;
        self.regs.eflags &= !(0x100 | 0x400 | 0x1_0000 | 0x4_0000);
        self.regs.cs = USER_CS;
        self.regs.ss = USER_DS;
        if alt.autodisarm && act.flags & SA_ONSTACK != 0 && !on_alt {
            self.altstack = crate::task::AltStack::default();
        }
        let mut block = act.mask;
        if act.flags & SA_NODEFER == 0 {
            block |= sigbit(signo);
        }
        self.handle.signals.guard().mask = (old_mask | block) & !UNBLOCKABLE;
        if act.flags & SA_RESETHAND != 0 {
            let mut sig = self.handle.group.signals.guard();
            let a = &mut sig.actions[(signo - 1) as usize];
            a.handler = SIG_DFL;
            a.flags &= !SA_SIGINFO;
        }
        Ok(())
    }

    /// `rt_sigreturn`: restore what the frame at the stack pointer saved. A corrupt frame
    /// kills the thread with SIGSEGV.
    pub fn sigreturn(&mut self) -> Result<u64, Errno> {
        let uc_addr = self.regs.rsp;
        let mut uc = vec![0u8; UCONTEXT_SIZE as usize];
        if self.mm.guard().read_bytes(uc_addr, &mut uc).is_err() {
            self.force_default(libc::SIGSEGV);
            return Ok(self.regs.rax);
        }
        let mc = MCONTEXT_OFFSET;
        let g = |i: usize| get(&uc, mc + 8 * i);
        let mut regs = self.regs;
        regs.r8 = g(0);
        regs.r9 = g(1);
        regs.r10 = g(2);
        regs.r11 = g(3);
        regs.r12 = g(4);
        regs.r13 = g(5);
        regs.r14 = g(6);
        regs.r15 = g(7);
        regs.rdi = g(8);
        regs.rsi = g(9);
        regs.rbp = g(10);
        regs.rbx = g(11);
        regs.rdx = g(12);
        regs.rax = g(13);
        regs.rcx = g(14);
        regs.rsp = g(15);
        regs.rip = g(16);
        regs.eflags = (regs.eflags & !FIX_EFLAGS) | (g(17) & FIX_EFLAGS);
        regs.cs = USER_CS;
        regs.ss = USER_DS;
        // No restart logic may apply to the restored state.
        regs.orig_rax = u64::MAX;
        let fp_addr = get(&uc, mc + 184);
        if fp_addr != 0 {
            let mut head = [0u8; 512];
            let head_read = self.mm.guard().read_bytes(fp_addr, &mut head);
            let fp = head_read.ok().and_then(|()| {
                let size = if get32(&head, SW_BYTES_OFFSET) == FP_XSTATE_MAGIC1 {
                    get32(&head, SW_BYTES_OFFSET + 16) as usize
                } else {
                    512
                };
                // The XSAVE area is at most a few KiB; refuse absurd sizes.
                if !(512..=64 * 1024).contains(&size) {
                    return None;
                }
                let mut buf = vec![0u8; size];
                self.mm.guard().read_bytes(fp_addr, &mut buf).ok()?;
                Some(buf)
            });
            let restored = match fp {
                Some(mut buf) => {
                    if buf.len() == 512 {
                        // A legacy FXSAVE image: keep the rest of the current state.
                        let mut cur = self.context.fp_state().unwrap_or_default();
                        if cur.len() >= 512 {
                            cur[..512].copy_from_slice(&buf);
                            buf = cur;
                        }
                    }
                    self.context.set_fp_state(&buf).is_ok()
                }
                None => false,
            };
            if !restored {
                self.force_default(libc::SIGSEGV);
                return Ok(self.regs.rax);
            }
        }
        self.regs = regs;
        let mask = get(&uc, 296) & !UNBLOCKABLE;
        self.handle.signals.guard().mask = mask;
        // uc_stack: the alternate stack as it was (errors are ignored, as Linux does).
        let (base, flags, size) = (get(&uc, 16), get(&uc, 24) as u32 as i32, get(&uc, 32));
        if flags & SS_DISABLE != 0 {
            self.altstack = crate::task::AltStack::default();
        } else if size >= 2048 && !self.altstack.contains(self.regs.rsp) {
            self.altstack.base = base;
            self.altstack.size = size;
        }
        Ok(self.regs.rax)
    }
}
