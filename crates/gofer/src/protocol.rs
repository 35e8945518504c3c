//! The gofer's wire format.
//!
//! One message is one `SOCK_SEQPACKET` datagram of at most [`MAX_MESSAGE`] bytes; donated fds
//! ride along as `SCM_RIGHTS`. A request is `tag: u32, op: u8, fields...`; a reply is
//! `tag: u32, kind: u8, fields...`, where kind [`ERROR_KIND`] carries an errno (`u32`). The tag
//! is chosen by the client and echoed by the server. Every integer is little-endian; a byte
//! string is a `u32` length then the bytes; a list is a `u32` count then the items; an
//! `Option` is a `u8` 0 or 1 then the value; a `bool` is a `u8` 0 or 1.
//!
//! Decoding never panics, never trusts a length or count (each is checked against both a
//! fixed cap and the bytes actually left, before anything is allocated, so a decode allocates
//! at most about as much as the message is long), and refuses trailing bytes.

use std::fmt;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 2;
/// Largest datagram either side sends or accepts: room for the largest xattr value (64 KiB)
/// plus its name, and under the host's default unix socket send buffer (208 KiB).
pub const MAX_MESSAGE: usize = 128 * 1024;
/// The fid of mount N's root is N (it lives as long as the server); fids made by walks and
/// creations start here.
pub const FIRST_WALKED_FID: u64 = 1 << 32;
/// Most names one `Walk` may carry (the client splits longer walks).
pub const MAX_WALK: usize = 256;
/// The longest name of one directory entry (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest symlink target (`PATH_MAX` less its NUL).
pub const TARGET_MAX: usize = 4095;
/// The largest xattr value (`XATTR_SIZE_MAX`) and name list (`XATTR_LIST_MAX`).
pub const XATTR_MAX: usize = 65536;
/// Reply kind of an error (followed by the errno).
pub const ERROR_KIND: u8 = 0xff;

/// A file handle: names one host file the gofer holds open (`O_PATH`).
pub type Fid = u64;

/// File attributes (the fields of `struct stat` the kernel uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub dev: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    pub blocks: u64,
    /// (seconds, nanoseconds)
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// `d_type` (`DT_REG`, `DT_DIR`...).
    pub kind: u8,
    pub name: Vec<u8>,
}

/// A timestamp for [`SetAttr`]; `nsec` may be [`TimeSpec::NOW`] or [`TimeSpec::OMIT`] as in
/// `utimensat(2)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSpec {
    pub sec: i64,
    pub nsec: i64,
}

impl TimeSpec {
    /// `UTIME_NOW`
    pub const NOW: i64 = (1 << 30) - 1;
    /// `UTIME_OMIT`
    pub const OMIT: i64 = (1 << 30) - 2;
}

/// Which attributes a `SetAttr` changes (`None`: leave as is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`0o7777`); the file type bits are ignored.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Truncate or extend a regular file.
    pub size: Option<u64>,
    pub atime: Option<TimeSpec>,
    pub mtime: Option<TimeSpec>,
}

impl SetAttr {
    /// Whether anything would change.
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// The fields of `struct statfs` (no fsid: the kernel makes its own device numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub fs_type: u64,
    pub bsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub namelen: u64,
    pub frsize: u64,
    /// `ST_*` mount flags; `ST_RDONLY` is set for a read-only mount of the gofer too.
    pub flags: u64,
}

