//! The socket calls: socket, socketpair, bind, listen, connect, accept/accept4,
//! send/recv in all their forms (to/from, msg, mmsg) with ancillary data (`SCM_RIGHTS`,
//! `SCM_CREDENTIALS`), shutdown, get/setsockopt, getsockname/getpeername. This layer decodes
//! the application's memory (addresses, iovecs, control messages) and hands the socket plain
//! values (`net::Socket`): unix sockets (`net/unix.rs`), TCP and UDP over IPv4 and IPv6
//! (`net/inet/`).

use std::sync::Arc;

use moat_abi::{Errno, SigInfo};

use super::read_write::iovecs;
use super::{int, SyscallResult};
use crate::fs::OpenFile;
use crate::net::inet::icmp::PingSocket;
use crate::net::inet::tcp::TcpSocket;
use crate::net::inet::udp::UdpSocket;
use crate::net::inet::Family;
use crate::net::netlink::{NetlinkSocket, NETLINK_ROUTE};
use crate::net::unix::UnixSocket;
use crate::net::{Blocking, Incoming, Outgoing, Socket, Ucred};
use crate::process::Guard;
use crate::task::Task;

const MSG_OOB: u32 = 0x1;
const MSG_PEEK: u32 = 0x2;
const MSG_CTRUNC: u32 = 0x8;
const MSG_TRUNC: u32 = 0x20;
const MSG_DONTWAIT: u32 = 0x40;
const MSG_WAITALL: u32 = 0x100;
const MSG_ERRQUEUE: u32 = 0x2000;
const MSG_NOSIGNAL: u32 = 0x4000;
const MSG_WAITFORONE: u32 = 0x1_0000;
const MSG_CMSG_CLOEXEC: u32 = 0x4000_0000;

const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const SCM_CREDENTIALS: i32 = 2;
/// The most fds one message may pass (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;
/// `struct cmsghdr`: length (8 bytes), level, type.
const CMSG_HDR: usize = 16;
/// `sizeof(struct sockaddr_storage)`: the largest address a call accepts.
const SOCKADDR_MAX: u64 = 128;
/// `struct mmsghdr`: a `msghdr` and the length transferred.
const MMSGHDR_LEN: u64 = 64;
/// The most messages one sendmmsg/recvmmsg handles (`UIO_MAXIOV`).
const MMSG_MAX: u64 = 1024;
/// The largest single transfer copied through the kernel at once.
const MAX_TRANSFER: u64 = 1 << 24;

fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

/// The socket open at `fd`: `EBADF`, or `ENOTSOCK` for other files.
fn socket_file(task: &Task, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    let file = task.file(int(fd))?;
    if file.ops().as_socket().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(file)
}

fn sock(file: &OpenFile) -> &dyn Socket {
    file.ops().as_socket().expect("checked by socket_file()")
}

/// Copy in an address argument (`EINVAL` for a length past `sockaddr_storage`).
fn read_addr(task: &Task, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    // A negative socklen_t is a huge unsigned one.
    let len = u64::from(len as u32);
    if len > SOCKADDR_MAX {
        return Err(Errno::EINVAL);
    }
    let mut buf = vec![0u8; len as usize];
    task.mm.guard().read_bytes(addr, &mut buf)?;
    Ok(buf)
}

