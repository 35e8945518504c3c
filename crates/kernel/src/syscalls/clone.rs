//! clone, clone3, fork, vfork: new threads and processes.
//!
//! The parent's host thread prepares a [`TaskSeed`] — a thread in the same address space
//! (`CLONE_VM`: the platform starts a thread the child's host thread then attaches to) or a
//! copy-on-write fork of the memory manager (the child's host thread creates the new address
//! space and maps it) — and starts the child's host thread.

use std::sync::{Arc, Mutex};

use moat_abi::Errno;

use super::SyscallResult;
use crate::capability::Cap;
use crate::process::{Guard, ProcessNode, ThreadGroup};
use crate::task::{self, Completion, Task, TaskSeed};

/// The most tasks (threads) a sandbox may have at once.
pub const MAX_TASKS: usize = 8192;

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_PTRACE: u64 = 0x2000;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PARENT: u64 = 0x8000;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_NEWNS: u64 = 0x2_0000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_UNTRACED: u64 = 0x80_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;
const CLONE_NEWCGROUP: u64 = 0x200_0000;
const CLONE_NEWUTS: u64 = 0x400_0000;
const CLONE_NEWIPC: u64 = 0x800_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;
const CLONE_IO: u64 = 0x8000_0000;
const CLONE_NEWTIME: u64 = 0x80;

const NAMESPACES: u64 = CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
    | CLONE_NEWTIME;

/// What `clone` and `clone3` ask for, in one shape.
struct CloneArgs {
    flags: u64,
    exit_signal: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
}

pub fn clone(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // x86-64 order: flags, stack, parent_tid, child_tid, tls.
    let args = CloneArgs {
        flags: a[0] & !0xff,
        exit_signal: a[0] & 0xff,
        stack: a[1],
        parent_tid: a[2],
        child_tid: a[3],
        tls: a[4],
    };
    do_clone(task, &args)
}

/// `struct clone_args` is versioned by size: 64 bytes (v0) at least.
const CLONE_ARGS_SIZE_VER0: u64 = 64;

pub fn clone3(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let size = a[1];
    if !(CLONE_ARGS_SIZE_VER0..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; size as usize];
    task.mm.guard().read_bytes(a[0], &mut raw)?;
    let word = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    // A larger struct from a newer libc must have zeros in the fields we do not know.
    if raw.len() > 88 && raw[88..].iter().any(|&b| b != 0) {
        return Err(Errno::E2BIG);
    }
    let (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls) = (
        word(0),
        word(1),
        word(2),
        word(3),
        word(4),
        word(5),
        word(6),
        word(7),
    );
    let set_tid_size = if raw.len() >= 80 { word(9) } else { 0 };
    if set_tid_size != 0 {
        // Choosing pids needs CAP_SYS_ADMIN over the pid namespace (checkpoint/restore).
        return Err(Errno::EPERM);
    }
    if exit_signal > 64 || (stack == 0) != (stack_size == 0) || flags & CLONE_DETACHED != 0 {
        return Err(Errno::EINVAL);
    }
    let _ = pidfd;
    let args = CloneArgs {
        flags,
        exit_signal,
        // clone3 gives the stack as a range; the pointer is its top.
        stack: if stack == 0 { 0 } else { stack + stack_size },
        parent_tid,
        child_tid,
        tls,
    };
    do_clone(task, &args)
}

