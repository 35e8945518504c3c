//! The ELF loader: maps a static or static-PIE x86-64 executable into a fresh address space
//! and builds the initial stack (argv, envp, auxv) the way Linux's `binfmt_elf` does.
//!
//! Segments are private file mappings of the file's pages (its page cache, copy-on-write),
//! as Linux maps them, so that every process running a program shares one copy of its code;
//! a file without pages of its own has its segments copied in.

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{ProgramHeader, PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR};
use moat_abi::Errno;
use moat_platform::{Prot, USER_MAX};

use crate::mm::{
    page_down, page_up, MappedFile, MemoryManager, PageSource, Placement, VmaKind, PAGE,
};

/// Why an executable could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not an x86-64 ELF executable")]
    NotExecutable,
    #[error(
        "dynamically linked executables need the filesystem (not yet supported); interpreter {0}"
    )]
    Dynamic(String),
    #[error("malformed ELF file: {0}")]
    Malformed(&'static str),
    #[error("argument list too long")]
    TooBig,
    #[error("{0}: {1}")]
    Open(String, Errno),
    #[error("loading failed: {0}")]
    Memory(Errno),
}

impl LoadError {
    /// The errno `execve` would return.
    pub fn errno(&self) -> Errno {
        match self {
            LoadError::NotExecutable | LoadError::Malformed(_) => Errno::ENOEXEC,
            LoadError::Dynamic(_) => Errno::ENOENT,
            LoadError::TooBig => Errno::E2BIG,
            LoadError::Open(_, e) => *e,
            LoadError::Memory(e) => *e,
        }
    }
}

impl From<Errno> for LoadError {
    fn from(e: Errno) -> Self {
        LoadError::Memory(e)
    }
}

/// What the loader leaves for the first thread.
#[derive(Debug)]
pub struct Loaded {
    pub entry: u64,
    pub stack_pointer: u64,
}

/// Host facts the auxiliary vector passes on (the application runs on the real CPU).
#[derive(Clone, Debug, Default)]
pub struct AuxFacts {
    pub hwcap: u64,
    pub hwcap2: u64,
    pub minsigstksz: u64,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
}

/// An executable file as the loader needs it.
pub struct ExecFile {
    /// The file's first bytes: at least its ELF header, program headers and interpreter name
    /// ([`head_needed`]), or its `#!` line; the whole file when `pages` is `None`.
    pub head: Vec<u8>,
    pub size: u64,
    /// Its absolute path, every symlink resolved (the name `/proc/PID/maps` shows).
    pub path: Option<Vec<u8>>,
    /// The file's identity (`/proc/PID/maps`).
    pub dev: u64,
    pub ino: u64,
    /// The file's pages, which its segments map; `None`: they are copied from `head`.
    pub pages: Option<std::sync::Arc<dyn PageSource>>,
}

/// The most of a file's start the loader reads to find its headers.
pub const MAX_HEAD: usize = 1 << 20;

/// How many bytes from the start of a file the loader needs to see, given its first `head`
/// bytes: enough for the program headers and the interpreter's name. More than
/// `head.len()` means: read that much and ask again.
pub fn head_needed(head: &[u8]) -> usize {
    if head.len() < header::header64::SIZEOF_EHDR || &head[..4] != header::ELFMAG {
        return head.len();
    }
    let Ok(hdr) = goblin::elf::Elf::parse_header(head) else {
        return head.len();
    };
    let table_end = usize::try_from(hdr.e_phoff)
        .ok()
        .and_then(|o| o.checked_add(usize::from(hdr.e_phnum) * usize::from(hdr.e_phentsize)));
    let Some(table_end) = table_end.filter(|&e| e <= MAX_HEAD) else {
        return head.len();
    };
    if table_end > head.len() {
        return table_end;
    }
    let Ok((_, phdrs)) = parse(head) else {
        return head.len();
    };
    phdrs
        .iter()
        .filter(|p| p.p_type == PT_INTERP)
        .filter_map(|p| usize::try_from(p.p_offset.checked_add(p.p_filesz)?).ok())
        .filter(|&e| e <= MAX_HEAD)
        .fold(head.len(), usize::max)
}

