//! Host sockets, for `--network=host`: TCP and UDP sockets the kernel makes on the host on
//! the application's behalf.
//!
//! Each is a Moat socket like any other — in Moat's fd table, behind the [`Socket`] trait,
//! ready or not through Moat's own poll, epoll and blocking waits — that owns one
//! non-blocking host socket. The system call layer has already decoded and checked the
//! application's arguments; what reaches the host is the kernel's own call on its own fd
//! with plain values: an address parsed here, bytes copied into the kernel's buffer, and
//! options from a short vetted list, each set through a typed wrapper (never a pointer of
//! the application's). A blocking call tries the host without waiting and, on `EAGAIN`,
//! sleeps on the socket's wait queue like any Moat wait, so signals and the sandbox's end
//! interrupt it.
//!
//! Readiness: one host epoll for the kernel process ([`Poller`]) watches every host socket,
//! edge-triggered, and a thread of its own notifies a socket's queue when the host reports
//! anything on it; `poll` then asks the host for the socket's current state (`ppoll` with
//! no wait).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use moat_abi::{Errno, Stat};
use rustix::event::epoll;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrAny, SocketFlags};

use super::inet::options::{
    timeval_bytes, timeval_of, IPV6_V6ONLY, SOL_IP, SOL_IPV6, SOL_TCP, SO_ACCEPTCONN, SO_BROADCAST,
    SO_DOMAIN, SO_ERROR, SO_KEEPALIVE, SO_LINGER, SO_PROTOCOL, SO_RCVBUF, SO_RCVTIMEO,
    SO_RCVTIMEO_NEW, SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, SO_SNDTIMEO, SO_SNDTIMEO_NEW, SO_TYPE,
    TCP_KEEPIDLE, TCP_NODELAY,
};
use super::inet::Family;
use super::{Blocking, Incoming, Outgoing, Socket, SOL_SOCKET};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::task::Task;
use crate::wait::WaitQueue;

const TCP_KEEPINTVL: i32 = 5;
const TCP_KEEPCNT: i32 = 6;
/// `FIONREAD`: bytes waiting to be read; `TIOCOUTQ` (`SIOCOUTQ`): bytes not yet
/// acknowledged; `SIOCOUTQNSD`: bytes not yet sent.
const FIONREAD: u32 = 0x541b;
const TIOCOUTQ: u32 = 0x5411;
const SIOCOUTQNSD: u32 = 0x894b;

/// The most one receive takes from the host: larger buffers are filled in several calls
/// (a stream) or hold any datagram anyway (UDP's largest is 64 KiB).
const RECEIVE_CHUNK: usize = 256 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno(e.raw_os_error())
}

static POLLER: OnceLock<Result<Arc<Poller>, Errno>> = OnceLock::new();

/// The kernel process's one host epoll, and the host sockets it watches: the queue to
/// notify for each, and what `/proc/net` lists of it.
pub struct Poller {
    epoll: OwnedFd,
    queues: Mutex<HashMap<u64, Watched>>,
    next_key: AtomicU64,
}

/// A host socket as the poller knows it (it must not keep the socket open).
struct Watched {
    queue: Weak<WaitQueue>,
    fd: Weak<OwnedFd>,
    family: Family,
    kind: i32,
    ino: u64,
    uid: u32,
}

