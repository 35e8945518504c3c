//! UDP sockets on the loopback path: a datagram goes straight onto the queue of the socket
//! the port table picks for its destination (the best address match; a connected socket
//! takes only datagrams from its peer). A full receive buffer drops it, as UDP does. A
//! datagram nobody takes would make Linux answer with an ICMP port unreachable, which a
//! connected sender hears as `ECONNREFUSED` on its next call; so does a sender here.
//!
//! Lock order: the sender's state, the port table, then the receiver's state (never two
//! socket states at once).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_abi::{Errno, Stat};

use super::options::{
    Kind, Options, IPV6_MTU, IPV6_V6ONLY, IP_MTU, SOL_IP, SOL_IPV6, SO_ACCEPTCONN, SO_BROADCAST,
    SO_DOMAIN, SO_ERROR, SO_PEERCRED, SO_PROTOCOL, SO_REUSEADDR, SO_REUSEPORT, SO_TYPE,
};
use super::ports::{Binding, Entry};
use super::{Family, ProcLine, Route, SockAddr, Stack};
use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::net::ext::UdpBinding;
use crate::net::unix::POLLRDHUP;
use crate::net::{Blocking, Incoming, Outgoing, Socket, Ucred, SOL_SOCKET};
use crate::process::Guard;
use crate::task::Task;
use crate::wait::WaitQueue;

/// `POLLWRBAND`: datagram sockets report it with `POLLOUT`.
const POLLWRBAND: u32 = 0x200;
/// The largest UDP payload: 65535 less the IPv4 and UDP headers; IPv6's payload length
/// leaves out its own header.
const MAX_V4_PAYLOAD: usize = 65507;
const MAX_V6_PAYLOAD: usize = 65527;
/// What a queued datagram costs against the receive buffer beyond its bytes (Linux charges
/// the buffer's true size: about this much for a small one).
const DATAGRAM_OVERHEAD: usize = 768;

struct Datagram {
    data: Vec<u8>,
    from: SockAddr,
}

fn cost(len: usize) -> usize {
    DATAGRAM_OVERHEAD + len.div_ceil(64) * 64
}

struct State {
    opts: Options,
    local: Option<SockAddr>,
    held: Option<u16>,
    /// `bind` named an address / a port (Linux's `SOCK_BINDADDR_LOCK`/`BINDPORT_LOCK`):
    /// a disconnect keeps what was named.
    addr_locked: bool,
    port_locked: bool,
    /// The default destination and source filter (`connect`).
    remote: Option<SockAddr>,
    recv: VecDeque<Datagram>,
    /// What the queued datagrams cost against the receive buffer.
    recv_mem: usize,
    error: Option<Errno>,
    shut_rd: bool,
    shut_wr: bool,
    drops: u64,
    /// Its port on the external interface, if its address takes traffic from there.
    ext: Option<Arc<UdpBinding>>,
}

/// A UDP socket.
pub struct Udp {
    family: Family,
    ino: u64,
    uid: u32,
    stack: Arc<Stack>,
    queue: WaitQueue,
    state: Mutex<State>,
}

impl Udp {
    fn binding(&self, ip: IpAddr, v6only: bool) -> Binding {
        Binding {
            ip,
            dual: self.family == Family::V6 && ip == Family::V6.any() && !v6only,
        }
    }

    fn entry(self: &Arc<Self>, st: &State, bind: Binding) -> Entry<Udp> {
        let mut e = Entry::new(self.ino, bind, self.uid, Arc::downgrade(self));
        e.reuseaddr = st.opts.flag(SOL_SOCKET, SO_REUSEADDR);
        e.reuseport = st.opts.flag(SOL_SOCKET, SO_REUSEPORT);
        e.remote = st.remote;
        e
    }

    /// Bind to an ephemeral port on the wildcard if unbound (before a send or connect).
    fn autobind(self: &Arc<Self>, st: &mut State) -> Result<(), Errno> {
        if st.held.is_some() {
            return Ok(());
        }
        let any = self.family.any();
        let e = self.entry(st, self.binding(any, st.opts.v6only));
        let port = self
            .stack
            .udp
            .guard()
            .bind(0, e)
            .map_err(|_| Errno::EAGAIN)?;
        st.held = Some(port);
        st.local = Some(SockAddr { ip: any, port });
        self.open_external(st, any, port)
    }