/// A request from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Handshake: the kernel's protocol version. Must come first.
    Version {
        version: u32,
    },
    /// The root of mount N (0 is the container's root filesystem).
    Attach {
        mount: u32,
    },
    /// Walk `names` one component at a time from directory `dir`.
    Walk {
        dir: Fid,
        names: Vec<Vec<u8>>,
    },
    Stat {
        fid: Fid,
    },
    /// Open the file for I/O; the host fd is donated with the reply.
    Open {
        fid: Fid,
        flags: u32,
    },
    /// Create and open a regular file (`O_CREAT|O_EXCL`); the fd is donated.
    Create {
        dir: Fid,
        name: Vec<u8>,
        flags: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Mkdir {
        dir: Fid,
        name: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        dir: Fid,
        name: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
    },
    /// FIFOs and regular files only.
    Mknod {
        dir: Fid,
        name: Vec<u8>,
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
    },
    /// A new name `name` in `dir` for the file `target`.
    Link {
        target: Fid,
        dir: Fid,
        name: Vec<u8>,
    },
    Unlink {
        dir: Fid,
        name: Vec<u8>,
        remove_dir: bool,
    },
    /// `renameat2`, flags `RENAME_NOREPLACE`/`RENAME_EXCHANGE`/`RENAME_WHITEOUT`.
    Rename {
        old_dir: Fid,
        old_name: Vec<u8>,
        new_dir: Fid,
        new_name: Vec<u8>,
        flags: u32,
    },
    Readlink {
        fid: Fid,
    },
    /// Entries from position `cookie` on (0: the start).
    ReadDir {
        fid: Fid,
        cookie: u64,
    },
    SetAttr {
        fid: Fid,
        attr: SetAttr,
    },
    GetXattr {
        fid: Fid,
        name: Vec<u8>,
    },
    /// `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
    SetXattr {
        fid: Fid,
        name: Vec<u8>,
        value: Vec<u8>,
        flags: u32,
    },
    ListXattr {
        fid: Fid,
    },
    RemoveXattr {
        fid: Fid,
        name: Vec<u8>,
    },
    StatFs {
        fid: Fid,
    },
    /// Forget a fid (and close its fds).
    Clunk {
        fid: Fid,
    },
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Version {
        version: u32,
        mounts: u32,
    },
    /// A new fid (or a mount root) and its attributes.
    Node {
        fid: Fid,
        attr: Attr,
    },
    /// The components walked, in order, and the errno of the first one that failed.
    Walked {
        nodes: Vec<(Fid, Attr)>,
        errno: Option<i32>,
    },
    Attr(Attr),
    /// The opened fd travels as SCM_RIGHTS.
    Opened,
    /// The new file's fid and attributes; its opened fd travels as SCM_RIGHTS.
    Created {
        fid: Fid,
        attr: Attr,
    },
    Entries {
        entries: Vec<DirEntry>,
        next_cookie: u64,
        done: bool,
    },
    Target(Vec<u8>),
    Bytes(Vec<u8>),
    Names(Vec<Vec<u8>>),
    StatFs(StatFs),
    Ok,
}

/// A reply: a response or an errno.
pub type Reply = Result<Response, i32>;

/// Why a message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message ends early: {needed} more bytes needed, {left} left")]
    Short { needed: usize, left: usize },
    #[error("{what}: {len} is past the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("unknown {0}")]
    UnknownOp(u8),
    #[error("bad value for {0}")]
    BadValue(&'static str),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

mod op {
    pub const VERSION: u8 = 1;
    pub const ATTACH: u8 = 2;
    pub const WALK: u8 = 3;
    pub const STAT: u8 = 4;
    pub const OPEN: u8 = 5;
    pub const CREATE: u8 = 6;
    pub const MKDIR: u8 = 7;
    pub const SYMLINK: u8 = 8;
    pub const MKNOD: u8 = 9;
    pub const LINK: u8 = 10;
    pub const UNLINK: u8 = 11;
    pub const RENAME: u8 = 12;
    pub const READLINK: u8 = 13;
    pub const READDIR: u8 = 14;
    pub const SETATTR: u8 = 15;
    pub const GETXATTR: u8 = 16;
    pub const SETXATTR: u8 = 17;
    pub const LISTXATTR: u8 = 18;
    pub const REMOVEXATTR: u8 = 19;
    pub const STATFS: u8 = 20;
    pub const CLUNK: u8 = 21;
}

mod kind {
    pub const VERSION: u8 = 1;
    pub const NODE: u8 = 2;
    pub const WALKED: u8 = 3;
    pub const ATTR: u8 = 4;
    pub const OPENED: u8 = 5;
    pub const CREATED: u8 = 6;
    pub const ENTRIES: u8 = 7;
    pub const TARGET: u8 = 8;
    pub const BYTES: u8 = 9;
    pub const NAMES: u8 = 10;
    pub const STATFS: u8 = 11;
    pub const OK: u8 = 12;
}

/// Encoded size of an [`Attr`].
const ATTR_SIZE: usize = 7 * 8 + 3 * 4 + 3 * 16;
/// Encoded size of a directory entry, before its name.
pub const DIRENT_HEADER: usize = 8 + 1 + 4;
/// Encoded size of an `Entries` reply, before its entries.
pub const ENTRIES_HEADER: usize = 4 + 1 + 8 + 1 + 4;

/// Builds a message.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u32(v),
            None => self.u8(0),
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u64(v),
            None => self.u8(0),
        }
    }
    fn opt_time(&mut self, v: Option<TimeSpec>) -> &mut Self {
        match v {
            Some(t) => self.u8(1).i64(t.sec).i64(t.nsec),
            None => self.u8(0),
        }
    }
    fn attr(&mut self, a: &Attr) -> &mut Self {
        self.u64(a.ino)
            .u64(a.dev)
            .u32(a.mode)
            .u64(a.nlink)
            .u32(a.uid)
            .u32(a.gid)
            .u64(a.rdev)
            .u64(a.size)
            .u64(a.blksize)
            .u64(a.blocks);
        for t in [a.atime, a.mtime, a.ctime] {
            self.i64(t.0).i64(t.1);
        }
        self
    }
}