/// `unshare`: the caller's fd table (`CLONE_FILES`) and filesystem context (`CLONE_FS`)
/// become its own copies; `CLONE_THREAD`, `CLONE_SIGHAND` and `CLONE_VM` succeed only when
/// there is nothing to unshare (a single-threaded process), as in Linux; `CLONE_SYSVSEM` has
/// nothing to detach. New namespaces are refused (`EPERM`), as by `clone`; unknown flags are
/// `EINVAL`.
pub fn unshare(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let mut flags = a[0];
    let known = CLONE_THREAD
        | CLONE_FS
        | CLONE_SIGHAND
        | CLONE_VM
        | CLONE_FILES
        | CLONE_SYSVSEM
        | NAMESPACES;
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    // What the flags imply (`unshare_check_flags`): a new user namespace needs its own
    // thread group and fs context, the VM its handlers, the handlers their thread group,
    // a mount namespace its fs context.
    if flags & CLONE_NEWUSER != 0 {
        flags |= CLONE_THREAD | CLONE_FS;
    }
    if flags & CLONE_VM != 0 {
        flags |= CLONE_SIGHAND;
    }
    if flags & CLONE_SIGHAND != 0 {
        flags |= CLONE_THREAD;
    }
    if flags & CLONE_NEWNS != 0 {
        flags |= CLONE_FS;
    }
    if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) != 0 {
        let threads = task
            .kernel
            .tree
            .guard()
            .process(task.tgid)
            .map_or(1, |n| n.threads.len());
        if threads > 1 {
            return Err(Errno::EINVAL);
        }
    }
    if flags & NAMESPACES != 0 {
        // As for clone: the sandbox makes no namespaces.
        return Err(Errno::EPERM);
    }
    if flags & CLONE_FILES != 0 {
        let table = task.files.guard().clone();
        task.files = Arc::new(Mutex::new(table));
    }
    if flags & CLONE_FS != 0 {
        let fs = task.fs.guard().clone();
        task.fs = Arc::new(Mutex::new(fs));
    }
    task.publish_resources();
    Ok(0)
}

pub fn fork(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let args = CloneArgs {
        flags: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        parent_tid: 0,
        child_tid: 0,
        tls: 0,
    };
    do_clone(task, &args)
}

pub fn vfork(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    let args = CloneArgs {
        flags: CLONE_VM | CLONE_VFORK,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        parent_tid: 0,
        child_tid: 0,
        tls: 0,
    };
    do_clone(task, &args)
}

