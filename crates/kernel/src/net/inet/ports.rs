//! The port table of one protocol (TCP or UDP): who holds which port on which address, and
//! whether a new binding conflicts, by Linux's rules (`inet_bind_conflict`,
//! `udp_lib_lport_inuse`): two bindings of a port conflict when their addresses overlap,
//! unless both sockets set `SO_REUSEADDR` (and, for TCP, the holder is not listening) or both
//! set `SO_REUSEPORT` under the same user. A TCP connection closed actively leaves a
//! TIME_WAIT entry for a minute that blocks the port like a socket that is not listening.
//!
//! The table never locks a socket: what conflicts need (listening, reuse flags) is kept in
//! the entries, updated by the sockets, which may hold their own lock while they do.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Weak;
use std::time::{Duration, Instant};

use moat_abi::Errno;

use super::SockAddr;

/// Linux's default `net.ipv4.ip_local_port_range`.
pub const EPHEMERAL_FIRST: u16 = 32768;
pub const EPHEMERAL_LAST: u16 = 60999;
/// How long TIME_WAIT lasts (`TCP_TIMEWAIT_LEN`).
pub const TIME_WAIT: Duration = Duration::from_secs(60);

/// The addresses a binding receives on: one address or the wildcard of its family; `dual`
/// marks an IPv6 socket bound to `::` without `IPV6_V6ONLY`, which takes IPv4 too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub ip: IpAddr,
    pub dual: bool,
}

impl Binding {
    /// Whether a packet to `ip` may be delivered to this binding.
    pub fn covers(&self, ip: IpAddr) -> bool {
        match (self.ip, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => b.is_unspecified() || b == a,
            (IpAddr::V6(b), IpAddr::V6(a)) => b.is_unspecified() || b == a,
            (IpAddr::V6(_), IpAddr::V4(_)) => self.dual,
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }

    /// Whether some address is covered by both bindings.
    pub fn overlaps(&self, other: &Binding) -> bool {
        /// What a binding covers of one family.
        #[derive(PartialEq)]
        enum Reach<T> {
            Nothing,
            All,
            One(T),
        }
        fn v4(b: &Binding) -> Reach<Ipv4Addr> {
            match b.ip {
                IpAddr::V4(a) if a.is_unspecified() => Reach::All,
                IpAddr::V4(a) => Reach::One(a),
                IpAddr::V6(_) if b.dual => Reach::All,
                IpAddr::V6(_) => Reach::Nothing,
            }
        }
        fn v6(b: &Binding) -> Reach<Ipv6Addr> {
            match b.ip {
                IpAddr::V6(a) if a.is_unspecified() => Reach::All,
                IpAddr::V6(a) => Reach::One(a),
                IpAddr::V4(_) => Reach::Nothing,
            }
        }
        fn meet<T: PartialEq>(x: &Reach<T>, y: &Reach<T>) -> bool {
            match (x, y) {
                (Reach::Nothing, _) | (_, Reach::Nothing) => false,
                (Reach::All, _) | (_, Reach::All) => true,
                (a, b) => a == b,
            }
        }
        meet(&v4(self), &v4(other)) || meet(&v6(self), &v6(other))
    }

    /// How closely this binding matches a packet to `ip` (a specific address beats the
    /// wildcard), or `None` if it does not take it.
    pub fn score(&self, ip: IpAddr) -> Option<u32> {
        if !self.covers(ip) {
            return None;
        }
        let specific = match self.ip {
            IpAddr::V4(a) => !a.is_unspecified(),
            IpAddr::V6(a) => !a.is_unspecified(),
        };
        Some(if specific { 4 } else { 2 })
    }
}

/// One holder of a port.
pub struct Entry<T> {
    /// The socket's inode number (unique): how it finds its own entry again.
    pub id: u64,
    pub bind: Binding,
    pub reuseaddr: bool,
    pub reuseport: bool,
    /// The owner's user (`SO_REUSEPORT` shares only within one user).
    pub uid: u32,
    pub listening: bool,
    /// The peer of a connected socket (UDP delivery filters on it).
    pub remote: Option<SockAddr>,
    /// A TIME_WAIT remnant: when it expires. It has no owner.
    pub time_wait: Option<Instant>,
    pub owner: Weak<T>,
}

impl<T> Entry<T> {
    pub fn new(id: u64, bind: Binding, uid: u32, owner: Weak<T>) -> Entry<T> {
        Entry {
            id,
            bind,
            reuseaddr: false,
            reuseport: false,
            uid,
            listening: false,
            remote: None,
            time_wait: None,
            owner,
        }
    }
}

/// Which protocol's conflict rules apply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The most TIME_WAIT remnants kept at once (Linux's `tcp_max_tw_buckets` stops keeping them
/// past its limit too, and the connection simply closes).
const MAX_TIME_WAIT: usize = 65536;

/// A protocol's ports.
pub struct PortTable<T> {
    proto: Proto,
    /// The sockets holding each port.
    ports: BTreeMap<u16, Vec<Entry<T>>>,
    /// TIME_WAIT remnants per port, oldest first. Apart from the live holders: a busy server
    /// that closes first leaves thousands on its port, and delivery (`holders`) never needs
    /// them; only binding does.
    waits: BTreeMap<u16, VecDeque<Entry<T>>>,
    wait_count: usize,
    /// Where the next ephemeral search starts.
    cursor: u32,
}

impl<T> PortTable<T> {
    pub fn new(proto: Proto) -> PortTable<T> {
        let span = u64::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        PortTable {
            proto,
            ports: BTreeMap::new(),
            waits: BTreeMap::new(),
            wait_count: 0,
            cursor: (crate::random_u64() % span) as u32,
        }
    }

