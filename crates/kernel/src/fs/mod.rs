//! Open files: the file descriptions behind application fds, and the filesystems.
//!
//! Every fd refers to a Moat [`OpenFile`]: the file's operations ([`FileOps`]), its status
//! flags, its offset, and where it was opened in the tree ([`VfsPath`]). Filesystems:
//! [`tmpfs`] (in memory), [`host`] (fds donated by `moat do`, the stdio).

pub mod dev;
pub mod dir;
pub mod eventfd;
pub mod fd_table;
pub mod gofer;
pub mod gofer_cache;
pub mod host;
pub mod locks;
pub mod overlay;
pub mod page_cache;
pub mod pidfd;
pub mod pipe;
pub mod proc;
pub mod proc_pid;
pub mod pty;
pub mod signalfd;
pub mod sys;
pub mod timerfd;
pub mod tmpfs;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use moat_abi::{Errno, Stat};

use crate::mm::MemoryManager;
use crate::vfs::{DirEntry, VfsPath};

pub use fd_table::FdTable;

/// Status flags an application may change with `F_SETFL`.
pub const SETFL_MASK: u32 =
    (libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME) as u32;

/// `fstat` of a file that is no file in any tree (eventfd, epoll, signalfd, timerfd, pidfd):
/// Linux's anonymous inode.
pub fn anon_inode_stat() -> Stat {
    Stat {
        st_dev: 0xd,
        st_nlink: 1,
        st_mode: 0o600,
        st_blksize: 4096,
        ..Stat::default()
    }
}

/// Any value as `dyn Any`: what lets a system call find the kind of file it needs behind an
/// fd (`F_SETPIPE_SZ` a pipe, `epoll_ctl` an epoll instance) with [`OpenFile::ops_as`].
pub trait AsAny {
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: std::any::Any> AsAny for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// What a kind of open file does. Offsets are `Some` for files that keep a position (the
/// description's offset, or `pread`/`pwrite`'s) and `None` for streams.
pub trait FileOps: Send + Sync + AsAny {
    fn read(&self, file: &OpenFile, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno>;
    fn write(&self, file: &OpenFile, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno>;

    /// `ioctl`: `mm` is for the argument's memory.
    fn ioctl(
        &self,
        _file: &OpenFile,
        _mm: &mut MemoryManager,
        _request: u32,
        _arg: u64,
    ) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }

    /// `fstat` of a file that has no inode in the tree (donated host files).
    fn stat(&self) -> Result<Stat, Errno> {
        Err(Errno::EBADF)
    }

    /// Read at `offset` straight into memory-file `pieces` (an application buffer) with one
    /// copy, for files that can: `None` means "use `read`" (the caller stages the data).
    fn read_to_memory(
        &self,
        _memory: &moat_memory::MemoryFile,
        _pieces: &[(u64, usize)],
        _offset: u64,
    ) -> Option<Result<usize, Errno>> {
        None
    }

    /// Write at `offset` straight from memory-file `pieces` (an application buffer) with one
    /// copy, for files that can: `None` means "use `write`".
    fn write_from_memory(
        &self,
        _memory: &moat_memory::MemoryFile,
        _pieces: &[(u64, usize)],
        _offset: u64,
    ) -> Option<Result<usize, Errno>> {
        None
    }

    /// Whether `pread`/`pwrite`/`lseek` make sense (`ESPIPE` otherwise).
    fn seekable(&self) -> bool;

    /// `fsync`: make written data durable. Files with nowhere to sync to (devices, pipes,
    /// proc files) say `EINVAL`, as Linux's do.
    fn sync(&self) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    /// Whether Moat keeps this file's position (false where the host keeps it: donated fds).
    fn own_offset(&self) -> bool {
        self.seekable()
    }

    /// Move a position Moat does not keep (`lseek` on a donated host file).
    fn host_seek(&self, _offset: i64, _whence: i32) -> Result<u64, Errno> {
        Err(Errno::ESPIPE)
    }

    /// The host fd behind this file, if it is a donated one (for `poll`).
    fn host_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Whether this is a directory (reads fail with `EISDIR`, `getdents64` works).
    fn is_directory(&self) -> bool {
        false
    }

    /// Readiness as `poll` reports it (`POLLIN`, `POLLOUT`, `POLLHUP`...). Files whose
    /// readiness never changes are always ready, as regular files are on Linux.
    fn poll(&self, _file: &OpenFile) -> u32 {
        pipe::POLLIN | pipe::POLLOUT | pipe::POLLRDNORM | pipe::POLLWRNORM
    }

    /// The socket behind this file, for the socket calls (`ENOTSOCK` for the rest).
    fn as_socket(&self) -> Option<&dyn crate::net::Socket> {
        None
    }

    /// The queue notified when the file's readiness may have changed; `None` for files that
    /// never make a reader or writer wait.
    fn wait_queue(&self) -> Option<&crate::wait::WaitQueue> {
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An open file description: shared by `dup` and `fork`, with its own flags and offset.
pub struct OpenFile {
    /// Sandbox-unique: the owner of the description's flock and OFD locks.
    id: u64,
    ops: Box<dyn FileOps>,
    /// Access mode and status flags (`O_RDWR`, `O_APPEND`, `O_NONBLOCK`...).
    flags: AtomicU32,
    offset: Mutex<u64>,
    /// Where the file was opened; `None` for files outside the tree (donated stdio).
    path: Option<VfsPath>,
    /// A directory's listing as `getdents64` walks it (taken at the first call or rewind).
    listing: Mutex<Option<Vec<DirEntry>>>,
    /// The identity of the regular file this description may write (counted in `WRITERS`).
    writer_of: Option<(u64, u64)>,
    /// `F_SETOWN`/`F_SETOWN_EX`: who would get the description's `SIGIO` (Linux's `f_owner`).
    owner: Mutex<FileOwner>,
    /// `F_SETSIG`: the signal sent instead of `SIGIO` (0: `SIGIO`).
    io_signal: std::sync::atomic::AtomicI32,
}

/// The owner of a description's I/O signals, as `F_GETOWN_EX` reports it: `kind` is
/// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2); `pid` 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOwner {
    pub kind: i32,
    pub pid: i32,
}

/// The last reference to a description is gone: so are its locks and its write access.
impl Drop for OpenFile {
    fn drop(&mut self) {
        locks::release(locks::Owner::Description(self.id), None);
        if let Some(key) = self.writer_of {
            let mut writers = lock(&WRITERS);
            if let Some(n) = writers.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    writers.remove(&key);
                }
            }
        }
    }
}

/// Regular files open for writing, by file identity: `execve` of one is `ETXTBSY`.
static WRITERS: Mutex<std::collections::BTreeMap<(u64, u64), usize>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Whether some description has the file with identity `id` open for writing.
pub fn open_for_writing(id: (u64, u64)) -> bool {
    lock(&WRITERS).contains_key(&id)
}

impl OpenFile {
    /// The description's identity (lock ownership).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn new(ops: Box<dyn FileOps>, flags: u32) -> Self {
        Self::with_path(ops, flags, None)
    }

