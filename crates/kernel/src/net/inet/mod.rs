//! TCP and UDP over IPv4 and IPv6, inside the sandbox.
//!
//! The sandbox's network is its own: a [`Stack`] per sandbox holds the port tables of TCP
//! and UDP (`ports.rs`), and its only interface is `lo` (`net/iface.rs`): 127.0.0.0/8 and
//! ::1. No host socket is ever made. Traffic between two sockets of the sandbox takes the
//! loopback path, which is in-kernel and endpoint to endpoint, with no packets: a TCP
//! connection is two byte queues between two sockets (`tcp.rs`), a UDP datagram goes
//! straight onto the receiving socket's queue (`udp.rs`). Nothing is checksummed, segmented
//! or retransmitted, since nothing can be lost.
//!
//! Every destination goes through [`route`] first. Today it knows only `lo`, so any other
//! address is `ENETUNREACH`, as on a Linux host without a route. An external interface (a
//! veth or tap device behind a TCP/IP stack such as smoltcp) would add a route here and a
//! second kind of connection behind the same socket types: the sockets, options, port
//! tables and system calls would not change.

pub mod icmp;
pub mod options;
pub mod ports;
pub mod tcp;
pub mod udp;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use moat_abi::Errno;

use crate::net::ext::External;

/// An IP socket's address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn from_domain(domain: i32) -> Option<Family> {
        match domain {
            libc::AF_INET => Some(Family::V4),
            libc::AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    pub fn domain(self) -> i32 {
        match self {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        }
    }

    /// The shortest address `bind` and `connect` take: `sizeof(struct sockaddr_in)`, or
    /// `SIN6_LEN_RFC2133` (a `sockaddr_in6` without its scope).
    fn min_len(self) -> usize {
        match self {
            Family::V4 => 16,
            Family::V6 => 24,
        }
    }

    /// The wildcard address.
    pub fn any(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// An address and port. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is kept as the IPv4
/// address: a dual-stack IPv6 socket and an IPv4 socket talk IPv4 to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockAddr {
    pub ip: IpAddr,
    pub port: u16,
}

/// Keep IPv4-mapped addresses as IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl SockAddr {
    pub fn new(ip: IpAddr, port: u16) -> SockAddr {
        SockAddr {
            ip: normalize(ip),
            port,
        }
    }

    /// The `sockaddr_in` or `sockaddr_in6` a socket of `family` reports (an IPv4 address in
    /// an IPv6 socket's report is IPv4-mapped).
    pub fn to_sockaddr(self, family: Family) -> Vec<u8> {
        let mut v = (family.domain() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(&self.port.to_be_bytes());
        match family {
            Family::V4 => {
                let ip = match self.ip {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                };
                v.extend_from_slice(&ip.octets());
                v.extend_from_slice(&[0; 8]);
            }
            Family::V6 => {
                let ip = match self.ip {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                v.extend_from_slice(&[0; 4]);
                v.extend_from_slice(&ip.octets());
                v.extend_from_slice(&[0; 4]);
            }
        }
        v
    }
}

/// An address argument read by the layout of the socket's family.
struct RawAddr {
    family: u16,
    addr: SockAddr,
    /// The address as given was IPv4-mapped (IPv6 sockets).
    mapped: bool,
    scope_id: u32,
}

/// The `sa_family` of an address argument (`EINVAL` if it has none).
pub fn sa_family(raw: &[u8]) -> Result<u16, Errno> {
    match raw {
        [a, b, ..] => Ok(u16::from_le_bytes([*a, *b])),
        _ => Err(Errno::EINVAL),
    }
}

/// Read `raw` as a `sockaddr_in` or `sockaddr_in6` by the socket's family, whatever its
/// `sa_family` says (`EINVAL` if too short).
fn read_raw(raw: &[u8], family: Family) -> Result<RawAddr, Errno> {
    if raw.len() < family.min_len() {
        return Err(Errno::EINVAL);
    }
    let fam = sa_family(raw)?;
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    Ok(match family {
        Family::V4 => RawAddr {
            family: fam,
            addr: SockAddr::new(
                IpAddr::V4(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7])),
                port,
            ),
            mapped: false,
            scope_id: 0,
        },
        Family::V6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&raw[8..24]);
            let ip = Ipv6Addr::from(octets);
            let scope_id = raw
                .get(24..28)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            RawAddr {
                family: fam,
                addr: SockAddr::new(IpAddr::V6(ip), port),
                mapped: ip.to_ipv4_mapped().is_some(),
                scope_id,
            }
        }
    })
}