/// Reads a message, refusing anything short, long or out of range.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Short {
                needed: n,
                left: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue(what)),
        }
    }
    /// A byte string of at most `max` bytes.
    fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        Ok(self.take(len)?.to_vec())
    }
    /// A list count of at most `max` items of at least `min_size` bytes each: checked against
    /// what is left before the caller allocates for it.
    fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError::TooLong { what, len: n, max });
        }
        let needed = n.saturating_mul(min_size);
        if needed > self.buf.len() {
            return Err(DecodeError::Short {
                needed,
                left: self.buf.len(),
            });
        }
        Ok(n)
    }
    fn option(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        self.bool(what)
    }
    fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, DecodeError> {
        Ok(if self.option(what)? {
            Some(self.u32()?)
        } else {
            None
        })
    }
    fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        Ok(if self.option(what)? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    fn opt_time(&mut self, what: &'static str) -> Result<Option<TimeSpec>, DecodeError> {
        Ok(if self.option(what)? {
            Some(TimeSpec {
                sec: self.i64()?,
                nsec: self.i64()?,
            })
        } else {
            None
        })
    }
    fn errno(&mut self) -> Result<i32, DecodeError> {
        let e = self.u32()?;
        if (1..4096).contains(&e) {
            Ok(e as i32)
        } else {
            Err(DecodeError::BadValue("errno"))
        }
    }
    fn attr(&mut self) -> Result<Attr, DecodeError> {
        Ok(Attr {
            ino: self.u64()?,
            dev: self.u64()?,
            mode: self.u32()?,
            nlink: self.u64()?,
            uid: self.u32()?,
            gid: self.u32()?,
            rdev: self.u64()?,
            size: self.u64()?,
            blksize: self.u64()?,
            blocks: self.u64()?,
            atime: (self.i64()?, self.i64()?),
            mtime: (self.i64()?, self.i64()?),
            ctime: (self.i64()?, self.i64()?),
        })
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

/// The tag of a message, if it is long enough to have one (to answer a malformed request).
pub fn peek_tag(buf: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(..4)?.try_into().ok()?))
}