/// Everything `execve` is given.
pub struct ExecRequest<'a> {
    pub image: &'a ExecFile,
    pub filename: &'a [u8],
    /// The program's absolute path (the name `/proc/PID/maps` shows).
    pub path: &'a [u8],
    pub argv: &'a [Vec<u8>],
    pub envp: &'a [Vec<u8>],
    pub aux: &'a AuxFacts,
    /// The vDSO to map (`AT_SYSINFO_EHDR`), if any.
    pub vdso: Option<&'a std::sync::Arc<crate::vdso::Vdso>>,
    pub stack_size: u64,
}

/// Reads the program interpreter (`PT_INTERP`, i.e. ld.so) named by a dynamic executable.
pub type InterpReader<'a> = &'a mut dyn FnMut(&[u8]) -> Result<ExecFile, LoadError>;

/// `MAX_ARG_STRLEN` and the total limit Linux applies (a quarter of an 8 MiB stack).
const MAX_ARG_STRLEN: usize = 32 * 4096;
const MAX_ARGS_TOTAL: usize = 2 << 20;

fn prot_of(flags: u32) -> Prot {
    let mut p = 0;
    if flags & PF_R != 0 {
        p |= Prot::READ.0;
    }
    if flags & PF_W != 0 {
        p |= Prot::WRITE.0;
    }
    if flags & PF_X != 0 {
        p |= Prot::EXEC.0;
    }
    Prot(p)
}

