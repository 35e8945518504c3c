//! brk, mmap, munmap, mprotect, madvise, mremap (anonymous memory).

use moat_abi::Errno;
use moat_platform::{Prot, USER_MAX};

use super::{int, SyscallResult};
use crate::mm::{page_up, MappedFile, Placement, VmaKind, PAGE};
use crate::process::Guard;
use crate::task::Task;

const PROT_MASK: u64 = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
const PROT_GROWS: u64 = (libc::PROT_GROWSDOWN | libc::PROT_GROWSUP) as u64;

pub fn brk(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    Ok(task.mm.guard().set_brk(a[0]))
}

pub fn mmap(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (addr, len, prot, flags, fd, offset) = (a[0], a[1], a[2], int(a[3]), int(a[4]), a[5]);
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    if offset % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let kind = flags & libc::MAP_TYPE;
    let shared = match kind {
        libc::MAP_PRIVATE => false,
        libc::MAP_SHARED => true,
        // Validated sharing is for files; anonymous memory must say MAP_SHARED.
        libc::MAP_SHARED_VALIDATE if flags & libc::MAP_ANONYMOUS == 0 => true,
        _ => return Err(Errno::EINVAL),
    };
    if kind == libc::MAP_SHARED_VALIDATE {
        let known = libc::MAP_TYPE
            | libc::MAP_FIXED
            | libc::MAP_ANONYMOUS
            | libc::MAP_32BIT
            | libc::MAP_GROWSDOWN
            | libc::MAP_DENYWRITE
            | libc::MAP_EXECUTABLE
            | libc::MAP_LOCKED
            | libc::MAP_NORESERVE
            | libc::MAP_POPULATE
            | libc::MAP_NONBLOCK
            | libc::MAP_STACK
            | libc::MAP_HUGETLB
            | libc::MAP_FIXED_NOREPLACE
            | libc::MAP_SYNC;
        if flags & !known != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
    }
    let len = page_up(len)
        .filter(|&l| l <= USER_MAX)
        .ok_or(Errno::ENOMEM)?;
    // Unlike mprotect, mmap ignores protection bits it does not know.
    let prot = prot & PROT_MASK;
    let file = if flags & libc::MAP_ANONYMOUS == 0 {
        let file = task.files.guard().get(fd)?;
        if file.is_path_only() {
            return Err(Errno::EBADF);
        }
        if !file.readable() || (shared && prot & libc::PROT_WRITE as u64 != 0 && !file.writable()) {
            return Err(Errno::EACCES);
        }
        let st = file.stat()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || file.path().is_none() {
            return Err(Errno::ENODEV);
        }
        let inode = file.path().map(|p| p.inode().clone());
        let backing = if shared {
            inode.as_ref().and_then(|i| i.memory_backed())
        } else {
            None
        };
        if shared && prot & libc::PROT_WRITE as u64 != 0 && backing.is_none() {
            // Files whose pages are not in the memory file (host files through the gofer)
            // would need a page cache to share writes with the file.
            task.kernel.report_unimplemented(
                u64::from(moat_abi::syscalls::nr::MMAP) | (1 << 32),
                "mmap MAP_SHARED|PROT_WRITE of a host file",
            );
            return Err(Errno::ENODEV);
        }
        // A private mapping (or a read-only shared one of a file without memory-file pages,
        // which can never see a write) maps the file's page cache copy-on-write.
        let pages = if backing.is_none() {
            inode.as_ref().and_then(|i| i.page_source())
        } else {
            None
        };
        Some((file, st, backing, pages))
    } else {
        None
    };
    if flags & libc::MAP_HUGETLB != 0 {
        return Err(Errno::ENOMEM);
    }
    let place = if flags & libc::MAP_FIXED_NOREPLACE != 0 {
        Placement::FixedNoReplace(addr)
    } else if flags & libc::MAP_FIXED != 0 {
        Placement::Fixed(addr)
    } else {
        Placement::Hint(addr)
    };
    if matches!(place, Placement::Fixed(_) | Placement::FixedNoReplace(_)) && addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let prot = Prot((prot & PROT_MASK) as u32);
    let Some((file, st, backing, pages)) = file else {
        let start =
            task.mm
                .guard()
                .map_anonymous(place, len, prot, VmaKind::Anonymous { shared })?;
        if flags & libc::MAP_POPULATE != 0 {
            // Best effort, as in Linux: a failure here does not fail the mmap.
            let _ = task.mm.guard().populate_range(start, len);
        } else if !shared {
            task.mm.guard().prefault(start, len, u64::MAX);
        }
        return Ok(start);
    };
    let (dev, ino) = (st.st_dev, st.st_ino);
    let start = if let Some(tmpfs) = backing {
        // A shared mapping of a file whose pages are memory-file pages: map them as they are.
        let got = tmpfs.share_pages(offset / PAGE, len / PAGE)?;
        let mapped = MappedFile {
            dev,
            ino,
            offset,
            pages: tmpfs,
        };
        task.mm
            .guard()
            .map_shared_file(place, len, prot, &mapped, &got)?
    } else if let Some(pages) = pages {
        let mapped = MappedFile {
            dev,
            ino,
            offset,
            pages,
        };
        task.mm
            .guard()
            .map_private_file(place, len, prot, &mapped)?
    } else {
        // A file with no pages of its own: a private copy of its bytes.
        let kind = VmaKind::File {
            dev,
            ino,
            base: offset.wrapping_sub(addr_of(place)),
            source: 0,
        };
        let start = task.mm.guard().map_anonymous(place, len, prot, kind)?;
        task.mm.guard().set_kind(
            start,
            VmaKind::File {
                dev,
                ino,
                base: offset.wrapping_sub(start),
                source: 0,
            },
        );
        if let Err(e) = copy_file(task, &file, start, len, offset) {
            let _ = task.mm.guard().unmap(start, len);
            return Err(e);
        }
        start
    };
    name_mapping(task, Some(&*file), start, len);
    if !shared {
        // Whole pages past the end of the file fault with SIGBUS.
        let file_pages = page_up(st.st_size.max(0) as u64).unwrap_or(u64::MAX);
        let past = file_pages.saturating_sub(offset);
        if past < len {
            task.mm.guard().map_anonymous(
                Placement::Fixed(start + past),
                len - past,
                prot,
                VmaKind::PastEof,
            )?;
        }
    }
    if flags & libc::MAP_POPULATE != 0 {
        // Best effort, as in Linux: a failure here does not fail the mmap.
        let _ = task.mm.guard().populate_range(start, len);
    } else if !shared {
        // A library's segments, a file read through a mapping: used at once, most likely.
        // ld.so first maps a whole library where it wants it, read-only, then maps each
        // segment over it (`MAP_FIXED`): only the start of a mapping placed by the kernel
        // (the headers ld.so reads next; all of a small file) is worth populating.
        let max = if matches!(place, Placement::Hint(_)) {
            PREFAULT_HINTED
        } else {
            u64::MAX
        };
        task.mm.guard().prefault(start, len, max);
    }
    Ok(start)
}

