//! Syscall-site patching: which sites of an address space the kernel rewrote into jumps to
//! the platform's trampolines, and keeping that true as the application changes its memory.
//!
//! The machine code (sites, the `[moat]` area, trampolines) and why the rewrite is safe
//! against threads running the site are the platform's (`moat_platform::systrap::patch`);
//! this file decides which sites qualify and undoes patches the application's own changes
//! would break:
//! - a site qualifies when a system call trapped through it (the slow way), its seven bytes
//!   are `mov $nr, %eax; syscall` for the number that trapped, they lie in one page of a
//!   private, executable, not writable mapping (a program's or library's text, or JIT code
//!   after it was made read-only), and the number is not `rt_sigreturn` (which restores
//!   `%rcx` and `%r11` that the patched path's return overwrites);
//! - making a patched page writable or not executable, moving it (`mremap`) or discarding it
//!   puts the original bytes back first (or forgets the site), so the application never
//!   writes over a patched site or runs a moved copy of one; JIT code that rewrites a page
//!   therefore always writes over its own bytes, and a page written while writable and
//!   executable is never patched;
//! - an application mapping over the `[moat]` area (`MAP_FIXED`, `munmap`, `mprotect`,
//!   `mremap`, `madvise(MADV_DONTNEED)`) puts every site back and ends patching in that
//!   address space;
//! - `fork` copies the table with the memory (the child's pages are copies of the parent's);
//!   `execve` starts a new address space with nothing patched.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use moat_platform::systrap::patch as code;
use moat_platform::Prot;

use super::{MemoryManager, Placement, VmaKind, PAGE};

/// How many unpatchable sites are remembered (so the check costs a lookup), and how many
/// recently restored sites are still recognised when a thread that fetched the patched bytes
/// traps on them.
const REJECTED_MAX: usize = 4096;
const RESTORED_MAX: usize = 64;
/// A site is patched the `PATCH_AFTER`th time its call traps the slow way, not the first:
/// patching costs about as much as twenty slow traps (the `[moat]` area, a private copy of
/// the page, its mapping in the stub), and most sites of a short-lived process run once or
/// twice (ld.so's start-up calls in every `execve`), where patching cost more than it saved.
/// A hot site pays a few slow traps once.
const PATCH_AFTER: u8 = 8;
/// How many sites that trapped but are not patched yet are counted (cleared when full).
const PENDING_MAX: usize = 4096;
/// `rt_sigreturn`: never patched (see the module's documentation).
const RT_SIGRETURN: u32 = 15;

/// One patched site: its call's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Site {
    nr: u32,
}

/// An address space's patched sites.
#[derive(Clone, Debug, Default)]
pub(super) struct Patches {
    /// The `[moat]` area is mapped.
    area: bool,
    /// No more patching in this address space (the application took the area's range, or the
    /// table is full).
    off: bool,
    /// The next free table entry (entries are never reused: a copy of a site's bytes the
    /// kernel does not know about can only ever reach its own trampoline).
    next: u64,
    sites: BTreeMap<u64, Site>,
    /// Sites put back recently: (address, number).
    restored: VecDeque<(u64, u32)>,
    rejected: BTreeSet<u64>,
    /// Sites that trapped fewer than [`PATCH_AFTER`] times so far, with their count.
    pending: BTreeMap<u64, u8>,
}

/// What a fault at a patched site means (see [`MemoryManager::patched_site_fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteFault {
    /// The `syscall` of the site was reached (a jump into the site, or a thread that ran the
    /// old `mov` before the rewrite): the system call in `%rax`, returning after the site.
    SyscallInRax { ret: u64 },
    /// The `int3` of a rewrite in progress: the site's own call.
    Site { nr: u32, ret: u64 },
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

const AREA: (u64, u64) = (code::AREA_BASE, code::AREA_BASE + code::AREA_LEN);

impl MemoryManager {
    /// A system call trapped the slow way with `rip` after its `syscall`: patch the site if
    /// it qualifies.
    pub fn consider_patching(&mut self, rip: u64, nr: u64) {
        if self.patches.off {
            return;
        }
        let Some(site) = rip.checked_sub(code::SITE_LEN) else {
            return;
        };
        if overlaps((site, rip), AREA)
            || self.patches.sites.contains_key(&site)
            || self.patches.rejected.contains(&site)
        {
            return;
        }
        if self.patches.pending.len() >= PENDING_MAX {
            self.patches.pending.clear();
        }
        let traps = self.patches.pending.entry(site).or_insert(0);
        *traps += 1;
        if *traps < PATCH_AFTER {
            return;
        }
        self.patches.pending.remove(&site);
        if !self.site_qualifies(site, nr) {
            if self.patches.rejected.len() >= REJECTED_MAX {
                self.patches.rejected.clear();
            }
            self.patches.rejected.insert(site);
            return;
        }
        if let Err(e) = self.patch_site(site, nr as u32) {
            tracing::debug!("patching the site at {site:#x}: {e:?}");
            self.patches.rejected.insert(site);
        }
    }

