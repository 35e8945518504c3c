//! `fork` and copy-on-write.
//!
//! A fork copies the tables, not the memory: the child's PMAs refer to the same memory-file
//! pages as the parent's, each page gaining a reference ([`MemoryFile::share`]). Private
//! memory (everything but `MAP_SHARED|MAP_ANONYMOUS`) becomes copy-on-write on both sides: the
//! PMA's `cow` flag is set and the stub maps it without write. The first write faults
//! (`SEGV_ACCERR`) and [`MemoryManager::handle_fault`] breaks the sharing for a chunk around
//! the address: if the other side has let go of the pages already (their reference count is
//! back to one), they are simply made writable again; otherwise the chunk is copied into new
//! pages, which are mapped in place of the old ones, and the old pages lose a reference.
//! Kernel writes into application memory break the sharing of exactly the pages they write.
//!
//! [`MemoryFile::share`]: moat_memory::MemoryFile::share

use moat_abi::Errno;
use moat_platform::AddressSpace;

use super::{platform_fault, MemoryManager, Pma};

/// How much a write fault on a copy-on-write page copies (aligned, clipped to the VMA).
///
/// Each fault is a trip through the tracer plus an `mmap` injected into the stub, about 30 µs
/// with ptrace, where Linux pays well under one: copying one page per fault, as Linux does,
/// makes writing over memory after `fork` fault-bound. Copying more per fault trades memory
/// (pages copied that the writer never touches, while the other side still holds the
/// originals) for fewer faults. Measured over 32 MiB of populated memory after a fork
/// (`measure_cow_faults`, release build):
///
/// | chunk   | a write every 4 KiB | a write every 64 KiB         |
/// |---------|---------------------|------------------------------|
/// | 4 KiB   | 256 ms (8192 faults)| 19 ms, 2 MiB copied          |
/// | 16 KiB  | 109 ms              | 28 ms, 8 MiB copied          |
/// | 64 KiB  | 50 ms               | 44 ms, 32 MiB copied         |
/// | 256 KiB | 67 ms               | 47 ms, 32 MiB copied         |
///
/// 16 KiB takes most of the gain on dense writes (2.4x) and costs sparse writers 1.5x the
/// time and 4x (not 16x) the memory. Holes are never copied
/// ([`moat_memory::MemoryFile::copy_populated`]), and once the other side has let go of the
/// pages no copy happens at all.
const COW_CHUNK: u64 = 16 << 10;

impl MemoryManager {
    /// Whether a platform address space mirrors this one.
    pub fn is_attached(&self) -> bool {
        self.aspace.is_some()
    }

    /// Mirror this address space into `aspace` (which must be empty): every PMA is mapped
    /// with the protection the stub needs (without write where copy-on-write). A platform
    /// address space attached before is dropped. On failure nothing changes.
    pub fn attach(&mut self, mut aspace: Box<dyn AddressSpace>) -> Result<(), Errno> {
        for (&s, p) in &self.pmas {
            aspace
                .map(s, p.end - s, p.host_prot(), p.offset)
                .map_err(platform_fault)?;
        }
        self.aspace = Some(aspace);
        Ok(())
    }

    /// Attach a platform address space that already maps exactly this manager's PMAs (a copy
    /// of the parent's made by [`MemoryManager::fork_with_copy`]): nothing to map.
    pub fn attach_inherited(&mut self, aspace: Box<dyn AddressSpace>) {
        self.aspace = Some(aspace);
    }

    /// `fork` and, in the same step, a copy of the platform address space made right after
    /// the parent was re-protected, so the copy maps exactly the child's tables (when the
    /// platform can copy one: `None` otherwise, and the child is attached the usual way).
    pub fn fork_with_copy(
        &mut self,
    ) -> Result<
        (
            MemoryManager,
            Option<Box<dyn moat_platform::AddressSpaceSeed>>,
        ),
        Errno,
    > {
        let child = self.fork()?;
        let copy = match &mut self.aspace {
            Some(a) => a.fork().map_err(platform_fault)?,
            None => None,
        };
        Ok((child, copy))
    }

