//! Netlink route sockets (`AF_NETLINK`, `NETLINK_ROUTE`), answering what programs ask about
//! the interfaces they see (`net/iface.rs`: the sandbox's `lo` and external interface, or the
//! host's with `--network=host`): dumps of links (`RTM_GETLINK`) and addresses
//! (`RTM_GETADDR`), as glibc's `getifaddrs` and iproute2's `ip addr` read them, and of the
//! IPv4 and IPv6 routes (`RTM_GETROUTE`, for `ip route`); other dumps (neighbours, rules) are empty, and
//! changes are refused (`EPERM`: the interfaces are not the sandbox's to change). Each answer
//! is a datagram of its own on the socket's queue; a dump ends with `NLMSG_DONE`. No events
//! are ever multicast (the interfaces never change).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use moat_abi::{Errno, Stat};

use super::ext::InterfaceConfig;
use super::iface::{self, Iface, IFF_UP};
use super::{Blocking, Incoming, Outgoing, Socket, Ucred, SOL_SOCKET};
use crate::fs::pipe::{POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::process::Guard;
use crate::task::Task;
use crate::wait::WaitQueue;

pub const NETLINK_ROUTE: i32 = 0;
/// `SOL_NETLINK`: the level of the netlink options.
const SOL_NETLINK: i32 = 270;
/// `sizeof(struct sockaddr_nl)`.
const SOCKADDR_NL_LEN: usize = 12;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDR: usize = 16;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_PREF: u16 = 20;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_KERNEL: u8 = 2;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const IFA_BROADCAST: u16 = 4;
/// The first and last route message types (`RTM_BASE`, `RTM_MAX`).
const RTM_BASE: u16 = 16;
const RTM_MAX: u16 = 127;

const IFLA_ADDRESS: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_QDISC: u16 = 6;
const IFLA_STATS: u16 = 7;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKMODE: u16 = 17;
const IFLA_GROUP: u16 = 27;
const IFLA_PROMISCUITY: u16 = 30;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_CARRIER: u16 = 33;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_CACHEINFO: u16 = 6;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u8 = 0x80;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message under construction: header, fixed part, attributes.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16, flags: u16, seq: u32, port: u32) -> Message {
        let mut v = vec![0u8; NLMSG_HDR];
        v[4..6].copy_from_slice(&kind.to_le_bytes());
        v[6..8].copy_from_slice(&flags.to_le_bytes());
        v[8..12].copy_from_slice(&seq.to_le_bytes());
        v[12..16].copy_from_slice(&port.to_le_bytes());
        Message(v)
    }

    fn put(&mut self, bytes: &[u8]) -> &mut Message {
        self.0.extend_from_slice(bytes);
        let n = align4(self.0.len());
        self.0.resize(n, 0);
        self
    }

    /// An attribute (`struct rtattr` and its payload, padded).
    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Message {
        let len = (4 + payload.len()) as u16;
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(&kind.to_le_bytes());
        self.put(payload)
    }

    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

/// `RTM_NEWLINK` for an interface.
fn link(d: &Iface, flags: u16, seq: u32, port: u32) -> Vec<u8> {
    let mut m = Message::new(RTM_NEWLINK, flags, seq, port);
    let mut info = [0u8; 16];
    info[2..4].copy_from_slice(&d.hw_type.to_le_bytes());
    info[4..8].copy_from_slice(&d.index.to_le_bytes());
    info[8..12].copy_from_slice(&d.flags.to_le_bytes());
    let mut name = d.name.as_bytes().to_vec();
    name.push(0);
    // `struct rtnl_link_stats`: 32-bit counters, packets before bytes.
    let mut stats = [0u8; 96];
    let c = d.stats;
    for (i, v) in [c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes]
        .into_iter()
        .enumerate()
    {
        stats[i * 4..i * 4 + 4].copy_from_slice(&(v as u32).to_le_bytes());
    }
    // `IF_OPER_UNKNOWN` for loopback (as Linux's), up or down for the others.
    let operstate = if d.is_loopback() {
        0
    } else if d.flags & IFF_UP != 0 {
        6
    } else {
        2
    };
    let broadcast = if d.is_loopback() { [0; 6] } else { [0xff; 6] };
    m.put(&info)
        .attr(IFLA_IFNAME, &name)
        .attr(IFLA_TXQLEN, &1000u32.to_le_bytes())
        .attr(IFLA_OPERSTATE, &[operstate])
        .attr(IFLA_LINKMODE, &[0])
        .attr(IFLA_MTU, &d.mtu.to_le_bytes())
        .attr(IFLA_GROUP, &0u32.to_le_bytes())
        .attr(IFLA_PROMISCUITY, &0u32.to_le_bytes())
        .attr(IFLA_NUM_TX_QUEUES, &1u32.to_le_bytes())
        .attr(IFLA_NUM_RX_QUEUES, &1u32.to_le_bytes())
        .attr(IFLA_CARRIER, &[u8::from(d.flags & IFF_UP != 0)])
        .attr(IFLA_QDISC, b"noqueue\0")
        .attr(IFLA_ADDRESS, &d.mac)
        .attr(IFLA_BROADCAST, &broadcast)
        .attr(IFLA_STATS, &stats);
    m.done()
}