    /// Open the socket's port on the external interface too, if its address (the wildcard,
    /// or the interface's) takes traffic from there.
    fn open_external(self: &Arc<Self>, st: &mut State, ip: IpAddr, port: u16) -> Result<(), Errno> {
        let dual = self.family == Family::V6 && !st.opts.v6only;
        if let (Some(ext), Some(addr)) = (&self.stack.ext, self.stack.external_binding(ip, dual)) {
            st.ext = Some(Arc::new(ext.udp_bind(addr, port, Arc::downgrade(self))?));
        }
        Ok(())
    }

    /// A datagram from the external interface for this socket's port (a connected socket
    /// takes only its peer's).
    pub(crate) fn deliver_external(&self, data: &[u8], from: SockAddr) {
        let remote = self.state.guard().remote;
        if remote.is_some_and(|r| r != from) {
            return;
        }
        self.deliver(data, from);
    }

    /// Put a datagram on this socket's queue, or drop it if the buffer is full.
    fn deliver(&self, data: &[u8], from: SockAddr) {
        {
            let mut st = self.state.guard();
            if st.recv_mem > st.opts.rcvbuf {
                st.drops += 1;
                return;
            }
            st.recv_mem += cost(data.len());
            st.recv.push_back(Datagram {
                data: data.to_vec(),
                from,
            });
        }
        self.queue.notify();
    }

    /// The socket that takes a datagram from `src` to `dst`: the best address match among
    /// those not connected elsewhere, the most recently bound on a tie.
    fn find(stack: &Stack, dst: SockAddr, src: SockAddr) -> Option<Arc<Udp>> {
        let table = stack.udp.guard();
        let mut best: Option<(u32, &Entry<Udp>)> = None;
        for e in table.holders(dst.port) {
            let Some(mut score) = e.bind.score(dst.ip) else {
                continue;
            };
            match e.remote {
                Some(r) if r != src => continue,
                Some(_) => score += 4,
                None => {}
            }
            if best.is_none_or(|(s, _)| score >= s) {
                best = Some((score, e));
            }
        }
        best.and_then(|(_, e)| e.owner.upgrade())
    }

    fn poll(&self) -> u32 {
        let st = self.state.guard();
        let mut r = POLLOUT | POLLWRNORM | POLLWRBAND;
        if st.error.is_some() {
            r |= POLLERR;
        }
        if st.shut_rd && st.shut_wr {
            r |= POLLHUP;
        }
        if st.shut_rd {
            r |= POLLIN | POLLRDNORM | POLLRDHUP;
        }
        if !st.recv.is_empty() {
            r |= POLLIN | POLLRDNORM;
        }
        r
    }

    /// Send one datagram to `to` (or the connected peer).
    fn try_send(self: &Arc<Self>, data: &[u8], to: Option<SockAddr>) -> Result<usize, Errno> {
        let (src, dst, connected_dst, external) = {
            let mut st = self.state.guard();
            let Some(dst) = to.or(st.remote) else {
                return Err(Errno::EDESTADDRREQ);
            };
            if dst.port == 0 {
                return Err(Errno::EINVAL);
            }
            if dst.ip == IpAddr::V4(Ipv4Addr::BROADCAST) && !st.opts.flag(SOL_SOCKET, SO_BROADCAST)
            {
                return Err(Errno::EACCES);
            }
            let (src, dst_ip, external) = match self.stack.route(dst.ip)? {
                Route::Loopback { src, dst } => (src, dst, false),
                Route::External { src } => (src, dst.ip, true),
            };
            let dst = SockAddr {
                ip: dst_ip,
                port: dst.port,
            };
            let max = if dst.ip.is_ipv4() {
                MAX_V4_PAYLOAD
            } else {
                MAX_V6_PAYLOAD
            };
            if data.len() > max {
                return Err(Errno::EMSGSIZE);
            }
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            if st.shut_wr {
                return Err(Errno::EPIPE);
            }
            self.autobind(&mut st)?;
            let local = st.local.unwrap_or(SockAddr::new(self.family.any(), 0));
            let src_ip = if local.ip.is_unspecified() {
                src
            } else {
                local.ip
            };
            if src_ip.is_ipv4() != dst.ip.is_ipv4() {
                return Err(Errno::ENETUNREACH);
            }
            let external = if external {
                // Bound to an address the interface does not have (loopback): EINVAL.
                Some(st.ext.clone().ok_or(Errno::EINVAL)?)
            } else {
                None
            };
            (
                SockAddr {
                    ip: src_ip,
                    port: local.port,
                },
                dst,
                st.remote == Some(dst),
                external,
            )
        };
        if let Some(ext) = external {
            // Without the socket's lock: the interface's poll may deliver to this socket.
            return ext.send(data, src.ip, dst);
        }
        match Self::find(&self.stack, dst, src) {
            Some(target) => target.deliver(data, src),
            // ICMP port unreachable: a connected sender hears of it.
            None if connected_dst => {
                self.state.guard().error = Some(Errno::ECONNREFUSED);
                self.queue.notify();
            }
            None => {}
        }
        Ok(data.len())
    }

