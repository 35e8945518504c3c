//! socketpair and the socket calls a connected unix pair answers: send/recv (to/from, msg),
//! shutdown, get/setsockopt, getsockname/getpeername. Sockets made by `socket(2)` (bound,
//! listening, connected by address, and the network families) come with issue 7.

use std::sync::Arc;

use moat_abi::{Errno, SigInfo};

use super::read_write::iovecs;
use super::{int, SyscallResult};
use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT};
use crate::fs::unix::UnixSocket;
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::task::Task;

const MSG_PEEK: u32 = 0x2;
const MSG_TRUNC: u32 = 0x20;
const MSG_DONTWAIT: u32 = 0x40;
const MSG_WAITALL: u32 = 0x100;
const MSG_NOSIGNAL: u32 = 0x4000;
const MSG_CMSG_CLOEXEC: u32 = 0x4000_0000;

pub fn socketpair(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (domain, ty, protocol) = (int(a[0]), int(a[1]), int(a[2]));
    let kind = ty & 0xf;
    let flags = ty & !0xf;
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if domain != libc::AF_UNIX {
        // Pairs exist only for unix sockets (the network families refuse them).
        return Err(if domain == libc::AF_INET || domain == libc::AF_INET6 {
            Errno::EOPNOTSUPP
        } else {
            Errno::EAFNOSUPPORT
        });
    }
    if !matches!(
        kind,
        libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET
    ) {
        return Err(Errno::ESOCKTNOSUPPORT);
    }
    if protocol != 0 {
        return Err(Errno::EPROTONOSUPPORT);
    }
    task.mm.guard().check_access(a[3], 8, true)?;
    let (x, y) = UnixSocket::pair(kind);
    let status = libc::O_RDWR as u32 | (flags & libc::SOCK_NONBLOCK) as u32;
    let cloexec = flags & libc::SOCK_CLOEXEC != 0;
    let limit = task.limit(libc::RLIMIT_NOFILE);
    let mut files = task.files.guard();
    let fx = files.install(
        Arc::new(OpenFile::new(Box::new(x), status)),
        cloexec,
        0,
        limit,
    )?;
    let fy = match files.install(
        Arc::new(OpenFile::new(Box::new(y), status)),
        cloexec,
        0,
        limit,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = files.remove(fx);
            return Err(e);
        }
    };
    drop(files);
    task.mm.guard().write_obj(a[3], &[fx, fy])?;
    Ok(0)
}

/// The socket open at `fd`: `ENOTSOCK` for other files.
fn socket(task: &Task, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    let file = task.file(int(fd))?;
    if file.ops_as::<UnixSocket>().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(file)
}

fn unix(file: &OpenFile) -> &UnixSocket {
    file.ops_as::<UnixSocket>().expect("checked by socket()")
}

/// Receive into `buf`, waiting unless non-blocking; `MSG_WAITALL` keeps a stream waiting
/// until the buffer is full (or end of stream, or a signal after some data).
fn receive(
    task: &mut Task,
    file: &OpenFile,
    buf: &mut [u8],
    flags: u32,
) -> Result<(usize, usize), Errno> {
    let nonblocking = file.nonblocking() || flags & MSG_DONTWAIT != 0;
    let sock = unix(file);
    let wait_all = flags & MSG_WAITALL != 0 && sock_is_stream(file) && flags & MSG_PEEK == 0;
    let mut done = 0;
    loop {
        match sock.receive(&mut buf[done..], flags & MSG_PEEK != 0) {
            Ok((0, _)) if done > 0 || buf.is_empty() => return Ok((done, done)),
            Ok((n, whole)) if !wait_all => return Ok((done + n, whole)),
            Ok((0, _)) => return Ok((done, done)),
            Ok((n, _)) => {
                done += n;
                if done == buf.len() {
                    return Ok((done, done));
                }
            }
            Err(Errno::EAGAIN) if nonblocking && done > 0 => return Ok((done, done)),
            Err(Errno::EAGAIN) if !nonblocking => {}
            Err(e) => return Err(e),
        }
        let queue = file.ops().wait_queue().expect("sockets have a queue");
        let waited = task.block_on(&[queue], None, |_| {
            Ok((file.ops().poll(file) & (POLLIN | POLLHUP | POLLERR) != 0).then_some(()))
        });
        if let Err(e) = waited {
            return if done > 0 { Ok((done, done)) } else { Err(e) };
        }
    }
}

