//! The scheduling calls: CPU affinity, policies and priorities, nice values, getcpu,
//! membarrier.
//!
//! Moat does not schedule: the host runs every task's thread as an ordinary `SCHED_OTHER`
//! thread at Moat's own nice value, on any of the sandbox's CPUs. What the application sets
//! here is checked as Linux checks it (policies, priority ranges, privilege, resource limits),
//! kept per thread in its [`SchedState`], inherited by `clone` and reported back; it does not
//! change how the host schedules the thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_abi::{Errno, Timespec};

use super::{int, SyscallResult};
use crate::capability::Cap;
use crate::process::{Guard, TaskHandle};
use crate::task::Task;
use crate::Credentials;

const SCHED_OTHER: i32 = 0;
const SCHED_FIFO: i32 = 1;
const SCHED_RR: i32 = 2;
const SCHED_BATCH: i32 = 3;
const SCHED_IDLE: i32 = 5;
const SCHED_DEADLINE: i32 = 6;
/// Or'ed into a policy: children start with the default policy and a non-negative nice.
const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;
/// Real-time priorities are 1..=99.
const MAX_RT_PRIO: i32 = 99;
/// The quantum `sched_rr_get_interval` reports (Linux's default `sched_rr_timeslice_ms`).
const RR_INTERVAL: Duration = Duration::from_millis(100);

/// A thread's scheduling attributes.
#[derive(Clone, Debug, Default)]
pub struct SchedState {
    /// CPUs the thread may run on, a subset of the sandbox's; empty: all of the sandbox's.
    pub affinity: Vec<u8>,
    pub policy: i32,
    /// 1..=99 under `SCHED_FIFO`/`SCHED_RR`, 0 otherwise.
    pub rt_priority: i32,
    /// -20..=19.
    pub nice: i32,
    pub reset_on_fork: bool,
}

impl SchedState {
    /// What a task created by `clone` starts with: the creator's attributes, but with
    /// `SCHED_RESET_ON_FORK` the default policy and no negative nice (Linux's `sched_fork`).
    #[must_use]
    pub fn inherited(&self) -> SchedState {
        let mut child = self.clone();
        if child.reset_on_fork {
            if is_rt(child.policy) {
                child.policy = SCHED_OTHER;
                child.rt_priority = 0;
                child.nice = 0;
            }
            child.nice = child.nice.max(0);
            child.reset_on_fork = false;
        }
        child
    }
}

fn is_rt(policy: i32) -> bool {
    policy == SCHED_FIFO || policy == SCHED_RR
}

/// The task `pid` names (0: the caller), or `ESRCH`.
fn target(task: &Task, pid: i32) -> Result<Arc<TaskHandle>, Errno> {
    if pid == 0 || pid == task.tid {
        return Ok(task.handle.clone());
    }
    let handle = task.kernel.tree.guard().task(pid).cloned();
    handle.ok_or(Errno::ESRCH)
}

fn creds_of(handle: &TaskHandle) -> Credentials {
    handle.creds.guard().clone()
}

/// Whether `caller` may change `target`'s scheduling without privilege: same effective user
/// as the target's real or effective one (Linux's `check_same_owner`).
fn same_owner(caller: &Credentials, target: &Credentials) -> bool {
    caller.euid == target.euid || caller.euid == target.uid
}

/// A resource limit of the process `handle` belongs to.
fn limit_of(handle: &TaskHandle, resource: u32) -> u64 {
    handle.group.limits.guard()[resource as usize].cur
}

/// Whether `target` may get nice value `nice`: within its `RLIMIT_NICE` (in Linux's
/// `20 - nice` encoding), or the caller holds `CAP_SYS_NICE` (Linux's `can_nice`).
fn can_nice(caller: &Credentials, target: &TaskHandle, nice: i32) -> bool {
    let wanted = u64::try_from(20 - nice).unwrap_or(0);
    wanted <= limit_of(target, libc::RLIMIT_NICE) || caller.has(Cap::SysNice)
}

/// The CPU mask `state` allows, as bytes of the sandbox's cpumask size.
fn affinity_mask(task: &Task, state: &SchedState) -> Vec<u8> {
    if state.affinity.is_empty() {
        task.kernel.cpu_mask.clone()
    } else {
        state.affinity.clone()
    }
}