    /// An empty platform address space for `execve`, made as a copy of this one emptied of
    /// every application mapping (copying the small stub process is much cheaper than
    /// starting one from Moat); `None` if the platform cannot copy.
    pub fn empty_copy(&mut self) -> Result<Option<moat_platform::NewAddressSpace>, Errno> {
        let Some(aspace) = &mut self.aspace else {
            return Ok(None);
        };
        let Some(seed) = aspace.fork().map_err(platform_fault)? else {
            return Ok(None);
        };
        let (mut copy, context) = seed.attach().map_err(platform_fault)?;
        copy.unmap(
            moat_platform::USER_MIN,
            moat_platform::USER_MAX - moat_platform::USER_MIN,
        )
        .map_err(platform_fault)?;
        Ok(Some((copy, context)))
    }

    /// `fork`: a copy of this address space sharing its memory. Private memory becomes
    /// copy-on-write in both; `MAP_SHARED|MAP_ANONYMOUS` memory stays shared and writable.
    ///
    /// The child is detached: [`MemoryManager::attach`] it to the platform address space of
    /// the host thread that will run it. Fails only if the stub cannot be re-protected; the
    /// child is then dropped, which drops its references again.
    pub fn fork(&mut self) -> Result<MemoryManager, Errno> {
        let mut child = MemoryManager::new_detached(self.memory.clone());
        child.vmas = self.vmas.clone();
        child.page_sources.clone_from(&self.page_sources);
        child.names.clone_from(&self.names);
        child.mmap_base = self.mmap_base;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        child.limit_as = self.limit_as;
        child.limit_data = self.limit_data;
        child.patches = self.patches.clone();
        let pmas: Vec<(u64, Pma)> = self.pmas.iter().map(|(&s, &p)| (s, p)).collect();
        for (s, p) in pmas {
            let (_, v) = self.find_vma(s).expect("a PMA lies inside a VMA");
            debug_assert!(p.end <= v.end, "PMA {s:#x}..{:#x} crosses its VMA", p.end);
            let private = !v.kind.is_shared();
            self.memory.share(p.file_range(s));
            child.pmas.insert(
                s,
                Pma {
                    cow: p.cow || private,
                    ..p
                },
            );
            if private && !p.cow {
                // Only once the parent's stub can no longer write may the pages count as
                // copy-on-write here.
                if p.prot.writable() {
                    self.host_protect(s, p.end - s, p.prot.without_write())?;
                }
                self.pmas.get_mut(&s).expect("pma").cow = true;
            }
        }
        Ok(child)
    }

    /// A write fault at `addr` on a copy-on-write PMA of a writable VMA.
    pub(super) fn break_cow_fault(&mut self, addr: u64) -> Result<(), Errno> {
        let (ps, p) = self.pma_at(addr).expect("caller found the PMA");
        if !self.memory.is_shared(p.offset, p.end - ps) {
            // Nobody else maps any of it any more (the other side exited, exec'd, unmapped or
            // copied): one re-protection makes the whole PMA writable again.
            return self.break_cow(ps, p.end);
        }
        let (vs, v) = self.find_vma(addr).expect("caller found the VMA");
        let chunk = addr & !(COW_CHUNK - 1);
        let end = chunk.saturating_add(COW_CHUNK).min(v.end);
        self.break_cow(chunk.max(vs), end)
    }