    /// Take (or with `peek` copy) the next datagram, truncated to `len`.
    fn try_receive(&self, len: usize, peek: bool) -> Result<Incoming, Errno> {
        let mut st = self.state.guard();
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        let d = if peek {
            match st.recv.front() {
                Some(d) => Datagram {
                    data: d.data.clone(),
                    from: d.from,
                },
                None => return Self::empty(&st),
            }
        } else {
            match st.recv.pop_front() {
                Some(d) => {
                    st.recv_mem = st.recv_mem.saturating_sub(cost(d.data.len()));
                    d
                }
                None => return Self::empty(&st),
            }
        };
        let whole = d.data.len();
        let mut data = d.data;
        data.truncate(len);
        Ok(Incoming {
            data,
            whole,
            from: Some(d.from.to_sockaddr(self.family)),
            ..Incoming::default()
        })
    }

    fn empty(st: &State) -> Result<Incoming, Errno> {
        if st.shut_rd {
            Ok(Incoming::default())
        } else {
            Err(Errno::EAGAIN)
        }
    }

    fn proc_line(&self) -> ProcLine {
        let st = self.state.guard();
        ProcLine {
            local: st.local.unwrap_or(SockAddr::new(self.family.any(), 0)),
            remote: st.remote.unwrap_or(SockAddr::new(self.family.any(), 0)),
            state: if st.remote.is_some() {
                super::state::ESTABLISHED
            } else {
                super::state::CLOSE
            },
            tx_queue: 0,
            rx_queue: st.recv_mem,
            uid: self.uid,
            ino: self.ino,
            drops: st.drops,
            time_wait: false,
        }
    }
}

/// The lines of `/proc/net/udp` (IPv4 sockets) or `/proc/net/udp6`: every bound socket.
pub fn proc_lines(stack: &Stack, family: Family) -> Vec<ProcLine> {
    let sockets: Vec<Arc<Udp>> = stack
        .udp
        .guard()
        .all()
        .filter_map(|(_, e)| e.owner.upgrade())
        .filter(|s| s.family == family)
        .collect();
    sockets.iter().map(|s| s.proc_line()).collect()
}

/// A UDP socket open as a file.
pub struct UdpSocket {
    sk: Arc<Udp>,
}

impl UdpSocket {
    pub fn new(family: Family, uid: u32, stack: &Arc<Stack>) -> UdpSocket {
        let opts = Options::new(Kind {
            tcp: false,
            v6: family == Family::V6,
            icmp: false,
        });
        UdpSocket {
            sk: Arc::new(Udp {
                family,
                ino: crate::net::next_ino(),
                uid,
                stack: stack.clone(),
                queue: WaitQueue::default(),
                state: Mutex::new(State {
                    opts,
                    local: None,
                    held: None,
                    addr_locked: false,
                    port_locked: false,
                    remote: None,
                    recv: VecDeque::new(),
                    recv_mem: 0,
                    error: None,
                    shut_rd: false,
                    shut_wr: false,
                    drops: 0,
                    ext: None,
                }),
            }),
        }
    }

