//! The control protocol: the messages that travel between the front and the kernel process
//! (a `SOCK_SEQPACKET` pair, the kernel's fd [`crate::launch::KERNEL_CONTROL_FD`]) and between
//! the OCI commands and a container's front (a `SOCK_SEQPACKET` socket in the container's
//! state directory). One message per packet; host fds (an exec's stdio) ride along with
//! `SCM_RIGHTS`. Every decoder checks every length: a malformed message is an error.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use moat_kernel::inspect::{ProcessEntry, SandboxStats};
use moat_kernel::Credentials;

use crate::spec::{Reader, Writer};
use crate::RuntimeError;

/// The largest message (an exec's arguments and environment): under the default socket
/// buffer, which bounds a `SOCK_SEQPACKET` message.
pub const MAX_MESSAGE: usize = 192 * 1024;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The shell's number for it: the code, or 128+N for signal N.
    pub fn shell_code(self) -> u8 {
        match self {
            Status::Exited(code) => code as u8,
            Status::Signaled(signo) => 128u8.wrapping_add(signo as u8),
        }
    }
}

/// A process to start in a running sandbox (`moat exec`); its stdio travels as fds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    pub filename: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub creds: Credentials,
    pub umask: u32,
    /// Look `filename` up in `PATH` when it has no '/'.
    pub search_path: bool,
    pub no_new_privs: bool,
}

/// One control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A signal for the sandbox's init (or, `all`, every process in it).
    Signal {
        signo: i32,
        all: bool,
    },
    /// Load and run the program (OCI `start`). From `create` to the front and from the front
    /// to the kernel it carries the fds of `--preserve-fds` (3, 4, ... in order).
    Start,
    /// The program is loaded and runs.
    Started,
    /// A request failed; the text says why.
    Failed(String),
    /// A request was done.
    Done,
    /// The sandbox's init ended so; the kernel's last message.
    Exited(Status),
    /// Start another process in the sandbox; its stdio fds ride along (0, 1, 2 in order).
    Exec {
        id: u64,
        spec: ExecSpec,
    },
    /// The exec'd process runs, with this pid in the sandbox.
    ExecStarted {
        id: u64,
        pid: i32,
    },
    /// The exec'd process could not start.
    ExecFailed {
        id: u64,
        message: String,
    },
    /// The exec'd process ended.
    ExecExited {
        id: u64,
        status: Status,
    },
    /// A signal for an exec'd process.
    ExecSignal {
        id: u64,
        signo: i32,
    },
    /// Which processes the sandbox has (`moat ps`); answered by `Processes` messages.
    Ps {
        id: u64,
    },
    /// Some of the sandbox's processes; `more` until the last part.
    Processes {
        id: u64,
        list: Vec<ProcessEntry>,
        more: bool,
    },
    /// The sandbox's resource figures (`moat events`); answered by `StatsReport`.
    Stats {
        id: u64,
    },
    StatsReport {
        id: u64,
        stats: SandboxStats,
    },
}

/// How many processes one `Processes` message carries (each at most ~300 bytes: well under
/// [`MAX_MESSAGE`]).
pub const PROCESSES_PER_MESSAGE: usize = 256;

fn status(w: &mut Writer, s: Status) {
    match s {
        Status::Exited(c) => {
            w.0.push(0);
            w.u32(c as u32);
        }
        Status::Signaled(n) => {
            w.0.push(1);
            w.u32(n as u32);
        }
    }
}