/// Parse the ELF header and program headers, rejecting what Moat cannot run.
fn parse(image: &[u8]) -> Result<(Header, Vec<ProgramHeader>), LoadError> {
    if image.len() < header::header64::SIZEOF_EHDR || &image[..4] != header::ELFMAG {
        return Err(LoadError::NotExecutable);
    }
    let hdr = goblin::elf::Elf::parse_header(image).map_err(|_| LoadError::NotExecutable)?;
    if hdr.e_ident[header::EI_CLASS] != header::ELFCLASS64
        || hdr.e_ident[header::EI_DATA] != header::ELFDATA2LSB
        || hdr.e_machine != header::EM_X86_64
        || !matches!(hdr.e_type, header::ET_EXEC | header::ET_DYN)
    {
        return Err(LoadError::NotExecutable);
    }
    if usize::from(hdr.e_phentsize) != goblin::elf::program_header::program_header64::SIZEOF_PHDR
        || hdr.e_phnum == 0
        || hdr.e_phnum > 1024
    {
        return Err(LoadError::Malformed("bad program header table"));
    }
    let phoff = usize::try_from(hdr.e_phoff).map_err(|_| LoadError::Malformed("phoff"))?;
    let end = usize::from(hdr.e_phnum)
        .checked_mul(usize::from(hdr.e_phentsize))
        .and_then(|n| n.checked_add(phoff))
        .ok_or(LoadError::Malformed("phoff"))?;
    if end > image.len() {
        return Err(LoadError::Malformed("program headers past end of file"));
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phdrs = ProgramHeader::parse(image, phoff, usize::from(hdr.e_phnum), ctx)
        .map_err(|_| LoadError::Malformed("program headers"))?;
    Ok((hdr, phdrs))
}

/// Map the `PT_LOAD` segments of `exe` at `bias`; returns the end of the highest segment
/// and the address of the program headers in memory.
fn map_segments(
    mm: &mut MemoryManager,
    exe: &ExecFile,
    name: &[u8],
    hdr: &Header,
    phdrs: &[ProgramHeader],
    bias: u64,
) -> Result<(u64, Option<u64>), LoadError> {
    let mut end_of_image = 0u64;
    let mut phdr_addr = None;
    let file_size = match exe.pages {
        Some(_) => exe.size,
        None => exe.head.len() as u64,
    };
    for p in phdrs.iter().filter(|p| p.p_type == PT_LOAD) {
        if p.p_filesz > p.p_memsz
            || p.p_offset
                .checked_add(p.p_filesz)
                .is_none_or(|e| e > file_size)
        {
            return Err(LoadError::Malformed("segment past end of file"));
        }
        if p.p_vaddr % PAGE != p.p_offset % PAGE {
            return Err(LoadError::Malformed("misaligned segment"));
        }
        let vaddr = p
            .p_vaddr
            .checked_add(bias)
            .ok_or(LoadError::Malformed("segment address"))?;
        let start = page_down(vaddr);
        let end = vaddr
            .checked_add(p.p_memsz)
            .and_then(page_up)
            .filter(|&e| e <= USER_MAX)
            .ok_or(LoadError::Malformed("segment address"))?;
        if start < moat_platform::USER_MIN {
            return Err(LoadError::Malformed(
                "segment below the lowest mappable address",
            ));
        }
        if end == start {
            continue;
        }
        let prot = prot_of(p.p_flags);
        // The file's pages from the start of the segment's first page (as a file mapping
        // shows them) to the end of the page holding its last byte; bss pages past that are
        // anonymous.
        let file_start = p.p_offset - (vaddr - start);
        let file_end = p.p_offset + p.p_filesz;
        let named_end = page_up(vaddr + p.p_filesz).unwrap_or(end).min(end);
        let file_kind = VmaKind::File {
            dev: exe.dev,
            ino: exe.ino,
            base: file_start.wrapping_sub(start),
            source: 0,
        };
        match &exe.pages {
            Some(pages) if named_end > start => {
                let file = MappedFile {
                    dev: exe.dev,
                    ino: exe.ino,
                    offset: file_start,
                    pages: pages.clone(),
                };
                mm.map_private_file(Placement::Fixed(start), named_end - start, prot, &file)?;
                // ld.so and the program touch their segments at once: map them now.
                mm.prefault(start, named_end - start, u64::MAX);
                if end > named_end {
                    let bss = VmaKind::Anonymous { shared: false };
                    mm.map_anonymous(Placement::Fixed(named_end), end - named_end, prot, bss)?;
                    mm.prefault(named_end, end - named_end, u64::MAX);
                }
            }
            _ => {
                mm.map_anonymous(Placement::Fixed(start), end - start, prot, file_kind)?;
                if end > named_end {
                    let bss = VmaKind::Anonymous { shared: false };
                    mm.map_anonymous(Placement::Fixed(named_end), end - named_end, prot, bss)?;
                }
                mm.write_bytes_force(start, &exe.head[file_start as usize..file_end as usize])?;
            }
        }
        // The rest of the page after the file's bytes is zero when the segment goes on
        // (bss): Linux's padzero.
        if p.p_memsz > p.p_filesz {
            let tail = vaddr + p.p_filesz;
            let tail_end = page_up(tail).unwrap_or(end).min(end);
            if tail_end > tail {
                mm.write_bytes_force(tail, &vec![0u8; (tail_end - tail) as usize])?;
            }
        }
        if named_end > start {
            mm.name_range(start, named_end, name);
        }
        end_of_image = end_of_image.max(end);
        if hdr.e_phoff >= p.p_offset && hdr.e_phoff < p.p_offset + p.p_filesz {
            phdr_addr = Some(vaddr + (hdr.e_phoff - p.p_offset));
        }
    }
    if end_of_image == 0 {
        return Err(LoadError::Malformed("no loadable segment"));
    }
    if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_PHDR) {
        phdr_addr = Some(p.p_vaddr + bias);
    }
    Ok((end_of_image, phdr_addr))
}

