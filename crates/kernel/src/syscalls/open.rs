//! open, openat, creat, close_range, lseek, getdents64.

use std::sync::Arc;

use moat_abi::Errno;

use super::path::{may_modify_dir, read_path, resolve_at, resolve_parent, writable_mount};
use super::{int, SyscallResult};
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::task::Task;
use crate::vfs::{permitted, FileKind, NewNode, VfsPath, MAY_READ, MAY_WRITE};

/// Flags `open` accepts; anything else is ignored as Linux does (except `O_TMPFILE`).
const STATUS_KEPT: u32 = (libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DIRECT
    | libc::O_NOATIME
    | libc::O_PATH
    | libc::O_SYNC
    | libc::O_DSYNC
    | libc::O_ASYNC) as u32;

/// The file operations of an `O_PATH` description: it names a file, nothing more.
struct PathOnly;

impl crate::fs::FileOps for PathOnly {
    fn read(&self, _: &OpenFile, _: &mut [u8], _: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn write(&self, _: &OpenFile, _: &[u8], _: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn ioctl(
        &self,
        _: &OpenFile,
        _: &mut crate::mm::MemoryManager,
        _: u32,
        _: u64,
    ) -> Result<u64, Errno> {
        Err(Errno::EBADF)
    }
    fn seekable(&self) -> bool {
        false
    }
}

/// Find or create the file `open` names.
fn open_target(
    task: &Task,
    dirfd: i32,
    path: &[u8],
    flags: u32,
    mode: u32,
) -> Result<(VfsPath, bool), Errno> {
    let creat = flags & libc::O_CREAT as u32 != 0;
    let nofollow = flags & libc::O_NOFOLLOW as u32 != 0;
    if !creat {
        return Ok((resolve_at(task, dirfd, path, !nofollow)?, false));
    }
    let (mut dir, mut name, trailing) = resolve_parent(task, dirfd, path)?;
    if trailing || name == b"." || name == b".." {
        return Err(Errno::EISDIR);
    }
    // O_CREAT through a symlink whose target does not exist creates the target (unless
    // O_EXCL or O_NOFOLLOW), following at most 40 links like any resolution.
    let mut links = 0;
    loop {
        let existing = match task.resolver().path(&dir, &name, false) {
            Ok(existing) => existing,
            Err(Errno::ENOENT) => break,
            Err(e) => return Err(e),
        };
        if flags & libc::O_EXCL as u32 != 0 {
            return Err(Errno::EEXIST);
        }
        if existing.inode().kind() != FileKind::Symlink || nofollow {
            return Ok((existing, false));
        }
        match task.resolver().path(&dir, &name, true) {
            Ok(target) => return Ok((target, false)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        links += 1;
        if links > 40 {
            return Err(Errno::ELOOP);
        }
        let target = existing.inode().readlink()?;
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        let start = if target[0] == b'/' {
            task.fs.guard().root.clone()
        } else {
            dir.clone()
        };
        let (next_dir, next_name, trailing) = task.resolver().parent(&start, &target)?;
        if trailing || next_name == b"." || next_name == b".." {
            return Err(Errno::EISDIR);
        }
        (dir, name) = (next_dir, next_name);
    }
    may_modify_dir(task, &dir)?;
    let node = NewNode::File {
        mode: mode & !task.fs.guard().umask & 0o7777,
    };
    let inode = dir
        .inode()
        .create(&name, &node, task.creds.euid, task.creds.egid)?;
    let dentry = dir.dentry.add_child(&name, inode);
    Ok((
        VfsPath {
            mount: dir.mount.clone(),
            dentry,
        },
        true,
    ))
}

fn do_open(task: &mut Task, dirfd: i32, path_addr: u64, flags: u32, mode: u32) -> SyscallResult {
    let path = read_path(task, path_addr)?;
    if flags & (libc::O_TMPFILE as u32 & !libc::O_DIRECTORY as u32) != 0 {
        task.kernel.report_unimplemented(
            u64::from(moat_abi::syscalls::nr::OPENAT) | (1 << 32),
            "open O_TMPFILE",
        );
        return Err(Errno::EOPNOTSUPP);
    }
    let o_path = flags & libc::O_PATH as u32 != 0;
    let flags = if o_path {
        flags & (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u32
    } else {
        flags
    };
    let (target, created) = open_target(task, dirfd, &path, flags, mode)?;
    let inode = target.inode();
    let st = inode.stat()?;
    let kind = FileKind::from_mode(st.st_mode);
    let access = flags & libc::O_ACCMODE as u32;
    let wants_write = access == libc::O_WRONLY as u32 || access == libc::O_RDWR as u32;
    if flags & libc::O_DIRECTORY as u32 != 0 && kind != FileKind::Directory {
        return Err(if kind == FileKind::Symlink {
            Errno::ELOOP
        } else {
            Errno::ENOTDIR
        });
    }
    let ops: Box<dyn crate::fs::FileOps> = if o_path {
        Box::new(PathOnly)
    } else {
        if kind == FileKind::Symlink {
            return Err(Errno::ELOOP);
        }
        if kind == FileKind::Directory && (wants_write || flags & libc::O_CREAT as u32 != 0) {
            return Err(Errno::EISDIR);
        }
        if !created {
            let mut mask = 0;
            if access != libc::O_WRONLY as u32 {
                mask |= MAY_READ;
            }
            if wants_write || flags & libc::O_TRUNC as u32 != 0 {
                mask |= MAY_WRITE;
            }
            if !permitted(&st, &task.creds, mask) {
                return Err(Errno::EACCES);
            }
        }
        if wants_write || (flags & libc::O_TRUNC as u32 != 0 && kind == FileKind::Regular) {
            writable_mount(&target)?;
        }
        // Only character devices involve the caller's session (terminals): other opens do
        // not take the process tree's lock.
        if kind == FileKind::CharDevice {
            let (_, sid, pgid) = session_of(task);
            let ops = if st.st_rdev == crate::fs::pty::TTY_DEV {
                // `/dev/tty`: the caller's controlling terminal.
                task.kernel.ptys.open_controlling(sid)?
            } else {
                inode.open(flags)?
            };
            if flags & libc::O_NOCTTY as u32 == 0 {
                task.kernel
                    .ptys
                    .maybe_acquire(ops.as_ref(), task.tgid, sid, pgid);
            }
            ops
        } else {
            inode.open(flags)?
        }
    };
    // Linux reports O_LARGEFILE on every description opened by a 64-bit program.
    let kept = (flags & STATUS_KEPT) | libc::O_LARGEFILE as u32;
    let file = Arc::new(OpenFile::with_path(ops, kept, Some(target)));
    let limit = task.limit(libc::RLIMIT_NOFILE);
    Ok(task
        .files
        .guard()
        .install(file, flags & libc::O_CLOEXEC as u32 != 0, 0, limit)? as u64)
}

/// The caller's (tgid, session, process group).
pub(crate) fn session_of(task: &Task) -> (i32, i32, i32) {
    let tree = task.kernel.tree.guard();
    tree.process(task.tgid)
        .map_or((task.tgid, 0, 0), |p| (task.tgid, p.sid, p.pgid))
}

pub fn open(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_open(task, libc::AT_FDCWD, a[0], a[1] as u32, a[2] as u32)
}

pub fn openat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_open(task, int(a[0]), a[1], a[2] as u32, a[3] as u32)
}

pub fn creat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u32;
    do_open(task, libc::AT_FDCWD, a[0], flags, a[1] as u32)
}

const CLOSE_RANGE_UNSHARE: u32 = 2;
const CLOSE_RANGE_CLOEXEC: u32 = 4;

pub fn close_range(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (first, last, flags) = (a[0] as u32, a[1] as u32, a[2] as u32);
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    let top = task
        .files
        .guard()
        .highest()
        .unwrap_or(0)
        .min(i32::MAX as u32);
    for fd in first..=last.min(top) {
        let fd = fd as i32;
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            let _ = task.files.guard().set_cloexec(fd, true);
        } else {
            let _ = task.files.guard().remove(fd);
        }
    }
    Ok(0)
}

pub fn lseek(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    file.seek(a[1] as i64, int(a[2]))
}

/// `struct linux_dirent64` is 19 bytes of header, the name and its NUL, padded to 8.
fn dirent_len(name: &[u8]) -> usize {
    (19 + name.len() + 1).div_ceil(8) * 8
}

pub fn getdents64(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    if file.is_path_only() {
        return Err(Errno::EBADF);
    }
    if !file.ops().is_directory() {
        return Err(Errno::ENOTDIR);
    }
    let path = file.path().ok_or(Errno::ENOTDIR)?.clone();
    let count = a[2] as u32 as usize;
    let (mut pos, mut listing) = file.directory_state();
    if listing.is_none() {
        let this = path.inode().stat()?.st_ino;
        let parent = task
            .resolver()
            .path(&path, b"..", false)
            .and_then(|p| p.inode().stat())
            .map_or(this, |s| s.st_ino);
        let mut all = vec![
            crate::vfs::DirEntry {
                ino: this,
                kind: FileKind::Directory,
                name: b".".to_vec(),
            },
            crate::vfs::DirEntry {
                ino: parent,
                kind: FileKind::Directory,
                name: b"..".to_vec(),
            },
        ];
        all.extend(path.inode().readdir()?);
        *listing = Some(all);
    }
    let entries = listing.as_ref().map_or(&[][..], Vec::as_slice);
    let mut out = Vec::new();
    let mut index = *pos as usize;
    while let Some(e) = entries.get(index) {
        let len = dirent_len(&e.name);
        if out.len() + len > count {
            break;
        }
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.extend_from_slice(&((index + 1) as i64).to_le_bytes());
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.push(e.kind.dirent_type());
        out.extend_from_slice(&e.name);
        out.resize(out.len() + len - 19 - e.name.len(), 0);
        index += 1;
    }
    if out.is_empty() && index < entries.len() {
        return Err(Errno::EINVAL);
    }
    task.mm.guard().write_bytes(a[1], &out)?;
    *pos = index as u64;
    Ok(out.len() as u64)
}

/// `memfd_create` flags.
const MFD_CLOEXEC: u32 = 1;
const MFD_ALLOW_SEALING: u32 = 2;
const MFD_NOEXEC_SEAL: u32 = 8;
const MFD_EXEC: u32 = 0x10;
/// Longest name: 249 bytes (`MFD_NAME_MAX_LEN`), before the `memfd:` prefix.
const MFD_NAME_MAX: usize = 249;

/// `memfd_create`: an anonymous in-memory file, a tmpfs file of its own that no directory
/// holds. Reads, writes, `ftruncate` and private mappings work; writable shared mappings
/// wait for the page cache and seals are not implemented (`F_ADD_SEALS` is ENOSYS).
pub fn memfd_create(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[1]) as u32;
    if flags & !(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC) != 0
        || flags & (MFD_NOEXEC_SEAL | MFD_EXEC) == MFD_NOEXEC_SEAL | MFD_EXEC
    {
        return Err(Errno::EINVAL);
    }
    let name = task
        .mm
        .guard()
        .read_cstring(a[0], MFD_NAME_MAX + 1)
        .map_err(|e| match e {
            Errno::ENAMETOOLONG => Errno::EINVAL,
            e => e,
        })?;
    let mut full = b"memfd:".to_vec();
    full.extend_from_slice(&name);
    let root = crate::fs::tmpfs::Tmpfs::new_root_in(task.kernel.memory.clone(), 0o1777, 0, 0);
    let mount = crate::vfs::Mount::new_root(root, "tmpfs", false);
    let at = VfsPath::root_of(&mount);
    let mode = if flags & MFD_NOEXEC_SEAL != 0 {
        0o666
    } else {
        0o777
    };
    let inode = at.inode().create(
        &full,
        &NewNode::File { mode },
        task.creds.euid,
        task.creds.egid,
    )?;
    let dentry = at.dentry.add_child(&full, inode.clone());
    // No directory keeps it: the file lives as long as its open descriptions.
    at.inode().unlink(&full, false)?;
    at.dentry.remove_child(&full);
    let ops = inode.open(libc::O_RDWR as u32)?;
    let path = VfsPath { mount, dentry };
    let file = std::sync::Arc::new(crate::fs::OpenFile::with_path(
        ops,
        (libc::O_RDWR | libc::O_LARGEFILE) as u32,
        Some(path),
    ));
    let limit = task.limit(libc::RLIMIT_NOFILE);
    Ok(task
        .files
        .guard()
        .install(file, flags & MFD_CLOEXEC != 0, 0, limit)? as u64)
}
