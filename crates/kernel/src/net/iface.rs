//! The sandbox's network interfaces, as programs ask about them: `lo` (127.0.0.1/8 and
//! ::1/128, index 1) and, with `--network=sandbox` and an interface to take, the external
//! interface (index 2, `net/ext`), answered to the `SIOCGIF*` ioctls any socket takes and
//! rendered in `/proc/net/dev`, `/proc/net/route` and `/proc/net/if_inet6`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use moat_abi::Errno;

use crate::mm::MemoryManager;
use crate::net::ext::{External, InterfaceConfig, EXT_INDEX};

/// The sandbox's external interface: one per kernel process (one sandbox), set once at
/// start, before any application runs.
static EXTERNAL: OnceLock<Arc<External>> = OnceLock::new();

/// Record the external interface (at the sandbox's start).
pub fn set_external(ext: Arc<External>) {
    let _ = EXTERNAL.set(ext);
}

/// The external interface, if the sandbox has one.
pub fn external() -> Option<&'static Arc<External>> {
    EXTERNAL.get()
}

/// `IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST`.
const EXT_FLAGS: i16 = 0x1 | 0x2 | 0x40 | 0x1000;
/// `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;

/// What the ioctls say of one interface.
struct Desc {
    index: i32,
    name: Vec<u8>,
    flags: i16,
    mtu: i32,
    hw_type: u16,
    mac: [u8; 6],
    /// IPv4 address, netmask, broadcast.
    v4: Option<([u8; 4], [u8; 4], [u8; 4])>,
}

/// The first IPv4 address of an interface, its netmask and broadcast address.
pub fn first_v4(config: &InterfaceConfig) -> Option<([u8; 4], [u8; 4], [u8; 4])> {
    config.addrs.iter().find_map(|(a, p)| match a {
        IpAddr::V4(a) => {
            let mask = InterfaceConfig::netmask_v4(*p);
            let ip = a.octets();
            let bcast = std::array::from_fn(|i| ip[i] | !mask[i]);
            Some((ip, mask, bcast))
        }
        IpAddr::V6(_) => None,
    })
}

/// The sandbox's interfaces, `lo` first.
fn interfaces() -> Vec<Desc> {
    let mut v = vec![Desc {
        index: LO_INDEX,
        name: LO_NAME.to_vec(),
        flags: LO_FLAGS,
        mtu: LO_MTU,
        hw_type: ARPHRD_LOOPBACK,
        mac: [0; 6],
        v4: Some(([127, 0, 0, 1], [255, 0, 0, 0], [0; 4])),
    }];
    if let Some(ext) = external() {
        v.push(Desc {
            index: EXT_INDEX,
            name: ext.config.name.as_bytes().to_vec(),
            flags: EXT_FLAGS,
            mtu: ext.config.mtu as i32,
            hw_type: ARPHRD_ETHER,
            mac: ext.config.mac,
            v4: first_v4(&ext.config),
        });
    }
    v
}

/// The loopback interface's index, name and MTU.
pub const LO_INDEX: i32 = 1;
pub const LO_NAME: &[u8] = b"lo";
pub const LO_MTU: i32 = 65536;
/// `IFF_UP | IFF_LOOPBACK | IFF_RUNNING` (`SIOCGIFFLAGS` has no room for `IFF_LOWER_UP`).
const LO_FLAGS: i16 = 0x1 | 0x8 | 0x40;
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
            let Some(d) = interfaces().into_iter().find(|d| d.index == index) else {
                return Err(Errno::ENODEV);
            };
            req[..IFNAMSIZ].fill(0);
            let n = d.name.len().min(IFNAMSIZ - 1);
            req[..n].copy_from_slice(&d.name[..n]);
            mm.write_obj(arg, &req)?;
            Ok(0)
        })(),
        SIOCGIFFLAGS | SIOCGIFINDEX | SIOCGIFMTU | SIOCGIFMETRIC | SIOCGIFHWADDR
        | SIOCGIFTXQLEN => named(mm, arg, |req, d| {
            let value = &mut req[IFNAMSIZ..];
            match request {
                SIOCGIFFLAGS => value[..2].copy_from_slice(&d.flags.to_le_bytes()),
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
            let Some((ip, mask, bcast)) = d.v4 else {
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
    fill: impl FnOnce(&mut [u8; IFREQ_LEN], &Desc) -> Result<(), Errno>,
) -> Result<u64, Errno> {
    let mut req: [u8; IFREQ_LEN] = mm.read_obj(arg)?;
    // Linux terminates the name itself before looking it up.
    req[IFNAMSIZ - 1] = 0;
    let end = req.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
    let Some(d) = interfaces().into_iter().find(|d| d.name == req[..end]) else {
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
    for d in interfaces() {
        let Some((ip, _, _)) = d.v4 else {
            continue;
        };
        let mut entry = [0u8; IFREQ_LEN];
        let n = d.name.len().min(IFNAMSIZ - 1);
        entry[..n].copy_from_slice(&d.name[..n]);
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

/// `/proc/net/dev`: `lo` with its counters (Moat does not count loopback traffic: zeros).
pub fn proc_net_dev() -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    s.push_str(
        "    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0",
    );
    if let Some(ext) = external() {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &ext.counters;
        let _ = writeln!(
            s,
            "{:>6}: {:>8} {:>7}    0    0    0     0          0         0 {:>8} {:>7}    0 {:>4}    0     0       0          0",
            ext.config.name,
            c.rx_bytes.load(Relaxed),
            c.rx_packets.load(Relaxed),
            c.tx_bytes.load(Relaxed),
            c.tx_packets.load(Relaxed),
            c.tx_dropped.load(Relaxed),
        );
    }
    s
}

/// `/proc/net/route`: the IPv4 routes of the external interface (its subnet, and the
/// default route through the gateway), in the host's byte order as Linux prints them.
pub fn proc_net_route() -> String {
    let mut s = String::from(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT           \n",
    );
    let Some(ext) = external() else {
        return s;
    };
    let hex = |o: [u8; 4]| format!("{:08X}", u32::from_le_bytes(o));
    let name = &ext.config.name;
    if let Some(IpAddr::V4(gw)) = ext.config.gateway {
        let _ = writeln!(
            s,
            "{name}\t00000000\t{}\t0003\t0\t0\t0\t00000000\t0\t0\t0",
            hex(gw.octets())
        );
    }
    for (a, p) in &ext.config.addrs {
        if let IpAddr::V4(a) = a {
            let mask = InterfaceConfig::netmask_v4(*p);
            let net: [u8; 4] = std::array::from_fn(|i| a.octets()[i] & mask[i]);
            let _ = writeln!(
                s,
                "{name}\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0",
                hex(net),
                hex(mask)
            );
        }
    }
    s
}

/// `/proc/net/if_inet6`: the IPv6 addresses (address, index, prefix, scope, flags, name).
pub fn proc_net_if_inet6() -> String {
    let mut s = String::from("00000000000000000000000000000001 01 80 10 80       lo\n");
    if let Some(ext) = external() {
        for (a, p) in &ext.config.addrs {
            if let IpAddr::V6(a) = a {
                let hex = a.octets().iter().fold(String::new(), |mut h, b| {
                    let _ = write!(h, "{b:02x}");
                    h
                });
                let _ = writeln!(
                    s,
                    "{hex} {EXT_INDEX:02x} {p:02x} 00 80 {:>8}",
                    ext.config.name
                );
            }
        }
    }
    s
}
