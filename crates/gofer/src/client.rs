//! The kernel's side: one synchronous request at a time over the gofer socket, shared by the
//! kernel's threads behind a mutex.
//!
//! Errors of the files are errnos (plain `i32`, positive); a broken connection or a reply that
//! makes no sense is logged and becomes `EIO`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use crate::protocol::{
    decode_reply, encode_request, Attr, DirEntry, Fid, Reply, Request, Response, SetAttr, StatFs,
    MAX_MESSAGE, MAX_WALK, PROTOCOL_VERSION,
};
use crate::server::{recv_message, send_message, Received};
use crate::GoferError;

const EIO: i32 = libc::EIO;

/// A connection to a gofer.
pub struct GoferClient {
    conn: Mutex<Conn>,
    /// How many mounts the gofer serves (mount N's root is fid N).
    pub mounts: u32,
}

struct Conn {
    sock: OwnedFd,
    /// Receive buffer, kept between calls.
    buf: Vec<u8>,
    next_tag: u32,
}

/// The result of [`GoferClient::walk_names`]: the nodes walked, in order, and the errno of the
/// component that stopped the walk (if any did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walked {
    pub nodes: Vec<(Fid, Attr)>,
    pub errno: Option<i32>,
}

/// One page of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirPage {
    pub entries: Vec<DirEntry>,
    /// Where the next page starts.
    pub next_cookie: u64,
    /// No entries after these.
    pub done: bool,
}

/// A reply of a kind the request cannot have.
fn unexpected<T>(what: &str, got: &Response) -> Result<T, i32> {
    tracing::error!("gofer: unexpected reply to {what}: {got:?}");
    Err(EIO)
}

impl GoferClient {
    /// Take `sock` (a connected `SOCK_SEQPACKET` socket) and agree on the protocol version.
    pub fn connect(sock: OwnedFd) -> Result<GoferClient, GoferError> {
        let client = GoferClient {
            conn: Mutex::new(Conn {
                sock,
                buf: vec![0; MAX_MESSAGE],
                next_tag: 1,
            }),
            mounts: 0,
        };
        match client
            .transact(&Request::Version {
                version: PROTOCOL_VERSION,
            })?
            .0
        {
            Ok(Response::Version { version, mounts }) if version == PROTOCOL_VERSION => {
                Ok(GoferClient { mounts, ..client })
            }
            Ok(Response::Version { version, .. }) => Err(GoferError::Version {
                ours: PROTOCOL_VERSION,
                theirs: version,
            }),
            Err(libc::EPROTO) => Err(GoferError::VersionRefused(PROTOCOL_VERSION)),
            _ => Err(GoferError::Malformed("unexpected reply to the handshake")),
        }
    }

    /// Close the connection in both directions: the gofer sees end-of-file and exits, and any
    /// later request fails with `EIO`. The sandbox's file tree may keep clients alive past
    /// the sandbox's end, so the launcher hangs up explicitly rather than relying on drop.
    pub fn hang_up(&self) {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = rustix::net::shutdown(&conn.sock, rustix::net::Shutdown::Both);
    }