/// Load the interpreter (ld.so, position-independent) wherever the mmap area has room;
/// returns its load bias and entry point.
fn load_interpreter(
    mm: &mut MemoryManager,
    image: &ExecFile,
    name: &[u8],
) -> Result<(u64, u64), LoadError> {
    let (hdr, phdrs) = parse(&image.head)?;
    if phdrs.iter().any(|p| p.p_type == PT_INTERP) || hdr.e_type != header::ET_DYN {
        return Err(LoadError::Malformed(
            "the interpreter must be a static position-independent ELF",
        ));
    }
    let loads = phdrs.iter().filter(|p| p.p_type == PT_LOAD);
    let lo = loads
        .clone()
        .map(|p| page_down(p.p_vaddr))
        .min()
        .ok_or(LoadError::Malformed("no loadable segment"))?;
    let hi = loads
        .map(|p| p.p_vaddr.saturating_add(p.p_memsz))
        .max()
        .and_then(page_up)
        .ok_or(LoadError::Malformed("segment address"))?;
    let span = hi
        .checked_sub(lo)
        .filter(|&s| s > 0 && s < (1 << 40))
        .ok_or(LoadError::Malformed("segment span"))?;
    let base = mm
        .find_space(span)
        .ok_or(LoadError::Memory(Errno::ENOMEM))?;
    let bias = base - lo;
    map_segments(mm, image, name, &hdr, &phdrs, bias)?;
    Ok((bias, hdr.e_entry + bias))
}

/// Load `req.image` into `mm` (which must be empty) and build the initial stack. A dynamic
/// executable's interpreter is read with `read_interp` and loaded too; it then runs first.
pub fn load(
    mm: &mut MemoryManager,
    req: &ExecRequest<'_>,
    read_interp: InterpReader<'_>,
    random: &mut dyn FnMut() -> u64,
) -> Result<Loaded, LoadError> {
    let (hdr, phdrs) = parse(&req.image.head)?;
    let interp = match phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        Some(p) => {
            let name = req
                .image
                .head
                .get(p.p_offset as usize..p.p_offset.saturating_add(p.p_filesz) as usize)
                .ok_or(LoadError::Malformed("interpreter name past end of file"))?;
            let name: Vec<u8> = name.iter().copied().take_while(|&b| b != 0).collect();
            Some(name)
        }
        None => None,
    };

    // Layout, top down: the stub page, the stack (randomised top), a gap, the mmap area.
    let stack_top = page_down(USER_MAX - PAGE - (random() % (1 << 22)) * PAGE);
    let stack_size = page_up(req.stack_size.clamp(128 << 10, 1 << 30)).unwrap_or(8 << 20);
    let stack_bottom = stack_top - stack_size;
    let gap = stack_size.max(128 << 20);
    mm.mmap_base = page_down(stack_bottom - gap - (random() % (1 << 24)) * PAGE);

    // Position-independent executables go at Linux's ELF_ET_DYN_BASE (2/3 of the address
    // space) plus randomisation.
    let bias = if hdr.e_type == header::ET_DYN {
        page_down((USER_MAX / 3 * 2) + (random() % (1 << 20)) * PAGE)
    } else {
        0
    };
    let (end_of_image, phdr_addr) = map_segments(mm, req.image, req.path, &hdr, &phdrs, bias)?;

    // The heap starts at a random offset (up to 32 MiB) above the end of the image.
    mm.brk_start = end_of_image + (random() % (1 << 13)) * PAGE;
    mm.brk = mm.brk_start;

    mm.map_anonymous(
        Placement::Fixed(stack_bottom),
        stack_size,
        Prot(Prot::READ.0 | Prot::WRITE.0),
        VmaKind::Stack,
    )?;
    let entry = hdr.e_entry + bias;
    let (interp_base, start) = match interp {
        Some(name) => {
            let image = read_interp(&name)?;
            let shown = image.path.clone().unwrap_or_else(|| name.clone());
            load_interpreter(mm, &image, &shown).map_err(|e| match e {
                LoadError::Memory(e) => LoadError::Memory(e),
                _ => LoadError::Dynamic(String::from_utf8_lossy(&name).into_owned()),
            })?
        }
        None => (0, entry),
    };
    let vdso = match req.vdso {
        Some(v) => v.map_into(mm).map_err(LoadError::Memory)?,
        None => 0,
    };
    let aux = Aux {
        phdr: phdr_addr.unwrap_or(0),
        phnum: u64::from(hdr.e_phnum),
        entry,
        base: interp_base,
        vdso,
    };
    let sp = build_stack(mm, req, stack_top, &aux, random)?;
    Ok(Loaded {
        entry: start,
        stack_pointer: sp,
    })
}