/// Encode a request.
pub fn encode_request(tag: u32, req: &Request) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(tag);
    match req {
        Request::Version { version } => w.u8(op::VERSION).u32(*version),
        Request::Attach { mount } => w.u8(op::ATTACH).u32(*mount),
        Request::Walk { dir, names } => {
            w.u8(op::WALK).u64(*dir).u32(names.len() as u32);
            for n in names {
                w.bytes(n);
            }
            &mut w
        }
        Request::Stat { fid } => w.u8(op::STAT).u64(*fid),
        Request::Open { fid, flags } => w.u8(op::OPEN).u64(*fid).u32(*flags),
        Request::Create {
            dir,
            name,
            flags,
            mode,
            uid,
            gid,
        } => w
            .u8(op::CREATE)
            .u64(*dir)
            .bytes(name)
            .u32(*flags)
            .u32(*mode)
            .u32(*uid)
            .u32(*gid),
        Request::Mkdir {
            dir,
            name,
            mode,
            uid,
            gid,
        } => w
            .u8(op::MKDIR)
            .u64(*dir)
            .bytes(name)
            .u32(*mode)
            .u32(*uid)
            .u32(*gid),
        Request::Symlink {
            dir,
            name,
            target,
            uid,
            gid,
        } => w
            .u8(op::SYMLINK)
            .u64(*dir)
            .bytes(name)
            .bytes(target)
            .u32(*uid)
            .u32(*gid),
        Request::Mknod {
            dir,
            name,
            mode,
            rdev,
            uid,
            gid,
        } => w
            .u8(op::MKNOD)
            .u64(*dir)
            .bytes(name)
            .u32(*mode)
            .u64(*rdev)
            .u32(*uid)
            .u32(*gid),
        Request::Link { target, dir, name } => w.u8(op::LINK).u64(*target).u64(*dir).bytes(name),
        Request::Unlink {
            dir,
            name,
            remove_dir,
        } => w.u8(op::UNLINK).u64(*dir).bytes(name).bool(*remove_dir),
        Request::Rename {
            old_dir,
            old_name,
            new_dir,
            new_name,
            flags,
        } => w
            .u8(op::RENAME)
            .u64(*old_dir)
            .bytes(old_name)
            .u64(*new_dir)
            .bytes(new_name)
            .u32(*flags),
        Request::Readlink { fid } => w.u8(op::READLINK).u64(*fid),
        Request::ReadDir { fid, cookie } => w.u8(op::READDIR).u64(*fid).u64(*cookie),
        Request::SetAttr { fid, attr } => w
            .u8(op::SETATTR)
            .u64(*fid)
            .opt_u32(attr.mode)
            .opt_u32(attr.uid)
            .opt_u32(attr.gid)
            .opt_u64(attr.size)
            .opt_time(attr.atime)
            .opt_time(attr.mtime),
        Request::GetXattr { fid, name } => w.u8(op::GETXATTR).u64(*fid).bytes(name),
        Request::SetXattr {
            fid,
            name,
            value,
            flags,
        } => w
            .u8(op::SETXATTR)
            .u64(*fid)
            .bytes(name)
            .bytes(value)
            .u32(*flags),
        Request::ListXattr { fid } => w.u8(op::LISTXATTR).u64(*fid),
        Request::RemoveXattr { fid, name } => w.u8(op::REMOVEXATTR).u64(*fid).bytes(name),
        Request::StatFs { fid } => w.u8(op::STATFS).u64(*fid),
        Request::Clunk { fid } => w.u8(op::CLUNK).u64(*fid),
    };
    w.0
}

/// Decode a request: its tag and operation.
pub fn decode_request(buf: &[u8]) -> Result<(u32, Request), DecodeError> {
    // Names and values are capped by the message itself; the server checks the real limits
    // (NAME_MAX...) so that it can answer with the errno Linux gives.
    const ANY: usize = MAX_MESSAGE;
    let mut r = Reader { buf };
    let tag = r.u32()?;
    let req = match r.u8()? {
        op::VERSION => Request::Version { version: r.u32()? },
        op::ATTACH => Request::Attach { mount: r.u32()? },
        op::WALK => {
            let dir = r.u64()?;
            let n = r.count("walk names", MAX_WALK, 4)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.bytes("name", ANY)?);
            }
            Request::Walk { dir, names }
        }
        op::STAT => Request::Stat { fid: r.u64()? },
        op::OPEN => Request::Open {
            fid: r.u64()?,
            flags: r.u32()?,
        },
        op::CREATE => Request::Create {
            dir: r.u64()?,
            name: r.bytes("name", ANY)?,
            flags: r.u32()?,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
        },
        op::MKDIR => Request::Mkdir {
            dir: r.u64()?,
            name: r.bytes("name", ANY)?,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
        },
        op::SYMLINK => Request::Symlink {
            dir: r.u64()?,
            name: r.bytes("name", ANY)?,
            target: r.bytes("target", ANY)?,
            uid: r.u32()?,
            gid: r.u32()?,
        },
        op::MKNOD => Request::Mknod {
            dir: r.u64()?,
            name: r.bytes("name", ANY)?,
            mode: r.u32()?,
            rdev: r.u64()?,
            uid: r.u32()?,
            gid: r.u32()?,
        },
        op::LINK => Request::Link {
            target: r.u64()?,
            dir: r.u64()?,
            name: r.bytes("name", ANY)?,
        },
        op::UNLINK => Request::Unlink {
            dir: r.u64()?,
            name: r.bytes("name", ANY)?,
            remove_dir: r.bool("remove_dir")?,
        },
        op::RENAME => Request::Rename {
            old_dir: r.u64()?,
            old_name: r.bytes("name", ANY)?,
            new_dir: r.u64()?,
            new_name: r.bytes("name", ANY)?,
            flags: r.u32()?,
        },
        op::READLINK => Request::Readlink { fid: r.u64()? },
        op::READDIR => Request::ReadDir {
            fid: r.u64()?,
            cookie: r.u64()?,
        },
        op::SETATTR => Request::SetAttr {
            fid: r.u64()?,
            attr: SetAttr {
                mode: r.opt_u32("mode")?,
                uid: r.opt_u32("uid")?,
                gid: r.opt_u32("gid")?,
                size: r.opt_u64("size")?,
                atime: r.opt_time("atime")?,
                mtime: r.opt_time("mtime")?,
            },
        },
        op::GETXATTR => Request::GetXattr {
            fid: r.u64()?,
            name: r.bytes("xattr name", ANY)?,
        },
        op::SETXATTR => Request::SetXattr {
            fid: r.u64()?,
            name: r.bytes("xattr name", ANY)?,
            value: r.bytes("xattr value", ANY)?,
            flags: r.u32()?,
        },
        op::LISTXATTR => Request::ListXattr { fid: r.u64()? },
        op::REMOVEXATTR => Request::RemoveXattr {
            fid: r.u64()?,
            name: r.bytes("xattr name", ANY)?,
        },
        op::STATFS => Request::StatFs { fid: r.u64()? },
        op::CLUNK => Request::Clunk { fid: r.u64()? },
        other => return Err(DecodeError::UnknownOp(other)),
    };
    r.end()?;
    Ok((tag, req))
}

