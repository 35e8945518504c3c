//! The sandbox's external interface (`--network=sandbox`): a packet-level TCP/IP stack over
//! an Ethernet device, as gVisor's netstack is, built on smoltcp.
//!
//! The runtime opens a packet socket on an interface of the namespace the sandbox was
//! started in and hands it over with the interface's configuration ([`InterfaceConfig`]);
//! the host's stack no longer has the addresses, so every frame for them is the sandbox's.
//! The kernel reads and writes whole Ethernet frames on that socket (`read`/`write` on the
//! one fd, nothing else) and smoltcp does ARP, IPv4, ICMP echo replies, TCP and UDP.
//!
//! One lock ([`External::with`]) holds smoltcp's interface and its sockets. Application
//! threads take it to queue or take bytes and then poll the interface themselves, so that
//! what they queued leaves at once; one host thread (`moat-net`) waits in `ppoll` for frames,
//! smoltcp's next timer, or a kick (an eventfd) from an application thread whose poll moved
//! a timer earlier than the thread's sleep. After a poll that changed a socket, the wait
//! queues of the sockets on the interface are notified (after the lock is released, as the
//! loopback path does), so `poll`, `epoll` and blocking calls see external sockets exactly
//! as loopback ones. UDP datagrams are moved from smoltcp's sockets onto the Moat socket's
//! own queue, so receiving UDP is the same code whichever way a datagram came.
//!
//! Received checksums are not verified: a veth (and most NICs) hands frames the host sent
//! with offloaded, still partial checksums, which a packet socket sees as they are; the
//! Ethernet link checks frames on the wire. Checksums are computed on every frame sent.

pub mod tcp;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use moat_abi::Errno;
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, udp};
use smoltcp::time::Instant as NetInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::inet::SockAddr;
use crate::process::Guard;
use crate::wait::WaitQueue;

/// The external interface's index (`lo` is 1).
pub const EXT_INDEX: i32 = 2;
/// Frames read per hold of the lock before transmitting and letting others in.
const INGRESS_BURST: usize = 64;
/// Egress passes per hold of the lock (each sends at most one segment per socket).
const EGRESS_BURST: usize = 256;
/// The largest frame read: an Ethernet header and a 64 KiB IP packet (a host's TSO/GSO
/// segments arrive unsplit on a veth).
const RX_FRAME: usize = 14 + 65536 + 64;
/// UDP socket buffers: datagrams and payload bytes.
const UDP_PACKETS: usize = 256;
const UDP_BYTES: usize = 1 << 20;
/// ICMP echo socket buffers: messages and bytes each way (the largest echo fits).
const ICMP_PACKETS: usize = 32;
const ICMP_BYTES: usize = 128 << 10;

/// An interface the runtime took for the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// Its name in the namespace it came from (the sandbox shows the same name).
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Addresses and prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// The default routes' gateways (IPv4, IPv6).
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
}

/// Whether `a` and `b` share their first `prefix` bits (and a family).
fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    let (a, b, bits): (u128, u128, u32) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.into(), b.into(), 128),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

impl InterfaceConfig {
    /// Whether `ip` is one of the interface's addresses.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|(a, _)| *a == ip)
    }

    /// The source address for a packet to `dst` leaving through this interface: the
    /// address of the subnet `dst` is on, or (through the gateway) the first of its family.
    pub fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        if let Some((a, _)) = self.addrs.iter().find(|(a, p)| same_subnet(*a, dst, *p)) {
            return Some(*a);
        }
        if dst.is_ipv4() {
            self.gateway?;
        } else {
            self.gateway6?;
        }
        self.addrs
            .iter()
            .find(|(a, _)| a.is_ipv4() == dst.is_ipv4())
            .map(|(a, _)| *a)
    }

    /// The netmask of an IPv4 address's prefix.
    pub fn netmask_v4(prefix: u8) -> [u8; 4] {
        let bits = u32::from(prefix.min(32));
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        mask.to_be_bytes()
    }
}

/// What went through the interface (`/proc/net/dev`).
#[derive(Default, Debug)]
pub struct Counters {
    pub rx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_dropped: AtomicU64,
}

/// The packet socket as a smoltcp device.
struct PacketDevice {
    fd: Arc<OwnedFd>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    mtu: usize,
    counters: Arc<Counters>,
}