fn sock_is_stream(file: &OpenFile) -> bool {
    unix(file).messages_kind() == libc::SOCK_STREAM
}

/// Send `data`, waiting for room unless non-blocking; `EPIPE` raises `SIGPIPE` unless
/// `MSG_NOSIGNAL`.
fn send(task: &mut Task, file: &OpenFile, data: &[u8], flags: u32) -> SyscallResult {
    let nonblocking = file.nonblocking() || flags & MSG_DONTWAIT != 0;
    let sock = unix(file);
    let mut done = 0;
    loop {
        match sock.send(&data[done..]) {
            Ok(n) => {
                done += n;
                if done == data.len() || nonblocking {
                    return Ok(done as u64);
                }
            }
            Err(Errno::EAGAIN) if nonblocking && done > 0 => return Ok(done as u64),
            Err(Errno::EAGAIN) if !nonblocking => {}
            Err(Errno::EPIPE) => {
                if flags & MSG_NOSIGNAL == 0 {
                    let info = SigInfo::from_process(
                        libc::SIGPIPE,
                        moat_abi::SI_USER,
                        task.tgid,
                        task.creds.uid,
                    );
                    crate::signal::send_to_thread_locked(&task.kernel.tree.guard(), task.tid, info);
                }
                return Err(Errno::EPIPE);
            }
            Err(e) => return Err(e),
        }
        let queue = file.ops().wait_queue().expect("sockets have a queue");
        let waited = task.block_on(&[queue], None, |_| {
            Ok((file.ops().poll(file) & (POLLOUT | POLLERR) != 0).then_some(()))
        });
        if let Err(e) = waited {
            return if done > 0 { Ok(done as u64) } else { Err(e) };
        }
    }
}

pub fn sendto(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket(task, a[0])?;
    if a[4] != 0 {
        // A connected pair has its peer already.
        return Err(Errno::EISCONN);
    }
    let mut buf = vec![0u8; a[2].min(1 << 24) as usize];
    task.mm.guard().read_bytes(a[1], &mut buf)?;
    send(task, &file, &buf, a[3] as u32)
}

pub fn recvfrom(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket(task, a[0])?;
    let flags = a[3] as u32;
    let len = a[2].min(1 << 24) as usize;
    task.mm.guard().check_access(a[1], len as u64, true)?;
    let mut buf = vec![0u8; len];
    let (n, whole) = receive(task, &file, &mut buf, flags)?;
    task.mm.guard().write_bytes(a[1], &buf[..n])?;
    if a[4] != 0 && a[5] != 0 {
        // The peer of a socketpair is unnamed: an address of just the family.
        let _: u32 = task.mm.guard().read_obj(a[5])?;
        task.mm.guard().write_obj(a[5], &0u32)?;
    }
    Ok(if flags & MSG_TRUNC != 0 { whole } else { n } as u64)
}

/// `struct msghdr`: name, namelen, iov, iovlen, control, controllen, flags.
#[derive(Clone, Copy)]
struct MsgHdr {
    iov: u64,
    iovlen: u64,
    controllen: u64,
}

fn read_msghdr(task: &Task, addr: u64) -> Result<MsgHdr, Errno> {
    let raw: [u64; 7] = task.mm.guard().read_obj(addr)?;
    Ok(MsgHdr {
        iov: raw[2],
        iovlen: raw[3],
        controllen: raw[5],
    })
}

pub fn sendmsg(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket(task, a[0])?;
    let hdr = read_msghdr(task, a[1])?;
    if hdr.controllen != 0 {
        // Passing fds and credentials (SCM_RIGHTS, SCM_CREDENTIALS) comes with issue 7.
        task.kernel.report_unimplemented(
            u64::from(moat_abi::syscalls::nr::SENDMSG) | (1 << 32),
            "sendmsg with ancillary data",
        );
        return Err(Errno::EOPNOTSUPP);
    }
    let iovs = iovecs(task, hdr.iov, hdr.iovlen)?;
    let mut buf = Vec::new();
    for v in &iovs {
        let start = buf.len();
        buf.resize(start + v.len.min(1 << 24) as usize, 0);
        task.mm.guard().read_bytes(v.base, &mut buf[start..])?;
    }
    send(task, &file, &buf, a[2] as u32)
}

