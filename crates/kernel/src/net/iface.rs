//! The sandbox's network interfaces, as programs ask about them: `lo` (127.0.0.1/8 and
//! ::1/128, index 1) and, with `--network=sandbox` and an interface to take, the external
//! interface (index 2, `net/ext`); with `--network=host`, the host's interfaces as the runtime
//! read them at start. One description ([`Iface`]) answers netlink (`net/netlink.rs`), the
//! `SIOCGIF*` ioctls any socket takes, and `/proc/net/dev`, `/proc/net/route` and
//! `/proc/net/if_inet6`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use moat_abi::Errno;

use crate::mm::MemoryManager;
use crate::net::ext::{External, InterfaceConfig, EXT_INDEX};

/// The sandbox's external interface: one per kernel process (one sandbox), set once at
/// start, before any application runs.
static EXTERNAL: OnceLock<Arc<External>> = OnceLock::new();

/// The host's interfaces, for `--network=host` (set once at start).
static HOST: OnceLock<Vec<Iface>> = OnceLock::new();

/// Record the external interface (at the sandbox's start).
pub fn set_external(ext: Arc<External>) {
    let _ = EXTERNAL.set(ext);
}

/// Record the host's interfaces (at the start of a `--network=host` sandbox): programs see
/// them instead of the sandbox's own `lo`, as their sockets are the host's.
pub fn set_host(interfaces: Vec<Iface>) {
    let _ = HOST.set(interfaces);
}

/// The external interface, if the sandbox has one.
pub fn external() -> Option<&'static Arc<External>> {
    EXTERNAL.get()
}

/// `IFF_UP`, `IFF_BROADCAST`, `IFF_LOOPBACK`, `IFF_RUNNING`, `IFF_MULTICAST`, `IFF_LOWER_UP`.
pub const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
pub const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_MULTICAST: u32 = 0x1000;
const IFF_LOWER_UP: u32 = 0x1_0000;
/// `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;
/// Address scopes (`RT_SCOPE_*`): everywhere, the link, this host.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_HOST: u8 = 254;

/// An address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfaceAddr {
    pub addr: IpAddr,
    pub prefix: u8,
    /// `RT_SCOPE_*`.
    pub scope: u8,
}

/// One interface, as programs see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub index: i32,
    pub name: String,
    /// `IFF_*`, as netlink reports them (with `IFF_LOWER_UP`).
    pub flags: u32,
    /// `ARPHRD_*`.
    pub hw_type: u16,
    pub mtu: u32,
    pub mac: [u8; 6],
    pub addrs: Vec<IfaceAddr>,
    /// The default routes' gateways through it (IPv4, IPv6).
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
    /// Received packets and bytes, sent packets and bytes, sent frames dropped.
    pub stats: IfaceStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

impl Iface {
    pub fn is_loopback(&self) -> bool {
        self.flags & IFF_LOOPBACK != 0
    }

    /// Its first IPv4 address, netmask and broadcast address.
    pub fn first_v4(&self) -> Option<([u8; 4], [u8; 4], [u8; 4])> {
        self.addrs.iter().find_map(|a| match a.addr {
            IpAddr::V4(ip) => {
                let mask = InterfaceConfig::netmask_v4(a.prefix);
                let ip = ip.octets();
                let bcast = std::array::from_fn(|i| ip[i] | !mask[i]);
                Some((ip, mask, bcast))
            }
            IpAddr::V6(_) => None,
        })
    }

    /// The sandbox's own `lo`.
    fn sandbox_lo() -> Iface {
        Iface {
            index: LO_INDEX,
            name: "lo".into(),
            flags: IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
            hw_type: ARPHRD_LOOPBACK,
            mtu: LO_MTU as u32,
            mac: [0; 6],
            addrs: vec![
                IfaceAddr {
                    addr: IpAddr::from([127, 0, 0, 1]),
                    prefix: 8,
                    scope: RT_SCOPE_HOST,
                },
                IfaceAddr {
                    addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    prefix: 128,
                    scope: RT_SCOPE_HOST,
                },
            ],
            gateway: None,
            gateway6: None,
            // Moat does not count loopback traffic.
            stats: IfaceStats::default(),
        }
    }

    /// The sandbox's external interface.
    fn external(ext: &External) -> Iface {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &ext.counters;
        Iface {
            index: EXT_INDEX,
            name: ext.config.name.clone(),
            flags: IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST | IFF_LOWER_UP,
            hw_type: ARPHRD_ETHER,
            mtu: ext.config.mtu,
            mac: ext.config.mac,
            addrs: ext
                .config
                .addrs
                .iter()
                .map(|&(addr, prefix)| IfaceAddr {
                    addr,
                    prefix,
                    scope: RT_SCOPE_UNIVERSE,
                })
                .collect(),
            gateway: ext.config.gateway,
            gateway6: ext.config.gateway6,
            stats: IfaceStats {
                rx_packets: c.rx_packets.load(Relaxed),
                rx_bytes: c.rx_bytes.load(Relaxed),
                tx_packets: c.tx_packets.load(Relaxed),
                tx_bytes: c.tx_bytes.load(Relaxed),
                tx_dropped: c.tx_dropped.load(Relaxed),
            },
        }
    }
}

