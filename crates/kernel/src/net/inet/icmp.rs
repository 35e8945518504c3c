//! ICMP echo sockets ("ping sockets": `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)` and
//! `socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)`), as Linux's `net/ipv4/ping.c` makes them
//! for a process whose group is in `net.ipv4.ping_group_range`.
//!
//! A ping socket sends echo requests only: the application writes the ICMP header and the
//! payload, the kernel checks that the type is an echo request (`EINVAL` otherwise, or for a
//! message shorter than the header), puts the socket's identifier (its "port", from `bind`
//! or an automatic bind) in the header and computes the checksum. It receives the echo
//! replies that carry its identifier: ICMP header and payload, without the IP header, from
//! the address that answered.
//!
//! On the loopback path (`lo`, and the sandbox's own external addresses) there is nobody to
//! send the request to: the sandbox's stack answers it itself, as Linux's `icmp_echo` would,
//! and the reply goes onto the queue of the socket its identifier names. Out of the external
//! interface, a smoltcp ICMP socket bound to the identifier sends the request and hands back
//! the replies (`net/ext`, `IcmpBinding`).
//!
//! Identifiers come from one table per sandbox shared by both families (Linux's
//! `ping_table`): a bound identifier conflicts with any other socket holding it unless both
//! set `SO_REUSEADDR`; an automatic one is the next free after the last one handed out.
//!
//! Lock order: the socket's state, then the identifier table, then another socket's state.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use moat_abi::{Errno, Stat};

use super::options::{
    Kind, Options, IPV6_TCLASS, IPV6_V6ONLY, IP_TOS, IP_TTL, SOL_IP, SOL_IPV6, SO_ACCEPTCONN,
    SO_BROADCAST, SO_DOMAIN, SO_ERROR, SO_PEERCRED, SO_PROTOCOL, SO_REUSEADDR, SO_TIMESTAMP,
    SO_TIMESTAMPNS, SO_TYPE,
};
use super::{Family, ProcLine, Route, SockAddr, Stack};
use crate::fs::pipe::{POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::net::ext::IcmpBinding;
use crate::net::unix::POLLRDHUP;
use crate::net::{Blocking, Cmsg, Incoming, Outgoing, Socket, Ucred, SOL_SOCKET};
use crate::process::Guard;
use crate::task::Task;
use crate::wait::WaitQueue;

/// `POLLWRBAND`: datagram sockets report it with `POLLOUT`.
const POLLWRBAND: u32 = 0x200;

/// ICMP types: echo request and reply, for IPv4 and IPv6.
pub const ICMP_ECHO: u8 = 8;
pub const ICMP_ECHOREPLY: u8 = 0;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// `sizeof(struct icmphdr)`: type, code, checksum, identifier, sequence.
const HEADER: usize = 8;
/// The largest message `ping_common_sendmsg` takes; an IPv4 packet must also fit its
/// 16-bit total length with the 20-byte header.
const MAX_MESSAGE: usize = 0xffff;
const MAX_V4_MESSAGE: usize = 0xffff - 20;
/// The hop limit of a reply the sandbox's own stack makes (`net.ipv4.ip_default_ttl`, and
/// IPv6's default hop limit); loopback does not decrement it.
const DEFAULT_TTL: u8 = 64;
/// What a queued reply costs against the receive buffer beyond its bytes (as UDP's).
const OVERHEAD: usize = 768;

const IP_RECVTTL: i32 = 12;
const IP_RECVTOS: i32 = 13;
const IPV6_RECVHOPLIMIT: i32 = 51;
const IPV6_HOPLIMIT: i32 = 52;
const IPV6_RECVTCLASS: i32 = 66;

/// `net.ipv4.ping_group_range` of the sandbox: every group, as systemd sets it on most
/// distributions (Linux's own default, "1 0", admits nobody). It governs IPv6 too.
pub const PING_GROUP_RANGE: (u32, u32) = (0, 2_147_483_647);

/// Whether a caller with effective group `egid` and supplementary `groups` may make a ping
/// socket (`ping_init_sock`: the effective group first, then each supplementary one).
pub fn may_ping(range: (u32, u32), egid: u32, groups: &[u32]) -> bool {
    let (low, high) = range;
    std::iter::once(&egid)
        .chain(groups)
        .any(|g| (low..=high).contains(g))
}

/// The Internet checksum of `data` with a starting sum (the IPv6 pseudo-header's).
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sum of the IPv6 pseudo-header of an ICMPv6 message of `len` bytes.
fn pseudo_sum(src: IpAddr, dst: IpAddr, len: usize) -> u32 {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        return 0;
    };
    let mut sum = 0u32;
    for w in s.segments().into_iter().chain(d.segments()) {
        sum += u32::from(w);
    }
    sum += (len as u32) >> 16;
    sum += (len as u32) & 0xffff;
    sum + 58
}

