//! Socket options of TCP and UDP sockets at the levels Linux gives them: `SOL_SOCKET`,
//! `IPPROTO_IP`, `IPPROTO_IPV6` (IPv6 sockets), `IPPROTO_TCP` and `IPPROTO_UDP`, with
//! Linux's defaults, ranges and errors. Most only need remembering (a loopback path has no
//! TTL to apply); the sockets read those that change behaviour (`SO_REUSEADDR`, buffer
//! sizes, time-outs, `SO_LINGER`, `IPV6_V6ONLY`, `SO_BROADCAST`, `TCP_MAXSEG`).
//!
//! An option of a level the socket does not have is `EOPNOTSUPP` to `getsockopt` and
//! `ENOPROTOOPT` to `setsockopt`, an unknown name of a level it has `ENOPROTOOPT`, as on
//! Linux.

use std::time::Duration;

use moat_abi::Errno;

use crate::net::SOL_SOCKET;

pub const SOL_IP: i32 = 0;
pub const SOL_TCP: i32 = 6;
pub const SOL_UDP: i32 = 17;
pub const SOL_IPV6: i32 = 41;

pub const SO_DEBUG: i32 = 1;
pub const SO_REUSEADDR: i32 = 2;
pub const SO_TYPE: i32 = 3;
pub const SO_ERROR: i32 = 4;
pub const SO_DONTROUTE: i32 = 5;
pub const SO_BROADCAST: i32 = 6;
pub const SO_SNDBUF: i32 = 7;
pub const SO_RCVBUF: i32 = 8;
pub const SO_KEEPALIVE: i32 = 9;
pub const SO_OOBINLINE: i32 = 10;
pub const SO_NO_CHECK: i32 = 11;
pub const SO_PRIORITY: i32 = 12;
pub const SO_LINGER: i32 = 13;
pub const SO_REUSEPORT: i32 = 15;
pub const SO_PASSCRED: i32 = 16;
pub const SO_PEERCRED: i32 = 17;
pub const SO_RCVLOWAT: i32 = 18;
pub const SO_SNDLOWAT: i32 = 19;
pub const SO_RCVTIMEO: i32 = 20;
pub const SO_SNDTIMEO: i32 = 21;
pub const SO_BINDTODEVICE: i32 = 25;
pub const SO_TIMESTAMP: i32 = 29;
pub const SO_ACCEPTCONN: i32 = 30;
pub const SO_SNDBUFFORCE: i32 = 32;
pub const SO_RCVBUFFORCE: i32 = 33;
pub const SO_TIMESTAMPNS: i32 = 35;
pub const SO_MARK: i32 = 36;
pub const SO_TIMESTAMPING: i32 = 37;
pub const SO_PROTOCOL: i32 = 38;
pub const SO_DOMAIN: i32 = 39;
pub const SO_RXQ_OVFL: i32 = 40;
pub const SO_PEEK_OFF: i32 = 42;
pub const SO_BUSY_POLL: i32 = 46;
pub const SO_INCOMING_CPU: i32 = 49;
pub const SO_COOKIE: i32 = 57;
pub const SO_ZEROCOPY: i32 = 60;
pub const SO_RCVTIMEO_NEW: i32 = 66;
pub const SO_SNDTIMEO_NEW: i32 = 67;

pub const IP_TOS: i32 = 1;
pub const IP_TTL: i32 = 2;
pub const IP_HDRINCL: i32 = 3;
pub const IP_OPTIONS: i32 = 4;
pub const IP_MTU_DISCOVER: i32 = 10;
pub const IP_MTU: i32 = 14;
pub const IP_MULTICAST_IF: i32 = 32;
pub const IP_ADD_MEMBERSHIP: i32 = 35;
pub const IP_DROP_MEMBERSHIP: i32 = 36;

pub const IPV6_UNICAST_HOPS: i32 = 16;
pub const IPV6_ADD_MEMBERSHIP: i32 = 20;
pub const IPV6_DROP_MEMBERSHIP: i32 = 21;
pub const IPV6_MTU: i32 = 24;
pub const IPV6_V6ONLY: i32 = 26;
pub const IPV6_TCLASS: i32 = 67;