fn read_status(r: &mut Reader<'_>) -> Result<Status, RuntimeError> {
    let kind = r.take(1)?[0];
    let v = r.u32()? as i32;
    match kind {
        0 => Ok(Status::Exited(v)),
        1 => Ok(Status::Signaled(v)),
        _ => Err(RuntimeError::Spec("bad status")),
    }
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            Message::Signal { signo, all } => {
                w.0.push(1);
                w.u32(*signo as u32);
                w.bool(*all);
            }
            Message::Start => w.0.push(2),
            Message::Started => w.0.push(3),
            Message::Failed(text) => {
                w.0.push(4);
                w.bytes(text.as_bytes());
            }
            Message::Done => w.0.push(5),
            Message::Exited(s) => {
                w.0.push(6);
                status(&mut w, *s);
            }
            Message::Exec { id, spec } => {
                w.0.push(7);
                w.u64(*id);
                w.bytes(&spec.filename);
                w.list(&spec.argv);
                w.list(&spec.envp);
                w.bytes(&spec.cwd);
                w.creds(&spec.creds);
                w.u32(spec.umask);
                w.bool(spec.search_path);
                w.bool(spec.no_new_privs);
            }
            Message::ExecStarted { id, pid } => {
                w.0.push(8);
                w.u64(*id);
                w.u32(*pid as u32);
            }
            Message::ExecFailed { id, message } => {
                w.0.push(9);
                w.u64(*id);
                w.bytes(message.as_bytes());
            }
            Message::ExecExited { id, status: s } => {
                w.0.push(10);
                w.u64(*id);
                status(&mut w, *s);
            }
            Message::ExecSignal { id, signo } => {
                w.0.push(11);
                w.u64(*id);
                w.u32(*signo as u32);
            }
            Message::Ps { id } => {
                w.0.push(12);
                w.u64(*id);
            }
            Message::Processes { id, list, more } => {
                w.0.push(13);
                w.u64(*id);
                w.u64(list.len() as u64);
                for p in list {
                    w.u32(p.pid as u32);
                    w.u32(p.ppid as u32);
                    w.u32(p.uid);
                    w.u64(p.cpu.as_nanos() as u64);
                    w.bytes(&p.command);
                }
                w.bool(*more);
            }
            Message::Stats { id } => {
                w.0.push(14);
                w.u64(*id);
            }
            Message::StatsReport { id, stats } => {
                w.0.push(15);
                w.u64(*id);
                for v in [
                    stats.memory_usage,
                    stats.memory_allocated,
                    stats.memory_limit,
                    stats.oom_kills,
                    stats.tasks,
                    stats.cpu.as_nanos() as u64,
                ] {
                    w.u64(v);
                }
            }
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, RuntimeError> {
        let mut r = Reader(bytes);
        let message = match r.take(1)?[0] {
            1 => Message::Signal {
                signo: r.u32()? as i32,
                all: r.bool()?,
            },
            2 => Message::Start,
            3 => Message::Started,
            4 => Message::Failed(r.string()?),
            5 => Message::Done,
            6 => Message::Exited(read_status(&mut r)?),
            7 => Message::Exec {
                id: r.u64()?,
                spec: ExecSpec {
                    filename: r.bytes()?,
                    argv: r.list()?,
                    envp: r.list()?,
                    cwd: r.bytes()?,
                    creds: r.creds()?,
                    umask: r.u32()?,
                    search_path: r.bool()?,
                    no_new_privs: r.bool()?,
                },
            },
            8 => Message::ExecStarted {
                id: r.u64()?,
                pid: r.u32()? as i32,
            },
            9 => Message::ExecFailed {
                id: r.u64()?,
                message: r.string()?,
            },
            10 => Message::ExecExited {
                id: r.u64()?,
                status: read_status(&mut r)?,
            },
            11 => Message::ExecSignal {
                id: r.u64()?,
                signo: r.u32()? as i32,
            },
            12 => Message::Ps { id: r.u64()? },
            13 => {
                let id = r.u64()?;
                let n = r.len()?;
                let mut list = Vec::with_capacity(n.min(PROCESSES_PER_MESSAGE));
                for _ in 0..n {
                    list.push(ProcessEntry {
                        pid: r.u32()? as i32,
                        ppid: r.u32()? as i32,
                        uid: r.u32()?,
                        cpu: std::time::Duration::from_nanos(r.u64()?),
                        command: r.bytes()?,
                    });
                }
                Message::Processes {
                    id,
                    list,
                    more: r.bool()?,
                }
            }
            14 => Message::Stats { id: r.u64()? },
            15 => Message::StatsReport {
                id: r.u64()?,
                stats: SandboxStats {
                    memory_usage: r.u64()?,
                    memory_allocated: r.u64()?,
                    memory_limit: r.u64()?,
                    oom_kills: r.u64()?,
                    tasks: r.u64()?,
                    cpu: std::time::Duration::from_nanos(r.u64()?),
                },
            },
            _ => return Err(RuntimeError::Spec("unknown control message")),
        };
        if !r.0.is_empty() {
            return Err(RuntimeError::Spec("trailing bytes in a control message"));
        }
        Ok(message)
    }
}