/// Encode a reply.
pub fn encode_reply(tag: u32, reply: &Reply) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(tag);
    match reply {
        Err(errno) => w.u8(ERROR_KIND).u32(*errno as u32),
        Ok(Response::Version { version, mounts }) => w.u8(kind::VERSION).u32(*version).u32(*mounts),
        Ok(Response::Node { fid, attr }) => w.u8(kind::NODE).u64(*fid).attr(attr),
        Ok(Response::Walked { nodes, errno }) => {
            w.u8(kind::WALKED).u32(nodes.len() as u32);
            for (fid, attr) in nodes {
                w.u64(*fid).attr(attr);
            }
            w.opt_u32(errno.map(|e| e as u32))
        }
        Ok(Response::Attr(a)) => w.u8(kind::ATTR).attr(a),
        Ok(Response::Opened) => w.u8(kind::OPENED),
        Ok(Response::Created { fid, attr }) => w.u8(kind::CREATED).u64(*fid).attr(attr),
        Ok(Response::Entries {
            entries,
            next_cookie,
            done,
        }) => {
            w.u8(kind::ENTRIES)
                .u64(*next_cookie)
                .bool(*done)
                .u32(entries.len() as u32);
            for e in entries {
                w.u64(e.ino).u8(e.kind).bytes(&e.name);
            }
            &mut w
        }
        Ok(Response::Target(t)) => w.u8(kind::TARGET).bytes(t),
        Ok(Response::Bytes(b)) => w.u8(kind::BYTES).bytes(b),
        Ok(Response::Names(names)) => {
            w.u8(kind::NAMES).u32(names.len() as u32);
            for n in names {
                w.bytes(n);
            }
            &mut w
        }
        Ok(Response::StatFs(s)) => w
            .u8(kind::STATFS)
            .u64(s.fs_type)
            .u64(s.bsize)
            .u64(s.blocks)
            .u64(s.bfree)
            .u64(s.bavail)
            .u64(s.files)
            .u64(s.ffree)
            .u64(s.namelen)
            .u64(s.frsize)
            .u64(s.flags),
        Ok(Response::Ok) => w.u8(kind::OK),
    };
    w.0
}