/// Copy an address out to `addr` with its length in and out at `len_addr`: truncated to the
/// caller's buffer, the full length reported (as `getsockname` and `accept` do).
fn write_addr(task: &Task, addr: u64, len_addr: u64, name: &[u8]) -> Result<(), Errno> {
    if len_addr == 0 {
        return Ok(());
    }
    let room: u32 = task.mm.guard().read_obj(len_addr)?;
    if (room as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let n = (room as usize).min(name.len());
    let mut mm = task.mm.guard();
    if n > 0 {
        mm.write_bytes(addr, &name[..n])?;
    }
    mm.write_obj(len_addr, &(name.len() as u32))
}

fn install(task: &mut Task, ops: Box<dyn crate::fs::FileOps>, flags: i32) -> SyscallResult {
    let status = libc::O_RDWR as u32 | (flags & libc::SOCK_NONBLOCK) as u32;
    let limit = task.limit(libc::RLIMIT_NOFILE);
    let file = Arc::new(OpenFile::new(ops, status));
    let fd = task
        .files
        .guard()
        .install(file, flags & libc::SOCK_CLOEXEC != 0, 0, limit)?;
    Ok(fd as u64)
}

/// Split `type` into the kind and the `SOCK_CLOEXEC`/`SOCK_NONBLOCK` flags.
fn kind_and_flags(ty: i32) -> Result<(i32, i32), Errno> {
    let (kind, flags) = (ty & 0xf, ty & !0xf);
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok((kind, flags))
}

/// A unix socket type: `SOCK_RAW` is taken as `SOCK_DGRAM`, as Linux does.
fn unix_kind(kind: i32, protocol: i32) -> Result<i32, Errno> {
    let kind = match kind {
        libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET => kind,
        libc::SOCK_RAW => libc::SOCK_DGRAM,
        _ => return Err(Errno::ESOCKTNOSUPPORT),
    };
    if protocol != 0 && protocol != libc::PF_UNIX {
        return Err(Errno::EPROTONOSUPPORT);
    }
    Ok(kind)
}

/// `IPPROTO_MAX`: protocol numbers at or past it are `EINVAL`.
const IPPROTO_MAX: i32 = 263;
/// `SOCK_MAX`: socket types at or past it are `EINVAL`.
const SOCK_MAX: i32 = 11;
const SOCK_PACKET: i32 = 10;

pub fn socket(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (domain, ty, protocol) = (int(a[0]), int(a[1]), int(a[2]));
    let (kind, flags) = kind_and_flags(ty)?;
    if let Some(family) = Family::from_domain(domain) {
        let sock = inet_socket(task, family, kind, protocol)?;
        return install(task, sock, flags);
    }
    if domain == libc::AF_NETLINK {
        if !matches!(kind, libc::SOCK_RAW | libc::SOCK_DGRAM) {
            return Err(Errno::ESOCKTNOSUPPORT);
        }
        if protocol != NETLINK_ROUTE {
            // Only the route family describes anything in the sandbox.
            return Err(unsupported(
                task,
                domain,
                protocol,
                "netlink protocol",
                Errno::EPROTONOSUPPORT,
            ));
        }
        return install(task, Box::new(NetlinkSocket::new(kind)), flags);
    }
    if domain != libc::AF_UNIX {
        if domain == libc::AF_PACKET {
            unsupported(task, domain, kind, "packet socket", Errno::EAFNOSUPPORT);
        }
        return Err(Errno::EAFNOSUPPORT);
    }
    let kind = unix_kind(kind, protocol)?;
    let sock = UnixSocket::new(kind, &task.kernel.unix_names);
    install(task, Box::new(sock), flags)
}

/// Log a kind of socket Moat does not make, once per kind, and fail with `errno`.
fn unsupported(task: &Task, domain: i32, kind: i32, what: &str, errno: Errno) -> Errno {
    let key = u64::from(moat_abi::syscalls::nr::SOCKET)
        | ((domain as u64 & 0xffff) << 32)
        | ((kind as u64 & 0xffff) << 48);
    task.kernel.report_unsupported(
        key,
        &format!("{what} (domain {domain}, type {kind})"),
        errno,
    );
    errno
}

/// A TCP, UDP or ICMP echo socket, by Linux's `inet_create` rules: an unknown type is
/// `ESOCKTNOSUPPORT`, a protocol the type has not `EPROTONOSUPPORT`. Raw sockets need
/// `CAP_NET_RAW`, which nothing in the sandbox has (`EPERM`). An ICMP echo socket needs the
/// caller's effective or a supplementary group in the sandbox's `net.ipv4.ping_group_range`
/// (`EACCES`); with `--network=host` it would be a host socket, which the host's range
/// governs, and Moat makes none (`EACCES`, as a host with Linux's default range says).
fn inet_socket(
    task: &Task,
    family: Family,
    kind: i32,
    protocol: i32,
) -> Result<Box<dyn crate::fs::FileOps>, Errno> {
    if !(0..IPPROTO_MAX).contains(&protocol) || kind >= SOCK_MAX {
        return Err(Errno::EINVAL);
    }
    let icmp = match family {
        Family::V4 => libc::IPPROTO_ICMP,
        Family::V6 => libc::IPPROTO_ICMPV6,
    };
    let domain = family.domain();
    let host = task.kernel.network == crate::net::NetworkMode::Host;
    match (kind, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) | (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP)
            if host =>
        {
            Ok(Box::new(crate::net::host::HostSocket::new(
                family,
                kind,
                task.creds.euid,
            )?))
        }
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Ok(Box::new(TcpSocket::new(
            family,
            task.creds.euid,
            &task.kernel.inet,
        ))),
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Ok(Box::new(UdpSocket::new(
            family,
            task.creds.euid,
            &task.kernel.inet,
        ))),
        (libc::SOCK_DGRAM, p) if p == icmp && host => Err(unsupported(
            task,
            domain,
            kind,
            "ICMP echo socket with --network=host",
            Errno::EACCES,
        )),
        (libc::SOCK_DGRAM, p) if p == icmp => {
            let range = task.kernel.inet.ping_group_range;
            if !crate::net::inet::icmp::may_ping(range, task.creds.egid, &task.creds.groups) {
                return Err(Errno::EACCES);
            }
            Ok(Box::new(PingSocket::new(
                family,
                task.creds.euid,
                &task.kernel.inet,
            )))
        }
        (libc::SOCK_RAW | SOCK_PACKET, _) => {
            Err(unsupported(task, domain, kind, "raw socket", Errno::EPERM))
        }
        (libc::SOCK_STREAM | libc::SOCK_DGRAM, _) => Err(Errno::EPROTONOSUPPORT),
        _ => Err(Errno::ESOCKTNOSUPPORT),
    }
}

