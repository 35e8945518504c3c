//! tmpfs: a filesystem held in the kernel's memory. It is `/tmp`, `/dev/shm`, and the upper
//! layer of the overlay root, where the sandbox's writes stay.
//!
//! File contents are pages of the sandbox's memory file, in a sparse map (so `ftruncate(fd,
//! 1 << 40)` costs nothing until written). Being memory-file pages, they can be mapped into
//! application address spaces as they are: a `MAP_SHARED` mapping of a tmpfs file (or a
//! memfd, or a `/dev/shm` object) and the file's `read`/`write` see the same bytes, and so do
//! processes sharing the mapping.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use moat_abi::{Errno, Stat};
use moat_memory::{FileRange, MemoryFile};

use super::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::vfs::{
    DirEntry, FileKind, Inode, InodeRef, NewNode, SetAttr, RENAME_EXCHANGE, RENAME_NOREPLACE,
};

const PAGE: u64 = 4096;
/// Largest tmpfs file (`MAX_LFS_FILESIZE`).
const MAX_FILE_SIZE: u64 = i64::MAX as u64;

static NEXT_DEV: AtomicU64 = AtomicU64::new(0x100);

/// `setxattr` flags.
pub const XATTR_CREATE: u32 = 1;
pub const XATTR_REPLACE: u32 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Current time as `(seconds, nanoseconds)`.
pub fn now() -> (i64, i64) {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (t.tv_sec, t.tv_nsec)
}

/// One tmpfs instance.
pub struct Tmpfs {
    dev: u64,
    next_ino: AtomicU64,
    rename_lock: Mutex<()>,
    /// Where file contents live: the sandbox's memory file.
    memory: Arc<MemoryFile>,
}

/// A memory file for tmpfs instances made outside a sandbox (tests, tools).
fn standalone_memory() -> Arc<MemoryFile> {
    static MEMORY: std::sync::OnceLock<Arc<MemoryFile>> = std::sync::OnceLock::new();
    MEMORY
        .get_or_init(|| Arc::new(MemoryFile::new(1 << 32).expect("creating a memory file")))
        .clone()
}

impl Tmpfs {
    /// A new, empty tmpfs whose root directory has `mode`, outside any sandbox.
    pub fn new_root(mode: u32, uid: u32, gid: u32) -> Arc<TmpfsInode> {
        Self::new_root_in(standalone_memory(), mode, uid, gid)
    }

    /// A new, empty tmpfs keeping its files in `memory` (the sandbox's memory file, so
    /// its pages can be mapped into the sandbox's address spaces).
    pub fn new_root_in(memory: Arc<MemoryFile>, mode: u32, uid: u32, gid: u32) -> Arc<TmpfsInode> {
        let fs = Arc::new(Tmpfs {
            dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
            next_ino: AtomicU64::new(1),
            rename_lock: Mutex::new(()),
            memory,
        });
        TmpfsInode::new(
            &fs,
            libc::S_IFDIR | (mode & 0o7777),
            uid,
            gid,
            0,
            Content::Dir(BTreeMap::new()),
        )
    }
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    rdev: u64,
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
}

enum Content {
    File {
        /// Page index -> memory-file offset of the page (each holds one reference).
        pages: BTreeMap<u64, u64>,
        size: u64,
    },
    Dir(BTreeMap<Vec<u8>, Arc<TmpfsInode>>),
    Symlink(Vec<u8>),
    Special,
}

/// A tmpfs file, directory, symlink or special file.
pub struct TmpfsInode {
    fs: Arc<Tmpfs>,
    ino: u64,
    meta: Mutex<Meta>,
    content: Mutex<Content>,
    /// Extended attributes (tmpfs keeps the `user.`, `trusted.` and `security.` ones).
    xattrs: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    this: Weak<TmpfsInode>,
}

