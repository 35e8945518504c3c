//! The external interface of `--network=sandbox`, as gVisor's runsc takes it: in the network
//! namespace the sandbox is started in, the front finds the first Ethernet interface with an
//! IPv4 address, opens a packet socket bound to it for the kernel (which runs in an empty
//! network namespace of its own and only reads and writes frames on that socket), and takes
//! the interface's IPv4 and global IPv6 addresses away from the host's stack, so that the
//! host neither answers the sandbox's packets (with resets) nor its ARP and neighbour
//! requests: the sandbox's own stack owns them now. `moat do` gives them back when the sandbox
//! ends ([`GiveBack`]), so the namespace is as it found it; a container's namespace ends with
//! the container.
//!
//! Never in the host's initial network namespace: taking the host's addresses would cut the
//! machine off. Linux gives that namespace a fixed inode number; the namespace of pid 1 (of
//! this pid namespace, so a container's init in a container) stands for it too, so that a
//! container's own namespace is never taken from under it either.
//!
//! Interfaces, addresses and routes are read over rtnetlink (not `/sys`, which shows the
//! namespace it was mounted in rather than the caller's): a dump request and its replies are a
//! few fixed-layout headers, written here rather than pulling in an rtnetlink crate and its
//! async runtime.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use moat_kernel::net::iface::{Iface, IfaceAddr, IfaceStats};
use moat_kernel::InterfaceConfig;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// The interface a sandbox took: its configuration, the packet socket on it, and what gives
/// the host's stack its addresses back.
#[derive(Debug)]
pub struct TakenInterface {
    pub config: InterfaceConfig,
    pub fd: OwnedFd,
    pub give_back: GiveBack,
}

/// The addresses and default routes taken from the host's stack, as the rtnetlink messages
/// that described them: sent back as creations, they restore the interface.
#[derive(Debug)]
pub struct GiveBack {
    addrs: Vec<Vec<u8>>,
    routes: Vec<Vec<u8>>,
}

impl GiveBack {
    /// Give the host's stack the interface's addresses and default routes back (in the
    /// caller's network namespace, the one they were taken in). Each is tried; the first
    /// failure is returned.
    pub fn apply(self) -> io::Result<()> {
        let rtnl = Rtnl::open()?;
        let mut result = Ok(());
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        let sends = self
            .addrs
            .iter()
            .map(|m| (RTM_NEWADDR, m))
            .chain(self.routes.iter().map(|m| (RTM_NEWROUTE, m)));
        for (kind, message) in sends {
            let sent = rtnl
                .send(kind, flags, message)
                .and_then(|()| rtnl.replies(false));
            if let Err(e) = sent {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}

/// The packet socket's buffers: deep enough for a burst of a bulk transfer.
const PACKET_BUFFER: i32 = 4 << 20;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const ARPHRD_ETHER: u16 = 1;
/// `IFF_UP`.
const IFF_UP: u32 = 0x1;

/// The inode number of the initial network namespace (`PROC_NET_INIT_INO`), fixed since
/// Linux 6.x; older kernels number it like any other.
const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// Whether this process is in the host's initial network namespace (see the module's doc):
/// its namespace has the initial one's fixed number, or is pid 1's. When pid 1's cannot be
/// read (some hosts refuse even root) only the fixed number can tell; a namespace that
/// cannot be read at all counts as the initial one.
pub fn in_initial_netns() -> bool {
    // The calling thread's: `take_interface_of` enters a namespace on a thread of its own.
    let Ok(ours) = std::fs::metadata("/proc/thread-self/ns/net") else {
        return true;
    };
    if ours.ino() == PROC_NET_INIT_INO {
        return true;
    }
    match std::fs::metadata("/proc/1/ns/net") {
        Ok(init) => ours.ino() == init.ino() && ours.dev() == init.dev(),
        Err(_) => false,
    }
}

/// One rtnetlink message: its type and its body (after the 16-byte header).
pub(crate) struct Message {
    pub(crate) kind: u16,
    pub(crate) body: Vec<u8>,
}

/// An rtnetlink socket of the caller's network namespace.
pub(crate) struct Rtnl(OwnedFd);

impl Rtnl {
    pub(crate) fn open() -> io::Result<Rtnl> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )?;
        Ok(Rtnl(fd))
    }

    pub(crate) fn send(&self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
        m.extend_from_slice(&kind.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(body);
        rustix::net::sendto(
            self.0.as_fd(),
            &m,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        Ok(())
    }

    /// The replies to a request, up to `NLMSG_DONE` (a dump) or the acknowledgement.
    pub(crate) fn replies(&self, dump: bool) -> io::Result<Vec<Message>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let (n, _) = rustix::net::recv(self.0.as_fd(), &mut buf[..], RecvFlags::empty())?;
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let kind = u16::from_le_bytes([rest[4], rest[5]]);
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("malformed rtnetlink reply"));
                }
                let body = &rest[16..len];
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = body
                            .get(..4)
                            .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                        if !dump {
                            return Ok(out);
                        }
                    }
                    _ => out.push(Message {
                        kind,
                        body: body.to_vec(),
                    }),
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
    }

    fn dump(&self, kind: u16, body: &[u8]) -> io::Result<Vec<Message>> {
        self.send(kind, NLM_F_REQUEST | NLM_F_DUMP, body)?;
        self.replies(true)
    }
}