/// Decode a reply: its tag, and the response or errno.
pub fn decode_reply(buf: &[u8]) -> Result<(u32, Reply), DecodeError> {
    let mut r = Reader { buf };
    let tag = r.u32()?;
    let reply = match r.u8()? {
        ERROR_KIND => Err(r.errno()?),
        kind::VERSION => Ok(Response::Version {
            version: r.u32()?,
            mounts: r.u32()?,
        }),
        kind::NODE => Ok(Response::Node {
            fid: r.u64()?,
            attr: r.attr()?,
        }),
        kind::WALKED => {
            let n = r.count("walked nodes", MAX_WALK, 8 + ATTR_SIZE)?;
            let mut nodes = Vec::with_capacity(n);
            for _ in 0..n {
                nodes.push((r.u64()?, r.attr()?));
            }
            let errno = if r.option("walk errno")? {
                Some(r.errno()?)
            } else {
                None
            };
            Ok(Response::Walked { nodes, errno })
        }
        kind::ATTR => Ok(Response::Attr(r.attr()?)),
        kind::OPENED => Ok(Response::Opened),
        kind::CREATED => Ok(Response::Created {
            fid: r.u64()?,
            attr: r.attr()?,
        }),
        kind::ENTRIES => {
            let next_cookie = r.u64()?;
            let done = r.bool("done")?;
            let n = r.count("entries", MAX_MESSAGE / DIRENT_HEADER, DIRENT_HEADER)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(DirEntry {
                    ino: r.u64()?,
                    kind: r.u8()?,
                    name: r.bytes("name", NAME_MAX)?,
                });
            }
            Ok(Response::Entries {
                entries,
                next_cookie,
                done,
            })
        }
        kind::TARGET => Ok(Response::Target(r.bytes("target", TARGET_MAX)?)),
        kind::BYTES => Ok(Response::Bytes(r.bytes("bytes", XATTR_MAX)?)),
        kind::NAMES => {
            let n = r.count("names", XATTR_MAX, 4)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.bytes("name", NAME_MAX)?);
            }
            Ok(Response::Names(names))
        }
        kind::STATFS => Ok(Response::StatFs(StatFs {
            fs_type: r.u64()?,
            bsize: r.u64()?,
            blocks: r.u64()?,
            bfree: r.u64()?,
            bavail: r.u64()?,
            files: r.u64()?,
            ffree: r.u64()?,
            namelen: r.u64()?,
            frsize: r.u64()?,
            flags: r.u64()?,
        })),
        kind::OK => Ok(Response::Ok),
        other => return Err(DecodeError::UnknownOp(other)),
    };
    r.end()?;
    Ok((tag, reply))
}

impl fmt::Display for Request {
    /// The operation's name, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Request::Version { .. } => "Version",
            Request::Attach { .. } => "Attach",
            Request::Walk { .. } => "Walk",
            Request::Stat { .. } => "Stat",
            Request::Open { .. } => "Open",
            Request::Create { .. } => "Create",
            Request::Mkdir { .. } => "Mkdir",
            Request::Symlink { .. } => "Symlink",
            Request::Mknod { .. } => "Mknod",
            Request::Link { .. } => "Link",
            Request::Unlink { .. } => "Unlink",
            Request::Rename { .. } => "Rename",
            Request::Readlink { .. } => "Readlink",
            Request::ReadDir { .. } => "ReadDir",
            Request::SetAttr { .. } => "SetAttr",
            Request::GetXattr { .. } => "GetXattr",
            Request::SetXattr { .. } => "SetXattr",
            Request::ListXattr { .. } => "ListXattr",
            Request::RemoveXattr { .. } => "RemoveXattr",
            Request::StatFs { .. } => "StatFs",
            Request::Clunk { .. } => "Clunk",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> Attr {
        Attr {
            ino: 1,
            dev: 2,
            mode: 0o100644,
            nlink: 1,
            uid: 1000,
            gid: 100,
            rdev: 0,
            size: 10,
            blksize: 4096,
            blocks: 8,
            atime: (1, 2),
            mtime: (3, 4),
            ctime: (-5, 6),
        }
    }