pub struct Rx<'a> {
    frame: &'a [u8],
}

pub struct Tx<'a> {
    fd: &'a OwnedFd,
    buf: &'a mut Vec<u8>,
    counters: &'a Counters,
}

impl smoltcp::phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.buf.resize(len, 0);
        let r = f(&mut self.buf[..len]);
        // A frame the host cannot take now is lost, as on a full NIC queue: TCP resends.
        match rustix::io::write(self.fd, &self.buf[..len]) {
            Ok(_) => {
                self.counters.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .tx_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

impl Device for PacketDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: NetInstant) -> Option<(Rx<'_>, Tx<'_>)> {
        let PacketDevice {
            fd,
            rx,
            tx,
            counters,
            ..
        } = self;
        let n = match rustix::io::read(&**fd, &mut rx[..]) {
            Ok(n) if n > 0 => n,
            _ => return None,
        };
        counters.rx_packets.fetch_add(1, Ordering::Relaxed);
        counters.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        Some((
            Rx { frame: &rx[..n] },
            Tx {
                fd,
                buf: tx,
                counters,
            },
        ))
    }

    fn transmit(&mut self, _now: NetInstant) -> Option<Tx<'_>> {
        Some(Tx {
            fd: &self.fd,
            buf: &mut self.tx,
            counters: &self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        // See the module's doc: compute on sending, trust what the link delivered.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps.checksum.icmpv6 = Checksum::Tx;
        caps
    }
}

/// smoltcp's interface and sockets, under [`External`]'s lock.
pub struct Inner {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    device: PacketDevice,
    /// The wait queue each smoltcp socket's readiness is reported to.
    pub(crate) watchers: HashMap<SocketHandle, Arc<WaitQueue>>,
    /// UDP sockets and the Moat sockets their datagrams go to.
    udp: HashMap<SocketHandle, Weak<super::inet::udp::Udp>>,
    /// ICMP sockets (one per ping socket's identifier) and the ping sockets their echo
    /// replies go to.
    icmp: HashMap<SocketHandle, Weak<super::inet::icmp::Ping>>,
    /// TCP sockets the application closed, kept until their connection has ended.
    pub(crate) closing: Vec<SocketHandle>,
    /// When the `moat-net` thread wakes next, if it sleeps.
    sleep_until: Option<NetInstant>,
}

/// What a poll found for others: queues to notify and datagrams to deliver.
#[derive(Default)]
struct Events {
    queues: Vec<Arc<WaitQueue>>,
    datagrams: Vec<(Weak<super::inet::udp::Udp>, Vec<u8>, SockAddr)>,
    echoes: Vec<(Weak<super::inet::icmp::Ping>, Vec<u8>, IpAddr)>,
}

/// The external interface and its stack.
pub struct External {
    pub config: InterfaceConfig,
    pub counters: Arc<Counters>,
    inner: Mutex<Inner>,
    fd: Arc<OwnedFd>,
    /// Kicks the `moat-net` thread out of its sleep.
    wake: OwnedFd,
    epoch: std::time::Instant,
}

fn endpoint(a: SockAddr) -> IpEndpoint {
    IpEndpoint::new(IpAddress::from(a.ip), a.port)
}

fn sock_addr(e: IpEndpoint) -> SockAddr {
    SockAddr::new(IpAddr::from(e.addr), e.port)
}

impl External {
    /// Bring the interface up on the packet socket `fd` and start its thread.
    pub fn start(config: InterfaceConfig, fd: OwnedFd) -> Result<Arc<External>, Errno> {
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| Errno(e.raw_os_error()))?;
        let fd = Arc::new(fd);
        let counters = Arc::new(Counters::default());
        let mut device = PacketDevice {
            fd: fd.clone(),
            rx: vec![0; RX_FRAME],
            tx: Vec::new(),
            mtu: config.mtu as usize,
            counters: counters.clone(),
        };
        let epoch = std::time::Instant::now();
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac)));
        iface_config.random_seed = crate::random_u64();
        let mut iface = Interface::new(iface_config, &mut device, NetInstant::ZERO);
        iface.update_ip_addrs(|addrs| {
            for (ip, prefix) in &config.addrs {
                let _ = addrs.push(IpCidr::new(IpAddress::from(*ip), *prefix));
            }
        });
        for gw in [config.gateway, config.gateway6].into_iter().flatten() {
            match gw {
                IpAddr::V4(gw) => {
                    let _ = iface.routes_mut().add_default_ipv4_route(gw);
                }
                IpAddr::V6(gw) => {
                    let _ = iface.routes_mut().add_default_ipv6_route(gw);
                }
            }
        }
        let ext = Arc::new(External {
            config,
            counters,
            inner: Mutex::new(Inner {
                iface,
                sockets: SocketSet::new(Vec::new()),
                device,
                watchers: HashMap::new(),
                udp: HashMap::new(),
                icmp: HashMap::new(),
                closing: Vec::new(),
                sleep_until: None,
            }),
            fd,
            wake,
            epoch,
        });
        let weak = Arc::downgrade(&ext);
        std::thread::Builder::new()
            .name("moat-net".into())
            .spawn(move || run(&weak))
            .map_err(|_| Errno::EAGAIN)?;
        Ok(ext)
    }

    fn now(&self) -> NetInstant {
        NetInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Poll the interface (lock held): frames in, frames out, closed sockets reaped,
    /// datagrams taken.
    fn pump(&self, inner: &mut Inner) -> Events {
        let now = self.now();
        let Inner {
            iface,
            sockets,
            device,
            ..
        } = inner;
        let mut changed = false;
        for _ in 0..INGRESS_BURST {
            match iface.poll_ingress_single(now, device, sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => changed = true,
            }
        }
        // smoltcp sends one segment per socket per egress pass: pass again while something
        // leaves, so that a window's worth goes out in one hold of the lock.
        for _ in 0..EGRESS_BURST {
            if iface.poll_egress(now, device, sockets) == PollResult::None {
                break;
            }
            changed = true;
        }
        let mut events = Events::default();
        inner.closing.retain(|h| {
            let s = inner.sockets.get::<smoltcp::socket::tcp::Socket>(*h);
            let done = matches!(
                s.state(),
                smoltcp::socket::tcp::State::Closed | smoltcp::socket::tcp::State::TimeWait
            );
            if done {
                inner.sockets.remove(*h);
            }
            !done
        });
        for (h, owner) in &inner.udp {
            let s = inner.sockets.get_mut::<udp::Socket>(*h);
            while let Ok((data, meta)) = s.recv() {
                events
                    .datagrams
                    .push((owner.clone(), data.to_vec(), sock_addr(meta.endpoint)));
            }
        }
        for (h, owner) in &inner.icmp {
            let s = inner.sockets.get_mut::<icmp::Socket>(*h);
            while let Ok((data, from)) = s.recv() {
                events
                    .echoes
                    .push((owner.clone(), data.to_vec(), IpAddr::from(from)));
            }
        }
        if changed {
            events.queues = inner.watchers.values().cloned().collect();
        }
        events
    }

    /// Tell the sockets: after the lock is gone (a woken task may come straight back).
    fn deliver(events: Events) {
        for q in events.queues {
            q.notify();
        }
        for (owner, data, from) in events.datagrams {
            if let Some(sk) = owner.upgrade() {
                sk.deliver_external(&data, from);
            }
        }
        for (owner, data, from) in events.echoes {
            if let Some(sk) = owner.upgrade() {
                sk.deliver_external(&data, from);
            }
        }
    }

    /// Run `f` on the stack, then poll it so that what `f` queued leaves now; kick the
    /// interface's thread if its next timer came earlier than its sleep.
    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (r, events, kick) = {
            let mut inner = self.inner.guard();
            let r = f(&mut inner);
            let events = self.pump(&mut inner);
            let now = self.now();
            let Inner { iface, sockets, .. } = &mut *inner;
            let next = iface.poll_at(now, sockets);
            let kick = match (next, inner.sleep_until) {
                (Some(n), Some(s)) => n < s,
                (Some(_), None) => false,
                (None, _) => false,
            };
            (r, events, kick)
        };
        if kick {
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
        Self::deliver(events);
        r
    }

    /// At the sandbox's end: give connections the application closed up to `limit` to
    /// deliver what they still hold and their FIN, as Linux goes on sending for a process
    /// that closed a socket and exited (the `moat-net` thread keeps polling meanwhile).
    pub fn linger(&self, limit: std::time::Duration) {
        use smoltcp::socket::tcp::{Socket, State};
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let busy = self.peek(|inner| {
                inner.closing.iter().any(|h| {
                    let s = inner.sockets.get::<Socket>(*h);
                    s.send_queue() > 0
                        || matches!(s.state(), State::FinWait1 | State::Closing | State::LastAck)
                })
            });
            if !busy {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Look at the stack without polling it (readiness, addresses, queue lengths).
    pub fn peek<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.guard())
    }

    /// Open a UDP socket on `port` (of `addr`, or every address) whose datagrams go to
    /// `owner`.
    pub fn udp_bind(
        self: &Arc<Self>,
        addr: Option<IpAddr>,
        port: u16,
        owner: Weak<super::inet::udp::Udp>,
    ) -> Result<UdpBinding, Errno> {
        let handle = self.with(|inner| {
            let buf = || {
                udp::PacketBuffer::new(
                    vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                    vec![0; UDP_BYTES],
                )
            };
            let mut s = udp::Socket::new(buf(), buf());
            s.bind(smoltcp::wire::IpListenEndpoint {
                addr: addr.map(IpAddress::from),
                port,
            })
            .map_err(|_| Errno::EINVAL)?;
            let h = inner.sockets.add(s);
            inner.udp.insert(h, owner);
            Ok(h)
        })?;
        Ok(UdpBinding {
            ext: self.clone(),
            handle,
        })
    }
}