/// The attributes of a message body whose fixed header is `header` bytes long.
fn attributes(body: &[u8], header: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = body.get(header..).unwrap_or(&[]);
    while rest.len() >= 4 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_le_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            break;
        }
        out.push((kind, &rest[4..len]));
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A link as an `RTM_NEWLINK` message describes it (no addresses or routes yet).
fn parse_link(body: &[u8]) -> Option<Iface> {
    if body.len() < 16 {
        return None;
    }
    let mut d = Iface {
        index: u32_at(body, 4) as i32,
        name: String::new(),
        flags: u32_at(body, 8),
        hw_type: u16::from_le_bytes([body[2], body[3]]),
        mtu: 1500,
        mac: [0; 6],
        addrs: Vec::new(),
        gateway: None,
        gateway6: None,
        stats: IfaceStats::default(),
    };
    for (k, v) in attributes(body, 16) {
        match k {
            IFLA_IFNAME => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                d.name = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            IFLA_ADDRESS if v.len() == 6 => d.mac.copy_from_slice(v),
            IFLA_MTU => d.mtu = u32_at(v, 0),
            _ => {}
        }
    }
    Some(d)
}

/// Every link of the socket's namespace, by index.
pub(crate) fn links(rtnl: &Rtnl) -> io::Result<Vec<Iface>> {
    let mut out: Vec<Iface> = rtnl
        .dump(RTM_GETLINK, &[0u8; 16])?
        .iter()
        .filter(|m| m.kind == RTM_NEWLINK)
        .filter_map(|m| parse_link(&m.body))
        .collect();
    out.sort_by_key(|d| d.index);
    Ok(out)
}

/// An address as an `RTM_NEWADDR` message describes it: its link's index and the address.
fn parse_address(body: &[u8]) -> Option<(i32, IfaceAddr)> {
    if body.len() < 8 {
        return None;
    }
    let attrs = attributes(body, 8);
    let find = |kind: u16| {
        attrs
            .iter()
            .find(|(k, v)| *k == kind && matches!(v.len(), 4 | 16))
            .map(|(_, v)| *v)
    };
    let raw = find(IFA_LOCAL).or_else(|| find(IFA_ADDRESS))?;
    let addr = match raw.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(raw).ok()?),
        _ => IpAddr::from(<[u8; 16]>::try_from(raw).ok()?),
    };
    let a = IfaceAddr {
        addr,
        prefix: body[1],
        scope: body[3],
    };
    Some((u32_at(body, 4) as i32, a))
}

/// The addresses of `family` in the socket's namespace: link index, address, and the
/// message that describes it.
fn addresses(rtnl: &Rtnl, family: i32) -> io::Result<Vec<(i32, IfaceAddr, Vec<u8>)>> {
    let mut req = [0u8; 8];
    req[0] = family as u8;
    Ok(rtnl
        .dump(RTM_GETADDR, &req)?
        .into_iter()
        .filter(|m| m.kind == RTM_NEWADDR && m.body.first() == Some(&(family as u8)))
        .filter_map(|m| parse_address(&m.body).map(|(index, a)| (index, a, m.body)))
        .collect())
}

