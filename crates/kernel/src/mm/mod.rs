//! An application address space as the kernel keeps it: the VMAs (what the application asked
//! for) and the PMAs (which ranges of the memory file back them, mapped into the stub).
//!
//! Memory is populated lazily: a VMA starts with no backing; the first fault or kernel access
//! in it allocates a window of the memory file (sparse, so untouched pages cost nothing) and
//! maps it into the stub. The kernel reads and writes application memory through its own
//! mapping of the memory file, after checking the VMA's protection: a bad pointer is `EFAULT`.
//!
//! `fork` shares the memory-file pages between parent and child and makes private memory
//! copy-on-write on both sides (`cow.rs`).

mod cow;
mod patch;
mod vma;

use std::collections::BTreeMap;
use std::sync::Arc;

use moat_abi::Errno;
use moat_memory::MemoryFile;
use moat_platform::{AddressSpace, Prot, USER_MAX, USER_MIN};
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub use patch::SiteFault;
pub use vma::{Vma, VmaKind};

/// Page size.
pub const PAGE: u64 = 4096;
/// How much the kernel populates around a fault (sparse: only touched pages use memory).
const FAULT_WINDOW: u64 = 2 << 20;
/// [`MemoryManager::prefault`]: at most this much of a new mapping is populated at once (the
/// caller may ask for less); an
/// anonymous mapping only if it is no larger than `PREFAULT_ANON_MAX` (its pages are
/// accounted), and a writable private file mapping gets its own copies at once only if it
/// is no larger than `PREFAULT_COPY_MAX` (a program's or library's data, which its start
/// writes: relocations).
const PREFAULT_MAX: u64 = FAULT_WINDOW;
const PREFAULT_ANON_MAX: u64 = 64 << 10;
const PREFAULT_COPY_MAX: u64 = 64 << 10;

/// Round up to a page; `None` on overflow.
pub fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1))
}

pub fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// A populated range: `[start, end)` of the address space is backed by the memory file at
/// `offset` and mapped in the stub with [`Pma::host_prot`].
///
/// A PMA always lies inside one VMA (PMAs are created per VMA, split with them, and never
/// merged across a VMA boundary), so the VMA at its start says what kind of memory it is.
#[derive(Clone, Copy, Debug)]
struct Pma {
    end: u64,
    offset: u64,
    /// The protection the application asked for (its VMA's).
    prot: Prot,
    /// Copy-on-write: the pages may be shared with another address space (after `fork`) and
    /// must be copied before this one writes to them, so the stub maps them without write.
    cow: bool,
}

impl Pma {
    /// The memory-file range behind the PMA that starts at `start`.
    fn file_range(&self, start: u64) -> moat_memory::FileRange {
        moat_memory::FileRange {
            offset: self.offset,
            len: self.end - start,
        }
    }

    /// The protection of the stub's mapping: without write while copy-on-write, so that a
    /// write faults (`SEGV_ACCERR`) and the kernel copies first.
    fn host_prot(&self) -> Prot {
        if self.cow {
            self.prot.without_write()
        } else {
            self.prot
        }
    }
}

/// What became of a page fault the kernel was asked to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The page is there now: retry the instruction.
    Resolved,
    /// A real fault of the application (a signal for it).
    Unresolved,
    /// The page cannot be supplied: the sandbox is at its memory limit.
    OutOfMemory,
}

impl Fault {
    pub fn resolved(self) -> bool {
        self == Fault::Resolved
    }
}

/// Where a new mapping may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Anywhere; the address is a hint.
    Hint(u64),
    /// Exactly here, replacing what is there (`MAP_FIXED`).
    Fixed(u64),
    /// Exactly here, failing with `EEXIST` if anything is there (`MAP_FIXED_NOREPLACE`).
    FixedNoReplace(u64),
}

/// Where a file mapping's pages come from: the file's own memory-file pages (a tmpfs file's
/// pages, or the page cache of a host file), each handed out with a reference for the
/// mapping. A private mapping maps them copy-on-write; a shared one as they are.
pub trait PageSource: Send + Sync {
    /// The pages behind `count` pages of the file from page `first`, each with one more
    /// reference (the caller's); `None` for pages wholly past the end of the file.
    fn share_pages(&self, first: u64, count: u64) -> Result<Vec<Option<u64>>, Errno>;

    /// Copy the file's bytes at `offset` into `buf` from its pages (the loader reading an
    /// executable's headers without opening it): how many (0 at the end of the file), or
    /// `None` if this source does not read.
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> Option<Result<usize, Errno>> {
        None
    }
}

/// The runs of `pages` that are contiguous in the memory file, as (index of the run's first
/// page, its memory-file offset, page count); `None` pages belong to no run. A run is one PMA,
/// one host mapping, one reference-count update.
pub fn contiguous_runs(pages: &[Option<u64>]) -> Vec<(usize, u64, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < pages.len() {
        let Some(first) = pages[i] else {
            i += 1;
            continue;
        };
        let mut n = 1;
        while pages.get(i + n) == Some(&Some(first + n as u64 * PAGE)) {
            n += 1;
        }
        runs.push((i, first, n));
        i += n;
    }
    runs
}

/// A file as an `mmap` of it sees it.
#[derive(Clone)]
pub struct MappedFile {
    /// The file's identity for `/proc/PID/maps`.
    pub dev: u64,
    pub ino: u64,
    /// The file offset of the mapping's first byte.
    pub offset: u64,
    pub pages: Arc<dyn PageSource>,
}

/// The end of a named range and the name (an absolute path).
type MappingName = (u64, Arc<[u8]>);

/// The kernel's view of one address space.
///
/// The tables (VMAs, PMAs) are the truth; the platform address space mirrors the PMAs. A
/// manager may be *detached* (no platform address space yet: a forked child before the host
/// thread that will run it has made its stub): it works as usual, only nothing is mapped
/// anywhere until [`MemoryManager::attach`] maps every PMA at once.
pub struct MemoryManager {
    /// The names `/proc/PID/maps` shows for ranges mapped from files (the program, its
    /// interpreter, mmap'd files): start -> (end, absolute path).
    names: BTreeMap<u64, MappingName>,
    /// The page sources of file mappings, by the key their VMAs name them with.
    page_sources: std::collections::HashMap<u64, Arc<dyn PageSource>>,
    memory: Arc<MemoryFile>,
    aspace: Option<Box<dyn AddressSpace>>,
    vmas: BTreeMap<u64, Vma>,
    pmas: BTreeMap<u64, Pma>,
    /// Top of the area where mappings without a fixed address go (they grow down from here).
    pub mmap_base: u64,
    /// Start of the heap (`brk` never goes below it) and the current break.
    pub brk_start: u64,
    pub brk: u64,
    /// `RLIMIT_AS` and `RLIMIT_DATA`, kept current by `setrlimit`.
    pub limit_as: u64,
    pub limit_data: u64,
    /// Dropped only after [`Drop`] has given every page back: whoever waits for this address
    /// space's memory to return (the OOM killer, [`MemoryManager::released`]) watches it.
    alive: Arc<()>,
    /// Patched system call sites (`patch.rs`).
    patches: patch::Patches,
}