impl Poller {
    /// The process's poller, started with the first host socket.
    fn get() -> Result<&'static Arc<Poller>, Errno> {
        POLLER
            .get_or_init(|| {
                let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(errno)?;
                let poller = Arc::new(Poller {
                    epoll,
                    queues: Mutex::new(HashMap::new()),
                    next_key: AtomicU64::new(1),
                });
                let watcher = poller.clone();
                std::thread::Builder::new()
                    .name("host-net".into())
                    .spawn(move || watcher.run())
                    .map_err(|_| Errno::ENOMEM)?;
                Ok(poller)
            })
            .as_ref()
            .map_err(|e| *e)
    }

    /// Watch `sock`'s fd, notifying its queue on every change the host reports.
    fn watch(&self, sock: &HostSocket) -> Result<u64, Errno> {
        let (fd, queue) = (&sock.fd, &sock.queue);
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let watched = Watched {
            queue: Arc::downgrade(queue),
            fd: Arc::downgrade(fd),
            family: sock.family,
            kind: sock.kind,
            ino: sock.ino,
            uid: sock.uid,
        };
        lock(&self.queues).insert(key, watched);
        let flags = epoll::EventFlags::IN
            | epoll::EventFlags::OUT
            | epoll::EventFlags::RDHUP
            | epoll::EventFlags::PRI
            | epoll::EventFlags::ET;
        if let Err(e) = epoll::add(&self.epoll, &**fd, epoll::EventData::new_u64(key), flags) {
            lock(&self.queues).remove(&key);
            return Err(errno(e));
        }
        Ok(key)
    }

    /// Stop notifying for `key` (its fd leaves the epoll when it closes).
    fn forget(&self, key: u64) {
        lock(&self.queues).remove(&key);
    }

    fn run(&self) {
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::error!("host network poller: {e}");
                    return;
                }
            }
            let queues: Vec<Arc<WaitQueue>> = {
                let map = lock(&self.queues);
                events
                    .iter()
                    .filter_map(|ev| map.get(&ev.data.u64()).and_then(|w| w.queue.upgrade()))
                    .collect()
            };
            for q in queues {
                q.notify();
            }
        }
    }
}

/// The largest option value passed either way (`TCP_INFO` is the largest forwarded).
const OPTION_MAX: usize = 512;

/// The options a host socket passes to the host, by level: plain values (an `int`,
/// `struct linger`, `TCP_INFO`'s figures), copied through the kernel's own buffer; the host
/// checks them and answers as it would any process. Nothing here names a host object (no
/// `SO_BINDTODEVICE`, no filters, no `SO_MARK`) or carries a pointer.
const FORWARDED: &[(i32, &[i32])] = &[
    (
        SOL_SOCKET,
        &[
            SO_REUSEADDR,
            SO_TYPE,
            SO_ERROR,
            5, // SO_DONTROUTE
            SO_BROADCAST,
            SO_SNDBUF,
            SO_RCVBUF,
            SO_KEEPALIVE,
            10, // SO_OOBINLINE
            SO_LINGER,
            SO_REUSEPORT,
            18, // SO_RCVLOWAT
            SO_ACCEPTCONN,
            SO_PROTOCOL,
            SO_DOMAIN,
        ],
    ),
    (
        SOL_IP,
        &[
            1,  // IP_TOS
            2,  // IP_TTL
            10, // IP_MTU_DISCOVER
            14, // IP_MTU
            15, // IP_FREEBIND
            33, // IP_MULTICAST_TTL
            34, // IP_MULTICAST_LOOP
        ],
    ),
    (
        SOL_IPV6,
        &[
            16, // IPV6_UNICAST_HOPS
            18, // IPV6_MULTICAST_HOPS
            19, // IPV6_MULTICAST_LOOP
            23, // IPV6_MTU_DISCOVER
            24, // IPV6_MTU
            IPV6_V6ONLY,
            67, // IPV6_TCLASS
        ],
    ),
    (
        SOL_TCP,
        &[
            TCP_NODELAY,
            2, // TCP_MAXSEG
            3, // TCP_CORK
            TCP_KEEPIDLE,
            TCP_KEEPINTVL,
            TCP_KEEPCNT,
            7,  // TCP_SYNCNT
            8,  // TCP_LINGER2
            9,  // TCP_DEFER_ACCEPT
            10, // TCP_WINDOW_CLAMP
            11, // TCP_INFO
            12, // TCP_QUICKACK
            18, // TCP_USER_TIMEOUT
            23, // TCP_FASTOPEN
            25, // TCP_NOTSENT_LOWAT
        ],
    ),
    (libc::IPPROTO_UDP, &[1]), // UDP_CORK
];

fn forwarded(level: i32, name: i32) -> bool {
    FORWARDED
        .iter()
        .any(|(l, names)| *l == level && names.contains(&name))
}

/// What an address argument is for (its checks differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Bind,
    Connect,
    SendTo,
}

/// A TCP or UDP socket on the host.
pub struct HostSocket {
    fd: Arc<OwnedFd>,
    family: Family,
    kind: i32,
    queue: Arc<WaitQueue>,
    key: u64,
    ino: u64,
    uid: u32,
    /// `SO_SNDTIMEO`, `SO_RCVTIMEO`: Moat's waits, not the host's.
    timeouts: Mutex<(Option<Duration>, Option<Duration>)>,
    /// `shutdown(SHUT_RD)` was asked: a datagram socket's reads end (Linux marks it even
    /// when it answers `ENOTCONN`), but the host only says so to a receive that waits.
    read_shut: std::sync::atomic::AtomicBool,
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        if let Ok(p) = Poller::get() {
            p.forget(self.key);
        }
    }
}