/// The default routes of `family` in the main table: the link each goes through, its
/// gateway, and its message.
fn default_routes(rtnl: &Rtnl, family: i32) -> io::Result<Vec<(i32, IpAddr, Vec<u8>)>> {
    let mut req = [0u8; 12];
    req[0] = family as u8;
    let mut out = Vec::new();
    for m in rtnl.dump(RTM_GETROUTE, &req)? {
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        if m.kind != RTM_NEWROUTE || m.body.len() < 12 || m.body[1] != 0 {
            continue;
        }
        if m.body[4] != RT_TABLE_MAIN || i32::from(m.body[0]) != family {
            continue;
        }
        let attrs = attributes(&m.body, 12);
        let oif = attrs
            .iter()
            .find(|(k, _)| *k == RTA_OIF)
            .map(|(_, v)| u32_at(v, 0) as i32);
        let dst = attrs.iter().any(|(k, _)| *k == RTA_DST);
        let gw = attrs
            .iter()
            .find(|(k, _)| *k == RTA_GATEWAY)
            .and_then(|(_, v)| match v.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*v).ok()?)),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*v).ok()?)),
                _ => None,
            });
        if let (Some(oif), Some(gw), false) = (oif, gw, dst) {
            out.push((oif, gw, m.body));
        }
    }
    Ok(out)
}

/// The default route of `family` through link `index`, if any: its gateway and its message.
fn default_route(rtnl: &Rtnl, index: i32, family: i32) -> io::Result<Option<(IpAddr, Vec<u8>)>> {
    Ok(default_routes(rtnl, family)?
        .into_iter()
        .find(|(oif, _, _)| *oif == index)
        .map(|(_, gw, m)| (gw, m)))
}

/// For `--network=sandbox`: take the first Ethernet interface of the caller's network
/// namespace that has an IPv4 address (see the module's doc). `None` when there is none, or
/// in the host's initial namespace (said in one line: on stderr if `say` — the user asked
/// for the sandbox's network by name —, else in the log).
pub fn take_interface(say: bool) -> Result<Option<TakenInterface>, crate::RuntimeError> {
    if in_initial_netns() {
        const LINE: &str =
            "the host's own network namespace: the sandbox's network is loopback only";
        if say {
            eprintln!("moat: {LINE}");
        } else {
            tracing::info!("{LINE}");
        }
        return Ok(None);
    }
    let fail = crate::RuntimeError::io("taking the network interface");
    let rtnl = Rtnl::open().map_err(&fail)?;
    let ethernet_up = |d: &Iface| d.hw_type == ARPHRD_ETHER && d.flags & IFF_UP != 0;
    for link in links(&rtnl).map_err(&fail)?.into_iter().filter(ethernet_up) {
        // Its IPv4 addresses and global IPv6 ones: IPv6 link-local addresses stay the
        // host's (the sandbox's stack speaks from its global ones).
        let of_link = |family| -> io::Result<Vec<(IpAddr, u8, Vec<u8>)>> {
            Ok(addresses(&rtnl, family)?
                .into_iter()
                .filter(|(index, a, _)| {
                    *index == link.index
                        && (family == libc::AF_INET || a.scope == RT_SCOPE_UNIVERSE)
                })
                .map(|(_, a, m)| (a.addr, a.prefix, m))
                .collect())
        };
        let mut addrs = of_link(libc::AF_INET).map_err(&fail)?;
        if addrs.is_empty() {
            continue;
        }
        addrs.extend(of_link(libc::AF_INET6).map_err(&fail)?);
        let route4 = default_route(&rtnl, link.index, libc::AF_INET).map_err(&fail)?;
        let route6 = default_route(&rtnl, link.index, libc::AF_INET6).map_err(&fail)?;
        let fd = moat_platform::packet::open_packet_socket(link.index as u32, PACKET_BUFFER)
            .map_err(&fail)?;
        // The host's stack lets go of the addresses (and the routes through them): from now
        // on the sandbox's stack answers for them.
        for (_, _, message) in &addrs {
            rtnl.send(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, message)
                .map_err(&fail)?;
            rtnl.replies(false).map_err(&fail)?;
        }
        let config = InterfaceConfig {
            name: link.name,
            mac: link.mac,
            mtu: link.mtu,
            addrs: addrs.iter().map(|(a, p, _)| (*a, *p)).collect(),
            gateway: route4.as_ref().map(|(gw, _)| *gw),
            gateway6: route6.as_ref().map(|(gw, _)| *gw),
        };
        tracing::debug!(?config, "took the network interface");
        let give_back = GiveBack {
            addrs: addrs.into_iter().map(|(_, _, m)| m).collect(),
            routes: [route4, route6]
                .into_iter()
                .flatten()
                .map(|(_, m)| m)
                .collect(),
        };
        return Ok(Some(TakenInterface {
            config,
            fd,
            give_back,
        }));
    }
    Ok(None)
}