pub fn recvmsg(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket(task, a[0])?;
    let flags = a[2] as u32 & !MSG_CMSG_CLOEXEC;
    let hdr = read_msghdr(task, a[1])?;
    let iovs = iovecs(task, hdr.iov, hdr.iovlen)?;
    let total: u64 = iovs.iter().map(|v| v.len).sum::<u64>().min(1 << 24);
    for v in &iovs {
        task.mm.guard().check_access(v.base, v.len, true)?;
    }
    let mut buf = vec![0u8; total as usize];
    let (n, whole) = receive(task, &file, &mut buf, flags)?;
    let mut done = 0;
    for v in &iovs {
        if done >= n {
            break;
        }
        let k = (v.len as usize).min(n - done);
        task.mm.guard().write_bytes(v.base, &buf[done..done + k])?;
        done += k;
    }
    // No address (the peer is unnamed), no ancillary data, MSG_TRUNC for a cut message.
    let mut out_flags = 0u32;
    if whole > n {
        out_flags |= MSG_TRUNC;
    }
    {
        let mut mm = task.mm.guard();
        mm.write_obj(a[1] + 8, &0u32)?;
        mm.write_obj(a[1] + 40, &0u64)?;
        mm.write_obj(a[1] + 48, &out_flags)?;
    }
    Ok(if flags & MSG_TRUNC != 0 { whole } else { n } as u64)
}

pub fn shutdown(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket(task, a[0])?;
    unix(&file).shutdown(int(a[1]))?;
    Ok(0)
}

const SOL_SOCKET: i32 = 1;
const SO_TYPE: i32 = 3;
const SO_ERROR: i32 = 4;
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_DOMAIN: i32 = 39;
const SO_PROTOCOL: i32 = 38;
const SO_ACCEPTCONN: i32 = 30;

pub fn getsockopt(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket(task, a[0])?;
    let (level, name) = (int(a[1]), int(a[2]));
    if level != SOL_SOCKET {
        return Err(Errno::ENOPROTOOPT);
    }
    let value: i32 = match name {
        SO_TYPE => unix(&file).messages_kind(),
        SO_ERROR | SO_ACCEPTCONN | SO_PROTOCOL => 0,
        SO_DOMAIN => libc::AF_UNIX,
        SO_SNDBUF | SO_RCVBUF => 212_992,
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let len: u32 = task.mm.guard().read_obj(a[4])?;
    if (len as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let bytes = value.to_le_bytes();
    let n = (len as usize).min(4);
    task.mm.guard().write_bytes(a[3], &bytes[..n])?;
    task.mm.guard().write_obj(a[4], &(n as u32))?;
    Ok(0)
}

pub fn setsockopt(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let _file = socket(task, a[0])?;
    let (level, name) = (int(a[1]), int(a[2]));
    if level != SOL_SOCKET {
        return Err(Errno::ENOPROTOOPT);
    }
    match name {
        // Buffer sizes are accepted (a pair's queues keep their size).
        SO_SNDBUF | SO_RCVBUF => {
            if a[4] < 4 {
                return Err(Errno::EINVAL);
            }
            let _: i32 = task.mm.guard().read_obj(a[3])?;
            Ok(0)
        }
        _ => Err(Errno::ENOPROTOOPT),
    }
}

/// getsockname/getpeername of a pair's end: an unnamed unix address (the family only).
fn unnamed(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let _file = socket(task, a[0])?;
    let len: u32 = task.mm.guard().read_obj(a[2])?;
    if (len as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let family = (libc::AF_UNIX as u16).to_le_bytes();
    let n = (len as usize).min(2);
    task.mm.guard().write_bytes(a[1], &family[..n])?;
    task.mm.guard().write_obj(a[2], &2u32)?;
    Ok(0)
}

pub fn getsockname(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    unnamed(task, a)
}

pub fn getpeername(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    unnamed(task, a)
}