impl TmpfsInode {
    fn new(
        fs: &Arc<Tmpfs>,
        mode: u32,
        uid: u32,
        gid: u32,
        rdev: u64,
        content: Content,
    ) -> Arc<TmpfsInode> {
        let t = now();
        let nlink = if matches!(content, Content::Dir(_)) {
            2
        } else {
            1
        };
        Arc::new_cyclic(|this| TmpfsInode {
            fs: fs.clone(),
            ino: fs.next_ino.fetch_add(1, Ordering::Relaxed),
            meta: Mutex::new(Meta {
                mode,
                uid,
                gid,
                nlink,
                rdev,
                atime: t,
                mtime: t,
                ctime: t,
            }),
            content: Mutex::new(content),
            xattrs: Mutex::new(BTreeMap::new()),
            this: this.clone(),
        })
    }

    fn arc(&self) -> Arc<TmpfsInode> {
        self.this.upgrade().expect("a live inode has a live Arc")
    }

    fn touch_modified(&self) {
        let t = now();
        let mut m = lock(&self.meta);
        m.mtime = t;
        m.ctime = t;
    }

    fn is_dir(&self) -> bool {
        matches!(*lock(&self.content), Content::Dir(_))
    }

    /// Read file bytes at `offset` into `buf`; returns the count (0 at or past the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> usize {
        let content = lock(&self.content);
        let Content::File { pages, size } = &*content else {
            return 0;
        };
        if offset >= *size {
            return 0;
        }
        let n = (buf.len() as u64).min(size - offset) as usize;
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let (index, within) = (pos / PAGE, (pos % PAGE) as usize);
            let k = (PAGE as usize - within).min(n - done);
            match pages.get(&index) {
                Some(&page) => self
                    .fs
                    .memory
                    .read(page + within as u64, &mut buf[done..done + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
        }
        n
    }

    /// Copy file bytes at `offset` into memory-file `pieces` (an application buffer); holes
    /// read as zeros. Returns the count (0 at or past the end).
    pub fn copy_to_memory(
        &self,
        memory: &MemoryFile,
        pieces: &[(u64, usize)],
        offset: u64,
    ) -> usize {
        let content = lock(&self.content);
        let Content::File { pages, size } = &*content else {
            return 0;
        };
        if offset >= *size {
            return 0;
        }
        let wanted: usize = pieces.iter().map(|p| p.1).sum();
        let n = (wanted as u64).min(size - offset) as usize;
        let mut done = 0;
        for &(at, len) in pieces {
            let mut k0 = 0;
            while k0 < len && done < n {
                let pos = offset + done as u64;
                let (index, within) = (pos / PAGE, pos % PAGE);
                let k = ((PAGE - within) as usize).min(len - k0).min(n - done);
                let dst = at + k0 as u64;
                match pages.get(&index) {
                    Some(&page) => memory.copy_within(page + within, dst, k as u64),
                    None => memory.zero(dst, k as u64),
                }
                k0 += k;
                done += k;
            }
        }
        n
    }

    /// Copy memory-file `pieces` (an application buffer) into the file at `offset`, growing
    /// it; returns the count (short only when the sandbox's memory runs out).
    pub fn copy_from_memory(
        &self,
        memory: &MemoryFile,
        pieces: &[(u64, usize)],
        offset: u64,
    ) -> Result<usize, Errno> {
        let total: usize = pieces.iter().map(|p| p.1).sum();
        let end = offset
            .checked_add(total as u64)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Errno::EFBIG)?;
        let mut done = 0usize;
        {
            let mut content = lock(&self.content);
            let Content::File { pages, size } = &mut *content else {
                return Err(Errno::EINVAL);
            };
            'pieces: for &(at, len) in pieces {
                let mut k0 = 0;
                while k0 < len {
                    let pos = offset + done as u64;
                    let (index, within) = (pos / PAGE, pos % PAGE);
                    let k = ((PAGE - within) as usize).min(len - k0);
                    let page = match pages.get(&index) {
                        Some(&p) => p,
                        None => match memory.allocate(PAGE) {
                            Ok(range) => {
                                pages.insert(index, range.offset);
                                range.offset
                            }
                            Err(_) if done > 0 => break 'pieces,
                            Err(_) => return Err(Errno::ENOSPC),
                        },
                    };
                    memory.copy_within(at + k0 as u64, page + within, k as u64);
                    k0 += k;
                    done += k;
                }
            }
            let written_end = if done == total {
                end
            } else {
                offset + done as u64
            };
            *size = (*size).max(written_end);
        }
        self.touch_modified();
        Ok(done)
    }

    /// Write `data` at `offset`, growing the file.
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<usize, Errno> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Errno::EFBIG)?;
        {
            let mut content = lock(&self.content);
            let Content::File { pages, size } = &mut *content else {
                return Err(Errno::EINVAL);
            };
            let mut done = 0;
            while done < data.len() {
                let pos = offset + done as u64;
                let (index, within) = (pos / PAGE, (pos % PAGE) as usize);
                let k = (PAGE as usize - within).min(data.len() - done);
                let page = match pages.get(&index) {
                    Some(&p) => p,
                    None => {
                        let Ok(range) = self.fs.memory.allocate(PAGE) else {
                            // Out of sandbox memory: what was written so far counts.
                            if done > 0 {
                                *size = (*size).max(offset + done as u64);
                                break;
                            }
                            return Err(Errno::ENOSPC);
                        };
                        pages.insert(index, range.offset);
                        range.offset
                    }
                };
                self.fs
                    .memory
                    .write(page + within as u64, &data[done..done + k]);
                done += k;
            }
            if done == data.len() {
                *size = (*size).max(end);
            } else {
                drop(content);
                self.touch_modified();
                return Ok(done);
            }
        }
        self.touch_modified();
        Ok(data.len())
    }

    fn truncate(&self, new_size: u64) -> Result<(), Errno> {
        if new_size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let mut content = lock(&self.content);
        let Content::File { pages, size } = &mut *content else {
            return Err(Errno::EISDIR);
        };
        if new_size < *size {
            let memory = &self.fs.memory;
            pages.retain(|&i, &mut page| {
                let keep = i * PAGE < new_size;
                if !keep {
                    memory.free(FileRange {
                        offset: page,
                        len: PAGE,
                    });
                }
                keep
            });
            // Zero the tail of the last partial page, so growing again reads zeros.
            if let Some(&page) = pages.get(&(new_size / PAGE)) {
                let tail = new_size % PAGE;
                memory.zero(page + tail, PAGE - tail);
            }
        }
        *size = new_size;
        Ok(())
    }

    /// The memory-file pages behind `count` pages of the file from page `first`, for a
    /// shared mapping: missing pages inside the file are allocated, each page gets one more
    /// reference (the mapping's), and pages wholly past the end are `None`.
    pub fn share_pages(&self, first: u64, count: u64) -> Result<Vec<Option<u64>>, Errno> {
        let mut content = lock(&self.content);
        let Content::File { pages, size } = &mut *content else {
            return Err(Errno::ENODEV);
        };
        let mut out = Vec::with_capacity(count as usize);
        for index in first..first.saturating_add(count) {
            if index.saturating_mul(PAGE) >= *size {
                out.push(None);
                continue;
            }
            let page = match pages.get(&index) {
                Some(&p) => p,
                None => {
                    // No reference has been taken yet (they are taken at the end).
                    let Ok(range) = self.fs.memory.allocate(PAGE) else {
                        return Err(Errno::ENOMEM);
                    };
                    pages.insert(index, range.offset);
                    range.offset
                }
            };
            out.push(Some(page));
        }
        super::page_cache::share_runs(&self.fs.memory, &out);
        Ok(out)
    }

    fn size(&self) -> u64 {
        match &*lock(&self.content) {
            Content::File { size, .. } => *size,
            Content::Dir(entries) => (entries.len() as u64 + 2) * 20,
            Content::Symlink(t) => t.len() as u64,
            Content::Special => 0,
        }
    }
}

