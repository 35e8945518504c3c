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
}

/// A VMA: `[start, end)` where `start` is its key in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    pub end: u64,
    pub prot: Prot,
    pub kind: VmaKind,
}
