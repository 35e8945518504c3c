//! Unix domain sockets: `SOCK_STREAM`, `SOCK_SEQPACKET` and `SOCK_DGRAM`, as pairs
//! (`socketpair`) or by address — a pathname bound as a socket file in the VFS, or a name in
//! the abstract namespace — with fd passing (`SCM_RIGHTS`) and credentials.
//!
//! Every socket is an [`Endpoint`]: its receive queue, its state and its own wait queue. A
//! sender appends to the receiver's queue and notifies the receiver; a receiver that frees
//! room notifies the senders that found the queue full (they listed themselves in
//! `blocked_writers`, as Linux's `peer_wait` does), so each socket's readiness changes
//! always reach its own wait queue, which is what `poll`, `epoll` and blocking calls watch.
//! Two endpoints' locks are held together only by `connect`: the listener's, then the
//! connecting socket's (a listener never connects, so that order never reverses).
//!
//! A connection made by `connect` is a new, "embryo" endpoint already connected to the
//! client, queued in the listener's backlog until `accept` wraps it in a file. Connected
//! endpoints refer to each other; closing (the last file's drop) breaks the cycle.
//! Files in flight (passed but not yet received) are released when the queue holding them
//! is; a socket passed through itself stays alive (Linux collects such cycles; Moat does
//! not yet).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use moat_abi::{Errno, Stat};

use super::{Blocking, Incoming, Outgoing, Socket, Ucred};
use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::process::Guard;
use crate::task::Task;
use crate::wait::WaitQueue;

/// `POLLRDHUP`: the peer shut down its writing side.
pub const POLLRDHUP: u32 = 0x2000;
/// Linux's default and maximum socket buffer (`net.core.wmem_default`, `wmem_max`).
const DEFAULT_BUF: usize = 212_992;
const MAX_BUF: usize = 212_992;
/// The smallest buffers `SO_SNDBUF`/`SO_RCVBUF` set (Linux's `SOCK_MIN_SNDBUF`/`RCVBUF`).
const MIN_SNDBUF: usize = 4608;
const MIN_RCVBUF: usize = 2304;
/// Datagrams a socket queues from others before senders wait (`net.unix.max_dgram_qlen`).
const MAX_DGRAM_QLEN: usize = 10;
/// The largest backlog `listen` accepts (`net.core.somaxconn`).
const SOMAXCONN: usize = 4096;
/// `sockaddr_un`: the family, then 108 bytes of path.
const SOCKADDR_UN_LEN: usize = 110;

const FIONREAD: u32 = 0x541b;
const TIOCOUTQ: u32 = 0x5411;

const SOL_SOCKET_OPTIONS: &[(i32, i32)] = &[
    // Options Linux accepts on any socket that have no effect on a unix one; remembered so
    // that getsockopt returns what was set.
    (libc::SO_REUSEADDR, 0),
    (libc::SO_KEEPALIVE, 0),
    (libc::SO_BROADCAST, 0),
    (libc::SO_OOBINLINE, 0),
    (libc::SO_PRIORITY, 0),
    (libc::SO_REUSEPORT, 0),
    (libc::SO_RCVLOWAT, 1),
    (libc::SO_PASSSEC, 0),
    (libc::SO_TIMESTAMP, 0),
    (libc::SO_MARK, 0),
];

/// A unix socket address: a path, or a name in the abstract namespace (the bytes after the
/// leading NUL, which may contain NULs themselves).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    Path(Vec<u8>),
    Abstract(Vec<u8>),
}

impl UnixAddr {
    /// The `sockaddr_un` bytes `getsockname` returns: a path with its NUL, an abstract name
    /// exactly as bound.
    pub fn to_sockaddr(&self) -> Vec<u8> {
        let mut v = (libc::AF_UNIX as u16).to_le_bytes().to_vec();
        match self {
            UnixAddr::Path(p) => {
                v.extend_from_slice(p);
                v.push(0);
            }
            UnixAddr::Abstract(name) => {
                v.push(0);
                v.extend_from_slice(name);
            }
        }
        v
    }

    /// Parse a `sockaddr_un` of `raw.len()` bytes; `None` for an address of the family only.
    pub fn parse(raw: &[u8]) -> Result<Option<UnixAddr>, Errno> {
        if raw.len() < 2 || raw.len() > SOCKADDR_UN_LEN {
            return Err(Errno::EINVAL);
        }
        if u16::from_le_bytes([raw[0], raw[1]]) != libc::AF_UNIX as u16 {
            return Err(Errno::EINVAL);
        }
        let path = &raw[2..];
        match path.first() {
            None => Ok(None),
            Some(0) => Ok(Some(UnixAddr::Abstract(path[1..].to_vec()))),
            Some(_) => {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                Ok(Some(UnixAddr::Path(path[..end].to_vec())))
            }
        }
    }
}

/// The family-only address of an unnamed socket.
fn unnamed() -> Vec<u8> {
    (libc::AF_UNIX as u16).to_le_bytes().to_vec()
}

/// How a bound socket is found: by its socket file's inode, or by abstract name and type
/// (Linux keeps one abstract namespace per socket type).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NameKey {
    Inode(u64, u64),
    Abstract(Vec<u8>, i32),
}

/// The sandbox's table of bound unix sockets (one network namespace).
#[derive(Default)]
pub struct UnixNames {
    table: Mutex<Names>,
}