pub const TCP_NODELAY: i32 = 1;
pub const TCP_MAXSEG: i32 = 2;
pub const TCP_CORK: i32 = 3;
pub const TCP_KEEPIDLE: i32 = 4;
pub const TCP_LINGER2: i32 = 8;
pub const TCP_DEFER_ACCEPT: i32 = 9;
pub const TCP_WINDOW_CLAMP: i32 = 10;
pub const TCP_INFO: i32 = 11;
pub const TCP_CONGESTION: i32 = 13;

/// Linux's default `net.core.wmem_max`/`rmem_max`: the most `SO_SNDBUF`/`SO_RCVBUF` set.
const BUF_MAX: usize = 212_992;
/// The smallest buffers (`SOCK_MIN_SNDBUF`, `SOCK_MIN_RCVBUF`).
const MIN_SNDBUF: usize = 4608;
const MIN_RCVBUF: usize = 2304;
/// `net.ipv4.tcp_fin_timeout` and its ceiling for `TCP_LINGER2`, in seconds.
const FIN_TIMEOUT: i32 = 60;
const FIN_TIMEOUT_MAX: i32 = 120;
/// The MSS a TCP socket reports before it connects (`TCP_MSS_DEFAULT`) and the range
/// `TCP_MAXSEG` accepts.
pub const MSS_DEFAULT: i32 = 536;
const MSS_MIN: i32 = 88;
const MSS_MAX: i32 = 65535;
/// `TCP_CA_NAME_MAX`, and the congestion controls built in.
const CA_NAME_MAX: usize = 16;
const CONGESTION: &[&str] = &["cubic", "reno"];

/// Which sockets have an option.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Any,
    Tcp,
    Udp,
}

/// How a value is checked and stored.
#[derive(Clone, Copy)]
enum Rule {
    /// Any value; nonzero reads back as 1.
    Bool,
    /// Within the range (inclusive), else `EINVAL`.
    Range(i32, i32),
    /// A hop limit: -1 restores the default; otherwise within the range.
    Hops(i32, i32),
    /// Any value, kept as it is.
    Int,
    /// `IP_TOS`/`IPV6_TCLASS`: one byte (`IPV6_TCLASS` also takes -1 for the default).
    Tos,
    /// `SO_RCVLOWAT`: at least 1; a negative value means `INT_MAX`.
    LowAt,
    /// `SO_PRIORITY`: 0..6 without `CAP_NET_RAW` or `CAP_NET_ADMIN`.
    Priority,
    /// `TCP_LINGER2`: negative is -1, capped at 120 seconds, 0 reads as the default.
    Linger2,
    /// `TCP_DEFER_ACCEPT`: seconds, kept as a number of SYN-ACK retransmits and read back
    /// as the seconds those cover.
    DeferAccept,
    /// `TCP_WINDOW_CLAMP`: at least half the smallest receive buffer.
    WindowClamp,
    /// Not settable (`ENOPROTOOPT`); reads the default.
    ReadOnly,
}

struct Spec {
    level: i32,
    name: i32,
    who: Who,
    default: i32,
    rule: Rule,
}

const fn spec(level: i32, name: i32, who: Who, default: i32, rule: Rule) -> Spec {
    Spec {
        level,
        name,
        who,
        default,
        rule,
    }
}