impl MemoryManager {
    /// An empty address space mirrored into `aspace`.
    pub fn new(memory: Arc<MemoryFile>, aspace: Box<dyn AddressSpace>) -> Self {
        let mut mm = Self::new_detached(memory);
        mm.aspace = Some(aspace);
        mm
    }

    /// An empty address space without a platform address space (see [`MemoryManager::attach`]).
    pub fn new_detached(memory: Arc<MemoryFile>) -> Self {
        Self {
            memory,
            aspace: None,
            vmas: BTreeMap::new(),
            pmas: BTreeMap::new(),
            names: BTreeMap::new(),
            page_sources: std::collections::HashMap::new(),
            mmap_base: USER_MAX,
            brk_start: 0,
            brk: 0,
            limit_as: u64::MAX,
            limit_data: u64::MAX,
            alive: Arc::new(()),
            patches: patch::Patches::default(),
        }
    }

    /// Something that tells when this address space's pages are back in the memory file:
    /// the weak reference dies once the manager is dropped and has freed them.
    pub fn released(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.alive)
    }

    /// The VMAs, in address order.
    pub fn vmas(&self) -> impl Iterator<Item = (u64, &Vma)> {
        self.vmas.iter().map(|(&s, v)| (s, v))
    }

    /// The VMA containing `addr`.
    pub fn find_vma(&self, addr: u64) -> Option<(u64, &Vma)> {
        let (&start, vma) = self.vmas.range(..=addr).next_back()?;
        (addr < vma.end).then_some((start, vma))
    }

    /// Total size of all mappings.
    pub fn total_size(&self) -> u64 {
        self.vmas.iter().map(|(s, v)| v.end - s).sum()
    }

    fn is_free(&self, start: u64, end: u64) -> bool {
        if start < USER_MIN || end > USER_MAX || start >= end {
            return false;
        }
        match self.vmas.range(..end).next_back() {
            Some((_, v)) => v.end <= start,
            None => true,
        }
    }

    /// Find room for `len` bytes: the highest gap below `mmap_base`, then any gap above it.
    fn find_free(&self, len: u64) -> Option<u64> {
        let mut top = self.mmap_base;
        for (&start, vma) in self.vmas.range(..self.mmap_base).rev() {
            if vma.end <= top && top - vma.end >= len {
                return Some(top - len);
            }
            top = top.min(start);
        }
        if top >= USER_MIN + len {
            return Some(top - len);
        }
        let mut bottom = self.mmap_base;
        for (&start, vma) in self.vmas.range(self.mmap_base..) {
            if start >= bottom && start - bottom >= len {
                return Some(bottom);
            }
            bottom = bottom.max(vma.end);
        }
        (USER_MAX.checked_sub(bottom)? >= len).then_some(bottom)
    }

    /// A free range of `len` bytes where a mapping without a fixed address would go.
    pub fn find_space(&self, len: u64) -> Option<u64> {
        self.find_free(len)
    }

    /// Create an anonymous mapping; returns its address. `len` must be page-aligned, nonzero.
    pub fn map_anonymous(
        &mut self,
        place: Placement,
        len: u64,
        prot: Prot,
        kind: VmaKind,
    ) -> Result<u64, Errno> {
        let start = self.choose_start(place, len)?;
        self.insert_vma(start, len, prot, kind)?;
        Ok(start)
    }

    /// Where a new mapping of `len` bytes goes (`len` page-aligned, nonzero).
    fn choose_start(&self, place: Placement, len: u64) -> Result<u64, Errno> {
        debug_assert!(len > 0 && len % PAGE == 0);
        Ok(match place {
            Placement::Fixed(a) | Placement::FixedNoReplace(a) => {
                let end = a.checked_add(len).ok_or(Errno::ENOMEM)?;
                if a < USER_MIN || end > USER_MAX {
                    return Err(Errno::ENOMEM);
                }
                if matches!(place, Placement::FixedNoReplace(_)) && !self.is_free(a, end) {
                    return Err(Errno::EEXIST);
                }
                a
            }
            Placement::Hint(h) => {
                let h = page_down(h);
                if h != 0 && h.checked_add(len).is_some_and(|e| self.is_free(h, e)) {
                    h
                } else {
                    self.find_free(len).ok_or(Errno::ENOMEM)?
                }
            }
        })
    }

    /// Replace whatever is at `[start, start+len)` with a new VMA (nothing populated).
    fn insert_vma(&mut self, start: u64, len: u64, prot: Prot, kind: VmaKind) -> Result<(), Errno> {
        let end = start + len;
        let replaced = self.overlap_size(start, end);
        if self.total_size() - replaced + len > self.limit_as {
            return Err(Errno::ENOMEM);
        }
        self.remove_range(start, end)?;
        self.vmas.insert(start, Vma { end, prot, kind });
        self.merge_around(start, end);
        Ok(())
    }

    /// Keep `pages` for file VMAs; returns the key their [`VmaKind`] names it by (the same
    /// for every mapping of the same source, so that such VMAs can merge).
    fn add_page_source(&mut self, pages: &Arc<dyn PageSource>) -> u64 {
        let key = Arc::as_ptr(pages).cast::<()>() as usize as u64;
        self.page_sources
            .entry(key)
            .or_insert_with(|| pages.clone());
        key
    }

    /// Forget page sources no VMA names any more (after an unmap), so that a file's pages
    /// are not kept alive by an address space that no longer maps it.
    fn prune_page_sources(&mut self) {
        if self.page_sources.is_empty() {
            return;
        }
        let used: std::collections::HashSet<u64> =
            self.vmas.values().filter_map(|v| v.kind.source()).collect();
        self.page_sources.retain(|k, _| used.contains(k));
    }

    /// `mmap(MAP_PRIVATE)` of a file: its pages are the file's own (its page cache), mapped
    /// copy-on-write as they are first touched, so that many processes mapping a library
    /// share one copy and a write gives the writer its own page. Nothing is read or copied
    /// here.
    pub fn map_private_file(
        &mut self,
        place: Placement,
        len: u64,
        prot: Prot,
        file: &MappedFile,
    ) -> Result<u64, Errno> {
        let start = self.choose_start(place, len)?;
        let source = self.add_page_source(&file.pages);
        let kind = VmaKind::File {
            dev: file.dev,
            ino: file.ino,
            base: file.offset.wrapping_sub(start),
            source,
        };
        let result = self.insert_vma(start, len, prot, kind);
        if result.is_err() {
            self.prune_page_sources();
        }
        result.map(|()| start)
    }

    fn overlap_size(&self, start: u64, end: u64) -> u64 {
        self.vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(&s, v)| v.end.min(end) - s.max(start))
            .sum()
    }

    /// Split the VMA and PMA that straddle `addr`, so that `addr` starts an entry.
    fn split_at(&mut self, addr: u64) {
        if let Some((&s, v)) = self.vmas.range(..addr).next_back() {
            if v.end > addr {
                let mut tail = *v;
                tail.end = v.end;
                self.vmas.get_mut(&s).expect("vma").end = addr;
                self.vmas.insert(addr, tail);
            }
        }
        self.split_pma_at(addr);
    }

    /// Split the PMA that straddles `addr` (only the PMA).
    fn split_pma_at(&mut self, addr: u64) {
        if let Some((&s, p)) = self.pmas.range(..addr).next_back() {
            if p.end > addr {
                let tail = Pma {
                    offset: p.offset + (addr - s),
                    ..*p
                };
                self.pmas.get_mut(&s).expect("pma").end = addr;
                self.pmas.insert(addr, tail);
            }
        }
    }

    /// Atomically update the 32-bit word at `addr` (4-byte aligned, writable) with `f`,
    /// returning the old value (`FUTEX_WAKE_OP`).
    pub fn atomic_update_u32(&mut self, addr: u64, f: impl Fn(u32) -> u32) -> Result<u32, Errno> {
        if addr % 4 != 0 {
            return Err(Errno::EINVAL);
        }
        self.check_access(addr, 4, true)?;
        let (s, p) = self.pma_at(addr).ok_or(Errno::EFAULT)?;
        Ok(self.memory.atomic_update_u32(p.offset + (addr - s), f))
    }

    /// Map `len` bytes of a file's own memory-file pages (`MAP_SHARED` of a file).
    /// `pages[i]` backs page `i` (each already carries a reference for this mapping); `None`
    /// pages lie past the file's end and stay unmapped (an access is `SIGBUS` unless the file
    /// has grown by then: `file.pages` supplies pages later).
    pub fn map_shared_file(
        &mut self,
        place: Placement,
        len: u64,
        prot: Prot,
        file: &MappedFile,
        pages: &[Option<u64>],
    ) -> Result<u64, Errno> {
        let placed = self.choose_start(place, len).and_then(|start| {
            let source = self.add_page_source(&file.pages);
            let kind = VmaKind::SharedFile {
                dev: file.dev,
                ino: file.ino,
                base: file.offset.wrapping_sub(start),
                source,
            };
            self.insert_vma(start, len, prot, kind).map(|()| start)
        });
        debug_assert_eq!(pages.len() as u64, len / PAGE);
        let start = match placed {
            Ok(s) => s,
            Err(e) => {
                self.prune_page_sources();
                for off in pages.iter().flatten() {
                    self.memory.free(moat_memory::FileRange {
                        offset: *off,
                        len: PAGE,
                    });
                }
                return Err(e);
            }
        };
        if let Err(e) = self.map_pages(start, pages, prot, false) {
            let _ = self.unmap(start, len);
            return Err(e);
        }
        self.merge_around(start, start + len);
        Ok(start)
    }

    /// Map `pages` (each carrying one reference for this address space; `None` stays
    /// unmapped) from `start`, where nothing is mapped yet: runs contiguous in the memory
    /// file become one PMA and one host mapping. On failure the pages not mapped lose their
    /// reference again.
    fn map_pages(
        &mut self,
        start: u64,
        pages: &[Option<u64>],
        prot: Prot,
        cow: bool,
    ) -> Result<(), Errno> {
        let runs = contiguous_runs(pages);
        for (k, &(i, first, n)) in runs.iter().enumerate() {
            let addr = start + i as u64 * PAGE;
            let run = n as u64 * PAGE;
            let pma = Pma {
                end: addr + run,
                offset: first,
                prot,
                cow,
            };
            if let Err(e) = self.host_map(addr, run, pma.host_prot(), first) {
                for &(_, offset, n) in &runs[k..] {
                    self.memory.free(moat_memory::FileRange {
                        offset,
                        len: n as u64 * PAGE,
                    });
                }
                return Err(e);
            }
            self.pmas.insert(addr, pma);
        }
        Ok(())
    }

    /// Start a new thread in this address space (`clone(CLONE_VM)`), for another host thread
    /// to attach to.
    pub fn new_thread(
        &mut self,
    ) -> Result<Box<dyn moat_platform::ThreadSeed>, moat_platform::PlatformError> {
        match &mut self.aspace {
            Some(a) => a.new_thread(),
            None => Err(moat_platform::PlatformError::NotAttached),
        }
    }

    /// CPU time of every thread that ran in this address space, the exited ones included
    /// (zero while detached).
    pub fn cpu_time(&self) -> std::time::Duration {
        self.aspace
            .as_ref()
            .and_then(|a| a.cpu_time().ok())
            .unwrap_or_default()
    }

    /// Bytes of the address space backed by the memory file (`VmRSS`, an upper bound: the
    /// file is sparse inside each populated window).
    pub fn resident_size(&self) -> u64 {
        self.pmas.iter().map(|(s, p)| p.end - s).sum()
    }

    /// The memory-file offset behind `addr` if it is shared memory (`MAP_SHARED`), so that a
    /// futex there is the same futex in every process that maps the page.
    pub fn shared_offset(&mut self, addr: u64) -> Option<u64> {
        let (_, v) = self.find_vma(addr)?;
        if !v.kind.is_shared() {
            return None;
        }
        self.check_access(addr, 4, false).ok()?;
        let (s, p) = self.pma_at(addr)?;
        Some(p.offset + (addr - s))
    }

    /// Map into the platform address space, if there is one yet.
    fn host_map(&mut self, addr: u64, len: u64, prot: Prot, offset: u64) -> Result<(), Errno> {
        match &mut self.aspace {
            Some(a) => a.map(addr, len, prot, offset).map_err(platform_fault),
            None => Ok(()),
        }
    }

    /// Unmap from the platform address space, if there is one yet.
    fn host_unmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        match &mut self.aspace {
            Some(a) => a.unmap(addr, len).map_err(platform_fault),
            None => Ok(()),
        }
    }

    /// Re-protect in the platform address space, if there is one yet.
    fn host_protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        match &mut self.aspace {
            Some(a) => a.protect(addr, len, prot).map_err(platform_fault),
            None => Ok(()),
        }
    }

    /// Remove every VMA and PMA in `[start, end)`, releasing the backing memory.
    fn remove_range(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        self.forget_names(start, end);
        let files = self
            .vmas
            .range(..end)
            .rev()
            .take_while(|(_, v)| v.end > start)
            .any(|(_, v)| v.kind.source().is_some());
        self.detach_range(start, end, true)?;
        if files {
            self.prune_page_sources();
        }
        Ok(())
    }

    /// Name `[start, end)` after the file mapped there (`/proc/PID/maps`).
    pub fn name_range(&mut self, start: u64, end: u64, name: &[u8]) {
        self.forget_names(start, end);
        self.names.insert(start, (end, Arc::from(name)));
    }

    /// The file name shown for the mapping at `addr`, if any.
    pub fn name_at(&self, addr: u64) -> Option<&[u8]> {
        let (_, (end, name)) = self.names.range(..=addr).next_back()?;
        (addr < *end).then_some(&**name)
    }

    /// Drop the names of `[start, end)`, keeping the parts of named ranges outside it.
    fn forget_names(&mut self, start: u64, end: u64) {
        let first = self
            .names
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let hit: Vec<u64> = self
            .names
            .range(first..end)
            .filter(|(_, (e, _))| *e > start)
            .map(|(&s, _)| s)
            .collect();
        for s in hit {
            if let Some((e, name)) = self.names.remove(&s) {
                if s < start {
                    self.names.insert(s, (start, name.clone()));
                }
                if e > end {
                    self.names.insert(end, (e, name));
                }
            }
        }
    }

    /// Remove `[start, end)` from the tables and the stub; free the backing only if `free`.
    fn detach_range(&mut self, start: u64, end: u64, free: bool) -> Result<(), Errno> {
        self.patches_before_detach(start, end, !free);
        self.split_at(start);
        self.split_at(end);
        let vmas: Vec<u64> = self.vmas.range(start..end).map(|(&s, _)| s).collect();
        for s in vmas {
            self.vmas.remove(&s);
        }
        let pmas: Vec<(u64, Pma)> = self.pmas.range(start..end).map(|(&s, &p)| (s, p)).collect();
        if !pmas.is_empty() {
            self.host_unmap(start, end - start)?;
        }
        for (s, p) in pmas {
            self.pmas.remove(&s);
            if free {
                // Drops this address space's reference: pages a forked relative still maps
                // keep their contents.
                self.memory.free(p.file_range(s));
            }
        }
        Ok(())
    }

    /// Merge VMAs (and PMAs) that became adjacent and alike around `[start, end)`.
    fn merge_around(&mut self, start: u64, end: u64) {
        let lo = self
            .vmas
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.vmas.range(lo..=end).map(|(&s, _)| s).collect();
        let mut cur: Option<u64> = None;
        for s in keys {
            let v = self.vmas[&s];
            if let Some(c) = cur {
                let vc = self.vmas[&c];
                if vc.end == s && vc.prot == v.prot && vc.kind == v.kind {
                    self.vmas.remove(&s);
                    self.vmas.get_mut(&c).expect("vma").end = v.end;
                    continue;
                }
            }
            cur = Some(s);
        }
        let lo = self
            .pmas
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.pmas.range(lo..=end).map(|(&s, _)| s).collect();
        let mut cur = None;
        for s in keys {
            let p = self.pmas[&s];
            if let Some(c) = cur {
                let pc: Pma = self.pmas[&c];
                if pc.end == s
                    && pc.prot == p.prot
                    && pc.cow == p.cow
                    && pc.offset + (s - c) == p.offset
                    && !self.vmas.contains_key(&s)
                {
                    self.pmas.remove(&s);
                    self.pmas.get_mut(&c).expect("pma").end = p.end;
                    continue;
                }
            }
            cur = Some(s);
        }
    }

    /// Replace the kind of the VMA that starts at `start`.
    pub fn set_kind(&mut self, start: u64, kind: VmaKind) {
        if let Some(v) = self.vmas.get_mut(&start) {
            v.kind = kind;
        }
    }

    /// `munmap`: `start` page-aligned, `len` already rounded.
    pub fn unmap(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        self.remove_range(start, end)
    }

    /// `mprotect` of `[start, start+len)`. Like Linux, VMAs before a hole are changed and then
    /// the call fails with `ENOMEM`.
    pub fn protect(&mut self, start: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
        // Find how far the range is covered without a hole.
        let mut covered = start;
        for (&s, v) in self.vmas.range(..end) {
            if v.end <= covered {
                continue;
            }
            if s > covered {
                break;
            }
            covered = v.end.min(end);
        }
        if covered == start {
            return Err(Errno::ENOMEM);
        }
        self.patches_before_protect(start, covered, prot);
        self.split_at(start);
        self.split_at(covered);
        let keys: Vec<u64> = self.vmas.range(start..covered).map(|(&s, _)| s).collect();
        for s in keys {
            self.vmas.get_mut(&s).expect("vma").prot = prot;
        }
        let pmas: Vec<(u64, Pma)> = self
            .pmas
            .range(start..covered)
            .map(|(&s, &p)| (s, p))
            .collect();
        for (s, p) in pmas {
            let new = Pma { prot, ..p };
            // Copy-on-write pages stay without write in the stub even if the application
            // makes them writable: the first write still faults and copies.
            if new.host_prot() != p.host_prot() {
                self.host_protect(s, p.end - s, new.host_prot())?;
            }
            self.pmas.insert(s, new);
        }
        self.merge_around(start, covered);
        if covered < end {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `madvise(MADV_DONTNEED)`: private pages read as zeros afterwards; `MAP_SHARED` pages
    /// keep their contents (Linux only drops the mapping, and the next access finds the same
    /// shared pages again).
    pub fn discard(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        // Linux discards what is mapped and reports a hole.
        let hole = self.overlap_size(start, end) != end - start;
        self.discard_mapped(start, end)?;
        if hole {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `madvise(MADV_REMOVE)` of `MAP_SHARED` memory: punch the pages out of the memory file,
    /// so they read as zeros in every address space that shares them. Only the shared
    /// anonymous parts of the range are touched (the caller rejects anything else).
    pub fn punch_shared(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        for (&s, p) in self.pmas.range(..end) {
            if p.end <= start {
                continue;
            }
            let (_, v) = self.find_vma(s).expect("a PMA lies inside a VMA");
            if v.kind.is_shared() {
                let (a, b) = (s.max(start), p.end.min(end));
                self.memory.decommit(moat_memory::FileRange {
                    offset: p.offset + (a - s),
                    len: b - a,
                });
            }
        }
        Ok(())
    }

    fn discard_mapped(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        self.patches_discarded(start, end);
        let mut dropped = Vec::new();
        for (&s, p) in self.pmas.range(..end) {
            if p.end <= start {
                continue;
            }
            let (_, v) = self.find_vma(s).expect("a PMA lies inside a VMA");
            if v.kind.is_shared() {
                continue;
            }
            let (a, b) = (s.max(start), p.end.min(end));
            if p.cow || v.kind.source().is_some() {
                // The pages may be another address space's too: do not punch them, drop this
                // side's reference and mapping instead; the next access maps fresh zeros, or
                // the file's own page again for a private file mapping (as on Linux).
                dropped.push((a, b));
            } else {
                // Private and not copy-on-write: this address space's alone.
                self.memory.decommit(moat_memory::FileRange {
                    offset: p.offset + (a - s),
                    len: b - a,
                });
            }
        }
        for (a, b) in dropped {
            self.split_pma_at(a);
            self.split_pma_at(b);
            let p = self.pmas.remove(&a).expect("split at a");
            self.host_unmap(a, b - a)?;
            self.memory.free(p.file_range(a));
        }
        Ok(())
    }

    /// `mremap`: returns the new address. Arguments are already validated and page-rounded.
    pub fn remap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
        fixed: Option<u64>,
    ) -> Result<u64, Errno> {
        let (vstart, vma) = self.find_vma(old).ok_or(Errno::EFAULT)?;
        let vma = *vma;
        let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
        if old_end > vma.end {
            return Err(Errno::EFAULT);
        }
        let _ = vstart;
        if let Some(dst) = fixed {
            let dst_end = dst.checked_add(new_len).ok_or(Errno::EINVAL)?;
            if dst < USER_MIN || dst_end > USER_MAX {
                return Err(Errno::EINVAL);
            }
            if dst < old_end && old < dst_end {
                return Err(Errno::EINVAL);
            }
            self.remove_range(dst, dst_end)?;
            let keep = old_len.min(new_len);
            self.remove_range(old + keep, old_end)?;
            self.move_range(old, keep, dst)?;
            if new_len > keep {
                self.map_anonymous(
                    Placement::Fixed(dst + keep),
                    new_len - keep,
                    vma.prot,
                    vma.kind.moved(dst.wrapping_sub(old)),
                )?;
            }
            return Ok(dst);
        }
        if new_len <= old_len {
            self.remove_range(old + new_len, old_end)?;
            return Ok(old);
        }
        let grow_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        if old_end == vma.end && self.is_free(old_end, grow_end) {
            if self.total_size() + (new_len - old_len) > self.limit_as {
                return Err(Errno::ENOMEM);
            }
            self.map_anonymous(
                Placement::Fixed(old_end),
                new_len - old_len,
                vma.prot,
                vma.kind,
            )?;
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let dst = self.find_free(new_len).ok_or(Errno::ENOMEM)?;
        self.move_range(old, old_len, dst)?;
        self.map_anonymous(
            Placement::Fixed(dst + old_len),
            new_len - old_len,
            vma.prot,
            vma.kind.moved(dst.wrapping_sub(old)),
        )?;
        Ok(dst)
    }

    /// Move the mappings of `[old, old+len)` to `dst` without copying: the same memory-file
    /// pages are mapped at the new place.
    fn move_range(&mut self, old: u64, len: u64, dst: u64) -> Result<(), Errno> {
        let end = old + len;
        self.split_at(old);
        self.split_at(end);
        let vmas: Vec<(u64, Vma)> = self.vmas.range(old..end).map(|(&s, &v)| (s, v)).collect();
        let pmas: Vec<(u64, Pma)> = self.pmas.range(old..end).map(|(&s, &p)| (s, p)).collect();
        let names: Vec<(u64, MappingName)> = self
            .names
            .range(old..end)
            .map(|(&s, n)| (s, n.clone()))
            .collect();
        self.forget_names(old, end);
        self.detach_range(old, end, false)?;
        for (s, mut v) in vmas {
            v.end = v.end - old + dst;
            v.kind = v.kind.moved(dst.wrapping_sub(old));
            self.vmas.insert(s - old + dst, v);
        }
        for (s, (e, name)) in names {
            self.names
                .insert(s - old + dst, (e.min(end) - old + dst, name));
        }
        for (s, mut p) in pmas {
            let ns = s - old + dst;
            // The same pages, so the same copy-on-write state.
            self.host_map(ns, p.end - s, p.host_prot(), p.offset)?;
            p.end = p.end - old + dst;
            self.pmas.insert(ns, p);
        }
        self.merge_around(dst, dst + len);
        Ok(())
    }

    /// `brk`: move the program break; returns the resulting break (unchanged on failure).
    pub fn set_brk(&mut self, new: u64) -> u64 {
        if new < self.brk_start {
            return self.brk;
        }
        let (Some(old_end), Some(new_end)) = (page_up(self.brk), page_up(new)) else {
            return self.brk;
        };
        if new - self.brk_start > self.limit_data {
            return self.brk;
        }
        if new_end > old_end {
            // Linux keeps at least a page free between the heap and the next mapping.
            if new_end
                .checked_add(PAGE)
                .is_none_or(|guard| !self.is_free(old_end, guard))
            {
                return self.brk;
            }
            let prot = Prot(Prot::READ.0 | Prot::WRITE.0);
            if self
                .map_anonymous(
                    Placement::Fixed(old_end),
                    new_end - old_end,
                    prot,
                    VmaKind::Heap,
                )
                .is_err()
            {
                return self.brk;
            }
        } else if new_end < old_end && self.remove_range(new_end, old_end).is_err() {
            return self.brk;
        }
        self.brk = new;
        self.brk
    }

    /// Back `[start, end)` with memory-file pages wherever a VMA allows access and nothing is
    /// mapped yet.
    fn populate(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        self.populate_with(start, end, false)
    }

    /// Populate; `include_inaccessible` also backs `PROT_NONE` VMAs (the kernel filling a
    /// mapping whose pages the application may make accessible later).
    fn populate_with(
        &mut self,
        start: u64,
        end: u64,
        include_inaccessible: bool,
    ) -> Result<(), Errno> {
        let vmas: Vec<(u64, Vma)> = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(&s, &v)| (s, v))
            .collect();
        for (vs, v) in vmas {
            if v.prot == Prot::NONE && !include_inaccessible {
                continue;
            }
            let (a, b) = (vs.max(start), v.end.min(end));
            let from_file = match v.kind {
                VmaKind::SharedFile { base, source, .. } => Some((base, source, false)),
                VmaKind::File { base, source, .. } if source != 0 => Some((base, source, true)),
                _ => None,
            };
            if let Some((base, source, private)) = from_file {
                let Some(pages) = self.page_sources.get(&source).cloned() else {
                    continue;
                };
                for (g0, g1) in self.unpopulated(a, b) {
                    let index = base.wrapping_add(g0) / PAGE;
                    // A file whose pages cannot be had (its host file is gone, the sandbox's
                    // memory is full) leaves the range unmapped: the access faults.
                    let got = match pages.share_pages(index, (g1 - g0) / PAGE) {
                        Ok(got) => got,
                        // Out of memory is the caller's to handle (the OOM killer).
                        Err(Errno::ENOMEM) => return Err(Errno::ENOMEM),
                        Err(_) => continue,
                    };
                    self.map_pages(g0, &got, v.prot, private)?;
                }
                continue;
            }
            if !v.kind.populates() {
                continue;
            }
            for (g0, g1) in self.unpopulated(a, b) {
                let range = self.memory.allocate(g1 - g0).map_err(|_| Errno::ENOMEM)?;
                if let Err(e) = self.host_map(g0, g1 - g0, v.prot, range.offset) {
                    self.memory.free(range);
                    return Err(e);
                }
                self.pmas.insert(
                    g0,
                    Pma {
                        end: g1,
                        offset: range.offset,
                        prot: v.prot,
                        cow: false,
                    },
                );
            }
        }
        self.merge_around(start, end);
        Ok(())
    }

    /// The gaps between populated ranges (PMAs) in `[a, b)`.
    fn unpopulated(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut cursor = a;
        let mut gaps = Vec::new();
        let first = self.pmas.range(..a).next_back().map_or(a, |(&s, _)| s);
        for (&s, p) in self.pmas.range(first..b) {
            if p.end <= cursor {
                continue;
            }
            if s > cursor {
                gaps.push((cursor, s.min(b)));
            }
            cursor = cursor.max(p.end);
        }
        if cursor < b {
            gaps.push((cursor, b));
        }
        gaps
    }

    /// Populate the fault window around `addr`; near the memory limit, where a whole window
    /// no longer fits, only the page itself (`ENOMEM` when not even that fits).
    fn populate_around(&mut self, addr: u64) -> Result<(), Errno> {
        let (vs, v) = self.find_vma(addr).ok_or(Errno::EFAULT)?;
        let window = addr & !(FAULT_WINDOW - 1);
        let start = window.max(vs);
        let end = (window + FAULT_WINDOW).min(v.end);
        match self.populate(start, end) {
            Err(Errno::ENOMEM) if self.pma_at(addr).is_none() => {
                let page = page_down(addr);
                self.populate(page, page + PAGE)
            }
            other => other,
        }
    }

    /// Handle a page fault at `addr`: `write` when the host reported a protection fault
    /// (`SEGV_ACCERR`) rather than a missing page (`SEGV_MAPERR`). `true` if the kernel
    /// resolved it (supplied the missing page, or copied a copy-on-write page for the writer)
    /// and the instruction can be retried, `false` if the application really faulted.
    ///
    /// A protection fault on a copy-on-write page of a writable VMA is taken to be a write:
    /// the stub maps such pages readable (unless the VMA is not), so a read cannot fault. An
    /// execute fault there breaks the sharing needlessly, then faults again as a real fault.
    ///
    /// [`Fault::OutOfMemory`] when the page could not be supplied for want of memory (the
    /// sandbox's memory limit): the caller decides whom that kills.
    pub fn handle_fault(&mut self, addr: u64, write: bool) -> Fault {
        let Some((_, v)) = self.find_vma(addr) else {
            return Fault::Unresolved;
        };
        if v.prot == Prot::NONE {
            return Fault::Unresolved;
        }
        let writable = v.prot.writable();
        // ENOMEM is also how a failing stub shows (`platform_fault`): only near the memory
        // limit is it the limit's doing.
        let memory = self.memory.clone();
        let at_limit =
            move || memory.allocated_bytes().saturating_add(FAULT_WINDOW) > memory.limit();
        let outcome = |r: Result<(), Errno>, ok: bool| match r {
            Err(Errno::ENOMEM) if at_limit() => Fault::OutOfMemory,
            Ok(()) if ok => Fault::Resolved,
            _ => Fault::Unresolved,
        };
        match self.pma_at(addr) {
            // A protection fault where nothing is mapped cannot be ours to resolve.
            None => {
                let (file_backed, kind) = (matches!(v.kind, VmaKind::SharedFile { .. }), v.kind);
                if !(file_backed || !write && kind.populates()) {
                    return Fault::Unresolved;
                }
                let r = self.populate_around(addr);
                outcome(r, self.pma_at(addr).is_some())
            }
            Some((_, p)) if write && writable && p.cow => outcome(self.break_cow_fault(addr), true),
            // Another thread of the address space resolved this fault meanwhile (populated the
            // window, or broke the copy): map the page again as the tables say, so that the
            // retried instruction makes progress whatever the host had.
            Some((s, p)) if !write || (writable && !p.cow) => {
                let page = addr & !(PAGE - 1);
                let offset = p.offset + (page - s);
                if self.host_map(page, PAGE, p.host_prot(), offset).is_ok() {
                    Fault::Resolved
                } else {
                    Fault::Unresolved
                }
            }
            Some(_) => Fault::Unresolved,
        }
    }

    /// Populate a new mapping the program is about to use (the loader's segments, `mmap` of
    /// a library or of a little anonymous memory) now rather than at its first faults: each
    /// fault is a trap and a mapping command, while a mapping made here costs the stub one
    /// `mmap` at the next return to the application (the platform defers it, see
    /// `AddressSpace::map`). Best effort, and bounded (see [`PREFAULT_MAX`]): a private file
    /// mapping's pages are the file's page cache, shared copy-on-write; anonymous memory only
    /// for small mappings.
    pub fn prefault(&mut self, start: u64, len: u64, max: u64) {
        let Some((_, &v)) = self.find_vma(start) else {
            return;
        };
        if v.prot == Prot::NONE {
            return;
        }
        let file = matches!(v.kind, VmaKind::File { source, .. } if source != 0);
        let small_anon =
            matches!(v.kind, VmaKind::Anonymous { shared: false }) && len <= PREFAULT_ANON_MAX;
        if !file && !small_anon {
            return;
        }
        let end = start.saturating_add(len.min(max).min(PREFAULT_MAX));
        if self.populate(start, end).is_err() {
            return;
        }
        if file && v.prot.writable() && len <= PREFAULT_COPY_MAX {
            let _ = self.break_cow(start, end);
        }
    }

    /// Pre-populate a whole mapping (`MAP_POPULATE`).
    pub fn populate_range(&mut self, start: u64, len: u64) -> Result<(), Errno> {
        self.populate(start, start + len)
    }

    fn pma_at(&self, addr: u64) -> Option<(u64, Pma)> {
        let (&s, &p) = self.pmas.range(..=addr).next_back()?;
        (addr < p.end).then_some((s, p))
    }

    /// Check that the application may access `[addr, addr+len)` (`write` or read), and
    /// populate it; `EFAULT` otherwise.
    pub fn check_access(&mut self, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > USER_MAX {
            return Err(Errno::EFAULT);
        }
        let mut cursor = addr;
        while cursor < end {
            let (_, v) = self.find_vma(cursor).ok_or(Errno::EFAULT)?;
            let ok = if write {
                v.prot.writable()
            } else {
                v.prot.readable() || v.prot.writable()
            };
            if !ok {
                return Err(Errno::EFAULT);
            }
            let vend = v.end;
            cursor = vend.min(end);
        }
        let mut cursor = addr;
        while cursor < end {
            match self.pma_at(cursor) {
                Some((_, p)) => cursor = p.end.min(end),
                None => {
                    self.populate_around(cursor)?;
                    if self.pma_at(cursor).is_none() {
                        // Past a file's end, or a file page the kernel cannot supply.
                        return Err(Errno::EFAULT);
                    }
                }
            }
        }
        if write {
            // The kernel is about to write: copy-on-write pages get their own copy first.
            self.break_cow(page_down(addr), page_up(end).ok_or(Errno::EFAULT)?)?;
        }
        Ok(())
    }

    /// Call `f(file_offset, range_in_buffer)` for each memory-file piece of `[addr, addr+len)`.
    /// The range must have passed `check_access`.
    fn for_each_piece(
        &self,
        addr: u64,
        len: usize,
        mut f: impl FnMut(u64, std::ops::Range<usize>),
    ) {
        let mut done = 0usize;
        while done < len {
            let a = addr + done as u64;
            let (s, p) = self.pma_at(a).expect("checked range is populated");
            let n = ((p.end - a) as usize).min(len - done);
            f(p.offset + (a - s), done..done + n);
            done += n;
        }
    }

    /// Run `f` with the memory-file pieces `(offset, len)` of the application buffer
    /// `[addr, addr+len)`, checked writable and made the address space's own (copy-on-write
    /// broken), while the tables cannot change: a file can then be read straight into
    /// application memory.
    pub fn with_write_pieces<R>(
        &mut self,
        addr: u64,
        len: usize,
        f: impl FnOnce(&MemoryFile, &[(u64, usize)]) -> R,
    ) -> Result<R, Errno> {
        self.check_access(addr, len as u64, true)?;
        let mut pieces = Vec::new();
        self.for_each_piece(addr, len, |off, r| pieces.push((off, r.len())));
        Ok(f(&self.memory, &pieces))
    }

    /// Run `f` with the memory-file pieces `(offset, len)` of the application buffer
    /// `[addr, addr+len)`, checked readable, while the tables cannot change: a file can then be
    /// written straight from application memory.
    pub fn with_read_pieces<R>(
        &mut self,
        addr: u64,
        len: usize,
        f: impl FnOnce(&MemoryFile, &[(u64, usize)]) -> R,
    ) -> Result<R, Errno> {
        self.check_access(addr, len as u64, false)?;
        let mut pieces = Vec::new();
        self.for_each_piece(addr, len, |off, r| pieces.push((off, r.len())));
        Ok(f(&self.memory, &pieces))
    }

    /// Copy application memory into `buf`.
    pub fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check_access(addr, buf.len() as u64, false)?;
        let memory = self.memory.clone();
        self.for_each_piece(addr, buf.len(), |off, r| memory.read(off, &mut buf[r]));
        Ok(())
    }

    /// Copy `data` into application memory.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.check_access(addr, data.len() as u64, true)?;
        let memory = self.memory.clone();
        self.for_each_piece(addr, data.len(), |off, r| memory.write(off, &data[r]));
        Ok(())
    }

    /// Write into application memory regardless of protection (the loader filling read-only
    /// segments). The range must be inside VMAs.
    pub fn write_bytes_force(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let end = addr.checked_add(data.len() as u64).ok_or(Errno::EFAULT)?;
        let mut cursor = addr;
        while cursor < end {
            let (_, v) = self.find_vma(cursor).ok_or(Errno::EFAULT)?;
            cursor = v.end.min(end);
        }
        // Populate as if writable: PMAs take the VMA's protection, the kernel's own mapping is
        // always writable.
        let mut cursor = addr;
        while cursor < end {
            match self.pma_at(cursor) {
                Some((_, p)) => cursor = p.end.min(end),
                None => {
                    let (vs, v) = self.find_vma(cursor).ok_or(Errno::EFAULT)?;
                    let (vs, vend) = (vs, v.end);
                    let window = cursor & !(FAULT_WINDOW - 1);
                    self.populate_with(window.max(vs), (window + FAULT_WINDOW).min(vend), true)?;
                    if self.pma_at(cursor).is_none() {
                        // A file page that cannot be had (the sandbox's memory is full, the
                        // host file is gone): never loop on it.
                        return Err(Errno::ENOMEM);
                    }
                }
            }
        }
        self.break_cow(page_down(addr), page_up(end).ok_or(Errno::EFAULT)?)?;
        let memory = self.memory.clone();
        self.for_each_piece(addr, data.len(), |off, r| memory.write(off, &data[r]));
        Ok(())
    }

    /// Read a plain-data value.
    pub fn read_obj<T: FromBytes + IntoBytes>(&mut self, addr: u64) -> Result<T, Errno> {
        let mut v = T::new_zeroed();
        self.read_bytes(addr, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Write a plain-data value.
    pub fn write_obj<T: IntoBytes + Immutable>(&mut self, addr: u64, v: &T) -> Result<(), Errno> {
        self.write_bytes(addr, v.as_bytes())
    }

    /// Read a NUL-terminated string of at most `max` bytes (without the NUL).
    /// `ENAMETOOLONG` if no NUL is found within `max`.
    pub fn read_cstring(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut cursor = addr;
        while out.len() < max {
            // Read up to the end of the page so an unmapped next page is not touched.
            let chunk = ((PAGE - (cursor % PAGE)) as usize).min(max - out.len());
            let mut buf = vec![0u8; chunk];
            self.read_bytes(cursor, &mut buf)?;
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&buf);
            cursor += chunk as u64;
        }
        Err(Errno::ENAMETOOLONG)
    }
}

impl Drop for MemoryManager {
    fn drop(&mut self) {
        // The stub goes first, so it cannot touch pages that may be handed out again.
        self.aspace = None;
        for (&s, p) in &self.pmas {
            self.memory.free(p.file_range(s));
        }
    }
}

/// A failure to change the stub's mappings leaves the address space unusable.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(platform_fault)`
fn platform_fault(e: moat_platform::PlatformError) -> Errno {
    tracing::error!("address space operation failed: {e}");
    Errno::ENOMEM
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_platform::Platform;

    const RW: Prot = Prot(3);
    const ANON: VmaKind = VmaKind::Anonymous { shared: false };

    #[test]
    fn contiguous_runs_split_at_gaps_and_jumps() {
        let p = |n: u64| Some(n * PAGE);
        let pages = [p(4), p(5), p(6), None, p(9), p(8), p(9), None, None];
        assert_eq!(
            contiguous_runs(&pages),
            vec![(0, 4 * PAGE, 3), (4, 9 * PAGE, 1), (5, 8 * PAGE, 2)]
        );
        assert!(contiguous_runs(&[None, None]).is_empty());
    }

    fn manager() -> MemoryManager {
        let memory = Arc::new(MemoryFile::new(1 << 30).unwrap());
        let (aspace, ctx) = moat_platform::ptrace::PtracePlatform
            .new_address_space(&memory)
            .unwrap();
        // The address space is changed through this host thread's context, and dropping a
        // context ends its stub thread: keep it for the test (the stub dies with the thread).
        std::mem::forget(ctx);
        let mut mm = MemoryManager::new(memory, aspace);
        mm.mmap_base = 0x7000_0000_0000;
        mm
    }

    fn layout(mm: &MemoryManager) -> Vec<(u64, u64, u32)> {
        mm.vmas().map(|(s, v)| (s, v.end, v.prot.0)).collect()
    }

    #[test]
    fn split_and_merge() {
        let mut mm = manager();
        let a = mm
            .map_anonymous(Placement::Hint(0), 4 * PAGE, RW, ANON)
            .unwrap();
        assert_eq!(a, 0x7000_0000_0000 - 4 * PAGE, "top-down below mmap_base");
        mm.write_bytes(a, &[1; 4 * PAGE as usize]).unwrap();
        mm.protect(a + PAGE, PAGE, Prot::READ).unwrap();
        assert_eq!(
            layout(&mm),
            vec![
                (a, a + PAGE, 3),
                (a + PAGE, a + 2 * PAGE, 1),
                (a + 2 * PAGE, a + 4 * PAGE, 3)
            ]
        );
        assert_eq!(mm.write_bytes(a + PAGE, &[2]), Err(Errno::EFAULT));
        mm.protect(a + PAGE, PAGE, RW).unwrap();
        assert_eq!(
            layout(&mm),
            vec![(a, a + 4 * PAGE, 3)],
            "equal neighbours merge again"
        );
        mm.unmap(a + PAGE, PAGE).unwrap();
        assert_eq!(layout(&mm).len(), 2);
        let mut b = [0u8; 1];
        assert_eq!(mm.read_bytes(a + PAGE, &mut b), Err(Errno::EFAULT));
        mm.read_bytes(a + 2 * PAGE, &mut b).unwrap();
        assert_eq!(b, [1], "contents survive a split");
        assert_eq!(
            mm.protect(a, 4 * PAGE, Prot::READ),
            Err(Errno::ENOMEM),
            "hole in the range"
        );
        assert_eq!(
            layout(&mm)[0].2,
            1,
            "pages before the hole were changed, as in Linux"
        );
    }

    #[test]
    fn fixed_noreplace_and_limits() {
        let mut mm = manager();
        let a = mm
            .map_anonymous(Placement::Hint(0x1000_0000), PAGE, RW, ANON)
            .unwrap();
        assert_eq!(a, 0x1000_0000, "a free hint is honoured");
        assert_eq!(
            mm.map_anonymous(Placement::FixedNoReplace(a), PAGE, RW, ANON),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            mm.map_anonymous(Placement::Fixed(USER_MAX), PAGE, RW, ANON),
            Err(Errno::ENOMEM)
        );
        mm.limit_as = 2 * PAGE;
        assert_eq!(
            mm.map_anonymous(Placement::Hint(0), 2 * PAGE, RW, ANON),
            Err(Errno::ENOMEM)
        );
    }

    #[test]
    fn remap_moves_contents_without_copying() {
        let mut mm = manager();
        let a = mm
            .map_anonymous(Placement::Hint(0), 2 * PAGE, RW, ANON)
            .unwrap();
        mm.write_bytes(a + PAGE + 5, b"moat").unwrap();
        // Block in-place growth so the mapping must move.
        mm.map_anonymous(Placement::Fixed(a + 2 * PAGE), PAGE, RW, ANON)
            .unwrap();
        assert_eq!(
            mm.remap(a, 2 * PAGE, 8 * PAGE, false, None),
            Err(Errno::ENOMEM)
        );
        let b = mm.remap(a, 2 * PAGE, 8 * PAGE, true, None).unwrap();
        assert_ne!(a, b);
        let mut buf = [0u8; 4];
        mm.read_bytes(b + PAGE + 5, &mut buf).unwrap();
        assert_eq!(&buf, b"moat");
        assert_eq!(
            mm.read_bytes(a, &mut buf),
            Err(Errno::EFAULT),
            "the old range is gone"
        );
        mm.write_bytes(b + 7 * PAGE, b"tail").unwrap();
        assert_eq!(
            mm.remap(b, 8 * PAGE, PAGE, false, None),
            Ok(b),
            "shrinking stays in place"
        );
        assert_eq!(mm.read_bytes(b + PAGE, &mut buf), Err(Errno::EFAULT));
    }

    #[test]
    fn brk_grows_and_shrinks() {
        let mut mm = manager();
        mm.brk_start = 0x4000_0000;
        mm.brk = mm.brk_start;
        assert_eq!(mm.set_brk(0x4000_0000 + 10_000), 0x4000_0000 + 10_000);
        mm.write_bytes(0x4000_0000 + 9_999, &[9]).unwrap();
        assert_eq!(mm.set_brk(0x4000_0000 + 10), 0x4000_0000 + 10);
        let mut b = [0u8; 1];
        assert_eq!(
            mm.read_bytes(0x4000_0000 + 9_999, &mut b),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            mm.set_brk(0x3000_0000),
            0x4000_0000 + 10,
            "below the start: unchanged"
        );
        assert_eq!(mm.set_brk(0x4000_0000 + 5_000), 0x4000_0000 + 5_000);
        mm.read_bytes(0x4000_0000 + 4_999, &mut b).unwrap();
        assert_eq!(b, [0], "memory given back reads as zeros when regrown");
    }

    #[test]
    fn discard_zeroes_and_cstring_stops_at_unmapped() {
        let mut mm = manager();
        let a = mm
            .map_anonymous(Placement::Hint(0), PAGE, RW, ANON)
            .unwrap();
        mm.write_bytes(a, b"abc").unwrap();
        mm.discard(a, PAGE).unwrap();
        let mut buf = [1u8; 3];
        mm.read_bytes(a, &mut buf).unwrap();
        assert_eq!(buf, [0; 3]);
        mm.write_bytes(a + PAGE - 3, b"xyz").unwrap();
        assert_eq!(
            mm.read_cstring(a + PAGE - 3, 100),
            Err(Errno::EFAULT),
            "no NUL before the unmapped page"
        );
        assert_eq!(mm.read_cstring(a + PAGE - 3, 2), Err(Errno::ENAMETOOLONG));
    }
}