/// Whether `ip` is an address of the sandbox an IPv4 socket may bind: the wildcard, the
/// loopback network, the external interface's, or a broadcast or multicast address (which
/// Linux lets sockets bind).
fn bindable_v4(ip: Ipv4Addr, stack: &Stack) -> bool {
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || stack.is_local(IpAddr::V4(ip))
}

/// Whether an IPv6 address needs a scope (an interface) to mean anything: link-local
/// unicast, and multicast of interface- or link-local scope.
fn needs_scope(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    (s[0] & 0xffc0) == 0xfe80 || (ip.is_multicast() && matches!(s[0] & 0x000f, 1 | 2))
}

/// The address `bind` asks a socket of `family` to take, checked as Linux's
/// `inet_bind`/`inet6_bind` do: length (`EINVAL`), family (`EAFNOSUPPORT`; an IPv4 socket
/// also takes `AF_UNSPEC` with the wildcard), then whether the address is the sandbox's
/// (`EADDRNOTAVAIL`; a mapped address on an `IPV6_V6ONLY` socket, or a link-local one
/// without a scope, is `EINVAL`).
pub fn bind_addr(
    raw: &[u8],
    family: Family,
    v6only: bool,
    stack: &Stack,
) -> Result<SockAddr, Errno> {
    let r = read_raw(raw, family)?;
    match family {
        Family::V4 => {
            let IpAddr::V4(ip) = r.addr.ip else {
                return Err(Errno::EINVAL);
            };
            if r.family != libc::AF_INET as u16
                && !(r.family == libc::AF_UNSPEC as u16 && ip.is_unspecified())
            {
                return Err(Errno::EAFNOSUPPORT);
            }
            if !bindable_v4(ip, stack) {
                return Err(Errno::EADDRNOTAVAIL);
            }
        }
        Family::V6 => {
            if r.family != libc::AF_INET6 as u16 {
                return Err(Errno::EAFNOSUPPORT);
            }
            match r.addr.ip {
                IpAddr::V4(ip) => {
                    if v6only {
                        return Err(Errno::EINVAL);
                    }
                    if !bindable_v4(ip, stack) {
                        return Err(Errno::EADDRNOTAVAIL);
                    }
                }
                IpAddr::V6(ip) => {
                    if needs_scope(ip) {
                        if r.scope_id == 0 {
                            return Err(Errno::EINVAL);
                        }
                        if r.scope_id != crate::net::iface::LO_INDEX as u32 {
                            return Err(Errno::ENODEV);
                        }
                        if !ip.is_multicast() {
                            return Err(Errno::EADDRNOTAVAIL);
                        }
                    } else if !(ip.is_unspecified()
                        || ip.is_loopback()
                        || ip.is_multicast()
                        || stack.is_local(IpAddr::V6(ip)))
                    {
                        return Err(Errno::EADDRNOTAVAIL);
                    }
                }
            }
        }
    }
    Ok(r.addr)
}

/// The destination a connection-oriented `connect` names: length (`EINVAL`) and family
/// (`EAFNOSUPPORT`; `AF_UNSPEC`, a disconnect, is the caller's). A mapped address on an
/// `IPV6_V6ONLY` socket cannot be reached (`ENETUNREACH`).
pub fn connect_addr(raw: &[u8], family: Family, v6only: bool) -> Result<SockAddr, Errno> {
    let r = read_raw(raw, family)?;
    if r.family != family.domain() as u16 {
        return Err(Errno::EAFNOSUPPORT);
    }
    if r.mapped && v6only {
        return Err(Errno::ENETUNREACH);
    }
    Ok(r.addr)
}

/// A destination address as a UDP `sendto` names it: an IPv4 socket takes `AF_INET` (or
/// `AF_UNSPEC`, read as IPv4); an IPv6 socket takes `AF_INET6`, or `AF_INET` (sent as IPv4
/// unless it is `IPV6_V6ONLY`), and `AF_UNSPEC` means no address (`Ok(None)`).
pub fn datagram_addr(raw: &[u8], family: Family, v6only: bool) -> Result<Option<SockAddr>, Errno> {
    let fam = sa_family(raw)?;
    match family {
        Family::V4 => {
            if raw.len() < Family::V4.min_len() {
                return Err(Errno::EINVAL);
            }
            if fam != libc::AF_INET as u16 && fam != libc::AF_UNSPEC as u16 {
                return Err(Errno::EAFNOSUPPORT);
            }
            Ok(Some(read_raw(raw, Family::V4)?.addr))
        }
        Family::V6 => match i32::from(fam) {
            libc::AF_INET6 => {
                let r = read_raw(raw, Family::V6)?;
                if r.mapped && v6only {
                    return Err(Errno::ENETUNREACH);
                }
                Ok(Some(r.addr))
            }
            libc::AF_INET => {
                if v6only {
                    return Err(Errno::ENETUNREACH);
                }
                if raw.len() < Family::V4.min_len() {
                    return Err(Errno::EINVAL);
                }
                Ok(Some(read_raw(raw, Family::V4)?.addr))
            }
            libc::AF_UNSPEC => Ok(None),
            _ => Err(Errno::EINVAL),
        },
    }
}