pub fn socketpair(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (domain, ty, protocol) = (int(a[0]), int(a[1]), int(a[2]));
    let (kind, flags) = kind_and_flags(ty)?;
    if domain != libc::AF_UNIX {
        // Pairs exist only for unix sockets (the network families refuse them).
        return Err(if domain == libc::AF_INET || domain == libc::AF_INET6 {
            Errno::EOPNOTSUPP
        } else {
            Errno::EAFNOSUPPORT
        });
    }
    let kind = unix_kind(kind, protocol)?;
    task.mm.guard().check_access(a[3], 8, true)?;
    let creds = Ucred {
        pid: task.tgid,
        uid: task.creds.euid,
        gid: task.creds.egid,
    };
    let (x, y) = UnixSocket::pair(kind, &task.kernel.unix_names, creds);
    let fx = install(task, Box::new(x), flags)?;
    let fy = match install(task, Box::new(y), flags) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = task.files.guard().remove(fx as i32);
            return Err(e);
        }
    };
    task.mm.guard().write_obj(a[3], &[fx as i32, fy as i32])?;
    Ok(0)
}

pub fn bind(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let addr = read_addr(task, a[1], a[2])?;
    sock(&file).bind(task, &addr)?;
    Ok(0)
}

pub fn listen(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    sock(&file).listen(task, int(a[1]))?;
    Ok(0)
}

pub fn connect(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let addr = read_addr(task, a[1], a[2])?;
    sock(&file).connect(task, &addr, file.nonblocking())?;
    Ok(0)
}

fn do_accept(task: &mut Task, a: &[u64; 6], flags: i32) -> SyscallResult {
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = socket_file(task, a[0])?;
    if a[2] != 0 {
        let room: u32 = task.mm.guard().read_obj(a[2])?;
        if (room as i32) < 0 {
            return Err(Errno::EINVAL);
        }
    }
    let (ops, peer) = sock(&file).accept(task, file.nonblocking())?;
    let fd = install(task, ops, flags)?;
    if let Err(e) = write_addr(task, a[1], a[2], &peer) {
        let _ = task.files.guard().remove(fd as i32);
        return Err(e);
    }
    Ok(fd)
}