/// A tmpfs file's pages are what its mappings map.
impl crate::mm::PageSource for TmpfsInode {
    fn share_pages(&self, first: u64, count: u64) -> Result<Vec<Option<u64>>, Errno> {
        TmpfsInode::share_pages(self, first, count)
    }
}

/// A file's pages go back to the memory file with the inode (a mapping still holding some
/// keeps its own reference).
impl Drop for TmpfsInode {
    fn drop(&mut self) {
        let content = self
            .content
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Content::File { pages, .. } = content {
            for &page in pages.values() {
                self.fs.memory.free(FileRange {
                    offset: page,
                    len: PAGE,
                });
            }
        }
    }
}

fn downcast(inode: &InodeRef) -> Result<&TmpfsInode, Errno> {
    inode
        .as_any()
        .downcast_ref::<TmpfsInode>()
        .ok_or(Errno::EXDEV)
}

impl Inode for TmpfsInode {
    fn memory_backed(&self) -> Option<Arc<TmpfsInode>> {
        matches!(*lock(&self.content), Content::File { .. }).then(|| self.arc())
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let size = self.size();
        let blocks = match &*lock(&self.content) {
            Content::File { pages, .. } => pages.len() as i64 * 8,
            _ => 0,
        };
        let m = lock(&self.meta);
        Ok(Stat {
            st_dev: self.fs.dev,
            st_ino: self.ino,
            st_nlink: m.nlink,
            st_mode: m.mode,
            st_uid: m.uid,
            st_gid: m.gid,
            st_rdev: m.rdev,
            st_size: size as i64,
            st_blksize: PAGE as i64,
            st_blocks: blocks,
            st_atime: m.atime.0,
            st_atime_nsec: m.atime.1,
            st_mtime: m.mtime.0,
            st_mtime_nsec: m.mtime.1,
            st_ctime: m.ctime.0,
            st_ctime_nsec: m.ctime.1,
            ..Stat::default()
        })
    }

