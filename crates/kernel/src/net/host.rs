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
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use moat_abi::{Errno, Stat};
use rustix::event::epoll;
use rustix::net::{sockopt, AddressFamily, RecvFlags, SendFlags, SocketAddrAny, SocketFlags};

use super::inet::options::{
    timeval_bytes, timeval_of, IPV6_V6ONLY, SOL_IPV6, SOL_TCP, SO_ACCEPTCONN, SO_BROADCAST,
    SO_DOMAIN, SO_ERROR, SO_KEEPALIVE, SO_LINGER, SO_PROTOCOL, SO_RCVBUF, SO_RCVTIMEO,
    SO_RCVTIMEO_NEW, SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, SO_SNDTIMEO, SO_SNDTIMEO_NEW, SO_TYPE,
    TCP_KEEPIDLE, TCP_NODELAY,
};
use super::inet::Family;
use super::{deadline, wait_for, Blocking, Incoming, Outgoing, Socket, SOL_SOCKET};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::task::Task;
use crate::wait::WaitQueue;

const TCP_KEEPINTVL: i32 = 5;
const TCP_KEEPCNT: i32 = 6;
/// `FIONREAD`: bytes waiting to be read.
const FIONREAD: u32 = 0x541b;

/// The most one receive takes from the host: larger buffers are filled in several calls
/// (a stream) or hold any datagram anyway (UDP's largest is 64 KiB).
const RECEIVE_CHUNK: usize = 256 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno(e.raw_os_error())
}

/// The kernel process's one host epoll, and the queues to notify for what it reports.
pub struct Poller {
    epoll: OwnedFd,
    queues: Mutex<HashMap<u64, Weak<WaitQueue>>>,
    next_key: AtomicU64,
}

impl Poller {
    /// The process's poller, started with the first host socket.
    fn get() -> Result<&'static Arc<Poller>, Errno> {
        static POLLER: OnceLock<Result<Arc<Poller>, Errno>> = OnceLock::new();
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

    /// Watch `fd`, notifying `queue` on every change the host reports.
    fn watch(&self, fd: &OwnedFd, queue: &Arc<WaitQueue>) -> Result<u64, Errno> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        lock(&self.queues).insert(key, Arc::downgrade(queue));
        let flags = epoll::EventFlags::IN
            | epoll::EventFlags::OUT
            | epoll::EventFlags::RDHUP
            | epoll::EventFlags::PRI
            | epoll::EventFlags::ET;
        if let Err(e) = epoll::add(&self.epoll, fd, epoll::EventData::new_u64(key), flags) {
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
                    .filter_map(|ev| map.get(&ev.data.u64()).and_then(Weak::upgrade))
                    .collect()
            };
            for q in queues {
                q.notify();
            }
        }
    }
}