impl HostSocket {
    /// A new host socket of `family` and `kind` (`SOCK_STREAM` or `SOCK_DGRAM`).
    pub fn new(family: Family, kind: i32, uid: u32) -> Result<HostSocket, Errno> {
        let af = match family {
            Family::V4 => AddressFamily::INET,
            Family::V6 => AddressFamily::INET6,
        };
        let ty = if kind == libc::SOCK_STREAM {
            rustix::net::SocketType::STREAM
        } else {
            rustix::net::SocketType::DGRAM
        };
        let fd =
            rustix::net::socket_with(af, ty, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)
                .map_err(errno)?;
        Self::wrap(fd, family, kind, uid)
    }

    fn wrap(fd: OwnedFd, family: Family, kind: i32, uid: u32) -> Result<HostSocket, Errno> {
        let mut sock = HostSocket {
            fd: Arc::new(fd),
            family,
            kind,
            queue: Arc::new(WaitQueue::default()),
            key: 0,
            ino: super::next_ino(),
            uid,
            timeouts: Mutex::new((None, None)),
            read_shut: std::sync::atomic::AtomicBool::new(false),
        };
        sock.key = Poller::get()?.watch(&sock)?;
        Ok(sock)
    }

    /// [`super::retry`] on the socket's queue.
    fn retry<T>(
        &self,
        task: &mut Task,
        nonblocking: bool,
        timeout: Option<Duration>,
        attempt: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        super::retry(task, &self.queue, nonblocking, timeout, attempt)
    }

    /// The host's readiness bits for the socket, now.
    fn host_poll(&self) -> u32 {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = [PollFd::new(
            &self.fd,
            PollFlags::IN | PollFlags::OUT | PollFlags::PRI | PollFlags::RDHUP,
        )];
        match rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())) {
            Ok(_) => u32::from(fds[0].revents().bits()),
            Err(_) => 0,
        }
    }

    /// Parse an address argument for this socket's family, with the checks Linux makes
    /// for `purpose`: the length first (`EINVAL`), then the family (`EAFNOSUPPORT`). An IPv4
    /// socket takes `AF_UNSPEC` as IPv4 for `sendto`, and for `bind` with the wildcard; an
    /// IPv6 socket's `sendto` also takes an `AF_INET` address (sent IPv4-mapped).
    fn address(&self, raw: &[u8], purpose: Purpose) -> Result<SocketAddr, Errno> {
        let fam = i32::from(super::inet::sa_family(raw)?);
        let port = |r: &[u8]| u16::from_be_bytes([r[2], r[3]]);
        let v4 = |r: &[u8]| -> Result<SocketAddrV4, Errno> {
            if r.len() < 16 {
                return Err(Errno::EINVAL);
            }
            Ok(SocketAddrV4::new(
                Ipv4Addr::new(r[4], r[5], r[6], r[7]),
                port(r),
            ))
        };
        match self.family {
            Family::V4 => {
                let a = v4(raw)?;
                let unspec_ok = match purpose {
                    Purpose::Bind => a.ip().is_unspecified(),
                    Purpose::Connect => false,
                    Purpose::SendTo => true,
                };
                if fam != libc::AF_INET && !(fam == libc::AF_UNSPEC && unspec_ok) {
                    return Err(Errno::EAFNOSUPPORT);
                }
                Ok(SocketAddr::V4(a))
            }
            // A UDP socket's `connect` also takes IPv4, as `sendto` does.
            Family::V6
                if fam == libc::AF_INET
                    && (purpose == Purpose::SendTo
                        || (purpose == Purpose::Connect && self.kind == libc::SOCK_DGRAM)) =>
            {
                let a = v4(raw)?;
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    a.ip().to_ipv6_mapped(),
                    a.port(),
                    0,
                    0,
                )))
            }
            Family::V6 => {
                if raw.len() < 24 {
                    return Err(Errno::EINVAL);
                }
                if fam != libc::AF_INET6 {
                    return Err(Errno::EAFNOSUPPORT);
                }
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&raw[8..24]);
                let flowinfo = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
                let scope = raw
                    .get(24..28)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(octets),
                    port(raw),
                    flowinfo,
                    scope,
                )))
            }
        }
    }

    fn accepted(&self, fd: OwnedFd) -> Result<HostSocket, Errno> {
        Self::wrap(fd, self.family, self.kind, self.uid)
    }
}