    /// `connect` with `AF_UNSPEC`: forget the peer, and what `bind` did not name.
    fn disconnect(&self) {
        let mut st = self.sk.state.guard();
        st.remote = None;
        let Some(port) = st.held else {
            return;
        };
        if !st.port_locked {
            self.sk.stack.udp.guard().release(port, self.sk.ino);
            st.held = None;
            st.local = None;
            return;
        }
        if !st.addr_locked {
            let any = self.sk.family.any();
            st.local = Some(SockAddr { ip: any, port });
        }
        let bind = self.sk.binding(
            st.local.map_or(self.sk.family.any(), |l| l.ip),
            st.opts.v6only,
        );
        self.sk.stack.udp.guard().update(port, self.sk.ino, |e| {
            e.bind = bind;
            e.remote = None;
        });
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let ext = self.sk.state.guard().ext.take();
        drop(ext);
        let held = self.sk.state.guard().held.take();
        if let Some(port) = held {
            self.sk.stack.udp.guard().release(port, self.sk.ino);
        }
    }
}

impl Socket for UdpSocket {
    fn domain(&self) -> i32 {
        self.sk.family.domain()
    }

    fn kind(&self) -> i32 {
        libc::SOCK_DGRAM
    }

    fn bind(&self, task: &mut Task, raw: &[u8]) -> Result<(), Errno> {
        let mut st = self.sk.state.guard();
        let addr = super::bind_addr(raw, self.sk.family, st.opts.v6only, &self.sk.stack)?;
        if super::port_needs_privilege(addr.port)
            && !task.creds.has(crate::capability::Cap::NetBindService)
        {
            return Err(Errno::EACCES);
        }
        if st.held.is_some() {
            return Err(Errno::EINVAL);
        }
        let e = self.sk.entry(&st, self.sk.binding(addr.ip, st.opts.v6only));
        let port = self.sk.stack.udp.guard().bind(addr.port, e)?;
        st.held = Some(port);
        st.local = Some(SockAddr { ip: addr.ip, port });
        st.addr_locked = !addr.ip.is_unspecified();
        st.port_locked = addr.port != 0;
        if let Err(e) = self.sk.open_external(&mut st, addr.ip, port) {
            st.held = None;
            st.local = None;
            self.sk.stack.udp.guard().release(port, self.sk.ino);
            return Err(e);
        }
        Ok(())
    }