/// The options kept as plain integers.
const SPECS: &[Spec] = &[
    spec(SOL_SOCKET, SO_DEBUG, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_REUSEADDR, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_DONTROUTE, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_BROADCAST, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_KEEPALIVE, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_OOBINLINE, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_NO_CHECK, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_PRIORITY, Who::Any, 0, Rule::Priority),
    spec(SOL_SOCKET, SO_REUSEPORT, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_RCVLOWAT, Who::Any, 1, Rule::LowAt),
    spec(SOL_SOCKET, SO_SNDLOWAT, Who::Any, 1, Rule::ReadOnly),
    spec(SOL_SOCKET, SO_TIMESTAMP, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_TIMESTAMPNS, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_TIMESTAMPING, Who::Any, 0, Rule::Int),
    spec(SOL_SOCKET, SO_MARK, Who::Any, 0, Rule::Int),
    spec(SOL_SOCKET, SO_RXQ_OVFL, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_BUSY_POLL, Who::Any, 0, Rule::Int),
    spec(SOL_SOCKET, SO_INCOMING_CPU, Who::Any, -1, Rule::Int),
    spec(SOL_SOCKET, SO_ZEROCOPY, Who::Any, 0, Rule::Bool),
    spec(SOL_SOCKET, SO_PEEK_OFF, Who::Any, -1, Rule::ReadOnly),
    spec(SOL_IP, IP_TOS, Who::Any, 0, Rule::Tos),
    spec(SOL_IP, IP_TTL, Who::Any, 64, Rule::Hops(1, 255)),
    spec(SOL_IP, IP_HDRINCL, Who::Any, 0, Rule::ReadOnly),
    spec(SOL_IP, 6, Who::Any, 0, Rule::Bool),  // IP_RECVOPTS
    spec(SOL_IP, 7, Who::Any, 0, Rule::Bool),  // IP_RETOPTS
    spec(SOL_IP, 8, Who::Any, 0, Rule::Bool),  // IP_PKTINFO
    spec(SOL_IP, 11, Who::Any, 0, Rule::Bool), // IP_RECVERR
    spec(SOL_IP, 12, Who::Any, 0, Rule::Bool), // IP_RECVTTL
    spec(SOL_IP, 13, Who::Any, 0, Rule::Bool), // IP_RECVTOS
    spec(SOL_IP, IP_MTU_DISCOVER, Who::Any, 1, Rule::Range(0, 5)),
    spec(SOL_IP, 15, Who::Any, 0, Rule::Bool), // IP_FREEBIND
    spec(SOL_IP, 18, Who::Any, 0, Rule::Bool), // IP_PASSSEC
    spec(SOL_IP, 19, Who::Any, 0, Rule::Bool), // IP_TRANSPARENT
    spec(SOL_IP, 20, Who::Any, 0, Rule::Bool), // IP_RECVORIGDSTADDR
    spec(SOL_IP, 22, Who::Any, 0, Rule::Bool), // IP_NODEFRAG
    spec(SOL_IP, 24, Who::Any, 0, Rule::Bool), // IP_BIND_ADDRESS_NO_PORT
    spec(SOL_IP, 33, Who::Any, 1, Rule::Hops(0, 255)), // IP_MULTICAST_TTL
    spec(SOL_IP, 34, Who::Any, 1, Rule::Bool), // IP_MULTICAST_LOOP
    spec(SOL_IP, 49, Who::Any, 1, Rule::Bool), // IP_MULTICAST_ALL
    spec(
        SOL_IPV6,
        IPV6_UNICAST_HOPS,
        Who::Any,
        64,
        Rule::Hops(0, 255),
    ),
    spec(SOL_IPV6, 17, Who::Any, 0, Rule::Int), // IPV6_MULTICAST_IF
    spec(SOL_IPV6, 18, Who::Any, 1, Rule::Hops(0, 255)), // IPV6_MULTICAST_HOPS
    spec(SOL_IPV6, 19, Who::Any, 1, Rule::Range(0, 1)), // IPV6_MULTICAST_LOOP
    spec(SOL_IPV6, 23, Who::Any, 1, Rule::Range(0, 5)), // IPV6_MTU_DISCOVER
    spec(SOL_IPV6, 25, Who::Any, 0, Rule::Bool), // IPV6_RECVERR
    spec(SOL_IPV6, 49, Who::Any, 0, Rule::Bool), // IPV6_RECVPKTINFO
    spec(SOL_IPV6, 51, Who::Any, 0, Rule::Bool), // IPV6_RECVHOPLIMIT
    spec(SOL_IPV6, 60, Who::Any, 0, Rule::Bool), // IPV6_RECVPATHMTU
    spec(SOL_IPV6, 62, Who::Any, 0, Rule::Bool), // IPV6_DONTFRAG
    spec(SOL_IPV6, 66, Who::Any, 0, Rule::Bool), // IPV6_RECVTCLASS
    spec(SOL_IPV6, IPV6_TCLASS, Who::Any, 0, Rule::Tos),
    spec(SOL_IPV6, 70, Who::Any, 1, Rule::Bool), // IPV6_AUTOFLOWLABEL
    spec(SOL_IPV6, 74, Who::Any, 0, Rule::Bool), // IPV6_RECVORIGDSTADDR
    spec(SOL_IPV6, 75, Who::Any, 0, Rule::Bool), // IPV6_TRANSPARENT
    spec(SOL_IPV6, 78, Who::Any, 0, Rule::Bool), // IPV6_FREEBIND
    spec(SOL_TCP, TCP_NODELAY, Who::Tcp, 0, Rule::Bool),
    spec(SOL_TCP, TCP_CORK, Who::Tcp, 0, Rule::Bool),
    spec(SOL_TCP, TCP_KEEPIDLE, Who::Tcp, 7200, Rule::Range(1, 32767)),
    spec(SOL_TCP, 5, Who::Tcp, 75, Rule::Range(1, 32767)), // TCP_KEEPINTVL
    spec(SOL_TCP, 6, Who::Tcp, 9, Rule::Range(1, 127)),    // TCP_KEEPCNT
    spec(SOL_TCP, 7, Who::Tcp, 6, Rule::Range(1, 127)),    // TCP_SYNCNT
    spec(SOL_TCP, TCP_LINGER2, Who::Tcp, 0, Rule::Linger2),
    spec(SOL_TCP, TCP_DEFER_ACCEPT, Who::Tcp, 0, Rule::DeferAccept),
    spec(SOL_TCP, TCP_WINDOW_CLAMP, Who::Tcp, 0, Rule::WindowClamp),
    spec(SOL_TCP, 12, Who::Tcp, 1, Rule::Bool), // TCP_QUICKACK
    spec(SOL_TCP, 16, Who::Tcp, 0, Rule::Bool), // TCP_THIN_LINEAR_TIMEOUTS
    spec(SOL_TCP, 18, Who::Tcp, 0, Rule::Range(0, i32::MAX)), // TCP_USER_TIMEOUT
    spec(SOL_TCP, 23, Who::Tcp, 0, Rule::Range(0, i32::MAX)), // TCP_FASTOPEN
    spec(SOL_TCP, 25, Who::Tcp, 0, Rule::Int),  // TCP_NOTSENT_LOWAT
    spec(SOL_TCP, 30, Who::Tcp, 0, Rule::Bool), // TCP_FASTOPEN_CONNECT
    spec(SOL_UDP, 1, Who::Udp, 0, Rule::Bool),  // UDP_CORK
    spec(SOL_UDP, 103, Who::Udp, 0, Rule::Range(0, 65535)), // UDP_SEGMENT
    spec(SOL_UDP, 104, Who::Udp, 0, Rule::Bool), // UDP_GRO
];