/// The interfaces programs see, by index: the host's with `--network=host`, else `lo` and
/// the external interface if there is one.
pub fn all() -> Vec<Iface> {
    if let Some(host) = HOST.get() {
        return host.clone();
    }
    let mut v = vec![Iface::sandbox_lo()];
    if let Some(ext) = external() {
        v.push(Iface::external(ext));
    }
    v
}

/// The loopback interface's index, name and MTU.
pub const LO_INDEX: i32 = 1;
pub const LO_NAME: &[u8] = b"lo";
pub const LO_MTU: i32 = 65536;
/// `ARPHRD_LOOPBACK`: the hardware type of `lo`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// `IFNAMSIZ` and `sizeof(struct ifreq)`.
const IFNAMSIZ: usize = 16;
const IFREQ_LEN: usize = 40;

const SIOCGIFNAME: u32 = 0x8910;
const SIOCGIFCONF: u32 = 0x8912;
const SIOCGIFFLAGS: u32 = 0x8913;
const SIOCSIFFLAGS: u32 = 0x8914;
const SIOCGIFADDR: u32 = 0x8915;
const SIOCSIFADDR: u32 = 0x8916;
const SIOCGIFBRDADDR: u32 = 0x8919;
const SIOCGIFNETMASK: u32 = 0x891b;
const SIOCGIFMETRIC: u32 = 0x891d;
const SIOCGIFMTU: u32 = 0x8921;
const SIOCSIFMTU: u32 = 0x8922;
const SIOCGIFHWADDR: u32 = 0x8927;
const SIOCGIFINDEX: u32 = 0x8933;
const SIOCGIFTXQLEN: u32 = 0x8942;

/// A `sockaddr_in` holding `addr`, as `ifr_addr` carries it.
fn sockaddr_in(addr: [u8; 4]) -> [u8; 16] {
    let mut sa = [0u8; 16];
    sa[..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
    sa[4..8].copy_from_slice(&addr);
    sa
}

/// Answer an interface ioctl made on any socket; `None` if `request` is not one. The
/// address requests (`SIOCGIFADDR`...) are the IPv4 family's, so only `inet` sockets
/// answer them, as on Linux.
pub fn ioctl(
    mm: &mut MemoryManager,
    request: u32,
    arg: u64,
    inet: bool,
) -> Option<Result<u64, Errno>> {
    let r = match request {
        SIOCGIFCONF => ifconf(mm, arg),
        SIOCGIFNAME => (|| {
            let mut req: [u8; IFREQ_LEN] = mm.read_obj(arg)?;
            let index = i32::from_le_bytes([req[16], req[17], req[18], req[19]]);
            let Some(d) = all().into_iter().find(|d| d.index == index) else {
                return Err(Errno::ENODEV);
            };
            req[..IFNAMSIZ].fill(0);
            let n = d.name.len().min(IFNAMSIZ - 1);
            req[..n].copy_from_slice(&d.name.as_bytes()[..n]);
            mm.write_obj(arg, &req)?;
            Ok(0)
        })(),
        SIOCGIFFLAGS | SIOCGIFINDEX | SIOCGIFMTU | SIOCGIFMETRIC | SIOCGIFHWADDR
        | SIOCGIFTXQLEN => named(mm, arg, |req, d| {
            let value = &mut req[IFNAMSIZ..];
            match request {
                // `ifr_flags` is a short: no room for `IFF_LOWER_UP`.
                SIOCGIFFLAGS => value[..2].copy_from_slice(&(d.flags as u16).to_le_bytes()),
                SIOCGIFINDEX => value[..4].copy_from_slice(&d.index.to_le_bytes()),
                SIOCGIFMTU => value[..4].copy_from_slice(&d.mtu.to_le_bytes()),
                SIOCGIFMETRIC => value[..4].fill(0),
                SIOCGIFTXQLEN => value[..4].copy_from_slice(&1000i32.to_le_bytes()),
                _ => {
                    value[..16].fill(0);
                    value[..2].copy_from_slice(&d.hw_type.to_le_bytes());
                    value[2..8].copy_from_slice(&d.mac);
                }
            }
            Ok(())
        }),
        SIOCGIFADDR | SIOCGIFNETMASK | SIOCGIFBRDADDR if inet => named(mm, arg, |req, d| {
            let Some((ip, mask, bcast)) = d.first_v4() else {
                return Err(Errno::EADDRNOTAVAIL);
            };
            let addr = match request {
                SIOCGIFADDR => ip,
                SIOCGIFNETMASK => mask,
                _ => bcast,
            };
            req[IFNAMSIZ..IFNAMSIZ + 16].copy_from_slice(&sockaddr_in(addr));
            Ok(())
        }),
        // Changing an interface needs CAP_NET_ADMIN, which nothing in the sandbox holds.
        SIOCSIFFLAGS | SIOCSIFADDR | SIOCSIFMTU => Err(Errno::EPERM),
        _ => return None,
    };
    Some(r)
}

/// An ioctl on the interface named in the `ifreq` at `arg` (`ENODEV` for a name the
/// sandbox has not); `fill` writes the answer into the request, which goes back to the
/// caller.
fn named(
    mm: &mut MemoryManager,
    arg: u64,
    fill: impl FnOnce(&mut [u8; IFREQ_LEN], &Iface) -> Result<(), Errno>,
) -> Result<u64, Errno> {
    let mut req: [u8; IFREQ_LEN] = mm.read_obj(arg)?;
    // Linux terminates the name itself before looking it up.
    req[IFNAMSIZ - 1] = 0;
    let end = req.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
    let Some(d) = all().into_iter().find(|d| d.name.as_bytes() == &req[..end]) else {
        return Err(Errno::ENODEV);
    };
    fill(&mut req, &d)?;
    mm.write_obj(arg, &req)?;
    Ok(0)
}

/// `SIOCGIFCONF`: one `ifreq` (name and IPv4 address) per interface with an IPv4 address;
/// a null buffer asks for the length needed.
fn ifconf(mm: &mut MemoryManager, arg: u64) -> Result<u64, Errno> {
    let (len, buf): (i32, u64) = {
        let raw: [u64; 2] = mm.read_obj(arg)?;
        (raw[0] as u32 as i32, raw[1])
    };
    let mut entries = Vec::new();
    for d in all() {
        let Some((ip, _, _)) = d.first_v4() else {
            continue;
        };
        let mut entry = [0u8; IFREQ_LEN];
        let n = d.name.len().min(IFNAMSIZ - 1);
        entry[..n].copy_from_slice(&d.name.as_bytes()[..n]);
        entry[IFNAMSIZ..IFNAMSIZ + 16].copy_from_slice(&sockaddr_in(ip));
        entries.push(entry);
    }
    let written = if buf == 0 {
        (entries.len() * IFREQ_LEN) as i32
    } else {
        // As many whole entries as fit.
        let fit = (len.max(0) as usize / IFREQ_LEN).min(entries.len());
        mm.write_bytes(buf, &entries[..fit].concat())?;
        (fit * IFREQ_LEN) as i32
    };
    mm.write_obj(arg, &written)?;
    Ok(0)
}

/// `/proc/net/dev`: each interface with its counters.
pub fn proc_net_dev() -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for d in all() {
        let c = d.stats;
        let _ = writeln!(
            s,
            "{:>6}: {:>7} {:>7}    0    0    0     0          0         0 {:>8} {:>7}    0 {:>4}    0     0       0          0",
            d.name, c.rx_bytes, c.rx_packets, c.tx_bytes, c.tx_packets, c.tx_dropped,
        );
    }
    s
}

