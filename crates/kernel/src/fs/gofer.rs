//! Files served by the gofer: each inode is a gofer fid. This is the lower layer of the root
//! overlay, so it is read-only here; the overlay copies files up before they change.
//!
//! Attributes are cached from the walk that found the file (the host tree under a sandbox
//! is not expected to change while it runs). Regular files are read through the host fd the
//! gofer donates, at Moat's own offset.

use std::any::Any;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use moat_abi::{Errno, Stat};
use moat_gofer::{Attr, GoferClient};

use super::{FileOps, OpenFile};
use crate::vfs::{DirEntry, FileKind, Inode, InodeRef, NewNode, SetAttr};

/// A file the gofer serves.
pub struct GoferInode {
    client: Arc<GoferClient>,
    fid: u64,
    attr: Mutex<Attr>,
}

impl GoferInode {
    /// The root of mount `mount` of the gofer.
    pub fn root(client: Arc<GoferClient>, mount: u64) -> Result<Arc<GoferInode>, Errno> {
        let attr = client.stat(mount).map_err(Errno)?;
        Ok(Self::new(client, mount, attr))
    }

    fn new(client: Arc<GoferClient>, fid: u64, attr: Attr) -> Arc<GoferInode> {
        Arc::new(GoferInode {
            client,
            fid,
            attr: Mutex::new(attr),
        })
    }

    fn attr(&self) -> Attr {
        *self
            .attr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for GoferInode {
    fn drop(&mut self) {
        if self.fid >= moat_gofer::protocol::FIRST_WALKED_FID {
            self.client.clunk(self.fid);
        }
    }
}

fn kind_of_dtype(t: u8) -> FileKind {
    match t {
        libc::DT_DIR => FileKind::Directory,
        libc::DT_LNK => FileKind::Symlink,
        libc::DT_CHR => FileKind::CharDevice,
        libc::DT_BLK => FileKind::BlockDevice,
        libc::DT_FIFO => FileKind::Fifo,
        libc::DT_SOCK => FileKind::Socket,
        _ => FileKind::Regular,
    }
}

impl Inode for GoferInode {
    fn stat(&self) -> Result<Stat, Errno> {
        let a = self.attr();
        Ok(Stat {
            st_dev: a.dev,
            st_ino: a.ino,
            st_nlink: a.nlink,
            st_mode: a.mode,
            st_uid: a.uid,
            st_gid: a.gid,
            st_rdev: a.rdev,
            st_size: a.size as i64,
            st_blksize: a.blksize as i64,
            st_blocks: a.blocks as i64,
            st_atime: a.atime.0,
            st_atime_nsec: a.atime.1,
            st_mtime: a.mtime.0,
            st_mtime_nsec: a.mtime.1,
            st_ctime: a.ctime.0,
            st_ctime_nsec: a.ctime.1,
            ..Stat::default()
        })
    }

    fn kind(&self) -> FileKind {
        FileKind::from_mode(self.attr().mode)
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        if self.kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let (fid, attr) = self.client.walk(self.fid, name).map_err(Errno)?;
        Ok(GoferInode::new(self.client.clone(), fid, attr))
    }

    fn create(&self, _: &[u8], _: &NewNode, _: u32, _: u32) -> Result<InodeRef, Errno> {
        Err(Errno::EROFS)
    }

    fn link(&self, _: &[u8], _: &InodeRef) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn unlink(&self, _: &[u8], _: bool) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn rename(&self, _: &[u8], _: &InodeRef, _: &[u8], _: u32) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let entries = self.client.readdir(self.fid).map_err(Errno)?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                ino: e.ino,
                kind: kind_of_dtype(e.kind),
                name: e.name,
            })
            .collect())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        if self.kind() != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        self.client.readlink(self.fid).map_err(Errno)
    }

    fn open(&self, flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        if flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
            || flags & libc::O_TRUNC as u32 != 0
        {
            return Err(Errno::EROFS);
        }
        match self.kind() {
            FileKind::Directory => Ok(Box::new(super::dir::DirFile)),
            FileKind::Regular => {
                let fd = self
                    .client
                    .open(self.fid, libc::O_RDONLY as u32)
                    .map_err(Errno)?;
                Ok(Box::new(GoferFile { fd }))
            }
            FileKind::CharDevice => super::dev::open_char_device(self.attr().rdev),
            _ => Err(Errno::ENXIO),
        }
    }

    fn get_xattr(&self, name: &[u8]) -> Result<Vec<u8>, Errno> {
        self.client.get_xattr(self.fid, name).map_err(Errno)
    }

    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        self.client.list_xattr(self.fid).map_err(Errno)
    }

    fn set_xattr(&self, _: &[u8], _: &[u8], _: u32) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn remove_xattr(&self, _: &[u8]) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn setattr(&self, _: &SetAttr) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn id(&self) -> (u64, u64) {
        let a = self.attr();
        (a.dev, a.ino)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// An open regular file of the gofer: the donated host fd, read at Moat's offset.
struct GoferFile {
    fd: OwnedFd,
}

impl FileOps for GoferFile {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        loop {
            match rustix::io::pread(&self.fd, &mut *buf, offset.unwrap_or(0)) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Errno(e.raw_os_error())),
            }
        }
    }

    fn write(&self, _file: &OpenFile, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }

    fn seekable(&self) -> bool {
        true
    }
}
