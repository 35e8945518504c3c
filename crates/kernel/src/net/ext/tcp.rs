//! TCP on the external interface: a connection ([`Conn`]) is one smoltcp socket, and a
//! listener's share of the interface ([`Listen`]) a pool of listening smoltcp sockets.
//!
//! smoltcp has no listen backlog: a listening socket *becomes* the connection of the first
//! SYN it takes, and the next SYN to the port finds nobody (and is answered with a reset).
//! So a listener keeps `backlog + 1` (at most [`POOL_MAX`]) listening sockets; `accept`
//! takes one that has left the listening state and puts a fresh one in its place, which is
//! Linux's backlog seen from outside: that many connections may wait for `accept`.
//!
//! What the socket layer (`inet/tcp.rs`) needs is here in Linux's terms: readiness as
//! `tcp_poll` reports it, `EAGAIN`, end of stream, and the errors of a refused, reset or
//! timed-out connection, each reported once.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_abi::Errno;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use super::{endpoint, sock_addr, External, Inner};
use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::net::inet::{state, SockAddr};
use crate::net::unix::POLLRDHUP;
use crate::process::Guard;
use crate::wait::WaitQueue;

/// Each connection's receive and send buffers. The receive buffer is the window offered
/// (scaled past 64 KiB); smoltcp sizes both once, when the socket is made.
const RX_BUFFER: usize = 512 << 10;
const TX_BUFFER: usize = 512 << 10;
/// The most listening sockets one listener keeps (each holds its buffers).
pub const POOL_MAX: usize = 16;
/// How long a connection may go unacknowledged before it is dropped, and how long a connect
/// tries (Linux gives up on a SYN after about two minutes).
const USER_TIMEOUT: Duration = Duration::from_secs(120);

fn new_socket() -> Socket<'static> {
    let mut s = Socket::new(
        SocketBuffer::new(vec![0; RX_BUFFER]),
        SocketBuffer::new(vec![0; TX_BUFFER]),
    );
    s.set_timeout(Some(smoltcp::time::Duration::from_secs(
        USER_TIMEOUT.as_secs(),
    )));
    // Linux acknowledges at once while a connection starts (quick ACK) and sends small
    // writes without waiting when nothing is in flight; smoltcp's Nagle and 10 ms delayed
    // ACK together stall request-response traffic.
    s.set_ack_delay(None);
    s
}

/// How far a connection has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Connecting,
    Open,
    /// It failed before it was established: refused or timed out.
    Failed(Errno),
}

#[derive(Default)]
struct Flags {
    /// It was seen established (so an end without a FIN is a reset, not a refusal).
    established: bool,
    shut_rd: bool,
    shut_wr: bool,
    /// The error of its end (refusal, reset, time-out) was reported.
    error_taken: bool,
}

/// One TCP connection on the external interface.
pub struct Conn {
    ext: Arc<External>,
    handle: SocketHandle,
    started: Instant,
    flags: Mutex<Flags>,
}

impl Conn {
    /// Start connecting from `local` to `remote`; readiness goes to `queue`.
    pub fn connect(
        ext: &Arc<External>,
        queue: Arc<WaitQueue>,
        local: SockAddr,
        remote: SockAddr,
    ) -> Result<Conn, Errno> {
        let handle = ext.with(|inner| {
            let mut s = new_socket();
            s.connect(
                inner.iface.context(),
                endpoint(remote),
                IpListenEndpoint {
                    addr: Some(IpAddress::from(local.ip)),
                    port: local.port,
                },
            )
            .map_err(|_| Errno::EADDRNOTAVAIL)?;
            let h = inner.sockets.add(s);
            inner.watchers.insert(h, queue);
            Ok(h)
        })?;
        Ok(Conn {
            ext: ext.clone(),
            handle,
            started: Instant::now(),
            flags: Mutex::new(Flags::default()),
        })
    }