/// Fill in the checksum of an ICMP (IPv4) or ICMPv6 message from `src` to `dst`.
pub fn set_checksum(msg: &mut [u8], src: IpAddr, dst: IpAddr) {
    if msg.len() < HEADER {
        return;
    }
    msg[2..4].fill(0);
    let start = if dst.is_ipv4() {
        0
    } else {
        pseudo_sum(src, dst, msg.len())
    };
    let sum = checksum(start, msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// Whether the checksum of a message from `src` to `dst` is right.
#[cfg(test)]
fn checksum_ok(msg: &[u8], src: IpAddr, dst: IpAddr) -> bool {
    let start = if dst.is_ipv4() {
        0
    } else {
        pseudo_sum(src, dst, msg.len())
    };
    checksum(start, msg) == 0
}

/// A socket holding an identifier.
struct Holder {
    ino: u64,
    family: Family,
    /// The address it receives on (the wildcard: any).
    addr: IpAddr,
    reuse: bool,
    owner: Weak<Ping>,
}

/// The identifiers of the sandbox's ping sockets (Linux's `ping_table`, one per network
/// namespace, both families in it).
#[derive(Default)]
pub struct Table {
    rover: u16,
    holders: HashMap<u16, Vec<Holder>>,
}

impl Table {
    /// Take `ident` (0: the next free one) for `h`: `EADDRINUSE` if another holds it and
    /// they do not both reuse, `EAGAIN` if none is free.
    fn bind(&mut self, ident: u16, h: Holder) -> Result<u16, Errno> {
        let ident = if ident == 0 {
            let mut candidate = self.rover;
            let mut found = None;
            for _ in 0..u16::MAX {
                candidate = candidate.wrapping_add(1);
                if candidate == 0 {
                    candidate = 1;
                }
                if self.holders.get(&candidate).is_none_or(Vec::is_empty) {
                    found = Some(candidate);
                    break;
                }
            }
            let ident = found.ok_or(Errno::EAGAIN)?;
            self.rover = ident;
            ident
        } else {
            let taken = self
                .holders
                .get(&ident)
                .is_some_and(|v| v.iter().any(|o| o.ino != h.ino && !(o.reuse && h.reuse)));
            if taken {
                return Err(Errno::EADDRINUSE);
            }
            ident
        };
        // The newest first: Linux's lookup finds the most recently hashed socket.
        self.holders.entry(ident).or_default().insert(0, h);
        Ok(ident)
    }

    fn release(&mut self, ident: u16, ino: u64) {
        if let Some(v) = self.holders.get_mut(&ident) {
            v.retain(|h| h.ino != ino);
            if v.is_empty() {
                self.holders.remove(&ident);
            }
        }
    }

    fn update(&mut self, ident: u16, ino: u64, f: impl FnOnce(&mut Holder)) {
        if let Some(h) = self
            .holders
            .get_mut(&ident)
            .and_then(|v| v.iter_mut().find(|h| h.ino == ino))
        {
            f(h);
        }
    }

    /// The socket an echo reply with `ident` to `dst` goes to (`ping_lookup`): of the
    /// reply's family, bound to `dst` or to the wildcard.
    fn find(&self, ident: u16, dst: IpAddr) -> Option<Arc<Ping>> {
        let family = if dst.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        self.holders
            .get(&ident)?
            .iter()
            .filter(|h| h.family == family && (h.addr.is_unspecified() || h.addr == dst))
            .find_map(|h| h.owner.upgrade())
    }
}

/// An echo reply waiting to be received.
struct Reply {
    data: Vec<u8>,
    from: IpAddr,
    /// The reply's TTL or hop limit and TOS or traffic class, where known.
    ttl: Option<u8>,
    tos: Option<u8>,
    at: SystemTime,
}

struct State {
    opts: Options,
    /// The identifier (Linux's `inet_num`), once bound.
    ident: Option<u16>,
    /// The address bound or chosen by `connect` (the wildcard until then).
    local: IpAddr,
    addr_locked: bool,
    port_locked: bool,
    /// The peer of `connect`, with the port it named (kept, never used).
    remote: Option<SockAddr>,
    recv: VecDeque<Reply>,
    recv_mem: usize,
    shut_rd: bool,
    shut_wr: bool,
    drops: u64,
    /// The identifier opened on the external interface, if the sandbox has one.
    ext: Option<Arc<IcmpBinding>>,
}

/// A ping socket.
pub struct Ping {
    family: Family,
    ino: u64,
    uid: u32,
    stack: Arc<Stack>,
    queue: WaitQueue,
    state: Mutex<State>,
}

impl Ping {
    fn holder(self: &Arc<Self>, st: &State) -> Holder {
        Holder {
            ino: self.ino,
            family: self.family,
            addr: st.local,
            reuse: st.opts.flag(SOL_SOCKET, SO_REUSEADDR),
            owner: Arc::downgrade(self),
        }
    }

    /// Take `ident` (0: any) at the socket's address; open it on the external interface.
    fn take_ident(self: &Arc<Self>, st: &mut State, ident: u16) -> Result<u16, Errno> {
        let h = self.holder(st);
        let ident = self.stack.ping.guard().bind(ident, h)?;
        st.ident = Some(ident);
        if let Some(ext) = &self.stack.ext {
            match ext.icmp_bind(ident, Arc::downgrade(self)) {
                Ok(b) => st.ext = Some(Arc::new(b)),
                Err(e) => {
                    st.ident = None;
                    self.stack.ping.guard().release(ident, self.ino);
                    return Err(e);
                }
            }
        }
        Ok(ident)
    }

    /// An automatic identifier before a send or connect (`inet_autobind`: `EAGAIN` when
    /// none is free).
    fn autobind(self: &Arc<Self>, st: &mut State) -> Result<u16, Errno> {
        match st.ident {
            Some(i) => Ok(i),
            None => self.take_ident(st, 0).map_err(|_| Errno::EAGAIN),
        }
    }

    /// Queue a reply, or drop it if the receive buffer is full.
    fn deliver(&self, reply: Reply) {
        {
            let mut st = self.state.guard();
            if st.recv_mem > st.opts.rcvbuf {
                st.drops += 1;
                return;
            }
            st.recv_mem += OVERHEAD + reply.data.len();
            st.recv.push_back(reply);
        }
        self.queue.notify();
    }

    /// An echo reply from the external interface for this socket's identifier (smoltcp
    /// hands over echo requests with it too: only replies of the socket's family count).
    pub(crate) fn deliver_external(&self, data: &[u8], from: IpAddr) {
        let want = match self.family {
            Family::V4 => ICMP_ECHOREPLY,
            Family::V6 => ICMPV6_ECHO_REPLY,
        };
        if data.len() < HEADER || data[0] != want || from.is_ipv4() != (self.family == Family::V4) {
            return;
        }
        self.deliver(Reply {
            data: data.to_vec(),
            from,
            ttl: None,
            tos: None,
            at: SystemTime::now(),
        });
    }

    fn poll(&self) -> u32 {
        let st = self.state.guard();
        let mut r = POLLOUT | POLLWRNORM | POLLWRBAND;
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

    /// The destination a send names (`ping_v4_sendmsg`/`ping_v6_sendmsg`): the whole
    /// `sockaddr_in`/`sockaddr_in6` (`EINVAL`), of the socket's family (`EAFNOSUPPORT`).
    fn destination(&self, raw: &[u8]) -> Result<IpAddr, Errno> {
        let len = match self.family {
            Family::V4 => 16,
            Family::V6 => 28,
        };
        if raw.len() < len {
            return Err(Errno::EINVAL);
        }
        if super::sa_family(raw)? != self.family.domain() as u16 {
            return Err(Errno::EAFNOSUPPORT);
        }
        Ok(super::read_raw(raw, self.family)?.addr.ip)
    }

    /// Send one echo request (`msg`: the ICMP header and payload) to `to` or the peer.
    fn try_send(self: &Arc<Self>, msg: &[u8], to: Option<&[u8]>) -> Result<usize, Errno> {
        let mut st = self.state.guard();
        let ident = self.autobind(&mut st)?;
        if msg.len() > MAX_MESSAGE {
            return Err(Errno::EMSGSIZE);
        }
        if msg.len() < HEADER {
            return Err(Errno::EINVAL);
        }
        let echo = match self.family {
            Family::V4 => ICMP_ECHO,
            Family::V6 => ICMPV6_ECHO_REQUEST,
        };
        if msg[0] != echo || msg[1] != 0 {
            return Err(Errno::EINVAL);
        }
        let dst = match to {
            Some(raw) => self.destination(raw)?,
            None => st.remote.ok_or(Errno::EDESTADDRREQ)?.ip,
        };
        // A mapped (or, for an IPv6 socket, any IPv4) destination: IPv6 ping sockets
        // speak ICMPv6 only.
        if self.family == Family::V6 && dst.is_ipv4() {
            return Err(Errno::EINVAL);
        }
        if self.family == Family::V4 && msg.len() > MAX_V4_MESSAGE {
            return Err(Errno::EMSGSIZE);
        }
        let route = self.stack.route(dst)?;
        if dst == IpAddr::V4(Ipv4Addr::BROADCAST) && !st.opts.flag(SOL_SOCKET, SO_BROADCAST) {
            return Err(Errno::EACCES);
        }
        if st.shut_wr {
            return Err(Errno::EPIPE);
        }
        let mut packet = msg.to_vec();
        packet[4..6].copy_from_slice(&ident.to_be_bytes());
        match route {
            Route::Loopback { src, dst } => {
                let src = if st.local.is_unspecified() {
                    src
                } else {
                    st.local
                };
                let tos = match self.family {
                    Family::V4 => st.opts.int(SOL_IP, IP_TOS),
                    Family::V6 => st.opts.int(SOL_IPV6, IPV6_TCLASS),
                };
                drop(st);
                self.echo_locally(&packet, src, dst, tos as u8);
            }
            Route::External { src } => {
                if !st.local.is_unspecified() && st.local != src {
                    // Bound to an address the interface has not (loopback).
                    return Err(Errno::EINVAL);
                }
                let ext = st.ext.clone().ok_or(Errno::ENETUNREACH)?;
                // Without the socket's lock: the interface's poll may deliver to it.
                drop(st);
                set_checksum(&mut packet, src, dst);
                ext.send(&packet, dst)?;
            }
        }
        Ok(msg.len())
    }

    /// The sandbox's stack answers an echo request from `src` to its own address `dst`
    /// (`icmp_echo`): the same identifier, sequence and payload, from `dst` back to `src`,
    /// to the socket the identifier names there.
    fn echo_locally(&self, request: &[u8], src: IpAddr, dst: IpAddr, tos: u8) {
        let mut reply = request.to_vec();
        reply[0] = if dst.is_ipv4() {
            ICMP_ECHOREPLY
        } else {
            ICMPV6_ECHO_REPLY
        };
        set_checksum(&mut reply, dst, src);
        let ident = u16::from_be_bytes([reply[4], reply[5]]);
        let target = self.stack.ping.guard().find(ident, src);
        if let Some(t) = target {
            t.deliver(Reply {
                data: reply,
                from: dst,
                ttl: Some(DEFAULT_TTL),
                tos: Some(tos),
                at: SystemTime::now(),
            });
        }
    }

    /// The control messages a reply carries, as the socket asked for them, in Linux's
    /// order (`sock_recv_timestamp`, then `ip_cmsg_recv` or IPv6's).
    fn control(&self, opts: &Options, r: &Reply) -> Vec<Cmsg> {
        let mut out = Vec::new();
        let since =
            r.at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
        let secs = (since.as_secs() as i64).to_le_bytes();
        if opts.flag(SOL_SOCKET, SO_TIMESTAMPNS) {
            let mut data = secs.to_vec();
            data.extend_from_slice(&i64::from(since.subsec_nanos()).to_le_bytes());
            out.push(Cmsg {
                level: SOL_SOCKET,
                kind: SO_TIMESTAMPNS,
                data,
            });
        } else if opts.flag(SOL_SOCKET, SO_TIMESTAMP) {
            let mut data = secs.to_vec();
            data.extend_from_slice(&i64::from(since.subsec_micros()).to_le_bytes());
            out.push(Cmsg {
                level: SOL_SOCKET,
                kind: SO_TIMESTAMP,
                data,
            });
        }
        let int = |v: u8| i32::from(v).to_le_bytes().to_vec();
        match self.family {
            Family::V4 => {
                if let (true, Some(ttl)) = (opts.flag(SOL_IP, IP_RECVTTL), r.ttl) {
                    out.push(Cmsg {
                        level: SOL_IP,
                        kind: IP_TTL,
                        data: int(ttl),
                    });
                }
                if let (true, Some(tos)) = (opts.flag(SOL_IP, IP_RECVTOS), r.tos) {
                    out.push(Cmsg {
                        level: SOL_IP,
                        kind: IP_TOS,
                        data: vec![tos],
                    });
                }
            }
            Family::V6 => {
                if let (true, Some(hops)) = (opts.flag(SOL_IPV6, IPV6_RECVHOPLIMIT), r.ttl) {
                    out.push(Cmsg {
                        level: SOL_IPV6,
                        kind: IPV6_HOPLIMIT,
                        data: int(hops),
                    });
                }
                if let (true, Some(tclass)) = (opts.flag(SOL_IPV6, IPV6_RECVTCLASS), r.tos) {
                    out.push(Cmsg {
                        level: SOL_IPV6,
                        kind: IPV6_TCLASS,
                        data: int(tclass),
                    });
                }
            }
        }
        out
    }

    /// Take (or with `peek` copy) the next reply, truncated to `len`.
    fn try_receive(&self, len: usize, peek: bool) -> Result<Incoming, Errno> {
        let mut st = self.state.guard();
        let r = if peek {
            st.recv.front().map(|r| Reply {
                data: r.data.clone(),
                from: r.from,
                ttl: r.ttl,
                tos: r.tos,
                at: r.at,
            })
        } else {
            let r = st.recv.pop_front();
            if let Some(r) = &r {
                st.recv_mem = st.recv_mem.saturating_sub(OVERHEAD + r.data.len());
            }
            r
        };
        let Some(r) = r else {
            return if st.shut_rd {
                Ok(Incoming::default())
            } else {
                Err(Errno::EAGAIN)
            };
        };
        let control = self.control(&st.opts, &r);
        let whole = r.data.len();
        let mut data = r.data;
        data.truncate(len);
        // The sender's address with port 0 (and no scope on loopback).
        let from = SockAddr {
            ip: r.from,
            port: 0,
        }
        .to_sockaddr(self.family);
        Ok(Incoming {
            data,
            whole,
            from: Some(from),
            control,
            ..Incoming::default()
        })
    }
}

/// The lines of `/proc/net/icmp` (IPv4 sockets) or `/proc/net/icmp6`: every socket holding
/// an identifier.
pub fn proc_lines(stack: &Stack, family: Family) -> Vec<ProcLine> {
    let sockets: Vec<Arc<Ping>> = stack
        .ping
        .guard()
        .holders
        .values()
        .flatten()
        .filter(|h| h.family == family)
        .filter_map(|h| h.owner.upgrade())
        .collect();
    sockets
        .iter()
        .filter_map(|sk| {
            let st = sk.state.guard();
            Some(ProcLine {
                local: SockAddr::new(st.local, st.ident?),
                remote: st.remote.unwrap_or(SockAddr::new(family.any(), 0)),
                state: if st.remote.is_some() {
                    super::state::ESTABLISHED
                } else {
                    super::state::CLOSE
                },
                tx_queue: 0,
                rx_queue: st.recv_mem,
                uid: sk.uid,
                ino: sk.ino,
                drops: st.drops,
                time_wait: false,
            })
        })
        .collect()
}

/// A ping socket open as a file.
pub struct PingSocket {
    sk: Arc<Ping>,
}

impl PingSocket {
    pub fn new(family: Family, uid: u32, stack: &Arc<Stack>) -> PingSocket {
        let mut opts = Options::new(Kind {
            tcp: false,
            v6: family == Family::V6,
            icmp: true,
        });
        // `ping_init_sock`: an IPv6 ping socket is IPv6-only.
        opts.v6only = family == Family::V6;
        PingSocket {
            sk: Arc::new(Ping {
                family,
                ino: crate::net::next_ino(),
                uid,
                stack: stack.clone(),
                queue: WaitQueue::default(),
                state: Mutex::new(State {
                    opts,
                    local: family.any(),
                    ident: None,
                    addr_locked: false,
                    port_locked: false,
                    remote: None,
                    recv: VecDeque::new(),
                    recv_mem: 0,
                    shut_rd: false,
                    shut_wr: false,
                    drops: 0,
                    ext: None,
                }),
            }),
        }
    }

    /// The address `bind` names (`ping_check_bind_addr`).
    fn bind_addr(&self, raw: &[u8]) -> Result<SockAddr, Errno> {
        if self.sk.family == Family::V6 {
            if raw.len() < 24 {
                return Err(Errno::EINVAL);
            }
            if super::sa_family(raw)? != libc::AF_INET6 as u16 {
                return Err(Errno::EAFNOSUPPORT);
            }
            // Only unicast IPv6 addresses (or the wildcard), never a mapped one.
            let r = super::read_raw(raw, Family::V6)?;
            match r.addr.ip {
                IpAddr::V4(_) => return Err(Errno::EINVAL),
                IpAddr::V6(a) if a.is_multicast() => return Err(Errno::EINVAL),
                IpAddr::V6(_) => {}
            }
        }
        let addr = super::bind_addr(raw, self.sk.family, true, &self.sk.stack)?;
        // Only a local unicast address or the wildcard, unlike UDP: not a multicast or
        // broadcast one (lo's 127.255.255.255 is its broadcast address).
        if let IpAddr::V4(a) = addr.ip {
            if a.is_multicast() || a.is_broadcast() || a == Ipv4Addr::new(127, 255, 255, 255) {
                return Err(Errno::EADDRNOTAVAIL);
            }
        }
        Ok(addr)
    }

    /// `connect` with `AF_UNSPEC` (`__udp_disconnect`): forget the peer, and what `bind`
    /// did not name.
    fn disconnect(&self) {
        let mut st = self.sk.state.guard();
        st.remote = None;
        if !st.addr_locked {
            st.local = self.sk.family.any();
        }
        let Some(ident) = st.ident else {
            return;
        };
        if !st.port_locked {
            self.sk.stack.ping.guard().release(ident, self.sk.ino);
            st.ident = None;
            // Closed after the lock is released (closing polls the interface).
            let ext = st.ext.take();
            drop(st);
            drop(ext);
            return;
        }
        let addr = st.local;
        self.sk
            .stack
            .ping
            .guard()
            .update(ident, self.sk.ino, |h| h.addr = addr);
    }
}

impl Drop for PingSocket {
    fn drop(&mut self) {
        let (ident, ext) = {
            let mut st = self.sk.state.guard();
            (st.ident.take(), st.ext.take())
        };
        drop(ext);
        if let Some(ident) = ident {
            self.sk.stack.ping.guard().release(ident, self.sk.ino);
        }
    }
}

impl Socket for PingSocket {
    fn domain(&self) -> i32 {
        self.sk.family.domain()
    }

    fn kind(&self) -> i32 {
        libc::SOCK_DGRAM
    }

    fn bind(&self, _task: &mut Task, raw: &[u8]) -> Result<(), Errno> {
        let addr = self.bind_addr(raw)?;
        let mut st = self.sk.state.guard();
        if st.ident.is_some() {
            return Err(Errno::EINVAL);
        }
        let previous = st.local;
        st.local = addr.ip;
        match self.sk.take_ident(&mut st, addr.port) {
            Ok(_) => {
                st.addr_locked = !addr.ip.is_unspecified();
                st.port_locked = addr.port != 0;
                st.remote = None;
                Ok(())
            }
            Err(e) => {
                st.local = previous;
                Err(if e == Errno::EAGAIN {
                    Errno::EADDRINUSE
                } else {
                    e
                })
            }
        }
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
        self.sk.autobind(&mut st)?;
        // `ip4_datagram_connect`/`ip6_datagram_connect`.
        let dst = super::connect_addr(raw, self.sk.family, false)?;
        let (src, dst_ip) = if dst.ip.is_ipv4() && self.sk.family == Family::V6 {
            // A mapped peer: sends to it are refused (`EINVAL`), as Linux's are.
            (st.local, dst.ip)
        } else {
            match self.sk.stack.route(dst.ip)? {
                Route::Loopback { src, dst } => (src, dst),
                Route::External { src } => (src, dst.ip),
            }
        };
        if dst.ip == IpAddr::V4(Ipv4Addr::BROADCAST) && !st.opts.flag(SOL_SOCKET, SO_BROADCAST) {
            return Err(Errno::EACCES);
        }
        if st.local.is_unspecified() && !src.is_unspecified() {
            st.local = src;
        }
        st.remote = Some(SockAddr {
            ip: dst_ip,
            port: dst.port,
        });
        if let Some(ident) = st.ident {
            let addr = st.local;
            self.sk
                .stack
                .ping
                .guard()
                .update(ident, self.sk.ino, |h| h.addr = addr);
        }
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
        // A request leaves (or is answered) at once: sending never waits.
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
        let st = self.sk.state.guard();
        SockAddr::new(st.local, st.ident.unwrap_or(0)).to_sockaddr(self.sk.family)
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        let remote = self.sk.state.guard().remote.ok_or(Errno::ENOTCONN)?;
        Ok(remote.to_sockaddr(self.sk.family))
    }

    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        let st = self.sk.state.guard();
        match (level, name) {
            (SOL_SOCKET, SO_TYPE) => int(libc::SOCK_DGRAM),
            (SOL_SOCKET, SO_PROTOCOL) => int(match self.sk.family {
                Family::V4 => libc::IPPROTO_ICMP,
                Family::V6 => libc::IPPROTO_ICMPV6,
            }),
            (SOL_SOCKET, SO_DOMAIN) => int(self.sk.family.domain()),
            (SOL_SOCKET, SO_ACCEPTCONN) => int(0),
            (SOL_SOCKET, SO_PEERCRED) => Ok(Ucred::NOBODY.to_bytes().to_vec()),
            (SOL_SOCKET, SO_ERROR) => int(0),
            _ => st.opts.get(level, name),
        }
    }

    fn set_option(&self, task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let mut st = self.sk.state.guard();
        if (level, name) == (SOL_IPV6, IPV6_V6ONLY) && self.sk.family == Family::V6 {
            // Always on for a ping socket; setting it is accepted before a bind.
            if value.len() < 4 || st.ident.is_some() {
                return Err(Errno::EINVAL);
            }
            return Ok(());
        }
        st.opts.set(level, name, value, &task.creds)?;
        if (level, name) == (SOL_SOCKET, SO_REUSEADDR) {
            if let Some(ident) = st.ident {
                let reuse = st.opts.flag(SOL_SOCKET, SO_REUSEADDR);
                self.sk
                    .stack
                    .ping
                    .guard()
                    .update(ident, self.sk.ino, |h| h.reuse = reuse);
            }
        }
        Ok(())
    }

    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let st = self.sk.state.guard();
        (st.opts.send_timeout, st.opts.recv_timeout)
    }

    /// `ping_recvmsg` returns what it copied, `MSG_TRUNC` or not.
    fn trunc_returns_whole(&self) -> bool {
        false
    }
}

impl FileOps for PingSocket {
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
                .map_or(0, |r| r.data.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_range_admits_the_effective_or_a_supplementary_group() {
        assert!(may_ping(PING_GROUP_RANGE, 0, &[]));
        assert!(may_ping(PING_GROUP_RANGE, 65534, &[]));
        // Linux's own default, "1 0", admits nobody.
        assert!(!may_ping((1, 0), 0, &[0, 5]));
        assert!(!may_ping((100, 200), 5, &[7, 300]));
        assert!(may_ping((100, 200), 5, &[7, 150]));
        assert!(may_ping((100, 200), 100, &[]));
        assert!(!may_ping((0, 2_147_483_647), u32::MAX, &[]));
    }

    #[test]
    fn checksums_are_right_for_both_families() {
        // An echo request as iputils ping sends it: checksum over the message alone.
        let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c'];
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap());
        set_checksum(&mut m, a, b);
        assert!(checksum_ok(&m, a, b));
        assert_ne!(&m[2..4], &[0, 0]);
        // ICMPv6 covers the pseudo-header: another source breaks it.
        let mut m6 = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3];
        let (s, d): (IpAddr, IpAddr) = ("::1".parse().unwrap(), "fd00::2".parse().unwrap());
        set_checksum(&mut m6, s, d);
        assert!(checksum_ok(&m6, s, d));
        assert!(!checksum_ok(&m6, "::2".parse().unwrap(), d));
    }

    #[test]
    fn identifiers_conflict_unless_both_reuse_and_automatic_ones_skip_zero() {
        let mut t = Table {
            rover: u16::MAX - 1,
            ..Table::default()
        };
        let h = |ino, reuse| Holder {
            ino,
            family: Family::V4,
            addr: Family::V4.any(),
            reuse,
            owner: Weak::new(),
        };
        assert_eq!(t.bind(0, h(1, false)), Ok(u16::MAX));
        assert_eq!(t.bind(0, h(2, false)), Ok(1));
        assert_eq!(t.bind(1, h(3, true)), Err(Errno::EADDRINUSE));
        assert_eq!(t.bind(7, h(4, true)), Ok(7));
        assert_eq!(t.bind(7, h(5, true)), Ok(7));
        assert_eq!(t.bind(7, h(6, false)), Err(Errno::EADDRINUSE));
        t.release(1, 2);
        assert_eq!(t.bind(1, h(3, false)), Ok(1));
    }
}