    /// Give this address space its own copy of every copy-on-write page in `[start, end)`
    /// (page-aligned), mapped with the VMA's protection.
    pub(super) fn break_cow(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        let first = self
            .pmas
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let any = self
            .pmas
            .range(first..end)
            .any(|(_, p)| p.cow && p.end > start);
        if !any {
            return Ok(());
        }
        self.split_pma_at(start);
        self.split_pma_at(end);
        let cow: Vec<(u64, Pma)> = self
            .pmas
            .range(start..end)
            .filter(|(_, p)| p.cow)
            .map(|(&s, &p)| (s, p))
            .collect();
        for (s, p) in cow {
            let len = p.end - s;
            let old = p.file_range(s);
            let mut new = Pma { cow: false, ..p };
            if self.memory.is_shared(p.offset, len) {
                let copy = self.memory.allocate(len).map_err(|_| Errno::ENOMEM)?;
                self.memory.copy_populated(p.offset, copy.offset, len);
                if let Err(e) = self.host_map(s, len, p.prot, copy.offset) {
                    self.memory.free(copy);
                    return Err(e);
                }
                new.offset = copy.offset;
                self.pmas.insert(s, new);
                self.memory.free(old);
            } else {
                // The last reference: the pages are this address space's alone already.
                if new.host_prot() != p.host_prot() {
                    self.host_protect(s, len, new.host_prot())?;
                }
                self.pmas.insert(s, new);
            }
        }
        self.merge_around(start, end);
        Ok(())
    }

    /// The number of bytes of copy-on-write PMAs (for tests and statistics).
    pub fn cow_bytes(&self) -> u64 {
        self.pmas
            .iter()
            .filter(|(_, p)| p.cow)
            .map(|(&s, p)| p.end - s)
            .sum()
    }

