//! Sockets. Every socket is a Moat object behind the [`Socket`] trait; the system calls in
//! `syscalls/socket.rs` decode the application's arguments (addresses, iovecs, control
//! messages) and hand a socket plain values. Unix domain sockets are in [`unix`]; TCP and UDP
//! over IPv4 and IPv6 in [`inet`], over the sandbox's loopback and, where the sandbox took
//! one, its external interface ([`ext`], smoltcp on a packet socket); the interfaces are in
//! [`iface`], which [`netlink`] route sockets describe. With `--network=host`, TCP and UDP
//! sockets are [`host`] sockets instead.

pub mod ext;
pub mod host;
pub mod iface;
pub mod inet;
pub mod netlink;
pub mod unix;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moat_abi::Errno;

use crate::fs::{FileOps, OpenFile};
use crate::task::Task;

/// Which network a sandbox's TCP and UDP sockets use (`moat do --network`, `moat
/// --network` for OCI containers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The sandbox's own stack ([`inet`]): its loopback, and whatever external interface
    /// the stack is given; the host's stack never sees the application's sockets.
    #[default]
    Sandbox,
    /// The sandbox's own stack with loopback only, and never anything external.
    None,
    /// Real host sockets the kernel owns on the application's behalf ([`host`]), in the
    /// host's network namespace: faster and reachable, but the host's stack is exposed.
    Host,
}

impl NetworkMode {
    /// The option's spelling.
    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::Sandbox => "sandbox",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }

    pub fn parse(name: &str) -> Option<NetworkMode> {
        [NetworkMode::Sandbox, NetworkMode::None, NetworkMode::Host]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// A fresh inode number for a socket (`st_ino`, the N of `socket:[N]`): one sequence for
/// every family, as sockfs has.
pub fn next_ino() -> u64 {
    static NEXT_INO: AtomicU64 = AtomicU64::new(1);
    NEXT_INO.fetch_add(1, Ordering::Relaxed)
}

/// `fstat` of a socket: sockfs's device, the socket's inode number, its owner.
pub fn socket_stat(ino: u64, uid: u32) -> moat_abi::Stat {
    moat_abi::Stat {
        st_dev: 0x8,
        st_ino: ino,
        st_nlink: 1,
        st_mode: libc::S_IFSOCK | 0o777,
        st_uid: uid,
        st_blksize: 4096,
        ..moat_abi::Stat::default()
    }
}

/// `SOL_SOCKET`: the level of the options every socket has.
pub const SOL_SOCKET: i32 = 1;

/// Sleep until `queue` has news since `generation`, or until `deadline` (then `EAGAIN`, as
/// a socket time-out says). With a time-out set, Linux does not restart an interrupted call.
pub(crate) fn wait_for(
    task: &mut Task,
    queue: &crate::wait::WaitQueue,
    generation: u64,
    deadline: Option<std::time::Instant>,
) -> Result<(), Errno> {
    match task.block_on(&[queue], deadline, |_| {
        Ok((queue.generation() != generation).then_some(()))
    }) {
        Err(Errno::ETIMEDOUT) => Err(Errno::EAGAIN),
        Err(Errno::ERESTARTSYS) if deadline.is_some() => Err(Errno::EINTR),
        r => r,
    }
}

/// Try `attempt` until it does not say `EAGAIN`, sleeping on `queue` between tries unless
/// the call is non-blocking, until the time-out. The queue's generation is read before each
/// try, so news between the try and the sleep is not lost.
pub(crate) fn retry<T>(
    task: &mut Task,
    queue: &crate::wait::WaitQueue,
    nonblocking: bool,
    timeout: Option<Duration>,
    mut attempt: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    let until = deadline(timeout);
    loop {
        let generation = queue.generation();
        match attempt() {
            Err(Errno::EAGAIN) if !nonblocking => wait_for(task, queue, generation, until)?,
            r => return r,
        }
    }
}

/// When a call with time-out `timeout` gives up.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<std::time::Instant> {
    timeout.map(|t| std::time::Instant::now() + t)
}

/// `struct ucred`: who sent a message, or who is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Ucred {
    /// What Linux reports for a socket with no peer: pid 0, IDs -1.
    pub const NOBODY: Ucred = Ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };

    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&self.uid.to_le_bytes());
        b[8..].copy_from_slice(&self.gid.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Ucred> {
        let word = |i: usize| -> Option<[u8; 4]> { b.get(i..i + 4)?.try_into().ok() };
        Some(Ucred {
            pid: i32::from_le_bytes(word(0)?),
            uid: u32::from_le_bytes(word(4)?),
            gid: u32::from_le_bytes(word(8)?),
        })
    }
}