/// How much of a private file mapping the kernel placed is populated when it is made (see
/// [`crate::mm::MemoryManager::prefault`]).
const PREFAULT_HINTED: u64 = 64 << 10;

/// Name a file mapping after its file's path (`/proc/PID/maps`).
fn name_mapping(task: &Task, file: Option<&crate::fs::OpenFile>, start: u64, len: u64) {
    if let Some(path) = file.and_then(|f| f.path().cloned()) {
        let root = task.fs.guard().root.clone();
        task.mm
            .guard()
            .name_range(start, start + len, &path.absolute(&root));
    }
}

fn addr_of(place: Placement) -> u64 {
    match place {
        Placement::Hint(a) | Placement::Fixed(a) | Placement::FixedNoReplace(a) => a,
    }
}

/// Fill a private file mapping with the file's bytes (the part past the end of the file is
/// remapped as `PastEof` by the caller).
fn copy_file(
    task: &mut Task,
    file: &crate::fs::OpenFile,
    start: u64,
    len: u64,
    offset: u64,
) -> Result<(), Errno> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(CHUNK) as usize;
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            break;
        }
        task.mm.guard().write_bytes_force(start + done, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Validate an (address, length) pair of munmap/mprotect/madvise: page-aligned start,
/// length rounded up, inside the address space.
fn range(addr: u64, len: u64) -> Result<u64, Errno> {
    if addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len).ok_or(Errno::EINVAL)?;
    if addr.checked_add(len).is_none_or(|e| e > USER_MAX + PAGE) {
        return Err(Errno::EINVAL);
    }
    Ok(len)
}

pub fn munmap(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let len = range(a[0], a[1])?;
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    task.mm.guard().unmap(a[0], len)?;
    Ok(0)
}

pub fn mprotect(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let prot = a[2];
    if prot & !(PROT_MASK | PROT_GROWS) != 0 || prot & PROT_GROWS == PROT_GROWS {
        return Err(Errno::EINVAL);
    }
    // PROT_GROWSDOWN is only for a mapping that grows down (the initial stack); x86 has
    // nothing that grows up.
    if prot & PROT_GROWS != 0 {
        let grows_down = prot & libc::PROT_GROWSDOWN as u64 != 0
            && matches!(task.mm.guard().find_vma(a[0]), Some((_, v)) if v.kind == crate::mm::VmaKind::Stack);
        if !grows_down {
            return Err(Errno::EINVAL);
        }
    }
    let len = range(a[0], a[1]).map_err(|e| if a[0] % PAGE == 0 { Errno::ENOMEM } else { e })?;
    if len == 0 {
        return Ok(0);
    }
    task.mm
        .guard()
        .protect(a[0], len, Prot((prot & PROT_MASK) as u32))?;
    Ok(0)
}