pub fn accept(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_accept(task, a, 0)
}

pub fn accept4(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_accept(task, a, int(a[3]))
}

fn blocking(file: &OpenFile, flags: u32, timeout: Option<std::time::Duration>) -> Blocking {
    Blocking {
        nonblocking: file.nonblocking() || flags & MSG_DONTWAIT != 0,
        timeout,
    }
}

/// Send through `file`'s socket; `EPIPE` raises `SIGPIPE` unless `MSG_NOSIGNAL`.
fn send_on(
    task: &mut Task,
    file: &OpenFile,
    msg: Outgoing,
    to: Option<&[u8]>,
    flags: u32,
) -> Result<usize, Errno> {
    if flags & MSG_OOB != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let s = sock(file);
    let how = blocking(file, flags, s.timeouts().0);
    let r = s.send(task, msg, to, how);
    if r == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 {
        raise_sigpipe(task);
    }
    r
}

pub(crate) fn raise_sigpipe(task: &Task) {
    let info = SigInfo::from_process(libc::SIGPIPE, moat_abi::SI_USER, task.tgid, task.creds.uid);
    crate::signal::send_to_thread_locked(&task.kernel.tree.guard(), task.tid, info);
}

fn receive_on(task: &mut Task, file: &OpenFile, len: usize, flags: u32) -> Result<Incoming, Errno> {
    if flags & MSG_OOB != 0 {
        return Err(Errno::EINVAL);
    }
    let s = sock(file);
    if flags & MSG_ERRQUEUE != 0 && Family::from_domain(s.domain()).is_some() {
        // No IP socket of the sandbox queues errors (`IP_RECVERR`): the queue is empty.
        return Err(Errno::EAGAIN);
    }
    let how = blocking(file, flags, s.timeouts().1);
    s.receive(
        task,
        len,
        flags & MSG_PEEK != 0,
        flags & MSG_WAITALL != 0,
        how,
    )
}

/// `read`/`readv` of a socket: a receive without flags (passed fds are closed).
pub(crate) fn read_socket(
    task: &mut Task,
    file: &OpenFile,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let s = sock(file);
    let how = blocking(file, 0, s.timeouts().1);
    s.receive_into(task, buf, how)
}

/// `write`/`writev` of a socket: a send without flags.
pub(crate) fn write_socket(task: &mut Task, file: &OpenFile, data: &[u8]) -> Result<usize, Errno> {
    let s = sock(file);
    let how = blocking(file, 0, s.timeouts().0);
    let r = s.send_bytes(task, data, how);
    if r == Err(Errno::EPIPE) {
        raise_sigpipe(task);
    }
    r
}

pub fn sendto(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let mut data = vec![0u8; a[2].min(MAX_TRANSFER) as usize];
    task.mm.guard().read_bytes(a[1], &mut data)?;
    let to = if a[4] != 0 {
        Some(read_addr(task, a[4], a[5])?)
    } else {
        None
    };
    let msg = Outgoing {
        data,
        ..Outgoing::default()
    };
    Ok(send_on(task, &file, msg, to.as_deref(), a[3] as u32)? as u64)
}

pub fn recvfrom(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let flags = a[3] as u32;
    let len = a[2].min(MAX_TRANSFER) as usize;
    task.mm.guard().check_access(a[1], len as u64, true)?;
    let got = receive_on(task, &file, len, flags)?;
    task.mm.guard().write_bytes(a[1], &got.data)?;
    if a[4] != 0 {
        write_addr(task, a[4], a[5], got.from.as_deref().unwrap_or(&[]))?;
    }
    Ok(received_len(&file, &got, flags))
}

/// What a receive returns: with `MSG_TRUNC`, a message's whole length.
fn received_len(file: &OpenFile, got: &Incoming, flags: u32) -> u64 {
    if flags & MSG_TRUNC != 0 && sock(file).trunc_returns_whole() {
        got.whole as u64
    } else {
        got.data.len() as u64
    }
}

