//! The memory file: every byte of application memory lives in one memfd owned by the kernel.
//!
//! Application mappings are ranges of this file mapped `MAP_SHARED|MAP_FIXED` into the stub
//! process by the platform; the kernel keeps the whole file mapped into its own address space
//! and reads and writes application memory through that mapping (no `process_vm_readv`).
//! The file is sparse: a range costs host memory only once a page of it is touched, and
//! [`MemoryFile::decommit`] punches the pages out again.
//!
//! Pages are reference-counted so that address spaces can share them (fork's copy-on-write,
//! `MAP_SHARED` memory inherited by a child): an allocated page has one reference,
//! [`MemoryFile::share`] adds one, [`MemoryFile::free`] drops one, and a page goes back to the
//! allocator (and to the host) only when its last reference is dropped.
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
    /// The sandbox's memory limit ([`MemoryFile::set_limit`]) would be exceeded.
    #[error("the memory limit of {limit} bytes is reached ({requested} bytes requested)")]
    OverLimit { requested: u64, limit: u64 },
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
    /// The most bytes that may be allocated at once (the sandbox's memory limit).
    limit: std::sync::atomic::AtomicU64,
    alloc: Mutex<Alloc>,
}

/// Which pages are free and how often the others are referenced.
///
/// Reference counts are sparse: an allocated page that appears in no `shared` extent has
/// exactly one reference, so allocating and freeing unshared memory never touches `shared`,
/// and sharing a huge range costs one extent, not one entry per page.
struct Alloc {
    /// Free extents of the file: offset -> length, coalesced.
    free: BTreeMap<u64, u64>,
    /// Allocated pages with more than one reference: offset -> (length, count), count >= 2.
    /// Extents never overlap; adjacent extents with the same count are merged.
    shared: BTreeMap<u64, (u64, u64)>,
    /// Bytes handed out and not yet released (the file's size minus the free extents).
    allocated: u64,
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
            limit: std::sync::atomic::AtomicU64::new(u64::MAX),
            alloc: Mutex::new(Alloc {
                free,
                shared: BTreeMap::new(),
                allocated: 0,
            }),
        })
    }

    fn alloc(&self) -> std::sync::MutexGuard<'_, Alloc> {
        self.alloc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The host fd of the file, for the platform to map ranges into stubs.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Total size of the file (its address space, not its use).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bound the bytes allocated at once (the sandbox's memory limit): allocations that would
    /// go past it fail with [`MemoryError::OverLimit`].
    ///
    /// Allocated bytes bound the host memory the file can use, since only allocated pages are
    /// ever populated (a page is punched before it is released): whatever the application
    /// touches later without the kernel seeing it, the file never holds more than this.
    pub fn set_limit(&self, bytes: u64) {
        self.limit
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The limit set by [`MemoryFile::set_limit`] (`u64::MAX` when there is none).
    pub fn limit(&self) -> u64 {
        self.limit.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Allocate `len` bytes (rounded up to pages), first fit from the lowest offset.
    /// The range reads as zeros and its pages have one reference each.
    pub fn allocate(&self, len: u64) -> Result<FileRange, MemoryError> {
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut alloc = self.alloc();
        let limit = self.limit();
        if alloc.allocated.saturating_add(len) > limit {
            return Err(MemoryError::OverLimit {
                requested: len,
                limit,
            });
        }
        let found = alloc
            .free
            .iter()
            .find(|(_, &l)| l >= len)
            .map(|(&o, &l)| (o, l));
        let Some((offset, extent)) = found else {
            return Err(MemoryError::Exhausted { requested: len });
        };
        alloc.free.remove(&offset);
        if extent > len {
            alloc.free.insert(offset + len, extent - len);
        }
        alloc.allocated += len;
        Ok(FileRange { offset, len })
    }

    /// Add a reference to every page of an allocated range (another address space maps it).
    ///
    /// # Panics
    /// If part of the range is not allocated: a kernel bug.
    pub fn share(&self, range: FileRange) {
        if range.len == 0 {
            return;
        }
        let mut alloc = self.alloc();
        self.check_allocated(&alloc, range);
        alloc.share(range.offset, range.end());
    }

    /// Drop a reference to every page of an allocated range. Pages whose last reference this
    /// was go back to the allocator and to the host (they read as zeros when reused); pages
    /// still referenced elsewhere keep their contents.
    ///
    /// # Panics
    /// If part of the range is not allocated (a double free): a kernel bug.
    pub fn free(&self, range: FileRange) {
        if range.len == 0 {
            return;
        }
        let mut alloc = self.alloc();
        self.check_allocated(&alloc, range);
        let released = alloc.unshare(range.offset, range.end());
        for r in released {
            // Punch before the range can be handed out again (still under the lock), so a
            // new owner never sees old contents.
            self.decommit(r);
            alloc.release(r);
        }
    }

    /// Whether any page of `[offset, offset+len)` has more than one reference.
    pub fn is_shared(&self, offset: u64, len: u64) -> bool {
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        let alloc = self.alloc();
        alloc
            .shared
            .range(..end)
            .next_back()
            .is_some_and(|(&s, &(l, _))| s + l > offset)
    }

    /// The number of references to the page at `offset`: 0 if it is free.
    pub fn ref_count(&self, offset: u64) -> u64 {
        let alloc = self.alloc();
        let contains = |m: Option<(&u64, u64)>| m.is_some_and(|(&s, l)| offset < s + l);
        if contains(
            alloc
                .free
                .range(..=offset)
                .next_back()
                .map(|(s, &l)| (s, l)),
        ) {
            return 0;
        }
        match alloc.shared.range(..=offset).next_back() {
            Some((&s, &(l, count))) if offset < s + l => count,
            _ => 1,
        }
    }

    /// Bytes of the file that are allocated (whether or not their pages are populated).
    pub fn allocated_bytes(&self) -> u64 {
        self.alloc().allocated
    }

    fn check_allocated(&self, alloc: &Alloc, range: FileRange) {
        let end = range.offset.checked_add(range.len);
        assert!(
            range.offset % PAGE_SIZE == 0
                && range.len % PAGE_SIZE == 0
                && end.is_some_and(|e| e <= self.size),
            "bad memory file range {range:x?}"
        );
        let end = range.end();
        let overlaps_free = alloc
            .free
            .range(..end)
            .next_back()
            .is_some_and(|(&s, &l)| s + l > range.offset);
        assert!(
            !overlaps_free,
            "memory file range {range:x?} is not allocated"
        );
    }

    /// Drop the contents of a range: its pages go back to the host and read as zeros again,
    /// in every mapping of them (the kernel's and the stubs'), whoever holds references to
    /// them: an address space that shares pages copy-on-write drops its reference instead.
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
        // rustix's fstat is the `fstat` system call itself (glibc's is `newfstatat`, which the
        // kernel process's seccomp allowlist does not need otherwise).
        rustix::fs::fstat(&self.fd).map_or(0, |st| st.st_blocks as u64 * 512)
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

    /// Atomically replace the 32-bit word at `offset` (4-byte aligned) with `f(old)` and
    /// return the old value: application threads may be using the same word with their own
    /// atomic instructions at the same moment (`FUTEX_WAKE_OP`).
    ///
    /// # Panics
    /// If the range is outside the file or misaligned (a kernel bug: callers check).
    pub fn atomic_update_u32(&self, offset: u64, f: impl Fn(u32) -> u32) -> u32 {
        self.check(offset, 4);
        assert!(offset % 4 == 0, "misaligned atomic access at {offset:#x}");
        // SAFETY: the word is inside our live, writable shared mapping (checked above) and
        // 4-byte aligned; every access to it from Moat or the application is atomic or a
        // plain copy, which is how the hardware shares memory between threads anyway.
        let word = unsafe {
            std::sync::atomic::AtomicU32::from_ptr(self.base.add(offset as usize).cast())
        };
        let mut old = word.load(std::sync::atomic::Ordering::SeqCst);
        loop {
            match word.compare_exchange_weak(
                old,
                f(old),
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
            ) {
                Ok(v) => return v,
                Err(v) => old = v,
            }
        }
    }

    /// The 32-bit word at `offset` (4-byte aligned) as an atomic, for words the kernel shares
    /// with a stub through the file (the systrap platform's futex words). Only atomic
    /// operations may touch it; the other side may change it at any moment.
    ///
    /// # Panics
    /// If the word is outside the file or misaligned (a kernel bug: callers check).
    pub fn atomic_u32(&self, offset: u64) -> &std::sync::atomic::AtomicU32 {
        self.check(offset, 4);
        assert!(offset % 4 == 0, "misaligned atomic access at {offset:#x}");
        // SAFETY: the word is inside our live, writable shared mapping (checked above), which
        // lasts as long as `self` (the lifetime of the reference), and 4-byte aligned. Other
        // processes may access it concurrently, with atomic instructions or plain moves;
        // hardware keeps aligned 32-bit accesses whole, so every access through this
        // reference is atomic as Rust requires.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.base.add(offset as usize).cast()) }
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
    /// Read up to `len` bytes of host file `fd` at `pos` straight into the file at `offset`
    /// (one copy, by the host); returns the count, 0 at the end of the file.
    ///
    /// # Panics
    /// If the range is outside the file (a kernel bug, as for [`MemoryFile::read`]).
    pub fn read_from_fd(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        pos: u64,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        self.host_io(offset, len, |at| {
            // SAFETY: `at` is `len` writable bytes of our live mapping (`host_io` checked);
            // the host writes them and no Rust reference to them exists.
            unsafe { libc::pread(fd.as_raw_fd(), at.cast(), len, pos as libc::off_t) }
        })
    }

    /// Write `len` bytes of the file at `offset` to host file `fd` at `pos` (one copy, by the
    /// host); returns the count written.
    ///
    /// # Panics
    /// If the range is outside the file (a kernel bug, as for [`MemoryFile::read`]).
    pub fn write_to_fd(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        pos: u64,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        self.host_io(offset, len, |at| {
            // SAFETY: `at` is `len` readable bytes of our live mapping (`host_io` checked);
            // the host only reads them.
            unsafe { libc::pwrite(fd.as_raw_fd(), at.cast(), len, pos as libc::off_t) }
        })
    }

    /// A host read or write of `[offset, offset+len)` of the mapping, retried on `EINTR`.
    fn host_io(
        &self,
        offset: u64,
        len: usize,
        io: impl Fn(*mut u8) -> isize,
    ) -> std::io::Result<usize> {
        self.check(offset, len);
        // SAFETY: inside our live mapping (checked above).
        let at = unsafe { self.base.add(offset as usize) };
        loop {
            let n = io(at);
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }

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

impl MemoryFile {
    /// Copy the populated pages of `[from, from+len)` to `to`, whose range must read as zeros
    /// (freshly allocated). Holes are skipped, so they stay holes on both sides: copying a
    /// sparse range neither populates the source nor commits memory for the copy.
    ///
    /// Pages are probed one by one with `SEEK_DATA`, which answers at once on a populated page
    /// and skips a hole quickly; `SEEK_HOLE` would be fewer calls but walks every populated
    /// page after the offset up to the next hole, however far past `len` that is.
    ///
    /// `from`, `to` and `len` are page-aligned.
    pub fn copy_populated(&self, from: u64, to: u64, len: u64) {
        debug_assert!((from | to | len) % PAGE_SIZE == 0, "unaligned copy");
        self.check(from, len as usize);
        self.check(to, len as usize);
        let end = from + len;
        let mut next = self.seek(from, libc::SEEK_DATA);
        loop {
            let data = match next {
                Ok(d) => d.max(from) / PAGE_SIZE * PAGE_SIZE,
                // Nothing but holes from here to the end of the file.
                Err(libc::ENXIO) => return,
                // lseek cannot tell: copy it all (correct, only less frugal; what was copied
                // already is copied again, unchanged).
                Err(_) => return self.copy_within(from, to, len),
            };
            if data >= end {
                return;
            }
            // Extend over the populated pages that follow.
            let mut run_end = data + PAGE_SIZE;
            while run_end < end {
                next = self.seek(run_end, libc::SEEK_DATA);
                if next != Ok(run_end) {
                    break;
                }
                run_end += PAGE_SIZE;
            }
            let run_end = run_end.min(end);
            self.copy_within(data, to + (data - from), run_end - data);
            if run_end >= end {
                return;
            }
        }
    }

    /// `lseek(fd, offset, whence)` for `SEEK_DATA`/`SEEK_HOLE`; the errno on failure.
    fn seek(&self, offset: u64, whence: libc::c_int) -> Result<u64, i32> {
        // SAFETY: lseek on our own fd touches no memory. Stubs share the file description,
        // but only ever map it, so moving its offset affects nobody; the result is taken
        // from the return value, so concurrent callers do not disturb each other.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), offset as libc::off_t, whence) };
        u64::try_from(r).map_err(|_| {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        })
    }
}

impl Alloc {
    /// Split the shared extent that straddles `at`, so that `at` starts an extent.
    fn split_shared(&mut self, at: u64) {
        if let Some((&s, &(len, count))) = self.shared.range(..at).next_back() {
            if s + len > at {
                self.shared.insert(s, (at - s, count));
                self.shared.insert(at, (s + len - at, count));
            }
        }
    }

    /// Merge adjacent shared extents with equal counts in and around `[start, end]`.
    fn merge_shared(&mut self, start: u64, end: u64) {
        let lo = self
            .shared
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.shared.range(lo..=end).map(|(&s, _)| s).collect();
        let mut cur: Option<u64> = None;
        for s in keys {
            let (len, count) = self.shared[&s];
            if let Some(c) = cur {
                let (clen, ccount) = self.shared[&c];
                if c + clen == s && ccount == count {
                    self.shared.remove(&s);
                    self.shared.insert(c, (clen + len, count));
                    continue;
                }
            }
            cur = Some(s);
        }
    }

    /// Add one reference to every page of `[start, end)`.
    fn share(&mut self, start: u64, end: u64) {
        self.split_shared(start);
        self.split_shared(end);
        let extents: Vec<(u64, u64)> = self
            .shared
            .range(start..end)
            .map(|(&s, &(l, _))| (s, l))
            .collect();
        let mut cursor = start;
        for (s, l) in extents {
            if s > cursor {
                // Pages with the implicit single reference now have two.
                self.shared.insert(cursor, (s - cursor, 2));
            }
            self.shared.get_mut(&s).expect("extent").1 += 1;
            cursor = s + l;
        }
        if cursor < end {
            self.shared.insert(cursor, (end - cursor, 2));
        }
        self.merge_shared(start, end);
    }

    /// Drop one reference to every page of `[start, end)`; returns the ranges whose last
    /// reference this was.
    fn unshare(&mut self, start: u64, end: u64) -> Vec<FileRange> {
        self.split_shared(start);
        self.split_shared(end);
        let extents: Vec<(u64, u64)> = self
            .shared
            .range(start..end)
            .map(|(&s, &(l, _))| (s, l))
            .collect();
        let mut released = Vec::new();
        let mut cursor = start;
        for (s, l) in extents {
            if s > cursor {
                released.push(FileRange {
                    offset: cursor,
                    len: s - cursor,
                });
            }
            let count = &mut self.shared.get_mut(&s).expect("extent").1;
            *count -= 1;
            if *count == 1 {
                self.shared.remove(&s);
            }
            cursor = s + l;
        }
        if cursor < end {
            released.push(FileRange {
                offset: cursor,
                len: end - cursor,
            });
        }
        self.merge_shared(start, end);
        released
    }

    /// Return a range to the free extents, coalescing with its neighbours.
    fn release(&mut self, range: FileRange) {
        self.allocated -= range.len;
        let mut offset = range.offset;
        let mut len = range.len;
        if let Some((&prev, &plen)) = self.free.range(..offset).next_back() {
            if prev + plen == offset {
                self.free.remove(&prev);
                offset = prev;
                len += plen;
            }
        }
        if let Some(nlen) = self.free.remove(&(offset + len)) {
            len += nlen;
        }
        self.free.insert(offset, len);
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

    const P: u64 = PAGE_SIZE;

    fn range(offset: u64, len: u64) -> FileRange {
        FileRange { offset, len }
    }

    fn counts(mf: &MemoryFile, pages: u64) -> Vec<u64> {
        (0..pages).map(|i| mf.ref_count(i * P)).collect()
    }

    fn extents(mf: &MemoryFile) -> Vec<(u64, u64, u64)> {
        let alloc = mf.alloc();
        alloc.shared.iter().map(|(&s, &(l, c))| (s, l, c)).collect()
    }

    #[test]
    fn share_counts_pages_with_partial_overlaps() {
        let mf = MemoryFile::new(16 * P).unwrap();
        let r = mf.allocate(8 * P).unwrap();
        assert_eq!(counts(&mf, 9), [1, 1, 1, 1, 1, 1, 1, 1, 0]);
        assert!(!mf.is_shared(0, 8 * P));
        mf.share(range(2 * P, 4 * P));
        mf.share(range(4 * P, 3 * P));
        mf.share(r);
        assert_eq!(counts(&mf, 9), [2, 2, 3, 3, 4, 4, 3, 2, 0]);
        assert!(mf.is_shared(7 * P, P));
        // Extents with the same count merge; different counts stay apart.
        assert_eq!(
            extents(&mf),
            vec![
                (0, 2 * P, 2),
                (2 * P, 2 * P, 3),
                (4 * P, 2 * P, 4),
                (6 * P, P, 3),
                (7 * P, P, 2)
            ]
        );
        // Dropping the whole-range reference takes every page down by one.
        mf.free(r);
        assert_eq!(counts(&mf, 8), [1, 1, 2, 2, 3, 3, 2, 1]);
        assert!(!mf.is_shared(0, 2 * P) && mf.is_shared(P, 2 * P));
        mf.free(range(2 * P, 4 * P));
        mf.free(range(4 * P, 3 * P));
        assert_eq!(counts(&mf, 8), [1; 8]);
        assert!(
            extents(&mf).is_empty(),
            "no extent left for single references"
        );
        assert_eq!(mf.allocated_bytes(), 8 * P, "nothing was freed yet");
    }

    #[test]
    fn free_of_a_sub_range_releases_only_unshared_pages() {
        let mf = MemoryFile::new(16 * P).unwrap();
        mf.allocate(6 * P).unwrap();
        mf.write(0, b"first");
        mf.write(3 * P, b"shared");
        mf.share(range(2 * P, 2 * P));
        // Free pages 1..5: pages 1 and 4 go back, 2 and 3 lose one reference.
        mf.free(range(P, 4 * P));
        assert_eq!(counts(&mf, 7), [1, 0, 1, 1, 0, 1, 0]);
        let mut buf = [0u8; 6];
        mf.read(3 * P, &mut buf);
        assert_eq!(
            &buf, b"shared",
            "a page still referenced keeps its contents"
        );
        // The freed single pages are reused, first fit, and read as zeros.
        let a = mf.allocate(P).unwrap();
        assert_eq!(a.offset, P);
        let b = mf.allocate(P).unwrap();
        assert_eq!(b.offset, 4 * P);
        // The rest: drop the remaining references; the file is empty again.
        mf.free(range(0, P));
        mf.free(range(2 * P, 2 * P));
        mf.free(range(5 * P, P));
        mf.free(a);
        mf.free(b);
        assert_eq!(mf.allocated_bytes(), 0);
        assert_eq!(mf.allocate(16 * P).unwrap().offset, 0, "all coalesced");
    }

    #[test]
    fn reuse_after_final_free_reads_zeros() {
        let mf = MemoryFile::new(4 * P).unwrap();
        let r = mf.allocate(2 * P).unwrap();
        mf.write(P, b"data");
        mf.share(r);
        mf.free(r);
        assert_eq!(mf.ref_count(P), 1);
        assert!(
            mf.allocate(4 * P).is_err(),
            "still allocated after one free"
        );
        mf.free(r);
        assert_eq!(mf.ref_count(P), 0);
        let again = mf.allocate(2 * P).unwrap();
        assert_eq!(again, r);
        let mut buf = [1u8; 4];
        mf.read(P, &mut buf);
        assert_eq!(buf, [0; 4], "the last free punched the pages");
    }

    #[test]
    fn sharing_a_huge_range_is_one_extent() {
        let mf = MemoryFile::new(1 << 36).unwrap();
        let r = mf.allocate(1 << 35).unwrap();
        mf.share(r);
        mf.share(range(1 << 34, 1 << 20));
        assert_eq!(extents(&mf).len(), 3);
        mf.free(r);
        mf.free(range(1 << 34, 1 << 20));
        assert!(extents(&mf).is_empty());
        mf.free(r);
        assert_eq!(mf.allocated_bytes(), 0);
    }

    #[test]
    #[should_panic(expected = "not allocated")]
    fn double_free_is_caught() {
        let mf = MemoryFile::new(4 * P).unwrap();
        let r = mf.allocate(P).unwrap();
        mf.free(r);
        mf.free(r);
    }

    #[test]
    fn copy_populated_skips_holes() {
        let mf = MemoryFile::new(64 * P).unwrap();
        let src = mf.allocate(20 * P).unwrap();
        // Populated: page 0, pages 3-5, page 15 (the last one copied), pages 16-19 (after).
        mf.write(src.offset + 1, b"zero");
        for i in 3..6 {
            mf.write(src.offset + i * P + 7, &[i as u8; 5]);
        }
        mf.write(src.offset + 16 * P - 4, b"last");
        mf.write(src.offset + 16 * P, &[9; 4 * P as usize]);
        let before = mf.committed_bytes();
        assert_eq!(before, 9 * P);
        let dst = mf.allocate(16 * P).unwrap();
        mf.copy_populated(src.offset, dst.offset, 16 * P);
        assert_eq!(
            mf.committed_bytes(),
            before + 5 * P,
            "only the five populated pages were copied"
        );
        let mut buf = [0u8; 5];
        mf.read(dst.offset + 1, &mut buf[..4]);
        assert_eq!(&buf[..4], b"zero");
        for i in 3..6 {
            mf.read(dst.offset + i * P + 7, &mut buf);
            assert_eq!(buf, [i as u8; 5]);
        }
        mf.read(dst.offset + 16 * P - 4, &mut buf[..4]);
        assert_eq!(&buf[..4], b"last");
        // Nothing past the copied range was touched, nor the holes.
        assert_eq!(mf.ref_count(dst.end()), 0);
        mf.read(dst.offset + 10 * P, &mut buf);
        assert_eq!(buf, [0; 5]);
        // A range with no data at all copies nothing.
        let empty = mf.allocate(4 * P).unwrap();
        let other = mf.allocate(4 * P).unwrap();
        let committed = mf.committed_bytes();
        mf.copy_populated(empty.offset, other.offset, 4 * P);
        assert_eq!(mf.committed_bytes(), committed);
    }

    #[test]
    fn the_limit_bounds_allocated_bytes() {
        let mf = MemoryFile::new(64 * P).unwrap();
        mf.set_limit(8 * P);
        let a = mf.allocate(6 * P).unwrap();
        assert!(matches!(
            mf.allocate(3 * P),
            Err(MemoryError::OverLimit { requested, limit }) if requested == 3 * P && limit == 8 * P
        ));
        let b = mf.allocate(2 * P).unwrap();
        assert_eq!(mf.allocated_bytes(), 8 * P);
        // Shared pages count once, as a memory cgroup charges a page once.
        mf.share(a);
        assert_eq!(mf.allocated_bytes(), 8 * P);
        mf.free(a);
        assert!(mf.allocate(P).is_err(), "a is still referenced");
        mf.free(a);
        mf.free(b);
        assert_eq!(mf.allocated_bytes(), 0);
        assert!(mf.allocate(8 * P).is_ok());
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
