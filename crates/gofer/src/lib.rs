//! The gofer: a separate host process that serves the container's files to Moat's kernel.
//!
//! Trust model. The kernel never opens a host file itself (DESIGN.md §2.3-4); it asks the
//! gofer over a `SOCK_SEQPACKET` socket, and the gofer treats every request as hostile: it
//! decodes without trusting a length, and answers malformed input with an errno. Files are
//! named by *fids*, each an `O_PATH|O_NOFOLLOW` fd the gofer holds, and new files are reached
//! only by (directory fid, one name component): never a path, so a symlink swapped in by a
//! racing host process cannot redirect the gofer outside its mounts, and `..` and symlinks are
//! resolved by the kernel's VFS inside the sandbox's tree. Operations on a file itself go
//! through its fd (`AT_EMPTY_PATH`, or its `/proc/self/fd/N` magic link). Regular files are
//! opened by the gofer and their fds *donated* to the kernel (SCM_RIGHTS) for fast I/O. A
//! read-only mount refuses every change with `EROFS`.
//!
//! The gofer never opens a host device, FIFO or socket for the sandbox, never makes device
//! nodes, serves only the `user.` xattr namespace, and refuses to walk into the host's kernel
//! filesystems (proc, sysfs...).
//!
//! [`protocol`] is the wire format, [`server::serve`] the gofer's loop, [`GoferClient`] the
//! kernel's end.

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{DirPage, GoferClient, Walked};
pub use protocol::{
    Attr, DecodeError, DirEntry, Fid, Request, Response, SetAttr, StatFs, TimeSpec, MAX_MESSAGE,
    PROTOCOL_VERSION,
};
pub use server::{serve, Mount};

/// Errors of the gofer transport (not of the files it serves, which are errnos).
#[derive(Debug, thiserror::Error)]
pub enum GoferError {
    #[error("gofer socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed gofer message: {0}")]
    Malformed(&'static str),
    #[error("malformed gofer message: {0}")]
    Decode(#[from] DecodeError),
    #[error("gofer protocol version {theirs}, expected {ours}")]
    Version { ours: u32, theirs: u32 },
    #[error("the gofer refused protocol version {0}")]
    VersionRefused(u32),
    #[error("gofer mount {}: {source}", path.display())]
    Mount {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
