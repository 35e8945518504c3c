//! Virtual memory areas: what the application mapped, with which protection.

use moat_platform::Prot;

/// What backs a VMA. File mappings arrive with the filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// Anonymous memory; `shared` for `MAP_SHARED|MAP_ANONYMOUS`.
    Anonymous { shared: bool },
    /// The program break area (`[heap]`).
    Heap,
    /// The initial thread's stack (`[stack]`).
    Stack,
    /// A private copy of a file's bytes (`MAP_PRIVATE` of a file). `base` is the file offset
    /// that address 0 would have (`offset - start`, wrapping), so it stays right when the VMA
    /// is split or merged.
    File { dev: u64, ino: u64, base: u64 },
    /// A `MAP_SHARED` mapping of a tmpfs file: its pages are the file's own memory-file
    /// pages, supplied at mmap time, so the mapping and the file see each other's writes.
    SharedFile { dev: u64, ino: u64, base: u64 },
    /// The part of a file mapping past the page holding the file's end: any access is
    /// `SIGBUS` (`BUS_ADRERR`), as on Linux.
    PastEof,
}

impl VmaKind {
    /// Whether the pages are shared with other mappings rather than private (copy-on-write
    /// at fork).
    pub fn is_shared(self) -> bool {
        matches!(
            self,
            VmaKind::Anonymous { shared: true } | VmaKind::SharedFile { .. }
        )
    }

    /// Whether the kernel may supply fresh pages on a fault (file-backed pages come only
    /// from the file).
    pub fn populates(self) -> bool {
        !matches!(self, VmaKind::SharedFile { .. } | VmaKind::PastEof)
    }
}

/// A VMA: `[start, end)` where `start` is its key in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    pub end: u64,
    pub prot: Prot,
    pub kind: VmaKind,
}
