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
    /// `MAP_PRIVATE` of a file (and the program's segments). `base` is the file offset that
    /// address 0 would have (`offset - start`, wrapping), so it stays right when the VMA is
    /// split or merged. `source` names the file's page source in the memory manager: its
    /// pages are mapped copy-on-write as they are touched. `source == 0`: a private copy
    /// filled at mmap time (a file with no pages of its own), populated like anonymous memory.
    File {
        dev: u64,
        ino: u64,
        base: u64,
        source: u64,
    },
    /// A `MAP_SHARED` mapping of a file: its pages are the file's own memory-file pages
    /// (from `source`), so the mapping and the file see each other's writes.
    SharedFile {
        dev: u64,
        ino: u64,
        base: u64,
        source: u64,
    },
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

    /// Whether the kernel may supply pages on a fault: fresh ones, or a private file
    /// mapping's from its file (a shared mapping's pages come only from its file, and only
    /// while the file has them).
    pub fn populates(self) -> bool {
        !matches!(self, VmaKind::SharedFile { .. } | VmaKind::PastEof)
    }

    /// The page source a file VMA takes its pages from.
    pub fn source(self) -> Option<u64> {
        match self {
            VmaKind::File { source, .. } | VmaKind::SharedFile { source, .. } if source != 0 => {
                Some(source)
            }
            _ => None,
        }
    }

    /// The same mapping moved by `delta` bytes (`mremap`): a file VMA keeps mapping the same
    /// file offsets.
    #[must_use]
    pub fn moved(self, delta: u64) -> VmaKind {
        match self {
            VmaKind::File {
                dev,
                ino,
                base,
                source,
            } => VmaKind::File {
                dev,
                ino,
                base: base.wrapping_sub(delta),
                source,
            },
            VmaKind::SharedFile {
                dev,
                ino,
                base,
                source,
            } => VmaKind::SharedFile {
                dev,
                ino,
                base: base.wrapping_sub(delta),
                source,
            },
            other => other,
        }
    }
}

/// A VMA: `[start, end)` where `start` is its key in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    pub end: u64,
    pub prot: Prot,
    pub kind: VmaKind,
}
