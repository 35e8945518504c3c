//! The gofer: a separate host process that serves the container's files to Moat's kernel.
//!
//! The kernel never opens a host file itself (DESIGN.md §2.3-4); it asks the gofer over a
//! `SOCK_SEQPACKET` socket. The protocol names files by *fids*, each an `O_PATH|O_NOFOLLOW` fd
//! the gofer holds, and reaches new files only by (directory fid, one name): never a path, so a
//! symlink swapped in by a racing host process cannot redirect the gofer, and `..` or symlinks
//! are resolved by the kernel's VFS, inside the sandbox's tree. Regular files are opened by the
//! gofer and their fds *donated* to the kernel (SCM_RIGHTS) for fast reads.
//!
//! The gofer serves only regular files, directories and symlinks: device nodes, FIFOs and
//! sockets of the host are refused, and so are the host's kernel filesystems (proc, sysfs...).

pub mod client;
pub mod protocol;
pub mod server;

pub use client::GoferClient;
pub use protocol::{Attr, DirEntry, PROTOCOL_VERSION};
pub use server::{serve, Mount};

/// Errors of the gofer transport (not of the files it serves, which are errnos).
#[derive(Debug, thiserror::Error)]
pub enum GoferError {
    #[error("gofer socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed gofer message: {0}")]
    Malformed(&'static str),
    #[error("gofer protocol version {theirs}, expected {ours}")]
    Version { ours: u32, theirs: u32 },
}