#[derive(Default)]
struct Names {
    bound: HashMap<NameKey, Weak<Endpoint>>,
    /// The next autobind name to try.
    next_auto: u32,
}

impl UnixNames {
    /// Claim `key` for `ep`: `EADDRINUSE` if a live socket holds it.
    fn claim(&self, key: NameKey, ep: &Arc<Endpoint>) -> Result<(), Errno> {
        let mut t = self.table.guard();
        if t.bound.get(&key).is_some_and(|w| w.strong_count() > 0) {
            return Err(Errno::EADDRINUSE);
        }
        t.bound.insert(key, Arc::downgrade(ep));
        Ok(())
    }

    /// A fresh abstract name of five hex digits, claimed for `ep` (Linux's autobind).
    fn autobind(&self, ep: &Arc<Endpoint>) -> Result<(NameKey, UnixAddr), Errno> {
        let mut t = self.table.guard();
        for _ in 0..0x10_0000 {
            let n = t.next_auto & 0xf_ffff;
            t.next_auto = t.next_auto.wrapping_add(1);
            let name = format!("{n:05x}").into_bytes();
            let key = NameKey::Abstract(name.clone(), ep.kind);
            if t.bound.get(&key).is_some_and(|w| w.strong_count() > 0) {
                continue;
            }
            t.bound.insert(key.clone(), Arc::downgrade(ep));
            return Ok((key, UnixAddr::Abstract(name)));
        }
        Err(Errno::ENOSPC)
    }

    fn release(&self, key: &NameKey, ep: &Endpoint) {
        let mut t = self.table.guard();
        if t.bound
            .get(key)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), ep))
        {
            t.bound.remove(key);
        }
    }

    /// `/proc/net/unix`: the bound sockets (Linux lists unbound ones too; Moat keeps no
    /// table of those).
    pub fn proc_net_unix(&self) -> String {
        use std::fmt::Write as _;
        let bound: Vec<Arc<Endpoint>> = self
            .table
            .guard()
            .bound
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let mut out = String::from("Num       RefCount Protocol Flags    Type St Inode Path\n");
        for ep in bound {
            let s = ep.state.guard();
            let (flags, st) = match &s.conn {
                Conn::Listening { .. } => (0x10000, 1),
                Conn::Connected(_) => (0, 3),
                Conn::None => (0, 1),
            };
            let path = match &s.local {
                Some(UnixAddr::Path(p)) => String::from_utf8_lossy(p).into_owned(),
                Some(UnixAddr::Abstract(n)) => format!("@{}", String::from_utf8_lossy(n)),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "0000000000000000: 00000002 00000000 {flags:08X} {:04X} {st:02X} {:5} {path}",
                ep.kind, ep.ino
            );
        }
        out
    }

    fn find(&self, key: &NameKey) -> Option<Arc<Endpoint>> {
        self.table.guard().bound.get(key).and_then(Weak::upgrade)
    }

    /// The socket bound at `addr`, as `connect` and `sendto` find it: a path must name a
    /// socket file the caller may write (`ENOENT`, `EACCES`, `ECONNREFUSED`), a socket of
    /// another type at a path is `EPROTOTYPE`.
    fn lookup(&self, task: &Task, addr: &UnixAddr, kind: i32) -> Result<Arc<Endpoint>, Errno> {
        let key = match addr {
            UnixAddr::Abstract(name) => NameKey::Abstract(name.clone(), kind),
            UnixAddr::Path(path) => {
                let target = crate::syscalls::path::resolve_at(task, libc::AT_FDCWD, path, true)?;
                let st = target.inode().stat()?;
                if !crate::vfs::permitted(&st, &task.creds, crate::vfs::MAY_WRITE) {
                    return Err(Errno::EACCES);
                }
                if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                    return Err(Errno::ECONNREFUSED);
                }
                NameKey::Inode(st.st_dev, st.st_ino)
            }
        };
        let ep = self.find(&key).ok_or(Errno::ECONNREFUSED)?;
        if ep.kind != kind {
            return Err(Errno::EPROTOTYPE);
        }
        Ok(ep)
    }
}

/// A run of bytes (a stream's) or one message, with what travelled with it.
struct Segment {
    data: Vec<u8>,
    /// Bytes of a stream segment already read.
    read: usize,
    /// The sender's address (datagrams).
    from: Option<UnixAddr>,
    fds: Vec<Arc<OpenFile>>,
    creds: Ucred,
}

impl Segment {
    fn unread(&self) -> &[u8] {
        &self.data[self.read..]
    }
}

/// A socket's relationship to others.
enum Conn {
    None,
    /// Connections made but not yet accepted (embryos), and the backlog's limit.
    Listening {
        backlog: VecDeque<Arc<Endpoint>>,
        max: usize,
    },
    /// The peer of a connection, or a datagram socket's default destination.
    Connected(Arc<Endpoint>),
}

