//! The gofer's side: a loop answering requests on its socket until the kernel hangs up.
//!
//! Every fid is an `O_PATH|O_NOFOLLOW` fd. New files are reached only by `openat(dir fd, one
//! name, O_NOFOLLOW)`; an operation that needs the file itself rather than a name in a
//! directory goes through the fd: `AT_EMPTY_PATH` where the host call accepts it, otherwise
//! the fd's `/proc/self/fd/N` magic link, which the host resolves to the very inode the fd
//! holds (as gVisor's gofer does). Neither ever follows a path the application controls.
//!
//! How each attribute change is made (`SetAttr`, applied in this order):
//! - size: reopen `/proc/self/fd/N` `O_WRONLY`, then `ftruncate` (regular files only);
//! - uid/gid: `fchownat(fd, "", AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW)` (works on symlinks too);
//! - mode: `fchmodat(AT_FDCWD, "/proc/self/fd/N")` (`fchmodat` has no `AT_EMPTY_PATH`; a
//!   symlink's mode is `EOPNOTSUPP`, as on Linux), after the owner so set-id bits survive;
//! - times: `utimensat(fd, "", AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW)`, last so that explicit
//!   times win over those the other changes set.
//!
//! Xattrs use `getxattr`/`setxattr`/`listxattr`/`removexattr` on `/proc/self/fd/N` (the
//! `f*xattr` calls refuse `O_PATH` fds). Links use `linkat(fd, "", AT_EMPTY_PATH)`, and when
//! that needs a capability the gofer lacks, `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`.
//!
//! `ReadDir` keeps one directory fd per fid, opened (through `/proc/self/fd/N`) on its first
//! listing and closed by `Clunk`. A cookie is the host's own directory position (`d_off`) just
//! past the last entry returned; each `ReadDir` seeks the directory fd to the cookie (0: the
//! start) and reads entries until the reply would pass the message limit, so pages are
//! stateless apart from the fd and may be re-read or interleaved.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RawDir, RenameFlags, SeekFrom, Timestamps, XattrFlags, CWD,
};
use rustix::fs::{Gid, Uid};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
};
use rustix::net::{SendAncillaryMessage, SendFlags};

use crate::protocol::{
    decode_request, encode_reply, peek_tag, Attr, DecodeError, DirEntry, Fid, Reply, Request,
    Response, SetAttr, StatFs, TimeSpec, DIRENT_HEADER, ENTRIES_HEADER, FIRST_WALKED_FID,
    MAX_MESSAGE, MAX_WALK, NAME_MAX, PROTOCOL_VERSION, TARGET_MAX, XATTR_MAX,
};
use crate::GoferError;

/// A host directory the gofer serves.
#[derive(Clone, Debug)]
pub struct Mount {
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// What a fid holds.
struct Node {
    /// `O_PATH|O_NOFOLLOW`: names the file, cannot read it.
    fd: OwnedFd,
    /// Index of the mount the file belongs to (its read-only flag applies).
    mount: u32,
    /// `S_IFMT` bits (a file's type never changes).
    kind: u32,
    /// Host device: a walk that changes device checks which filesystem it entered.
    dev: u64,
    /// The directory opened for `ReadDir`.
    dir: Option<OwnedFd>,
}

/// Host kernel filesystems the gofer never serves (their contents describe the host).
const REFUSED_FILESYSTEMS: &[u64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x1cd1,      // devpts
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0xcafe_4a11, // bpf
    0x6165_676c, // pstore
    0x6265_6570, // configfs
    0x4249_4e4d, // binfmt_misc
    0xf97c_ff8c, // selinuxfs
];

/// Open flags the kernel may ask for; `O_CREAT`, `O_EXCL`, `O_NOFOLLOW`, `O_CLOEXEC`,
/// `O_NOCTTY` and `O_DIRECTORY` are accepted and dropped; anything else is `EINVAL`.
const OPEN_FLAGS: u32 = (libc::O_ACCMODE
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_DIRECT
    | libc::O_NOATIME
    | libc::O_LARGEFILE) as u32;
const IGNORED_OPEN_FLAGS: u32 = (libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOFOLLOW
    | libc::O_CLOEXEC
    | libc::O_NOCTTY
    | libc::O_DIRECTORY) as u32;

const RENAME_FLAGS: u32 = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;

/// Size of the `getdents64` buffer for `ReadDir`.
const DIRENT_BUFFER: usize = 32 * 1024;

fn attr_of(st: &rustix::fs::Stat) -> Attr {
    Attr {
        ino: st.st_ino,
        dev: st.st_dev,
        mode: st.st_mode,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
        blksize: st.st_blksize as u64,
        blocks: st.st_blocks as u64,
        atime: (st.st_atime, st.st_atime_nsec as i64),
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
    }
}

fn stat_fd(fd: impl AsFd) -> Result<rustix::fs::Stat, Errno> {
    rustix::fs::statat(fd, c"", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
}

/// `/proc/self/fd/N` for an fd the gofer holds.
fn proc_path(fd: impl AsFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).expect("no NUL in a number")
}

/// Reopen the file an `O_PATH` fd names, through its `/proc/self/fd` entry (the fd, not any
/// path the application controls, decides which file this is).
fn reopen(fd: &OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    let opened = rustix::fs::open(
        proc_path(fd).as_c_str(),
        flags | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    // The reopened file must be the very same inode.
    let (a, b) = (stat_fd(fd)?, stat_fd(&opened)?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Errno::IO);
    }
    Ok(opened)
}

/// One name in a directory: not empty, `.` or `..`, no `/` or NUL, at most `NAME_MAX` bytes.
fn check_name(name: &[u8]) -> Result<CString, Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::INVAL);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    CString::new(name).map_err(|_| Errno::INVAL)
}

