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
}

/// A VMA: `[start, end)` where `start` is its key in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    pub end: u64,
    pub prot: Prot,
    pub kind: VmaKind,
}