pub fn sched_setaffinity(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (pid, len, addr) = (int(a[0]), a[1] as u32 as usize, a[2]);
    // The mask is read first: shorter than the kernel's cpumask is zero-extended, longer is
    // cut.
    let sandbox = task.kernel.cpu_mask.clone();
    let mut wanted = vec![0u8; sandbox.len()];
    let n = len.min(wanted.len());
    task.mm.guard().read_bytes(addr, &mut wanted[..n])?;
    let handle = target(task, pid)?;
    if !Arc::ptr_eq(&handle, &task.handle)
        && !same_owner(&task.creds, &creds_of(&handle))
        && !task.creds.has(Cap::SysNice)
    {
        return Err(Errno::EPERM);
    }
    // The sandbox's CPUs are all there are (Linux intersects with the cpuset).
    for (w, s) in wanted.iter_mut().zip(&sandbox) {
        *w &= s;
    }
    if wanted.iter().all(|&b| b == 0) {
        return Err(Errno::EINVAL);
    }
    handle.sched.guard().affinity = wanted;
    Ok(0)
}

pub fn sched_getaffinity(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (pid, len, addr) = (int(a[0]), a[1] as u32, a[2]);
    let sandbox = &task.kernel.cpu_mask;
    let nr_cpu_ids = sandbox
        .iter()
        .enumerate()
        .rev()
        .find(|(_, &b)| b != 0)
        .map_or(1, |(i, &b)| i * 8 + 8 - b.leading_zeros() as usize);
    // Linux computes `len * 8` in 32 bits.
    if (len.wrapping_mul(8) as usize) < nr_cpu_ids || len % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let handle = target(task, pid)?;
    let mask = {
        let state = handle.sched.guard();
        affinity_mask(task, &state)
    };
    let n = (len as usize).min(mask.len());
    task.mm.guard().write_bytes(addr, &mask[..n])?;
    Ok(n as u64)
}

/// `getcpu`: Moat does not know which host CPU the thread last ran on; it reports the first
/// CPU the thread's affinity allows (the one it runs on when pinned to one), on node 0.
pub fn getcpu(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let mask = {
        let state = task.handle.sched.guard();
        affinity_mask(task, &state)
    };
    let cpu = (0..mask.len() * 8)
        .find(|&i| mask[i / 8] & (1 << (i % 8)) != 0)
        .unwrap_or(0) as u32;
    let mut mm = task.mm.guard();
    // Both are written even if the first fails, as Linux does.
    let cpu_ok = a[0] == 0 || mm.write_obj(a[0], &cpu).is_ok();
    let node_ok = a[1] == 0 || mm.write_obj(a[1], &0u32).is_ok();
    if cpu_ok && node_ok {
        Ok(0)
    } else {
        Err(Errno::EFAULT)
    }
}

pub fn sched_getscheduler(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    let handle = target(task, pid)?;
    let state = handle.sched.guard();
    let reset = if state.reset_on_fork {
        SCHED_RESET_ON_FORK
    } else {
        0
    };
    Ok(u64::from((state.policy | reset) as u32))
}

pub fn sched_getparam(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (pid, addr) = (int(a[0]), a[1]);
    if addr == 0 || pid < 0 {
        return Err(Errno::EINVAL);
    }
    let handle = target(task, pid)?;
    let priority = handle.sched.guard().rt_priority;
    task.mm.guard().write_obj(addr, &priority)?;
    Ok(0)
}

pub fn sched_setscheduler(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let policy = int(a[1]);
    if policy < 0 {
        return Err(Errno::EINVAL);
    }
    set_scheduler(task, int(a[0]), Some(policy), a[2])
}

pub fn sched_setparam(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_scheduler(task, int(a[0]), None, a[1])
}

/// `sched_setscheduler`, or `sched_setparam` (`policy` None: keep the current one), with
/// Linux's checks in Linux's order.
fn set_scheduler(task: &mut Task, pid: i32, policy: Option<i32>, param: u64) -> SyscallResult {
    if param == 0 || pid < 0 {
        return Err(Errno::EINVAL);
    }
    let priority: i32 = task.mm.guard().read_obj(param)?;
    let handle = target(task, pid)?;
    let target_creds = creds_of(&handle);
    let caller = task.creds.clone();
    let mut state = handle.sched.guard();
    let (policy, reset) = match policy {
        None => (state.policy, state.reset_on_fork),
        Some(p) => (p & !SCHED_RESET_ON_FORK, p & SCHED_RESET_ON_FORK != 0),
    };
    if !matches!(
        policy,
        SCHED_OTHER | SCHED_FIFO | SCHED_RR | SCHED_BATCH | SCHED_IDLE | SCHED_DEADLINE
    ) {
        return Err(Errno::EINVAL);
    }
    // The priority is unsigned to Linux: a negative one is out of range. SCHED_DEADLINE
    // needs the parameters only `sched_setattr` carries.
    if priority as u32 > MAX_RT_PRIO as u32
        || policy == SCHED_DEADLINE
        || is_rt(policy) != (priority != 0)
    {
        return Err(Errno::EINVAL);
    }
    if !caller.has(Cap::SysNice) {
        if is_rt(policy) {
            let rtprio = limit_of(&handle, libc::RLIMIT_RTPRIO);
            if policy != state.policy && rtprio == 0 {
                return Err(Errno::EPERM);
            }
            if priority > state.rt_priority && priority as u64 > rtprio {
                return Err(Errno::EPERM);
            }
        }
        // Leaving SCHED_IDLE counts as asking for the current nice value anew.
        if state.policy == SCHED_IDLE
            && policy != SCHED_IDLE
            && !can_nice(&caller, &handle, state.nice)
        {
            return Err(Errno::EPERM);
        }
        if !same_owner(&caller, &target_creds) {
            return Err(Errno::EPERM);
        }
        if state.reset_on_fork && !reset {
            return Err(Errno::EPERM);
        }
    }
    state.policy = policy;
    state.rt_priority = priority;
    state.reset_on_fork = reset;
    Ok(0)
}