/// `RTM_NEWADDR` for each of an interface's addresses of `family` (`AF_UNSPEC`: all).
fn addrs(d: &Iface, family: i32, seq: u32, port: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for a in &d.addrs {
        let (fam, bytes) = match a.addr {
            IpAddr::V4(ip) => (libc::AF_INET, ip.octets().to_vec()),
            IpAddr::V6(ip) => (libc::AF_INET6, ip.octets().to_vec()),
        };
        if family != libc::AF_UNSPEC && family != fam {
            continue;
        }
        let mut m = Message::new(RTM_NEWADDR, NLM_F_MULTI, seq, port);
        let mut info = [0u8; 8];
        info[0] = fam as u8;
        info[1] = a.prefix;
        info[2] = IFA_F_PERMANENT;
        info[3] = a.scope;
        info[4..8].copy_from_slice(&d.index.to_le_bytes());
        let mut cache = [0u8; 16];
        cache[..8].copy_from_slice(&[0xff; 8]); // preferred and valid lifetimes: forever
        m.put(&info).attr(IFA_ADDRESS, &bytes);
        if let IpAddr::V4(ip) = a.addr {
            let mut label = d.name.as_bytes().to_vec();
            label.push(0);
            m.attr(IFA_LOCAL, &bytes);
            if !d.is_loopback() {
                let mask = InterfaceConfig::netmask_v4(a.prefix);
                let bcast: [u8; 4] = std::array::from_fn(|i| ip.octets()[i] | !mask[i]);
                m.attr(IFA_BROADCAST, &bcast);
            }
            m.attr(IFA_LABEL, &label);
        }
        m.attr(IFA_FLAGS, &u32::from(IFA_F_PERMANENT).to_le_bytes())
            .attr(IFA_CACHEINFO, &cache);
        out.push(m.done());
    }
    out
}

