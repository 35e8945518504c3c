//! The gofer's wire format: little-endian fields, length-prefixed byte strings, one message
//! per datagram. Decoding never panics and never trusts a length: every malformed message is
//! an error.

use crate::GoferError;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest message either side sends or accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The fid of mount N's root is N; walked fids start above the mounts.
pub const FIRST_WALKED_FID: u64 = 1 << 32;

/// A request from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Handshake: the kernel's protocol version.
    Version {
        version: u32,
    },
    /// Look up one name in a directory.
    Walk {
        dir: u64,
        name: Vec<u8>,
    },
    Stat {
        fid: u64,
    },
    /// Open for reading (the fd is donated with the reply).
    Open {
        fid: u64,
        flags: u32,
    },
    /// Directory entries from position `cookie` on.
    ReadDir {
        fid: u64,
        cookie: u64,
    },
    Readlink {
        fid: u64,
    },
    /// Forget a fid.
    Clunk {
        fid: u64,
    },
}

/// File attributes (a subset of `struct stat`).
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
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// `d_type`.
    pub kind: u8,
    pub name: Vec<u8>,
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Version {
        version: u32,
        mounts: u32,
    },
    Node {
        fid: u64,
        attr: Attr,
    },
    Attr(Attr),
    /// The opened fd travels as SCM_RIGHTS.
    Opened,
    Entries {
        entries: Vec<DirEntry>,
        next: u64,
        done: bool,
    },
    Target(Vec<u8>),
    Ok,
}

/// A reply: a response or an errno.
pub type Reply = Result<Response, i32>;

mod tag {
    pub const VERSION: u8 = 1;
    pub const WALK: u8 = 2;
    pub const STAT: u8 = 3;
    pub const OPEN: u8 = 4;
    pub const READDIR: u8 = 5;
    pub const READLINK: u8 = 6;
    pub const CLUNK: u8 = 7;
    pub const R_VERSION: u8 = 101;
    pub const R_NODE: u8 = 102;
    pub const R_ATTR: u8 = 103;
    pub const R_OPENED: u8 = 104;
    pub const R_ENTRIES: u8 = 105;
    pub const R_TARGET: u8 = 106;
    pub const R_OK: u8 = 107;
    pub const R_ERROR: u8 = 200;
}

/// Builds a message.
#[derive(Default)]
pub struct Writer(Vec<u8>);

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
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
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
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a message, refusing anything short, long or out of range.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], GoferError> {
        if self.buf.len() < n {
            return Err(GoferError::Malformed("message too short"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, GoferError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, GoferError> {
        Ok(u32::from_le_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| GoferError::Malformed("u32"))?,
        ))
    }
    fn u64(&mut self) -> Result<u64, GoferError> {
        Ok(u64::from_le_bytes(
            self.take(8)?
                .try_into()
                .map_err(|_| GoferError::Malformed("u64"))?,
        ))
    }
    fn i64(&mut self) -> Result<i64, GoferError> {
        Ok(self.u64()? as i64)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, GoferError> {
        let n = self.u32()? as usize;
        if n > MAX_MESSAGE {
            return Err(GoferError::Malformed("length past the message limit"));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn attr(&mut self) -> Result<Attr, GoferError> {
        let mut a = Attr {
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
            ..Attr::default()
        };
        a.atime = (self.i64()?, self.i64()?);
        a.mtime = (self.i64()?, self.i64()?);
        a.ctime = (self.i64()?, self.i64()?);
        Ok(a)
    }
    fn end(&self) -> Result<(), GoferError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(GoferError::Malformed("trailing bytes"))
        }
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Request::Version { version } => w.u8(tag::VERSION).u32(*version),
            Request::Walk { dir, name } => w.u8(tag::WALK).u64(*dir).bytes(name),
            Request::Stat { fid } => w.u8(tag::STAT).u64(*fid),
            Request::Open { fid, flags } => w.u8(tag::OPEN).u64(*fid).u32(*flags),
            Request::ReadDir { fid, cookie } => w.u8(tag::READDIR).u64(*fid).u64(*cookie),
            Request::Readlink { fid } => w.u8(tag::READLINK).u64(*fid),
            Request::Clunk { fid } => w.u8(tag::CLUNK).u64(*fid),
        };
        w.finish()
    }

    pub fn decode(buf: &[u8]) -> Result<Request, GoferError> {
        let mut r = Reader::new(buf);
        let req = match r.u8()? {
            tag::VERSION => Request::Version { version: r.u32()? },
            tag::WALK => Request::Walk {
                dir: r.u64()?,
                name: r.bytes()?,
            },
            tag::STAT => Request::Stat { fid: r.u64()? },
            tag::OPEN => Request::Open {
                fid: r.u64()?,
                flags: r.u32()?,
            },
            tag::READDIR => Request::ReadDir {
                fid: r.u64()?,
                cookie: r.u64()?,
            },
            tag::READLINK => Request::Readlink { fid: r.u64()? },
            tag::CLUNK => Request::Clunk { fid: r.u64()? },
            _ => return Err(GoferError::Malformed("unknown request")),
        };
        r.end()?;
        Ok(req)
    }
}

/// Encode a reply.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut w = Writer::default();
    match reply {
        Err(errno) => w.u8(tag::R_ERROR).u32(*errno as u32),
        Ok(Response::Version { version, mounts }) => {
            w.u8(tag::R_VERSION).u32(*version).u32(*mounts)
        }
        Ok(Response::Node { fid, attr }) => w.u8(tag::R_NODE).u64(*fid).attr(attr),
        Ok(Response::Attr(a)) => w.u8(tag::R_ATTR).attr(a),
        Ok(Response::Opened) => w.u8(tag::R_OPENED),
        Ok(Response::Entries {
            entries,
            next,
            done,
        }) => {
            w.u8(tag::R_ENTRIES)
                .u64(*next)
                .u8(u8::from(*done))
                .u32(entries.len() as u32);
            for e in entries {
                w.u64(e.ino).u8(e.kind).bytes(&e.name);
            }
            &mut w
        }
        Ok(Response::Target(t)) => w.u8(tag::R_TARGET).bytes(t),
        Ok(Response::Ok) => w.u8(tag::R_OK),
    };
    w.finish()
}