    pub fn with_path(ops: Box<dyn FileOps>, flags: u32, path: Option<VfsPath>) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let writes = flags & libc::O_PATH as u32 == 0
            && flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
        let writer_of = path
            .as_ref()
            .filter(|p| writes && p.inode().kind() == crate::vfs::FileKind::Regular)
            .map(|p| p.inode().id());
        if let Some(key) = writer_of {
            *lock(&WRITERS).entry(key).or_insert(0) += 1;
        }
        Self {
            writer_of,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ops,
            flags: AtomicU32::new(flags),
            offset: Mutex::new(0),
            path,
            listing: Mutex::new(None),
            owner: Mutex::new(FileOwner::default()),
            io_signal: std::sync::atomic::AtomicI32::new(0),
        }
    }

    /// Who owns the description's I/O signals (`F_GETOWN`, `F_GETOWN_EX`).
    pub fn owner(&self) -> FileOwner {
        *lock(&self.owner)
    }

    pub fn set_owner(&self, owner: FileOwner) {
        *lock(&self.owner) = owner;
    }

    /// `F_GETSIG`.
    pub fn io_signal(&self) -> i32 {
        self.io_signal.load(Ordering::Relaxed)
    }

    /// `F_SETSIG` (the caller checked the number).
    pub fn set_io_signal(&self, signal: i32) {
        self.io_signal.store(signal, Ordering::Relaxed);
    }

    pub fn ops(&self) -> &dyn FileOps {
        &*self.ops
    }

    /// The file's operations as a `T` (a pipe end, an epoll instance...), if that is its kind.
    pub fn ops_as<T: FileOps + 'static>(&self) -> Option<&T> {
        let ops: &dyn FileOps = &*self.ops;
        AsAny::as_any(ops).downcast_ref::<T>()
    }

    pub fn path(&self) -> Option<&VfsPath> {
        self.path.as_ref()
    }

    /// The description's position (`/proc/PID/fdinfo`).
    pub fn position(&self) -> u64 {
        *lock(&self.offset)
    }

    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Replace the changeable status flags (`F_SETFL`, `FIONBIO`).
    pub fn set_status_flags(&self, flags: u32) {
        let keep = self.flags() & !SETFL_MASK;
        self.flags
            .store(keep | (flags & SETFL_MASK), Ordering::Relaxed);
    }

    pub fn nonblocking(&self) -> bool {
        self.flags() & libc::O_NONBLOCK as u32 != 0
    }

    /// `O_PATH` descriptions only name a file; they cannot be read or written.
    pub fn is_path_only(&self) -> bool {
        self.flags() & libc::O_PATH as u32 != 0
    }

    pub fn readable(&self) -> bool {
        !self.is_path_only() && self.flags() & libc::O_ACCMODE as u32 != libc::O_WRONLY as u32
    }

    pub fn writable(&self) -> bool {
        !self.is_path_only() && self.flags() & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
    }

    /// The file's attributes: from its inode if it has one, else from the file itself.
    pub fn stat(&self) -> Result<Stat, Errno> {
        match &self.path {
            Some(p) => p.inode().stat(),
            None => self.ops.stat(),
        }
    }

    /// `read` at the description's position (streams have none).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        if self.ops.is_directory() {
            return Err(Errno::EISDIR);
        }
        if !self.ops.own_offset() {
            return self.ops.read(self, buf, None);
        }
        let mut offset = lock(&self.offset);
        let n = self.ops.read(self, buf, Some(*offset))?;
        *offset += n as u64;
        Ok(n)
    }

    /// `write` at the description's position, or at the end with `O_APPEND`.
    pub fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        if !self.ops.own_offset() {
            return self.ops.write(self, buf, None);
        }
        let mut offset = lock(&self.offset);
        if self.flags() & libc::O_APPEND as u32 != 0 {
            *offset = self.stat()?.st_size as u64;
        }
        let n = self.ops.write(self, buf, Some(*offset))?;
        *offset += n as u64;
        Ok(n)
    }

    /// `read`/`pread` straight into application memory (see `FileOps::read_to_memory`), at
    /// `offset` or the description's position; `None` if the file cannot.
    pub fn read_to_memory(
        &self,
        memory: &moat_memory::MemoryFile,
        pieces: &[(u64, usize)],
        offset: Option<u64>,
    ) -> Option<Result<usize, Errno>> {
        if self.ops.is_directory() || !self.ops.own_offset() {
            return None;
        }
        match offset {
            Some(o) => self.ops.read_to_memory(memory, pieces, o),
            None => {
                let mut pos = lock(&self.offset);
                let r = self.ops.read_to_memory(memory, pieces, *pos)?;
                if let Ok(n) = r {
                    *pos += n as u64;
                }
                Some(r)
            }
        }
    }

    /// `write`/`pwrite` straight from application memory (see `FileOps::write_from_memory`),
    /// at `offset` or the description's position (the end with `O_APPEND`); `None` if the
    /// file cannot.
    pub fn write_from_memory(
        &self,
        memory: &moat_memory::MemoryFile,
        pieces: &[(u64, usize)],
        offset: Option<u64>,
    ) -> Option<Result<usize, Errno>> {
        if !self.ops.own_offset() {
            return None;
        }
        match offset {
            Some(o) => self.ops.write_from_memory(memory, pieces, o),
            None => {
                let mut pos = lock(&self.offset);
                if self.flags() & libc::O_APPEND as u32 != 0 {
                    match self.stat() {
                        Ok(st) => *pos = st.st_size as u64,
                        Err(e) => return Some(Err(e)),
                    }
                }
                let r = self.ops.write_from_memory(memory, pieces, *pos)?;
                if let Ok(n) = r {
                    *pos += n as u64;
                }
                Some(r)
            }
        }
    }

    /// `pread`/`pwrite` positions.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        if self.ops.is_directory() {
            return Err(Errno::EISDIR);
        }
        self.ops.read(self, buf, Some(offset))
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        self.ops.write(self, buf, Some(offset))
    }

    /// `lseek`.
    pub fn seek(&self, offset: i64, whence: i32) -> Result<u64, Errno> {
        if !self.ops.seekable() && !self.ops.is_directory() {
            return Err(Errno::ESPIPE);
        }
        if !self.ops.own_offset() && !self.ops.is_directory() {
            return self.ops.host_seek(offset, whence);
        }
        let mut pos = lock(&self.offset);
        let size = || self.stat().map(|s| s.st_size);
        let base: i64 = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => *pos as i64,
            libc::SEEK_END => size()?,
            libc::SEEK_DATA | libc::SEEK_HOLE => {
                // Files here have no holes that matter: all data, one hole at the end.
                let size = size()?;
                if offset < 0 || offset >= size {
                    return Err(Errno::ENXIO);
                }
                let at = if whence == libc::SEEK_DATA {
                    offset
                } else {
                    size
                };
                *pos = at as u64;
                return Ok(at as u64);
            }
            _ => return Err(Errno::EINVAL),
        };
        let new = base
            .checked_add(offset)
            .filter(|&n| n >= 0)
            .ok_or(Errno::EINVAL)?;
        if self.ops.is_directory() && new == 0 {
            *lock(&self.listing) = None;
        }
        *pos = new as u64;
        Ok(new as u64)
    }

    /// The directory position and listing, for `getdents64`.
    pub fn directory_state(&self) -> (MutexGuard<'_, u64>, MutexGuard<'_, Option<Vec<DirEntry>>>) {
        (lock(&self.offset), lock(&self.listing))
    }
}