impl External {
    /// Open an ICMP socket for the echo identifier `ident`, whose echo messages go to
    /// `owner`. Without a poll: the caller may hold its socket's lock, and a poll delivers.
    pub fn icmp_bind(
        self: &Arc<Self>,
        ident: u16,
        owner: Weak<super::inet::icmp::Ping>,
    ) -> Result<IcmpBinding, Errno> {
        let handle = self.peek(|inner| {
            let buf = || {
                icmp::PacketBuffer::new(
                    vec![icmp::PacketMetadata::EMPTY; ICMP_PACKETS],
                    vec![0; ICMP_BYTES],
                )
            };
            let mut s = icmp::Socket::new(buf(), buf());
            s.bind(icmp::Endpoint::Ident(ident))
                .map_err(|_| Errno::EINVAL)?;
            let h = inner.sockets.add(s);
            inner.icmp.insert(h, owner);
            Ok(h)
        })?;
        Ok(IcmpBinding {
            ext: self.clone(),
            handle,
        })
    }
}

/// An echo identifier open on the interface; dropping it closes it.
pub struct IcmpBinding {
    ext: Arc<External>,
    handle: SocketHandle,
}

impl IcmpBinding {
    /// Send one ICMP or ICMPv6 message (header, with the identifier and checksum set, and
    /// payload) to `dst`; smoltcp picks the source address and computes the checksum again.
    /// A message the interface cannot queue is dropped, as a full device queue drops it.
    pub fn send(&self, msg: &[u8], dst: IpAddr) -> Result<(), Errno> {
        let r = self.ext.with(|inner| {
            let s = inner.sockets.get_mut::<icmp::Socket>(self.handle);
            s.send_slice(msg, IpAddress::from(dst))
        });
        match r {
            Ok(()) | Err(icmp::SendError::BufferFull) => Ok(()),
            Err(icmp::SendError::Unaddressable) => Err(Errno::ENETUNREACH),
        }
    }
}

