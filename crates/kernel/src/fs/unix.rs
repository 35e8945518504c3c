//! Connected unix domain sockets, as `socketpair(AF_UNIX, ...)` makes them: two ends, each
//! direction a bounded queue — of bytes for `SOCK_STREAM`, of whole messages for
//! `SOCK_DGRAM` and `SOCK_SEQPACKET`. Like pipes, the ends never block themselves: an empty
//! read or a full write is `EAGAIN` and the system call layer sleeps on the pair's wait queue.
//! (Binding, listening and connecting by address, and passing fds, come with issue 7.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use moat_abi::{Errno, Stat};

use super::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::{FileOps, OpenFile};
use crate::process::Guard;
use crate::wait::WaitQueue;

/// `POLLRDHUP`: the peer shut down its writing side.
pub const POLLRDHUP: u32 = 0x2000;
/// Bytes a direction holds before writers wait (Linux's default `SO_SNDBUF` for unix sockets).
const CAPACITY: usize = 212_992;

/// One direction of a pair.
#[derive(Default)]
struct Direction {
    /// Stream bytes, or messages (each a `Vec`) for datagram kinds.
    bytes: VecDeque<u8>,
    messages: VecDeque<Vec<u8>>,
    queued: usize,
    /// No more data will come (the writer shut down or closed).
    write_closed: bool,
    /// Nobody will read (the reader shut down or closed): writes are `EPIPE`.
    read_closed: bool,
}

/// The shared state of a connected pair.
pub struct Pair {
    /// `[0]` carries data from end 0 to end 1, `[1]` from end 1 to end 0.
    directions: Mutex<[Direction; 2]>,
    queue: WaitQueue,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub kind: i32,
    ino: u64,
}

/// One end of a connected pair.
pub struct UnixSocket {
    pair: Arc<Pair>,
    /// 0 or 1: this end writes into `directions[side]` and reads `directions[1 - side]`.
    side: usize,
}

impl UnixSocket {
    /// A connected pair of `kind` sockets.
    pub fn pair(kind: i32) -> (UnixSocket, UnixSocket) {
        static NEXT_INO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let pair = Arc::new(Pair {
            directions: Mutex::new([Direction::default(), Direction::default()]),
            queue: WaitQueue::default(),
            kind,
            ino: NEXT_INO.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        });
        (
            UnixSocket {
                pair: pair.clone(),
                side: 0,
            },
            UnixSocket { pair, side: 1 },
        )
    }

    fn messages(&self) -> bool {
        self.pair.kind != libc::SOCK_STREAM
    }

    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub fn messages_kind(&self) -> i32 {
        self.pair.kind
    }

    /// `shutdown(how)`: `SHUT_RD` (0), `SHUT_WR` (1) or both (2).
    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        let mut d = self.pair.directions.guard();
        if rd {
            d[1 - self.side].read_closed = true;
        }
        if wr {
            d[self.side].write_closed = true;
        }
        drop(d);
        self.pair.queue.notify();
        Ok(())
    }

    /// Receive into `buf`; `peek` leaves the data queued. Returns the bytes copied and, for
    /// messages, the message's whole length (`MSG_TRUNC`).
    pub fn receive(&self, buf: &mut [u8], peek: bool) -> Result<(usize, usize), Errno> {
        let mut d = self.pair.directions.guard();
        let dir = &mut d[1 - self.side];
        if dir.read_closed {
            return Ok((0, 0));
        }
        if self.messages() {
            let Some(msg) = dir.messages.front() else {
                // A datagram socket has no end of stream: a closed peer just sends nothing.
                return if dir.write_closed && self.pair.kind == libc::SOCK_SEQPACKET {
                    Ok((0, 0))
                } else {
                    Err(Errno::EAGAIN)
                };
            };
            let n = buf.len().min(msg.len());
            buf[..n].copy_from_slice(&msg[..n]);
            let whole = msg.len();
            if !peek {
                dir.queued -= whole;
                dir.messages.pop_front();
            }
            drop(d);
            self.pair.queue.notify();
            return Ok((n, whole));
        }
        if dir.bytes.is_empty() {
            return if dir.write_closed {
                Ok((0, 0))
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let n = buf.len().min(dir.bytes.len());
        for (dst, src) in buf.iter_mut().zip(dir.bytes.iter()) {
            *dst = *src;
        }
        if !peek {
            dir.bytes.drain(..n);
            dir.queued -= n;
        }
        drop(d);
        self.pair.queue.notify();
        Ok((n, n))
    }

    /// Send `data`: a stream takes what fits, a message goes whole or waits (`EMSGSIZE` if it
    /// could never fit).
    pub fn send(&self, data: &[u8]) -> Result<usize, Errno> {
        let mut d = self.pair.directions.guard();
        let dir = &mut d[self.side];
        if dir.write_closed || dir.read_closed {
            return Err(Errno::EPIPE);
        }
        let room = CAPACITY.saturating_sub(dir.queued);
        if self.messages() {
            if data.len() > CAPACITY {
                return Err(Errno::EMSGSIZE);
            }
            if data.len() > room {
                return Err(Errno::EAGAIN);
            }
            dir.messages.push_back(data.to_vec());
            dir.queued += data.len();
            drop(d);
            self.pair.queue.notify();
            return Ok(data.len());
        }
        if room == 0 {
            return Err(Errno::EAGAIN);
        }
        let n = data.len().min(room);
        dir.bytes.extend(&data[..n]);
        dir.queued += n;
        drop(d);
        self.pair.queue.notify();
        Ok(n)
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        {
            let mut d = self.pair.directions.guard();
            d[self.side].write_closed = true;
            d[1 - self.side].read_closed = true;
        }
        self.pair.queue.notify();
    }
}

impl FileOps for UnixSocket {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        self.receive(buf, false).map(|(n, _)| n)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        self.send(buf)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            st_dev: 0x8,
            st_ino: self.pair.ino * 2 + self.side as u64,
            st_nlink: 1,
            st_mode: libc::S_IFSOCK | 0o777,
            st_blksize: 4096,
            ..Stat::default()
        })
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let d = self.pair.directions.guard();
        let (incoming, outgoing) = (&d[1 - self.side], &d[self.side]);
        let mut r = 0;
        let eof = incoming.write_closed && self.pair.kind != libc::SOCK_DGRAM;
        if incoming.queued > 0 || eof || incoming.read_closed {
            r |= POLLIN | POLLRDNORM;
        }
        if incoming.write_closed {
            r |= POLLRDHUP;
        }
        if outgoing.read_closed || outgoing.write_closed {
            if outgoing.read_closed {
                r |= POLLOUT | POLLWRNORM;
            }
        } else if CAPACITY - outgoing.queued >= CAPACITY / 4 {
            r |= POLLOUT | POLLWRNORM;
        }
        if incoming.write_closed && outgoing.read_closed {
            r |= POLLHUP;
        }
        if outgoing.read_closed && !outgoing.write_closed && outgoing.queued > 0 {
            r |= POLLERR;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pair.queue)
    }
}