    /// The memory-file range behind `addr`, if populated (for tests).
    #[cfg(test)]
    fn backing(&self, addr: u64) -> Option<(moat_memory::FileRange, bool)> {
        let (s, p) = self.pma_at(addr)?;
        Some((p.file_range(s), p.cow))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use moat_memory::MemoryFile;
    use moat_platform::{Platform, PlatformError, Prot};

    use super::super::{Placement, VmaKind, PAGE};
    use super::*;

    const RW: Prot = Prot(3);
    const ANON: VmaKind = VmaKind::Anonymous { shared: false };
    const SHARED: VmaKind = VmaKind::Anonymous { shared: true };

    /// The stub's page tables as a map: page -> (protection, file offset).
    type Pages = Arc<Mutex<BTreeMap<u64, (Prot, u64)>>>;

    /// An address space that records what is mapped, page by page.
    struct FakeAspace(Pages);

    impl AddressSpace for FakeAspace {
        fn map(&mut self, addr: u64, len: u64, prot: Prot, off: u64) -> Result<(), PlatformError> {
            let mut pages = self.0.lock().unwrap();
            for i in 0..len / PAGE {
                pages.insert(addr + i * PAGE, (prot, off + i * PAGE));
            }
            Ok(())
        }
        fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
            let mut pages = self.0.lock().unwrap();
            for i in 0..len / PAGE {
                pages.remove(&(addr + i * PAGE));
            }
            Ok(())
        }
        fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
            let mut pages = self.0.lock().unwrap();
            for i in 0..len / PAGE {
                let page = pages
                    .get_mut(&(addr + i * PAGE))
                    .expect("protect of a hole");
                page.0 = prot;
            }
            Ok(())
        }
    }

    fn fake() -> (Box<dyn AddressSpace>, Pages) {
        let pages = Pages::default();
        (Box::new(FakeAspace(pages.clone())), pages)
    }

    fn memory() -> Arc<MemoryFile> {
        Arc::new(MemoryFile::new(1 << 30).unwrap())
    }

    fn with(memory: &Arc<MemoryFile>, aspace: Box<dyn AddressSpace>) -> MemoryManager {
        let mut mm = MemoryManager::new(memory.clone(), aspace);
        mm.mmap_base = 0x7000_0000_0000;
        mm
    }

    /// A manager over a real ptrace stub.
    fn real(memory: &Arc<MemoryFile>) -> MemoryManager {
        let (aspace, ctx) = moat_platform::ptrace::PtracePlatform
            .new_address_space(memory)
            .unwrap();
        // Dropping a context ends its stub thread; the address space needs one on this thread.
        std::mem::forget(ctx);
        with(memory, aspace)
    }

    fn read(mm: &mut MemoryManager, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        mm.read_bytes(addr, &mut buf).unwrap();
        buf
    }

    fn host(pages: &Pages, addr: u64) -> Option<(Prot, u64)> {
        pages.lock().unwrap().get(&addr).copied()
    }

    #[test]
    fn fork_then_writes_stay_on_their_side() {
        let memory = memory();
        let mut parent = real(&memory);
        let a = parent
            .map_anonymous(Placement::Hint(0), 4 * PAGE, RW, ANON)
            .unwrap();
        parent.write_bytes(a, b"before").unwrap();
        parent.write_bytes(a + 3 * PAGE, b"last").unwrap();
        let mut child = parent.fork().unwrap();
        assert!(!child.is_attached());
        let (aspace, ctx) = moat_platform::ptrace::PtracePlatform
            .new_address_space(&memory)
            .unwrap();
        // Dropping a context ends its stub thread; the address space needs one on this thread.
        std::mem::forget(ctx);
        child.attach(aspace).unwrap();
        assert_eq!(
            parent.backing(a).unwrap().0,
            child.backing(a).unwrap().0,
            "no copy at fork"
        );

        parent.write_bytes(a, b"parent").unwrap();
        assert_eq!(read(&mut child, a, 6), b"before");
        assert_eq!(read(&mut parent, a, 6), b"parent");
        child.write_bytes(a + 3 * PAGE, b"kid!").unwrap();
        assert_eq!(read(&mut parent, a + 3 * PAGE, 4), b"last");
        assert_eq!(read(&mut child, a + 3 * PAGE, 4), b"kid!");
        // The child wrote page 3 after the parent had copied page 0: page 3 was still shared.
        assert_ne!(child.backing(a + 3 * PAGE), parent.backing(a + 3 * PAGE));
        // Layouts and the break are the same.
        assert_eq!(
            parent.vmas().map(|(s, v)| (s, *v)).collect::<Vec<_>>(),
            child.vmas().map(|(s, v)| (s, *v)).collect::<Vec<_>>()
        );
        assert_eq!((child.brk, child.mmap_base), (parent.brk, parent.mmap_base));
    }

    #[test]
    fn shared_anonymous_stays_shared() {
        let memory = memory();
        let (aspace, pages) = fake();
        let mut parent = with(&memory, aspace);
        let a = parent
            .map_anonymous(Placement::Hint(0), 2 * PAGE, RW, SHARED)
            .unwrap();
        parent.write_bytes(a, b"one").unwrap();
        let mut child = parent.fork().unwrap();
        let (aspace, child_pages) = fake();
        child.attach(aspace).unwrap();
        assert_eq!(
            host(&pages, a).unwrap().0,
            RW,
            "still writable in the parent"
        );
        assert_eq!(
            host(&child_pages, a),
            host(&pages, a),
            "same pages, writable"
        );
        child.write_bytes(a, b"two").unwrap();
        assert_eq!(read(&mut parent, a, 3), b"two");
        parent.write_bytes(a + PAGE, b"three").unwrap();
        assert_eq!(read(&mut child, a + PAGE, 5), b"three");
        assert_eq!(parent.cow_bytes() + child.cow_bytes(), 0);
        // MADV_DONTNEED keeps shared contents.
        child.discard(a, 2 * PAGE).unwrap();
        assert_eq!(read(&mut parent, a, 3), b"two");
        assert_eq!(read(&mut child, a + PAGE, 5), b"three");
        // MADV_REMOVE punches them for everyone.
        child.punch_shared(a + PAGE, PAGE).unwrap();
        assert_eq!(read(&mut parent, a + PAGE, 5), [0; 5]);
        assert_eq!(read(&mut child, a, 3), b"two");
    }

    #[test]
    fn private_memory_is_mapped_without_write_until_a_fault_copies_it() {
        let memory = memory();
        let (aspace, pages) = fake();
        let mut parent = with(&memory, aspace);
        let a = parent
            .map_anonymous(Placement::Hint(0), 64 * PAGE, RW, ANON)
            .unwrap();
        parent.write_bytes(a, &vec![7; 64 * PAGE as usize]).unwrap();
        let (before, _) = parent.backing(a).unwrap();
        let mut child = parent.fork().unwrap();
        let (aspace, child_pages) = fake();
        child.attach(aspace).unwrap();
        for p in [&pages, &child_pages] {
            assert_eq!(host(p, a), Some((Prot::READ, before.offset)));
            assert_eq!(
                host(p, a + 63 * PAGE),
                Some((Prot::READ, before.offset + 63 * PAGE))
            );
        }

        // A missing-page fault where a page is mapped lost a race with another thread of the
        // address space: it is retried, and changes nothing. A write fault breaks one chunk.
        let addr = a + 20 * PAGE + 5;
        assert!(parent.handle_fault(addr, false).resolved());
        assert_eq!(host(&pages, page_of(addr)).unwrap().0, Prot::READ);
        assert!(parent.handle_fault(addr, true).resolved());
        let chunk = addr & !(COW_CHUNK - 1);
        let (prot, off) = host(&pages, page_of(addr)).unwrap();
        assert_eq!(prot, RW);
        assert_ne!(off, before.offset + (page_of(addr) - a), "a new page");
        assert_eq!(host(&pages, chunk).unwrap().0, RW, "the whole chunk");
        assert_eq!(host(&pages, chunk - PAGE).unwrap().0, Prot::READ);
        assert_eq!(host(&pages, chunk + COW_CHUNK).unwrap().0, Prot::READ);
        assert_eq!(parent.cow_bytes(), 64 * PAGE - COW_CHUNK);
        assert_eq!(read(&mut parent, addr, 1), [7], "the copy has the contents");
        // A second write fault there is a race with another thread: the page is mapped again
        // as the tables say (writable, the parent's own now) and the write retried.
        assert!(parent.handle_fault(addr, true).resolved());
        assert_eq!(host(&pages, page_of(addr)).unwrap().0, RW);

        // The child lets go of everything: the parent's next faults make what is left of
        // each PMA writable in place, without copying.
        drop(child);
        let committed = memory.committed_bytes();
        assert!(parent.handle_fault(a, true).resolved());
        assert_eq!(parent.cow_bytes(), a + 64 * PAGE - (chunk + COW_CHUNK));
        assert!(parent.handle_fault(a + 64 * PAGE - 1, true).resolved());
        assert_eq!(parent.cow_bytes(), 0);
        assert_eq!(host(&pages, a), Some((RW, before.offset)));
        assert_eq!(
            host(&pages, a + 63 * PAGE),
            Some((RW, before.offset + 63 * PAGE))
        );
        assert_eq!(memory.committed_bytes(), committed);
    }

    fn page_of(addr: u64) -> u64 {
        addr & !(PAGE - 1)
    }

    #[test]
    fn mprotect_keeps_cow_pages_without_write() {
        let memory = memory();
        let (aspace, pages) = fake();
        let mut parent = with(&memory, aspace);
        let a = parent
            .map_anonymous(Placement::Hint(0), 2 * PAGE, Prot::READ, ANON)
            .unwrap();
        parent.write_bytes_force(a, b"ro").unwrap();
        let mut child = parent.fork().unwrap();
        child.attach(fake().0).unwrap();
        assert_eq!(host(&pages, a).unwrap().0, Prot::READ);
        assert!(
            !parent.handle_fault(a, true).resolved(),
            "not writable: a real fault"
        );
        parent.protect(a, 2 * PAGE, RW).unwrap();
        assert_eq!(
            host(&pages, a).unwrap().0,
            Prot::READ,
            "still without write"
        );
        assert!(parent.handle_fault(a, true).resolved());
        assert_eq!(host(&pages, a).unwrap().0, RW);
        parent.write_bytes(a, b"rw").unwrap();
        assert_eq!(read(&mut child, a, 2), b"ro");
        // The loader's forced write breaks the sharing too.
        child.write_bytes_force(a + PAGE, b"x").unwrap();
        assert_eq!(read(&mut parent, a + PAGE, 1), [0]);
    }

    #[test]
    fn discard_of_a_cow_page_zeroes_only_that_side() {
        let memory = memory();
        let mut parent = real(&memory);
        let a = parent
            .map_anonymous(Placement::Hint(0), 3 * PAGE, RW, ANON)
            .unwrap();
        parent.write_bytes(a, &[1; 3 * PAGE as usize]).unwrap();
        let mut child = parent.fork().unwrap();
        child.discard(a + PAGE, PAGE).unwrap();
        assert_eq!(read(&mut child, a + PAGE, 2), [0, 0]);
        assert_eq!(read(&mut child, a, 1), [1]);
        assert_eq!(
            read(&mut parent, a + PAGE, 2),
            [1, 1],
            "the parent keeps its data"
        );
        parent.discard(a, 3 * PAGE).unwrap();
        assert_eq!(read(&mut parent, a + 2 * PAGE, 1), [0]);
        assert_eq!(read(&mut child, a + 2 * PAGE, 1), [1]);
    }

    #[test]
    fn munmap_in_the_child_leaves_the_parent_its_data() {
        let memory = memory();
        let mut parent = real(&memory);
        let a = parent
            .map_anonymous(Placement::Hint(0), 8 * PAGE, RW, ANON)
            .unwrap();
        parent.write_bytes(a + 5 * PAGE, b"kept").unwrap();
        let mut child = parent.fork().unwrap();
        child.unmap(a, 8 * PAGE).unwrap();
        assert_eq!(read(&mut parent, a + 5 * PAGE, 4), b"kept");
        let (range, _) = parent.backing(a).unwrap();
        assert_eq!(memory.ref_count(range.offset), 1);
        // brk shrink in the child likewise only drops its references.
        let heap = 0x4000_0000;
        parent.brk_start = heap;
        parent.brk = heap;
        assert_eq!(parent.set_brk(heap + 2 * PAGE), heap + 2 * PAGE);
        parent.write_bytes(heap, b"heap").unwrap();
        let mut child = parent.fork().unwrap();
        assert_eq!(child.set_brk(heap), heap);
        assert_eq!(read(&mut parent, heap, 4), b"heap");
    }

    #[test]
    fn remap_keeps_cow() {
        let memory = memory();
        let (aspace, pages) = fake();
        let mut parent = with(&memory, aspace);
        let a = parent
            .map_anonymous(Placement::Hint(0), 2 * PAGE, RW, ANON)
            .unwrap();
        parent.write_bytes(a, b"moved").unwrap();
        let mut child = parent.fork().unwrap();
        let b = parent
            .remap(a, 2 * PAGE, 2 * PAGE, true, Some(0x5000_0000))
            .unwrap();
        assert_eq!(host(&pages, b).unwrap().0, Prot::READ);
        parent.write_bytes(b, b"MOVED").unwrap();
        assert_eq!(read(&mut child, a, 5), b"moved");
    }

    #[test]
    fn no_leak_and_no_eager_copy() {
        let memory = memory();
        let start = memory.allocated_bytes();
        {
            let (aspace, _) = fake();
            let mut parent = with(&memory, aspace);
            let len = 1024 * PAGE;
            let a = parent
                .map_anonymous(Placement::Hint(0), len, RW, ANON)
                .unwrap();
            let s = parent
                .map_anonymous(Placement::Hint(0), 16 * PAGE, RW, SHARED)
                .unwrap();
            parent.write_bytes(a, &vec![3; len as usize]).unwrap();
            parent.write_bytes(s, b"shared").unwrap();
            let committed = memory.committed_bytes();
            let allocated = memory.allocated_bytes();
            let mut child = parent.fork().unwrap();
            child.attach(fake().0).unwrap();
            assert_eq!(memory.committed_bytes(), committed, "nothing copied");
            assert_eq!(memory.allocated_bytes(), allocated, "nothing allocated");
            // One write in the middle copies one chunk, not the 4 MiB.
            child.write_bytes(a + 500 * PAGE, b"x").unwrap();
            assert!(memory.committed_bytes() - committed <= COW_CHUNK);
            let mut grandchild = child.fork().unwrap();
            grandchild.write_bytes(a + 10 * PAGE, b"y").unwrap();
            drop(parent);
            assert_eq!(read(&mut child, a + 1000 * PAGE, 1), [3]);
            assert_eq!(read(&mut grandchild, a + 10 * PAGE, 1), b"y");
            assert_eq!(read(&mut grandchild, s, 6), b"shared");
        }
        assert_eq!(memory.allocated_bytes(), start, "every reference dropped");
        assert_eq!(memory.committed_bytes(), 0, "and every page punched");
    }

    /// `loop: mov %sil, (%rdi); add %rdx, %rdi; dec %rcx; jnz loop; mov $39, %eax; syscall`:
    /// write one byte every `rdx` bytes, `rcx` times, from `rdi` on, then trap with a system
    /// call.
    const TOUCH: [u8; 18] = [
        0x40, 0x88, 0x37, 0x48, 0x01, 0xd7, 0x48, 0xff, 0xc9, 0x75, 0xf5, 0xb8, 39, 0, 0, 0, 0x0f,
        0x05,
    ];
    const CODE: u64 = 0x40_0000;
    thread_local! {
        /// Time spent in `handle_fault` by `touch_every` on this thread (for the measurement).
        static HANDLE: std::cell::Cell<std::time::Duration> =
            const { std::cell::Cell::new(std::time::Duration::ZERO) };
    }

    /// Run [`TOUCH`] in `mm`'s stub: write `byte` to the first byte of each of `pages` pages
    /// at `addr`, resolving faults as the task loop does; returns the number of faults.
    fn touch(
        mm: &mut MemoryManager,
        ctx: &mut Box<dyn moat_platform::Context>,
        addr: u64,
        pages: u64,
        byte: u8,
    ) -> usize {
        touch_every(mm, ctx, addr, pages, PAGE, byte)
    }

    fn touch_every(
        mm: &mut MemoryManager,
        ctx: &mut Box<dyn moat_platform::Context>,
        addr: u64,
        count: u64,
        stride: u64,
        byte: u8,
    ) -> usize {
        let mut regs = moat_platform::Regs {
            rip: CODE,
            rdi: addr,
            rsi: u64::from(byte),
            rcx: count,
            rdx: stride,
            cs: 0x33,
            ss: 0x2b,
            eflags: 0x202,
            ..Default::default()
        };
        let mut faults = 0;
        loop {
            match ctx.switch(&mut regs).unwrap() {
                moat_platform::Trap::Syscall => return faults,
                moat_platform::Trap::Fault { signo, code, addr } => {
                    assert_eq!(signo, libc::SIGSEGV);
                    let t = std::time::Instant::now();
                    assert!(
                        mm.handle_fault(addr, code == 2).resolved(),
                        "unresolved fault"
                    );
                    HANDLE.with(|h| h.set(h.get() + t.elapsed()));
                    faults += 1;
                }
                moat_platform::Trap::Interrupted => {}
            }
        }
    }

    #[test]
    fn application_writes_fault_and_copy() {
        let memory = memory();
        let (aspace, mut ctx) = moat_platform::ptrace::PtracePlatform
            .new_address_space(&memory)
            .unwrap();
        let mut parent = with(&memory, aspace);
        let rx = Prot(Prot::READ.0 | Prot::EXEC.0);
        parent
            .map_anonymous(Placement::Fixed(CODE), PAGE, rx, ANON)
            .unwrap();
        parent.write_bytes_force(CODE, &TOUCH).unwrap();
        let pages = 40;
        let a = parent
            .map_anonymous(Placement::Hint(0), pages * PAGE, RW, ANON)
            .unwrap();
        assert_eq!(touch(&mut parent, &mut ctx, a, pages, b'a'), 1, "populate");
        let mut child = parent.fork().unwrap();
        let (aspace, mut child_ctx) = moat_platform::ptrace::PtracePlatform
            .new_address_space(&memory)
            .unwrap();
        child.attach(aspace).unwrap();

        let faults = touch(&mut parent, &mut ctx, a, pages, b'p');
        let chunks = (a + pages * PAGE).div_ceil(COW_CHUNK) - a / COW_CHUNK;
        assert_eq!(faults as u64, chunks, "one write fault per chunk");
        assert_eq!(touch(&mut parent, &mut ctx, a, pages, b'P'), 0);
        assert_eq!(read(&mut child, a + 39 * PAGE, 1), b"a");
        // The parent copied everything: the child's pages are its own, writable in place.
        assert_eq!(touch(&mut child, &mut child_ctx, a, pages, b'c'), 1);
        assert_eq!(read(&mut child, a + 17 * PAGE, 1), b"c");
        assert_eq!(read(&mut parent, a + 17 * PAGE, 1), b"P");
    }

    /// Not a test: what write faults cost with the chunk size, for dense and sparse writes
    /// (`cargo test --release -p moat-kernel --lib measure_cow -- --ignored --nocapture`).
    #[test]
    #[ignore = "measurement"]
    fn measure_cow_faults() {
        let memory = memory();
        let (aspace, mut ctx) = moat_platform::ptrace::PtracePlatform
            .new_address_space(&memory)
            .unwrap();
        let mut parent = with(&memory, aspace);
        let rx = Prot(Prot::READ.0 | Prot::EXEC.0);
        parent
            .map_anonymous(Placement::Fixed(CODE), PAGE, rx, ANON)
            .unwrap();
        parent.write_bytes_force(CODE, &TOUCH).unwrap();
        let pages = 8192;
        let a = parent
            .map_anonymous(Placement::Hint(0), pages * PAGE, RW, ANON)
            .unwrap();
        touch(&mut parent, &mut ctx, a, pages, 1);
        for stride in [PAGE, 16 * PAGE] {
            let child = parent.fork().unwrap();
            let committed = memory.committed_bytes();
            HANDLE.with(|h| h.set(std::time::Duration::ZERO));
            let t = std::time::Instant::now();
            let faults = touch_every(&mut parent, &mut ctx, a, pages * PAGE / stride, stride, 2);
            let elapsed = t.elapsed();
            println!(
                "chunk {} KiB, a write every {} KiB of {} MiB: {faults} faults, {elapsed:?} \
                 ({:?} in handle_fault), {:?} per fault, {} KiB copied",
                COW_CHUNK >> 10,
                stride >> 10,
                (pages * PAGE) >> 20,
                HANDLE.with(std::cell::Cell::get),
                elapsed / faults.max(1) as u32,
                (memory.committed_bytes() - committed) >> 10,
            );
            drop(child);
        }
    }

    #[test]
    fn detached_manager_maps_everything_on_attach() {
        let memory = memory();
        let mut mm = MemoryManager::new_detached(memory.clone());
        mm.mmap_base = 0x7000_0000_0000;
        let a = mm
            .map_anonymous(Placement::Hint(0), 2 * PAGE, RW, ANON)
            .unwrap();
        mm.write_bytes(a, b"early").unwrap();
        let (aspace, pages) = fake();
        mm.attach(aspace).unwrap();
        let (range, _) = mm.backing(a).unwrap();
        assert_eq!(host(&pages, a), Some((RW, range.offset)));
        assert_eq!(host(&pages, a + PAGE), Some((RW, range.offset + PAGE)));
    }
}