impl Drop for IcmpBinding {
    fn drop(&mut self) {
        self.ext.with(|inner| {
            inner.icmp.remove(&self.handle);
            inner.sockets.remove(self.handle);
        });
    }
}

/// A UDP port open on the interface; dropping it closes it.
pub struct UdpBinding {
    ext: Arc<External>,
    handle: SocketHandle,
}

impl UdpBinding {
    /// Send one datagram from `src` to `dst` (dropped, as UDP may, if the interface cannot
    /// queue it even after a poll).
    pub fn send(&self, data: &[u8], src: IpAddr, dst: SockAddr) -> Result<usize, Errno> {
        let meta = udp::UdpMetadata {
            endpoint: endpoint(dst),
            local_address: Some(IpAddress::from(src)),
            meta: smoltcp::phy::PacketMeta::default(),
        };
        let first = self.ext.with(|inner| {
            let s = inner.sockets.get_mut::<udp::Socket>(self.handle);
            s.send_slice(data, meta)
        });
        match first {
            Ok(()) => Ok(data.len()),
            Err(udp::SendError::BufferFull) => {
                // The poll after the first try drained the queue as far as it could.
                let _ = self.ext.with(|inner| {
                    let s = inner.sockets.get_mut::<udp::Socket>(self.handle);
                    s.send_slice(data, meta)
                });
                Ok(data.len())
            }
            Err(udp::SendError::Unaddressable) => Err(Errno::ENETUNREACH),
        }
    }
}