    fn kind(&self) -> FileKind {
        FileKind::from_mode(lock(&self.meta).mode)
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        match &*lock(&self.content) {
            Content::Dir(entries) => entries
                .get(name)
                .map(|i| i.clone() as InodeRef)
                .ok_or(Errno::ENOENT),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn create(&self, name: &[u8], node: &NewNode, uid: u32, gid: u32) -> Result<InodeRef, Errno> {
        let (mode, rdev, content) = match node {
            NewNode::File { mode } => (
                libc::S_IFREG | (mode & 0o7777),
                0,
                Content::File {
                    pages: BTreeMap::new(),
                    size: 0,
                },
            ),
            NewNode::Directory { mode } => (
                libc::S_IFDIR | (mode & 0o7777),
                0,
                Content::Dir(BTreeMap::new()),
            ),
            NewNode::Symlink { target } => {
                (libc::S_IFLNK | 0o777, 0, Content::Symlink(target.clone()))
            }
            NewNode::Special { mode, rdev } => (*mode, *rdev, Content::Special),
        };
        let is_dir = matches!(content, Content::Dir(_));
        let child = TmpfsInode::new(&self.fs, mode, uid, gid, rdev, content);
        {
            let mut content = lock(&self.content);
            let Content::Dir(entries) = &mut *content else {
                return Err(Errno::ENOTDIR);
            };
            if entries.contains_key(name) {
                return Err(Errno::EEXIST);
            }
            entries.insert(name.to_vec(), child.clone());
        }
        if is_dir {
            lock(&self.meta).nlink += 1;
        }
        self.touch_modified();
        Ok(child)
    }

    fn link(&self, name: &[u8], target: &InodeRef) -> Result<(), Errno> {
        let target = downcast(target)?.arc();
        if target.is_dir() {
            return Err(Errno::EPERM);
        }
        {
            let mut content = lock(&self.content);
            let Content::Dir(entries) = &mut *content else {
                return Err(Errno::ENOTDIR);
            };
            if entries.contains_key(name) {
                return Err(Errno::EEXIST);
            }
            entries.insert(name.to_vec(), target.clone());
        }
        let mut m = lock(&target.meta);
        m.nlink += 1;
        m.ctime = now();
        drop(m);
        self.touch_modified();
        Ok(())
    }

    fn unlink(&self, name: &[u8], dir: bool) -> Result<(), Errno> {
        let removed = {
            let mut content = lock(&self.content);
            let Content::Dir(entries) = &mut *content else {
                return Err(Errno::ENOTDIR);
            };
            let child = entries.get(name).ok_or(Errno::ENOENT)?.clone();
            match (&*lock(&child.content), dir) {
                (Content::Dir(e), true) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
                (Content::Dir(_), true) => {}
                (Content::Dir(_), false) => return Err(Errno::EISDIR),
                (_, true) => return Err(Errno::ENOTDIR),
                (_, false) => {}
            }
            entries.remove(name);
            child
        };
        let mut m = lock(&removed.meta);
        m.nlink = if dir { 0 } else { m.nlink.saturating_sub(1) };
        m.ctime = now();
        drop(m);
        if dir {
            lock(&self.meta).nlink -= 1;
        }
        self.touch_modified();
        Ok(())
    }

    fn rename(
        &self,
        name: &[u8],
        new_dir: &InodeRef,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let target_dir = downcast(new_dir)?.arc();
        // Renames are serialised per filesystem; each directory is then locked on its own.
        let _rename = lock(&self.fs.rename_lock);
        let entry = |dir: &TmpfsInode, n: &[u8]| -> Result<Option<Arc<TmpfsInode>>, Errno> {
            match &*lock(&dir.content) {
                Content::Dir(e) => Ok(e.get(n).cloned()),
                _ => Err(Errno::ENOTDIR),
            }
        };
        let put = |dir: &TmpfsInode, n: &[u8], child: Option<Arc<TmpfsInode>>| {
            if let Content::Dir(e) = &mut *lock(&dir.content) {
                match child {
                    Some(c) => e.insert(n.to_vec(), c),
                    None => e.remove(n),
                };
            }
        };
        let moving = entry(self, name)?.ok_or(Errno::ENOENT)?;
        let existing = entry(&target_dir, new_name)?;
        let same_dir = std::ptr::eq(self, Arc::as_ptr(&target_dir));
        let dir_moves = |is_dir: bool, from: &TmpfsInode, to: &TmpfsInode| {
            if is_dir && !std::ptr::eq(from, to) {
                lock(&from.meta).nlink -= 1;
                lock(&to.meta).nlink += 1;
            }
        };
        if flags & RENAME_EXCHANGE != 0 {
            let other = existing.ok_or(Errno::ENOENT)?;
            put(self, name, Some(other.clone()));
            put(&target_dir, new_name, Some(moving.clone()));
            dir_moves(moving.is_dir(), self, &target_dir);
            dir_moves(other.is_dir(), &target_dir, self);
        } else {
            if let Some(old) = &existing {
                if Arc::ptr_eq(old, &moving) {
                    return Ok(());
                }
                if flags & RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                match (old.is_dir(), moving.is_dir()) {
                    (true, false) => return Err(Errno::EISDIR),
                    (false, true) => return Err(Errno::ENOTDIR),
                    (true, true) if matches!(&*lock(&old.content), Content::Dir(e) if !e.is_empty()) => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
                let mut m = lock(&old.meta);
                m.nlink = if old.is_dir() {
                    0
                } else {
                    m.nlink.saturating_sub(1)
                };
                m.ctime = now();
                drop(m);
                if old.is_dir() {
                    lock(&target_dir.meta).nlink -= 1;
                }
            }
            put(self, name, None);
            put(&target_dir, new_name, Some(moving.clone()));
            dir_moves(moving.is_dir(), self, &target_dir);
        }
        lock(&moving.meta).ctime = now();
        self.touch_modified();
        if !same_dir {
            target_dir.touch_modified();
        }
        Ok(())
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        match &*lock(&self.content) {
            Content::Dir(entries) => Ok(entries
                .iter()
                .map(|(name, i)| DirEntry {
                    ino: i.ino,
                    kind: i.kind(),
                    name: name.clone(),
                })
                .collect()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        match &*lock(&self.content) {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn open(&self, flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        match self.kind() {
            FileKind::Regular => {
                if flags & libc::O_TRUNC as u32 != 0
                    && flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
                {
                    self.truncate(0)?;
                    self.touch_modified();
                }
                Ok(Box::new(TmpfsFile { inode: self.arc() }))
            }
            FileKind::Directory => Ok(Box::new(crate::fs::dir::DirFile)),
            FileKind::CharDevice => super::dev::open_char_device(lock(&self.meta).rdev),
            // FIFOs and sockets come with pipes and sockets.
            _ => Err(Errno::ENXIO),
        }
    }

    fn get_xattr(&self, name: &[u8]) -> Result<Vec<u8>, Errno> {
        lock(&self.xattrs).get(name).cloned().ok_or(Errno::ENODATA)
    }

    fn set_xattr(&self, name: &[u8], value: &[u8], flags: u32) -> Result<(), Errno> {
        let mut xattrs = lock(&self.xattrs);
        let exists = xattrs.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(Errno::EEXIST);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(Errno::ENODATA);
        }
        xattrs.insert(name.to_vec(), value.to_vec());
        drop(xattrs);
        lock(&self.meta).ctime = now();
        Ok(())
    }

    fn remove_xattr(&self, name: &[u8]) -> Result<(), Errno> {
        lock(&self.xattrs).remove(name).ok_or(Errno::ENODATA)?;
        lock(&self.meta).ctime = now();
        Ok(())
    }

    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        Ok(lock(&self.xattrs).keys().cloned().collect())
    }

    fn setattr(&self, attr: &SetAttr) -> Result<(), Errno> {
        if let Some(size) = attr.size {
            self.truncate(size)?;
            self.touch_modified();
        }
        let mut m = lock(&self.meta);
        if let Some(mode) = attr.mode {
            m.mode = (m.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = attr.uid {
            m.uid = uid;
        }
        if let Some(gid) = attr.gid {
            m.gid = gid;
        }
        if let Some(t) = attr.atime {
            m.atime = t;
        }
        if let Some(t) = attr.mtime {
            m.mtime = t;
        }
        m.ctime = now();
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// An open tmpfs regular file.
struct TmpfsFile {
    inode: Arc<TmpfsInode>,
}

impl FileOps for TmpfsFile {
    /// Memory is as durable as tmpfs gets.
    fn sync(&self) -> Result<(), Errno> {
        Ok(())
    }

    fn read(&self, _file: &OpenFile, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        Ok(self.inode.read_at(buf, offset.unwrap_or(0)))
    }

    /// One copy from the application's memory-file pages into the file's.
    fn write_from_memory(
        &self,
        memory: &MemoryFile,
        pieces: &[(u64, usize)],
        offset: u64,
    ) -> Option<Result<usize, Errno>> {
        Some(self.inode.copy_from_memory(memory, pieces, offset))
    }

    /// File pages and application pages are both memory-file pages: one copy between them.
    fn read_to_memory(
        &self,
        memory: &MemoryFile,
        pieces: &[(u64, usize)],
        offset: u64,
    ) -> Option<Result<usize, Errno>> {
        Some(Ok(self.inode.copy_to_memory(memory, pieces, offset)))
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        self.inode.write_at(buf, offset.unwrap_or(0))
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        _mm: &mut MemoryManager,
        _request: u32,
        _arg: u64,
    ) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        self.inode.stat()
    }

    fn seekable(&self) -> bool {
        true
    }
}