/// The most fds one message carries: an exec's three stdio fds, or the fds `create
/// --preserve-fds` passes into the container (riding on `Start`).
pub const MAX_FDS: usize = 64;

/// Send `message` with `fds` on a `SOCK_SEQPACKET` socket (no `SIGPIPE` if the peer left).
pub fn send(sock: impl AsFd, message: &Message, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let bytes = message.encode();
    if bytes.len() > MAX_MESSAGE {
        return Err(std::io::Error::other("control message too large"));
    }
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("too many fds for a control message"));
    }
    loop {
        match rustix::net::sendmsg(
            sock.as_fd(),
            &[std::io::IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receive one message and the fds that came with it; `None` when the peer has left.
pub fn recv(sock: impl AsFd) -> Result<Option<(Message, Vec<OwnedFd>)>, RuntimeError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            sock.as_fd(),
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => break got,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::CONNRESET) => return Ok(None),
            Err(e) => {
                return Err(RuntimeError::Io {
                    what: "receiving a control message",
                    source: e.into(),
                })
            }
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Ok(None);
    }
    if got.flags.contains(rustix::net::ReturnFlags::TRUNC)
        || got.flags.contains(rustix::net::ReturnFlags::CTRUNC)
    {
        return Err(RuntimeError::Spec("truncated control message"));
    }
    Ok(Some((Message::decode(&buf[..got.bytes])?, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Signal {
                signo: 15,
                all: true,
            },
            Message::Start,
            Message::Started,
            Message::Failed("no such file".into()),
            Message::Done,
            Message::Exited(Status::Signaled(9)),
            Message::Exec {
                id: 7,
                spec: ExecSpec {
                    filename: b"sh".to_vec(),
                    argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"true".to_vec()],
                    envp: vec![b"PATH=/bin".to_vec()],
                    cwd: b"/".to_vec(),
                    creds: Credentials::for_user(1, 2, vec![3]),
                    umask: 0o22,
                    search_path: true,
                    no_new_privs: true,
                },
            },
            Message::ExecStarted { id: 7, pid: 12 },
            Message::ExecFailed {
                id: 7,
                message: "sh: not found".into(),
            },
            Message::ExecExited {
                id: 7,
                status: Status::Exited(3),
            },
            Message::ExecSignal { id: 7, signo: 2 },
            Message::Ps { id: 3 },
            Message::Processes {
                id: 3,
                list: vec![ProcessEntry {
                    pid: 1,
                    ppid: 0,
                    uid: 1000,
                    cpu: std::time::Duration::from_millis(12),
                    command: b"sleep 30".to_vec(),
                }],
                more: false,
            },
            Message::Stats { id: 4 },
            Message::StatsReport {
                id: 4,
                stats: SandboxStats {
                    memory_usage: 1,
                    memory_allocated: 2,
                    memory_limit: 3,
                    oom_kills: 4,
                    tasks: 5,
                    cpu: std::time::Duration::from_nanos(6),
                },
            },
        ]
    }

    #[test]
    fn messages_survive_the_trip_and_malformed_ones_are_errors() {
        for m in samples() {
            let bytes = m.encode();
            assert_eq!(Message::decode(&bytes).unwrap(), m);
            for n in 0..bytes.len() {
                assert!(Message::decode(&bytes[..n]).is_err(), "{m:?} cut at {n}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(Message::decode(&long).is_err());
        }
        assert!(Message::decode(&[99]).is_err());
    }

    #[test]
    fn fds_ride_along() {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        send(&a, &Message::Start, &[r.as_fd(), w.as_fd()]).unwrap();
        let (m, fds) = recv(&b).unwrap().unwrap();
        assert_eq!(m, Message::Start);
        assert_eq!(fds.len(), 2);
        drop(a);
        assert!(recv(&b).unwrap().is_none());
    }
}