/// The sandbox's host sockets of `kind` (`SOCK_STREAM`, `SOCK_DGRAM`) and `family`, as
/// `/proc/net/{tcp,udp}{,6}` lines: their names, state (TCP's from `TCP_INFO`) and queues
/// as the host reports them. Only the sandbox's own sockets, never the host's others.
pub fn proc_lines(kind: i32, family: Family) -> Vec<super::inet::ProcLine> {
    use moat_platform::host_socket::{get_option, socket_queue, SocketQueue};
    let Some(Ok(poller)) = POLLER.get() else {
        return Vec::new();
    };
    let mut live: Vec<(u64, Arc<OwnedFd>, u64, u32)> = lock(&poller.queues)
        .iter()
        .filter(|(_, w)| w.kind == kind && w.family == family)
        .filter_map(|(key, w)| Some((*key, w.fd.upgrade()?, w.ino, w.uid)))
        .collect();
    live.sort_by_key(|l| l.0);
    let addr = |a: Option<SocketAddrAny>| {
        a.and_then(|a| SocketAddr::try_from(a).ok())
            .map_or(super::inet::SockAddr::new(family.any(), 0), |a| {
                super::inet::SockAddr::new(a.ip(), a.port())
            })
    };
    live.into_iter()
        .map(|(_, fd, ino, uid)| {
            let remote = rustix::net::getpeername(&*fd).ok().flatten();
            let state = if kind == libc::SOCK_STREAM {
                let mut info = [0u8; 8];
                get_option(fd.as_fd(), SOL_TCP, 11, &mut info).map_or(7, |_| info[0])
            } else if remote.is_some() {
                super::inet::state::ESTABLISHED
            } else {
                7 // TCP_CLOSE, as Linux shows an unconnected UDP socket
            };
            let queue = |q| socket_queue(fd.as_fd(), q).map_or(0, |n| n.max(0) as usize);
            super::inet::ProcLine {
                local: addr(rustix::net::getsockname(&*fd).ok()),
                remote: addr(remote),
                state,
                tx_queue: queue(SocketQueue::Outgoing),
                rx_queue: queue(SocketQueue::Incoming),
                uid,
                ino,
                drops: 0,
                time_wait: false,
            }
        })
        .collect()
}

/// A host address as the `sockaddr` bytes the application reads.
fn sockaddr_bytes(addr: Option<SocketAddrAny>) -> Vec<u8> {
    match addr.and_then(|a| SocketAddr::try_from(a).ok()) {
        Some(SocketAddr::V4(a)) => {
            let mut v = (libc::AF_INET as u16).to_le_bytes().to_vec();
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&[0; 8]);
            v
        }
        Some(SocketAddr::V6(a)) => {
            let mut v = (libc::AF_INET6 as u16).to_le_bytes().to_vec();
            v.extend_from_slice(&a.port().to_be_bytes());
            v.extend_from_slice(&a.flowinfo().to_be_bytes());
            v.extend_from_slice(&a.ip().octets());
            v.extend_from_slice(&a.scope_id().to_le_bytes());
            v
        }
        None => (libc::AF_UNSPEC as u16).to_le_bytes().to_vec(),
    }
}

impl Socket for HostSocket {
    fn domain(&self) -> i32 {
        self.family.domain()
    }

    fn kind(&self) -> i32 {
        self.kind
    }

    fn bind(&self, task: &mut Task, raw: &[u8]) -> Result<(), Errno> {
        let addr = self.address(raw, Purpose::Bind)?;
        if super::inet::port_needs_privilege(addr.port())
            && !task.creds.has(crate::capability::Cap::NetBindService)
        {
            return Err(Errno::EACCES);
        }
        rustix::net::bind(&self.fd, &addr).map_err(errno)
    }

    fn listen(&self, _task: &mut Task, backlog: i32) -> Result<(), Errno> {
        if self.kind != libc::SOCK_STREAM {
            return Err(Errno::EOPNOTSUPP);
        }
        rustix::net::listen(&self.fd, backlog).map_err(errno)
    }