struct State {
    recv: VecDeque<Segment>,
    /// Unread bytes in `recv`.
    recv_bytes: usize,
    /// Linux's `sk_shutdown`: nothing more will be received / may be sent.
    rcv_shutdown: bool,
    snd_shutdown: bool,
    /// Closed: nothing will ever read this socket again.
    dead: bool,
    local: Option<UnixAddr>,
    bound: Option<NameKey>,
    conn: Conn,
    /// A pending error (`SO_ERROR`), reported once.
    error: Option<Errno>,
    passcred: bool,
    /// `SO_PEERCRED`: the peer's credentials when the connection was made (for a
    /// listener, its own at `listen`).
    peer_cred: Option<Ucred>,
    sndbuf: usize,
    rcvbuf: usize,
    send_timeout: Option<Duration>,
    recv_timeout: Option<Duration>,
    /// Options that only need remembering.
    options: Vec<(i32, i32)>,
    /// Senders that found this socket's queue full, to notify when it drains.
    blocked_writers: Vec<Weak<Endpoint>>,
}

/// One unix socket.
pub struct Endpoint {
    kind: i32,
    ino: u64,
    /// Notified on every change to this socket's readiness.
    queue: WaitQueue,
    state: Mutex<State>,
}

impl Endpoint {
    fn new(kind: i32) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            kind,
            ino: super::next_ino(),
            queue: WaitQueue::default(),
            state: Mutex::new(State {
                recv: VecDeque::new(),
                recv_bytes: 0,
                rcv_shutdown: false,
                snd_shutdown: false,
                dead: false,
                local: None,
                bound: None,
                conn: Conn::None,
                error: None,
                passcred: false,
                peer_cred: None,
                sndbuf: DEFAULT_BUF,
                rcvbuf: DEFAULT_BUF,
                send_timeout: None,
                recv_timeout: None,
                options: SOL_SOCKET_OPTIONS.to_vec(),
                blocked_writers: Vec::new(),
            }),
        })
    }

    fn connection_oriented(&self) -> bool {
        self.kind != libc::SOCK_DGRAM
    }

    fn peer(&self) -> Option<Arc<Endpoint>> {
        match &self.state.guard().conn {
            Conn::Connected(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Remember `writer` as waiting for room in this socket's queue.
    fn add_blocked_writer(state: &mut State, writer: &Arc<Endpoint>) {
        if !state
            .blocked_writers
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(writer)))
        {
            state.blocked_writers.push(Arc::downgrade(writer));
        }
    }

    fn wake_writers(writers: &[Weak<Endpoint>]) {
        for w in writers.iter().filter_map(Weak::upgrade) {
            w.queue.notify();
        }
    }

    /// Whether a datagram queue takes no more from `sender`.
    fn dgram_full(state: &State, sender: &Arc<Endpoint>, len: usize, sndbuf: usize) -> bool {
        let own_peer = matches!(&state.conn, Conn::Connected(p) if Arc::ptr_eq(p, sender));
        (!own_peer && state.recv.len() > MAX_DGRAM_QLEN)
            || (state.recv_bytes > 0 && state.recv_bytes + len > sndbuf)
    }

    /// Close: the last file referring to the socket is gone (or an embryo dies with its
    /// listener). The peer of a connection sees end of stream, and `ECONNRESET` if data it
    /// sent was never read or the connection was never accepted.
    fn release(self: &Arc<Self>, names: &UnixNames, embryo: bool) {
        let (conn, recv, bound, writers, unread) = {
            let mut s = self.state.guard();
            s.dead = true;
            s.rcv_shutdown = true;
            s.snd_shutdown = true;
            let unread = !s.recv.is_empty();
            (
                std::mem::replace(&mut s.conn, Conn::None),
                std::mem::take(&mut s.recv),
                s.bound.take(),
                std::mem::take(&mut s.blocked_writers),
                unread,
            )
        };
        if let Some(key) = bound {
            names.release(&key, self);
        }
        match conn {
            Conn::Connected(peer) if self.connection_oriented() => {
                {
                    let mut p = peer.state.guard();
                    p.rcv_shutdown = true;
                    p.snd_shutdown = true;
                    if unread || embryo {
                        p.error = Some(Errno::ECONNRESET);
                    }
                }
                peer.queue.notify();
            }
            Conn::Listening { backlog, .. } => {
                for e in backlog {
                    e.release(names, true);
                }
            }
            _ => {}
        }
        // Files in flight go now, with no lock held (they may be sockets themselves).
        drop(recv);
        Self::wake_writers(&writers);
        self.queue.notify();
    }

    /// What `poll` reports (Linux's `unix_poll` and `unix_dgram_poll`).
    fn poll(self: &Arc<Self>) -> u32 {
        let (mut r, peer, listening) = {
            let s = self.state.guard();
            let mut r = 0;
            if s.error.is_some() {
                r |= POLLERR;
            }
            if s.rcv_shutdown && s.snd_shutdown {
                r |= POLLHUP;
            }
            if s.rcv_shutdown {
                r |= POLLRDHUP | POLLIN | POLLRDNORM;
            }
            let listening = matches!(&s.conn, Conn::Listening { .. });
            match &s.conn {
                Conn::Listening { backlog, .. } if !backlog.is_empty() => {
                    r |= POLLIN | POLLRDNORM;
                }
                Conn::None if self.connection_oriented() => r |= POLLHUP,
                _ => {}
            }
            if !s.recv.is_empty() {
                r |= POLLIN | POLLRDNORM;
            }
            let peer = match &s.conn {
                Conn::Connected(p) => Some((p.clone(), s.sndbuf)),
                _ => None,
            };
            (r, peer, listening)
        };
        if listening {
            return r;
        }
        // Writable while what we sent and is still unread is at most a quarter of the
        // buffer (streams), or while the destination's queue has room (datagrams).
        let writable = match peer {
            None => true,
            Some((peer, sndbuf)) => {
                let mut p = peer.state.guard();
                let ok = if p.dead {
                    true
                } else if self.kind == libc::SOCK_STREAM || self.kind == libc::SOCK_SEQPACKET {
                    p.recv_bytes * 4 <= sndbuf
                } else {
                    !Self::dgram_full(&p, self, 1, sndbuf)
                };
                if !ok {
                    Self::add_blocked_writer(&mut p, self);
                }
                ok
            }
        };
        if writable {
            r |= POLLOUT | POLLWRNORM;
        }
        r
    }

    /// Queue `data` (and what travels with it) on a connection's peer: a stream takes what
    /// fits, a message goes whole. `EAGAIN` when full.
    fn try_send_connected(
        self: &Arc<Self>,
        data: &[u8],
        fds: &mut Vec<Arc<OpenFile>>,
        creds: Ucred,
    ) -> Result<usize, Errno> {
        let (peer, sndbuf, from) = {
            let s = self.state.guard();
            if s.snd_shutdown {
                return Err(Errno::EPIPE);
            }
            match &s.conn {
                Conn::Connected(p) => (p.clone(), s.sndbuf, s.local.clone()),
                _ => return Err(Errno::ENOTCONN),
            }
        };
        let mut p = peer.state.guard();
        if p.dead || p.rcv_shutdown {
            return Err(Errno::EPIPE);
        }
        let room = sndbuf.saturating_sub(p.recv_bytes);
        let n = if self.kind == libc::SOCK_STREAM {
            if data.is_empty() {
                return Ok(0);
            }
            if room == 0 {
                Self::add_blocked_writer(&mut p, self);
                return Err(Errno::EAGAIN);
            }
            data.len().min(room)
        } else {
            if data.len() > sndbuf.saturating_sub(32) {
                return Err(Errno::EMSGSIZE);
            }
            if p.recv_bytes > 0 && data.len() > room {
                Self::add_blocked_writer(&mut p, self);
                return Err(Errno::EAGAIN);
            }
            data.len()
        };
        p.recv.push_back(Segment {
            data: data[..n].to_vec(),
            read: 0,
            from,
            fds: std::mem::take(fds),
            creds,
        });
        p.recv_bytes += n;
        drop(p);
        peer.queue.notify();
        Ok(n)
    }

    /// Queue a datagram on `target`.
    fn try_send_datagram(
        self: &Arc<Self>,
        target: &Arc<Endpoint>,
        data: &[u8],
        fds: &mut Vec<Arc<OpenFile>>,
        creds: Ucred,
    ) -> Result<usize, Errno> {
        let (from, sndbuf) = {
            let s = self.state.guard();
            if s.snd_shutdown {
                return Err(Errno::EPIPE);
            }
            (s.local.clone(), s.sndbuf)
        };
        if data.len() > sndbuf.saturating_sub(32) {
            return Err(Errno::EMSGSIZE);
        }
        let mut t = target.state.guard();
        if t.dead {
            drop(t);
            // A dead default destination is forgotten.
            let mut s = self.state.guard();
            if matches!(&s.conn, Conn::Connected(p) if Arc::ptr_eq(p, target)) {
                s.conn = Conn::None;
            }
            return Err(Errno::ECONNREFUSED);
        }
        if let Conn::Connected(p) = &t.conn {
            if !Arc::ptr_eq(p, self) {
                return Err(Errno::EPERM);
            }
        }
        if t.rcv_shutdown {
            return Err(Errno::EPIPE);
        }
        if Self::dgram_full(&t, self, data.len(), sndbuf) {
            Self::add_blocked_writer(&mut t, self);
            return Err(Errno::EAGAIN);
        }
        t.recv.push_back(Segment {
            data: data.to_vec(),
            read: 0,
            from,
            fds: std::mem::take(fds),
            creds,
        });
        t.recv_bytes += data.len();
        drop(t);
        target.queue.notify();
        Ok(data.len())
    }

    /// Take (or with `peek` copy) up to `len` bytes: a stream merges segments but stops
    /// after one that carried fds (and, with `SO_PASSCRED`, before one from another
    /// sender); a message kind returns one message. `EAGAIN` when there is nothing yet.
    fn try_receive(self: &Arc<Self>, len: usize, peek: bool) -> Result<Incoming, Errno> {
        let mut s = self.state.guard();
        match (&s.conn, self.kind) {
            (Conn::Connected(_), _) | (_, libc::SOCK_DGRAM) => {}
            (_, libc::SOCK_STREAM) => return Err(Errno::EINVAL),
            _ => return Err(Errno::ENOTCONN),
        }
        if s.recv.is_empty() {
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            return if s.rcv_shutdown {
                Ok(Incoming::default())
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let passcred = s.passcred;
        let mut got = Incoming::default();
        let consumed;
        if self.kind == libc::SOCK_STREAM {
            let first = s.recv[0].creds;
            let mut i = 0;
            let mut taken = 0;
            while got.data.len() < len && i < s.recv.len() {
                let seg = &mut s.recv[i];
                if passcred && seg.creds != first {
                    break;
                }
                let n = seg.unread().len().min(len - got.data.len());
                got.data.extend_from_slice(&seg.unread()[..n]);
                if got.from.is_none() {
                    got.from = seg.from.as_ref().map(UnixAddr::to_sockaddr);
                }
                let carried = !seg.fds.is_empty();
                if peek {
                    got.fds.extend(seg.fds.iter().cloned());
                } else {
                    got.fds.append(&mut seg.fds);
                    seg.read += n;
                    if seg.read == seg.data.len() {
                        taken += 1;
                    }
                }
                i += 1;
                if carried {
                    break;
                }
            }
            got.creds = passcred.then_some(first);
            if !peek {
                s.recv.drain(..taken);
            }
            got.whole = got.data.len();
            consumed = if peek { 0 } else { got.data.len() };
        } else {
            let seg = if peek {
                let f = &s.recv[0];
                Segment {
                    data: f.data.clone(),
                    read: 0,
                    from: f.from.clone(),
                    fds: f.fds.clone(),
                    creds: f.creds,
                }
            } else {
                s.recv.pop_front().ok_or(Errno::EAGAIN)?
            };
            got.whole = seg.data.len();
            got.data = seg.data;
            got.data.truncate(len);
            got.from = seg.from.map(|a| a.to_sockaddr());
            got.fds = seg.fds;
            got.creds = passcred.then_some(seg.creds);
            consumed = if peek { 0 } else { got.whole };
        }
        let writers = if consumed > 0 {
            s.recv_bytes -= consumed;
            std::mem::take(&mut s.blocked_writers)
        } else {
            Vec::new()
        };
        drop(s);
        Self::wake_writers(&writers);
        Ok(got)
    }
}

/// A unix socket open as a file. Dropping the last file closes it.
pub struct UnixSocket {
    ep: Arc<Endpoint>,
    names: Arc<UnixNames>,
}

impl UnixSocket {
    /// A new, unconnected socket of `kind`.
    pub fn new(kind: i32, names: &Arc<UnixNames>) -> UnixSocket {
        UnixSocket {
            ep: Endpoint::new(kind),
            names: names.clone(),
        }
    }

    /// A connected pair (`socketpair`); both ends carry `creds` as their peer's.
    pub fn pair(kind: i32, names: &Arc<UnixNames>, creds: Ucred) -> (UnixSocket, UnixSocket) {
        let (a, b) = (Endpoint::new(kind), Endpoint::new(kind));
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut s = x.state.guard();
            s.conn = Conn::Connected(y.clone());
            s.peer_cred = Some(creds);
        }
        (
            UnixSocket {
                ep: a,
                names: names.clone(),
            },
            UnixSocket {
                ep: b,
                names: names.clone(),
            },
        )
    }

    /// The credentials a message from `task` carries.
    fn sender_creds(task: &Task) -> Ucred {
        Ucred {
            pid: task.tgid,
            uid: task.creds.uid,
            gid: task.creds.gid,
        }
    }

    /// Bind to a fresh abstract name if unbound (autobind, for `SO_PASSCRED` senders).
    fn autobind_if_unbound(&self) -> Result<(), Errno> {
        if self.ep.state.guard().local.is_some() {
            return Ok(());
        }
        let (key, addr) = self.names.autobind(&self.ep)?;
        let mut s = self.ep.state.guard();
        if s.local.is_some() {
            drop(s);
            self.names.release(&key, &self.ep);
            return Ok(());
        }
        s.local = Some(addr);
        s.bound = Some(key);
        Ok(())
    }

    /// Sleep until this socket's wait queue has news since `generation`, or the deadline.
    fn wait(
        &self,
        task: &mut Task,
        generation: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), Errno> {
        let queue = &self.ep.queue;
        match task.block_on(&[queue], deadline, |_| {
            Ok((queue.generation() != generation).then_some(()))
        }) {
            Err(Errno::ETIMEDOUT) => Err(Errno::EAGAIN),
            // With a time-out set, Linux does not restart the call.
            Err(Errno::ERESTARTSYS) if deadline.is_some() => Err(Errno::EINTR),
            r => r,
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<std::time::Instant> {
    timeout.map(|t| std::time::Instant::now() + t)
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.ep.release(&self.names, false);
    }
}

impl Socket for UnixSocket {
    fn domain(&self) -> i32 {
        libc::AF_UNIX
    }

    fn kind(&self) -> i32 {
        self.ep.kind
    }

    fn bind(&self, task: &mut Task, raw: &[u8]) -> Result<(), Errno> {
        let Some(addr) = UnixAddr::parse(raw)? else {
            if self.ep.state.guard().local.is_some() {
                return Err(Errno::EINVAL);
            }
            return self.autobind_if_unbound();
        };
        let key = match &addr {
            UnixAddr::Abstract(name) => {
                if self.ep.state.guard().local.is_some() {
                    return Err(Errno::EINVAL);
                }
                let key = NameKey::Abstract(name.clone(), self.ep.kind);
                self.names.claim(key.clone(), &self.ep)?;
                key
            }
            UnixAddr::Path(path) => {
                // The socket file comes first (its name taken is EADDRINUSE even for a bound
                // socket), then the check that the socket is unbound, which removes it again.
                use crate::syscalls::path::resolve_parent;
                let (dir, name, trailing) = resolve_parent(task, libc::AT_FDCWD, path)?;
                if trailing {
                    return Err(Errno::ENOENT);
                }
                let mode = libc::S_IFSOCK | (0o777 & !task.fs.guard().umask);
                let node = crate::vfs::NewNode::Special { mode, rdev: 0 };
                match crate::syscalls::names::create_in(task, &dir, &name, &node) {
                    Err(Errno::EEXIST) => return Err(Errno::EADDRINUSE),
                    r => r?,
                }
                let remove = || {
                    let _ = dir.inode().unlink(&name, false);
                    dir.dentry.remove_child(&name);
                };
                if self.ep.state.guard().local.is_some() {
                    remove();
                    return Err(Errno::EINVAL);
                }
                let st = match dir.dentry.child(&name).and_then(|d| d.inode().stat()) {
                    Ok(st) => st,
                    Err(e) => {
                        remove();
                        return Err(e);
                    }
                };
                let key = NameKey::Inode(st.st_dev, st.st_ino);
                if let Err(e) = self.names.claim(key.clone(), &self.ep) {
                    remove();
                    return Err(e);
                }
                key
            }
        };
        let mut s = self.ep.state.guard();
        if s.local.is_some() {
            drop(s);
            self.names.release(&key, &self.ep);
            return Err(Errno::EINVAL);
        }
        s.local = Some(addr);
        s.bound = Some(key);
        Ok(())
    }

    fn listen(&self, task: &mut Task, backlog: i32) -> Result<(), Errno> {
        if self.ep.kind == libc::SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let max = usize::try_from(backlog).map_or(SOMAXCONN, |b| b.min(SOMAXCONN));
        let mut s = self.ep.state.guard();
        if s.local.is_none() {
            return Err(Errno::EINVAL);
        }
        match &mut s.conn {
            Conn::Connected(_) => return Err(Errno::EINVAL),
            Conn::Listening { max: m, .. } => *m = max,
            Conn::None => {
                s.conn = Conn::Listening {
                    backlog: VecDeque::new(),
                    max,
                }
            }
        }
        s.peer_cred = Some(Ucred {
            pid: task.tgid,
            uid: task.creds.euid,
            gid: task.creds.egid,
        });
        drop(s);
        self.ep.queue.notify();
        Ok(())
    }

    fn connect(&self, task: &mut Task, raw: &[u8], nonblocking: bool) -> Result<(), Errno> {
        // A datagram socket: set or clear the default destination.
        if self.ep.kind == libc::SOCK_DGRAM {
            if raw.len() >= 2 && u16::from_le_bytes([raw[0], raw[1]]) == libc::AF_UNSPEC as u16 {
                self.ep.state.guard().conn = Conn::None;
                return Ok(());
            }
            let addr = UnixAddr::parse(raw)?.ok_or(Errno::EINVAL)?;
            let target = self.names.lookup(task, &addr, self.ep.kind)?;
            if self.ep.state.guard().passcred {
                self.autobind_if_unbound()?;
            }
            self.ep.state.guard().conn = Conn::Connected(target);
            return Ok(());
        }
        let addr = UnixAddr::parse(raw)?.ok_or(Errno::EINVAL)?;
        match &self.ep.state.guard().conn {
            Conn::Connected(_) => return Err(Errno::EISCONN),
            Conn::Listening { .. } => return Err(Errno::EINVAL),
            Conn::None => {}
        }
        let listener = self.names.lookup(task, &addr, self.ep.kind)?;
        let me = Ucred {
            pid: task.tgid,
            uid: task.creds.euid,
            gid: task.creds.egid,
        };
        let timeout = self.ep.state.guard().send_timeout;
        let deadline = deadline(timeout);
        loop {
            let generation = listener.queue.generation();
            let listener_cred = {
                let mut l = listener.state.guard();
                if l.dead {
                    return Err(Errno::ECONNREFUSED);
                }
                let cred = l.peer_cred;
                let name = l.local.clone();
                let Conn::Listening { backlog, max } = &mut l.conn else {
                    return Err(Errno::ECONNREFUSED);
                };
                if backlog.len() > *max {
                    None
                } else {
                    let embryo = Endpoint::new(self.ep.kind);
                    {
                        let mut e = embryo.state.guard();
                        e.conn = Conn::Connected(self.ep.clone());
                        e.peer_cred = Some(me);
                        // The server's end of a connection bears the listener's name.
                        e.local = name;
                    }
                    {
                        let mut s = self.ep.state.guard();
                        if !matches!(s.conn, Conn::None) {
                            return Err(Errno::EISCONN);
                        }
                        s.conn = Conn::Connected(embryo.clone());
                        s.peer_cred = cred;
                    }
                    backlog.push_back(embryo);
                    Some(())
                }
            };
            if listener_cred.is_some() {
                listener.queue.notify();
                self.ep.queue.notify();
                if self.ep.state.guard().passcred {
                    self.autobind_if_unbound()?;
                }
                return Ok(());
            }
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            let queue = &listener.queue;
            match task.block_on(&[queue], deadline, |_| {
                Ok((queue.generation() != generation).then_some(()))
            }) {
                Ok(()) => {}
                Err(Errno::ETIMEDOUT) => return Err(Errno::EAGAIN),
                Err(e) => return Err(e),
            }
        }
    }

    fn accept(
        &self,
        task: &mut Task,
        nonblocking: bool,
    ) -> Result<(Box<dyn FileOps>, Vec<u8>), Errno> {
        if self.ep.kind == libc::SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let deadline = deadline(self.ep.state.guard().recv_timeout);
        loop {
            let generation = self.ep.queue.generation();
            let embryo = {
                let mut s = self.ep.state.guard();
                let Conn::Listening { backlog, .. } = &mut s.conn else {
                    return Err(Errno::EINVAL);
                };
                backlog.pop_front()
            };
            if let Some(embryo) = embryo {
                // Room in the backlog for a waiting connect.
                self.ep.queue.notify();
                let peer = embryo.peer().map_or_else(unnamed, |p| {
                    p.state
                        .guard()
                        .local
                        .as_ref()
                        .map_or_else(unnamed, UnixAddr::to_sockaddr)
                });
                let sock = UnixSocket {
                    ep: embryo,
                    names: self.names.clone(),
                };
                return Ok((Box::new(sock), peer));
            }
            if nonblocking {
                return Err(Errno::EAGAIN);
            }
            self.wait(task, generation, deadline)?;
        }
    }

    fn send(
        &self,
        task: &mut Task,
        msg: Outgoing,
        to: Option<&[u8]>,
        how: Blocking,
    ) -> Result<usize, Errno> {
        let Outgoing {
            data,
            mut fds,
            creds,
        } = msg;
        let creds = creds.unwrap_or_else(|| Self::sender_creds(task));
        let deadline = deadline(how.timeout);
        if self.ep.kind == libc::SOCK_STREAM && to.is_some() {
            let connected = matches!(self.ep.state.guard().conn, Conn::Connected(_));
            return Err(if connected {
                Errno::EISCONN
            } else {
                Errno::EOPNOTSUPP
            });
        }
        // A datagram goes to `to` if given, else to the default destination.
        let target = match (self.ep.kind, to) {
            (libc::SOCK_DGRAM, Some(raw)) => {
                let addr = UnixAddr::parse(raw)?.ok_or(Errno::EINVAL)?;
                Some(self.names.lookup(task, &addr, self.ep.kind)?)
            }
            (libc::SOCK_DGRAM, None) => Some(self.ep.peer().ok_or(Errno::ENOTCONN)?),
            _ => None,
        };
        if target.is_some() && self.ep.state.guard().passcred {
            self.autobind_if_unbound()?;
        }
        let mut done = 0;
        loop {
            let generation = self.ep.queue.generation();
            let r = match &target {
                Some(t) => self.ep.try_send_datagram(t, &data, &mut fds, creds),
                None => self.ep.try_send_connected(&data[done..], &mut fds, creds),
            };
            match r {
                Ok(n) => {
                    done += n;
                    if done == data.len()
                        || how.nonblocking
                        || target.is_some()
                        || self.ep.kind != libc::SOCK_STREAM
                    {
                        return Ok(done);
                    }
                    // Part went: try the rest at once (a full queue then lists us as a
                    // writer to wake, which a wait without that would never get).
                    continue;
                }
                Err(Errno::EAGAIN) if done > 0 && how.nonblocking => return Ok(done),
                Err(Errno::EAGAIN) if !how.nonblocking => {}
                Err(e) if done > 0 && e != Errno::EAGAIN => return Ok(done),
                Err(e) => return Err(e),
            }
            if let Err(e) = self.wait(task, generation, deadline) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
        }
    }

    fn receive(
        &self,
        task: &mut Task,
        len: usize,
        peek: bool,
        wait_all: bool,
        how: Blocking,
    ) -> Result<Incoming, Errno> {
        let deadline = deadline(how.timeout);
        let wait_all = wait_all && !peek && self.ep.kind == libc::SOCK_STREAM;
        let mut got = Incoming::default();
        loop {
            let generation = self.ep.queue.generation();
            match self.ep.try_receive(len - got.data.len(), peek) {
                Ok(part) => {
                    let end = part.data.is_empty() && part.whole == 0;
                    if got.data.is_empty() && got.fds.is_empty() {
                        got = part;
                    } else {
                        got.data.extend_from_slice(&part.data);
                        got.whole = got.data.len();
                        got.fds.extend(part.fds);
                    }
                    if !wait_all || end || got.data.len() >= len || !got.fds.is_empty() {
                        return Ok(got);
                    }
                    // Look again before waiting: the end of the stream may be there already.
                    continue;
                }
                Err(Errno::EAGAIN) if !how.nonblocking => {}
                Err(_) if !got.data.is_empty() => return Ok(got),
                Err(e) => return Err(e),
            }
            if let Err(e) = self.wait(task, generation, deadline) {
                return if got.data.is_empty() { Err(e) } else { Ok(got) };
            }
        }
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        let peer = {
            let mut s = self.ep.state.guard();
            s.rcv_shutdown |= rd;
            s.snd_shutdown |= wr;
            match &s.conn {
                Conn::Connected(p) if self.ep.connection_oriented() => Some(p.clone()),
                _ => None,
            }
        };
        if let Some(peer) = peer {
            {
                let mut p = peer.state.guard();
                p.snd_shutdown |= rd;
                p.rcv_shutdown |= wr;
            }
            peer.queue.notify();
        }
        self.ep.queue.notify();
        Ok(())
    }

    fn local_name(&self) -> Vec<u8> {
        self.ep
            .state
            .guard()
            .local
            .as_ref()
            .map_or_else(unnamed, UnixAddr::to_sockaddr)
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        let peer = self.ep.peer().ok_or(Errno::ENOTCONN)?;
        let name = peer
            .state
            .guard()
            .local
            .as_ref()
            .map_or_else(unnamed, UnixAddr::to_sockaddr);
        Ok(name)
    }

    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        // Unix sockets have options only at the socket level.
        if level != super::SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        let timeval = |t: Option<Duration>| {
            let t = t.unwrap_or_default();
            let mut v = (t.as_secs() as i64).to_le_bytes().to_vec();
            v.extend_from_slice(&i64::from(t.subsec_micros()).to_le_bytes());
            Ok(v)
        };
        let mut s = self.ep.state.guard();
        match name {
            libc::SO_TYPE => int(self.ep.kind),
            libc::SO_DOMAIN => int(libc::AF_UNIX),
            libc::SO_PROTOCOL => int(0),
            libc::SO_ERROR => int(s.error.take().map_or(0, |e| e.0)),
            libc::SO_ACCEPTCONN => int(i32::from(matches!(s.conn, Conn::Listening { .. }))),
            libc::SO_SNDBUF => int(s.sndbuf as i32),
            libc::SO_RCVBUF => int(s.rcvbuf as i32),
            libc::SO_PASSCRED => int(i32::from(s.passcred)),
            libc::SO_PEERCRED => Ok(s.peer_cred.unwrap_or(Ucred::NOBODY).to_bytes().to_vec()),
            libc::SO_SNDTIMEO => timeval(s.send_timeout),
            libc::SO_RCVTIMEO => timeval(s.recv_timeout),
            libc::SO_LINGER => Ok(vec![0; 8]),
            libc::SO_SNDLOWAT => int(1),
            _ => match s.options.iter().find(|(n, _)| *n == name) {
                Some(&(_, v)) => int(v),
                None => Err(Errno::ENOPROTOOPT),
            },
        }
    }

    fn set_option(&self, _task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        if level != super::SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let int = || -> Result<i32, Errno> {
            let b: [u8; 4] = value
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Errno::EINVAL)?;
            Ok(i32::from_le_bytes(b))
        };
        let timeval = || -> Result<Option<Duration>, Errno> {
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
        };
        // Linux doubles the size asked for (to cover its bookkeeping), within limits.
        let size = |v: i32| (v.max(0) as usize).min(MAX_BUF) * 2;
        let mut s = self.ep.state.guard();
        match name {
            libc::SO_SNDBUF => s.sndbuf = size(int()?).max(MIN_SNDBUF),
            libc::SO_RCVBUF => s.rcvbuf = size(int()?).max(MIN_RCVBUF),
            libc::SO_PASSCRED => s.passcred = int()? != 0,
            libc::SO_SNDTIMEO => s.send_timeout = timeval()?,
            libc::SO_RCVTIMEO => s.recv_timeout = timeval()?,
            libc::SO_LINGER => {
                if value.len() < 8 {
                    return Err(Errno::EINVAL);
                }
            }
            libc::SO_TYPE
            | libc::SO_DOMAIN
            | libc::SO_PROTOCOL
            | libc::SO_ERROR
            | libc::SO_ACCEPTCONN
            | libc::SO_PEERCRED => return Err(Errno::ENOPROTOOPT),
            _ => {
                let v = int()?;
                match s.options.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, slot)) => *slot = v,
                    None => return Err(Errno::ENOPROTOOPT),
                }
            }
        }
        Ok(())
    }

    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let s = self.ep.state.guard();
        (s.send_timeout, s.recv_timeout)
    }
}