/// What kind of socket asks: its protocol and whether it is IPv6.
#[derive(Clone, Copy)]
pub struct Kind {
    pub tcp: bool,
    pub v6: bool,
    /// An ICMP echo socket: neither TCP's nor UDP's level.
    pub icmp: bool,
}

impl Kind {
    /// Whether the socket has options at `level` at all.
    fn has_level(self, level: i32) -> bool {
        match level {
            SOL_SOCKET | SOL_IP => true,
            SOL_IPV6 => self.v6,
            SOL_TCP => self.tcp,
            SOL_UDP => !self.tcp && !self.icmp,
            _ => false,
        }
    }

    fn has(self, who: Who) -> bool {
        match who {
            Who::Any => true,
            Who::Tcp => self.tcp,
            Who::Udp => !self.tcp && !self.icmp,
        }
    }
}

/// One socket's options.
pub struct Options {
    kind: Kind,
    ints: Vec<i32>,
    /// `SO_LINGER`: the linger time in seconds when on.
    pub linger: Option<i32>,
    pub sndbuf: usize,
    pub rcvbuf: usize,
    /// The buffer sizes were set by the application (Linux stops tuning them).
    pub sndbuf_locked: bool,
    pub rcvbuf_locked: bool,
    pub send_timeout: Option<Duration>,
    pub recv_timeout: Option<Duration>,
    /// `SO_BINDTODEVICE`.
    pub device: Option<Vec<u8>>,
    pub v6only: bool,
    /// `TCP_MAXSEG` as set (0: not set).
    pub user_mss: i32,
    congestion: &'static str,
}

