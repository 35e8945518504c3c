//! TCP sockets on the loopback path.
//!
//! A connection is a [`Connection`] shared by its two sockets: one lock over both ends, each
//! end with the bytes on their way to it (`rx`) and its half of the state (FIN sent and
//! received, reset, pending error, shut down), from which the TCP state is derived as Linux
//! would show it. A sender appends to the other end's `rx` and notifies that socket's wait
//! queue; a receiver that frees room wakes a sender that found no room (`writer_waiting`),
//! once the sender is writable again, as Linux's `sk_stream_write_space` does.
//!
//! How much a direction holds is the receiver's receive buffer plus the sender's send
//! buffer: what lies beyond the receive buffer is what the sender's `SIOCOUTQ` reports as
//! unsent. A buffer the application did not size is Linux's autotuning ceiling for sending
//! (`tcp_wmem[2]`, 4 MiB), so bulk transfers rarely wait.
//!
//! `connect` finds the listener in the port table and, if its backlog has room, makes the
//! server's socket at once (an embryo, already connected, queued until `accept`). A full
//! backlog makes Linux drop the SYN and the client retry; here the client waits in the
//! listener's `pending` list and `accept` completes it when it makes room. A non-blocking
//! connect reports `EINPROGRESS` even when the connection is made at once, as Linux does on
//! loopback.
//!
//! Lock order: a listener's state, then a connecting socket's; a socket's state, then its
//! connection; either, then the port table. The table and the connection never lock a
//! socket.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use moat_abi::{Errno, Stat};

use super::options::{
    Kind, Options, IPV6_MTU, IPV6_V6ONLY, IP_MTU, MSS_DEFAULT, SOL_IP, SOL_IPV6, SOL_TCP,
    SO_ACCEPTCONN, SO_DOMAIN, SO_ERROR, SO_PEERCRED, SO_PROTOCOL, SO_RCVBUF, SO_RCVBUFFORCE,
    SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, SO_SNDBUFFORCE, SO_TYPE, TCP_INFO, TCP_MAXSEG,
};
use super::ports::{Binding, Entry};
use super::{state, Family, ProcLine, Route, SockAddr, Stack};
use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::fs::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::net::ext::tcp::{Conn, Listen, Progress};
use crate::net::unix::POLLRDHUP;
use crate::net::{Blocking, Incoming, Outgoing, Socket, Ucred, SOL_SOCKET};
use crate::process::Guard;
use crate::task::Task;
use crate::wait::WaitQueue;

/// The most bytes a sender whose application did not size its send buffer may have in
/// flight beyond the receiver's buffer (Linux's `tcp_wmem[2]`).
const SND_AUTO: usize = 4 << 20;
/// `net.core.somaxconn`: the largest backlog.
const SOMAXCONN: usize = 4096;
/// The MSS of a loopback connection (`lo`'s MTU less headers, halved for the window), and
/// the path MTU `IP_MTU` reports.
const LO_MSS: i32 = 32741;
const LO_PATH_MTU: i32 = 65535;
/// `sizeof(struct tcp_info)` in Linux 6.6.
const TCP_INFO_LEN: usize = 240;

const FIONREAD: u32 = 0x541b;
const TIOCOUTQ: u32 = 0x5411;
const SIOCATMARK: u32 = 0x8905;
const SIOCOUTQNSD: u32 = 0x894b;

/// One end of a connection.
struct End {
    /// Bytes sent to this end, not yet read.
    rx: VecDeque<u8>,
    /// This end's receive buffer and send buffer.
    rcv_limit: usize,
    snd_limit: usize,
    /// Linux's `sk_shutdown` of this end: no more receiving / sending.
    shut_rd: bool,
    shut_wr: bool,
    fin_sent: bool,
    /// The peer's FIN arrived (Linux's `SOCK_DONE`): reads after the data say end of file.
    fin_received: bool,
    /// This end sent its FIN before the peer did (it is the active closer).
    fin_first: bool,
    /// The connection was reset (TCP state CLOSE).
    reset: bool,
    /// The socket is closed: an orphan, which answers data with a reset.
    closed: bool,
    /// `sk_err`: reported once, by the next call or `SO_ERROR`.
    error: Option<Errno>,
    /// A send found no room: wake this end when there is.
    writer_waiting: bool,
    bytes_sent: u64,
    bytes_received: u64,
    segs_out: u32,
    segs_in: u32,
}

impl End {
    fn new(rcv_limit: usize, snd_limit: usize) -> End {
        End {
            rx: VecDeque::new(),
            rcv_limit,
            snd_limit,
            shut_rd: false,
            shut_wr: false,
            fin_sent: false,
            fin_received: false,
            fin_first: false,
            reset: false,
            closed: false,
            error: None,
            writer_waiting: false,
            bytes_sent: 0,
            bytes_received: 0,
            segs_out: 0,
            segs_in: 0,
        }
    }

    /// The TCP state of this end, as Linux would show it once loopback's segments have
    /// been processed (a FIN is acknowledged at once, so FIN_WAIT1, CLOSING and LAST_ACK
    /// never last).
    fn tcp_state(&self) -> u8 {
        if self.reset {
            return state::CLOSE;
        }
        match (self.fin_sent, self.fin_received) {
            (false, false) => state::ESTABLISHED,
            (true, false) => state::FIN_WAIT2,
            (false, true) => state::CLOSE_WAIT,
            (true, true) if self.fin_first => state::TIME_WAIT,
            (true, true) => state::CLOSE,
        }
    }

    /// A reset reached this end: Linux's `tcp_reset` errors.
    fn take_reset(&mut self) {
        if self.reset || self.closed {
            self.reset = true;
            return;
        }
        self.error = Some(match self.tcp_state() {
            state::CLOSE_WAIT => Errno::EPIPE,
            _ => Errno::ECONNRESET,
        });
        self.reset = true;
        self.shut_rd = true;
        self.shut_wr = true;
    }
}

/// The state of a connection, under one lock.
struct Ends([End; 2]);