    fn site_qualifies(&mut self, site: u64, nr: u64) -> bool {
        let last = site + code::SITE_LEN - 1;
        if page_of(site) != page_of(last) || nr == u64::from(RT_SIGRETURN) || nr >= 1024 {
            return false;
        }
        let Some((_, vma)) = self.find_vma(site) else {
            return false;
        };
        let private = matches!(
            vma.kind,
            VmaKind::Anonymous { shared: false } | VmaKind::File { .. }
        );
        if !private || !vma.prot.executable() || vma.prot.writable() {
            return false;
        }
        let mut bytes = [0u8; 7];
        self.read_bytes(site, &mut bytes).is_ok()
            && code::parse_original_site(&bytes) == Some(nr as u32)
    }

    /// Map the `[moat]` area if it is not yet: `false` if it cannot be (patching then ends).
    fn ensure_patch_area(&mut self) -> bool {
        if self.patches.area {
            return true;
        }
        let prot = Prot(Prot::READ.0 | Prot::EXEC.0);
        let kind = VmaKind::Anonymous { shared: false };
        if self
            .map_anonymous(
                Placement::FixedNoReplace(code::AREA_BASE),
                code::AREA_LEN,
                prot,
                kind,
            )
            .is_err()
        {
            self.patches.off = true;
            return false;
        }
        self.name_range(AREA.0, AREA.1, b"[moat]");
        if self
            .write_bytes_force(code::ENTRY_SLOT, &code::entry_address().to_le_bytes())
            .is_err()
        {
            self.patches.off = true;
            return false;
        }
        self.patches.area = true;
        true
    }

    fn patch_site(&mut self, site: u64, nr: u32) -> Result<(), moat_abi::Errno> {
        if !self.ensure_patch_area() {
            return Ok(());
        }
        let index = self.patches.next;
        if index >= code::MAX_SITES {
            self.patches.off = true;
            return Ok(());
        }
        self.patches.next += 1;
        let tramp = code::trampoline_address(index);
        self.write_bytes_force(tramp, &code::trampoline(nr, site + code::SITE_LEN))?;
        self.write_bytes_force(code::table_entry(index), &tramp.to_le_bytes())?;
        self.patches.sites.insert(site, Site { nr });
        let new = code::patched_site(index);
        // The order the platform's documentation gives: tail, int3, middle, first byte. The
        // first write also gives this address space its own copy of the page.
        self.write_ordered(site + 5, &new[5..])?;
        self.write_ordered(site, &[0xcc])?;
        self.write_ordered(site + 1, &new[1..5])?;
        self.write_ordered(site, &new[..1])?;
        tracing::debug!("patched the site at {site:#x} (system call {nr}, entry {index})");
        Ok(())
    }

