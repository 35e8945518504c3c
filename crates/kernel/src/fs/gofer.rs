//! Files served by the gofer: each inode is a gofer fid. Mount 0 is the lower layer of the
//! root overlay and read-only here (the overlay copies files up before they change); a
//! `--volume` bind mount is writable unless `:ro`, and its changes go through the gofer to
//! the host directory.
//!
//! Attributes are cached from the walk that found the file (the host tree under a sandbox is
//! not expected to change behind its back); on a writable mount every change the sandbox makes
//! marks them stale, and the next use fetches them again. Regular files are read
//! and written through the host fd the gofer donates, at Moat's own offset.

use std::any::Any;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use moat_abi::{Errno, Stat};
use moat_gofer::{Attr, GoferClient};

use super::gofer_cache::{write_back_logged, CacheCell};
use super::page_cache::HostPageCache;
use super::{FileOps, OpenFile};
use crate::vfs::{DirEntry, FileKind, Inode, InodeRef, NewNode, SetAttr};

/// Where a gofer file's page cache is kept, shared by the inode and its open files.
type PagesSlot = Arc<Mutex<Option<Arc<HostPageCache>>>>;

/// Forget a file's page cache: the sandbox is changing the file.
fn drop_pages(slot: &PagesSlot) {
    *slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// A file the gofer serves.
pub struct GoferInode {
    client: Arc<GoferClient>,
    fid: u64,
    attr: Mutex<Attr>,
    /// Changes go to the host (a writable bind mount); otherwise everything is `EROFS`.
    writable: bool,
    /// The cached attributes are out of date: something this sandbox did changed the file
    /// (a write through an open file, a new name in a directory...). The next use fetches
    /// them again; until then the cache is used, as on the read-only root.
    stale: Arc<AtomicBool>,
    /// The file's pages while it is mapped shared (writable volumes' regular files).
    cache: Arc<CacheCell>,
    /// The file's page cache for private mappings and the loader (`page_cache.rs`); dropped
    /// by any change the sandbox makes to the file, so the next mapping reads it afresh.
    pages: PagesSlot,
    memory: Arc<moat_memory::MemoryFile>,
}

impl GoferInode {
    /// The root of mount `mount` of the gofer.
    /// The root of mount `mount` of the gofer.
    pub fn root(
        client: Arc<GoferClient>,
        memory: Arc<moat_memory::MemoryFile>,
        mount: u64,
        writable: bool,
    ) -> Result<Arc<GoferInode>, Errno> {
        let attr = client.stat(mount).map_err(Errno)?;
        Ok(Self::new(client, memory, mount, attr, writable))
    }

    fn new(
        client: Arc<GoferClient>,
        memory: Arc<moat_memory::MemoryFile>,
        fid: u64,
        attr: Attr,
        writable: bool,
    ) -> Arc<GoferInode> {
        Arc::new(GoferInode {
            cache: Arc::new(CacheCell::new(memory.clone(), client.clone(), fid)),
            client,
            fid,
            attr: Mutex::new(attr),
            writable,
            stale: Arc::default(),
            pages: PagesSlot::default(),
            memory,
        })
    }

    fn child(&self, fid: u64, attr: Attr) -> Arc<GoferInode> {
        Self::new(
            self.client.clone(),
            self.memory.clone(),
            fid,
            attr,
            self.writable,
        )
    }

    fn attr(&self) -> Attr {
        if self.stale.swap(false, Ordering::Relaxed) {
            if let Ok(fresh) = self.client.stat(self.fid) {
                *self
                    .attr
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            }
        }
        *self
            .attr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Check that this mount takes changes, and mark the cached attributes out of date
    /// (every caller is about to change the file).
    fn check_writable(&self) -> Result<(), Errno> {
        if self.writable {
            self.stale.store(true, Ordering::Relaxed);
            drop_pages(&self.pages);
            Ok(())
        } else {
            Err(Errno::EROFS)
        }
    }

    /// Another writable inode of the same gofer (rename and link stay within one).
    fn same_gofer<'a>(&self, other: &'a InodeRef) -> Result<&'a GoferInode, Errno> {
        other
            .as_any()
            .downcast_ref::<GoferInode>()
            .filter(|o| Arc::ptr_eq(&o.client, &self.client) && o.writable)
            .ok_or(Errno::EXDEV)
    }
}