/// `struct msghdr`: name, namelen, iov, iovlen, control, controllen, flags.
#[derive(Clone, Copy)]
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(task: &Task, addr: u64) -> Result<MsgHdr, Errno> {
    let raw: [u64; 7] = task.mm.guard().read_obj(addr)?;
    Ok(MsgHdr {
        name: raw[0],
        namelen: raw[1] as u32,
        iov: raw[2],
        iovlen: raw[3],
        control: raw[4],
        controllen: raw[5],
    })
}

/// Decode a control buffer: files to pass (each must be open: `EBADF`) and credentials
/// (the sender's own unless privileged: `EPERM`). Malformed headers are `EINVAL`; control
/// messages of other levels are ignored, as Linux does for unix sockets.
fn parse_control(task: &Task, hdr: &MsgHdr) -> Result<(Vec<Arc<OpenFile>>, Option<Ucred>), Errno> {
    let mut fds = Vec::new();
    let mut creds = None;
    if hdr.controllen < CMSG_HDR as u64 {
        return Ok((fds, creds));
    }
    if hdr.controllen > i32::MAX as u64 {
        return Err(Errno::ENOBUFS);
    }
    let mut control = vec![0u8; hdr.controllen.min(1 << 20) as usize];
    task.mm.guard().read_bytes(hdr.control, &mut control)?;
    let mut at = 0usize;
    while at + CMSG_HDR <= control.len() {
        let word = |i: usize| -> [u8; 8] { control[i..i + 8].try_into().unwrap_or_default() };
        let len = u64::from_le_bytes(word(at)) as usize;
        let level = i32::from_le_bytes(word(at + 8)[..4].try_into().unwrap_or_default());
        let kind = i32::from_le_bytes(word(at + 8)[4..].try_into().unwrap_or_default());
        if len < CMSG_HDR || len > control.len() - at {
            return Err(Errno::EINVAL);
        }
        let data = &control[at + CMSG_HDR..at + len];
        if level == SOL_SOCKET {
            match kind {
                SCM_RIGHTS => {
                    if data.len() % 4 != 0 || fds.len() + data.len() / 4 > SCM_MAX_FD {
                        return Err(Errno::EINVAL);
                    }
                    for fd in data.chunks_exact(4) {
                        let fd = i32::from_le_bytes(fd.try_into().unwrap_or_default());
                        fds.push(task.file(fd)?);
                    }
                }
                SCM_CREDENTIALS => {
                    let c = Ucred::from_bytes(data)
                        .filter(|_| data.len() == 12)
                        .ok_or(Errno::EINVAL)?;
                    check_credentials(task, c)?;
                    creds = Some(c);
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        at += cmsg_align(len);
    }
    Ok((fds, creds))
}

/// Credentials a sender may claim: its own process (or any, with `CAP_SYS_ADMIN`), and IDs it
/// holds (or any, with `CAP_SETUID`/`CAP_SETGID`): Linux's `scm_check_creds`.
fn check_credentials(task: &Task, c: Ucred) -> Result<(), Errno> {
    use crate::capability::Cap;
    let cr = &task.creds;
    if c.pid != task.tgid && !cr.has(Cap::SysAdmin) {
        return Err(Errno::EPERM);
    }
    if ![cr.uid, cr.euid, cr.suid].contains(&c.uid) && !cr.has(Cap::Setuid) {
        return Err(Errno::EPERM);
    }
    if ![cr.gid, cr.egid, cr.sgid].contains(&c.gid) && !cr.has(Cap::Setgid) {
        return Err(Errno::EPERM);
    }
    if c.pid != task.tgid && task.kernel.tree.guard().process(c.pid).is_none() {
        return Err(Errno::ESRCH);
    }
    Ok(())
}

/// One sendmsg: gather the iovecs, decode the control buffer, send.
fn send_message(
    task: &mut Task,
    file: &OpenFile,
    msg_addr: u64,
    flags: u32,
) -> Result<usize, Errno> {
    let hdr = read_msghdr(task, msg_addr)?;
    let iovs = iovecs(task, hdr.iov, hdr.iovlen)?;
    let mut data = Vec::new();
    for v in &iovs {
        let start = data.len();
        let room = MAX_TRANSFER as usize - start;
        data.resize(start + (v.len as usize).min(room), 0);
        task.mm.guard().read_bytes(v.base, &mut data[start..])?;
    }
    let to = if hdr.name != 0 && hdr.namelen != 0 {
        Some(read_addr(task, hdr.name, u64::from(hdr.namelen))?)
    } else {
        None
    };
    let (fds, creds) = parse_control(task, &hdr)?;
    let msg = Outgoing { data, fds, creds };
    send_on(task, file, msg, to.as_deref(), flags)
}

pub fn sendmsg(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    Ok(send_message(task, &file, a[1], a[2] as u32)? as u64)
}

/// Build the control messages a receive delivers into a buffer of `room` bytes: the
/// credentials first, then the passed files, installed as new fds. What does not fit is
/// dropped (the files closed) and reported with `MSG_CTRUNC`.
fn deliver_control(
    task: &mut Task,
    got: &mut Incoming,
    room: usize,
    cloexec: bool,
) -> Result<(Vec<u8>, u32), Errno> {
    let mut out = Vec::new();
    let mut flags = 0;
    /// Append one control message, truncated to what is left of `room`.
    fn put(out: &mut Vec<u8>, flags: &mut u32, room: usize, level: i32, kind: i32, data: &[u8]) {
        let left = room - out.len().min(room);
        if left < CMSG_HDR {
            *flags |= MSG_CTRUNC;
            return;
        }
        let mut c = ((CMSG_HDR + data.len()) as u64).to_le_bytes().to_vec();
        c.extend_from_slice(&level.to_le_bytes());
        c.extend_from_slice(&kind.to_le_bytes());
        c.extend_from_slice(data);
        if c.len() > left {
            *flags |= MSG_CTRUNC;
            c.truncate(left);
        }
        let padded = cmsg_align(c.len()).min(left);
        c.resize(padded, 0);
        out.extend_from_slice(&c);
    }
    for c in std::mem::take(&mut got.control) {
        put(&mut out, &mut flags, room, c.level, c.kind, &c.data);
    }
    if let Some(c) = got.creds {
        put(
            &mut out,
            &mut flags,
            room,
            SOL_SOCKET,
            SCM_CREDENTIALS,
            &c.to_bytes(),
        );
    }
    let files = std::mem::take(&mut got.fds);
    let passed = files.len();
    if passed > 0 {
        let left = room - out.len().min(room);
        let fit = left.saturating_sub(CMSG_HDR) / 4;
        let limit = task.limit(libc::RLIMIT_NOFILE);
        let mut fds = Vec::new();
        for file in files.into_iter().take(fit) {
            match task.files.guard().install(file, cloexec, 0, limit) {
                Ok(fd) => fds.push(fd),
                Err(_) => break,
            }
        }
        // The files that did not fit are closed with the rest of `files`.
        if fds.len() < passed {
            flags |= MSG_CTRUNC;
        }
        if !fds.is_empty() {
            let data: Vec<u8> = fds.iter().flat_map(|fd| fd.to_le_bytes()).collect();
            put(&mut out, &mut flags, room, SOL_SOCKET, SCM_RIGHTS, &data);
        }
    }
    Ok((out, flags))
}

/// One recvmsg into the `msghdr` at `msg_addr`.
fn receive_message(
    task: &mut Task,
    file: &OpenFile,
    msg_addr: u64,
    flags: u32,
) -> Result<u64, Errno> {
    let hdr = read_msghdr(task, msg_addr)?;
    let iovs = iovecs(task, hdr.iov, hdr.iovlen)?;
    let total: u64 = iovs.iter().map(|v| v.len).sum::<u64>().min(MAX_TRANSFER);
    for v in &iovs {
        task.mm
            .guard()
            .check_access(v.base, v.len.min(total), true)?;
    }
    let mut got = receive_on(task, file, total as usize, flags)?;
    let n = got.data.len();
    let mut done = 0;
    for v in &iovs {
        if done >= n {
            break;
        }
        let k = (v.len as usize).min(n - done);
        task.mm
            .guard()
            .write_bytes(v.base, &got.data[done..done + k])?;
        done += k;
    }
    let mut out_flags = flags & MSG_CMSG_CLOEXEC;
    if got.whole > n {
        out_flags |= MSG_TRUNC;
    }
    // The sender's name, if it has one and the caller asked.
    let namelen = match (&got.from, hdr.name) {
        (Some(from), name) if name != 0 => {
            let k = from.len().min(hdr.namelen as usize);
            task.mm.guard().write_bytes(name, &from[..k])?;
            from.len() as u32
        }
        _ => 0,
    };
    let room = hdr.controllen.min(1 << 20) as usize;
    let (control, cflags) = deliver_control(task, &mut got, room, flags & MSG_CMSG_CLOEXEC != 0)?;
    out_flags |= cflags;
    let mut mm = task.mm.guard();
    if !control.is_empty() {
        mm.write_bytes(hdr.control, &control)?;
    }
    mm.write_obj(msg_addr + 8, &namelen)?;
    mm.write_obj(msg_addr + 40, &(control.len() as u64))?;
    mm.write_obj(msg_addr + 48, &out_flags)?;
    drop(mm);
    Ok(received_len(file, &got, flags))
}

pub fn recvmsg(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    receive_message(task, &file, a[1], a[2] as u32)
}

pub fn sendmmsg(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let count = a[2].min(MMSG_MAX);
    let flags = a[3] as u32;
    let mut sent = 0;
    while sent < count {
        let at = a[1] + sent * MMSGHDR_LEN;
        match send_message(task, &file, at, flags) {
            Ok(n) => task.mm.guard().write_obj(at + 56, &(n as u32))?,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
        sent += 1;
    }
    Ok(sent)
}

pub fn recvmmsg(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let count = a[2].min(MMSG_MAX);
    let mut flags = a[3] as u32;
    let deadline = if a[4] != 0 {
        let ts: moat_abi::Timespec = task.mm.guard().read_obj(a[4])?;
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            return Err(Errno::EINVAL);
        }
        Some(
            std::time::Instant::now()
                + std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
        )
    } else {
        None
    };
    let mut got = 0;
    while got < count {
        let at = a[1] + got * MMSGHDR_LEN;
        match receive_message(task, &file, at, flags) {
            Ok(n) => task.mm.guard().write_obj(at + 56, &(n as u32))?,
            Err(e) if got == 0 => return Err(e),
            Err(_) => break,
        }
        got += 1;
        if flags & MSG_WAITFORONE != 0 {
            flags |= MSG_DONTWAIT;
        }
        // Like Linux, the time-out is looked at only between messages.
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
    }
    Ok(got)
}

pub fn shutdown(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    sock(&file).shutdown(int(a[1]))?;
    Ok(0)
}

pub fn getsockopt(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let (level, name) = (int(a[1]), int(a[2]));
    let len: u32 = task.mm.guard().read_obj(a[4])?;
    if (len as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let value = sock(&file).get_option(level, name)?;
    let n = (len as usize).min(value.len());
    let mut mm = task.mm.guard();
    mm.write_bytes(a[3], &value[..n])?;
    mm.write_obj(a[4], &(n as u32))?;
    Ok(0)
}

pub fn setsockopt(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let (level, name) = (int(a[1]), int(a[2]));
    if int(a[4]) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut value = vec![0u8; (a[4] as u32).min(256) as usize];
    task.mm.guard().read_bytes(a[3], &mut value)?;
    sock(&file).set_option(task, level, name, &value)?;
    Ok(0)
}

pub fn getsockname(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let name = sock(&file).local_name();
    write_addr(task, a[1], a[2], &name)?;
    Ok(0)
}

pub fn getpeername(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = socket_file(task, a[0])?;
    let name = sock(&file).peer_name()?;
    write_addr(task, a[1], a[2], &name)?;
    Ok(0)
}