/// How a packet to a destination leaves the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through `lo`, to a socket of this sandbox: `src` is the source address the
    /// destination sees when the socket is not bound to one, `dst` the destination (the
    /// wildcard, as on Linux, means this host).
    Loopback { src: IpAddr, dst: IpAddr },
    /// Out of the external interface (`net/ext`), from its address `src`.
    External { src: IpAddr },
}

/// Route a packet to `dst` through `lo`: a destination beyond it is `ENETUNREACH` here
/// ([`Stack::route`] knows the external interface too).
pub fn route(dst: IpAddr) -> Result<Route, Errno> {
    match dst {
        IpAddr::V4(a) if a.is_unspecified() || a.is_loopback() => Ok(Route::Loopback {
            src: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dst: if a.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                dst
            },
        }),
        IpAddr::V6(a) if a.is_unspecified() || a.is_loopback() => Ok(Route::Loopback {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
        }),
        _ => Err(Errno::ENETUNREACH),
    }
}

/// Whether an unprivileged socket may not bind `port` (`net.ipv4.ip_unprivileged_port_start`
/// is 1024 by default).
pub fn port_needs_privilege(port: u16) -> bool {
    port != 0 && port < 1024
}

/// The network of one sandbox: its TCP and UDP ports, and its external interface if it
/// has one (`--network=sandbox` with an interface to take).
pub struct Stack {
    pub(crate) tcp: Mutex<ports::PortTable<tcp::Tcp>>,
    pub(crate) udp: Mutex<ports::PortTable<udp::Udp>>,
    /// The echo identifiers of the ping sockets.
    pub(crate) ping: Mutex<icmp::Table>,
    /// `net.ipv4.ping_group_range`: the groups that may make ping sockets.
    pub ping_group_range: (u32, u32),
    pub ext: Option<Arc<External>>,
}

impl Default for Stack {
    fn default() -> Self {
        Stack::new(None)
    }
}

impl Stack {
    pub fn new(ext: Option<Arc<External>>) -> Stack {
        Stack {
            tcp: Mutex::new(ports::PortTable::new(ports::Proto::Tcp)),
            udp: Mutex::new(ports::PortTable::new(ports::Proto::Udp)),
            ping: Mutex::new(icmp::Table::default()),
            ping_group_range: icmp::PING_GROUP_RANGE,
            ext,
        }
    }

    /// Whether `ip` is the external interface's address.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.ext.as_ref().is_some_and(|e| e.config.is_local(ip))
    }

    /// Route a packet to `dst`: loopback (which the sandbox's own external address takes
    /// too, as Linux routes local addresses through `lo`), the external interface's subnet
    /// or its gateway, or `ENETUNREACH`.
    pub fn route(&self, dst: IpAddr) -> Result<Route, Errno> {
        if let Ok(r) = route(dst) {
            return Ok(r);
        }
        if let Some(ext) = &self.ext {
            if ext.config.is_local(dst) {
                return Ok(Route::Loopback { src: dst, dst });
            }
            if let Some(src) = ext.config.source_for(dst) {
                return Ok(Route::External { src });
            }
        }
        Err(Errno::ENETUNREACH)
    }

    /// Whether a socket bound to `ip` (the wildcard, or an address) also takes traffic of
    /// the external interface: the address to listen on there (`None`: every one).
    ///
    /// smoltcp's wildcard takes both families: a wildcard of one family on an interface with
    /// both becomes that family's (first) address.
    pub fn external_binding(&self, ip: IpAddr, dual: bool) -> Option<Option<IpAddr>> {
        let ext = self.ext.as_ref()?;
        let first = |v4: bool| {
            ext.config
                .addrs
                .iter()
                .find(|(a, _)| a.is_ipv4() == v4)
                .map(|(a, _)| *a)
        };
        let (v4, v6) = (first(true), first(false));
        match ip {
            IpAddr::V4(a) if a.is_unspecified() => match (v4, v6) {
                (Some(_), None) => Some(None),
                (Some(a), Some(_)) => Some(Some(a)),
                (None, _) => None,
            },
            IpAddr::V6(a) if a.is_unspecified() => match (v4, v6, dual) {
                (_, _, true) | (None, Some(_), false) => Some(None),
                (Some(_), Some(a), false) => Some(Some(a)),
                (_, None, false) => None,
            },
            _ if ext.config.is_local(ip) => Some(Some(ip)),
            _ => None,
        }
    }
}