impl Drop for GoferInode {
    fn drop(&mut self) {
        // Pages written through shared mappings reach the host before the fid goes.
        write_back_logged(&self.cache);
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
            st_size: self.cache.size().unwrap_or(a.size) as i64,
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
        Ok(self.child(fid, attr))
    }

    fn create(&self, name: &[u8], node: &NewNode, uid: u32, gid: u32) -> Result<InodeRef, Errno> {
        self.check_writable()?;
        let c = &self.client;
        let (fid, attr) = match node {
            NewNode::File { mode } => {
                let flags = (libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) as u32;
                let (fid, attr, _fd) = c
                    .create(self.fid, name, flags, *mode, uid, gid)
                    .map_err(Errno)?;
                (fid, attr)
            }
            NewNode::Directory { mode } => {
                c.mkdir(self.fid, name, *mode, uid, gid).map_err(Errno)?
            }
            NewNode::Symlink { target } => {
                c.symlink(self.fid, name, target, uid, gid).map_err(Errno)?
            }
            NewNode::Special { mode, rdev } => c
                .mknod(self.fid, name, *mode, *rdev, uid, gid)
                .map_err(Errno)?,
        };
        Ok(self.child(fid, attr))
    }

    fn link(&self, name: &[u8], target: &InodeRef) -> Result<(), Errno> {
        self.check_writable()?;
        let target = self.same_gofer(target)?;
        target.stale.store(true, Ordering::Relaxed);
        let (fid, attr) = self
            .client
            .link(target.fid, self.fid, name)
            .map_err(Errno)?;
        // The new name's fid is not needed: dropping its inode clunks it.
        drop(self.child(fid, attr));
        Ok(())
    }

    fn unlink(&self, name: &[u8], dir: bool) -> Result<(), Errno> {
        self.check_writable()?;
        self.client.unlink(self.fid, name, dir).map_err(Errno)
    }