    /// One step of a rewrite: written, then fenced so the next step cannot pass it.
    fn write_ordered(&mut self, addr: u64, bytes: &[u8]) -> Result<(), moat_abi::Errno> {
        self.write_bytes_force(addr, bytes)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Put the original bytes of a patched site back (the reverse order), and forget it.
    fn restore_site(&mut self, site: u64) {
        let Some(s) = self.patches.sites.remove(&site) else {
            return;
        };
        // While patched the page is not writable by the application: whatever differs from
        // the original bytes there is the kernel's (the patch, or a rewrite cut short).
        let old = code::original_site(s.nr);
        let mut bytes = [0u8; 7];
        if self.read_bytes_any(site, &mut bytes) && bytes != old {
            let steps: [(u64, &[u8]); 4] = [
                (site, &[0xcc]),
                (site + 1, &old[1..5]),
                (site, &old[..1]),
                (site + 5, &old[5..]),
            ];
            for (addr, b) in steps {
                if self.write_ordered(addr, b).is_err() {
                    break;
                }
            }
        }
        if self.patches.restored.len() >= RESTORED_MAX {
            self.patches.restored.pop_front();
        }
        self.patches.restored.push_back((site, s.nr));
    }

    /// Read application bytes; `false` if they cannot be read.
    fn read_bytes_any(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.read_bytes(addr, buf).is_ok()
    }

    /// Sites in `[start, end)`.
    fn sites_in(&self, start: u64, end: u64) -> Vec<u64> {
        self.patches
            .sites
            .range(start.saturating_sub(code::SITE_LEN - 1)..end)
            .map(|(&s, _)| s)
            .collect()
    }

    fn forget_rejected(&mut self, start: u64, end: u64) {
        let hit: Vec<u64> = self.patches.rejected.range(start..end).copied().collect();
        for s in hit {
            self.patches.rejected.remove(&s);
        }
    }

    /// Everything back, and no more patching here (the application took the area).
    fn end_patching(&mut self) {
        let all: Vec<u64> = self.patches.sites.keys().copied().collect();
        for site in all {
            self.restore_site(site);
        }
        self.patches.area = false;
        self.patches.off = true;
        tracing::debug!("the application took the [moat] area: patching ends");
    }

    /// `[start, end)` is about to be unmapped or replaced (`moved`: moved elsewhere).
    pub(super) fn patches_before_detach(&mut self, start: u64, end: u64, moved: bool) {
        if self.patches.area && overlaps((start, end), AREA) {
            self.end_patching();
        }
        for site in self.sites_in(start, end) {
            if moved {
                self.restore_site(site);
            } else {
                self.patches.sites.remove(&site);
            }
        }
        self.forget_rejected(start, end);
        self.patches
            .restored
            .retain(|&(s, _)| s < start || s >= end);
    }

    /// `[start, end)` is about to get `prot`.
    pub(super) fn patches_before_protect(&mut self, start: u64, end: u64, prot: Prot) {
        if self.patches.area && overlaps((start, end), AREA) {
            self.end_patching();
        }
        if prot.writable() || !prot.executable() {
            for site in self.sites_in(start, end) {
                self.restore_site(site);
            }
        }
        // A page made read-only and executable again may qualify now.
        self.forget_rejected(start, end);
    }

    /// `[start, end)` is about to be discarded (`MADV_DONTNEED`): its private pages read
    /// afresh (the original bytes, or zeros), and the area's would lose the trampolines.
    pub(super) fn patches_discarded(&mut self, start: u64, end: u64) {
        if self.patches.area && overlaps((start, end), AREA) {
            self.end_patching();
        }
        for site in self.sites_in(start, end) {
            self.patches.sites.remove(&site);
        }
    }

    /// A fault at `rip` (`SIGILL` or `SIGTRAP`): whether it is a patched site's, and how to
    /// serve it. A thread traps there only on bytes the kernel wrote, which the application
    /// cannot have changed while the site is patched; a site restored recently is recognised
    /// only while its bytes are still the original ones (then no instruction of the
    /// application's own can have raised the fault there).
    pub fn patched_site_fault(&mut self, signo: i32, rip: u64) -> Option<SiteFault> {
        let (site, ill) = match signo {
            libc::SIGILL => (rip.checked_sub(5)?, true),
            libc::SIGTRAP => (rip.checked_sub(1)?, false),
            _ => return None,
        };
        let nr = match self.patches.sites.get(&site) {
            Some(s) => s.nr,
            None => {
                let &(_, nr) = self.patches.restored.iter().find(|(s, _)| *s == site)?;
                let mut bytes = [0u8; 7];
                if !self.read_bytes_any(site, &mut bytes) || bytes != code::original_site(nr) {
                    return None;
                }
                nr
            }
        };
        let ret = site + code::SITE_LEN;
        Some(if ill {
            SiteFault::SyscallInRax { ret }
        } else {
            SiteFault::Site { nr, ret }
        })
    }
}

fn page_of(addr: u64) -> u64 {
    addr & !(PAGE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_memory::MemoryFile;
    use std::sync::Arc;

    const RX: Prot = Prot(5);
    const RW: Prot = Prot(3);
    const CODE: u64 = 0x40_0000;

    /// An address space (no stub: the tables alone) with `mov $39, %eax; syscall` at `CODE+at`
    /// in two read-only executable pages.
    fn with_site(at: u64) -> MemoryManager {
        let memory = Arc::new(MemoryFile::new(1 << 26).unwrap());
        let mut mm = MemoryManager::new_detached(memory);
        let kind = VmaKind::Anonymous { shared: false };
        mm.map_anonymous(Placement::Fixed(CODE), 2 * PAGE, RX, kind)
            .unwrap();
        mm.write_bytes_force(CODE + at, &code::original_site(39))
            .unwrap();
        mm
    }

    /// The call `nr` trapped the slow way at `rip` often enough to be patched.
    fn trap(mm: &mut MemoryManager, rip: u64, nr: u64) {
        for _ in 0..PATCH_AFTER {
            mm.consider_patching(rip, nr);
        }
    }

    fn bytes(mm: &mut MemoryManager, at: u64) -> [u8; 7] {
        let mut b = [0u8; 7];
        mm.read_bytes(at, &mut b).unwrap();
        b
    }

    #[test]
    fn a_site_is_patched_served_and_restored() {
        let mut mm = with_site(0x10);
        let site = CODE + 0x10;
        // The wrong number, or not the end of a site: nothing.
        trap(&mut mm, site + 7, 40);
        assert_eq!(bytes(&mut mm, site), code::original_site(39));
        mm.patches.rejected.clear();
        // Not before its PATCH_AFTERth slow trap.
        for _ in 1..PATCH_AFTER {
            mm.consider_patching(site + 7, 39);
        }
        assert_eq!(bytes(&mut mm, site), code::original_site(39));
        mm.consider_patching(site + 7, 39);
        assert_eq!(bytes(&mut mm, site), code::patched_site(0));
        assert_eq!(mm.name_at(code::AREA_BASE), Some(&b"[moat]"[..]));
        let mut entry = [0u8; 8];
        mm.read_bytes(code::table_entry(0), &mut entry).unwrap();
        assert_eq!(u64::from_le_bytes(entry), code::trampoline_address(0));
        let mut tramp = [0u8; 64];
        mm.read_bytes(code::trampoline_address(0), &mut tramp)
            .unwrap();
        assert_eq!(tramp, code::trampoline(39, site + 7));
        // A jump to the site's `syscall` (SIGILL on byte 5), the int3 of a rewrite.
        assert_eq!(
            mm.patched_site_fault(libc::SIGILL, site + 5),
            Some(SiteFault::SyscallInRax { ret: site + 7 })
        );
        assert_eq!(
            mm.patched_site_fault(libc::SIGTRAP, site + 1),
            Some(SiteFault::Site {
                nr: 39,
                ret: site + 7
            })
        );
        assert_eq!(mm.patched_site_fault(libc::SIGILL, site + 4), None);
        assert_eq!(mm.patched_site_fault(libc::SIGSEGV, site + 5), None);
        // Writable again: the original bytes, and still recognised for a late fault...
        mm.protect(CODE, PAGE, RW).unwrap();
        assert_eq!(bytes(&mut mm, site), code::original_site(39));
        assert_eq!(
            mm.patched_site_fault(libc::SIGILL, site + 5),
            Some(SiteFault::SyscallInRax { ret: site + 7 })
        );
        // ...until the program writes something else there.
        mm.write_bytes(site, &[0x90; 7]).unwrap();
        assert_eq!(mm.patched_site_fault(libc::SIGILL, site + 5), None);
        // A writable page is never patched.
        mm.write_bytes(site, &code::original_site(39)).unwrap();
        trap(&mut mm, site + 7, 39);
        assert_eq!(bytes(&mut mm, site), code::original_site(39));
        // Executable and read-only again: patched again, with a new entry.
        mm.protect(CODE, PAGE, RX).unwrap();
        trap(&mut mm, site + 7, 39);
        assert_eq!(bytes(&mut mm, site), code::patched_site(1));
    }

    #[test]
    fn sites_are_put_back_when_the_area_or_the_page_goes() {
        let mut mm = with_site(0x20);
        let site = CODE + 0x20;
        trap(&mut mm, site + 7, 39);
        assert_eq!(bytes(&mut mm, site), code::patched_site(0));
        // Moved: the bytes that move are the original ones.
        let moved = mm
            .remap(CODE, 2 * PAGE, 2 * PAGE, true, Some(0x50_0000))
            .unwrap();
        assert_eq!(bytes(&mut mm, moved + 0x20), code::original_site(39));
        trap(&mut mm, moved + 0x20 + 7, 39);
        assert_eq!(bytes(&mut mm, moved + 0x20), code::patched_site(1));
        // The program maps over the area: every site back, no more patching.
        let kind = VmaKind::Anonymous { shared: false };
        mm.map_anonymous(Placement::Fixed(code::AREA_BASE), PAGE, RW, kind)
            .unwrap();
        assert_eq!(bytes(&mut mm, moved + 0x20), code::original_site(39));
        trap(&mut mm, moved + 0x20 + 7, 39);
        assert_eq!(bytes(&mut mm, moved + 0x20), code::original_site(39));
    }

    #[test]
    fn a_site_across_pages_or_in_shared_memory_is_left_alone() {
        let mut mm = with_site(PAGE - 3);
        trap(&mut mm, CODE + PAGE + 4, 39);
        assert_eq!(bytes(&mut mm, CODE + PAGE - 3), code::original_site(39));
        assert!(!mm.patches.area);
        let mut mm = with_site(0);
        mm.set_kind(CODE, VmaKind::Anonymous { shared: true });
        assert!(mm.find_vma(CODE).unwrap().1.kind.is_shared());
        trap(&mut mm, CODE + 7, 39);
        assert_eq!(bytes(&mut mm, CODE), code::original_site(39));
    }
}