/// One line of `/proc/net/{tcp,udp}{,6}`.
pub struct ProcLine {
    pub local: SockAddr,
    pub remote: SockAddr,
    pub state: u8,
    pub tx_queue: usize,
    pub rx_queue: usize,
    pub uid: u32,
    pub ino: u64,
    pub drops: u64,
    pub time_wait: bool,
}

/// An address in `/proc/net` form: the 32-bit words as the host reads them, in hex.
fn proc_addr(ip: IpAddr, family: Family) -> String {
    match family {
        Family::V4 => {
            let octets = match ip {
                IpAddr::V4(a) => a.octets(),
                IpAddr::V6(a) => a.to_ipv4_mapped().map_or([0; 4], |a| a.octets()),
            };
            format!("{:08X}", u32::from_le_bytes(octets))
        }
        Family::V6 => {
            let v6 = match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            v6.octets().chunks_exact(4).fold(String::new(), |mut s, w| {
                let _ = write!(s, "{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                s
            })
        }
    }
}

impl Stack {
    /// `/proc/net/tcp` (IPv4 sockets) or `/proc/net/tcp6`, in Linux's layout.
    pub fn proc_tcp(&self, family: Family) -> String {
        let mut lines = tcp::proc_lines(self, family);
        // With --network=host, the sandbox's host sockets.
        lines.extend(crate::net::host::proc_lines(libc::SOCK_STREAM, family));
        let mut s = String::new();
        match family {
            Family::V4 => {
                let _ = writeln!(
                    s,
                    "{:<149}",
                    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
                );
            }
            Family::V6 => s.push_str("  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"),
        }
        for (i, l) in lines.iter().enumerate() {
            let mut line = format!(
                "{i:4}: {}:{:04X} {}:{:04X} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5} {:8} {}",
                proc_addr(l.local.ip, family),
                l.local.port,
                proc_addr(l.remote.ip, family),
                l.remote.port,
                l.state,
                l.tx_queue,
                l.rx_queue,
                l.uid,
                0,
                l.ino
            );
            if !l.time_wait {
                line.push_str(" 1 0000000000000000 20 4 30 10 -1");
            }
            match family {
                Family::V4 => {
                    let _ = writeln!(s, "{line:<149}");
                }
                Family::V6 => {
                    let _ = writeln!(s, "{line}");
                }
            }
        }
        s
    }

    /// `/proc/net/udp` or `/proc/net/udp6`, in Linux's layout.
    pub fn proc_udp(&self, family: Family) -> String {
        let mut lines = udp::proc_lines(self, family);
        lines.extend(crate::net::host::proc_lines(libc::SOCK_DGRAM, family));
        proc_datagram(&lines, family, "   sl")
    }

    /// `/proc/net/icmp` or `/proc/net/icmp6`: the ping sockets holding an identifier, in
    /// UDP's layout (the identifier is the local port).
    pub fn proc_icmp(&self, family: Family) -> String {
        proc_datagram(&icmp::proc_lines(self, family), family, "  sl")
    }
}

/// The lines of a datagram protocol's `/proc/net` file; `sl` is how the IPv4 header begins
/// (UDP's and ICMP's differ by a space).
fn proc_datagram(lines: &[ProcLine], family: Family, sl: &str) -> String {
    let mut s = String::new();
    match family {
            Family::V4 => {
                let _ = writeln!(
                    s,
                    "{:<127}",
                    format!("{sl}  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops")
                );
            }
            Family::V6 => s.push_str("  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"),
        }
    for (i, l) in lines.iter().enumerate() {
        let line = format!(
                "{i:5}: {}:{:04X} {}:{:04X} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5} {:8} {} 2 0000000000000000 {}",
                proc_addr(l.local.ip, family),
                l.local.port,
                proc_addr(l.remote.ip, family),
                l.remote.port,
                l.state,
                l.tx_queue,
                l.rx_queue,
                l.uid,
                0,
                l.ino,
                l.drops
            );
        match family {
            Family::V4 => {
                let _ = writeln!(s, "{line:<127}");
            }
            Family::V6 => {
                let _ = writeln!(s, "{line}");
            }
        }
    }
    s
}

/// `FIONREAD`/`TIOCOUTQ` of a datagram socket (UDP, ICMP echo): the size of the next
/// datagram waiting (0 if none), and 0 bytes unsent (a datagram leaves at once). Other
/// requests are the interface ones any socket answers, or `ENOTTY`.
pub(crate) fn datagram_ioctl(
    mm: &mut crate::mm::MemoryManager,
    request: u32,
    arg: u64,
    next_datagram: impl FnOnce() -> usize,
) -> Result<u64, Errno> {
    const FIONREAD: u32 = 0x541b;
    const TIOCOUTQ: u32 = 0x5411;
    if let Some(r) = crate::net::iface::ioctl(mm, request, arg, true) {
        return r;
    }
    let n = match request {
        FIONREAD => next_datagram(),
        TIOCOUTQ => 0,
        _ => return Err(Errno::ENOTTY),
    };
    mm.write_obj(arg, &(n.min(i32::MAX as usize) as i32))?;
    Ok(0)
}

/// The Linux TCP states, as `/proc/net/tcp` and `TCP_INFO` number them.
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LISTEN: u8 = 10;
}