/// One route of the main table through interface `oif`.
struct Route {
    /// Destination network and prefix length (`None`: the default route).
    dst: Option<(IpAddr, u8)>,
    gateway: Option<IpAddr>,
    /// The preferred source (IPv4 subnet routes carry it).
    source: Option<IpAddr>,
    /// `RTA_PRIORITY`: IPv6 routes carry one (256 for the kernel's, 1024 for the default).
    metric: Option<u32>,
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `RTM_NEWROUTE` for `r`, of `family`.
fn route_message(family: i32, oif: i32, r: &Route, seq: u32, port: u32) -> Vec<u8> {
    let mut m = Message::new(RTM_NEWROUTE, NLM_F_MULTI, seq, port);
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut info = [0u8; 12];
    info[0] = family as u8;
    info[1] = r.dst.map_or(0, |(_, p)| p);
    info[4] = RT_TABLE_MAIN;
    info[5] = if r.gateway.is_some() {
        RTPROT_BOOT
    } else {
        RTPROT_KERNEL
    };
    // IPv4's connected routes are the link's; IPv6's are all universe.
    info[6] = if r.gateway.is_none() && family == libc::AF_INET {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_UNIVERSE
    };
    info[7] = RTN_UNICAST;
    m.put(&info)
        .attr(RTA_TABLE, &u32::from(RT_TABLE_MAIN).to_le_bytes());
    if let Some((net, _)) = r.dst {
        m.attr(RTA_DST, &ip_bytes(net));
    }
    if let Some(metric) = r.metric {
        m.attr(RTA_PRIORITY, &metric.to_le_bytes());
    }
    if let Some(s) = r.source {
        m.attr(RTA_PREFSRC, &ip_bytes(s));
    }
    if let Some(g) = r.gateway {
        m.attr(RTA_GATEWAY, &ip_bytes(g));
    }
    m.attr(RTA_OIF, &oif.to_le_bytes());
    if family == libc::AF_INET6 {
        // `RTA_PREF`: a route's router preference, medium.
        m.attr(RTA_PREF, &[0]);
    }
    m.done()
}

/// The main table's routes through an interface, of `family`: the default route and each
/// address's subnet or prefix; none for loopback, whose routes live in the local table (as
/// Linux 6.x lists them).
fn routes(d: &Iface, family: i32, seq: u32, port: u32) -> Vec<Vec<u8>> {
    let mut list = Vec::new();
    if family == libc::AF_INET && !d.is_loopback() {
        if let Some(gw @ IpAddr::V4(_)) = d.gateway {
            list.push(Route {
                dst: None,
                gateway: Some(gw),
                source: None,
                metric: None,
            });
        }
        for a in &d.addrs {
            if let IpAddr::V4(ip) = a.addr {
                let mask = InterfaceConfig::netmask_v4(a.prefix);
                let net: [u8; 4] = std::array::from_fn(|i| ip.octets()[i] & mask[i]);
                list.push(Route {
                    dst: Some((IpAddr::from(net), a.prefix)),
                    gateway: None,
                    source: Some(a.addr),
                    metric: None,
                });
            }
        }
    }
    if family == libc::AF_INET6 && !d.is_loopback() {
        for a in &d.addrs {
            if let IpAddr::V6(ip) = a.addr {
                let bits = u32::from(a.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                let net = std::net::Ipv6Addr::from(u128::from(ip) & mask);
                list.push(Route {
                    dst: Some((IpAddr::V6(net), a.prefix)),
                    gateway: None,
                    source: None,
                    metric: Some(256),
                });
            }
        }
        if let Some(gw @ IpAddr::V6(_)) = d.gateway6 {
            list.push(Route {
                dst: None,
                gateway: Some(gw),
                source: None,
                metric: Some(1024),
            });
        }
    }
    list.iter()
        .map(|r| route_message(family, d.index, r, seq, port))
        .collect()
}

/// `NLMSG_ERROR` answering `request` (its header) with `-errno` (0: an acknowledgement).
fn error(request: &[u8], errno: i32, port: u32) -> Vec<u8> {
    let seq = u32::from_le_bytes([request[8], request[9], request[10], request[11]]);
    let mut m = Message::new(NLMSG_ERROR, 0, seq, port);
    m.put(&(-errno).to_le_bytes()).put(&request[..NLMSG_HDR]);
    m.done()
}

struct State {
    /// The port id (`nl_pid`): assigned at bind or the first send.
    port: Option<u32>,
    queue: VecDeque<Vec<u8>>,
    rcvbuf: i32,
    sndbuf: i32,
    recv_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
}

/// A netlink route socket.
pub struct NetlinkSocket {
    kind: i32,
    ino: u64,
    queue: WaitQueue,
    state: Mutex<State>,
}

/// Port ids for sockets bound without one: negative numbers, as Linux's
/// `netlink_autobind` picks when the pid is taken.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0xffff_f000);

impl NetlinkSocket {
    pub fn new(kind: i32) -> NetlinkSocket {
        NetlinkSocket {
            kind,
            ino: super::next_ino(),
            queue: WaitQueue::default(),
            state: Mutex::new(State {
                port: None,
                queue: VecDeque::new(),
                rcvbuf: 212_992,
                sndbuf: 212_992,
                recv_timeout: None,
                send_timeout: None,
            }),
        }
    }

    /// The socket's port id, assigned now if it has none. (Linux gives a process's first
    /// socket its pid; a unique id serves as well, as programs read it back with
    /// `getsockname`.)
    fn port(&self) -> u32 {
        let mut st = self.state.guard();
        *st.port
            .get_or_insert_with(|| NEXT_PORT.fetch_sub(1, Ordering::Relaxed))
    }

    /// Answer the requests in `data`: each message queues its reply.
    fn serve(&self, data: &[u8], port: u32) {
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut at = 0;
        while at + NLMSG_HDR <= data.len() {
            let h = &data[at..];
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len < NLMSG_HDR || len > h.len() {
                break;
            }
            let kind = u16::from_le_bytes([h[4], h[5]]);
            let flags = u16::from_le_bytes([h[6], h[7]]);
            let seq = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
            let body = &h[NLMSG_HDR..len];
            if flags & NLM_F_REQUEST != 0 {
                let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
                let first = replies.len();
                match kind {
                    RTM_GETLINK if dump => {
                        for d in iface::all() {
                            replies.push(link(&d, NLM_F_MULTI, seq, port));
                        }
                    }
                    RTM_GETLINK => {
                        // One interface, by index or name.
                        let index = body
                            .get(4..8)
                            .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                        let found = iface::all().into_iter().find(|d| {
                            d.index == index || (index == 0 && names(body, d.name.as_bytes()))
                        });
                        match found {
                            Some(d) => replies.push(link(&d, 0, seq, port)),
                            None => replies.push(error(h, Errno::ENODEV.0, port)),
                        }
                    }
                    RTM_GETADDR if dump => {
                        let family = body.first().map_or(0, |&f| i32::from(f));
                        for d in iface::all() {
                            replies.extend(addrs(&d, family, seq, port));
                        }
                    }
                    RTM_GETROUTE if dump => {
                        let family = body.first().map_or(0, |&f| i32::from(f));
                        for fam in [libc::AF_INET, libc::AF_INET6] {
                            if family == libc::AF_UNSPEC || family == fam {
                                for d in iface::all() {
                                    replies.extend(routes(&d, fam, seq, port));
                                }
                            }
                        }
                    }
                    // Other dumps of route objects are empty: no routes beyond `lo`'s own,
                    // no neighbours, no rules worth listing.
                    k if dump && (RTM_BASE..=RTM_MAX).contains(&k) && k % 4 == 2 => {}
                    k if (RTM_BASE..=RTM_MAX).contains(&k) && k % 4 != 2 => {
                        replies.push(error(h, Errno::EPERM.0, port));
                    }
                    _ => replies.push(error(h, Errno::EOPNOTSUPP.0, port)),
                }
                if dump {
                    let mut done = Message::new(NLMSG_DONE, NLM_F_MULTI, seq, port);
                    done.put(&0i32.to_le_bytes());
                    replies.push(done.done());
                } else if flags & NLM_F_ACK != 0
                    && replies[first..]
                        .iter()
                        .all(|r| u16::from_le_bytes([r[4], r[5]]) != NLMSG_ERROR)
                {
                    replies.push(error(h, 0, port));
                }
            }
            at += align4(len);
        }
        if replies.is_empty() {
            return;
        }
        self.state.guard().queue.extend(replies);
        self.queue.notify();
    }
}

/// Whether an `RTM_GETLINK` request names `wanted` with `IFLA_IFNAME`.
fn names(body: &[u8], wanted: &[u8]) -> bool {
    let mut at = 16; // after struct ifinfomsg
    while at + 4 <= body.len() {
        let len = u16::from_le_bytes([body[at], body[at + 1]]) as usize;
        let kind = u16::from_le_bytes([body[at + 2], body[at + 3]]);
        if len < 4 || at + len > body.len() {
            return false;
        }
        if kind == IFLA_IFNAME {
            let name = &body[at + 4..at + len];
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            return &name[..end] == wanted;
        }
        at += align4(len);
    }
    false
}

/// The `sockaddr_nl` of `port` (the kernel's is port 0).
fn sockaddr_nl(port: u32) -> Vec<u8> {
    let mut v = vec![0u8; SOCKADDR_NL_LEN];
    v[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_le_bytes());
    v[4..8].copy_from_slice(&port.to_le_bytes());
    v
}

impl Socket for NetlinkSocket {
    fn domain(&self) -> i32 {
        libc::AF_NETLINK
    }

    fn kind(&self) -> i32 {
        self.kind
    }

    fn bind(&self, _task: &mut Task, addr: &[u8]) -> Result<(), Errno> {
        if addr.len() < SOCKADDR_NL_LEN {
            return Err(Errno::EINVAL);
        }
        if super::inet::sa_family(addr)? != libc::AF_NETLINK as u16 {
            return Err(Errno::EINVAL);
        }
        let asked = u32::from_le_bytes([addr[4], addr[5], addr[6], addr[7]]);
        let mut st = self.state.guard();
        match st.port {
            Some(p) if asked != 0 && asked != p => Err(Errno::EINVAL),
            Some(_) => Ok(()),
            None if asked != 0 => {
                st.port = Some(asked);
                Ok(())
            }
            None => {
                drop(st);
                self.port();
                Ok(())
            }
        }
    }

    fn listen(&self, _task: &mut Task, _backlog: i32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn connect(&self, _task: &mut Task, addr: &[u8], _nonblocking: bool) -> Result<(), Errno> {
        // Only the kernel (port 0) answers.
        if addr.len() < SOCKADDR_NL_LEN {
            return Err(Errno::EINVAL);
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
        if let Some(to) = to {
            if to.len() < SOCKADDR_NL_LEN {
                return Err(Errno::EINVAL);
            }
            // To another socket (a user port or a multicast group): nobody listens.
            if to[4..12].iter().any(|&b| b != 0) {
                return Err(Errno::ECONNREFUSED);
            }
        }
        let port = self.port();
        self.serve(&msg.data, port);
        Ok(msg.data.len())
    }

    fn receive(
        &self,
        task: &mut Task,
        len: usize,
        peek: bool,
        _wait_all: bool,
        how: Blocking,
    ) -> Result<Incoming, Errno> {
        let deadline = super::deadline(how.timeout);
        loop {
            let generation = self.queue.generation();
            {
                let mut st = self.state.guard();
                let next = if peek {
                    st.queue.front().cloned()
                } else {
                    st.queue.pop_front()
                };
                if let Some(mut data) = next {
                    let whole = data.len();
                    data.truncate(len);
                    return Ok(Incoming {
                        data,
                        whole,
                        from: Some(sockaddr_nl(0)),
                        ..Incoming::default()
                    });
                }
            }
            if how.nonblocking {
                return Err(Errno::EAGAIN);
            }
            super::wait_for(task, &self.queue, generation, deadline)?;
        }
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        if !(libc::SHUT_RD..=libc::SHUT_RDWR).contains(&how) {
            return Err(Errno::EINVAL);
        }
        Err(Errno::EOPNOTSUPP)
    }

    fn local_name(&self) -> Vec<u8> {
        sockaddr_nl(self.state.guard().port.unwrap_or(0))
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        Ok(sockaddr_nl(0))
    }

    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        let st = self.state.guard();
        match (level, name) {
            (SOL_SOCKET, libc::SO_TYPE) => int(self.kind),
            (SOL_SOCKET, libc::SO_DOMAIN) => int(libc::AF_NETLINK),
            (SOL_SOCKET, libc::SO_PROTOCOL) => int(NETLINK_ROUTE),
            (SOL_SOCKET, libc::SO_SNDBUF) => int(st.sndbuf),
            (SOL_SOCKET, libc::SO_RCVBUF) => int(st.rcvbuf),
            (SOL_SOCKET, libc::SO_ERROR | libc::SO_ACCEPTCONN) => int(0),
            (SOL_SOCKET, libc::SO_PEERCRED) => Ok(Ucred::NOBODY.to_bytes().to_vec()),
            (SOL_NETLINK, 1..=12) => int(0),
            (SOL_SOCKET | SOL_NETLINK, _) => Err(Errno::ENOPROTOOPT),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    fn set_option(&self, _task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let int = || -> Result<i32, Errno> {
            value
                .get(..4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(Errno::EINVAL)
        };
        let timeval = || -> Result<Option<Duration>, Errno> {
            let b = value.get(..16).ok_or(Errno::EINVAL)?;
            let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EINVAL)?);
            let usec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EINVAL)?);
            if !(0..1_000_000).contains(&usec) {
                return Err(Errno::EDOM);
            }
            Ok((sec > 0 || usec > 0).then(|| {
                Duration::from_secs(sec.max(0) as u64) + Duration::from_micros(usec as u64)
            }))
        };
        let mut st = self.state.guard();
        match (level, name) {
            (SOL_SOCKET, libc::SO_SNDBUF | libc::SO_SNDBUFFORCE) => {
                st.sndbuf = (int()?.clamp(2304, 212_992)) * 2;
            }
            (SOL_SOCKET, libc::SO_RCVBUF | libc::SO_RCVBUFFORCE) => {
                st.rcvbuf = (int()?.clamp(2304, 212_992)) * 2;
            }
            (SOL_SOCKET, libc::SO_RCVTIMEO) => st.recv_timeout = timeval()?,
            (SOL_SOCKET, libc::SO_SNDTIMEO) => st.send_timeout = timeval()?,
            (SOL_SOCKET, libc::SO_PASSCRED | libc::SO_TIMESTAMP | libc::SO_ATTACH_FILTER) => {}
            // Memberships, extended acks, strict checking: accepted; no events ever come.
            (SOL_NETLINK, 1..=12) => {
                int()?;
            }
            (SOL_SOCKET | SOL_NETLINK, _) => return Err(Errno::ENOPROTOOPT),
            _ => return Err(Errno::ENOPROTOOPT),
        }
        Ok(())
    }

    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let st = self.state.guard();
        (st.send_timeout, st.recv_timeout)
    }
}

impl FileOps for NetlinkSocket {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let data = self.state.guard().queue.pop_front().ok_or(Errno::EAGAIN)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let port = self.port();
        self.serve(buf, port);
        Ok(buf.len())
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        super::iface::ioctl(mm, request, arg, false).unwrap_or(Err(Errno::ENOTTY))
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(crate::net::socket_stat(self.ino, 0))
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let mut r = POLLOUT | POLLWRNORM;
        if !self.state.guard().queue.is_empty() {
            r |= POLLIN | POLLRDNORM;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.queue)
    }

    fn as_socket(&self) -> Option<&dyn Socket> {
        Some(self)
    }
}