impl FileOps for UnixSocket {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        // Files passed with the data are dropped (closed), as Linux does for read(2).
        let got = self.ep.try_receive(buf.len(), false)?;
        buf[..got.data.len()].copy_from_slice(&got.data);
        Ok(got.data.len())
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let creds = Ucred::NOBODY;
        let mut fds = Vec::new();
        if self.ep.kind == libc::SOCK_DGRAM {
            let peer = self.ep.peer().ok_or(Errno::ENOTCONN)?;
            self.ep.try_send_datagram(&peer, buf, &mut fds, creds)
        } else {
            self.ep.try_send_connected(buf, &mut fds, creds)
        }
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        // Any socket answers the interface requests (if_nametoindex asks a unix one).
        if let Some(r) = super::iface::ioctl(mm, request, arg, false) {
            return r;
        }
        let n = match request {
            FIONREAD => {
                let s = self.ep.state.guard();
                if matches!(s.conn, Conn::Listening { .. }) {
                    return Err(Errno::EINVAL);
                }
                if self.ep.kind == libc::SOCK_DGRAM {
                    s.recv.front().map_or(0, |seg| seg.data.len())
                } else {
                    s.recv_bytes
                }
            }
            TIOCOUTQ => {
                let peer = self.ep.peer();
                peer.map_or(0, |p| p.state.guard().recv_bytes)
            }
            _ => return Err(Errno::ENOTTY),
        };
        mm.write_obj(arg, &(n.min(i32::MAX as usize) as i32))?;
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(crate::net::socket_stat(self.ep.ino, 0))
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        self.ep.poll()
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.ep.queue)
    }

    fn as_socket(&self) -> Option<&dyn Socket> {
        Some(self)
    }
}