    fn listen(&self, _task: &mut Task, _backlog: i32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn connect(&self, _task: &mut Task, raw: &[u8], _nonblocking: bool) -> Result<(), Errno> {
        if super::sa_family(raw)? == libc::AF_UNSPEC as u16 {
            self.disconnect();
            return Ok(());
        }
        let mut st = self.sk.state.guard();
        let dst = match self.sk.family {
            Family::V4 => super::connect_addr(raw, Family::V4, false)?,
            Family::V6 => {
                if super::sa_family(raw)? == libc::AF_INET as u16 && st.opts.v6only {
                    return Err(Errno::EINVAL);
                }
                if super::sa_family(raw)? != libc::AF_INET as u16 && raw.len() < 24 {
                    return Err(Errno::EINVAL);
                }
                super::datagram_addr(raw, Family::V6, st.opts.v6only)?.ok_or(Errno::EAFNOSUPPORT)?
            }
        };
        let (src, dst_ip) = match self.sk.stack.route(dst.ip)? {
            Route::Loopback { src, dst } => (src, dst),
            Route::External { src } => (src, dst.ip),
        };
        let dst = SockAddr {
            ip: dst_ip,
            port: dst.port,
        };
        self.sk.autobind(&mut st)?;
        let port = st.held.unwrap_or(0);
        let mut local = st
            .local
            .unwrap_or(SockAddr::new(self.sk.family.any(), port));
        if !st.addr_locked {
            local.ip = src;
        }
        st.local = Some(local);
        st.remote = Some(dst);
        let bind = Binding {
            ip: local.ip,
            dual: false,
        };
        self.sk.stack.udp.guard().update(port, self.sk.ino, |e| {
            e.bind = bind;
            e.remote = Some(dst);
        });
        Ok(())
    }

    fn accept(
        &self,
        _task: &mut Task,
        _nonblocking: bool,
    ) -> Result<(Box<dyn FileOps>, Vec<u8>), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn send(
        &self,
        _task: &mut Task,
        msg: Outgoing,
        to: Option<&[u8]>,
        _how: Blocking,
    ) -> Result<usize, Errno> {
        if !msg.fds.is_empty() || msg.creds.is_some() {
            return Err(Errno::EINVAL);
        }
        let to = match to {
            Some(raw) => {
                let v6only = self.sk.state.guard().opts.v6only;
                super::datagram_addr(raw, self.sk.family, v6only)?
            }
            None => None,
        };
        // A datagram is delivered at once or dropped: sending never waits.
        self.sk.try_send(&msg.data, to)
    }

    fn receive(
        &self,
        task: &mut Task,
        len: usize,
        peek: bool,
        _wait_all: bool,
        how: Blocking,
    ) -> Result<Incoming, Errno> {
        crate::net::retry(task, &self.sk.queue, how.nonblocking, how.timeout, || {
            self.sk.try_receive(len, peek)
        })
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        let connected = {
            let mut st = self.sk.state.guard();
            st.shut_rd |= rd;
            st.shut_wr |= wr;
            st.remote.is_some()
        };
        self.sk.queue.notify();
        if connected {
            Ok(())
        } else {
            Err(Errno::ENOTCONN)
        }
    }

    fn local_name(&self) -> Vec<u8> {
        self.sk
            .state
            .guard()
            .local
            .unwrap_or(SockAddr::new(self.sk.family.any(), 0))
            .to_sockaddr(self.sk.family)
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        let remote = self.sk.state.guard().remote.ok_or(Errno::ENOTCONN)?;
        Ok(remote.to_sockaddr(self.sk.family))
    }

    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        let mut st = self.sk.state.guard();
        match (level, name) {
            (SOL_SOCKET, SO_TYPE) => int(libc::SOCK_DGRAM),
            (SOL_SOCKET, SO_PROTOCOL) => int(libc::IPPROTO_UDP),
            (SOL_SOCKET, SO_DOMAIN) => int(self.sk.family.domain()),
            (SOL_SOCKET, SO_ACCEPTCONN) => int(0),
            (SOL_SOCKET, SO_PEERCRED) => Ok(Ucred::NOBODY.to_bytes().to_vec()),
            (SOL_SOCKET, SO_ERROR) => int(st.error.take().map_or(0, |e| e.0)),
            (SOL_IP, IP_MTU) | (SOL_IPV6, IPV6_MTU)
                if level == SOL_IP || self.sk.family == Family::V6 =>
            {
                if st.remote.is_some() {
                    int(65535)
                } else {
                    Err(Errno::ENOTCONN)
                }
            }
            _ => st.opts.get(level, name),
        }
    }

    fn set_option(&self, task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let mut st = self.sk.state.guard();
        if (level, name) == (SOL_IPV6, IPV6_V6ONLY)
            && self.sk.family == Family::V6
            && (value.len() < 4 || st.held.is_some())
        {
            return Err(Errno::EINVAL);
        }
        st.opts.set(level, name, value, &task.creds)?;
        if matches!((level, name), (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT)) {
            if let Some(port) = st.held {
                let (a, p) = (
                    st.opts.flag(SOL_SOCKET, SO_REUSEADDR),
                    st.opts.flag(SOL_SOCKET, SO_REUSEPORT),
                );
                self.sk.stack.udp.guard().update(port, self.sk.ino, |e| {
                    e.reuseaddr = a;
                    e.reuseport = p;
                });
            }
        }
        Ok(())
    }

    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let st = self.sk.state.guard();
        (st.opts.send_timeout, st.opts.recv_timeout)
    }
}

impl FileOps for UdpSocket {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let got = self.sk.try_receive(buf.len(), false)?;
        buf[..got.data.len()].copy_from_slice(&got.data);
        Ok(got.data.len())
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        self.sk.try_send(buf, None)
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        super::datagram_ioctl(mm, request, arg, || {
            self.sk
                .state
                .guard()
                .recv
                .front()
                .map_or(0, |d| d.data.len())
        })
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(crate::net::socket_stat(self.sk.ino, self.sk.uid))
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        self.sk.poll()
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.sk.queue)
    }

    fn as_socket(&self) -> Option<&dyn Socket> {
        Some(self)
    }
}