    /// Forget TIME_WAIT remnants that have expired on `port` (they expire in the order they
    /// came).
    fn purge(&mut self, port: u16) {
        let now = Instant::now();
        if let Some(q) = self.waits.get_mut(&port) {
            while q
                .front()
                .is_some_and(|e| e.time_wait.is_none_or(|t| t <= now))
            {
                q.pop_front();
                self.wait_count -= 1;
            }
            if q.is_empty() {
                self.waits.remove(&port);
            }
        }
    }

    /// Whether `new` may not hold `port` next to its current holders and remnants.
    fn conflicts(&self, port: u16, new: &Entry<T>) -> bool {
        let holders = self.ports.get(&port).into_iter().flatten();
        let remnants = self.waits.get(&port).into_iter().flatten();
        holders.chain(remnants).any(|old| {
            if old.id == new.id && old.time_wait.is_none() || !old.bind.overlaps(&new.bind) {
                return false;
            }
            let reuse =
                new.reuseaddr && old.reuseaddr && (self.proto == Proto::Udp || !old.listening);
            let reuseport =
                new.reuseport && old.reuseport && (old.time_wait.is_some() || old.uid == new.uid);
            !reuse && !reuseport
        })
    }

    /// Give `entry` the port `port`, or a free ephemeral port if `port` is 0 (`EADDRINUSE`
    /// when taken or, for an ephemeral port, when none is left). Returns the port.
    pub fn bind(&mut self, port: u16, entry: Entry<T>) -> Result<u16, Errno> {
        if port != 0 {
            self.purge(port);
            if self.conflicts(port, &entry) {
                return Err(Errno::EADDRINUSE);
            }
            self.ports.entry(port).or_default().push(entry);
            return Ok(port);
        }
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        for _ in 0..span {
            let p = EPHEMERAL_FIRST + (self.cursor % span) as u16;
            self.cursor = self.cursor.wrapping_add(1);
            self.purge(p);
            if !self.ports.contains_key(&p) && !self.waits.contains_key(&p) {
                self.ports.entry(p).or_default().push(entry);
                return Ok(p);
            }
        }
        Err(Errno::EADDRINUSE)
    }

    /// Add `entry` to `port` without a check: an accepted connection shares its listener's
    /// port, as Linux's `__inet_inherit_port` does.
    pub fn attach(&mut self, port: u16, entry: Entry<T>) {
        self.ports.entry(port).or_default().push(entry);
    }

    /// Drop socket `id`'s entry on `port`.
    pub fn release(&mut self, port: u16, id: u64) {
        if let Some(v) = self.ports.get_mut(&port) {
            v.retain(|e| e.id != id);
            if v.is_empty() {
                self.ports.remove(&port);
            }
        }
    }

    /// Change socket `id`'s entry on `port`.
    pub fn update(&mut self, port: u16, id: u64, f: impl FnOnce(&mut Entry<T>)) {
        if let Some(e) = self
            .ports
            .get_mut(&port)
            .and_then(|v| v.iter_mut().find(|e| e.id == id))
        {
            f(e);
        }
    }

    /// Mark socket `id` listening on `port`, checking the port again as Linux's `listen`
    /// does (two `SO_REUSEADDR` sockets may share a port, but only one may listen).
    pub fn listen(&mut self, port: u16, id: u64) -> Result<(), Errno> {
        self.purge(port);
        let Some(v) = self.ports.get_mut(&port) else {
            return Err(Errno::EADDRINUSE);
        };
        let Some(i) = v.iter().position(|e| e.id == id) else {
            return Err(Errno::EADDRINUSE);
        };
        let mut entry = v.remove(i);
        entry.listening = true;
        let conflict = self.conflicts(port, &entry);
        if conflict {
            entry.listening = false;
        }
        self.ports.entry(port).or_default().insert(i, entry);
        if conflict {
            Err(Errno::EADDRINUSE)
        } else {
            Ok(())
        }
    }