pub fn madvise(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let advice = int(a[2]);
    let known = [
        libc::MADV_NORMAL,
        libc::MADV_RANDOM,
        libc::MADV_SEQUENTIAL,
        libc::MADV_WILLNEED,
        libc::MADV_DONTNEED,
        libc::MADV_FREE,
        libc::MADV_REMOVE,
        libc::MADV_DONTFORK,
        libc::MADV_DOFORK,
        libc::MADV_MERGEABLE,
        libc::MADV_UNMERGEABLE,
        libc::MADV_HUGEPAGE,
        libc::MADV_NOHUGEPAGE,
        libc::MADV_DONTDUMP,
        libc::MADV_DODUMP,
        libc::MADV_WIPEONFORK,
        libc::MADV_KEEPONFORK,
        libc::MADV_COLD,
        libc::MADV_PAGEOUT,
        22, // MADV_POPULATE_READ
        23, // MADV_POPULATE_WRITE
    ];
    if !known.contains(&advice) {
        return Err(Errno::EINVAL);
    }
    let len = range(a[0], a[1])?;
    if len == 0 {
        return Ok(0);
    }
    match advice {
        // MADV_FREE may discard lazily; discarding now is a valid implementation.
        libc::MADV_DONTNEED | libc::MADV_FREE => task.mm.guard().discard(a[0], len)?,
        22 | 23 => task.mm.guard().check_access(a[0], len, advice == 23)?,
        // Punching a hole needs shared memory behind the range; private memory is EINVAL.
        libc::MADV_REMOVE => {
            let mut cursor = a[0];
            while cursor < a[0] + len {
                let v = *task.mm.guard().find_vma(cursor).ok_or(Errno::ENOMEM)?.1;
                if !v.kind.is_shared() {
                    return Err(Errno::EINVAL);
                }
                cursor = v.end;
            }
            task.mm.guard().punch_shared(a[0], len)?;
        }
        _ => {
            // Hints: only check that the range is mapped.
            let mut cursor = a[0];
            while cursor < a[0] + len {
                let v = *task.mm.guard().find_vma(cursor).ok_or(Errno::ENOMEM)?.1;
                cursor = v.end;
            }
        }
    }
    Ok(0)
}

pub fn mremap(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (old, old_len, new_len, flags, new_addr) = (a[0], a[1], a[2], int(a[3]), a[4]);
    let may_move = flags & libc::MREMAP_MAYMOVE != 0;
    let fixed = flags & libc::MREMAP_FIXED != 0;
    if flags & !(libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP) != 0 {
        return Err(Errno::EINVAL);
    }
    if (fixed || flags & libc::MREMAP_DONTUNMAP != 0) && !may_move {
        return Err(Errno::EINVAL);
    }
    if old % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
    if new_len == 0 {
        return Err(Errno::EINVAL);
    }
    if fixed && new_addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & libc::MREMAP_DONTUNMAP != 0 {
        task.kernel.report_unimplemented(
            u64::from(moat_abi::syscalls::nr::MREMAP) | (1 << 32),
            "mremap MREMAP_DONTUNMAP",
        );
        return Err(Errno::ENOSYS);
    }
    if old_len == 0 {
        // Duplicating a shared mapping; private ones (all we have) cannot be.
        return Err(Errno::EINVAL);
    }
    task.mm
        .guard()
        .remap(old, old_len, new_len, may_move, fixed.then_some(new_addr))
}

const MS_ASYNC: u64 = 1;
const MS_INVALIDATE: u64 = 2;
const MS_SYNC: u64 = 4;

/// `msync`: shared file mappings here are the file's own pages (tmpfs) or private copies,
/// so there is never anything to write back; the arguments are checked as Linux does.
pub fn msync(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = a[2];
    if a[0] % PAGE != 0
        || flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || flags & (MS_ASYNC | MS_SYNC) == (MS_ASYNC | MS_SYNC)
    {
        return Err(Errno::EINVAL);
    }
    let len = page_up(a[1]).ok_or(Errno::ENOMEM)?;
    let end = a[0].checked_add(len).ok_or(Errno::ENOMEM)?;
    let mm = task.mm.guard();
    let mut cursor = a[0];
    while cursor < end {
        let (_, v) = mm.find_vma(cursor).ok_or(Errno::ENOMEM)?;
        cursor = v.end;
    }
    Ok(0)
}