/// `/proc/net/route`: the IPv4 routes of the interfaces other than loopback (each subnet,
/// and the default route through the gateway), in the host's byte order as Linux prints
/// them.
pub fn proc_net_route() -> String {
    let mut s = String::from(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT           \n",
    );
    let hex = |o: [u8; 4]| format!("{:08X}", u32::from_le_bytes(o));
    for d in all().iter().filter(|d| !d.is_loopback()) {
        let name = &d.name;
        if let Some(IpAddr::V4(gw)) = d.gateway {
            let _ = writeln!(
                s,
                "{name}\t00000000\t{}\t0003\t0\t0\t0\t00000000\t0\t0\t0",
                hex(gw.octets())
            );
        }
        for a in &d.addrs {
            if let IpAddr::V4(ip) = a.addr {
                let mask = InterfaceConfig::netmask_v4(a.prefix);
                let net: [u8; 4] = std::array::from_fn(|i| ip.octets()[i] & mask[i]);
                let _ = writeln!(
                    s,
                    "{name}\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0",
                    hex(net),
                    hex(mask)
                );
            }
        }
    }
    s
}

/// `/proc/net/if_inet6`: the IPv6 addresses (address, index, prefix, scope, flags, name).
pub fn proc_net_if_inet6() -> String {
    let mut s = String::new();
    for d in all() {
        for a in &d.addrs {
            let IpAddr::V6(ip) = a.addr else {
                continue;
            };
            let hex = ip.octets().iter().fold(String::new(), |mut h, b| {
                let _ = write!(h, "{b:02x}");
                h
            });
            // Linux's IPv6 scope numbers: 0x10 host, 0x20 link, 0 global.
            let scope = match a.scope {
                RT_SCOPE_HOST => 0x10,
                RT_SCOPE_LINK => 0x20,
                _ => 0,
            };
            let _ = writeln!(
                s,
                "{hex} {:02x} {:02x} {scope:02x} 80 {:>8}",
                d.index, a.prefix, d.name
            );
        }
    }
    s
}
