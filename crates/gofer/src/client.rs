//! The kernel's side: one synchronous request at a time over the gofer socket.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use crate::protocol::{
    decode_reply, Attr, DirEntry, Reply, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION,
};
use crate::server::{recv_message, send_message};
use crate::GoferError;

/// A connection to a gofer. Errors of the files are errnos (`i32`); a broken connection is
/// `EIO`.
pub struct GoferClient {
    sock: Mutex<OwnedFd>,
    /// How many mounts the gofer serves (mount N's root is fid N).
    pub mounts: u32,
}

const EIO: i32 = libc::EIO;

impl GoferClient {
    /// Connect over `sock` and agree on the protocol version.
    pub fn connect(sock: OwnedFd) -> Result<GoferClient, GoferError> {
        let client = GoferClient {
            sock: Mutex::new(sock),
            mounts: 0,
        };
        match client
            .call(&Request::Version {
                version: PROTOCOL_VERSION,
            })?
            .0
        {
            Ok(Response::Version { mounts, .. }) => Ok(GoferClient { mounts, ..client }),
            _ => Err(GoferError::Version {
                ours: PROTOCOL_VERSION,
                theirs: 0,
            }),
        }
    }

    fn call(&self, req: &Request) -> Result<(Reply, Option<OwnedFd>), GoferError> {
        let sock = self
            .sock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        send_message(&sock, &req.encode(), None)?;
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, fd) =
            recv_message(&sock, &mut buf)?.ok_or(GoferError::Malformed("the gofer hung up"))?;
        Ok((decode_reply(&buf[..n])?, fd))
    }

    fn request(&self, req: &Request) -> Result<(Response, Option<OwnedFd>), i32> {
        match self.call(req) {
            Ok((Ok(r), fd)) => Ok((r, fd)),
            Ok((Err(e), _)) => Err(e),
            Err(e) => {
                tracing::error!("gofer connection: {e}");
                Err(EIO)
            }
        }
    }

    /// Look up `name` in directory `dir`: a new fid and its attributes.
    pub fn walk(&self, dir: u64, name: &[u8]) -> Result<(u64, Attr), i32> {
        match self
            .request(&Request::Walk {
                dir,
                name: name.to_vec(),
            })?
            .0
        {
            Response::Node { fid, attr } => Ok((fid, attr)),
            _ => Err(EIO),
        }
    }

    pub fn stat(&self, fid: u64) -> Result<Attr, i32> {
        match self.request(&Request::Stat { fid })?.0 {
            Response::Attr(a) => Ok(a),
            _ => Err(EIO),
        }
    }

    /// Open a regular file for reading; the gofer donates the host fd.
    pub fn open(&self, fid: u64, flags: u32) -> Result<OwnedFd, i32> {
        match self.request(&Request::Open { fid, flags })? {
            (Response::Opened, Some(fd)) => Ok(fd),
            _ => Err(EIO),
        }
    }

    /// Every entry of a directory (except `.` and `..`).
    pub fn readdir(&self, fid: u64) -> Result<Vec<DirEntry>, i32> {
        let mut all = Vec::new();
        let mut cookie = 0;
        loop {
            match self.request(&Request::ReadDir { fid, cookie })?.0 {
                Response::Entries {
                    entries,
                    next,
                    done,
                } => {
                    all.extend(entries);
                    if done {
                        return Ok(all);
                    }
                    if next <= cookie {
                        return Err(EIO);
                    }
                    cookie = next;
                }
                _ => return Err(EIO),
            }
        }
    }

    pub fn readlink(&self, fid: u64) -> Result<Vec<u8>, i32> {
        match self.request(&Request::Readlink { fid })?.0 {
            Response::Target(t) => Ok(t),
            _ => Err(EIO),
        }
    }

    /// Forget a fid (best effort).
    pub fn clunk(&self, fid: u64) {
        let _ = self.request(&Request::Clunk { fid });
    }
}
