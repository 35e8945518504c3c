//! The page cache of a volume's file while it is mapped `MAP_SHARED`.
//!
//! Application memory lives in the memory file (DESIGN.md §4), so a shared mapping of a host
//! file needs the file's bytes there: the first `MAP_SHARED` mapping of a file on a writable
//! volume copies the file into a tmpfs file of the memory file, and every mapping of it then
//! shares those pages (as a tmpfs file's mappings do). While the cache exists the file's
//! `read`s come from it and `write`s go to it *and* to the host (write-through), so the
//! mappings, the system calls and other processes agree; what the application writes through
//! a mapping reaches the host file when it is written back: at `fsync`/`fdatasync`, when an
//! open file of it is closed, and when the sandbox forgets the file. Changes the host makes
//! to the file meanwhile are not seen (the sandbox's copy wins), as with gVisor's cached mode.

use std::sync::{Arc, Mutex};

use moat_abi::Errno;
use moat_gofer::GoferClient;
use moat_memory::MemoryFile;

use super::tmpfs::{Tmpfs, TmpfsInode};
use crate::process::Guard;
use crate::vfs::{Inode, NewNode, SetAttr};

/// Bytes copied at a time between the host file and the cache.
const CHUNK: usize = 1 << 20;

/// A file's cache slot, shared by its inode and its open files.
pub struct CacheCell {
    memory: Arc<MemoryFile>,
    client: Arc<GoferClient>,
    fid: u64,
    cache: Mutex<Option<Arc<TmpfsInode>>>,
}

impl CacheCell {
    pub fn new(memory: Arc<MemoryFile>, client: Arc<GoferClient>, fid: u64) -> CacheCell {
        CacheCell {
            memory,
            client,
            fid,
            cache: Mutex::new(None),
        }
    }

    /// The cache, if the file is being shared.
    pub fn get(&self) -> Option<Arc<TmpfsInode>> {
        self.cache.guard().clone()
    }

    /// The cache, made from the host file's bytes if there is none yet.
    pub fn get_or_fill(&self) -> Result<Arc<TmpfsInode>, Errno> {
        let mut slot = self.cache.guard();
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let root = Tmpfs::new_root_in(self.memory.clone(), 0o700, 0, 0);
        let file = root
            .create(b"cache", &NewNode::File { mode: 0o600 }, 0, 0)?
            .into_any()
            .downcast::<TmpfsInode>()
            .map_err(|_| Errno::EIO)?;
        let fd = self
            .client
            .open(self.fid, libc::O_RDONLY as u32)
            .map_err(Errno)?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0u64;
        loop {
            let n = match rustix::io::pread(&fd, &mut buf, offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Errno(e.raw_os_error())),
            };
            file.write_at(&buf[..n], offset)?;
            offset += n as u64;
        }
        *slot = Some(file.clone());
        Ok(file)
    }

    /// Resize the cache with the file (`ftruncate`).
    pub fn truncate(&self, size: u64) -> Result<(), Errno> {
        if let Some(c) = self.get() {
            c.setattr(&SetAttr {
                size: Some(size),
                ..SetAttr::default()
            })?;
        }
        Ok(())
    }

    /// The cached size, if cached.
    pub fn size(&self) -> Option<u64> {
        self.get()
            .and_then(|c| c.stat().ok())
            .map(|st| st.st_size as u64)
    }

    /// Write the cache back to the host file (its bytes and its size).
    pub fn write_back(&self) -> Result<(), Errno> {
        let Some(cache) = self.get() else {
            return Ok(());
        };
        let size = self.size().unwrap_or(0);
        let fd = self
            .client
            .open(self.fid, libc::O_WRONLY as u32)
            .map_err(Errno)?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0u64;
        while offset < size {
            let n = cache.read_at(&mut buf, offset);
            if n == 0 {
                break;
            }
            let mut done = 0;
            while done < n {
                match rustix::io::pwrite(&fd, &buf[done..n], offset + done as u64) {
                    Ok(w) => done += w,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(Errno(e.raw_os_error())),
                }
            }
            offset += n as u64;
        }
        rustix::fs::ftruncate(&fd, size).map_err(|e| Errno(e.raw_os_error()))
    }
}

/// Write back, logging a failure (for callers that have no one to report it to).
pub fn write_back_logged(cell: &CacheCell) {
    if let Err(e) = cell.write_back() {
        tracing::warn!("writing a shared mapping's pages back to its host file: {e:?}");
    }
}
