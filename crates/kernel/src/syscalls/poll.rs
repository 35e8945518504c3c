//! poll, ppoll over the kinds of files that exist so far: files in the tree are always ready
//! (as regular files are on Linux); donated host fds are polled on the host, with the
//! timeout, in one call. Pipes and sockets bring kernel wait queues (issue "Processes").

use std::time::Duration;

use moat_abi::{Errno, Timespec};
use rustix::event::{PollFd, PollFlags};

use super::SyscallResult;
use crate::process::Guard;
use crate::task::Task;

/// `struct pollfd`: fd, events, revents.
const POLLFD_SIZE: u64 = 8;

fn do_poll(task: &mut Task, fds_addr: u64, nfds: u64, timeout: Option<Duration>) -> SyscallResult {
    if nfds > task.limit(libc::RLIMIT_NOFILE) {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; (nfds * POLLFD_SIZE) as usize];
    task.mm.guard().read_bytes(fds_addr, &mut raw)?;
    let entries: Vec<(i32, i16)> = raw
        .chunks(8)
        .map(|c| {
            (
                i32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                i16::from_le_bytes([c[4], c[5]]),
            )
        })
        .collect();
    let files: Vec<_> = entries
        .iter()
        .map(|&(fd, _)| {
            if fd < 0 {
                None
            } else {
                Some(task.files.guard().get(fd))
            }
        })
        .collect();
    let mut revents = vec![0i16; entries.len()];
    let mut host = Vec::new();
    let mut host_index = Vec::new();
    let always = libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM;
    for (i, (&(_, events), file)) in entries.iter().zip(&files).enumerate() {
        match file {
            None => {}
            Some(Err(_)) => revents[i] = libc::POLLNVAL,
            Some(Ok(f)) => match f.ops().host_fd() {
                Some(fd) => {
                    host.push(PollFd::from_borrowed_fd(
                        fd,
                        PollFlags::from_bits_truncate(events as u16),
                    ));
                    host_index.push(i);
                }
                None => revents[i] = events & always,
            },
        }
    }
    let ready_now = revents.iter().any(|&r| r != 0);
    if !host.is_empty() {
        let wait = if ready_now {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let ts = wait.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        loop {
            match rustix::event::poll(&mut host, ts.as_ref()) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Errno(e.raw_os_error())),
            }
        }
        for (p, &i) in host.iter().zip(&host_index) {
            revents[i] = p.revents().bits() as i16;
        }
    } else if !ready_now {
        if let Some(t) = timeout {
            std::thread::sleep(t);
        } else {
            // Nothing can ever become ready: like Linux, sleep until a signal (which cannot
            // arrive yet), so wait in long steps.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
    for (i, r) in revents.iter().enumerate() {
        raw[i * 8 + 6..i * 8 + 8].copy_from_slice(&r.to_le_bytes());
    }
    task.mm.guard().write_bytes(fds_addr, &raw)?;
    Ok(revents.iter().filter(|&&r| r != 0).count() as u64)
}

pub fn poll(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let ms = a[2] as i32;
    let timeout = (ms >= 0).then(|| Duration::from_millis(ms as u64));
    do_poll(task, a[0], a[1], timeout)
}

pub fn ppoll(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let timeout = if a[2] == 0 {
        None
    } else {
        let t: Timespec = task.mm.guard().read_obj(a[2])?;
        if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) {
            return Err(Errno::EINVAL);
        }
        Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
    };
    if a[3] != 0 && a[4] != 8 {
        return Err(Errno::EINVAL);
    }
    do_poll(task, a[0], a[1], timeout)
}
