//! The sandbox as seen from outside: its processes (OCI `ps`) and its resource figures (OCI
//! `events --stats`). These live in Moat's kernel, not on the host: the host sees only the
//! kernel's and the stubs' processes, so the front asks the kernel (`SandboxConfig::inspect`).

use std::sync::Arc;
use std::time::Duration;

use crate::process::Guard;
use crate::Kernel;

/// One process of the sandbox, as `ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: i32,
    /// 0 for init and for processes started from outside (OCI `exec`).
    pub ppid: i32,
    pub uid: u32,
    /// CPU time its threads have used.
    pub cpu: Duration,
    /// Its command line (its name when the arguments are empty), at most [`MAX_COMMAND`].
    pub command: Vec<u8>,
}

/// How much of a command line is reported.
pub const MAX_COMMAND: usize = 256;

/// The sandbox's resource figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxStats {
    /// Host memory the application's memory file holds now (bytes).
    pub memory_usage: u64,
    /// Bytes allocated from the memory file (what the limit bounds).
    pub memory_allocated: u64,
    /// The memory limit (`u64::MAX`: none).
    pub memory_limit: u64,
    /// Processes the OOM killer has killed.
    pub oom_kills: u64,
    /// Tasks (threads) alive.
    pub tasks: u64,
    /// CPU time used by the live processes and the children they reaped.
    pub cpu: Duration,
}

/// A question from outside; the answer goes back through the sender.
pub enum Inspect {
    Processes(std::sync::mpsc::Sender<Vec<ProcessEntry>>),
    Stats(std::sync::mpsc::Sender<SandboxStats>),
}

/// Answer questions until the sender side goes (the thread ends with the sandbox).
pub(crate) fn serve(kernel: &Arc<Kernel>, questions: std::sync::mpsc::Receiver<Inspect>) {
    let weak = Arc::downgrade(kernel);
    let _ = std::thread::Builder::new()
        .name("moat-inspect".into())
        .spawn(move || {
            while let Ok(q) = questions.recv() {
                let Some(kernel) = weak.upgrade() else {
                    return;
                };
                match q {
                    Inspect::Processes(tx) => {
                        let _ = tx.send(processes(&kernel));
                    }
                    Inspect::Stats(tx) => {
                        let _ = tx.send(stats(&kernel));
                    }
                }
            }
        });
}

/// Every live process (zombies included, as `ps` lists them), by pid.
pub fn processes(kernel: &Kernel) -> Vec<ProcessEntry> {
    let tree = kernel.tree.guard();
    let rows: Vec<(
        ProcessEntry,
        Option<Arc<std::sync::Mutex<crate::mm::MemoryManager>>>,
    )> = tree
        .processes
        .iter()
        .map(|(&pid, n)| {
            let main = tree
                .task(pid)
                .or_else(|| n.threads.iter().next().and_then(|tid| tree.task(*tid)));
            let uid = main.map_or(0, |t| t.creds.guard().uid);
            let mm = main.and_then(|t| t.resources.guard().as_ref().map(|r| r.mm.clone()));
            let mut command = n
                .argv
                .iter()
                .map(Vec::as_slice)
                .collect::<Vec<_>>()
                .join(&b' ');
            if command.is_empty() {
                command = main.map(|t| t.name.guard().clone()).unwrap_or_default();
            }
            command.truncate(MAX_COMMAND);
            let entry = ProcessEntry {
                pid,
                ppid: n.parent,
                uid,
                cpu: n.cpu_exited,
                command,
            };
            (entry, mm)
        })
        .collect();
    drop(tree);
    // The address space counts every thread that ran in it (the tree's lock is not held
    // while a memory manager is taken).
    rows.into_iter()
        .map(|(mut e, mm)| {
            if let Some(mm) = mm {
                e.cpu = e.cpu.max(mm.guard().cpu_time());
            }
            e
        })
        .collect()
}

/// The sandbox's figures now.
pub fn stats(kernel: &Kernel) -> SandboxStats {
    let (tasks, reaped) = {
        let tree = kernel.tree.guard();
        (
            tree.tasks.len() as u64,
            tree.processes
                .values()
                .map(|n| n.cpu_children)
                .sum::<Duration>(),
        )
    };
    let live: Duration = processes(kernel).iter().map(|p| p.cpu).sum();
    SandboxStats {
        memory_usage: kernel.memory.committed_bytes(),
        memory_allocated: kernel.memory.allocated_bytes(),
        memory_limit: kernel.memory.limit(),
        oom_kills: kernel.oom.kills.load(std::sync::atomic::Ordering::Relaxed),
        tasks,
        cpu: live + reaped,
    }
}