fn do_clone(task: &mut Task, args: &CloneArgs) -> SyscallResult {
    let flags = args.flags;
    // The combinations clone(2) forbids.
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0
        || flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0
        || flags & (CLONE_FS | CLONE_NEWNS) == (CLONE_FS | CLONE_NEWNS)
        || args.exit_signal > 64
    {
        return Err(Errno::EINVAL);
    }
    if flags & NAMESPACES != 0 {
        // New namespaces need privileges the sandbox does not grant (gVisor refuses most).
        return Err(Errno::EPERM);
    }
    if flags & CLONE_PIDFD != 0 {
        task.kernel.report_unimplemented(
            u64::from(moat_abi::syscalls::nr::CLONE) | (1 << 40),
            "CLONE_PIDFD",
        );
        return Err(Errno::EINVAL);
    }
    let _ = (CLONE_PTRACE, CLONE_UNTRACED, CLONE_IO, CLONE_SYSVSEM);
    let kernel = task.kernel.clone();
    let tid = {
        let mut tree = kernel.tree.guard();
        // Every task costs the host two threads (the task's and its stub's): the sandbox as a
        // whole stops at MAX_TASKS whoever asks, so a fork bomb cannot exhaust the host.
        if tree.tasks.len() >= MAX_TASKS {
            return Err(Errno::EAGAIN);
        }
        // RLIMIT_NPROC counts the tasks of the caller's real user; root as the real user,
        // CAP_SYS_RESOURCE and CAP_SYS_ADMIN ignore it.
        let nproc = task.limit(libc::RLIMIT_NPROC);
        let exempt = task.creds.uid == 0
            || task.creds.has(Cap::SysResource)
            || task.creds.has(Cap::SysAdmin);
        if !exempt && nproc != u64::MAX {
            let uid = task.creds.uid;
            let mine = tree
                .tasks
                .values()
                .filter(|h| h.creds.guard().uid == uid)
                .count() as u64;
            if mine >= nproc {
                return Err(Errno::EAGAIN);
            }
        }
        tree.allocate_pid().ok_or(Errno::EAGAIN)?
    };

    // Memory: the same address space with a new thread in it, or a copy-on-write fork.
    let (mm, thread, aspace) = if flags & CLONE_VM != 0 {
        let seed = task.mm.guard().new_thread().map_err(|_| Errno::EAGAIN)?;
        (task.mm.clone(), Some(seed), None)
    } else {
        // Tables and the copy of the stub in one step (one lock): another thread may not
        // change the parent's mappings in between.
        let (child, copy) = task.mm.guard().fork_with_copy()?;
        (Arc::new(Mutex::new(child)), None, copy)
    };
    let files = if flags & CLONE_FILES != 0 {
        task.files.clone()
    } else {
        Arc::new(Mutex::new(task.files.guard().clone()))
    };
    let fs = if flags & CLONE_FS != 0 {
        task.fs.clone()
    } else {
        Arc::new(Mutex::new(task.fs.guard().clone()))
    };
    let group = if flags & CLONE_THREAD != 0 {
        task.handle.group.clone()
    } else {
        let actions = task.handle.group.signals.guard().actions;
        let limits = *task.handle.group.limits.guard();
        ThreadGroup::new(tid, actions, limits)
    };
    let name = task.handle.name.guard().clone();
    let handle = task::new_handle(tid, group.clone(), &task.creds, name);
    *handle.sched.guard() = task.handle.sched.guard().inherited();
    handle.signals.guard().mask = task.handle.signals.guard().mask;
    // NO_NEW_PRIVS is inherited by every child, forever (prctl(2)).
    handle.no_new_privs.store(
        task.handle
            .no_new_privs
            .load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );

    let mut regs = task.regs;
    regs.rax = 0;
    if args.stack != 0 {
        regs.rsp = args.stack;
    }
    if flags & CLONE_SETTLS != 0 {
        regs.fs_base = args.tls;
    }
    let vfork_done = (flags & CLONE_VFORK != 0).then(|| Arc::new(Completion::default()));
    let fp_state = task.context.fp_state().ok();
    let seed = TaskSeed {
        handle: handle.clone(),
        regs,
        mm,
        thread,
        aspace,
        files,
        fs,
        creds: task.creds.clone(),
        altstack: if flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0 {
            // A new thread starts without an alternate stack.
            crate::task::AltStack::default()
        } else {
            task.altstack
        },
        clear_child_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
            args.child_tid
        } else {
            0
        },
        vfork_done: vfork_done.clone(),
        child_settid: (flags & CLONE_CHILD_SETTID != 0).then_some(args.child_tid),
        fp_state,
    };

    // Others (procfs, kcmp) see the child's memory, fds and filesystem context as soon as
    // its tid exists, not only once its host thread has started.
    *handle.resources.guard() = Some(crate::process::TaskResources {
        mm: seed.mm.clone(),
        files: seed.files.clone(),
        fs: seed.fs.clone(),
    });
    {
        let mut tree = kernel.tree.guard();
        tree.tasks.insert(tid, handle);
        if flags & CLONE_THREAD != 0 {
            if let Some(node) = tree.process_mut(task.tgid) {
                node.threads.insert(tid);
            }
        } else {
            let me = tree.process(task.tgid).ok_or(Errno::ESRCH)?;
            let parent = if flags & CLONE_PARENT != 0 {
                me.parent
            } else {
                task.tgid
            };
            let node = ProcessNode {
                group,
                parent,
                children: std::collections::BTreeSet::new(),
                pgid: me.pgid,
                sid: me.sid,
                threads: [tid].into(),
                exit_signal: args.exit_signal as i32,
                zombie: None,
                event: None,
                subreaper: false,
                execed: false,
                exe: me.exe.clone(),
                argv: me.argv.clone(),
                envp: me.envp.clone(),
                cpu_exited: std::time::Duration::ZERO,
                cpu_children: std::time::Duration::ZERO,
            };
            tree.processes.insert(tid, node);
            if let Some(p) = tree.process_mut(parent) {
                p.children.insert(tid);
            }
        }
    }
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = task.mm.guard().write_obj(args.parent_tid, &tid);
    }
    if let Err(e) = task::spawn(&kernel, seed) {
        crate::exit::abandon(&kernel, &kernel.tree.guard().task(tid).cloned().ok_or(e)?);
        return Err(e);
    }
    if let Some(done) = vfork_done {
        // The parent sleeps until the child execs or exits; only its own death ends the wait
        // early (Linux's vfork wait is killable, not interruptible).
        let waker = task.handle.waker.clone();
        let _registered = done.queue.register(&waker);
        while !done.is_done() && task.handle.group.exiting().is_none() {
            waker.sleep(None);
        }
    }
    Ok(tid as u64)
}