/// An xattr name the gofer serves: only the `user.` namespace.
fn check_xattr_name(name: &[u8]) -> Result<CString, Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::RANGE);
    }
    if !name.starts_with(b"user.") {
        return Err(Errno::OPNOTSUPP);
    }
    if name.len() == b"user.".len() {
        return Err(Errno::INVAL);
    }
    CString::new(name).map_err(|_| Errno::INVAL)
}

fn dtype(t: FileType) -> u8 {
    match t {
        FileType::Directory => libc::DT_DIR,
        FileType::RegularFile => libc::DT_REG,
        FileType::Symlink => libc::DT_LNK,
        FileType::CharacterDevice => libc::DT_CHR,
        FileType::BlockDevice => libc::DT_BLK,
        FileType::Fifo => libc::DT_FIFO,
        FileType::Socket => libc::DT_SOCK,
        FileType::Unknown => libc::DT_UNKNOWN,
    }
}

/// The validated open flags to pass to the host (without `O_CLOEXEC`, which is always added).
fn open_flags(flags: u32) -> Result<OFlags, Errno> {
    let flags = flags & !IGNORED_OPEN_FLAGS;
    if flags & !OPEN_FLAGS != 0 || flags & libc::O_ACCMODE as u32 == libc::O_ACCMODE as u32 {
        return Err(Errno::INVAL);
    }
    Ok(OFlags::from_bits_retain(flags))
}

fn writes(flags: u32) -> bool {
    flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32 || flags & libc::O_TRUNC as u32 != 0
}

fn check_time(t: Option<TimeSpec>) -> Result<rustix::fs::Timespec, Errno> {
    match t {
        None => Ok(rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        }),
        Some(t)
            if (0..1_000_000_000).contains(&t.nsec)
                || t.nsec == TimeSpec::NOW
                || t.nsec == TimeSpec::OMIT =>
        {
            Ok(rustix::fs::Timespec {
                tv_sec: t.sec,
                tv_nsec: t.nsec,
            })
        }
        Some(_) => Err(Errno::INVAL),
    }
}

struct Server {
    read_only: Vec<bool>,
    fids: HashMap<Fid, Node>,
    next_fid: Fid,
    /// Whether the handshake succeeded (nothing else is served before it).
    versioned: bool,
    dirents: Vec<MaybeUninit<u8>>,
}

impl Server {
    fn node(&self, fid: Fid) -> Result<&Node, Errno> {
        self.fids.get(&fid).ok_or(Errno::BADF)
    }

    /// A directory fid on a writable mount (for a change inside it).
    fn writable_dir(&self, fid: Fid) -> Result<&Node, Errno> {
        let node = self.node(fid)?;
        if node.kind != libc::S_IFDIR {
            return Err(Errno::NOTDIR);
        }
        self.writable(node)?;
        Ok(node)
    }

    fn writable(&self, node: &Node) -> Result<(), Errno> {
        if self
            .read_only
            .get(node.mount as usize)
            .copied()
            .unwrap_or(true)
        {
            Err(Errno::ROFS)
        } else {
            Ok(())
        }
    }

