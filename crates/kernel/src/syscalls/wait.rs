//! wait4, waitid: reaping children and hearing of their stops and continues.

use moat_abi::{Errno, SigInfo};

use super::{int, SyscallResult};
use crate::process::{ChildEvent, Guard, ProcessTree};
use crate::task::Task;

const WNOHANG: u32 = 1;
const WUNTRACED: u32 = 2; // also WSTOPPED for waitid
const WEXITED: u32 = 4;
const WCONTINUED: u32 = 8;
const WNOWAIT: u32 = 0x0100_0000;
const WNOTHREAD: u32 = 0x2000_0000;
const WALL: u32 = 0x4000_0000;
const WCLONE: u32 = 0x8000_0000;

/// Which children a wait is for.
#[derive(Clone, Copy)]
enum Which {
    Any,
    Pid(i32),
    Group(i32),
}

/// What a wait found.
struct Found {
    pid: i32,
    uid: u32,
    /// `si_code` and status for waitid; the status word for wait4.
    code: i32,
    status: i32,
    word: i32,
    cpu: std::time::Duration,
}

/// Look for a child to report; `Err(ECHILD)` if there is none that could ever match.
fn find(
    tree: &mut ProcessTree,
    me: i32,
    which: Which,
    options: u32,
) -> Result<Option<Found>, Errno> {
    let my_pgid = tree.process(me).map_or(0, |n| n.pgid);
    let children: Vec<i32> = tree
        .process(me)
        .map(|n| n.children.iter().copied().collect())
        .unwrap_or_default();
    let matching: Vec<i32> = children
        .into_iter()
        .filter(|&c| {
            let Some(n) = tree.process(c) else {
                return false;
            };
            let kind_ok =
                options & WALL != 0 || (options & WCLONE != 0) == (n.exit_signal != libc::SIGCHLD);
            kind_ok
                && match which {
                    Which::Any => true,
                    Which::Pid(p) => c == p,
                    Which::Group(0) => n.pgid == my_pgid,
                    Which::Group(g) => n.pgid == g,
                }
        })
        .collect();
    if matching.is_empty() {
        return Err(Errno::ECHILD);
    }
    for c in matching {
        let Some(n) = tree.process(c) else {
            continue;
        };
        let uid = n
            .threads
            .iter()
            .next()
            .and_then(|t| tree.task(*t))
            .map_or(0, |h| h.creds.guard().uid);
        if let Some(status) = n.zombie {
            if options & WEXITED == 0 {
                continue;
            }
            let (code, st) = status.child_code();
            let found = Found {
                pid: c,
                uid,
                code,
                status: st,
                word: status.wait_status(),
                // The child's own time and its reaped children's (Linux's RUSAGE_BOTH).
                cpu: n.cpu_exited + n.cpu_children,
            };
            if options & WNOWAIT == 0 {
                tree.processes.remove(&c);
                if let Some(me_node) = tree.process_mut(me) {
                    me_node.children.remove(&c);
                    me_node.cpu_children += found.cpu;
                }
            }
            return Ok(Some(found));
        }
        match n.event {
            Some(ChildEvent::Stopped(sig)) if options & WUNTRACED != 0 => {
                if options & WNOWAIT == 0 {
                    if let Some(n) = tree.process_mut(c) {
                        n.event = None;
                    }
                }
                return Ok(Some(Found {
                    pid: c,
                    uid,
                    code: moat_abi::CLD_STOPPED,
                    status: sig,
                    word: (sig << 8) | 0x7f,
                    cpu: std::time::Duration::ZERO,
                }));
            }
            Some(ChildEvent::Continued) if options & WCONTINUED != 0 => {
                if options & WNOWAIT == 0 {
                    if let Some(n) = tree.process_mut(c) {
                        n.event = None;
                    }
                }
                return Ok(Some(Found {
                    pid: c,
                    uid,
                    code: moat_abi::CLD_CONTINUED,
                    status: libc::SIGCONT,
                    word: 0xffff,
                    cpu: std::time::Duration::ZERO,
                }));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Wait as the options say: `None` when `WNOHANG` found nothing.
fn wait_for(task: &mut Task, which: Which, options: u32) -> Result<Option<Found>, Errno> {
    let group = task.handle.group.clone();
    let me = task.tgid;
    let kernel = task.kernel.clone();
    task.block_on(&[&group.child_events], None, |_| {
        let mut tree = kernel.tree.guard();
        match find(&mut tree, me, which, options)? {
            Some(f) => Ok(Some(Some(f))),
            None if options & WNOHANG != 0 => Ok(Some(None)),
            None => Ok(None),
        }
    })
}

/// `struct rusage` is 144 bytes: user and system time, then counters.
fn write_rusage(task: &Task, addr: u64, cpu: std::time::Duration) -> Result<(), Errno> {
    let mut r = [0u64; 18];
    r[0] = cpu.as_secs();
    r[1] = u64::from(cpu.subsec_micros());
    task.mm.guard().write_obj(addr, &r)
}

pub fn wait4(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let pid = int(a[0]);
    let options = a[2] as u32;
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    let which = match pid {
        -1 => Which::Any,
        0 => Which::Group(0),
        p if p > 0 => Which::Pid(p),
        // i32::MIN has no process group.
        p => Which::Group(p.checked_neg().ok_or(Errno::ESRCH)?),
    };
    let Some(found) = wait_for(task, which, options | WEXITED)? else {
        return Ok(0);
    };
    if a[1] != 0 {
        task.mm.guard().write_obj(a[1], &found.word)?;
    }
    if a[3] != 0 {
        write_rusage(task, a[3], found.cpu)?;
    }
    Ok(found.pid as u64)
}

const P_ALL: i32 = 0;
const P_PID: i32 = 1;
const P_PGID: i32 = 2;
const P_PIDFD: i32 = 3;

pub fn waitid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (idtype, id, infop, options) = (int(a[0]), int(a[1]), a[2], a[3] as u32);
    if options & !(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE)
        != 0
        || options & (WUNTRACED | WEXITED | WCONTINUED) == 0
    {
        return Err(Errno::EINVAL);
    }
    let which = match idtype {
        P_ALL => Which::Any,
        P_PID if id > 0 => Which::Pid(id),
        P_PGID if id >= 0 => Which::Group(id),
        P_PIDFD => Which::Pid(super::signalfd::pidfd_process(task, id)?),
        _ => return Err(Errno::EINVAL),
    };
    let found = wait_for(task, which, options)?;
    if infop != 0 {
        let info = match &found {
            Some(f) => SigInfo::child(f.code, f.pid, f.uid, f.status, 0, 0),
            // WNOHANG with nothing to report: a zeroed siginfo (si_pid 0).
            None => SigInfo::default(),
        };
        task.mm.guard().write_obj(infop, &info)?;
    }
    if a[4] != 0 {
        let cpu = found.as_ref().map_or(std::time::Duration::ZERO, |f| f.cpu);
        write_rusage(task, a[4], cpu)?;
    }
    Ok(0)
}