    /// Act on the connection, then poll the interface (what was queued leaves, a window
    /// opened is announced).
    fn look<R>(&self, f: impl FnOnce(&mut Socket<'static>, &mut Flags) -> R) -> R {
        self.ext.with(|inner| self.on(inner, f))
    }

    /// Look at the connection without polling the interface.
    fn view<R>(&self, f: impl FnOnce(&mut Socket<'static>, &mut Flags) -> R) -> R {
        self.ext.peek(|inner| self.on(inner, f))
    }

    fn on<R>(&self, inner: &mut Inner, f: impl FnOnce(&mut Socket<'static>, &mut Flags) -> R) -> R {
        let s = inner.sockets.get_mut::<Socket>(self.handle);
        let mut flags = self.flags.guard();
        if !matches!(
            s.state(),
            State::SynSent | State::SynReceived | State::Closed
        ) {
            flags.established = true;
        }
        f(s, &mut flags)
    }

    /// The error that ended the connection, if one did: it closed without the application
    /// closing it (a reset, or a time-out) or before it was established (refused).
    fn failure(&self, s: &Socket, flags: &Flags) -> Option<Errno> {
        if s.state() != State::Closed || flags.shut_wr {
            return None;
        }
        Some(if flags.established {
            Errno::ECONNRESET
        } else if self.started.elapsed() >= USER_TIMEOUT {
            Errno::ETIMEDOUT
        } else {
            Errno::ECONNREFUSED
        })
    }

    pub fn progress(&self) -> Progress {
        self.view(|s, flags| match s.state() {
            State::SynSent | State::SynReceived => Progress::Connecting,
            _ if flags.established => Progress::Open,
            _ => Progress::Failed(self.failure(s, flags).unwrap_or(Errno::ECONNREFUSED)),
        })
    }

    /// The connection's error, once (`SO_ERROR`, or the next call).
    pub fn take_error(&self) -> Option<Errno> {
        self.view(|s, flags| {
            if flags.error_taken {
                return None;
            }
            let e = self.failure(s, flags)?;
            flags.error_taken = true;
            Some(e)
        })
    }

    /// What `poll` reports (Linux's `tcp_poll`).
    pub fn poll(&self) -> u32 {
        self.view(|s, flags| {
            let st = s.state();
            if matches!(st, State::SynSent | State::SynReceived) {
                return 0;
            }
            let failed = self.failure(s, flags);
            if !flags.established {
                // Refused: Linux reports the error, a hang-up, and writability.
                let mut r = POLLOUT | POLLWRNORM | POLLHUP;
                if failed.is_some() && !flags.error_taken {
                    r |= POLLERR;
                }
                return r;
            }
            let peer_fin = matches!(
                st,
                State::CloseWait
                    | State::LastAck
                    | State::Closing
                    | State::TimeWait
                    | State::Closed
            );
            let mut r = 0;
            if s.can_recv() {
                r |= POLLIN | POLLRDNORM;
            }
            if peer_fin || flags.shut_rd {
                r |= POLLIN | POLLRDNORM | POLLRDHUP;
            }
            if s.can_send() || flags.shut_wr || st == State::Closed {
                r |= POLLOUT | POLLWRNORM;
            }
            if st == State::Closed || (flags.shut_wr && peer_fin) {
                r |= POLLHUP;
            }
            if failed.is_some() && !flags.error_taken {
                r |= POLLERR;
            }
            r
        })
    }

    /// Queue what fits of `data`: `EAGAIN` when nothing does, `EPIPE` after a shutdown.
    pub fn send(&self, data: &[u8]) -> Result<usize, Errno> {
        self.look(|s, flags| {
            if let Some(e) = self.failure(s, flags) {
                if !flags.error_taken {
                    flags.error_taken = true;
                    return Err(e);
                }
                return Err(Errno::EPIPE);
            }
            if flags.shut_wr || !s.may_send() {
                return Err(Errno::EPIPE);
            }
            if data.is_empty() {
                return Ok(0);
            }
            match s.send_slice(data) {
                Ok(0) => Err(Errno::EAGAIN),
                Ok(n) => Ok(n),
                Err(_) => Err(Errno::EPIPE),
            }
        })
    }

    /// Take (or with `peek` copy) up to `len` bytes into `sink`; 0 at the end of the stream,
    /// `EAGAIN` when nothing is there yet.
    pub fn receive(
        &self,
        len: usize,
        peek: bool,
        sink: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, Errno> {
        if len == 0 {
            return Ok(0);
        }
        self.look(|s, flags| {
            if s.can_recv() && !flags.shut_rd {
                let mut buf = vec![0u8; len.min(s.recv_queue())];
                let n = if peek {
                    s.peek_slice(&mut buf)
                } else {
                    s.recv_slice(&mut buf)
                }
                .unwrap_or(0);
                sink(&buf[..n], &[]);
                return Ok(n);
            }
            if let Some(e) = self.failure(s, flags) {
                if !flags.error_taken {
                    flags.error_taken = true;
                    return Err(e);
                }
                return Ok(0);
            }
            if flags.shut_rd || !s.may_recv() {
                return Ok(0);
            }
            Err(Errno::EAGAIN)
        })
    }

    /// `shutdown`: stop reading, and/or send a FIN.
    pub fn shutdown(&self, rd: bool, wr: bool) {
        self.look(|s, flags| {
            flags.shut_rd |= rd;
            if wr && !flags.shut_wr {
                flags.shut_wr = true;
                s.close();
            }
        });
    }

    /// The socket's file is gone: close gracefully (a FIN), or reset (`abort`, unread data,
    /// `SO_LINGER` 0); smoltcp keeps the socket until the connection has ended.
    pub fn close(&self, abort: bool) {
        self.ext.with(|inner| {
            inner.watchers.remove(&self.handle);
            let s = inner.sockets.get_mut::<Socket>(self.handle);
            if abort || s.can_recv() {
                s.abort();
            } else {
                s.close();
            }
            inner.closing.push(self.handle);
        });
    }

    /// Local and remote addresses.
    pub fn endpoints(&self) -> (Option<SockAddr>, Option<SockAddr>) {
        self.view(|s, _| {
            (
                s.local_endpoint().map(sock_addr),
                s.remote_endpoint().map(sock_addr),
            )
        })
    }

    /// Bytes waiting to be read, and bytes not yet acknowledged.
    pub fn queues(&self) -> (usize, usize) {
        self.view(|s, _| (s.recv_queue(), s.send_queue()))
    }

    /// The TCP state, as Linux numbers it.
    pub fn linux_state(&self) -> u8 {
        self.view(|s, _| match s.state() {
            State::Closed | State::Listen => state::CLOSE,
            State::SynSent => state::SYN_SENT,
            State::SynReceived => 3,
            State::Established => state::ESTABLISHED,
            State::FinWait1 => 4,
            State::FinWait2 => state::FIN_WAIT2,
            State::CloseWait => state::CLOSE_WAIT,
            State::Closing => 11,
            State::LastAck => 9,
            State::TimeWait => state::TIME_WAIT,
        })
    }

    /// `TCP_NODELAY`: smoltcp's Nagle off, or on again.
    pub fn set_nodelay(&self, on: bool) {
        self.look(|s, _| s.set_nagle_enabled(!on));
    }
}

/// A listener's pool of listening sockets on the interface.
pub struct Listen {
    ext: Arc<External>,
    endpoint: IpListenEndpoint,
    queue: Arc<WaitQueue>,
    pool: Mutex<Vec<SocketHandle>>,
}

fn listening(
    inner: &mut Inner,
    endpoint: IpListenEndpoint,
    queue: &Arc<WaitQueue>,
) -> Result<SocketHandle, Errno> {
    let mut s = new_socket();
    s.listen(endpoint).map_err(|_| Errno::EADDRINUSE)?;
    let h = inner.sockets.add(s);
    inner.watchers.insert(h, queue.clone());
    Ok(h)
}

impl Listen {
    /// Listen on `port` of `addr` (every address: `None`) with room for `backlog` waiting
    /// connections; readiness goes to `queue`.
    pub fn new(
        ext: &Arc<External>,
        queue: Arc<WaitQueue>,
        addr: Option<IpAddr>,
        port: u16,
        backlog: usize,
    ) -> Result<Listen, Errno> {
        let l = Listen {
            ext: ext.clone(),
            endpoint: IpListenEndpoint {
                addr: addr.map(IpAddress::from),
                port,
            },
            queue,
            pool: Mutex::new(Vec::new()),
        };
        l.set_backlog(backlog)?;
        Ok(l)
    }

    /// Grow the pool to `backlog + 1` sockets (within [`POOL_MAX`]).
    pub fn set_backlog(&self, backlog: usize) -> Result<(), Errno> {
        let want = (backlog + 1).clamp(1, POOL_MAX);
        let mut pool = self.pool.guard();
        self.ext.with(|inner| {
            while pool.len() < want {
                pool.push(listening(inner, self.endpoint, &self.queue)?);
            }
            Ok(())
        })
    }

    /// Whether a connection waits for `accept`.
    pub fn ready(&self) -> bool {
        let pool = self.pool.guard();
        self.ext.peek(|inner| {
            pool.iter().any(|h| {
                !matches!(
                    inner.sockets.get::<Socket>(*h).state(),
                    State::Listen | State::SynReceived
                )
            })
        })
    }

    /// How many connections wait for `accept`.
    pub fn waiting(&self) -> usize {
        let pool = self.pool.guard();
        self.ext.peek(|inner| {
            pool.iter()
                .filter(|h| {
                    !matches!(
                        inner.sockets.get::<Socket>(**h).state(),
                        State::Listen | State::SynReceived
                    )
                })
                .count()
        })
    }

    /// Take a waiting connection, whose readiness goes to `queue` from now on, and put a
    /// fresh listening socket in its place.
    pub fn accept(&self, queue: Arc<WaitQueue>) -> Option<Conn> {
        let mut pool = self.pool.guard();
        let handle = self.ext.with(|inner| {
            let i = pool.iter().position(|h| {
                !matches!(
                    inner.sockets.get::<Socket>(*h).state(),
                    State::Listen | State::SynReceived
                )
            })?;
            let h = pool.swap_remove(i);
            inner.watchers.insert(h, queue);
            if let Ok(fresh) = listening(inner, self.endpoint, &self.queue) {
                pool.push(fresh);
            }
            Some(h)
        })?;
        Some(Conn {
            ext: self.ext.clone(),
            handle,
            started: Instant::now(),
            flags: Mutex::new(Flags {
                established: true,
                ..Flags::default()
            }),
        })
    }

    /// Stop listening: connections not yet accepted are reset.
    pub fn close(&self) {
        let pool = std::mem::take(&mut *self.pool.guard());
        self.ext.with(|inner| {
            for h in pool {
                inner.watchers.remove(&h);
                inner.sockets.get_mut::<Socket>(h).abort();
                inner.closing.push(h);
            }
        });
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        self.close();
    }
}