    /// Keep `fd` as a new fid; its attributes.
    fn insert(&mut self, fd: OwnedFd, mount: u32) -> Result<(Fid, Attr), Errno> {
        let st = stat_fd(&fd)?;
        Ok((self.insert_stat(fd, mount, &st), attr_of(&st)))
    }

    fn insert_stat(&mut self, fd: OwnedFd, mount: u32, st: &rustix::fs::Stat) -> Fid {
        let fid = self.next_fid;
        self.next_fid += 1;
        self.fids.insert(
            fid,
            Node {
                fd,
                mount,
                kind: st.st_mode & libc::S_IFMT,
                dev: st.st_dev,
                dir: None,
            },
        );
        fid
    }

    fn attach(&self, mount: u32) -> Result<Response, Errno> {
        let fid = u64::from(mount);
        let node = self
            .fids
            .get(&fid)
            .filter(|_| fid < FIRST_WALKED_FID)
            .ok_or(Errno::NOENT)?;
        Ok(Response::Node {
            fid,
            attr: attr_of(&stat_fd(&node.fd)?),
        })
    }

    /// Walk from `dir`: a malformed name refuses the whole request; a component the host
    /// refuses ends the walk with its errno, after the nodes already walked.
    fn walk(&mut self, dir: Fid, names: &[Vec<u8>]) -> Result<Response, Errno> {
        if names.is_empty() || names.len() > MAX_WALK {
            return Err(Errno::INVAL);
        }
        let names = names
            .iter()
            .map(|n| check_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let start = self.node(dir)?;
        if start.kind != libc::S_IFDIR {
            return Err(Errno::NOTDIR);
        }
        let mount = start.mount;
        let mut walked: Vec<(OwnedFd, rustix::fs::Stat)> = Vec::new();
        let mut errno = None;
        for name in &names {
            let (parent, parent_kind, parent_dev) = match walked.last() {
                Some((fd, st)) => (fd.as_fd(), st.st_mode & libc::S_IFMT, st.st_dev),
                None => (start.fd.as_fd(), start.kind, start.dev),
            };
            match walk_one(parent, parent_kind, parent_dev, name) {
                Ok(step) => walked.push(step),
                Err(e) => {
                    errno = Some(e.raw_os_error());
                    break;
                }
            }
        }
        let nodes = walked
            .into_iter()
            .map(|(fd, st)| (self.insert_stat(fd, mount, &st), attr_of(&st)))
            .collect();
        Ok(Response::Walked { nodes, errno })
    }

    fn open(&self, fid: Fid, flags: u32) -> Result<OwnedFd, Errno> {
        let node = self.node(fid)?;
        let oflags = open_flags(flags)?;
        match node.kind {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(Errno::ISDIR),
            libc::S_IFLNK => return Err(Errno::LOOP),
            // Host devices, FIFOs and sockets are never opened for the sandbox.
            _ => return Err(Errno::ACCESS),
        }
        if writes(flags) {
            self.writable(node)?;
        }
        reopen(&node.fd, oflags)
    }

    fn create(
        &mut self,
        dir: Fid,
        name: &[u8],
        flags: u32,
        mode: u32,
        owner: (u32, u32),
    ) -> Result<(Reply, Option<OwnedFd>), Errno> {
        let name = check_name(name)?;
        let oflags = open_flags(flags)?;
        let parent = self.writable_dir(dir)?;
        let mount = parent.mount;
        let mode = mode & 0o7777;
        let file = rustix::fs::openat(
            &parent.fd,
            name.as_c_str(),
            oflags
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NOCTTY,
            Mode::from_raw_mode(mode),
        )?;
        // The fid is an O_PATH fd on the very file just created (not a second lookup of
        // the name, which a host process could have replaced meanwhile).
        let path = reopen(&file, OFlags::PATH)?;
        chown_best_effort(&path, owner);
        if stat_fd(&file)?.st_mode & 0o7777 != mode {
            // The umask took bits away.
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        }
        let (fid, attr) = self.insert(path, mount)?;
        Ok((Ok(Response::Created { fid, attr }), Some(file)))
    }

    /// After making `name` in `parent`: take it as a new fid, owned by `owner`, with `mode`
    /// (unless a symlink).
    fn made(
        &mut self,
        parent: Fid,
        name: &CStr,
        owner: (u32, u32),
        mode: Option<u32>,
    ) -> Result<Response, Errno> {
        let node = self.node(parent)?;
        let mount = node.mount;
        let fd = rustix::fs::openat(
            &node.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        chown_best_effort(&fd, owner);
        if let Some(mode) = mode {
            if stat_fd(&fd)?.st_mode & 0o7777 != mode {
                rustix::fs::chmodat(
                    CWD,
                    proc_path(&fd).as_c_str(),
                    Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )?;
            }
        }
        let (fid, attr) = self.insert(fd, mount)?;
        Ok(Response::Node { fid, attr })
    }

    fn mkdir(
        &mut self,
        dir: Fid,
        name: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Response, Errno> {
        let name = check_name(name)?;
        let mode = mode & 0o7777;
        rustix::fs::mkdirat(
            &self.writable_dir(dir)?.fd,
            name.as_c_str(),
            Mode::from_raw_mode(mode),
        )?;
        self.made(dir, &name, owner, Some(mode))
    }

    fn symlink(
        &mut self,
        dir: Fid,
        name: &[u8],
        target: &[u8],
        owner: (u32, u32),
    ) -> Result<Response, Errno> {
        let name = check_name(name)?;
        if target.is_empty() {
            return Err(Errno::NOENT);
        }
        if target.len() > TARGET_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        let target = CString::new(target).map_err(|_| Errno::INVAL)?;
        rustix::fs::symlinkat(
            target.as_c_str(),
            &self.writable_dir(dir)?.fd,
            name.as_c_str(),
        )?;
        self.made(dir, &name, owner, None)
    }

    fn mknod(
        &mut self,
        dir: Fid,
        name: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<Response, Errno> {
        let name = check_name(name)?;
        let file_type = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => FileType::RegularFile,
            libc::S_IFIFO => FileType::Fifo,
            // A socket bound in the sandbox leaves a socket file, as on Linux. Made by mknod,
            // the host's node is inert: no host socket is bound to it, so a host process that
            // connects is refused (the sandbox's own sockets live in Moat's kernel).
            libc::S_IFSOCK => FileType::Socket,
            // Device nodes on the host are never made for the sandbox.
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFDIR => return Err(Errno::PERM),
            _ => return Err(Errno::INVAL),
        };
        let perm = mode & 0o7777;
        rustix::fs::mknodat(
            &self.writable_dir(dir)?.fd,
            name.as_c_str(),
            file_type,
            Mode::from_raw_mode(perm),
            0,
        )?;
        self.made(dir, &name, owner, Some(perm))
    }

    fn link(&mut self, target: Fid, dir: Fid, name: &[u8]) -> Result<Response, Errno> {
        let name = check_name(name)?;
        let parent = self.writable_dir(dir)?;
        let file = self.node(target)?;
        if file.kind == libc::S_IFDIR {
            return Err(Errno::PERM);
        }
        if file.mount != parent.mount {
            return Err(Errno::XDEV);
        }
        link_at(&file.fd, &parent.fd, &name)?;
        self.made(dir, &name, (u32::MAX, u32::MAX), None)
    }

    fn unlink(&self, dir: Fid, name: &[u8], remove_dir: bool) -> Result<Response, Errno> {
        let name = check_name(name)?;
        let flags = if remove_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&self.writable_dir(dir)?.fd, name.as_c_str(), flags)?;
        Ok(Response::Ok)
    }

    fn rename(
        &self,
        old_dir: Fid,
        old_name: &[u8],
        new_dir: Fid,
        new_name: &[u8],
        flags: u32,
    ) -> Result<Response, Errno> {
        let (old_name, new_name) = (check_name(old_name)?, check_name(new_name)?);
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !RENAME_FLAGS != 0 || (exchange && flags != libc::RENAME_EXCHANGE) {
            return Err(Errno::INVAL);
        }
        let (old, new) = (self.writable_dir(old_dir)?, self.writable_dir(new_dir)?);
        if old.mount != new.mount {
            return Err(Errno::XDEV);
        }
        rustix::fs::renameat_with(
            &old.fd,
            old_name.as_c_str(),
            &new.fd,
            new_name.as_c_str(),
            RenameFlags::from_bits_retain(flags),
        )?;
        Ok(Response::Ok)
    }

    fn readlink(&self, fid: Fid) -> Result<Response, Errno> {
        let node = self.node(fid)?;
        if node.kind != libc::S_IFLNK {
            return Err(Errno::INVAL);
        }
        let target = rustix::fs::readlinkat(&node.fd, c"", Vec::new())?;
        Ok(Response::Target(target.into_bytes()))
    }

    fn read_dir(&mut self, fid: Fid, cookie: u64) -> Result<Response, Errno> {
        let node = self.fids.get_mut(&fid).ok_or(Errno::BADF)?;
        if node.kind != libc::S_IFDIR {
            return Err(Errno::NOTDIR);
        }
        if node.dir.is_none() {
            node.dir = Some(reopen(&node.fd, OFlags::RDONLY | OFlags::DIRECTORY)?);
        }
        let dir = node.dir.as_ref().map(AsFd::as_fd).ok_or(Errno::BADF)?;
        rustix::fs::seek(dir, SeekFrom::Start(cookie))?;
        if self.dirents.is_empty() {
            self.dirents.resize(DIRENT_BUFFER, MaybeUninit::uninit());
        }
        let mut raw = RawDir::new(dir, &mut self.dirents);
        let mut entries = Vec::new();
        let mut size = ENTRIES_HEADER;
        let mut next_cookie = cookie;
        let done = loop {
            let Some(entry) = raw.next() else { break true };
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            let entry_size = DIRENT_HEADER + name.len();
            if size + entry_size > MAX_MESSAGE {
                break false;
            }
            next_cookie = entry.next_entry_cookie();
            if name != b"." && name != b".." {
                size += entry_size;
                entries.push(DirEntry {
                    ino: entry.ino(),
                    kind: dtype(entry.file_type()),
                    name: name.to_vec(),
                });
            }
        };
        Ok(Response::Entries {
            entries,
            next_cookie,
            done,
        })
    }

    fn set_attr(&self, fid: Fid, set: &SetAttr) -> Result<Response, Errno> {
        let node = self.node(fid)?;
        if !set.is_empty() {
            self.writable(node)?;
        }
        // Everything is checked before anything changes.
        let times = Timestamps {
            last_access: check_time(set.atime)?,
            last_modification: check_time(set.mtime)?,
        };
        if set.size.is_some() {
            match node.kind {
                libc::S_IFREG => {}
                libc::S_IFDIR => return Err(Errno::ISDIR),
                _ => return Err(Errno::INVAL),
            }
        }
        if set.mode.is_some() && node.kind == libc::S_IFLNK {
            return Err(Errno::OPNOTSUPP);
        }
        if let Some(size) = set.size {
            let file = reopen(&node.fd, OFlags::WRONLY)?;
            rustix::fs::ftruncate(&file, size)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            rustix::fs::chownat(
                &node.fd,
                c"",
                set.uid.map(Uid::from_raw),
                set.gid.map(Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(mode) = set.mode {
            rustix::fs::chmodat(
                CWD,
                proc_path(&node.fd).as_c_str(),
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            rustix::fs::utimensat(
                &node.fd,
                c"",
                &times,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(Response::Attr(attr_of(&stat_fd(&node.fd)?)))
    }

    /// The path of a file for the `*xattr` calls, which refuse `O_PATH` fds; `None` for a
    /// file that cannot carry `user.` xattrs (Linux allows them on files and directories).
    fn xattr_path(&self, fid: Fid) -> Result<Option<CString>, Errno> {
        let node = self.node(fid)?;
        Ok(matches!(node.kind, libc::S_IFREG | libc::S_IFDIR).then(|| proc_path(&node.fd)))
    }

    fn get_xattr(&self, fid: Fid, name: &[u8]) -> Result<Response, Errno> {
        let name = check_xattr_name(name)?;
        let Some(path) = self.xattr_path(fid)? else {
            return Err(Errno::NODATA);
        };
        let mut value = vec![0u8; XATTR_MAX];
        let n = rustix::fs::getxattr(path.as_c_str(), name.as_c_str(), &mut value[..])?;
        value.truncate(n);
        Ok(Response::Bytes(value))
    }

    fn set_xattr(
        &self,
        fid: Fid,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<Response, Errno> {
        let name = check_xattr_name(name)?;
        if value.len() > XATTR_MAX {
            return Err(Errno::TOOBIG);
        }
        let flags = XattrFlags::from_bits(flags).ok_or(Errno::INVAL)?;
        self.writable(self.node(fid)?)?;
        let Some(path) = self.xattr_path(fid)? else {
            return Err(Errno::PERM);
        };
        rustix::fs::setxattr(path.as_c_str(), name.as_c_str(), value, flags)?;
        Ok(Response::Ok)
    }

    fn list_xattr(&self, fid: Fid) -> Result<Response, Errno> {
        let Some(path) = self.xattr_path(fid)? else {
            return Ok(Response::Names(Vec::new()));
        };
        let mut list = vec![0u8; XATTR_MAX];
        let n = rustix::fs::listxattr(path.as_c_str(), &mut list[..])?;
        let names = list[..n]
            .split(|&b| b == 0)
            .filter(|name| name.starts_with(b"user.") && name.len() <= NAME_MAX)
            .map(<[u8]>::to_vec)
            .collect();
        Ok(Response::Names(names))
    }

    fn remove_xattr(&self, fid: Fid, name: &[u8]) -> Result<Response, Errno> {
        let name = check_xattr_name(name)?;
        self.writable(self.node(fid)?)?;
        let Some(path) = self.xattr_path(fid)? else {
            return Err(Errno::PERM);
        };
        rustix::fs::removexattr(path.as_c_str(), name.as_c_str())?;
        Ok(Response::Ok)
    }

    fn stat_fs(&self, fid: Fid) -> Result<Response, Errno> {
        let node = self.node(fid)?;
        let s = rustix::fs::fstatfs(&node.fd)?;
        let mut flags = s.f_flags as u64;
        if self.writable(node).is_err() {
            flags |= libc::ST_RDONLY;
        }
        Ok(Response::StatFs(StatFs {
            fs_type: s.f_type as u64,
            bsize: s.f_bsize as u64,
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            namelen: s.f_namelen as u64,
            frsize: s.f_frsize as u64,
            flags,
        }))
    }

    fn clunk(&mut self, fid: Fid) -> Result<Response, Errno> {
        if fid < FIRST_WALKED_FID {
            // Mount roots live as long as the server.
            self.node(fid)?;
        } else {
            self.fids.remove(&fid).ok_or(Errno::BADF)?;
        }
        Ok(Response::Ok)
    }

    /// Answer one request: the reply and the fd it donates.
    fn handle(&mut self, req: Request) -> (Reply, Option<OwnedFd>) {
        let result = match req {
            Request::Version { version } => {
                if version == PROTOCOL_VERSION {
                    self.versioned = true;
                    Ok(Response::Version {
                        version,
                        mounts: self.read_only.len() as u32,
                    })
                } else {
                    tracing::warn!(
                        "gofer: the kernel speaks protocol {version}, we speak {PROTOCOL_VERSION}"
                    );
                    Err(Errno::PROTO)
                }
            }
            _ if !self.versioned => Err(Errno::PROTO),
            Request::Attach { mount } => self.attach(mount),
            Request::Walk { dir, names } => self.walk(dir, &names),
            Request::Stat { fid } => self
                .node(fid)
                .and_then(|n| stat_fd(&n.fd))
                .map(|st| Response::Attr(attr_of(&st))),
            Request::Open { fid, flags } => {
                return match self.open(fid, flags) {
                    Ok(fd) => (Ok(Response::Opened), Some(fd)),
                    Err(e) => (Err(e.raw_os_error()), None),
                };
            }
            Request::Create {
                dir,
                name,
                flags,
                mode,
                uid,
                gid,
            } => {
                return match self.create(dir, &name, flags, mode, (uid, gid)) {
                    Ok(answer) => answer,
                    Err(e) => (Err(e.raw_os_error()), None),
                };
            }
            Request::Mkdir {
                dir,
                name,
                mode,
                uid,
                gid,
            } => self.mkdir(dir, &name, mode, (uid, gid)),
            Request::Symlink {
                dir,
                name,
                target,
                uid,
                gid,
            } => self.symlink(dir, &name, &target, (uid, gid)),
            Request::Mknod {
                dir,
                name,
                mode,
                rdev: _,
                uid,
                gid,
            } => self.mknod(dir, &name, mode, (uid, gid)),
            Request::Link { target, dir, name } => self.link(target, dir, &name),
            Request::Unlink {
                dir,
                name,
                remove_dir,
            } => self.unlink(dir, &name, remove_dir),
            Request::Rename {
                old_dir,
                old_name,
                new_dir,
                new_name,
                flags,
            } => self.rename(old_dir, &old_name, new_dir, &new_name, flags),
            Request::Readlink { fid } => self.readlink(fid),
            Request::ReadDir { fid, cookie } => self.read_dir(fid, cookie),
            Request::SetAttr { fid, attr } => self.set_attr(fid, &attr),
            Request::GetXattr { fid, name } => self.get_xattr(fid, &name),
            Request::SetXattr {
                fid,
                name,
                value,
                flags,
            } => self.set_xattr(fid, &name, &value, flags),
            Request::ListXattr { fid } => self.list_xattr(fid),
            Request::RemoveXattr { fid, name } => self.remove_xattr(fid, &name),
            Request::StatFs { fid } => self.stat_fs(fid),
            Request::Clunk { fid } => self.clunk(fid),
        };
        (result.map_err(Errno::raw_os_error), None)
    }
}

/// One step of a walk: `name` in the directory `parent`, never following a symlink.
fn walk_one(
    parent: BorrowedFd<'_>,
    parent_kind: u32,
    parent_dev: u64,
    name: &CStr,
) -> Result<(OwnedFd, rustix::fs::Stat), Errno> {
    if parent_kind != libc::S_IFDIR {
        return Err(Errno::NOTDIR);
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = stat_fd(&fd)?;
    if st.st_dev != parent_dev {
        // Crossed into another host filesystem: never one of the host kernel's own.
        let fs = rustix::fs::fstatfs(&fd)?;
        if REFUSED_FILESYSTEMS.contains(&(fs.f_type as u64)) {
            return Err(Errno::ACCESS);
        }
    }
    Ok((fd, st))
}

/// A new name `name` in `dir` for the file `file` holds (an `O_PATH` fd), never following
/// a symlink: `linkat(fd, "", AT_EMPTY_PATH)`, or through the magic link when the host
/// refuses that (before Linux 6.10 it needs `CAP_DAC_READ_SEARCH`).
fn link_at(file: &OwnedFd, dir: &OwnedFd, name: &CStr) -> Result<(), Errno> {
    match rustix::fs::linkat(file, c"", dir, name, AtFlags::EMPTY_PATH) {
        Err(Errno::NOENT | Errno::PERM) => link_through_proc(file, dir, name),
        result => result,
    }
}

/// `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`: follows the magic link to the inode the fd
/// holds, and no further (a symlink is linked itself).
fn link_through_proc(file: &OwnedFd, dir: &OwnedFd, name: &CStr) -> Result<(), Errno> {
    rustix::fs::linkat(
        CWD,
        proc_path(file).as_c_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    )
}

/// Give a new file the owner the kernel asked for, if the gofer may (it keeps the gofer's
/// own ids otherwise). `u32::MAX` leaves an id as it is.
fn chown_best_effort(fd: &OwnedFd, (uid, gid): (u32, u32)) {
    let Ok(st) = stat_fd(fd) else { return };
    let uid = (uid != u32::MAX && uid != st.st_uid).then(|| Uid::from_raw(uid));
    let gid = (gid != u32::MAX && gid != st.st_gid).then(|| Gid::from_raw(gid));
    if uid.is_some() || gid.is_some() {
        if let Err(e) = rustix::fs::chownat(
            fd,
            c"",
            uid,
            gid,
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        ) {
            tracing::debug!("gofer: cannot give a new file its owner: {e}");
        }
    }
}

/// What one `recvmsg` brought.
pub(crate) enum Received {
    /// A datagram of this many bytes (`truncated`: it was longer than the buffer).
    Message {
        len: usize,
        truncated: bool,
        fds: Vec<OwnedFd>,
    },
    /// The peer hung up.
    Closed,
}

/// Receive one datagram into `buf`.
pub(crate) fn recv_message(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received, Errno> {
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for m in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = m {
                        fds.extend(received);
                    }
                }
                // A zero-length read is the peer hanging up, or an empty datagram.
                if msg.bytes == 0 && !msg.flags.contains(ReturnFlags::TRUNC) && hung_up(sock) {
                    return Ok(Received::Closed);
                }
                return Ok(Received::Message {
                    len: msg.bytes,
                    truncated: msg.flags.contains(ReturnFlags::TRUNC),
                    fds,
                });
            }
            Err(Errno::INTR) => {}
            Err(Errno::CONNRESET) => return Ok(Received::Closed),
            Err(e) => return Err(e),
        }
    }
}

/// Whether the peer of a connected socket has gone.
fn hung_up(sock: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &sock,
        rustix::event::PollFlags::RDHUP,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().intersects(
            rustix::event::PollFlags::RDHUP
                | rustix::event::PollFlags::HUP
                | rustix::event::PollFlags::ERR,
        ),
        Err(_) => true,
    }
}

/// Send one datagram, with an fd if given.
pub(crate) fn send_message(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds: [BorrowedFd<'_>; 1];
    if let Some(fd) = fd {
        fds = [fd];
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The errno a malformed request earns.
fn decode_errno(e: &DecodeError) -> i32 {
    match e {
        DecodeError::UnknownOp(_) => libc::EPROTO,
        _ => libc::EINVAL,
    }
}

/// Serve `mounts` on the `SOCK_SEQPACKET` socket `sock` until the kernel closes it (then
/// `Ok`). Each mount's root is opened once, here (mount N's root is fid N). A malformed
/// request gets an `EINVAL` reply (`EPROTO` for an unknown operation) when its tag can be
/// read, and is otherwise logged and dropped; the gofer never panics on what it receives.
///
/// Takes the socket and mounts by value or by reference.
pub fn serve(sock: impl AsFd, mounts: impl AsRef<[Mount]>) -> Result<(), GoferError> {
    let sock = sock.as_fd();
    let mounts = mounts.as_ref();
    let mut server = Server {
        read_only: mounts.iter().map(|m| m.read_only).collect(),
        fids: HashMap::new(),
        next_fid: FIRST_WALKED_FID,
        versioned: false,
        dirents: Vec::new(),
    };
    for (i, m) in mounts.iter().enumerate() {
        let fd = rustix::fs::openat(
            CWD,
            &m.host_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| GoferError::Mount {
            path: m.host_path.clone(),
            source: e.into(),
        })?;
        let st = stat_fd(&fd).map_err(|e| GoferError::Mount {
            path: m.host_path.clone(),
            source: e.into(),
        })?;
        server.fids.insert(
            i as Fid,
            Node {
                fd,
                mount: i as u32,
                kind: st.st_mode & libc::S_IFMT,
                dev: st.st_dev,
                dir: None,
            },
        );
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, truncated) =
            match recv_message(sock, &mut buf).map_err(|e| GoferError::Io(e.into()))? {
                Received::Closed => return Ok(()),
                Received::Message {
                    len,
                    truncated,
                    fds,
                } => {
                    if !fds.is_empty() {
                        tracing::warn!("gofer: dropped {} fds sent by the kernel", fds.len());
                    }
                    (len, truncated)
                }
            };
        let message = &buf[..len];
        let decoded = if truncated {
            Err(DecodeError::TooLong {
                what: "message",
                len,
                max: MAX_MESSAGE,
            })
        } else {
            decode_request(message)
        };
        let (tag, (reply, fd)) = match decoded {
            Ok((tag, req)) => (tag, server.handle(req)),
            Err(e) => {
                let Some(tag) = peek_tag(message) else {
                    tracing::warn!("gofer: dropped a {len}-byte message without a tag");
                    continue;
                };
                tracing::warn!("gofer: malformed request {tag}: {e}");
                (tag, (Err(decode_errno(&e)), None))
            }
        };
        let mut bytes = encode_reply(tag, &reply);
        if bytes.len() > MAX_MESSAGE {
            tracing::error!(
                "gofer: reply {tag} is {} bytes, past the limit",
                bytes.len()
            );
            bytes = encode_reply(tag, &Err(libc::EOVERFLOW));
        }
        match send_message(sock, &bytes, fd.as_ref().map(AsFd::as_fd)) {
            Ok(()) => {}
            Err(Errno::PIPE | Errno::CONNRESET) => return Ok(()),
            Err(e) => return Err(GoferError::Io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_through_proc_never_follow_a_symlink() {
        let dir = std::env::temp_dir().join(format!("moat-gofer-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        let _ = std::fs::remove_file(dir.join("link"));
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        let path = |name: &str| {
            rustix::fs::open(
                dir.join(name),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap()
        };
        let (root, file, link) = (path(""), path("file"), path("link"));
        link_through_proc(&file, &root, c"file2").unwrap();
        link_through_proc(&link, &root, c"link2").unwrap();
        let ino = |name: &str| stat_fd(path(name)).unwrap().st_ino;
        assert_eq!(ino("file2"), ino("file"));
        assert_eq!(ino("link2"), ino("link"));
        assert_eq!(
            std::fs::read_link(dir.join("link2")).unwrap(),
            std::path::Path::new("/etc/passwd")
        );
        assert_eq!(link_through_proc(&file, &root, c"file2"), Err(Errno::EXIST));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