impl Ends {
    fn pair(&mut self, side: usize) -> (&mut End, &mut End) {
        let [a, b] = &mut self.0;
        if side == 0 {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// The bytes `side` has sent that lie beyond the peer's receive buffer: its unsent
    /// queue (`SIOCOUTQ`).
    fn unsent(&self, side: usize) -> usize {
        let peer = &self.0[1 - side];
        peer.rx.len().saturating_sub(peer.rcv_limit)
    }

    /// How many more bytes `side` may send now.
    fn room(&self, side: usize) -> usize {
        let peer = &self.0[1 - side];
        (peer.rcv_limit + self.0[side].snd_limit).saturating_sub(peer.rx.len())
    }

    /// Whether `side` polls writable: at least a third of its send buffer free (Linux's
    /// `sk_stream_is_writeable`: free space at least half of what is queued).
    fn writable(&self, side: usize) -> bool {
        let used = self.unsent(side);
        let free = self.0[side].snd_limit.saturating_sub(used);
        self.room(side) > 0 && free >= used / 2
    }
}

/// A TCP connection between two sockets of the sandbox.
struct Connection {
    /// Each end's socket's wait queue.
    queues: [Arc<WaitQueue>; 2],
    ends: Mutex<Ends>,
}

/// A socket's view of its connection.
#[derive(Clone)]
struct Link {
    conn: Arc<Connection>,
    side: usize,
    remote: SockAddr,
}

impl Link {
    fn notify_peer(&self) {
        self.conn.queues[1 - self.side].notify();
    }
}

/// A listening socket's queues.
struct Listener {
    /// Connections made and not yet accepted (their server sockets).
    backlog: VecDeque<Arc<Tcp>>,
    max: usize,
    /// Sockets waiting for room in the backlog.
    pending: VecDeque<Weak<Tcp>>,
    /// Its share of the external interface, if its address takes traffic from there.
    ext: Option<Listen>,
}

enum Phase {
    Closed,
    Listening(Listener),
    /// Connecting, waiting for room in a listener's backlog.
    SynSent {
        remote: SockAddr,
    },
    Connected(Link),
    /// Connecting or connected through the external interface.
    Remote(Arc<Conn>),
}

struct State {
    opts: Options,
    /// The address `getsockname` reports (`None`: the wildcard, port 0).
    local: Option<SockAddr>,
    /// The port whose table entry this socket holds.
    held: Option<u16>,
    /// `bind` named a port (Linux's `SOCK_BINDPORT_LOCK`): a failed connect keeps it.
    port_locked: bool,
    phase: Phase,
    /// `sk_shutdown` and `sk_err` of a socket without a connection.
    shut_rd: bool,
    shut_wr: bool,
    error: Option<Errno>,
    /// A connect said `EINPROGRESS` and no connect has reported its outcome yet (Linux's
    /// `SS_CONNECTING`).
    connecting: bool,
}

/// A TCP socket.
pub struct Tcp {
    family: Family,
    ino: u64,
    /// The creator's user (`/proc/net/tcp`, `SO_REUSEPORT`).
    uid: u32,
    stack: Arc<Stack>,
    /// Notified on every change to this socket's readiness.
    queue: Arc<WaitQueue>,
    state: Mutex<State>,
}

fn kind(family: Family) -> Kind {
    Kind {
        tcp: true,
        v6: family == Family::V6,
        icmp: false,
    }
}

impl Tcp {
    fn new(family: Family, uid: u32, stack: Arc<Stack>, opts: Options) -> Arc<Tcp> {
        Arc::new(Tcp {
            family,
            ino: crate::net::next_ino(),
            uid,
            stack,
            queue: Arc::new(WaitQueue::default()),
            state: Mutex::new(State {
                opts,
                local: None,
                held: None,
                port_locked: false,
                phase: Phase::Closed,
                shut_rd: false,
                shut_wr: false,
                error: None,
                connecting: false,
            }),
        })
    }

    /// The binding an address of this socket makes.
    fn binding(&self, ip: IpAddr, v6only: bool) -> Binding {
        Binding {
            ip,
            dual: self.family == Family::V6 && ip == Family::V6.any() && !v6only,
        }
    }

    /// A port-table entry for this socket.
    fn entry(self: &Arc<Self>, st: &State, bind: Binding) -> Entry<Tcp> {
        let mut e = Entry::new(self.ino, bind, self.uid, Arc::downgrade(self));
        e.reuseaddr = st.opts.flag(SOL_SOCKET, SO_REUSEADDR);
        e.reuseport = st.opts.flag(SOL_SOCKET, SO_REUSEPORT);
        e
    }

    /// The external interface's MTU (`IP_MTU`; less 40 for `TCP_MAXSEG`).
    fn ext_mtu(&self) -> i32 {
        self.stack
            .ext
            .as_ref()
            .map_or(1500, |e| e.config.mtu as i32)
    }

    /// This socket's receive and send limits for a connection.
    fn limits(opts: &Options) -> (usize, usize) {
        let snd = if opts.sndbuf_locked {
            opts.sndbuf
        } else {
            SND_AUTO
        };
        (opts.rcvbuf, snd)
    }

    fn link(&self) -> Option<Link> {
        match &self.state.guard().phase {
            Phase::Connected(l) => Some(l.clone()),
            _ => None,
        }
    }

    /// Give up the port if `bind` did not choose it (a failed or undone connect).
    fn release_auto_port(&self, st: &mut State) {
        if st.port_locked {
            return;
        }
        if let Some(port) = st.held.take() {
            self.stack.tcp.guard().release(port, self.ino);
        }
    }

    /// Make the server's end of a connection from `client` (bound at `client_local`) to
    /// `dst`, queued in this listener's backlog; returns the client's link.
    fn establish(
        self: &Arc<Self>,
        lst: &mut State,
        client: &Arc<Tcp>,
        client_local: SockAddr,
        client_limits: (usize, usize),
        dst: SockAddr,
    ) -> Link {
        let opts = lst.opts.inherit();
        let (rcv, snd) = Self::limits(&opts);
        let reuse = (
            opts.flag(SOL_SOCKET, SO_REUSEADDR),
            opts.flag(SOL_SOCKET, SO_REUSEPORT),
        );
        let server = Tcp::new(self.family, self.uid, self.stack.clone(), opts);
        let conn = Arc::new(Connection {
            queues: [client.queue.clone(), server.queue.clone()],
            ends: Mutex::new(Ends([
                End::new(client_limits.0, client_limits.1),
                End::new(rcv, snd),
            ])),
        });
        let port = dst.port;
        {
            let mut s = server.state.guard();
            s.local = Some(dst);
            s.held = Some(port);
            s.port_locked = true;
            s.phase = Phase::Connected(Link {
                conn: conn.clone(),
                side: 1,
                remote: client_local,
            });
        }
        // The accepted socket shares the listener's port, as Linux's inherit_port does.
        let mut e = Entry::new(
            server.ino,
            Binding {
                ip: dst.ip,
                dual: false,
            },
            self.uid,
            Arc::downgrade(&server),
        );
        (e.reuseaddr, e.reuseport) = reuse;
        e.remote = Some(client_local);
        self.stack.tcp.guard().attach(port, e);
        if let Phase::Listening(l) = &mut lst.phase {
            l.backlog.push_back(server);
        }
        Link {
            conn,
            side: 0,
            remote: dst,
        }
    }

    /// Complete waiting connects while the backlog has room (the listener's state locked).
    fn admit_pending(self: &Arc<Self>, lst: &mut State) {
        loop {
            let Phase::Listening(l) = &mut lst.phase else {
                return;
            };
            if l.backlog.len() > l.max {
                return;
            }
            let Some(client) = l.pending.pop_front() else {
                return;
            };
            let Some(client) = client.upgrade() else {
                continue;
            };
            let mut cst = client.state.guard();
            let Phase::SynSent { remote } = cst.phase else {
                continue;
            };
            let Some(local) = cst.local else {
                continue;
            };
            let limits = Self::limits(&cst.opts);
            let link = self.establish(lst, &client, local, limits, remote);
            self.stack
                .tcp
                .guard()
                .update(local.port, client.ino, |e| e.remote = Some(remote));
            cst.phase = Phase::Connected(link);
            drop(cst);
            client.queue.notify();
            self.queue.notify();
        }
    }

    /// A listener stops: its unaccepted connections are reset, its waiting connects
    /// refused.
    fn stop_listening(l: Listener) {
        for server in l.backlog {
            server.close(true);
        }
        for client in l.pending.iter().filter_map(Weak::upgrade) {
            let mut cst = client.state.guard();
            if matches!(cst.phase, Phase::SynSent { .. }) {
                cst.phase = Phase::Closed;
                cst.error = Some(Errno::ECONNREFUSED);
                cst.shut_rd = true;
                cst.shut_wr = true;
                client.release_auto_port(&mut cst);
                drop(cst);
                client.queue.notify();
            }
        }
    }

    /// Close the socket (its last file is gone, or it is an unaccepted connection whose
    /// listener closed: `abort`). A connection with unread data, `SO_LINGER` of 0 or an
    /// abort is reset; otherwise a FIN goes to the peer, and an active close leaves the
    /// port in TIME_WAIT.
    fn close(self: &Arc<Self>, abort: bool) {
        let (phase, held, local, entry) = {
            let mut st = self.state.guard();
            let phase = std::mem::replace(&mut st.phase, Phase::Closed);
            let local = st.local;
            let entry = local.map(|l| {
                let bind = self.binding(l.ip, st.opts.v6only);
                self.entry(&st, bind)
            });
            let held = st.held.take();
            let linger0 = st.opts.linger == Some(0);
            (phase, held, local, entry.map(|e| (e, linger0)))
        };
        let mut time_wait = None;
        match phase {
            Phase::Listening(l) => Self::stop_listening(l),
            Phase::Connected(link) => {
                let linger0 = entry.as_ref().is_some_and(|(_, z)| *z);
                let mut ends = link.conn.ends.guard();
                let (me, peer) = ends.pair(link.side);
                let rst = abort || linger0 || !me.rx.is_empty();
                if rst {
                    if !me.reset {
                        peer.take_reset();
                        me.reset = true;
                    }
                } else if !me.fin_sent && !me.reset {
                    send_fin(me, peer);
                }
                if !rst && !me.reset && me.fin_first {
                    time_wait = Some(link.remote);
                }
                me.closed = true;
                me.rx = VecDeque::new();
                drop(ends);
                link.notify_peer();
            }
            Phase::Remote(conn) => {
                let linger0 = entry.as_ref().is_some_and(|(_, z)| *z);
                conn.close(abort || linger0);
            }
            Phase::SynSent { .. } | Phase::Closed => {}
        }
        if let Some(port) = held {
            let mut table = self.stack.tcp.guard();
            table.release(port, self.ino);
            if let (Some(remote), Some((mut e, _)), Some(l)) = (time_wait, entry, local) {
                e.bind = Binding {
                    ip: l.ip,
                    dual: false,
                };
                e.remote = Some(remote);
                table.time_wait(port, e);
            }
        }
        self.queue.notify();
    }

    /// What `poll` reports (Linux's `tcp_poll`).
    fn poll(&self) -> u32 {
        let st = self.state.guard();
        let link = match &st.phase {
            Phase::Listening(l) => {
                return if l.backlog.is_empty() && !l.ext.as_ref().is_some_and(Listen::ready) {
                    0
                } else {
                    POLLIN | POLLRDNORM
                };
            }
            Phase::Remote(c) => {
                let c = c.clone();
                drop(st);
                return c.poll();
            }
            Phase::SynSent { .. } => return if st.error.is_some() { POLLERR } else { 0 },
            Phase::Closed => {
                let mut r = POLLHUP | POLLOUT | POLLWRNORM;
                if st.shut_rd {
                    r |= POLLIN | POLLRDNORM | POLLRDHUP;
                }
                if st.error.is_some() {
                    r |= POLLERR;
                }
                return r;
            }
            Phase::Connected(l) => l.clone(),
        };
        drop(st);
        let mut ends = link.conn.ends.guard();
        let writable = ends.writable(link.side);
        let (me, _) = ends.pair(link.side);
        let mut r = 0;
        if (me.shut_rd && me.shut_wr) || me.reset {
            r |= POLLHUP;
        }
        if me.shut_rd {
            r |= POLLIN | POLLRDNORM | POLLRDHUP;
        }
        if !me.rx.is_empty() {
            r |= POLLIN | POLLRDNORM;
        }
        if me.shut_wr || writable {
            r |= POLLOUT | POLLWRNORM;
        } else {
            me.writer_waiting = true;
        }
        if me.error.is_some() {
            r |= POLLERR;
        }
        r
    }

    /// Queue what fits of `data` for the peer; `EAGAIN` when nothing does.
    fn try_send(link: &Link, data: &[u8]) -> Result<usize, Errno> {
        let mut ends = link.conn.ends.guard();
        let room = ends.room(link.side);
        let (me, peer) = ends.pair(link.side);
        if let Some(e) = me.error.take() {
            return Err(e);
        }
        if me.shut_wr {
            return Err(Errno::EPIPE);
        }
        if peer.closed {
            // Data for a closed socket is answered with a reset; this send went out.
            me.take_reset();
            drop(ends);
            link.conn.queues[link.side].notify();
            return Ok(data.len());
        }
        if data.is_empty() {
            return Ok(0);
        }
        if room == 0 {
            me.writer_waiting = true;
            return Err(Errno::EAGAIN);
        }
        let n = data.len().min(room);
        peer.rx.extend(&data[..n]);
        me.bytes_sent += n as u64;
        me.segs_out = me.segs_out.wrapping_add(1);
        peer.bytes_received += n as u64;
        peer.segs_in = peer.segs_in.wrapping_add(1);
        drop(ends);
        link.notify_peer();
        Ok(n)
    }

    /// Take (or with `peek` look at) up to `len` bytes, handing them to `sink` in at most two
    /// slices; returns how many (0: the end of the stream, for a `len` above 0). `EAGAIN`
    /// when there is nothing yet.
    fn try_receive(
        link: &Link,
        len: usize,
        peek: bool,
        sink: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, Errno> {
        if len == 0 {
            return Ok(0);
        }
        let mut ends = link.conn.ends.guard();
        let (me, _) = ends.pair(link.side);
        if me.rx.is_empty() {
            if me.fin_received {
                return Ok(0);
            }
            if let Some(e) = me.error.take() {
                return Err(e);
            }
            if me.shut_rd {
                return Ok(0);
            }
            return Err(Errno::EAGAIN);
        }
        let n = len.min(me.rx.len());
        let (a, b) = me.rx.as_slices();
        let from_a = n.min(a.len());
        sink(&a[..from_a], &b[..n - from_a]);
        if peek {
            return Ok(n);
        }
        me.rx.drain(..n);
        let peer_side = 1 - link.side;
        let wake = ends.0[peer_side].writer_waiting && ends.writable(peer_side);
        if wake {
            ends.0[peer_side].writer_waiting = false;
        }
        drop(ends);
        if wake {
            link.notify_peer();
        }
        Ok(n)
    }

    /// `TCP_INFO`: the state and the basic figures of a loopback connection.
    fn tcp_info(&self) -> Vec<u8> {
        let mut b = vec![0u8; TCP_INFO_LEN];
        let put32 =
            |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let st = self.state.guard();
        let (tcp_state, link, user_mss) = match &st.phase {
            Phase::Closed => (state::CLOSE, None, st.opts.user_mss),
            Phase::Listening(_) => (state::LISTEN, None, st.opts.user_mss),
            Phase::SynSent { .. } => (state::SYN_SENT, None, st.opts.user_mss),
            Phase::Connected(l) => (0, Some(l.clone()), st.opts.user_mss),
            Phase::Remote(c) => (c.linux_state(), None, st.opts.user_mss),
        };
        drop(st);
        b[0] = tcp_state;
        put32(&mut b, 8, 200_000); // rto, µs
        put32(&mut b, 16, MSS_DEFAULT as u32); // snd_mss
        put32(&mut b, 20, MSS_DEFAULT as u32); // rcv_mss
        put32(&mut b, 76, 0x7fff_ffff); // snd_ssthresh: infinite
        put32(&mut b, 80, 10); // snd_cwnd
        put32(&mut b, 88, 3); // reordering
        let Some(link) = link else {
            return b;
        };
        let ends = link.conn.ends.guard();
        let me = &ends.0[link.side];
        let peer = &ends.0[1 - link.side];
        let mss = if user_mss > 0 {
            user_mss.min(LO_MSS)
        } else {
            LO_MSS
        } as u32;
        b[0] = me.tcp_state();
        b[5] = 0x7; // options: timestamps, SACK, window scaling
        b[6] = 0x77; // window scales
        put32(&mut b, 12, 40_000); // ato
        put32(&mut b, 16, mss);
        put32(&mut b, 20, mss);
        put32(&mut b, 60, LO_PATH_MTU as u32); // pmtu
        put32(&mut b, 64, me.rcv_limit as u32); // rcv_ssthresh
        put32(&mut b, 68, 10); // rtt, µs
        put32(&mut b, 72, 5); // rttvar
        put32(&mut b, 84, 65483); // advmss
        put32(&mut b, 96, me.rcv_limit as u32 / 2); // rcv_space
        put64(&mut b, 120, me.bytes_sent); // bytes_acked
        put64(&mut b, 128, me.bytes_received);
        put32(&mut b, 136, me.segs_out);
        put32(&mut b, 140, me.segs_in);
        put32(&mut b, 144, ends.unsent(link.side) as u32); // notsent_bytes
        put32(&mut b, 148, 10); // min_rtt
        put32(&mut b, 152, me.segs_in); // data_segs_in
        put32(&mut b, 156, me.segs_out); // data_segs_out
        put64(&mut b, 200, me.bytes_sent);
        put32(&mut b, 228, peer.rcv_limit as u32); // snd_wnd
        put32(&mut b, 232, me.rcv_limit as u32); // rcv_wnd
        b
    }

    /// This socket's line of `/proc/net/tcp`, if it is listed (listening, connecting or
    /// connected; a socket that is only bound is not).
    fn proc_line(&self) -> Option<ProcLine> {
        let st = self.state.guard();
        let local = st.local.unwrap_or(SockAddr::new(self.family.any(), 0));
        let none = SockAddr::new(self.family.any(), 0);
        let mut line = ProcLine {
            local,
            remote: none,
            state: state::CLOSE,
            tx_queue: 0,
            rx_queue: 0,
            uid: self.uid,
            ino: self.ino,
            drops: 0,
            time_wait: false,
        };
        let link = match &st.phase {
            Phase::Closed => return None,
            Phase::Listening(l) => {
                line.state = state::LISTEN;
                line.rx_queue = l.backlog.len();
                return Some(line);
            }
            Phase::SynSent { remote } => {
                line.state = state::SYN_SENT;
                line.remote = *remote;
                return Some(line);
            }
            Phase::Remote(c) => {
                let c = c.clone();
                drop(st);
                let (_, remote) = c.endpoints();
                line.remote = remote.unwrap_or(none);
                line.state = c.linux_state();
                (line.rx_queue, line.tx_queue) = c.queues();
                return Some(line);
            }
            Phase::Connected(l) => l.clone(),
        };
        drop(st);
        let ends = link.conn.ends.guard();
        let me = &ends.0[link.side];
        line.remote = link.remote;
        line.state = me.tcp_state();
        line.rx_queue = me.rx.len();
        line.tx_queue = ends.unsent(link.side);
        Some(line)
    }
}

/// `me` sends its FIN to `peer`.
fn send_fin(me: &mut End, peer: &mut End) {
    me.fin_sent = true;
    me.shut_wr = true;
    if !peer.fin_sent {
        me.fin_first = true;
    }
    if !peer.closed {
        peer.fin_received = true;
        peer.shut_rd = true;
    }
}

/// The lines of `/proc/net/tcp` (IPv4 sockets) or `/proc/net/tcp6`.
pub fn proc_lines(stack: &Stack, family: Family) -> Vec<ProcLine> {
    let (sockets, remnants) = {
        let table = stack.tcp.guard();
        let mut sockets = Vec::new();
        let mut remnants = Vec::new();
        for (port, e) in table.all() {
            if e.time_wait.is_some() {
                let v4 = matches!(e.bind.ip, IpAddr::V4(_));
                if v4 == (family == Family::V4) {
                    remnants.push(ProcLine {
                        local: SockAddr::new(e.bind.ip, port),
                        remote: e.remote.unwrap_or(SockAddr::new(family.any(), 0)),
                        state: state::TIME_WAIT,
                        tx_queue: 0,
                        rx_queue: 0,
                        uid: 0,
                        ino: 0,
                        drops: 0,
                        time_wait: true,
                    });
                }
            } else if let Some(sk) = e.owner.upgrade() {
                if sk.family == family {
                    sockets.push(sk);
                }
            }
        }
        (sockets, remnants)
    };
    let mut lines: Vec<ProcLine> = sockets.iter().filter_map(|s| s.proc_line()).collect();
    // Listeners first, as Linux walks its listening hash before the established one.
    lines.sort_by_key(|l| l.state != state::LISTEN);
    lines.extend(remnants);
    lines
}

/// A TCP socket open as a file. Dropping the last file closes it.
pub struct TcpSocket {
    sk: Arc<Tcp>,
}

impl TcpSocket {
    pub fn new(family: Family, uid: u32, stack: &Arc<Stack>) -> TcpSocket {
        TcpSocket {
            sk: Tcp::new(family, uid, stack.clone(), Options::new(kind(family))),
        }
    }

    fn wait(
        &self,
        task: &mut Task,
        generation: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), Errno> {
        crate::net::wait_for(task, &self.sk.queue, generation, deadline)
    }

    /// Wait for a connect in progress to end: `Ok` once connected, its error if refused.
    fn wait_connected(&self, task: &mut Task) -> Result<(), Errno> {
        let deadline = crate::net::deadline(self.sk.state.guard().opts.send_timeout);
        loop {
            let generation = self.sk.queue.generation();
            {
                let mut st = self.sk.state.guard();
                match &st.phase {
                    Phase::Connected(_) => {
                        st.connecting = false;
                        return Ok(());
                    }
                    Phase::Closed => {
                        st.connecting = false;
                        st.shut_rd = false;
                        st.shut_wr = false;
                        return Err(st.error.take().unwrap_or(Errno::ECONNABORTED));
                    }
                    Phase::Listening(_) => return Err(Errno::EISCONN),
                    Phase::Remote(c) => match c.progress() {
                        Progress::Open => {
                            st.connecting = false;
                            return Ok(());
                        }
                        Progress::Failed(e) => {
                            let c = c.clone();
                            let _ = c.take_error();
                            c.close(false);
                            st.phase = Phase::Closed;
                            st.connecting = false;
                            self.sk.release_auto_port(&mut st);
                            return Err(e);
                        }
                        Progress::Connecting => {}
                    },
                    Phase::SynSent { .. } => {}
                }
            }
            match self.wait(task, generation, deadline) {
                // A connect that times out goes on in the background.
                Err(Errno::EAGAIN) => return Err(Errno::EINPROGRESS),
                r => r?,
            }
        }
    }

    /// Nothing listens at the destination: the socket is closed again, and the error goes
    /// to this connect (or, after `EINPROGRESS`, to the next call that asks).
    fn refused(&self, nonblocking: bool) -> Result<(), Errno> {
        let mut st = self.sk.state.guard();
        st.phase = Phase::Closed;
        self.sk.release_auto_port(&mut st);
        if !nonblocking {
            return Err(Errno::ECONNREFUSED);
        }
        st.error = Some(Errno::ECONNREFUSED);
        st.shut_rd = true;
        st.shut_wr = true;
        st.connecting = true;
        drop(st);
        self.sk.queue.notify();
        Err(Errno::EINPROGRESS)
    }

    /// `connect` with `AF_UNSPEC`: abort whatever the socket was doing (a connection is
    /// reset; the next call on this end hears `ECONNRESET`).
    fn disconnect(&self) -> Result<(), Errno> {
        let phase = {
            let mut st = self.sk.state.guard();
            let phase = std::mem::replace(&mut st.phase, Phase::Closed);
            st.connecting = false;
            st.shut_rd = false;
            st.shut_wr = false;
            if matches!(phase, Phase::Connected(_) | Phase::Remote(_)) {
                st.error = Some(Errno::ECONNRESET);
            }
            if let (Phase::Listening(_), Some(port)) = (&phase, st.held) {
                self.sk
                    .stack
                    .tcp
                    .guard()
                    .update(port, self.sk.ino, |e| e.listening = false);
            }
            self.sk.release_auto_port(&mut st);
            phase
        };
        match phase {
            Phase::Listening(l) => Tcp::stop_listening(l),
            Phase::Connected(link) => {
                {
                    let mut ends = link.conn.ends.guard();
                    let (me, peer) = ends.pair(link.side);
                    if !me.reset {
                        peer.take_reset();
                    }
                    me.reset = true;
                    me.closed = true;
                }
                link.notify_peer();
            }
            Phase::Remote(conn) => conn.close(true),
            Phase::SynSent { .. } | Phase::Closed => {}
        }
        self.sk.queue.notify();
        Ok(())
    }

    /// Bind for a connect: an ephemeral port if unbound, and the route's source address
    /// for a socket bound to the wildcard.
    fn bind_for_connect(&self, st: &mut State, src: IpAddr) -> Result<SockAddr, Errno> {
        match (st.held, st.local) {
            (Some(port), Some(local)) => {
                let ip = if local.ip.is_unspecified() {
                    src
                } else {
                    local.ip
                };
                if ip.is_ipv4() != src.is_ipv4() {
                    return Err(Errno::ENETUNREACH);
                }
                let bind = Binding { ip, dual: false };
                self.sk
                    .stack
                    .tcp
                    .guard()
                    .update(port, self.sk.ino, |e| e.bind = bind);
                let local = SockAddr { ip, port };
                st.local = Some(local);
                Ok(local)
            }
            _ => {
                let e = self.sk.entry(
                    st,
                    Binding {
                        ip: src,
                        dual: false,
                    },
                );
                let port = self
                    .sk
                    .stack
                    .tcp
                    .guard()
                    .bind(0, e)
                    .map_err(|_| Errno::EADDRNOTAVAIL)?;
                st.held = Some(port);
                let local = SockAddr { ip: src, port };
                st.local = Some(local);
                Ok(local)
            }
        }
    }

    /// The listening socket that takes connections to `dst`: the best address match.
    fn find_listener(&self, dst: SockAddr) -> Option<Arc<Tcp>> {
        let table = self.sk.stack.tcp.guard();
        table
            .holders(dst.port)
            .iter()
            .filter(|e| e.listening)
            .filter_map(|e| Some((e.bind.score(dst.ip)?, e)))
            .max_by_key(|(score, _)| *score)
            .and_then(|(_, e)| e.owner.upgrade())
    }

    /// The connect of a socket now in SYN_SENT, bound at `local`, to `dst`.
    fn handshake(
        &self,
        task: &mut Task,
        dst: SockAddr,
        local: SockAddr,
        nonblocking: bool,
    ) -> Result<(), Errno> {
        let Some(listener) = self.find_listener(dst) else {
            return self.refused(nonblocking);
        };
        let limits = Tcp::limits(&self.sk.state.guard().opts);
        let link = {
            let mut lst = listener.state.guard();
            let Phase::Listening(l) = &mut lst.phase else {
                drop(lst);
                return self.refused(nonblocking);
            };
            if l.backlog.len() > l.max {
                l.pending.push_back(Arc::downgrade(&self.sk));
                None
            } else {
                Some(listener.establish(&mut lst, &self.sk, local, limits, dst))
            }
        };
        let Some(link) = link else {
            // The backlog is full: wait for accept to make room, as a client whose SYN was
            // dropped retries.
            self.sk.state.guard().connecting = true;
            if nonblocking {
                return Err(Errno::EINPROGRESS);
            }
            return self.wait_connected(task);
        };
        listener.queue.notify();
        self.sk
            .stack
            .tcp
            .guard()
            .update(local.port, self.sk.ino, |e| e.remote = Some(dst));
        {
            let mut st = self.sk.state.guard();
            st.phase = Phase::Connected(link);
            st.connecting = nonblocking;
        }
        self.sk.queue.notify();
        if nonblocking {
            Err(Errno::EINPROGRESS)
        } else {
            Ok(())
        }
    }
}

impl TcpSocket {
    /// A connection waiting on the external interface, as a new socket and its peer's
    /// address.
    fn accept_external(&self) -> Option<(Box<dyn FileOps>, Vec<u8>)> {
        let st = self.sk.state.guard();
        let Phase::Listening(Listener { ext: Some(ext), .. }) = &st.phase else {
            return None;
        };
        let sk = Tcp::new(
            self.sk.family,
            self.sk.uid,
            self.sk.stack.clone(),
            st.opts.inherit(),
        );
        let conn = ext.accept(sk.queue.clone())?;
        drop(st);
        let (local, remote) = conn.endpoints();
        {
            let mut s = sk.state.guard();
            s.local = local;
            s.phase = Phase::Remote(Arc::new(conn));
        }
        let peer = remote.unwrap_or(SockAddr::new(self.sk.family.any(), 0));
        Some((Box::new(TcpSocket { sk }), peer.to_sockaddr(self.sk.family)))
    }

    /// `recv`: up to `len` bytes to `sink`, waiting unless non-blocking; `wait_all` keeps
    /// waiting until all `len` came (or the stream ended, or an error or a signal after
    /// some). Returns the count.
    fn receive_with(
        &self,
        task: &mut Task,
        len: usize,
        peek: bool,
        wait_all: bool,
        how: Blocking,
        sink: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, Errno> {
        let deadline = crate::net::deadline(how.timeout);
        let wait_all = wait_all && !peek;
        let mut got = 0;
        loop {
            let generation = self.sk.queue.generation();
            let r = {
                let mut st = self.sk.state.guard();
                match &st.phase {
                    Phase::Connected(l) => {
                        let l = l.clone();
                        drop(st);
                        Tcp::try_receive(&l, len - got, peek, sink)
                    }
                    Phase::Remote(c) => {
                        let c = c.clone();
                        drop(st);
                        c.receive(len - got, peek, sink)
                    }
                    Phase::SynSent { .. } => Err(Errno::EAGAIN),
                    Phase::Listening(_) => Err(Errno::ENOTCONN),
                    Phase::Closed => match st.error.take() {
                        Some(e) => Err(e),
                        None if st.shut_rd => Ok(0),
                        None => Err(Errno::ENOTCONN),
                    },
                }
            };
            match r {
                Ok(n) => {
                    got += n;
                    if !wait_all || n == 0 || got >= len {
                        return Ok(got);
                    }
                    // Look again before waiting: the end of the stream may already be there.
                    continue;
                }
                Err(Errno::EAGAIN) if !how.nonblocking => {}
                Err(e) if got == 0 => return Err(e),
                Err(_) => return Ok(got),
            }
            if let Err(e) = self.wait(task, generation, deadline) {
                return if got == 0 { Err(e) } else { Ok(got) };
            }
        }
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        self.sk.close(false);
    }
}

impl Socket for TcpSocket {
    fn domain(&self) -> i32 {
        self.sk.family.domain()
    }

    fn kind(&self) -> i32 {
        libc::SOCK_STREAM
    }

    fn bind(&self, task: &mut Task, raw: &[u8]) -> Result<(), Errno> {
        let mut st = self.sk.state.guard();
        let addr = super::bind_addr(raw, self.sk.family, st.opts.v6only, &self.sk.stack)?;
        if super::port_needs_privilege(addr.port)
            && !task.creds.has(crate::capability::Cap::NetBindService)
        {
            return Err(Errno::EACCES);
        }
        if st.held.is_some() || !matches!(st.phase, Phase::Closed) {
            return Err(Errno::EINVAL);
        }
        let bind = self.sk.binding(addr.ip, st.opts.v6only);
        let e = self.sk.entry(&st, bind);
        let port = self.sk.stack.tcp.guard().bind(addr.port, e)?;
        st.held = Some(port);
        st.local = Some(SockAddr { ip: addr.ip, port });
        st.port_locked = addr.port != 0;
        Ok(())
    }

    fn listen(&self, _task: &mut Task, backlog: i32) -> Result<(), Errno> {
        let max = (backlog as u32 as usize).min(SOMAXCONN);
        let mut st = self.sk.state.guard();
        match &mut st.phase {
            Phase::Listening(l) => {
                l.max = max;
                if let Some(ext) = &l.ext {
                    ext.set_backlog(max)?;
                }
                return Ok(());
            }
            Phase::Connected(_) | Phase::SynSent { .. } | Phase::Remote(_) => {
                return Err(Errno::EINVAL)
            }
            Phase::Closed => {}
        }
        if st.held.is_none() {
            let any = self.sk.family.any();
            let bind = self.sk.binding(any, st.opts.v6only);
            let e = self.sk.entry(&st, bind);
            let port = self.sk.stack.tcp.guard().bind(0, e)?;
            st.held = Some(port);
            st.local = Some(SockAddr { ip: any, port });
        }
        let port = st.held.unwrap_or(0);
        self.sk.stack.tcp.guard().listen(port, self.sk.ino)?;
        let local_ip = st.local.map_or(self.sk.family.any(), |l| l.ip);
        let dual = self.sk.family == Family::V6 && !st.opts.v6only;
        let ext = match (
            &self.sk.stack.ext,
            self.sk.stack.external_binding(local_ip, dual),
        ) {
            (Some(ext), Some(addr)) => {
                match Listen::new(ext, self.sk.queue.clone(), addr, port, max) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        self.sk
                            .stack
                            .tcp
                            .guard()
                            .update(port, self.sk.ino, |e| e.listening = false);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        st.phase = Phase::Listening(Listener {
            backlog: VecDeque::new(),
            max,
            pending: VecDeque::new(),
            ext,
        });
        st.shut_rd = false;
        st.shut_wr = false;
        drop(st);
        self.sk.queue.notify();
        Ok(())
    }

    fn connect(&self, task: &mut Task, raw: &[u8], nonblocking: bool) -> Result<(), Errno> {
        if super::sa_family(raw)? == libc::AF_UNSPEC as u16 {
            return self.disconnect();
        }
        let (dst, local) = {
            let mut st = self.sk.state.guard();
            match &st.phase {
                Phase::Listening(_) => return Err(Errno::EISCONN),
                Phase::Connected(_) => {
                    // The first connect after EINPROGRESS reports success.
                    if st.connecting {
                        st.connecting = false;
                        return Ok(());
                    }
                    return Err(Errno::EISCONN);
                }
                Phase::Remote(c) => match c.progress() {
                    Progress::Open if st.connecting => {
                        st.connecting = false;
                        return Ok(());
                    }
                    Progress::Open => return Err(Errno::EISCONN),
                    Progress::Connecting if nonblocking => return Err(Errno::EALREADY),
                    Progress::Connecting | Progress::Failed(_) => {
                        drop(st);
                        return self.wait_connected(task);
                    }
                },
                Phase::SynSent { .. } => {
                    if nonblocking {
                        return Err(Errno::EALREADY);
                    }
                    drop(st);
                    return self.wait_connected(task);
                }
                Phase::Closed => {
                    if st.connecting {
                        // A connect that said EINPROGRESS failed: say how, once.
                        st.connecting = false;
                        st.shut_rd = false;
                        st.shut_wr = false;
                        return Err(st.error.take().unwrap_or(Errno::ECONNABORTED));
                    }
                }
            }
            let dst = super::connect_addr(raw, self.sk.family, st.opts.v6only)?;
            let (src, dst_ip) = match self.sk.stack.route(dst.ip)? {
                Route::Loopback { src, dst } => (src, dst),
                Route::External { src } => {
                    if dst.port == 0 {
                        return Err(Errno::ECONNREFUSED);
                    }
                    let Some(ext) = self.sk.stack.ext.clone() else {
                        return Err(Errno::ENETUNREACH);
                    };
                    let local = self.bind_for_connect(&mut st, src)?;
                    let conn = match Conn::connect(&ext, self.sk.queue.clone(), local, dst) {
                        Ok(c) => c,
                        Err(e) => {
                            self.sk.release_auto_port(&mut st);
                            return Err(e);
                        }
                    };
                    self.sk
                        .stack
                        .tcp
                        .guard()
                        .update(local.port, self.sk.ino, |e| e.remote = Some(dst));
                    st.phase = Phase::Remote(Arc::new(conn));
                    st.error = None;
                    st.connecting = true;
                    if nonblocking {
                        return Err(Errno::EINPROGRESS);
                    }
                    drop(st);
                    return self.wait_connected(task);
                }
            };
            let dst = SockAddr {
                ip: dst_ip,
                port: dst.port,
            };
            let local = self.bind_for_connect(&mut st, src)?;
            st.phase = Phase::SynSent { remote: dst };
            st.error = None;
            (dst, local)
        };
        self.handshake(task, dst, local, nonblocking)
    }

    fn accept(
        &self,
        task: &mut Task,
        nonblocking: bool,
    ) -> Result<(Box<dyn FileOps>, Vec<u8>), Errno> {
        let deadline = crate::net::deadline(self.sk.state.guard().opts.recv_timeout);
        loop {
            let generation = self.sk.queue.generation();
            let server = {
                let mut st = self.sk.state.guard();
                let Phase::Listening(l) = &mut st.phase else {
                    return Err(Errno::EINVAL);
                };
                let server = l.backlog.pop_front();
                if server.is_some() {
                    self.sk.admit_pending(&mut st);
                }
                server
            };
            if let Some(server) = server {
                let peer = match &server.state.guard().phase {
                    Phase::Connected(l) => l.remote,
                    _ => SockAddr::new(self.sk.family.any(), 0),
                };
                return Ok((
                    Box::new(TcpSocket { sk: server }),
                    peer.to_sockaddr(self.sk.family),
                ));
            }
            if let Some(accepted) = self.accept_external() {
                return Ok(accepted);
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
        _to: Option<&[u8]>,
        how: Blocking,
    ) -> Result<usize, Errno> {
        if !msg.fds.is_empty() || msg.creds.is_some() {
            return Err(Errno::EINVAL);
        }
        self.send_bytes(task, &msg.data, how)
    }

    fn send_bytes(&self, task: &mut Task, data: &[u8], how: Blocking) -> Result<usize, Errno> {
        let deadline = crate::net::deadline(how.timeout);
        let mut done = 0;
        loop {
            let generation = self.sk.queue.generation();
            let r = {
                let mut st = self.sk.state.guard();
                match &st.phase {
                    Phase::Connected(l) => {
                        let l = l.clone();
                        drop(st);
                        Tcp::try_send(&l, &data[done..])
                    }
                    Phase::Remote(c) => {
                        let c = c.clone();
                        drop(st);
                        if c.progress() == Progress::Connecting {
                            Err(Errno::EAGAIN)
                        } else {
                            c.send(&data[done..])
                        }
                    }
                    Phase::SynSent { .. } => Err(Errno::EAGAIN),
                    Phase::Closed | Phase::Listening(_) => {
                        Err(st.error.take().unwrap_or(Errno::EPIPE))
                    }
                }
            };
            match r {
                Ok(n) => {
                    done += n;
                    if done >= data.len() || how.nonblocking {
                        return Ok(done);
                    }
                    // Try again at once: a wait needs a send that found no room first, so
                    // that the receiver knows to wake this one.
                    continue;
                }
                Err(Errno::EAGAIN) if !how.nonblocking => {}
                Err(_) if done > 0 => return Ok(done),
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
        let mut got: Vec<u8> = Vec::new();
        self.receive_with(task, len, peek, wait_all, how, &mut |a, b| {
            got.extend_from_slice(a);
            got.extend_from_slice(b);
        })?;
        let whole = got.len();
        Ok(Incoming {
            data: got,
            whole,
            ..Incoming::default()
        })
    }

    fn receive_into(&self, task: &mut Task, buf: &mut [u8], how: Blocking) -> Result<usize, Errno> {
        let mut at = 0;
        let len = buf.len();
        self.receive_with(task, len, false, false, how, &mut |a, b| {
            buf[at..at + a.len()].copy_from_slice(a);
            at += a.len();
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        })
    }

    fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        let mut st = self.sk.state.guard();
        match &st.phase {
            Phase::Connected(l) => {
                let l = l.clone();
                drop(st);
                {
                    let mut ends = l.conn.ends.guard();
                    let (me, peer) = ends.pair(l.side);
                    if rd {
                        me.shut_rd = true;
                    }
                    if wr && !me.fin_sent && !me.reset {
                        send_fin(me, peer);
                    }
                    me.shut_wr |= wr;
                }
                l.notify_peer();
                self.sk.queue.notify();
                Ok(())
            }
            Phase::Listening(_) if rd => {
                // Linux stops listening (a way to wake threads blocked in accept).
                drop(st);
                self.disconnect()
            }
            Phase::Listening(_) => Ok(()),
            Phase::Remote(c) => {
                let c = c.clone();
                drop(st);
                c.shutdown(rd, wr);
                self.sk.queue.notify();
                Ok(())
            }
            Phase::SynSent { .. } => {
                drop(st);
                self.disconnect()
            }
            Phase::Closed => {
                st.shut_rd |= rd;
                st.shut_wr |= wr;
                drop(st);
                self.sk.queue.notify();
                Err(Errno::ENOTCONN)
            }
        }
    }

    fn local_name(&self) -> Vec<u8> {
        self.sk
            .state
            .guard()
            .local
            .unwrap_or(SockAddr::new(self.sk.family.any(), 0))
            .to_sockaddr(self.sk.family)
    }

    fn peer_name(&self) -> Result<Vec<u8>, Errno> {
        let remote = match &self.sk.state.guard().phase {
            Phase::Remote(c) => Some(c.clone()),
            _ => None,
        };
        if let Some(c) = remote {
            if c.progress() != Progress::Open {
                return Err(Errno::ENOTCONN);
            }
            return c
                .endpoints()
                .1
                .map(|r| r.to_sockaddr(self.sk.family))
                .ok_or(Errno::ENOTCONN);
        }
        let link = self.sk.link().ok_or(Errno::ENOTCONN)?;
        if link.conn.ends.guard().0[link.side].reset {
            return Err(Errno::ENOTCONN);
        }
        Ok(link.remote.to_sockaddr(self.sk.family))
    }

    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        let mut st = self.sk.state.guard();
        match (level, name) {
            (SOL_SOCKET, SO_TYPE) => int(libc::SOCK_STREAM),
            (SOL_SOCKET, SO_PROTOCOL) => int(libc::IPPROTO_TCP),
            (SOL_SOCKET, SO_DOMAIN) => int(self.sk.family.domain()),
            (SOL_SOCKET, SO_ACCEPTCONN) => int(i32::from(matches!(st.phase, Phase::Listening(_)))),
            (SOL_SOCKET, SO_PEERCRED) => Ok(Ucred::NOBODY.to_bytes().to_vec()),
            (SOL_SOCKET, SO_ERROR) => {
                let e = match &st.phase {
                    Phase::Connected(l) => {
                        let l = l.clone();
                        drop(st);
                        let mut ends = l.conn.ends.guard();
                        ends.0[l.side].error.take()
                    }
                    Phase::Remote(c) => {
                        let c = c.clone();
                        drop(st);
                        c.take_error()
                    }
                    _ => st.error.take(),
                };
                int(e.map_or(0, |e| e.0))
            }
            (SOL_TCP, TCP_INFO) => {
                drop(st);
                Ok(self.sk.tcp_info())
            }
            (SOL_TCP, TCP_MAXSEG) => {
                let user = st.opts.user_mss;
                int(match st.phase {
                    Phase::Connected(_) if user > 0 => user.min(LO_MSS),
                    Phase::Connected(_) => LO_MSS,
                    Phase::Remote(_) => self.sk.ext_mtu() - 40,
                    _ if user > 0 => user,
                    _ => MSS_DEFAULT,
                })
            }
            (SOL_IP, IP_MTU) | (SOL_IPV6, IPV6_MTU)
                if level == SOL_IP || self.sk.family == Family::V6 =>
            {
                match st.phase {
                    Phase::Connected(_) => int(LO_PATH_MTU),
                    Phase::Remote(_) => int(self.sk.ext_mtu()),
                    _ => Err(Errno::ENOTCONN),
                }
            }
            _ => st.opts.get(level, name),
        }
    }

    fn set_option(&self, task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        let mut st = self.sk.state.guard();
        if (level, name) == (SOL_IPV6, IPV6_V6ONLY)
            && self.sk.family == Family::V6
            && (value.len() < 4 || st.held.is_some())
        {
            // Only an unbound socket may change its family's reach.
            return Err(Errno::EINVAL);
        }
        st.opts.set(level, name, value, &task.creds)?;
        match (level, name) {
            (SOL_SOCKET, SO_REUSEADDR | SO_REUSEPORT) => {
                if let Some(port) = st.held {
                    let (a, p) = (
                        st.opts.flag(SOL_SOCKET, SO_REUSEADDR),
                        st.opts.flag(SOL_SOCKET, SO_REUSEPORT),
                    );
                    self.sk.stack.tcp.guard().update(port, self.sk.ino, |e| {
                        e.reuseaddr = a;
                        e.reuseport = p;
                    });
                }
            }
            (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF | SO_SNDBUFFORCE | SO_RCVBUFFORCE) => {
                let (rcv, snd) = Tcp::limits(&st.opts);
                if let Phase::Connected(l) = &st.phase {
                    let l = l.clone();
                    drop(st);
                    let wake = {
                        let mut ends = l.conn.ends.guard();
                        let me = &mut ends.0[l.side];
                        me.rcv_limit = rcv;
                        me.snd_limit = snd;
                        ends.writable(l.side) || ends.writable(1 - l.side)
                    };
                    if wake {
                        l.conn.queues[0].notify();
                        l.conn.queues[1].notify();
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let st = self.sk.state.guard();
        (st.opts.send_timeout, st.opts.recv_timeout)
    }
}

impl FileOps for TcpSocket {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let link = {
            let mut st = self.sk.state.guard();
            match &st.phase {
                Phase::Connected(l) => l.clone(),
                Phase::Remote(c) => {
                    let c = c.clone();
                    drop(st);
                    let mut at = 0;
                    c.receive(buf.len(), false, &mut |a, _| {
                        buf[..a.len()].copy_from_slice(a);
                        at = a.len();
                    })?;
                    return Ok(at);
                }
                Phase::SynSent { .. } => return Err(Errno::EAGAIN),
                Phase::Listening(_) => return Err(Errno::ENOTCONN),
                Phase::Closed => {
                    return match st.error.take() {
                        Some(e) => Err(e),
                        None if st.shut_rd => Ok(0),
                        None => Err(Errno::ENOTCONN),
                    }
                }
            }
        };
        let mut at = 0;
        Tcp::try_receive(&link, buf.len(), false, &mut |a, b| {
            buf[..a.len()].copy_from_slice(a);
            buf[a.len()..a.len() + b.len()].copy_from_slice(b);
            at = a.len() + b.len();
        })?;
        Ok(at)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let link = {
            let mut st = self.sk.state.guard();
            match &st.phase {
                Phase::Connected(l) => l.clone(),
                Phase::Remote(c) => {
                    let c = c.clone();
                    drop(st);
                    return c.send(buf);
                }
                Phase::SynSent { .. } => return Err(Errno::EAGAIN),
                Phase::Closed | Phase::Listening(_) => {
                    return Err(st.error.take().unwrap_or(Errno::EPIPE))
                }
            }
        };
        Tcp::try_send(&link, buf)
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        if let Some(r) = crate::net::iface::ioctl(mm, request, arg, true) {
            return r;
        }
        let n = match request {
            FIONREAD | TIOCOUTQ | SIOCOUTQNSD => {
                let link = match &self.sk.state.guard().phase {
                    Phase::Listening(_) => return Err(Errno::EINVAL),
                    Phase::Connected(l) => Some(l.clone()),
                    Phase::Remote(c) => {
                        let (rx, tx) = c.queues();
                        let n = if request == FIONREAD { rx } else { tx };
                        mm.write_obj(arg, &(n.min(i32::MAX as usize) as i32))?;
                        return Ok(0);
                    }
                    _ => None,
                };
                link.map_or(0, |l| {
                    let ends = l.conn.ends.guard();
                    if request == FIONREAD {
                        ends.0[l.side].rx.len()
                    } else {
                        ends.unsent(l.side)
                    }
                })
            }
            SIOCATMARK => 0,
            _ => return Err(Errno::ENOTTY),
        };
        mm.write_obj(arg, &(n.min(i32::MAX as usize) as i32))?;
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(crate::net::socket_stat(self.sk.ino, self.sk.uid))
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        self.sk.poll()
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.sk.queue)
    }

    fn as_socket(&self) -> Option<&dyn Socket> {
        Some(self)
    }
}