    /// Send `req`, wait for its reply.
    fn transact(&self, req: &Request) -> Result<(Reply, Option<OwnedFd>), GoferError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = &mut *conn;
        let tag = conn.next_tag;
        conn.next_tag = tag.wrapping_add(1);
        let message = encode_request(tag, req);
        if message.len() > MAX_MESSAGE {
            return Ok((Err(libc::E2BIG), None));
        }
        send_message(conn.sock.as_fd(), &message, None).map_err(|e| GoferError::Io(e.into()))?;
        loop {
            match recv_message(conn.sock.as_fd(), &mut conn.buf)
                .map_err(|e| GoferError::Io(e.into()))?
            {
                Received::Closed => return Err(GoferError::Malformed("the gofer hung up")),
                Received::Message {
                    truncated: true, ..
                } => return Err(GoferError::Malformed("reply past the message limit")),
                Received::Message { len, fds, .. } => {
                    let (got, reply) = decode_reply(&conn.buf[..len])?;
                    if got != tag {
                        // The reply to an earlier request whose caller gave up: skip it.
                        tracing::warn!("gofer: dropped reply {got} while waiting for {tag}");
                        continue;
                    }
                    return Ok((reply, fds.into_iter().next()));
                }
            }
        }
    }

    /// Send `req`: its response and donated fd, or an errno.
    fn call(&self, req: &Request) -> Result<(Response, Option<OwnedFd>), i32> {
        match self.transact(req) {
            Ok((Ok(r), fd)) => Ok((r, fd)),
            Ok((Err(e), _)) => Err(e),
            Err(e) => {
                tracing::error!("gofer connection, during {req}: {e}");
                Err(EIO)
            }
        }
    }

    fn node(&self, req: &Request) -> Result<(Fid, Attr), i32> {
        match self.call(req)?.0 {
            Response::Node { fid, attr } => Ok((fid, attr)),
            other => unexpected(&req.to_string(), &other),
        }
    }

    fn ok(&self, req: &Request) -> Result<(), i32> {
        match self.call(req)?.0 {
            Response::Ok => Ok(()),
            other => unexpected(&req.to_string(), &other),
        }
    }

    /// The root of mount `mount` (0: the container's root): its fid (always `mount`; clunking
    /// it does nothing) and attributes.
    pub fn attach(&self, mount: u32) -> Result<(Fid, Attr), i32> {
        self.node(&Request::Attach { mount })
    }

    /// Look up one `name` in directory `dir`: a new fid and its attributes. A symlink is
    /// returned as itself, never followed.
    pub fn walk(&self, dir: Fid, name: &[u8]) -> Result<(Fid, Attr), i32> {
        let walked = self.walk_names(dir, &[name])?;
        match (walked.nodes.first(), walked.errno) {
            (Some(&node), None) => Ok(node),
            (None, Some(e)) => Err(e),
            _ => unexpected(
                "Walk",
                &Response::Walked {
                    nodes: walked.nodes,
                    errno: walked.errno,
                },
            ),
        }
    }

    /// Walk `names` one component at a time from directory `dir`: a new fid for each
    /// component reached (the caller clunks them), and the errno of the one that failed.
    /// Walks longer than `MAX_WALK` names take several requests. A malformed name (empty,
    /// `.`, `..`, with `/` or NUL) fails the whole call with `EINVAL`.
    pub fn walk_names(&self, dir: Fid, names: &[impl AsRef<[u8]>]) -> Result<Walked, i32> {
        if names.is_empty() {
            return Err(libc::EINVAL);
        }
        let mut all = Walked {
            nodes: Vec::new(),
            errno: None,
        };
        let mut from = dir;
        for chunk in names.chunks(MAX_WALK) {
            let req = Request::Walk {
                dir: from,
                names: chunk.iter().map(|n| n.as_ref().to_vec()).collect(),
            };
            let (nodes, errno) = match self.call(&req) {
                Ok((Response::Walked { nodes, errno }, _)) => (nodes, errno),
                Ok((other, _)) => return unexpected("Walk", &other),
                // The first request's errors are the call's; later ones stop the walk.
                Err(e) if all.nodes.is_empty() => return Err(e),
                Err(e) => (Vec::new(), Some(e)),
            };
            let complete = nodes.len() == chunk.len();
            if nodes.len() > chunk.len() || complete == errno.is_some() {
                self.clunk_all(&nodes);
                return unexpected("Walk", &Response::Walked { nodes, errno });
            }
            all.nodes.extend(nodes);
            if let Some(e) = errno {
                all.errno = Some(e);
                break;
            }
            from = all.nodes.last().map_or(dir, |n| n.0);
        }
        Ok(all)
    }

    fn clunk_all(&self, nodes: &[(Fid, Attr)]) {
        for (fid, _) in nodes {
            self.clunk(*fid);
        }
    }

    pub fn stat(&self, fid: Fid) -> Result<Attr, i32> {
        match self.call(&Request::Stat { fid })?.0 {
            Response::Attr(a) => Ok(a),
            other => unexpected("Stat", &other),
        }
    }

    /// Open a regular file for I/O with `flags` (`O_ACCMODE`, `O_TRUNC`, `O_APPEND`...): the
    /// host fd the gofer donates.
    pub fn open(&self, fid: Fid, flags: u32) -> Result<OwnedFd, i32> {
        match self.call(&Request::Open { fid, flags })? {
            (Response::Opened, Some(fd)) => Ok(fd),
            (other, _) => unexpected("Open", &other),
        }
    }

    /// Create the regular file `name` in `dir` (it must not exist) and open it with `flags`:
    /// its fid, attributes and the donated fd.
    pub fn create(
        &self,
        dir: Fid,
        name: &[u8],
        flags: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(Fid, Attr, OwnedFd), i32> {
        match self.call(&Request::Create {
            dir,
            name: name.to_vec(),
            flags,
            mode,
            uid,
            gid,
        })? {
            (Response::Created { fid, attr }, Some(fd)) => Ok((fid, attr, fd)),
            (other, _) => unexpected("Create", &other),
        }
    }

    pub fn mkdir(
        &self,
        dir: Fid,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(Fid, Attr), i32> {
        self.node(&Request::Mkdir {
            dir,
            name: name.to_vec(),
            mode,
            uid,
            gid,
        })
    }

    pub fn symlink(
        &self,
        dir: Fid,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<(Fid, Attr), i32> {
        self.node(&Request::Symlink {
            dir,
            name: name.to_vec(),
            target: target.to_vec(),
            uid,
            gid,
        })
    }

    /// Make a FIFO or an empty regular file (device nodes and sockets are `EPERM`).
    pub fn mknod(
        &self,
        dir: Fid,
        name: &[u8],
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
    ) -> Result<(Fid, Attr), i32> {
        self.node(&Request::Mknod {
            dir,
            name: name.to_vec(),
            mode,
            rdev,
            uid,
            gid,
        })
    }

    /// A new name `name` in `dir` for the file `target`: a fid for it.
    pub fn link(&self, target: Fid, dir: Fid, name: &[u8]) -> Result<(Fid, Attr), i32> {
        self.node(&Request::Link {
            target,
            dir,
            name: name.to_vec(),
        })
    }

    pub fn unlink(&self, dir: Fid, name: &[u8], remove_dir: bool) -> Result<(), i32> {
        self.ok(&Request::Unlink {
            dir,
            name: name.to_vec(),
            remove_dir,
        })
    }

    pub fn rename(
        &self,
        old_dir: Fid,
        old_name: &[u8],
        new_dir: Fid,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), i32> {
        self.ok(&Request::Rename {
            old_dir,
            old_name: old_name.to_vec(),
            new_dir,
            new_name: new_name.to_vec(),
            flags,
        })
    }

    pub fn readlink(&self, fid: Fid) -> Result<Vec<u8>, i32> {
        match self.call(&Request::Readlink { fid })?.0 {
            Response::Target(t) => Ok(t),
            other => unexpected("Readlink", &other),
        }
    }

    /// One page of a directory's entries (never `.` or `..`) from `cookie` (0: the start).
    pub fn read_dir(&self, fid: Fid, cookie: u64) -> Result<DirPage, i32> {
        match self.call(&Request::ReadDir { fid, cookie })?.0 {
            Response::Entries {
                entries,
                next_cookie,
                done,
            } => Ok(DirPage {
                entries,
                next_cookie,
                done,
            }),
            other => unexpected("ReadDir", &other),
        }
    }

    /// Every entry of a directory (never `.` or `..`), page after page.
    pub fn readdir(&self, fid: Fid) -> Result<Vec<DirEntry>, i32> {
        let mut all = Vec::new();
        let mut cookie = 0;
        loop {
            let page = self.read_dir(fid, cookie)?;
            let progress = !page.entries.is_empty() || page.next_cookie != cookie;
            all.extend(page.entries);
            if page.done {
                return Ok(all);
            }
            if !progress {
                tracing::error!("gofer: directory listing of fid {fid} does not advance");
                return Err(EIO);
            }
            cookie = page.next_cookie;
        }
    }

    /// Change attributes: the attributes after.
    pub fn set_attr(&self, fid: Fid, attr: &SetAttr) -> Result<Attr, i32> {
        match self.call(&Request::SetAttr { fid, attr: *attr })?.0 {
            Response::Attr(a) => Ok(a),
            other => unexpected("SetAttr", &other),
        }
    }

    /// The value of xattr `name` (only the `user.` namespace is served).
    pub fn get_xattr(&self, fid: Fid, name: &[u8]) -> Result<Vec<u8>, i32> {
        match self
            .call(&Request::GetXattr {
                fid,
                name: name.to_vec(),
            })?
            .0
        {
            Response::Bytes(b) => Ok(b),
            other => unexpected("GetXattr", &other),
        }
    }

    /// `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
    pub fn set_xattr(&self, fid: Fid, name: &[u8], value: &[u8], flags: u32) -> Result<(), i32> {
        self.ok(&Request::SetXattr {
            fid,
            name: name.to_vec(),
            value: value.to_vec(),
            flags,
        })
    }

    /// The names of the file's `user.` xattrs.
    pub fn list_xattr(&self, fid: Fid) -> Result<Vec<Vec<u8>>, i32> {
        match self.call(&Request::ListXattr { fid })?.0 {
            Response::Names(n) => Ok(n),
            other => unexpected("ListXattr", &other),
        }
    }

    pub fn remove_xattr(&self, fid: Fid, name: &[u8]) -> Result<(), i32> {
        self.ok(&Request::RemoveXattr {
            fid,
            name: name.to_vec(),
        })
    }

    pub fn statfs(&self, fid: Fid) -> Result<StatFs, i32> {
        match self.call(&Request::StatFs { fid })?.0 {
            Response::StatFs(s) => Ok(s),
            other => unexpected("StatFs", &other),
        }
    }

    /// Forget a fid (best effort: called when an inode is dropped, where nothing can be done
    /// about a failure). [`GoferClient::try_clunk`] reports the errno.
    pub fn clunk(&self, fid: Fid) {
        if let Err(e) = self.try_clunk(fid) {
            tracing::debug!("gofer: clunk {fid}: errno {e}");
        }
    }

    /// Forget a fid: `EBADF` if the gofer does not know it.
    pub fn try_clunk(&self, fid: Fid) -> Result<(), i32> {
        self.ok(&Request::Clunk { fid })
    }
}