fn int_of(value: &[u8]) -> Result<i32, Errno> {
    let b: [u8; 4] = value
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Errno::EINVAL)?;
    Ok(i32::from_le_bytes(b))
}

/// A `struct timeval` option: `EDOM` for bad microseconds, `None` for zero (no time-out);
/// a negative time is no time-out too, as Linux treats it.
pub(crate) fn timeval_of(value: &[u8]) -> Result<Option<Duration>, Errno> {
    let word = |i: usize| -> Result<i64, Errno> {
        let b: [u8; 8] = value
            .get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or(Errno::EINVAL)?;
        Ok(i64::from_le_bytes(b))
    };
    let (sec, usec) = (word(0)?, word(8)?);
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    if sec < 0 || (sec == 0 && usec == 0) {
        return Ok(None);
    }
    Ok(Some(
        Duration::from_secs(sec as u64) + Duration::from_micros(usec as u64),
    ))
}

pub(crate) fn timeval_bytes(t: Option<Duration>) -> Vec<u8> {
    let t = t.unwrap_or_default();
    let mut v = (t.as_secs() as i64).to_le_bytes().to_vec();
    v.extend_from_slice(&i64::from(t.subsec_micros()).to_le_bytes());
    v
}

/// `TCP_DEFER_ACCEPT`: the SYN-ACK retransmits (1 s, doubling, at most 120 s each) whose
/// waits cover `secs` (Linux's `secs_to_retrans`), and back (`retrans_to_secs`).
fn secs_to_retrans(secs: i32) -> i32 {
    if secs <= 0 {
        return 0;
    }
    let (mut timeout, mut period, mut res) = (1, 1, 1);
    while secs > period && res < 255 {
        res += 1;
        timeout = (timeout * 2).min(120);
        period += timeout;
    }
    res
}

fn retrans_to_secs(retrans: i32) -> i32 {
    if retrans <= 0 {
        return 0;
    }
    let (mut timeout, mut period) = (1, 1);
    for _ in 1..retrans {
        timeout = (timeout * 2).min(120);
        period += timeout;
    }
    period
}

impl Options {
    /// The defaults of a new socket (buffer sizes: Linux's `tcp_wmem`/`tcp_rmem` defaults
    /// for TCP, `wmem_default`/`rmem_default` for UDP).
    pub fn new(kind: Kind) -> Options {
        let (sndbuf, rcvbuf) = if kind.tcp {
            (16384, 131_072)
        } else {
            (212_992, 212_992)
        };
        // Ping sockets start with `SO_REUSEADDR` on (`INET_PROTOSW_REUSE`): identifiers are
        // shared unless a socket turns it off.
        let ints = SPECS
            .iter()
            .map(|s| match (s.level, s.name) {
                (SOL_SOCKET, SO_REUSEADDR) if kind.icmp => 1,
                _ => s.default,
            })
            .collect();
        Options {
            kind,
            ints,
            linger: None,
            sndbuf,
            rcvbuf,
            sndbuf_locked: false,
            rcvbuf_locked: false,
            send_timeout: None,
            recv_timeout: None,
            device: None,
            v6only: false,
            user_mss: 0,
            congestion: CONGESTION[0],
        }
    }

