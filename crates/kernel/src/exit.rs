//! Leaving: a thread's exit, a process's death (zombie, reparenting of its children, the
//! parent's `SIGCHLD`), and the end of the sandbox when init dies.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use moat_abi::SigInfo;

use crate::fs::locks;
use crate::process::{ExitStatus, Guard, ProcessTree, TaskHandle};
use crate::task::Task;
use crate::Kernel;

/// `task` has finished running: take it out of the tree.
pub fn leave(task: &Task, status: ExitStatus, cpu: Duration) {
    let uid = task.creds.uid;
    leave_tree(&task.kernel, task.tid, task.tgid, status, cpu, uid);
}

/// A cloned task that never started: it leaves as if killed.
pub fn abandon(kernel: &Arc<Kernel>, handle: &Arc<TaskHandle>) {
    handle.group.start_exit(ExitStatus::Signaled {
        signo: 9,
        core: false,
    });
    leave_tree(
        kernel,
        handle.tid(),
        handle.group.tgid,
        ExitStatus::Signaled {
            signo: 9,
            core: false,
        },
        Duration::ZERO,
        0,
    );
}

fn leave_tree(
    kernel: &Arc<Kernel>,
    tid: i32,
    tgid: i32,
    status: ExitStatus,
    cpu: Duration,
    uid: u32,
) {
    let mut tree = kernel.tree.guard();
    tree.tasks.remove(&tid);
    let Some(node) = tree.processes.get_mut(&tgid) else {
        return;
    };
    node.threads.remove(&tid);
    node.cpu_exited += cpu;
    if !node.threads.is_empty() {
        return;
    }
    // The last thread: the process dies.
    let group = node.group.clone();
    let status = group.exiting().unwrap_or(status);
    group.dead.store(true, Ordering::SeqCst);
    group.exited.notify();
    // POSIX timers die with their process.
    for (_, timer) in std::mem::take(&mut *group.posix_timers.guard()) {
        if let Some(id) = timer.armed {
            kernel.timers.cancel(id);
        }
    }
    node.zombie = Some(status);
    let parent = node.parent;
    let exit_signal = node.exit_signal;
    let children = std::mem::take(&mut node.children);
    let cpu_total = node.cpu_exited;
    locks::release(locks::Owner::Process(tgid), None);

    // Orphans go to the nearest subreaper or to init.
    let reaper = tree.reaper_for(tgid);
    for child in children {
        let (zombie, threads) = match tree.processes.get_mut(&child) {
            Some(c) => {
                c.parent = reaper;
                (c.zombie.is_some(), c.threads.clone())
            }
            None => continue,
        };
        // PR_SET_PDEATHSIG: the child asked to hear of its parent's death.
        for t in threads {
            let sig = tree.task(t).map_or(0, |h| *h.pdeathsig.guard());
            if sig != 0 {
                // As if the dying parent had sent it.
                let info = SigInfo::from_process(sig, moat_abi::SI_USER, tgid, uid);
                crate::signal::send_to_thread_locked(&tree, t, info);
            }
        }
        if let Some(r) = tree.processes.get_mut(&reaper) {
            r.children.insert(child);
            if zombie {
                r.group.child_events.notify();
            }
        }
    }

    if parent == 0 && tgid != 1 {
        // A process started from outside (OCI `exec`): no one in the sandbox waits for it;
        // whoever started it hears of its end.
        tree.processes.remove(&tgid);
        drop(tree);
        let watcher = kernel.exec_watchers.guard().remove(&tgid);
        if let Some(watcher) = watcher {
            watcher(status);
        }
        return;
    }
    if parent == 0 {
        drop(tree);
        end_sandbox(kernel, status);
        return;
    }
    let Some(parent_group) = tree.processes.get(&parent).map(|p| p.group.clone()) else {
        return;
    };
    // A parent that ignores SIGCHLD (or asked SA_NOCLDWAIT) never sees zombies.
    let autoreap = {
        let sig = parent_group.signals.guard();
        let act = sig.actions[(libc::SIGCHLD - 1) as usize];
        act.handler == libc::SIG_IGN as u64 || act.flags & libc::SA_NOCLDWAIT as u64 != 0
    };
    if autoreap {
        tree.processes.remove(&tgid);
        if let Some(p) = tree.processes.get_mut(&parent) {
            p.children.remove(&tgid);
        }
    }
    if exit_signal != 0 {
        let (code, st) = status.child_code();
        let ticks = duration_ticks(cpu_total);
        let mut info = SigInfo::child(code, tgid, uid, st, ticks, 0);
        info.signo = exit_signal;
        crate::signal::send_to_process_locked(&tree, parent, info);
    }
    parent_group.child_events.notify();
}

/// Clock ticks (`USER_HZ` = 100) in a duration.
pub fn duration_ticks(d: Duration) -> u64 {
    (d.as_millis() / 10) as u64
}

/// Init has died: every other process in the sandbox is killed (as when the init of a pid
/// namespace dies) and the sandbox ends with init's status.
pub fn end_sandbox(kernel: &Arc<Kernel>, status: ExitStatus) {
    {
        let mut s = kernel.exit_status.guard();
        if s.is_none() {
            *s = Some(status);
        }
    }
    kill_all(&kernel.tree.guard());
    kernel.ended.complete();
}

/// SIGKILL every process in the tree.
pub fn kill_all(tree: &ProcessTree) {
    for node in tree.processes.values() {
        node.group.start_exit(ExitStatus::Signaled {
            signo: libc::SIGKILL,
            core: false,
        });
        node.group.job_changed.notify();
    }
    for t in tree.tasks.values() {
        t.notify();
    }
}
