//! Character devices, found by device number when a device node is opened (as Linux's
//! char-device table does), and the `/dev` tree of a sandbox.

use std::sync::Arc;

use moat_abi::Errno;

use super::tmpfs::Tmpfs;
use super::{FileOps, OpenFile};
use crate::vfs::{Inode, NewNode};

/// `makedev(major, minor)` as Linux encodes it in `dev_t`.
pub const fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
}

pub const NULL: u64 = makedev(1, 3);
pub const ZERO: u64 = makedev(1, 5);
pub const FULL: u64 = makedev(1, 7);
pub const RANDOM: u64 = makedev(1, 8);
pub const URANDOM: u64 = makedev(1, 9);

#[derive(Clone, Copy)]
enum Device {
    Null,
    Zero,
    Full,
    Random,
}

impl FileOps for Device {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        match self {
            Device::Null => Ok(0),
            Device::Zero | Device::Full => {
                buf.fill(0);
                Ok(buf.len())
            }
            Device::Random => {
                crate::fill_random(buf);
                Ok(buf.len())
            }
        }
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        match self {
            Device::Full => Err(Errno::ENOSPC),
            _ => Ok(buf.len()),
        }
    }

    /// Character devices accept any position and ignore it.
    fn seekable(&self) -> bool {
        true
    }

    fn own_offset(&self) -> bool {
        true
    }
}

/// Open the character device `rdev` (`ENXIO` if Moat has no such device).
pub fn open_char_device(rdev: u64) -> Result<Box<dyn FileOps>, Errno> {
    Ok(Box::new(match rdev {
        NULL => Device::Null,
        ZERO => Device::Zero,
        FULL => Device::Full,
        RANDOM | URANDOM => Device::Random,
        _ => return Err(Errno::ENXIO),
    }))
}

/// A fresh `/dev`: the memory devices, the fd symlinks, and `shm`.
pub fn new_devfs(memory: Arc<moat_memory::MemoryFile>) -> Arc<dyn Inode> {
    let root = Tmpfs::new_root_in(memory, 0o755, 0, 0);
    for (name, rdev) in [
        (&b"null"[..], NULL),
        (b"zero", ZERO),
        (b"full", FULL),
        (b"random", RANDOM),
        (b"urandom", URANDOM),
        // The controlling terminal: opened by the open call itself, which knows the caller.
        (b"tty", super::pty::TTY_DEV),
    ] {
        let _ = root.create(
            name,
            &NewNode::Special {
                mode: libc::S_IFCHR | 0o666,
                rdev,
            },
            0,
            0,
        );
    }
    for (name, target) in [
        (&b"fd"[..], &b"/proc/self/fd"[..]),
        (b"stdin", b"/proc/self/fd/0"),
        (b"stdout", b"/proc/self/fd/1"),
        (b"stderr", b"/proc/self/fd/2"),
        (b"ptmx", b"pts/ptmx"),
    ] {
        let _ = root.create(
            name,
            &NewNode::Symlink {
                target: target.to_vec(),
            },
            0,
            0,
        );
    }
    let _ = root.create(b"shm", &NewNode::Directory { mode: 0o1777 }, 0, 0);
    let _ = root.create(b"pts", &NewNode::Directory { mode: 0o755 }, 0, 0);
    root
}