    fn rename(
        &self,
        name: &[u8],
        new_dir: &InodeRef,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let to = self.same_gofer(new_dir)?;
        to.stale.store(true, Ordering::Relaxed);
        self.client
            .rename(self.fid, name, to.fid, new_name, flags)
            .map_err(Errno)
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
        let access = flags & libc::O_ACCMODE as u32;
        if access != libc::O_RDONLY as u32 || flags & libc::O_TRUNC as u32 != 0 {
            self.check_writable()?;
        }
        match self.kind() {
            FileKind::Directory => Ok(Box::new(super::dir::DirFile)),
            FileKind::Regular => {
                // Moat keeps the offset and O_APPEND; the host fd needs only the access
                // mode (and the truncation, done once here).
                let host_flags = access | (flags & libc::O_TRUNC as u32);
                let fd = self.client.open(self.fid, host_flags).map_err(Errno)?;
                if flags & libc::O_TRUNC as u32 != 0 {
                    self.cache.truncate(0)?;
                }
                Ok(Box::new(GoferFile {
                    fd,
                    stale: self.stale.clone(),
                    cache: self.cache.clone(),
                    pages: self.pages.clone(),
                }))
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

    fn set_xattr(&self, name: &[u8], value: &[u8], flags: u32) -> Result<(), Errno> {
        self.check_writable()?;
        self.client
            .set_xattr(self.fid, name, value, flags)
            .map_err(Errno)
    }

    fn remove_xattr(&self, name: &[u8]) -> Result<(), Errno> {
        self.check_writable()?;
        self.client.remove_xattr(self.fid, name).map_err(Errno)
    }

    fn setattr(&self, attr: &SetAttr) -> Result<(), Errno> {
        self.check_writable()?;
        let time = |t: Option<(i64, i64)>| {
            t.map(|(sec, nsec)| moat_gofer::protocol::TimeSpec { sec, nsec })
        };
        let request = moat_gofer::protocol::SetAttr {
            mode: attr.mode,
            uid: attr.uid,
            gid: attr.gid,
            size: attr.size,
            atime: time(attr.atime),
            mtime: time(attr.mtime),
        };
        let fresh = self.client.set_attr(self.fid, &request).map_err(Errno)?;
        if let Some(size) = attr.size {
            self.cache.truncate(size)?;
        }
        *self
            .attr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn id(&self) -> (u64, u64) {
        let a = self.attr();
        (a.dev, a.ino)
    }

    /// A writable volume's regular file is shared through its cache (`gofer_cache.rs`).
    fn memory_backed(&self) -> Option<Arc<crate::fs::tmpfs::TmpfsInode>> {
        if !self.writable || self.kind() != FileKind::Regular {
            return None;
        }
        self.cache.get_or_fill().ok()
    }

    /// A file mapped shared (its write-through cache exists) maps that cache, so private and
    /// shared mappings agree; any other file maps its page cache (`page_cache.rs`), read
    /// from the host once. A change the sandbox makes to the file drops that cache: mappings
    /// made earlier keep the pages they had, later ones see the new bytes. (Linux would also
    /// show the change in pages a private mapping has not written; Moat does not.)
    fn page_source(&self) -> Option<Arc<dyn crate::mm::PageSource>> {
        if self.kind() != FileKind::Regular {
            return None;
        }
        if let Some(shared) = self.cache.get() {
            return Some(shared);
        }
        let size = self.attr().size;
        let mut slot = self
            .pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let cache = HostPageCache::new(self.memory.clone(), &self.client, self.fid, size);
            *slot = Some(Arc::new(cache.ok()?));
        }
        slot.clone().map(|c| c as Arc<dyn crate::mm::PageSource>)
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
    /// The inode's staleness flag: a write changes size and times.
    stale: Arc<AtomicBool>,
    /// The inode's page cache, used while the file is mapped shared.
    cache: Arc<CacheCell>,
    /// The inode's page cache for private mappings, dropped by a write.
    pages: PagesSlot,
}

impl Drop for GoferFile {
    /// Closing a file that is mapped shared writes its pages back, as `close` after
    /// `munmap` leaves the data in the file on Linux.
    fn drop(&mut self) {
        if self.cache.get().is_some() {
            write_back_logged(&self.cache);
        }
    }
}

impl FileOps for GoferFile {
    /// A volume's file: write back what shared mappings changed, then sync the host file
    /// through the donated fd.
    fn sync(&self) -> Result<(), Errno> {
        self.cache.write_back()?;
        rustix::fs::fsync(&self.fd).map_err(|e| Errno(e.raw_os_error()))
    }

    fn read(&self, _file: &OpenFile, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if let Some(cache) = self.cache.get() {
            return Ok(cache.read_at(buf, offset.unwrap_or(0)));
        }
        loop {
            match rustix::io::pread(&self.fd, &mut *buf, offset.unwrap_or(0)) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Errno(e.raw_os_error())),
            }
        }
    }

    /// The host reads the donated fd straight into application memory.
    fn read_to_memory(
        &self,
        memory: &moat_memory::MemoryFile,
        pieces: &[(u64, usize)],
        offset: u64,
    ) -> Option<Result<usize, Errno>> {
        use std::os::fd::AsFd;
        if self.cache.get().is_some() {
            return None;
        }
        let mut done = 0usize;
        for &(at, len) in pieces {
            match memory.read_from_fd(self.fd.as_fd(), offset + done as u64, at, len) {
                Ok(n) => {
                    done += n;
                    if n < len {
                        break;
                    }
                }
                Err(_) if done > 0 => break,
                Err(e) => return Some(Err(Errno(e.raw_os_error().unwrap_or(libc::EIO)))),
            }
        }
        Some(Ok(done))
    }

    /// The host writes the donated fd straight from application memory.
    fn write_from_memory(
        &self,
        memory: &moat_memory::MemoryFile,
        pieces: &[(u64, usize)],
        offset: u64,
    ) -> Option<Result<usize, Errno>> {
        use std::os::fd::AsFd;
        if self.cache.get().is_some() {
            return None;
        }
        self.stale.store(true, Ordering::Relaxed);
        drop_pages(&self.pages);
        let mut done = 0usize;
        for &(at, len) in pieces {
            match memory.write_to_fd(self.fd.as_fd(), offset + done as u64, at, len) {
                Ok(n) => {
                    done += n;
                    if n < len {
                        break;
                    }
                }
                Err(_) if done > 0 => break,
                Err(e) => return Some(Err(Errno(e.raw_os_error().unwrap_or(libc::EIO)))),
            }
        }
        Some(Ok(done))
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if let Some(cache) = self.cache.get() {
            // Write-through: the mappings see it at once, the host as usual.
            cache.write_at(buf, offset.unwrap_or(0))?;
        }
        drop_pages(&self.pages);
        loop {
            self.stale.store(true, Ordering::Relaxed);
            match rustix::io::pwrite(&self.fd, buf, offset.unwrap_or(0)) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Errno(e.raw_os_error())),
            }
        }
    }

    fn seekable(&self) -> bool {
        true
    }
}