/// What `sendmsg` gives a socket.
#[derive(Default)]
pub struct Outgoing {
    pub data: Vec<u8>,
    /// Files passed with `SCM_RIGHTS`.
    pub fds: Vec<Arc<OpenFile>>,
    /// Credentials given with `SCM_CREDENTIALS` (already checked against the sender's).
    pub creds: Option<Ucred>,
}

/// What a socket gives `recvmsg`.
#[derive(Default)]
pub struct Incoming {
    pub data: Vec<u8>,
    /// The whole message's length (larger than `data` for a truncated datagram).
    pub whole: usize,
    /// The sender's address as a `sockaddr`, if it has one.
    pub from: Option<Vec<u8>>,
    pub fds: Vec<Arc<OpenFile>>,
    /// The sender's credentials, when the receiver asked for them (`SO_PASSCRED`).
    pub creds: Option<Ucred>,
    /// Other control messages the receiver asked for (`SO_TIMESTAMP`, `IP_TTL`...), in the
    /// order Linux puts them.
    pub control: Vec<Cmsg>,
}

/// A control message of a receive: its level, type and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmsg {
    pub level: i32,
    pub kind: i32,
    pub data: Vec<u8>,
}

/// How a send or receive may wait.
#[derive(Clone, Copy, Debug)]
pub struct Blocking {
    pub nonblocking: bool,
    /// `SO_SNDTIMEO`/`SO_RCVTIMEO`: give up with `EAGAIN` after this long.
    pub timeout: Option<Duration>,
}

/// A socket, whatever its family. Calls that may wait get the task (they sleep in
/// `Task::block_on`, so signals interrupt them).
pub trait Socket: Send + Sync {
    /// `SO_DOMAIN`: the address family.
    fn domain(&self) -> i32;
    /// `SO_TYPE`: `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    fn kind(&self) -> i32;
    fn bind(&self, task: &mut Task, addr: &[u8]) -> Result<(), Errno>;
    fn listen(&self, task: &mut Task, backlog: i32) -> Result<(), Errno>;
    fn connect(&self, task: &mut Task, addr: &[u8], nonblocking: bool) -> Result<(), Errno>;
    /// A connection from the backlog, and the peer's address.
    fn accept(
        &self,
        task: &mut Task,
        nonblocking: bool,
    ) -> Result<(Box<dyn FileOps>, Vec<u8>), Errno>;
    /// Send `msg` (to `to`, for datagrams); returns the bytes taken. `EPIPE` is returned as
    /// is: the caller raises `SIGPIPE`.
    fn send(
        &self,
        task: &mut Task,
        msg: Outgoing,
        to: Option<&[u8]>,
        how: Blocking,
    ) -> Result<usize, Errno>;
    /// Receive up to `len` bytes; `peek` leaves them queued, `wait_all` keeps a stream
    /// waiting for all of them.
    fn receive(
        &self,
        task: &mut Task,
        len: usize,
        peek: bool,
        wait_all: bool,
        how: Blocking,
    ) -> Result<Incoming, Errno>;
    /// Send plain bytes (`write`, or a send with neither a name nor control data); a socket
    /// that can take them from the caller's buffer saves a copy.
    fn send_bytes(&self, task: &mut Task, data: &[u8], how: Blocking) -> Result<usize, Errno> {
        let msg = Outgoing {
            data: data.to_vec(),
            ..Outgoing::default()
        };
        self.send(task, msg, None, how)
    }
    /// Receive into `buf` (`read`): files passed with the data are closed, as Linux does.
    fn receive_into(&self, task: &mut Task, buf: &mut [u8], how: Blocking) -> Result<usize, Errno> {
        let got = self.receive(task, buf.len(), false, false, how)?;
        buf[..got.data.len()].copy_from_slice(&got.data);
        Ok(got.data.len())
    }
    fn shutdown(&self, how: i32) -> Result<(), Errno>;
    /// `getsockname`: the socket's own address.
    fn local_name(&self) -> Vec<u8>;
    /// `getpeername`: `ENOTCONN` without a peer.
    fn peer_name(&self) -> Result<Vec<u8>, Errno>;
    /// An option's value at `level` (`SOL_SOCKET`, `IPPROTO_TCP`...), as the bytes
    /// `getsockopt` copies out (truncated to the caller's length).
    fn get_option(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno>;
    fn set_option(&self, task: &Task, level: i32, name: i32, value: &[u8]) -> Result<(), Errno>;
    /// The send and receive time-outs (`SO_SNDTIMEO`, `SO_RCVTIMEO`).
    fn timeouts(&self) -> (Option<Duration>, Option<Duration>);
    /// Whether a receive with `MSG_TRUNC` returns a message's whole length rather than what
    /// was copied: every message socket but Linux's ping sockets.
    fn trunc_returns_whole(&self) -> bool {
        self.kind() != libc::SOCK_STREAM
    }
}
