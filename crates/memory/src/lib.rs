//! The memory file: every byte of application memory lives in one memfd owned by the kernel.
//!
//! Application mappings are ranges of this file mapped `MAP_SHARED|MAP_FIXED` into the stub
//! process by the platform; the kernel keeps the whole file mapped into its own address space
//! and reads and writes application memory through that mapping (no `process_vm_readv`).
//! The file is sparse: a range costs host memory only once a page of it is touched, and
//! [`MemoryFile::decommit`] punches the pages out again.
//!
//! This crate is one of the three places where Moat uses `unsafe` (with the platform and the
//! ABI): the raw kernel-side mapping is hidden behind bounds-checked copy functions.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Page size of x86-64; every range handed out is page-aligned.
pub const PAGE_SIZE: u64 = 4096;

/// Errors of the memory file.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("creating the memory file: {0}")]
    Create(#[source] std::io::Error),
    #[error("mapping the memory file into the kernel: {0}")]
    Map(#[source] std::io::Error),
    #[error("the memory file is full ({requested} bytes requested)")]
    Exhausted { requested: u64 },
}

/// A page-aligned range of the memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRange {
    pub offset: u64,
    pub len: u64,
}

impl FileRange {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The memory file and the kernel's mapping of it.
pub struct MemoryFile {
    fd: OwnedFd,
    /// Start of the kernel's `MAP_SHARED` mapping of the whole file.
    base: *mut u8,
    size: u64,
    /// Free extents of the file: offset -> length, coalesced.
    free: Mutex<BTreeMap<u64, u64>>,
}

// SAFETY: `base` points to a shared mapping that lives as long as `self`; all access goes
// through copy functions that bounds-check against `size`. Concurrent access to the bytes
// themselves is the application's business, exactly as with real memory.
unsafe impl Send for MemoryFile {}
// SAFETY: as above; the allocator state is behind a Mutex.
unsafe impl Sync for MemoryFile {}

impl MemoryFile {
    /// Create a sparse memory file of `size` bytes (rounded up to pages) and map it.
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        let size = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // SAFETY: memfd_create with a valid NUL-terminated name has no memory-safety preconditions.
        let raw = unsafe { libc::memfd_create(c"moat-memory".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(MemoryError::Create(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on an fd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } < 0 {
            return Err(MemoryError::Create(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh shared mapping of our own file at an address the host chooses; it
        // overlaps nothing of ours.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(MemoryError::Map(std::io::Error::last_os_error()));
        }
        let mut free = BTreeMap::new();
        free.insert(0, size);
        Ok(Self {
            fd,
            base: base.cast(),
            size,
            free: Mutex::new(free),
        })
    }

    /// The host fd of the file, for the platform to map ranges into stubs.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Total size of the file (its address space, not its use).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Allocate `len` bytes (rounded up to pages), first fit from the lowest offset.
    /// The range reads as zeros.
    pub fn allocate(&self, len: u64) -> Result<FileRange, MemoryError> {
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = free.iter().find(|(_, &l)| l >= len).map(|(&o, &l)| (o, l));
        let Some((offset, extent)) = found else {
            return Err(MemoryError::Exhausted { requested: len });
        };
        free.remove(&offset);
        if extent > len {
            free.insert(offset + len, extent - len);
        }
        Ok(FileRange { offset, len })
    }

    /// Return a range to the allocator, releasing its pages to the host.
    pub fn free(&self, range: FileRange) {
        if range.len == 0 {
            return;
        }
        self.decommit(range);
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut offset = range.offset;
        let mut len = range.len;
        // Coalesce with the extent before and after.
        if let Some((&prev, &plen)) = free.range(..offset).next_back() {
            if prev + plen == offset {
                free.remove(&prev);
                offset = prev;
                len += plen;
            }
        }
        if let Some(&nlen) = free.get(&(offset + len)) {
            free.remove(&(offset + len));
            len += nlen;
        }
        free.insert(offset, len);
    }

    /// Drop the contents of a range: its pages go back to the host and read as zeros again,
    /// in every mapping of them (the kernel's and the stubs').
    pub fn decommit(&self, range: FileRange) {
        if range.len == 0 || range.end() > self.size {
            return;
        }
        // SAFETY: fallocate on our own fd; no memory is touched by this call.
        let _ = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                range.offset as libc::off_t,
                range.len as libc::off_t,
            )
        };
    }

    /// Bytes of the file backed by host memory right now.
    pub fn committed_bytes(&self) -> u64 {
        // SAFETY: `st` is a properly sized out-parameter for fstat on our own fd.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(self.fd.as_raw_fd(), &raw mut st) == 0 {
                return st.st_blocks as u64 * 512;
            }
        }
        0
    }