/// [`take_interface`] in the network namespace at `path` (an OCI spec's), entered by a
/// thread of its own (a namespace is a thread's; this one ends with the call).
pub fn take_interface_of(
    path: &std::path::Path,
) -> Result<Option<TakenInterface>, crate::RuntimeError> {
    let fail = crate::RuntimeError::io("entering the container's network namespace");
    let ns = std::fs::File::open(path).map_err(&fail)?;
    in_netns(&ns, || Ok(take_interface(false))).map_err(&fail)?
}

/// For `--network=host`: every interface of the caller's network namespace, with its flags,
/// addresses (all scopes) and default routes, as programs in the sandbox will see them.
pub fn host_interfaces() -> io::Result<Vec<Iface>> {
    let rtnl = Rtnl::open()?;
    let mut out = links(&rtnl)?;
    for family in [libc::AF_INET, libc::AF_INET6] {
        for (index, a, _) in addresses(&rtnl, family)? {
            if let Some(d) = out.iter_mut().find(|d| d.index == index) {
                d.addrs.push(a);
            }
        }
        for (oif, gw, _) in default_routes(&rtnl, family)? {
            if let Some(d) = out.iter_mut().find(|d| d.index == oif) {
                let slot = if family == libc::AF_INET {
                    &mut d.gateway
                } else {
                    &mut d.gateway6
                };
                slot.get_or_insert(gw);
            }
        }
    }
    Ok(out)
}

/// Run `f` on a thread of its own that enters the network namespace `ns` first (a
/// namespace is a thread's; this one ends with the call).
pub(crate) fn in_netns<T: Send>(
    ns: &impl AsFd,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    let ns = ns.as_fd();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                rustix::thread::move_into_link_name_space(
                    ns,
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("network thread panicked")))
    })
}

/// [`GiveBack::apply`] in the network namespace at `path`.
pub fn give_back_in(path: &std::path::Path, give_back: GiveBack) -> io::Result<()> {
    in_netns(&std::fs::File::open(path)?, || give_back.apply())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_with_their_lengths_checked() {
        // A 4-byte header, then IFA_LOCAL (8 bytes, 10.0.0.2), then a truncated attribute.
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&8u16.to_le_bytes());
        body.extend_from_slice(&IFA_LOCAL.to_le_bytes());
        body.extend_from_slice(&[10, 0, 0, 2]);
        body.extend_from_slice(&40u16.to_le_bytes());
        body.extend_from_slice(&IFA_ADDRESS.to_le_bytes());
        let attrs = attributes(&body, 4);
        assert_eq!(attrs, vec![(IFA_LOCAL, &[10u8, 0, 0, 2][..])]);
        assert!(attributes(&body, 100).is_empty());
    }

    #[test]
    fn this_host_namespace_is_recognised() {
        // Whatever namespace the tests run in, the answer must not panic; in the host's
        // initial namespace (a fixed inode number on Linux 6.x) it must be `true`.
        let ino = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino());
        if ino.is_ok_and(|i| i == PROC_NET_INIT_INO) {
            assert!(in_initial_netns());
        }
    }
}