struct Aux {
    phdr: u64,
    phnum: u64,
    entry: u64,
    /// Where the interpreter was loaded (0 for static programs).
    base: u64,
    /// Where the vDSO's ELF header is (0: none).
    vdso: u64,
}

// Auxiliary vector keys (linux/auxvec.h).
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;
const AT_SYSINFO_EHDR: u64 = 33;
const AT_MINSIGSTKSZ: u64 = 51;

/// Lay out strings, then the auxv, envp, argv and argc below them; returns the stack pointer.
fn build_stack(
    mm: &mut MemoryManager,
    req: &ExecRequest<'_>,
    top: u64,
    aux: &Aux,
    random: &mut dyn FnMut() -> u64,
) -> Result<u64, LoadError> {
    let mut total = 0usize;
    for s in req.argv.iter().chain(req.envp) {
        if s.len() + 1 > MAX_ARG_STRLEN {
            return Err(LoadError::TooBig);
        }
        total += s.len() + 1 + 8;
    }
    if total > MAX_ARGS_TOTAL {
        return Err(LoadError::TooBig);
    }

    let mut sp = top;
    let mut push_bytes = |mm: &mut MemoryManager, bytes: &[u8]| -> Result<u64, LoadError> {
        sp -= bytes.len() as u64;
        mm.write_bytes(sp, bytes)?;
        Ok(sp)
    };
    let with_nul = |s: &[u8]| {
        let mut v = s.to_vec();
        v.push(0);
        v
    };
    let execfn = push_bytes(mm, &with_nul(req.filename))?;
    let mut envp = Vec::with_capacity(req.envp.len());
    for s in req.envp.iter().rev() {
        envp.push(push_bytes(mm, &with_nul(s))?);
    }
    envp.reverse();
    let mut argv = Vec::with_capacity(req.argv.len());
    for s in req.argv.iter().rev() {
        argv.push(push_bytes(mm, &with_nul(s))?);
    }
    argv.reverse();
    let platform = push_bytes(mm, b"x86_64\0")?;
    let mut rand_bytes = [0u8; 16];
    rand_bytes[..8].copy_from_slice(&random().to_le_bytes());
    rand_bytes[8..].copy_from_slice(&random().to_le_bytes());
    let at_random = push_bytes(mm, &rand_bytes)?;

    let f = req.aux;
    let mut auxv: Vec<(u64, u64)> = Vec::new();
    if aux.vdso != 0 {
        auxv.push((AT_SYSINFO_EHDR, aux.vdso));
    }
    auxv.extend([
        (AT_HWCAP, f.hwcap),
        (AT_PAGESZ, PAGE),
        (AT_CLKTCK, 100),
        (AT_PHDR, aux.phdr),
        (
            AT_PHENT,
            goblin::elf::program_header::program_header64::SIZEOF_PHDR as u64,
        ),
        (AT_PHNUM, aux.phnum),
        (AT_BASE, aux.base),
        (AT_FLAGS, 0),
        (AT_ENTRY, aux.entry),
        (AT_UID, u64::from(f.uid)),
        (AT_EUID, u64::from(f.euid)),
        (AT_GID, u64::from(f.gid)),
        (AT_EGID, u64::from(f.egid)),
        (AT_SECURE, 0),
        (AT_RANDOM, at_random),
        (AT_HWCAP2, f.hwcap2),
        (AT_EXECFN, execfn),
        (AT_PLATFORM, platform),
        (AT_MINSIGSTKSZ, f.minsigstksz),
        (AT_NULL, 0),
    ]);
    let mut words: Vec<u64> = Vec::new();
    words.push(argv.len() as u64);
    words.extend(&argv);
    words.push(0);
    words.extend(&envp);
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    // The stack pointer at entry is 16-byte aligned and points at argc.
    let size = (words.len() * 8) as u64;
    let start = (sp - size) & !15;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mm.write_bytes(start, &bytes)?;
    Ok(start)
}