    fn check(&self, offset: u64, len: usize) {
        let end = offset.checked_add(len as u64);
        assert!(
            end.is_some_and(|e| e <= self.size),
            "memory file access out of bounds: {offset:#x}+{len:#x} > {:#x}",
            self.size
        );
    }

    /// Copy bytes out of the file at `offset` into `dst`.
    ///
    /// # Panics
    /// If the range is outside the file: callers translate application addresses through
    /// their own page tables, so this is a kernel bug, never application input.
    pub fn read(&self, offset: u64, dst: &mut [u8]) {
        self.check(offset, dst.len());
        // SAFETY: the source range is inside our live mapping (checked above) and cannot
        // overlap `dst`, a kernel buffer. The application may write the same bytes
        // concurrently from its own mapping; as with real memory, it then gets either value.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(offset as usize),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Copy `src` into the file at `offset`.
    ///
    /// # Panics
    /// If the range is outside the file (a kernel bug, as for [`MemoryFile::read`]).
    pub fn write(&self, offset: u64, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: the destination is inside our live, writable mapping (checked above) and
        // cannot overlap `src`, a kernel buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(offset as usize), src.len());
        }
    }

    /// Fill `len` bytes at `offset` with zeros.
    pub fn zero(&self, offset: u64, len: u64) {
        self.check(offset, len as usize);
        // SAFETY: inside our live, writable mapping (checked above).
        unsafe {
            std::ptr::write_bytes(self.base.add(offset as usize), 0, len as usize);
        }
    }

    /// Copy `len` bytes from one place in the file to another (the ranges may overlap).
    pub fn copy_within(&self, from: u64, to: u64, len: u64) {
        self.check(from, len as usize);
        self.check(to, len as usize);
        // SAFETY: both ranges are inside our live mapping (checked above); `copy` allows overlap.
        unsafe {
            std::ptr::copy(
                self.base.add(from as usize),
                self.base.add(to as usize),
                len as usize,
            );
        }
    }
}

impl Drop for MemoryFile {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` are exactly the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base.cast(), self.size as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_free_coalesces() {
        let mf = MemoryFile::new(16 * PAGE_SIZE).unwrap();
        let a = mf.allocate(PAGE_SIZE).unwrap();
        let b = mf.allocate(2 * PAGE_SIZE).unwrap();
        let c = mf.allocate(PAGE_SIZE).unwrap();
        assert_eq!(
            (a.offset, b.offset, c.offset),
            (0, PAGE_SIZE, 3 * PAGE_SIZE)
        );
        mf.free(b);
        mf.free(a);
        // a and b coalesced: a 3-page request fits at 0.
        assert_eq!(mf.allocate(3 * PAGE_SIZE).unwrap().offset, 0);
        assert!(mf.allocate(64 * PAGE_SIZE).is_err());
    }

    #[test]
    fn decommit_zeroes() {
        let mf = MemoryFile::new(4 * PAGE_SIZE).unwrap();
        let r = mf.allocate(PAGE_SIZE).unwrap();
        mf.write(r.offset + 10, b"hello");
        let mut buf = [0u8; 5];
        mf.read(r.offset + 10, &mut buf);
        assert_eq!(&buf, b"hello");
        mf.decommit(r);
        mf.read(r.offset + 10, &mut buf);
        assert_eq!(buf, [0; 5]);
    }
}