    /// A copy for a connection accepted by a listener with these options.
    #[must_use]
    pub fn inherit(&self) -> Options {
        Options {
            kind: self.kind,
            ints: self.ints.clone(),
            linger: self.linger,
            sndbuf: self.sndbuf,
            rcvbuf: self.rcvbuf,
            sndbuf_locked: self.sndbuf_locked,
            rcvbuf_locked: self.rcvbuf_locked,
            send_timeout: self.send_timeout,
            recv_timeout: self.recv_timeout,
            device: self.device.clone(),
            v6only: self.v6only,
            user_mss: self.user_mss,
            congestion: self.congestion,
        }
    }

    fn index(level: i32, name: i32) -> Option<usize> {
        SPECS
            .iter()
            .position(|s| s.level == level && s.name == name)
    }

    /// An integer option's current value (its default if unknown).
    pub fn int(&self, level: i32, name: i32) -> i32 {
        Self::index(level, name).map_or(0, |i| self.ints[i])
    }

    pub fn flag(&self, level: i32, name: i32) -> bool {
        self.int(level, name) != 0
    }

    /// `getsockopt` of a stored option.
    pub fn get(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        if !self.kind.has_level(level) {
            return Err(Errno::EOPNOTSUPP);
        }
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        match (level, name) {
            (SOL_SOCKET, SO_SNDBUF) => return int(self.sndbuf as i32),
            (SOL_SOCKET, SO_RCVBUF) => return int(self.rcvbuf as i32),
            (SOL_SOCKET, SO_LINGER) => {
                let mut v = i32::from(self.linger.is_some()).to_le_bytes().to_vec();
                v.extend_from_slice(&self.linger.unwrap_or(0).to_le_bytes());
                return Ok(v);
            }
            (SOL_SOCKET, SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
                return Ok(timeval_bytes(self.recv_timeout))
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
                return Ok(timeval_bytes(self.send_timeout))
            }
            (SOL_SOCKET, SO_BINDTODEVICE) => {
                return Ok(self.device.clone().map_or_else(Vec::new, |mut d| {
                    d.push(0);
                    d
                }))
            }
            (SOL_SOCKET, SO_PASSCRED) => return Err(Errno::EOPNOTSUPP),
            (SOL_SOCKET, SO_COOKIE) => return Ok(0u64.to_le_bytes().to_vec()),
            (SOL_IP, IP_OPTIONS) => return Ok(Vec::new()),
            (SOL_IP, IP_MULTICAST_IF) => return Ok(vec![0; 4]),
            (SOL_IPV6, IPV6_V6ONLY) => return int(i32::from(self.v6only)),
            (SOL_TCP, TCP_CONGESTION) => {
                let mut v = self.congestion.as_bytes().to_vec();
                v.resize(CA_NAME_MAX, 0);
                return Ok(v);
            }
            _ => {}
        }
        let i = Self::index(level, name)
            .filter(|&i| self.kind.has(SPECS[i].who))
            .ok_or(Errno::ENOPROTOOPT)?;
        let v = self.ints[i];
        let v = match SPECS[i].rule {
            Rule::Linger2 if v == 0 => FIN_TIMEOUT,
            Rule::DeferAccept => retrans_to_secs(v),
            _ => v,
        };
        int(v)
    }

