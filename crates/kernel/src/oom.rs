//! The sandbox's OOM killer.
//!
//! A sandbox may have a memory limit (`moat do --memory`, an OCI container's
//! `linux.resources.memory.limit`): the memory file refuses to allocate past it. `mmap` and
//! `brk` still succeed (memory is overcommitted, as Linux does), so the limit is met when a
//! page fault needs a page the file cannot give. Linux, under a memory cgroup's limit, then
//! kills the process holding the most memory with `SIGKILL` and lets the faulting one retry;
//! so does Moat: [`out_of_memory`] picks the victim, and the faulting task waits for the
//! victim's memory to come back before its instruction is tried again.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::mm::MemoryManager;
use crate::process::Guard;
use crate::Kernel;

/// How long a victim may take to die before another one is chosen (it cannot refuse
/// `SIGKILL`, but its threads may be slow to leave, e.g. in a long host call).
const VICTIM_GRACE: Duration = Duration::from_secs(2);

/// The last process the OOM killer chose, while its memory has not come back.
#[derive(Default)]
pub struct OomState {
    victim: Mutex<Option<Victim>>,
    /// How many processes the OOM killer has killed (`memory.events`' `oom_kill`).
    pub kills: std::sync::atomic::AtomicU64,
}

struct Victim {
    /// Alive until the victim's address space has given its pages back.
    memory: Weak<()>,
    chosen: Instant,
}

/// A fault could not be served for want of memory: unless an earlier victim is still dying,
/// kill the process whose address space maps the most of the memory file (shared pages
/// count in every process that maps them, as in `VmRSS`). The caller retries its fault
/// afterwards, or dies if it was the one chosen.
pub fn out_of_memory(kernel: &Kernel) {
    {
        let victim = kernel.oom.victim.guard();
        if let Some(v) = victim.as_ref() {
            if v.memory.strong_count() > 0 && v.chosen.elapsed() < VICTIM_GRACE {
                return;
            }
        }
    }
    // Candidates: every live process that is not already on its way out, with its memory.
    let candidates: Vec<(i32, Arc<Mutex<MemoryManager>>)> = {
        let tree = kernel.tree.guard();
        tree.processes
            .iter()
            .filter(|(_, n)| n.zombie.is_none() && n.group.exiting().is_none())
            .filter_map(|(&tgid, n)| {
                let mm = n.threads.iter().find_map(|tid| {
                    let t = tree.task(*tid)?;
                    let r = t.resources.guard();
                    r.as_ref().map(|r| r.mm.clone())
                })?;
                Some((tgid, mm))
            })
            .collect()
    };
    // Sizes are measured without the tree's lock (the lock order is tree, then a task's own
    // state; a memory manager is never held while the tree is taken).
    let Some((tgid, size, mm)) = candidates
        .into_iter()
        .map(|(tgid, mm)| {
            let size = mm.guard().resident_size();
            (tgid, size, mm)
        })
        .max_by_key(|&(tgid, size, _)| (size, std::cmp::Reverse(tgid)))
    else {
        return;
    };
    let tree = kernel.tree.guard();
    let name = tree
        .process(tgid)
        .and_then(|n| n.argv.first().cloned())
        .unwrap_or_default();
    let info = moat_abi::SigInfo::from_process(libc::SIGKILL, moat_abi::SI_KERNEL, 0, 0);
    if crate::signal::send_to_process_locked(&tree, tgid, info) {
        kernel
            .oom
            .kills
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            "memory limit of {} bytes reached ({} KiB in use): killed process {tgid} ({}) \
             holding {} KiB",
            kernel.memory.limit(),
            kernel.memory.allocated_bytes() >> 10,
            String::from_utf8_lossy(&name),
            size >> 10
        );
    }
    drop(tree);
    *kernel.oom.victim.guard() = Some(Victim {
        memory: mm.guard().released(),
        chosen: Instant::now(),
    });
}

/// Total and free memory as the sandbox sees them (`/proc/meminfo`, `sysinfo`): the host's,
/// bounded by the memory limit and what is allocated under it.
pub fn memory_figures(
    memory: Option<&moat_memory::MemoryFile>,
    host_total: u64,
    host_free: u64,
) -> (u64, u64) {
    match memory {
        Some(m) if m.limit() != u64::MAX => {
            let total = host_total.min(m.limit());
            let free = host_free.min(total.saturating_sub(m.allocated_bytes()));
            (total, free)
        }
        _ => (host_total, host_free),
    }
}