    fn connect(&self, task: &mut Task, raw: &[u8], nonblocking: bool) -> Result<(), Errno> {
        if super::inet::sa_family(raw)? == libc::AF_UNSPEC as u16 {
            // A disconnect.
            return rustix::net::connect_unspec(&self.fd).map_err(errno);
        }
        let addr = self.address(raw, Purpose::Connect)?;
        match rustix::net::connect(&self.fd, &addr).map_err(errno) {
            Err(Errno::EINPROGRESS) if !nonblocking => {}
            r => return r,
        }
        // A blocking connect: wait until the host has an answer, then take it as Linux
        // gives it, from the next `connect` (0, or the error once, leaving the socket ready
        // for another try), so that the host socket's state is the one a blocking connect
        // leaves.
        let (send_timeout, _) = *lock(&self.timeouts);
        self.retry(task, false, send_timeout, || {
            if self.host_poll() & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) as u32 == 0 {
                return Err(Errno::EAGAIN);
            }
            match rustix::net::connect(&self.fd, &addr).map_err(errno) {
                Err(Errno::EISCONN) => Ok(()),
                // Still on its way (a wake-up for something else): wait again.
                Err(Errno::EALREADY | Errno::EINPROGRESS) => Err(Errno::EAGAIN),
                r => r,
            }
        })
        .map_err(|e| {
            if e == Errno::EAGAIN {
                Errno::EINPROGRESS
            } else {
                e
            }
        })
    }

    fn accept(
        &self,
        task: &mut Task,
        nonblocking: bool,
    ) -> Result<(Box<dyn FileOps>, Vec<u8>), Errno> {
        if self.kind != libc::SOCK_STREAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let (_, receive_timeout) = *lock(&self.timeouts);
        let (fd, peer) = self.retry(task, nonblocking, receive_timeout, || {
            rustix::net::acceptfrom_with(&self.fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
                .map_err(errno)
        })?;
        Ok((Box::new(self.accepted(fd)?), sockaddr_bytes(peer)))
    }

    fn send(
        &self,
        task: &mut Task,
        msg: Outgoing,
        to: Option<&[u8]>,
        how: Blocking,
    ) -> Result<usize, Errno> {
        if !msg.fds.is_empty() || msg.creds.is_some() {
            // Files and credentials travel only between unix sockets.
            return Err(Errno::EINVAL);
        }
        let to = match (to, self.kind) {
            (Some(raw), libc::SOCK_DGRAM) => Some(self.address(raw, Purpose::SendTo)?),
            // A connected stream ignores a destination, as TCP does.
            _ => None,
        };
        let data = &msg.data;
        let mut sent = 0;
        loop {
            let r = self.retry(task, how.nonblocking, how.timeout, || {
                let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
                match &to {
                    Some(addr) => rustix::net::sendto(&self.fd, &data[sent..], flags, addr),
                    None => rustix::net::send(&self.fd, &data[sent..], flags),
                }
                .map_err(errno)
            });
            match r {
                Ok(n) => {
                    sent += n;
                    // A blocking stream send takes everything; a datagram goes whole.
                    if sent >= data.len() || self.kind != libc::SOCK_STREAM || how.nonblocking {
                        return Ok(sent);
                    }
                }
                Err(_) if sent > 0 => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
    }

    fn receive(
        &self,
        task: &mut Task,
        len: usize,
        peek: bool,
        wait_all: bool,
        how: Blocking,
    ) -> Result<Incoming, Errno> {
        let mut flags = RecvFlags::DONTWAIT;
        if peek {
            flags |= RecvFlags::PEEK;
        }
        if self.kind == libc::SOCK_DGRAM {
            // The whole datagram's length, for MSG_TRUNC and a short buffer.
            flags |= RecvFlags::TRUNC;
        }
        let mut got = Incoming::default();
        let mut buf = vec![0u8; len.min(RECEIVE_CHUNK)];
        loop {
            let want = (len - got.data.len()).min(buf.len());
            let r = self.retry(
                task,
                how.nonblocking,
                how.timeout,
                || match rustix::net::recvfrom(&self.fd, &mut buf[..want], flags).map_err(errno) {
                    Err(Errno::EAGAIN) if self.read_shut.load(Ordering::Relaxed) => {
                        Ok((0, 0, None))
                    }
                    r => r,
                },
            );
            match r {
                Ok((n, whole, from)) => {
                    let n = n.min(want);
                    got.data.extend_from_slice(&buf[..n]);
                    if self.kind == libc::SOCK_DGRAM {
                        got.whole = whole;
                        got.from = from.map(|a| sockaddr_bytes(Some(a)));
                        return Ok(got);
                    }
                    got.whole = got.data.len();
                    // MSG_WAITALL keeps a stream waiting for the rest, until the end of it.
                    if n == 0 || !wait_all || peek || got.data.len() >= len {
                        return Ok(got);
                    }
                }
                Err(_) if !got.data.is_empty() => return Ok(got),
                Err(e) => return Err(e),
            }
        }
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let how = match how {
            libc::SHUT_RD => rustix::net::Shutdown::Read,
            libc::SHUT_WR => rustix::net::Shutdown::Write,
            libc::SHUT_RDWR => rustix::net::Shutdown::Both,
            _ => return Err(Errno::EINVAL),
        };
        if how != rustix::net::Shutdown::Write {
            self.read_shut.store(true, Ordering::Relaxed);
        }
        rustix::net::shutdown(&self.fd, how).map_err(errno)
    }

    fn local_name(&self) -> Vec<u8> {
        let name = rustix::net::getsockname(&self.fd).ok();
        if name.is_none() {
            return super::inet::SockAddr::new(self.family.any(), 0).to_sockaddr(self.family);
        }
        sockaddr_bytes(name)
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        match rustix::net::getpeername(&self.fd).map_err(errno)? {
            Some(addr) => Ok(sockaddr_bytes(Some(addr))),
            None => Err(Errno::ENOTCONN),
        }
    }

    /// Options on the vetted list ([`FORWARDED`]) are the host's, read into the kernel's
    /// own buffer; the time-outs are Moat's; anything else is `ENOPROTOOPT`.
    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        match (level, name) {
            (SOL_SOCKET, SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
                return Ok(timeval_bytes(lock(&self.timeouts).1))
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
                return Ok(timeval_bytes(lock(&self.timeouts).0))
            }
            _ if !forwarded(level, name) => return Err(Errno::ENOPROTOOPT),
            _ => {}
        }
        let mut buf = [0u8; OPTION_MAX];
        let n = moat_platform::host_socket::get_option(self.fd.as_fd(), level, name, &mut buf)
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        Ok(buf[..n].to_vec())
    }

    fn set_option(&self, _task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        match (level, name) {
            (SOL_SOCKET, SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
                lock(&self.timeouts).1 = timeval_of(value)?;
                return Ok(());
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
                lock(&self.timeouts).0 = timeval_of(value)?;
                return Ok(());
            }
            _ if !forwarded(level, name) => return Err(Errno::ENOPROTOOPT),
            _ => {}
        }
        let value = &value[..value.len().min(OPTION_MAX)];
        moat_platform::host_socket::set_option(self.fd.as_fd(), level, name, value)
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        *lock(&self.timeouts)
    }
}

impl FileOps for HostSocket {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        rustix::net::recv(&self.fd, buf, RecvFlags::DONTWAIT)
            .map(|(n, _)| n)
            .map_err(errno)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        rustix::net::send(&self.fd, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT).map_err(errno)
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        if let Some(r) = crate::net::iface::ioctl(mm, request, arg, true) {
            return r;
        }
        use moat_platform::host_socket::{socket_queue, SocketQueue};
        let queue = match request {
            FIONREAD => SocketQueue::Incoming,
            TIOCOUTQ => SocketQueue::Outgoing,
            SIOCOUTQNSD => SocketQueue::Unsent,
            _ => return Err(Errno::ENOTTY),
        };
        let n = socket_queue(self.fd.as_fd(), queue)
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        mm.write_obj(arg, &n)?;
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::socket_stat(self.ino, self.uid))
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        self.host_poll()
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }

    fn as_socket(&self) -> Option<&dyn Socket> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_encode_as_linux_lays_them_out() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let b = sockaddr_bytes(Some(SocketAddrAny::from(v4)));
        assert_eq!(b.len(), 16);
        assert_eq!(&b[..8], &[2, 0, 0, 80, 127, 0, 0, 1]);
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let b = sockaddr_bytes(Some(SocketAddrAny::from(v6)));
        assert_eq!(b.len(), 28);
        assert_eq!(&b[..4], &[10, 0, 1, 187]);
        assert_eq!(b[23], 1);
    }
}