    /// Leave a TIME_WAIT remnant of a connection closed actively: it holds `port` for a
    /// minute, with the socket's `SO_REUSEADDR`/`SO_REUSEPORT`.
    pub fn time_wait(&mut self, port: u16, mut entry: Entry<T>) {
        self.purge(port);
        if self.wait_count >= MAX_TIME_WAIT {
            return;
        }
        entry.time_wait = Some(Instant::now() + TIME_WAIT);
        entry.owner = Weak::new();
        entry.listening = false;
        self.waits.entry(port).or_default().push_back(entry);
        self.wait_count += 1;
    }

    /// The sockets holding `port`, for delivery (TIME_WAIT remnants take nothing).
    pub fn holders(&self, port: u16) -> &[Entry<T>] {
        self.ports.get(&port).map_or(&[], Vec::as_slice)
    }

    /// Every entry with its port (for `/proc/net`), TIME_WAIT remnants last.
    pub fn all(&self) -> impl Iterator<Item = (u16, &Entry<T>)> {
        let now = Instant::now();
        let live = self
            .ports
            .iter()
            .flat_map(|(&p, v)| v.iter().map(move |e| (p, e)));
        let remnants = self.waits.iter().flat_map(move |(&p, q)| {
            q.iter()
                .filter(move |e| e.time_wait.is_some_and(|t| t > now))
                .map(move |e| (p, e))
        });
        live.chain(remnants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, dual: bool) -> Binding {
        Binding {
            ip: ip.parse().unwrap(),
            dual,
        }
    }

    fn entry(id: u64, bind: Binding, reuseaddr: bool) -> Entry<()> {
        let mut e = Entry::new(id, bind, 0, Weak::new());
        e.reuseaddr = reuseaddr;
        e
    }

    #[test]
    fn overlap_follows_families_and_v6only() {
        assert!(b("127.0.0.1", false).overlaps(&b("0.0.0.0", false)));
        assert!(!b("127.0.0.1", false).overlaps(&b("127.0.0.2", false)));
        assert!(b("127.0.0.1", false).overlaps(&b("::", true)));
        assert!(!b("127.0.0.1", false).overlaps(&b("::", false)));
        assert!(!b("0.0.0.0", false).overlaps(&b("::1", false)));
        assert!(b("::1", false).overlaps(&b("::", false)));
    }

    #[test]
    fn reuseaddr_shares_until_one_listens() {
        let mut t = PortTable::<()>::new(Proto::Tcp);
        let any = b("0.0.0.0", false);
        assert_eq!(t.bind(5000, entry(1, any, true)), Ok(5000));
        assert_eq!(t.bind(5000, entry(2, any, true)), Ok(5000));
        assert_eq!(t.listen(5000, 1), Ok(()));
        assert_eq!(t.listen(5000, 2), Err(Errno::EADDRINUSE));
        assert_eq!(t.bind(5000, entry(3, any, true)), Err(Errno::EADDRINUSE));
        assert_eq!(t.bind(5000, entry(4, any, false)), Err(Errno::EADDRINUSE));
        t.release(5000, 1);
        t.release(5000, 2);
        assert_eq!(t.bind(5000, entry(5, any, false)), Ok(5000));
    }

    #[test]
    fn time_wait_yields_only_to_reuseaddr_on_both_sides() {
        let mut t = PortTable::<()>::new(Proto::Tcp);
        let lo = b("127.0.0.1", false);
        t.time_wait(6000, entry(1, lo, true));
        t.time_wait(6001, entry(2, lo, false));
        assert_eq!(t.bind(6000, entry(3, lo, false)), Err(Errno::EADDRINUSE));
        assert_eq!(t.bind(6000, entry(4, lo, true)), Ok(6000));
        assert_eq!(t.bind(6001, entry(5, lo, true)), Err(Errno::EADDRINUSE));
    }

    #[test]
    fn time_wait_remnants_are_not_holders() {
        let mut t = PortTable::<()>::new(Proto::Tcp);
        let lo = b("127.0.0.1", false);
        let mut l = entry(1, lo, true);
        l.listening = true;
        t.attach(8000, l);
        for id in 2..1000 {
            t.time_wait(8000, entry(id, lo, true));
        }
        assert_eq!(t.holders(8000).len(), 1);
        assert_eq!(t.all().count(), 999);
        assert_eq!(t.bind(8000, entry(5000, lo, false)), Err(Errno::EADDRINUSE));
    }

    #[test]
    fn ephemeral_ports_are_free_and_in_range() {
        let mut t = PortTable::<()>::new(Proto::Udp);
        let mut seen = std::collections::HashSet::new();
        for id in 0..100 {
            let p = t.bind(0, entry(id, b("0.0.0.0", false), false)).unwrap();
            assert!((EPHEMERAL_FIRST..=EPHEMERAL_LAST).contains(&p));
            assert!(seen.insert(p));
        }
    }
}
