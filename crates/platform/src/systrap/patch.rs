//! Syscall-site patching (x86-64): the machine code of patched sites and their trampolines.
//!
//! The most common system call site is `mov $nr, %eax; syscall` (`b8 imm32 0f 05`, seven
//! bytes). The kernel (`moat_kernel::patch` decides where and when) rewrites it into
//! `jmp *TABLE+8*i` (`ff 24 25 disp32`, also seven bytes), an indirect jump through entry `i`
//! of a table Moat maps low in the application's address space (`[moat]`, [`AREA_BASE`]).
//! Entry `i` points at trampoline `i`, which knows the site's number and return address:
//!
//! ```text
//! tramp_i:    mov $nr, %eax
//!             lea fallback_i(%rip), %rcx
//!             jmp *ENTRY                  ; the stub's patched path
//! fallback_i: mov $nr, %eax
//!             syscall                     ; traps (SIGSYS): the usual path
//!             movabs $site+7, %rcx        ; the return address, also read by the stub
//!             jmp *%rcx
//! ```
//!
//! Nothing pushes: a `call` would write into the application's red zone. `%rax`, `%rcx` and
//! `%r11` are free because `syscall` itself overwrites them. The stub's patched path
//! (`moat_systrap_patched` in [`super::stub`]) finds the thread's slot from its GS base, which
//! Moat points at the slot; an application that set its own GS base takes the fallback.
//!
//! The table sits at an address whose third byte is `0x06`, so the patched site's sixth
//! byte — where `syscall` began — is `06`, an invalid instruction in 64-bit mode: a jump into
//! the middle of the site (a branch to its `syscall`, a thread that executed the old `mov`
//! just before the rewrite, a restarted call whose `rip` went back two bytes) raises
//! `SIGILL` there, and the kernel serves that as the system call in `%rax`.
//!
//! The rewrite is ordered so that a thread running the site at any moment does something
//! right (each step a store of whole bytes, which other CPUs see in order, x86 being TSO): first the
//! tail (`06 00`: the old `mov` then traps), then `int3` over the first byte (a thread that
//! gets there traps and the kernel serves the site's call), then the middle bytes, last the
//! first byte `ff`. An instruction is never fetched half old and half new across one of
//! these steps except by a CPU that was fetching it while it changed, which x86 processors
//! detect (cross-modifying code snoops the pipeline) — the same reasoning as Linux's
//! `text_poke_bp`, minus the cross-CPU serialization Moat cannot ask for in another process.

use crate::{STUB_AREA_BASE, STUB_BASE};

/// Where the `[moat]` area starts: the jump table (8-byte entries).
pub const AREA_BASE: u64 = 0x6_0000;
/// How many sites one address space may patch (the table's entries).
pub const MAX_SITES: u64 = 0x1_0000 / 8;
/// The word holding the stub's patched entry (every trampoline jumps through it).
pub const ENTRY_SLOT: u64 = AREA_BASE + 0x1_0000;
/// The trampolines, [`TRAMPOLINE_LEN`] bytes each.
pub const TRAMPOLINES: u64 = ENTRY_SLOT + 0x1000;
pub const TRAMPOLINE_LEN: u64 = 64;
/// Size of the `[moat]` area.
pub const AREA_LEN: u64 = TRAMPOLINES + MAX_SITES * TRAMPOLINE_LEN - AREA_BASE;
/// A site is seven bytes; the patched one's byte 5 is [`TRAP_BYTE`].
pub const SITE_LEN: u64 = 7;
pub const TRAP_BYTE: u8 = 0x06;
/// Offset of the fallback in a trampoline.
const FALLBACK: usize = 19;

const _: () = assert!((AREA_BASE >> 16) & 0xff == TRAP_BYTE as u64);
const _: () = assert!(AREA_BASE + AREA_LEN < 1 << 31);
const _: () = assert!(STUB_AREA_BASE < STUB_BASE);

/// The original site for `nr`: `mov $nr, %eax; syscall`.
pub fn original_site(nr: u32) -> [u8; 7] {
    let n = nr.to_le_bytes();
    [0xb8, n[0], n[1], n[2], n[3], 0x0f, 0x05]
}