/// A TCP or UDP socket on the host.
pub struct HostSocket {
    fd: OwnedFd,
    family: Family,
    kind: i32,
    queue: Arc<WaitQueue>,
    key: u64,
    ino: u64,
    uid: u32,
    /// `SO_SNDTIMEO`, `SO_RCVTIMEO`: Moat's waits, not the host's.
    timeouts: Mutex<(Option<Duration>, Option<Duration>)>,
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
        let queue = Arc::new(WaitQueue::default());
        let key = Poller::get()?.watch(&fd, &queue)?;
        Ok(HostSocket {
            fd,
            family,
            kind,
            queue,
            key,
            ino: super::next_ino(),
            uid,
            timeouts: Mutex::new((None, None)),
        })
    }

    /// Try `attempt` until it does not say `EAGAIN`, sleeping on the socket's queue between
    /// tries unless the call is non-blocking. The queue's generation is read before each try,
    /// so a host event between the try and the sleep is not lost.
    fn retry<T>(
        &self,
        task: &mut Task,
        nonblocking: bool,
        timeout: Option<Duration>,
        mut attempt: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let until = deadline(timeout);
        loop {
            let generation = self.queue.generation();
            match attempt() {
                Err(Errno::EAGAIN) if !nonblocking => {
                    wait_for(task, &self.queue, generation, until)?;
                }
                r => return r,
            }
        }
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

    /// Parse an address argument for this socket's family: length and family as Linux
    /// checks them; an IPv6 socket also takes `AF_INET` (sent as IPv4-mapped).
    fn address(&self, raw: &[u8]) -> Result<SocketAddr, Errno> {
        let fam = super::inet::sa_family(raw)?;
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
                // AF_UNSPEC is read as IPv4, as Linux does for the wildcard.
                if fam != libc::AF_INET as u16 && fam != libc::AF_UNSPEC as u16 {
                    return Err(Errno::EAFNOSUPPORT);
                }
                Ok(SocketAddr::V4(v4(raw)?))
            }
            Family::V6 => match i32::from(fam) {
                libc::AF_INET6 => {
                    if raw.len() < 24 {
                        return Err(Errno::EINVAL);
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
                libc::AF_INET => {
                    let a = v4(raw)?;
                    Ok(SocketAddr::V6(SocketAddrV6::new(
                        a.ip().to_ipv6_mapped(),
                        a.port(),
                        0,
                        0,
                    )))
                }
                _ => Err(Errno::EAFNOSUPPORT),
            },
        }
    }

    fn accepted(&self, fd: OwnedFd) -> Result<HostSocket, Errno> {
        Self::wrap(fd, self.family, self.kind, self.uid)
    }

    fn int_option(value: &[u8]) -> Result<i32, Errno> {
        let b: [u8; 4] = value
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(Errno::EINVAL)?;
        Ok(i32::from_le_bytes(b))
    }
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
        let addr = self.address(raw)?;
        if super::inet::port_needs_privilege(addr.port()) && task.creds.euid != 0 {
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
        if super::inet::sa_family(raw)? == libc::AF_UNSPEC as u16 && self.kind == libc::SOCK_DGRAM {
            // A datagram socket's disconnect.
            return rustix::net::connect_unspec(&self.fd).map_err(errno);
        }
        let addr = self.address(raw)?;
        match rustix::net::connect(&self.fd, &addr).map_err(errno) {
            Err(Errno::EINPROGRESS) if !nonblocking => {}
            r => return r,
        }
        // A blocking connect: wait for the host's answer, which `SO_ERROR` then holds.
        let (send_timeout, _) = *lock(&self.timeouts);
        self.retry(task, false, send_timeout, || {
            if self.host_poll() & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) as u32 == 0 {
                return Err(Errno::EAGAIN);
            }
            match sockopt::socket_error(&self.fd).map_err(errno)? {
                Ok(()) => Ok(()),
                Err(e) => Err(errno(e)),
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
            (Some(raw), libc::SOCK_DGRAM) => Some(self.address(raw)?),
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
            let r = self.retry(task, how.nonblocking, how.timeout, || {
                rustix::net::recvfrom(&self.fd, &mut buf[..want], flags).map_err(errno)
            });
            match r {
                Ok((n, whole, from)) => {
                    let n = n.min(want);
                    got.data.extend_from_slice(&buf[..n]);
                    if self.kind == libc::SOCK_DGRAM {
                        got.whole = whole;
                        got.from = Some(sockaddr_bytes(from));
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

    /// The vetted options: each read through a typed wrapper. Others are `ENOPROTOOPT`.
    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let fd = &self.fd;
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        let flag = |v: rustix::io::Result<bool>| int(i32::from(v.map_err(errno)?));
        let size =
            |v: rustix::io::Result<usize>| int(v.map_err(errno)?.min(i32::MAX as usize) as i32);
        let secs = |v: rustix::io::Result<Duration>| {
            int(v.map_err(errno)?.as_secs().min(i32::MAX as u64) as i32)
        };
        match (level, name) {
            (SOL_SOCKET, SO_TYPE) => int(self.kind),
            (SOL_SOCKET, SO_DOMAIN) => int(self.family.domain()),
            (SOL_SOCKET, SO_PROTOCOL) => int(if self.kind == libc::SOCK_STREAM {
                libc::IPPROTO_TCP
            } else {
                libc::IPPROTO_UDP
            }),
            (SOL_SOCKET, SO_ERROR) => int(match sockopt::socket_error(fd).map_err(errno)? {
                Ok(()) => 0,
                Err(e) => e.raw_os_error(),
            }),
            (SOL_SOCKET, SO_ACCEPTCONN) => flag(sockopt::socket_acceptconn(fd)),
            (SOL_SOCKET, SO_REUSEADDR) => flag(sockopt::socket_reuseaddr(fd)),
            (SOL_SOCKET, SO_REUSEPORT) => flag(sockopt::socket_reuseport(fd)),
            (SOL_SOCKET, SO_KEEPALIVE) => flag(sockopt::socket_keepalive(fd)),
            (SOL_SOCKET, SO_BROADCAST) => flag(sockopt::socket_broadcast(fd)),
            (SOL_SOCKET, SO_SNDBUF) => size(sockopt::socket_send_buffer_size(fd)),
            (SOL_SOCKET, SO_RCVBUF) => size(sockopt::socket_recv_buffer_size(fd)),
            (SOL_SOCKET, SO_LINGER) => {
                let linger = sockopt::socket_linger(fd).map_err(errno)?;
                let mut v = i32::from(linger.is_some()).to_le_bytes().to_vec();
                let secs = linger.map_or(0, |d| d.as_secs().min(i32::MAX as u64) as i32);
                v.extend_from_slice(&secs.to_le_bytes());
                Ok(v)
            }
            (SOL_SOCKET, SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
                Ok(timeval_bytes(lock(&self.timeouts).1))
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
                Ok(timeval_bytes(lock(&self.timeouts).0))
            }
            (SOL_TCP, TCP_NODELAY) if self.kind == libc::SOCK_STREAM => {
                flag(sockopt::tcp_nodelay(fd))
            }
            (SOL_TCP, TCP_KEEPIDLE) if self.kind == libc::SOCK_STREAM => {
                secs(sockopt::tcp_keepidle(fd))
            }
            (SOL_TCP, TCP_KEEPINTVL) if self.kind == libc::SOCK_STREAM => {
                secs(sockopt::tcp_keepintvl(fd))
            }
            (SOL_TCP, TCP_KEEPCNT) if self.kind == libc::SOCK_STREAM => {
                int(sockopt::tcp_keepcnt(fd).map_err(errno)? as i32)
            }
            (SOL_IPV6, IPV6_V6ONLY) if self.family == Family::V6 => flag(sockopt::ipv6_v6only(fd)),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }

    fn set_option(&self, _task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let fd = &self.fd;
        let on = || Ok::<bool, Errno>(Self::int_option(value)? != 0);
        let secs = || -> Result<Duration, Errno> {
            let v = Self::int_option(value)?;
            if v < 1 {
                return Err(Errno::EINVAL);
            }
            Ok(Duration::from_secs(v as u64))
        };
        let size = || -> Result<usize, Errno> { Ok(Self::int_option(value)?.max(0) as usize) };
        let stream = self.kind == libc::SOCK_STREAM;
        match (level, name) {
            (SOL_SOCKET, SO_REUSEADDR) => sockopt::set_socket_reuseaddr(fd, on()?),
            (SOL_SOCKET, SO_REUSEPORT) => sockopt::set_socket_reuseport(fd, on()?),
            (SOL_SOCKET, SO_KEEPALIVE) => sockopt::set_socket_keepalive(fd, on()?),
            (SOL_SOCKET, SO_BROADCAST) => sockopt::set_socket_broadcast(fd, on()?),
            (SOL_SOCKET, SO_SNDBUF) => sockopt::set_socket_send_buffer_size(fd, size()?),
            (SOL_SOCKET, SO_RCVBUF) => sockopt::set_socket_recv_buffer_size(fd, size()?),
            (SOL_SOCKET, SO_LINGER) => {
                let onoff = Self::int_option(value)?;
                let secs = Self::int_option(value.get(4..).ok_or(Errno::EINVAL)?)?;
                let linger = (onoff != 0).then(|| Duration::from_secs(secs.max(0) as u64));
                sockopt::set_socket_linger(fd, linger)
            }
            (SOL_SOCKET, SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
                lock(&self.timeouts).1 = timeval_of(value)?;
                return Ok(());
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
                lock(&self.timeouts).0 = timeval_of(value)?;
                return Ok(());
            }
            (SOL_TCP, TCP_NODELAY) if stream => sockopt::set_tcp_nodelay(fd, on()?),
            (SOL_TCP, TCP_KEEPIDLE) if stream => sockopt::set_tcp_keepidle(fd, secs()?),
            (SOL_TCP, TCP_KEEPINTVL) if stream => sockopt::set_tcp_keepintvl(fd, secs()?),
            (SOL_TCP, TCP_KEEPCNT) if stream => {
                let n = Self::int_option(value)?;
                if !(1..=127).contains(&n) {
                    return Err(Errno::EINVAL);
                }
                sockopt::set_tcp_keepcnt(fd, n as u32)
            }
            (SOL_IPV6, IPV6_V6ONLY) if self.family == Family::V6 => {
                sockopt::set_ipv6_v6only(fd, on()?)
            }
            _ => return Err(Errno::ENOPROTOOPT),
        }
        .map_err(errno)
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
        match request {
            FIONREAD => {
                let n = rustix::io::ioctl_fionread(&self.fd).map_err(errno)?;
                mm.write_obj(arg, &(n.min(i32::MAX as u64) as i32))?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
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