    /// One of every request (and the interesting variants of some).
    fn requests() -> Vec<Request> {
        let name = b"etc".to_vec();
        vec![
            Request::Version {
                version: PROTOCOL_VERSION,
            },
            Request::Attach { mount: 3 },
            Request::Walk {
                dir: 7,
                names: vec![name.clone(), b"hosts".to_vec()],
            },
            Request::Walk {
                dir: 7,
                names: vec![],
            },
            Request::Stat { fid: 9 },
            Request::Open {
                fid: 9,
                flags: 0o1002,
            },
            Request::Create {
                dir: 1,
                name: name.clone(),
                flags: 2,
                mode: 0o644,
                uid: 5,
                gid: 6,
            },
            Request::Mkdir {
                dir: 1,
                name: name.clone(),
                mode: 0o755,
                uid: 5,
                gid: 6,
            },
            Request::Symlink {
                dir: 1,
                name: name.clone(),
                target: b"/etc/passwd".to_vec(),
                uid: 5,
                gid: 6,
            },
            Request::Mknod {
                dir: 1,
                name: name.clone(),
                mode: 0o10644,
                rdev: 0x0103,
                uid: 5,
                gid: 6,
            },
            Request::Link {
                target: 4,
                dir: 1,
                name: name.clone(),
            },
            Request::Unlink {
                dir: 1,
                name: name.clone(),
                remove_dir: true,
            },
            Request::Unlink {
                dir: 1,
                name: name.clone(),
                remove_dir: false,
            },
            Request::Rename {
                old_dir: 1,
                old_name: name.clone(),
                new_dir: 2,
                new_name: b"x".to_vec(),
                flags: 1,
            },
            Request::Readlink { fid: 5 },
            Request::ReadDir {
                fid: 3,
                cookie: u64::MAX,
            },
            Request::SetAttr {
                fid: 3,
                attr: SetAttr::default(),
            },
            Request::SetAttr {
                fid: 3,
                attr: SetAttr {
                    mode: Some(0o4755),
                    uid: Some(0),
                    gid: Some(u32::MAX),
                    size: Some(1 << 40),
                    atime: Some(TimeSpec {
                        sec: -1,
                        nsec: TimeSpec::NOW,
                    }),
                    mtime: Some(TimeSpec {
                        sec: 12,
                        nsec: 999_999_999,
                    }),
                },
            },
            Request::GetXattr {
                fid: 3,
                name: b"user.a".to_vec(),
            },
            Request::SetXattr {
                fid: 3,
                name: b"user.a".to_vec(),
                value: vec![0; 300],
                flags: 1,
            },
            Request::ListXattr { fid: 3 },
            Request::RemoveXattr {
                fid: 3,
                name: b"user.a".to_vec(),
            },
            Request::StatFs { fid: 3 },
            Request::Clunk { fid: 5 },
        ]
    }

