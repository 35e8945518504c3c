//! The sandbox's network interfaces, as programs ask about them: today only `lo`
//! (127.0.0.1/8 and ::1/128, index 1), answered to the `SIOCGIF*` ioctls any socket takes
//! and rendered in `/proc/net/dev` and `/proc/net/if_inet6`. An external interface (a veth
//! or tap with its own stack) would be listed here too.

use moat_abi::Errno;

use crate::mm::MemoryManager;

/// The loopback interface's index, name and MTU.
pub const LO_INDEX: i32 = 1;
pub const LO_NAME: &[u8] = b"lo";
pub const LO_MTU: i32 = 65536;
/// `IFF_UP | IFF_LOOPBACK | IFF_RUNNING` (`SIOCGIFFLAGS` has no room for `IFF_LOWER_UP`).
const LO_FLAGS: i16 = 0x1 | 0x8 | 0x40;
/// `ARPHRD_LOOPBACK`: the hardware type of `lo`.
const ARPHRD_LOOPBACK: u16 = 772;
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
            if index != LO_INDEX {
                return Err(Errno::ENODEV);
            }
            req[..IFNAMSIZ].fill(0);
            req[..LO_NAME.len()].copy_from_slice(LO_NAME);
            mm.write_obj(arg, &req)?;
            Ok(0)
        })(),
        SIOCGIFFLAGS | SIOCGIFINDEX | SIOCGIFMTU | SIOCGIFMETRIC | SIOCGIFHWADDR
        | SIOCGIFTXQLEN => named(mm, arg, |req| {
            let value = &mut req[IFNAMSIZ..];
            match request {
                SIOCGIFFLAGS => value[..2].copy_from_slice(&LO_FLAGS.to_le_bytes()),
                SIOCGIFINDEX => value[..4].copy_from_slice(&LO_INDEX.to_le_bytes()),
                SIOCGIFMTU => value[..4].copy_from_slice(&LO_MTU.to_le_bytes()),
                SIOCGIFMETRIC => value[..4].fill(0),
                SIOCGIFTXQLEN => value[..4].copy_from_slice(&1000i32.to_le_bytes()),
                _ => {
                    value[..16].fill(0);
                    value[..2].copy_from_slice(&ARPHRD_LOOPBACK.to_le_bytes());
                }
            }
            Ok(())
        }),
        SIOCGIFADDR | SIOCGIFNETMASK | SIOCGIFBRDADDR if inet => named(mm, arg, |req| {
            let addr = match request {
                SIOCGIFADDR => [127, 0, 0, 1],
                SIOCGIFNETMASK => [255, 0, 0, 0],
                _ => [0; 4],
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

/// An ioctl on the interface named in the `ifreq` at `arg`: `ENODEV` for any name but `lo`;
/// `fill` writes the answer into the request, which goes back to the caller.
fn named(
    mm: &mut MemoryManager,
    arg: u64,
    fill: impl FnOnce(&mut [u8; IFREQ_LEN]) -> Result<(), Errno>,
) -> Result<u64, Errno> {
    let mut req: [u8; IFREQ_LEN] = mm.read_obj(arg)?;
    // Linux terminates the name itself before looking it up.
    req[IFNAMSIZ - 1] = 0;
    let end = req.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
    if &req[..end] != LO_NAME {
        return Err(Errno::ENODEV);
    }
    fill(&mut req)?;
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
    let mut entry = [0u8; IFREQ_LEN];
    entry[..LO_NAME.len()].copy_from_slice(LO_NAME);
    entry[IFNAMSIZ..IFNAMSIZ + 16].copy_from_slice(&sockaddr_in([127, 0, 0, 1]));
    let written = if buf == 0 {
        IFREQ_LEN as i32
    } else if len >= IFREQ_LEN as i32 {
        mm.write_bytes(buf, &entry)?;
        IFREQ_LEN as i32
    } else {
        0
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
        "    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n",
    );
    s
}

/// `/proc/net/if_inet6`: the IPv6 addresses (address, index, prefix, scope, flags, name).
pub fn proc_net_if_inet6() -> String {
    "00000000000000000000000000000001 01 80 10 80       lo\n".into()
}