pub fn sched_get_priority_max(_: &mut Task, a: &[u64; 6]) -> SyscallResult {
    match int(a[0]) {
        SCHED_FIFO | SCHED_RR => Ok(MAX_RT_PRIO as u64),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE | SCHED_DEADLINE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_get_priority_min(_: &mut Task, a: &[u64; 6]) -> SyscallResult {
    match int(a[0]) {
        SCHED_FIFO | SCHED_RR => Ok(1),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE | SCHED_DEADLINE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// `sched_rr_get_interval`: a fixed quantum, none under `SCHED_FIFO` (which has no
/// time slices).
pub fn sched_rr_get_interval(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    let handle = target(task, pid)?;
    let interval = if handle.sched.guard().policy == SCHED_FIFO {
        Duration::ZERO
    } else {
        RR_INTERVAL
    };
    let ts = Timespec {
        tv_sec: interval.as_secs() as i64,
        tv_nsec: i64::from(interval.subsec_nanos()),
    };
    task.mm.guard().write_obj(a[1], &ts)?;
    Ok(0)
}

const PRIO_PROCESS: i32 = 0;
const PRIO_PGRP: i32 = 1;
const PRIO_USER: i32 = 2;

/// The threads `which`/`who` name for `getpriority`/`setpriority`, with their credentials.
fn priority_targets(
    task: &Task,
    which: i32,
    who: i32,
) -> Result<Vec<(Arc<TaskHandle>, Credentials)>, Errno> {
    let tree = task.kernel.tree.guard();
    let handles: Vec<Arc<TaskHandle>> = match which {
        PRIO_PROCESS if who == 0 => vec![task.handle.clone()],
        PRIO_PROCESS => tree.task(who).cloned().into_iter().collect(),
        PRIO_PGRP => {
            let pgid = if who == 0 {
                tree.process(task.tgid).map_or(0, |n| n.pgid)
            } else {
                who
            };
            tree.group_members(pgid)
                .iter()
                .filter_map(|p| tree.process(*p))
                .flat_map(|n| n.threads.iter())
                .filter_map(|t| tree.task(*t).cloned())
                .collect()
        }
        PRIO_USER => {
            let uid = if who == 0 { task.creds.uid } else { who as u32 };
            tree.tasks
                .values()
                .filter(|h| h.creds.guard().uid == uid)
                .cloned()
                .collect()
        }
        _ => return Err(Errno::EINVAL),
    };
    drop(tree);
    Ok(handles
        .into_iter()
        .map(|h| {
            let creds = if Arc::ptr_eq(&h, &task.handle) {
                task.creds.clone()
            } else {
                creds_of(&h)
            };
            (h, creds)
        })
        .collect())
}

/// `getpriority`: the highest priority (lowest nice) among the named threads, encoded as
/// `20 - nice` (1..=40) so that it is never an error value; libc turns it back.
pub fn getpriority(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let targets = priority_targets(task, int(a[0]), int(a[1]))?;
    targets
        .iter()
        .map(|(h, _)| 20 - h.sched.guard().nice)
        .max()
        .map(|v| v as u64)
        .ok_or(Errno::ESRCH)
}

/// `setpriority`: every named thread the caller may renice gets the (clamped) value; the
/// result is the last failure (`EPERM`: not the caller's; `EACCES`: lowering nice beyond
/// `RLIMIT_NICE` without privilege), else success, else `ESRCH` if none was named.
pub fn setpriority(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let nice = int(a[2]).clamp(-20, 19);
    let targets = priority_targets(task, int(a[0]), int(a[1]))?;
    let caller = task.creds.clone();
    let mut result = Err(Errno::ESRCH);
    for (handle, creds) in targets {
        if !(creds.uid == caller.euid || creds.euid == caller.euid || caller.has(Cap::SysNice)) {
            result = Err(Errno::EPERM);
            continue;
        }
        let current = handle.sched.guard().nice;
        if nice < current && !can_nice(&caller, &handle, nice) {
            result = Err(Errno::EACCES);
            continue;
        }
        if result == Err(Errno::ESRCH) {
            result = Ok(0);
        }
        handle.sched.guard().nice = nice;
    }
    result
}

const MEMBARRIER_CMD_QUERY: i32 = 0;
const MEMBARRIER_CMD_GLOBAL: i32 = 1;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: i32 = 2;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: i32 = 4;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: i32 = 8;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: i32 = 16;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: i32 = 128;
const MEMBARRIER_CMD_GET_REGISTRATIONS: i32 = 512;
const MEMBARRIER_CMD_FLAG_CPU: u32 = 1;
/// The commands Moat serves. Not the `SYNC_CORE` ones (a ptrace round trip is not
/// guaranteed to serialise the instruction stream of the other threads' CPUs) nor the
/// `RSEQ` ones (Moat has no `rseq`): those are `EINVAL`, as on kernels without them.
const MEMBARRIER_SUPPORTED: i32 = MEMBARRIER_CMD_GLOBAL
    | MEMBARRIER_CMD_GLOBAL_EXPEDITED
    | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
    | MEMBARRIER_CMD_PRIVATE_EXPEDITED
    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
    | MEMBARRIER_CMD_GET_REGISTRATIONS;

/// `membarrier`. The caller's own trap into Moat is a full barrier on its CPU (a ptrace stop
/// is a context switch); the other threads are made to pass through one: each that runs
/// application code is interrupted, and the call returns once each has come back into the
/// kernel at least once (or was not running application code at all), since a thread stopped
/// under ptrace has executed a full barrier and executes another before it runs again.
pub fn membarrier(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (cmd, flags) = (int(a[0]), a[1] as u32);
    let flags_ok = if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ {
        flags & !MEMBARRIER_CMD_FLAG_CPU == 0
    } else {
        flags == 0
    };
    if !flags_ok {
        return Err(Errno::EINVAL);
    }
    let registered = &task.handle.group.membarrier;
    match cmd {
        MEMBARRIER_CMD_QUERY => Ok(MEMBARRIER_SUPPORTED as u64),
        MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED => {
            let others: Vec<_> = {
                let tree = task.kernel.tree.guard();
                tree.tasks
                    .values()
                    .filter(|h| !Arc::ptr_eq(h, &task.handle))
                    .cloned()
                    .collect()
            };
            pass_barrier(others);
            Ok(0)
        }
        MEMBARRIER_CMD_PRIVATE_EXPEDITED => {
            if registered.load(Ordering::SeqCst) & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED as u32
                == 0
            {
                return Err(Errno::EPERM);
            }
            pass_barrier(sharing_memory(task));
            Ok(0)
        }
        MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED => {
            registered.fetch_or(cmd as u32, Ordering::SeqCst);
            Ok(0)
        }
        MEMBARRIER_CMD_GET_REGISTRATIONS => Ok(u64::from(registered.load(Ordering::SeqCst))),
        _ => Err(Errno::EINVAL),
    }
}

/// The other tasks that share the caller's address space.
fn sharing_memory(task: &Task) -> Vec<Arc<TaskHandle>> {
    let tree = task.kernel.tree.guard();
    tree.tasks
        .values()
        .filter(|h| !Arc::ptr_eq(h, &task.handle))
        .filter(|h| {
            h.resources
                .guard()
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(&r.mm, &task.mm))
        })
        .cloned()
        .collect()
}

/// Return once every task of `handles` has passed through a full memory barrier since the
/// call: it was not running application code, or it trapped into the kernel since.
fn pass_barrier(handles: Vec<Arc<TaskHandle>>) {
    let interrupt = |h: &TaskHandle| {
        if let Some(i) = h.interrupter.guard().as_ref() {
            i.interrupt();
        }
    };
    let mut waiting: Vec<(Arc<TaskHandle>, u64)> = handles
        .into_iter()
        .filter_map(|h| {
            let traps = h.traps.load(Ordering::SeqCst);
            h.in_app.load(Ordering::SeqCst).then(|| {
                interrupt(&h);
                (h, traps)
            })
        })
        .collect();
    let mut kicked = Instant::now();
    loop {
        waiting.retain(|(h, traps)| {
            h.in_app.load(Ordering::SeqCst) && h.traps.load(Ordering::SeqCst) == *traps
        });
        if waiting.is_empty() {
            return;
        }
        // An interruption that raced with the thread's own trap may have been absorbed:
        // interrupt again now and then.
        if kicked.elapsed() > Duration::from_millis(1) {
            for (h, _) in &waiting {
                interrupt(h);
            }
            kicked = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}