    /// `setsockopt` of a stored option, by a caller with these credentials (the forced
    /// buffer sizes and `SO_DEBUG` need `CAP_NET_ADMIN`; marks and high priorities
    /// `CAP_NET_RAW` or `CAP_NET_ADMIN`).
    pub fn set(
        &mut self,
        level: i32,
        name: i32,
        value: &[u8],
        creds: &crate::Credentials,
    ) -> Result<(), Errno> {
        use crate::capability::Cap;
        let net_admin = creds.has(Cap::NetAdmin);
        let net_raw = net_admin || creds.has(Cap::NetRaw);
        if !self.kind.has_level(level) {
            return Err(Errno::ENOPROTOOPT);
        }
        // The IP level takes a single byte for an integer, as Linux's does.
        let int = || -> Result<i32, Errno> {
            match value.len() {
                0 if level == SOL_IP => Ok(0),
                1..=3 if level == SOL_IP => Ok(i32::from(value[0])),
                _ => int_of(value),
            }
        };
        // Linux doubles a buffer size (for its bookkeeping), within limits.
        let size = |v: i32, limit: bool| -> usize {
            let v = v as u32 as usize;
            if limit {
                v.min(BUF_MAX) * 2
            } else {
                v.min(i32::MAX as usize / 2) * 2
            }
        };
        match (level, name) {
            (SOL_SOCKET, SO_SNDBUF | SO_SNDBUFFORCE) => {
                if name == SO_SNDBUFFORCE && !net_admin {
                    return Err(Errno::EPERM);
                }
                self.sndbuf = size(int()?, name == SO_SNDBUF).max(MIN_SNDBUF);
                self.sndbuf_locked = true;
                return Ok(());
            }
            (SOL_SOCKET, SO_RCVBUF | SO_RCVBUFFORCE) => {
                if name == SO_RCVBUFFORCE && !net_admin {
                    return Err(Errno::EPERM);
                }
                self.rcvbuf = size(int()?, name == SO_RCVBUF).max(MIN_RCVBUF);
                self.rcvbuf_locked = true;
                return Ok(());
            }
            (SOL_SOCKET, SO_LINGER) => {
                if value.len() < 8 {
                    return Err(Errno::EINVAL);
                }
                let on = int_of(&value[..4])?;
                let secs = int_of(&value[4..8])?;
                self.linger = (on != 0).then_some(secs.max(0));
                return Ok(());
            }
            (SOL_SOCKET, SO_RCVTIMEO | SO_RCVTIMEO_NEW) => {
                self.recv_timeout = timeval_of(value)?;
                return Ok(());
            }
            (SOL_SOCKET, SO_SNDTIMEO | SO_SNDTIMEO_NEW) => {
                self.send_timeout = timeval_of(value)?;
                return Ok(());
            }
            (SOL_SOCKET, SO_BINDTODEVICE) => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                let name = &value[..end.min(16)];
                if name.is_empty() {
                    self.device = None;
                } else if name == crate::net::iface::LO_NAME {
                    self.device = Some(name.to_vec());
                } else {
                    return Err(Errno::ENODEV);
                }
                return Ok(());
            }
            (SOL_SOCKET, SO_PASSCRED) => return Err(Errno::EOPNOTSUPP),
            (SOL_SOCKET, SO_PEEK_OFF) => return Err(Errno::EOPNOTSUPP),
            (SOL_SOCKET, SO_DEBUG) if int()? != 0 && !net_admin => return Err(Errno::EACCES),
            (SOL_SOCKET, SO_MARK) if !net_raw => return Err(Errno::EPERM),
            (SOL_IP, IP_OPTIONS) => return Ok(()),
            (SOL_IP, IP_MULTICAST_IF) => return Ok(()),
            (SOL_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP)
            | (SOL_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) => {
                // No interface of the sandbox does multicast.
                return Err(if self.kind.tcp {
                    Errno::EPROTO
                } else {
                    Errno::ENODEV
                });
            }
            (SOL_IPV6, IPV6_V6ONLY) => {
                self.v6only = int_of(value)? != 0;
                return Ok(());
            }
            (SOL_IPV6, IPV6_MTU) => {
                let v = int_of(value)?;
                if v != 0 && v < 1280 {
                    return Err(Errno::EINVAL);
                }
                return Ok(());
            }
            (SOL_TCP, TCP_MAXSEG) => {
                let v = int_of(value)?;
                if v != 0 && !(MSS_MIN..=MSS_MAX).contains(&v) {
                    return Err(Errno::EINVAL);
                }
                self.user_mss = v;
                return Ok(());
            }
            (SOL_TCP, TCP_CONGESTION) => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                let asked = &value[..end.min(CA_NAME_MAX)];
                self.congestion = CONGESTION
                    .iter()
                    .find(|c| c.as_bytes() == asked)
                    .ok_or(Errno::ENOENT)?;
                return Ok(());
            }
            _ => {}
        }
        let i = Self::index(level, name)
            .filter(|&i| self.kind.has(SPECS[i].who))
            .ok_or(Errno::ENOPROTOOPT)?;
        let spec = &SPECS[i];
        let v = int()?;
        let stored = match spec.rule {
            Rule::Bool => i32::from(v != 0),
            Rule::Range(lo, hi) => {
                if !(lo..=hi).contains(&v) {
                    return Err(Errno::EINVAL);
                }
                v
            }
            Rule::Hops(lo, hi) => match v {
                -1 => spec.default,
                v if (lo..=hi).contains(&v) => v,
                _ => return Err(Errno::EINVAL),
            },
            Rule::Int => v,
            Rule::Tos => {
                if level == SOL_IPV6 {
                    match v {
                        -1 => 0,
                        0..=255 => v,
                        _ => return Err(Errno::EINVAL),
                    }
                } else if self.kind.tcp {
                    // TCP keeps the ECN bits to itself.
                    (v & 0xfc) | (self.ints[i] & 0x3)
                } else {
                    v & 0xff
                }
            }
            Rule::LowAt => match v {
                v if v < 0 => i32::MAX,
                0 => 1,
                v => v,
            },
            Rule::Priority => {
                if !(0..=6).contains(&v) && !net_raw {
                    return Err(Errno::EPERM);
                }
                v
            }
            Rule::Linger2 => {
                if v < 0 {
                    -1
                } else {
                    v.min(FIN_TIMEOUT_MAX)
                }
            }
            Rule::DeferAccept => secs_to_retrans(v),
            Rule::WindowClamp => {
                if v == 0 {
                    0
                } else {
                    v.max(MIN_RCVBUF as i32 / 2)
                }
            }
            Rule::ReadOnly => return Err(Errno::ENOPROTOOPT),
        };
        self.ints[i] = stored;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: Kind = Kind {
        tcp: true,
        v6: false,
        icmp: false,
    };

    fn get(o: &Options, level: i32, name: i32) -> i32 {
        int_of(&o.get(level, name).unwrap()).unwrap()
    }

    /// An unprivileged caller.
    fn user() -> crate::Credentials {
        crate::Credentials::for_user(1000, 1000, vec![])
    }

    #[test]
    fn defaults_and_ranges_are_linux_s() {
        let mut o = Options::new(TCP);
        assert_eq!(get(&o, SOL_TCP, TCP_KEEPIDLE), 7200);
        assert_eq!(get(&o, SOL_IP, IP_TTL), 64);
        assert_eq!(
            o.set(SOL_TCP, TCP_KEEPIDLE, &0i32.to_le_bytes(), &user()),
            Err(Errno::EINVAL)
        );
        o.set(SOL_TCP, TCP_DEFER_ACCEPT, &5i32.to_le_bytes(), &user())
            .unwrap();
        assert_eq!(get(&o, SOL_TCP, TCP_DEFER_ACCEPT), 7);
        o.set(SOL_TCP, TCP_LINGER2, &1000i32.to_le_bytes(), &user())
            .unwrap();
        assert_eq!(get(&o, SOL_TCP, TCP_LINGER2), 120);
        o.set(SOL_IP, IP_TOS, &0x13i32.to_le_bytes(), &user())
            .unwrap();
        assert_eq!(get(&o, SOL_IP, IP_TOS), 0x10);
        o.set(SOL_SOCKET, SO_SNDBUF, &1000i32.to_le_bytes(), &user())
            .unwrap();
        assert_eq!(get(&o, SOL_SOCKET, SO_SNDBUF), 4608);
    }

    #[test]
    fn levels_a_socket_lacks() {
        let mut o = Options::new(TCP);
        assert_eq!(o.get(SOL_IPV6, IPV6_V6ONLY), Err(Errno::EOPNOTSUPP));
        assert_eq!(
            o.set(SOL_UDP, 1, &1i32.to_le_bytes(), &user()),
            Err(Errno::ENOPROTOOPT)
        );
        assert_eq!(o.get(SOL_TCP, 99), Err(Errno::ENOPROTOOPT));
    }
}