/// Bytes of a `/proc/net` render, for procfs.
pub fn render(stack: &Arc<Stack>, file: &str) -> Vec<u8> {
    match file {
        "tcp" => stack.proc_tcp(Family::V4),
        "tcp6" => stack.proc_tcp(Family::V6),
        "udp" => stack.proc_udp(Family::V4),
        "udp6" => stack.proc_udp(Family::V6),
        "icmp" => stack.proc_icmp(Family::V4),
        "icmp6" => stack.proc_icmp(Family::V6),
        _ => String::new(),
    }
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_ipv4_inside_and_mapped_outside() {
        let a = SockAddr::new("::ffff:127.0.0.1".parse().unwrap(), 80);
        assert_eq!(a.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let v6 = a.to_sockaddr(Family::V6);
        assert_eq!(v6.len(), 28);
        assert_eq!(&v6[18..24], &[0xff, 0xff, 127, 0, 0, 1]);
        assert_eq!(a.to_sockaddr(Family::V4).len(), 16);
    }

    #[test]
    fn bind_checks_in_linux_s_order() {
        let mut raw = SockAddr::new("127.0.0.1".parse().unwrap(), 0).to_sockaddr(Family::V4);
        let stack = Stack::default();
        assert!(bind_addr(&raw, Family::V4, false, &stack).is_ok());
        assert_eq!(
            bind_addr(&raw[..15], Family::V4, false, &stack),
            Err(Errno::EINVAL)
        );
        raw[0] = libc::AF_INET6 as u8;
        assert_eq!(
            bind_addr(&raw, Family::V4, false, &stack),
            Err(Errno::EAFNOSUPPORT)
        );
        let other = SockAddr::new("10.1.1.1".parse().unwrap(), 0).to_sockaddr(Family::V4);
        assert_eq!(
            bind_addr(&other, Family::V4, false, &stack),
            Err(Errno::EADDRNOTAVAIL)
        );
        let mapped = SockAddr::new("127.0.0.1".parse().unwrap(), 0).to_sockaddr(Family::V6);
        assert_eq!(
            bind_addr(&mapped, Family::V6, true, &stack),
            Err(Errno::EINVAL)
        );
        let ll = SockAddr::new("fe80::1".parse().unwrap(), 0).to_sockaddr(Family::V6);
        assert_eq!(
            bind_addr(&ll, Family::V6, false, &stack),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn only_loopback_is_routed() {
        assert!(route("127.0.0.9".parse().unwrap()).is_ok());
        assert_eq!(
            route("0.0.0.0".parse().unwrap()),
            Ok(Route::Loopback {
                src: "127.0.0.1".parse().unwrap(),
                dst: "127.0.0.1".parse().unwrap()
            })
        );
        assert_eq!(route("192.0.2.1".parse().unwrap()), Err(Errno::ENETUNREACH));
        assert_eq!(route("fd00::1".parse().unwrap()), Err(Errno::ENETUNREACH));
    }
}
