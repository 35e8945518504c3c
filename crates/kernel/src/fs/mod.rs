//! Open files: the file-description objects behind application fds, and the fd table.
//!
//! Every fd refers to a Moat [`OpenFile`]. The only kind at this stage is the host file that
//! `moat do` donates for stdin, stdout and stderr ([`host::HostFile`]); the VFS comes next.

pub mod fd_table;
pub mod host;

use std::sync::atomic::{AtomicU32, Ordering};

use moat_abi::{Errno, Stat};

use crate::mm::MemoryManager;

pub use fd_table::FdTable;

/// Status flags an application may change with `F_SETFL`.
pub const SETFL_MASK: u32 =
    (libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME) as u32;

/// What a kind of file does. Offsets are `None` for plain `read`/`write` (the file's own
/// position, or none for streams) and `Some` for `pread`/`pwrite`.
pub trait FileOps: Send + Sync {
    fn read(&self, file: &OpenFile, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno>;
    fn write(&self, file: &OpenFile, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno>;
    /// `ioctl`: `mm` is for the argument's memory.
    fn ioctl(
        &self,
        file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno>;
    fn stat(&self) -> Result<Stat, Errno>;
    /// Whether `pread`/`pwrite`/`lseek` make sense (`ESPIPE` otherwise).
    fn seekable(&self) -> bool;
}

/// An open file description: shared by `dup`, with its own status flags.
pub struct OpenFile {
    ops: Box<dyn FileOps>,
    /// Access mode and status flags (`O_RDWR`, `O_APPEND`, `O_NONBLOCK`...).
    flags: AtomicU32,
}

impl OpenFile {
    pub fn new(ops: Box<dyn FileOps>, flags: u32) -> Self {
        Self {
            ops,
            flags: AtomicU32::new(flags),
        }
    }

    pub fn ops(&self) -> &dyn FileOps {
        &*self.ops
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

    pub fn readable(&self) -> bool {
        self.flags() & libc::O_ACCMODE as u32 != libc::O_WRONLY as u32
    }

    pub fn writable(&self) -> bool {
        self.flags() & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
    }
}
