//! stat, lstat, fstat, newfstatat, statx, statfs, fstatfs.

use moat_abi::{Errno, Stat};

use super::path::{read_path, resolve_at, target_at, Target};
use super::{int, SyscallResult};
use crate::process::Guard;
use crate::task::Task;

fn stat_of(target: &Target) -> Result<Stat, Errno> {
    match target {
        Target::Path(p) => p.inode().stat(),
        Target::File(f) => f.stat(),
    }
}

pub fn stat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let path = read_path(task, a[0])?;
    let st = resolve_at(task, libc::AT_FDCWD, &path, true)?
        .inode()
        .stat()?;
    task.mm.guard().write_obj(a[1], &st)?;
    Ok(0)
}

pub fn lstat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let path = read_path(task, a[0])?;
    let st = resolve_at(task, libc::AT_FDCWD, &path, false)?
        .inode()
        .stat()?;
    task.mm.guard().write_obj(a[1], &st)?;
    Ok(0)
}

pub fn fstat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let st = task.files.guard().get(int(a[0]))?.stat()?;
    task.mm.guard().write_obj(a[1], &st)?;
    Ok(0)
}

pub fn newfstatat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[3]);
    if flags & !(libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let target = target_at(task, int(a[0]), a[1], flags, true)?;
    let st = stat_of(&target)?;
    task.mm.guard().write_obj(a[2], &st)?;
    Ok(0)
}

const STATX_BASIC_STATS: u32 = 0x7ff;
const STATX_MNT_ID: u32 = 0x1000;
const STATX_RESERVED: u32 = 0x8000_0000;
const AT_STATX_SYNC_TYPE: i32 = 0x6000;

fn major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

fn minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

/// Lay out a `struct statx` (256 bytes).
fn statx_bytes(st: &Stat, mnt_id: u64) -> Vec<u8> {
    let mut b = vec![0u8; 256];
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, 0, STATX_BASIC_STATS | STATX_MNT_ID);
    put32(&mut b, 4, st.st_blksize as u32);
    put32(&mut b, 16, st.st_nlink as u32);
    put32(&mut b, 20, st.st_uid);
    put32(&mut b, 24, st.st_gid);
    b[28..30].copy_from_slice(&(st.st_mode as u16).to_le_bytes());
    put64(&mut b, 32, st.st_ino);
    put64(&mut b, 40, st.st_size as u64);
    put64(&mut b, 48, st.st_blocks as u64);
    for (at, (sec, nsec)) in [
        (64, (st.st_atime, st.st_atime_nsec)),
        (96, (st.st_ctime, st.st_ctime_nsec)),
        (112, (st.st_mtime, st.st_mtime_nsec)),
    ] {
        put64(&mut b, at, sec as u64);
        put32(&mut b, at + 8, nsec as u32);
    }
    put32(&mut b, 128, major(st.st_rdev));
    put32(&mut b, 132, minor(st.st_rdev));
    put32(&mut b, 136, major(st.st_dev));
    put32(&mut b, 140, minor(st.st_dev));
    put64(&mut b, 144, mnt_id);
    b
}

pub fn statx(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (flags, mask) = (int(a[2]), a[3] as u32);
    let known = libc::AT_EMPTY_PATH
        | libc::AT_SYMLINK_NOFOLLOW
        | libc::AT_NO_AUTOMOUNT
        | AT_STATX_SYNC_TYPE;
    if flags & !known != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
        || mask & STATX_RESERVED != 0
    {
        return Err(Errno::EINVAL);
    }
    let target = target_at(task, int(a[0]), a[1], flags, true)?;
    let st = stat_of(&target)?;
    let mnt_id = match &target {
        Target::Path(p) => p.mount.id,
        Target::File(_) => 0,
    };
    task.mm
        .guard()
        .write_bytes(a[4], &statx_bytes(&st, mnt_id))?;
    Ok(0)
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// `struct statfs` for a Moat filesystem.
fn statfs_bytes(task: &Task, read_only: bool) -> Vec<u8> {
    let blocks = task.kernel.memory.size() / 4096;
    let free = blocks - task.kernel.memory.committed_bytes() / 4096;
    let fields: [i64; 15] = [
        TMPFS_MAGIC,
        4096,
        blocks as i64,
        free as i64,
        free as i64,
        1 << 20,
        1 << 20,
        0, // f_fsid (two ints)
        255,
        4096,
        if read_only { libc::ST_RDONLY as i64 } else { 0 },
        0,
        0,
        0,
        0,
    ];
    fields.iter().flat_map(|f| f.to_le_bytes()).collect()
}

pub fn statfs(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let path = read_path(task, a[0])?;
    let target = resolve_at(task, libc::AT_FDCWD, &path, true)?;
    let bytes = statfs_bytes(task, target.mount.read_only);
    task.mm.guard().write_bytes(a[1], &bytes)?;
    Ok(0)
}

pub fn fstatfs(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = task.files.guard().get(int(a[0]))?;
    let ro = file.path().is_some_and(|p| p.mount.read_only);
    let bytes = statfs_bytes(task, ro);
    task.mm.guard().write_bytes(a[1], &bytes)?;
    Ok(0)
}