/// Whether `bytes` are an original site, and its number.
pub fn parse_original_site(bytes: &[u8; 7]) -> Option<u32> {
    (bytes[0] == 0xb8 && bytes[5..] == [0x0f, 0x05])
        .then(|| u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

/// The patched site for table entry `index`: `jmp *AREA_BASE+8*index`.
pub fn patched_site(index: u64) -> [u8; 7] {
    debug_assert!(index < MAX_SITES);
    let a = ((AREA_BASE + 8 * index) as u32).to_le_bytes();
    [0xff, 0x24, 0x25, a[0], a[1], a[2], a[3]]
}

/// The table entry a patched site jumps through, if `bytes` are one.
pub fn parse_patched_site(bytes: &[u8; 7]) -> Option<u64> {
    if bytes[..3] != [0xff, 0x24, 0x25] {
        return None;
    }
    let addr = u64::from(u32::from_le_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]));
    let index = addr.checked_sub(AREA_BASE)? / 8;
    (addr % 8 == 0 && index < MAX_SITES).then_some(index)
}

/// Address of table entry `index`.
pub fn table_entry(index: u64) -> u64 {
    AREA_BASE + 8 * index
}

/// Address of trampoline `index`.
pub fn trampoline_address(index: u64) -> u64 {
    TRAMPOLINES + TRAMPOLINE_LEN * index
}

/// Whether this host can run patched sites (`FSGSBASE` for `rdgsbase`, and an XSAVE area
/// that fits a slot); `MOAT_SYSTRAP_PATCH=0` turns them off even so.
pub fn available() -> bool {
    super::patching_supported()
}

/// The stub's patched entry, for [`ENTRY_SLOT`].
pub fn entry_address() -> u64 {
    super::stub::patched_entry_address()
}

/// Trampoline `index` for a site calling `nr` that returns to `ret` (see the module's
/// documentation).
pub fn trampoline(nr: u32, ret: u64) -> [u8; TRAMPOLINE_LEN as usize] {
    let mut t = [0xcc_u8; TRAMPOLINE_LEN as usize];
    let n = nr.to_le_bytes();
    let entry = (ENTRY_SLOT as u32).to_le_bytes();
    // mov $nr, %eax
    t[0] = 0xb8;
    t[1..5].copy_from_slice(&n);
    // lea fallback(%rip), %rcx: the next instruction starts at 12.
    t[5..8].copy_from_slice(&[0x48, 0x8d, 0x0d]);
    t[8..12].copy_from_slice(&((FALLBACK - 12) as u32).to_le_bytes());
    // jmp *ENTRY_SLOT
    t[12..15].copy_from_slice(&[0xff, 0x24, 0x25]);
    t[15..19].copy_from_slice(&entry);
    // fallback: mov $nr, %eax; syscall; movabs $ret, %rcx; jmp *%rcx
    let f = FALLBACK;
    t[f] = 0xb8;
    t[f + 1..f + 5].copy_from_slice(&n);
    t[f + 5..f + 7].copy_from_slice(&[0x0f, 0x05]);
    t[f + 7..f + 9].copy_from_slice(&[0x48, 0xb9]);
    t[f + 9..f + 17].copy_from_slice(&ret.to_le_bytes());
    t[f + 17..f + 19].copy_from_slice(&[0xff, 0xe1]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_round_trip() {
        assert_eq!(parse_original_site(&original_site(39)), Some(39));
        assert_eq!(parse_original_site(&patched_site(3)), None);
        for i in [0, 1, 77, MAX_SITES - 1] {
            let p = patched_site(i);
            assert_eq!(
                p[5], TRAP_BYTE,
                "byte 5 of site {i} must be the invalid opcode"
            );
            assert_eq!(parse_patched_site(&p), Some(i));
            assert_eq!(
                u32::from_le_bytes(p[3..].try_into().unwrap()) as u64,
                table_entry(i)
            );
        }
        assert_eq!(parse_patched_site(&original_site(39)), None);
    }

    #[test]
    fn trampoline_layout() {
        let t = trampoline(39, 0x1234_5678_9abc);
        assert_eq!(&t[..5], &original_site(39)[..5]);
        // The stub reads the return address 9 bytes into the fallback.
        assert_eq!(
            u64::from_le_bytes(t[FALLBACK + 9..FALLBACK + 17].try_into().unwrap()),
            0x1234_5678_9abc
        );
        assert_eq!(&t[FALLBACK..FALLBACK + 7], &original_site(39));
    }
}