impl Drop for UdpBinding {
    fn drop(&mut self) {
        self.ext.with(|inner| {
            inner.udp.remove(&self.handle);
            inner.sockets.remove(self.handle);
        });
    }
}

/// The `moat-net` thread: poll, sleep until a frame, a timer or a kick, again; ends with the
/// sandbox (when the last reference to the interface goes).
fn run(ext: &Weak<External>) {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let Some(ext) = ext.upgrade() else {
            return;
        };
        let (events, delay) = {
            let mut inner = ext.inner.guard();
            let events = ext.pump(&mut inner);
            let now = ext.now();
            let Inner { iface, sockets, .. } = &mut *inner;
            let delay = iface.poll_delay(now, sockets);
            // Wake at least once a second: the sandbox may have ended meanwhile.
            let delay = delay.map_or(std::time::Duration::from_secs(1), |d| {
                std::time::Duration::from_micros(d.total_micros())
                    .min(std::time::Duration::from_secs(1))
            });
            inner.sleep_until =
                Some(now + smoltcp::time::Duration::from_micros(delay.as_micros() as u64));
            (events, delay)
        };
        External::deliver(events);
        let timeout = rustix::time::Timespec {
            tv_sec: delay.as_secs() as i64,
            tv_nsec: i64::from(delay.subsec_nanos()),
        };
        let mut fds = [
            PollFd::new(&*ext.fd, PollFlags::IN),
            PollFd::new(&ext.wake, PollFlags::IN),
        ];
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
        if fds[1].revents().contains(PollFlags::IN) {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(&ext.wake, &mut b);
        }
        ext.inner.guard().sleep_until = None;
        drop(ext);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(gateway: Option<&str>) -> InterfaceConfig {
        InterfaceConfig {
            name: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 2],
            mtu: 1500,
            addrs: vec![("10.1.2.2".parse().unwrap(), 24)],
            gateway: gateway.map(|g| g.parse().unwrap()),
            gateway6: None,
        }
    }

    #[test]
    fn the_subnet_is_direct_and_the_rest_goes_through_the_gateway() {
        let c = config(None);
        let on_link = "10.1.2.77".parse().unwrap();
        assert_eq!(c.source_for(on_link), Some("10.1.2.2".parse().unwrap()));
        // No gateway: nothing beyond the subnet is reachable.
        assert_eq!(c.source_for("10.1.3.1".parse().unwrap()), None);
        let c = config(Some("10.1.2.1"));
        assert_eq!(
            c.source_for("192.0.2.9".parse().unwrap()),
            Some("10.1.2.2".parse().unwrap())
        );
        // No IPv6 address: an IPv6 destination has no source even with a gateway.
        assert_eq!(c.source_for("2001:db8::1".parse().unwrap()), None);
        assert!(c.is_local("10.1.2.2".parse().unwrap()));
        assert!(!c.is_local("10.1.2.1".parse().unwrap()));
    }

    #[test]
    fn prefixes_and_netmasks() {
        let a: IpAddr = "10.1.2.2".parse().unwrap();
        assert!(same_subnet(a, "10.1.2.255".parse().unwrap(), 24));
        assert!(!same_subnet(a, "10.1.3.1".parse().unwrap(), 24));
        assert!(same_subnet(a, "10.200.0.1".parse().unwrap(), 8));
        assert!(same_subnet(a, "1.1.1.1".parse().unwrap(), 0));
        assert!(!same_subnet(a, "::1".parse().unwrap(), 0));
        assert_eq!(InterfaceConfig::netmask_v4(24), [255, 255, 255, 0]);
        assert_eq!(InterfaceConfig::netmask_v4(0), [0, 0, 0, 0]);
        assert_eq!(InterfaceConfig::netmask_v4(32), [255; 4]);
        assert_eq!(InterfaceConfig::netmask_v4(200), [255; 4]);
    }
}