    fn replies() -> Vec<Reply> {
        let attr = attr();
        vec![
            Err(libc::ENOENT),
            Err(4095),
            Ok(Response::Version {
                version: PROTOCOL_VERSION,
                mounts: 2,
            }),
            Ok(Response::Node {
                fid: FIRST_WALKED_FID,
                attr,
            }),
            Ok(Response::Walked {
                nodes: vec![(1, attr), (2, Attr::default())],
                errno: Some(libc::ENOTDIR),
            }),
            Ok(Response::Walked {
                nodes: vec![],
                errno: None,
            }),
            Ok(Response::Attr(attr)),
            Ok(Response::Opened),
            Ok(Response::Created { fid: 77, attr }),
            Ok(Response::Entries {
                entries: vec![
                    DirEntry {
                        ino: 3,
                        kind: libc::DT_DIR,
                        name: b"bin".to_vec(),
                    },
                    DirEntry {
                        ino: 4,
                        kind: libc::DT_LNK,
                        name: vec![0xff; NAME_MAX],
                    },
                ],
                next_cookie: 1 << 62,
                done: false,
            }),
            Ok(Response::Entries {
                entries: vec![],
                next_cookie: 0,
                done: true,
            }),
            Ok(Response::Target(b"/usr/bin".to_vec())),
            Ok(Response::Bytes(vec![1, 2, 3])),
            Ok(Response::Names(vec![
                b"user.a".to_vec(),
                b"user.bb".to_vec(),
            ])),
            Ok(Response::StatFs(StatFs {
                fs_type: 0xef53,
                bsize: 4096,
                blocks: 1,
                bfree: 2,
                bavail: 3,
                files: 4,
                ffree: 5,
                namelen: 255,
                frsize: 4096,
                flags: 1,
            })),
            Ok(Response::Ok),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for (i, req) in requests().into_iter().enumerate() {
            let tag = 0xdead_0000 + i as u32;
            assert_eq!(
                decode_request(&encode_request(tag, &req)).unwrap(),
                (tag, req)
            );
        }
        for (i, rep) in replies().into_iter().enumerate() {
            let tag = i as u32;
            assert_eq!(decode_reply(&encode_reply(tag, &rep)).unwrap(), (tag, rep));
        }
    }

    #[test]
    fn fixed_sizes_match_the_encoding() {
        let mut w = Writer::default();
        w.attr(&attr());
        assert_eq!(w.0.len(), ATTR_SIZE);
        let one = encode_reply(
            0,
            &Ok(Response::Entries {
                entries: vec![],
                next_cookie: 0,
                done: true,
            }),
        );
        assert_eq!(one.len(), ENTRIES_HEADER);
        let entry = DirEntry {
            ino: 1,
            kind: 2,
            name: b"abc".to_vec(),
        };
        let two = encode_reply(
            0,
            &Ok(Response::Entries {
                entries: vec![entry],
                next_cookie: 0,
                done: true,
            }),
        );
        assert_eq!(two.len() - one.len(), DIRENT_HEADER + 3);
    }

    #[test]
    fn every_op_is_covered() {
        let ops: std::collections::HashSet<_> =
            requests().iter().map(|r| encode_request(0, r)[4]).collect();
        assert_eq!(ops.len(), 21);
        let kinds: std::collections::HashSet<_> =
            replies().iter().map(|r| encode_reply(0, r)[4]).collect();
        assert_eq!(kinds.len(), 13);
    }

    #[test]
    fn truncated_and_padded_messages_are_errors() {
        for req in requests() {
            let bytes = encode_request(1, &req);
            for cut in 0..bytes.len() {
                assert!(
                    decode_request(&bytes[..cut]).is_err(),
                    "{req:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_request(&longer), Err(DecodeError::Trailing(1)));
        }
        for rep in replies() {
            let bytes = encode_reply(1, &rep);
            for cut in 0..bytes.len() {
                assert!(decode_reply(&bytes[..cut]).is_err(), "{rep:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[1, 2]);
            assert_eq!(decode_reply(&longer), Err(DecodeError::Trailing(2)));
        }
    }

    #[test]
    fn lying_lengths_and_bad_values_are_typed_errors() {
        // A walk claiming 2^32-1 names: refused before any allocation.
        let mut m = vec![1, 0, 0, 0, op::WALK];
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_request(&m),
            Err(DecodeError::TooLong { .. })
        ));
        // 200 names claimed, none there.
        m.truncate(13);
        m.extend_from_slice(&200u32.to_le_bytes());
        assert!(matches!(decode_request(&m), Err(DecodeError::Short { .. })));
        // A name claiming more bytes than the message holds.
        let mut m = vec![1, 0, 0, 0, op::GETXATTR];
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert!(matches!(
            decode_request(&m),
            Err(DecodeError::TooLong { .. })
        ));
        assert_eq!(
            decode_request(&[1, 0, 0, 0, 200]),
            Err(DecodeError::UnknownOp(200))
        );
        assert_eq!(
            decode_reply(&[1, 0, 0, 0, 99]),
            Err(DecodeError::UnknownOp(99))
        );
        // A bool that is neither 0 nor 1.
        let mut m = encode_request(
            1,
            &Request::Unlink {
                dir: 1,
                name: b"a".to_vec(),
                remove_dir: true,
            },
        );
        *m.last_mut().unwrap() = 2;
        assert_eq!(decode_request(&m), Err(DecodeError::BadValue("remove_dir")));
        // Errnos out of range.
        assert_eq!(
            decode_reply(&encode_reply(1, &Err(0))),
            Err(DecodeError::BadValue("errno"))
        );
        assert_eq!(
            decode_reply(&encode_reply(1, &Err(-2))),
            Err(DecodeError::BadValue("errno"))
        );
        // A huge entry count.
        let mut m = vec![1, 0, 0, 0, kind::ENTRIES];
        m.extend_from_slice(&[0; 9]);
        m.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_reply(&m), Err(DecodeError::TooLong { .. })));
        assert_eq!(peek_tag(&[1, 2, 3]), None);
        assert_eq!(peek_tag(&[1, 0, 0, 0]), Some(1));
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..10_000 {
            let len = (rng.next() % 160) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them get a real op or reply kind, to reach past the first byte.
            if i % 2 == 0 && buf.len() > 4 {
                buf[4] = (rng.next() % 23) as u8;
            }
            let _ = decode_request(&buf);
            let _ = decode_reply(&buf);
        }
    }

    #[test]
    fn mutated_messages_never_panic() {
        let mut rng = XorShift(42);
        let messages: Vec<Vec<u8>> = requests()
            .iter()
            .map(|r| encode_request(1, r))
            .chain(replies().iter().map(|r| encode_reply(1, r)))
            .collect();
        for _ in 0..10_000 {
            let mut m = messages[(rng.next() % messages.len() as u64) as usize].clone();
            for _ in 0..=(rng.next() % 3) {
                let at = (rng.next() % m.len() as u64) as usize;
                m[at] = rng.next() as u8;
            }
            let _ = decode_request(&m);
            let _ = decode_reply(&m);
        }
    }
}