/// Decode a reply.
pub fn decode_reply(buf: &[u8]) -> Result<Reply, GoferError> {
    let mut r = Reader::new(buf);
    let reply = match r.u8()? {
        tag::R_ERROR => {
            let e = r.u32()? as i32;
            if !(1..4096).contains(&e) {
                return Err(GoferError::Malformed("errno out of range"));
            }
            Err(e)
        }
        tag::R_VERSION => Ok(Response::Version {
            version: r.u32()?,
            mounts: r.u32()?,
        }),
        tag::R_NODE => Ok(Response::Node {
            fid: r.u64()?,
            attr: r.attr()?,
        }),
        tag::R_ATTR => Ok(Response::Attr(r.attr()?)),
        tag::R_OPENED => Ok(Response::Opened),
        tag::R_ENTRIES => {
            let next = r.u64()?;
            let done = r.u8()? != 0;
            let n = r.u32()? as usize;
            // Each entry takes at least 13 bytes: a count larger than the message is a lie.
            if n > MAX_MESSAGE / 13 {
                return Err(GoferError::Malformed("entry count past the message limit"));
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(DirEntry {
                    ino: r.u64()?,
                    kind: r.u8()?,
                    name: r.bytes()?,
                });
            }
            Ok(Response::Entries {
                entries,
                next,
                done,
            })
        }
        tag::R_TARGET => Ok(Response::Target(r.bytes()?)),
        tag::R_OK => Ok(Response::Ok),
        _ => return Err(GoferError::Malformed("unknown reply")),
    };
    r.end()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<Request> {
        vec![
            Request::Version { version: 1 },
            Request::Walk {
                dir: 7,
                name: b"etc".to_vec(),
            },
            Request::Stat { fid: 9 },
            Request::Open { fid: 9, flags: 0 },
            Request::ReadDir { fid: 3, cookie: 44 },
            Request::Readlink { fid: 5 },
            Request::Clunk { fid: 5 },
        ]
    }

    fn replies() -> Vec<Reply> {
        let attr = Attr {
            ino: 1,
            dev: 2,
            mode: 0o100644,
            nlink: 1,
            size: 10,
            atime: (1, 2),
            mtime: (3, 4),
            ctime: (5, 6),
            ..Attr::default()
        };
        vec![
            Err(2),
            Ok(Response::Version {
                version: 1,
                mounts: 1,
            }),
            Ok(Response::Node { fid: 1 << 32, attr }),
            Ok(Response::Attr(attr)),
            Ok(Response::Opened),
            Ok(Response::Entries {
                entries: vec![DirEntry {
                    ino: 3,
                    kind: 4,
                    name: b"bin".to_vec(),
                }],
                next: 1,
                done: true,
            }),
            Ok(Response::Target(b"/usr/bin".to_vec())),
            Ok(Response::Ok),
        ]
    }

    #[test]
    fn round_trips() {
        for req in requests() {
            assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        }
        for rep in replies() {
            assert_eq!(decode_reply(&encode_reply(&rep)).unwrap(), rep);
        }
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for req in requests() {
            let bytes = req.encode();
            for cut in 0..bytes.len() {
                assert!(Request::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Request::decode(&longer).is_err());
        }
        for rep in replies() {
            let bytes = encode_reply(&rep);
            for cut in 0..bytes.len() {
                assert!(decode_reply(&bytes[..cut]).is_err());
            }
        }
        // A length that claims more than the message holds.
        assert!(Request::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]).is_err());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = Request::decode(&buf);
            let _ = decode_reply(&buf);
        }
    }
}
