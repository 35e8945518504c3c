//! The gofer's side: a loop answering requests on its socket until the kernel hangs up.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use crate::protocol::{
    encode_reply, Attr, DirEntry, Reply, Request, Response, FIRST_WALKED_FID, MAX_MESSAGE,
    PROTOCOL_VERSION,
};
use crate::GoferError;

/// A host directory the gofer serves.
#[derive(Clone, Debug)]
pub struct Mount {
    pub host_path: PathBuf,
    pub read_only: bool,
}

struct Fid {
    /// `O_PATH|O_NOFOLLOW`: names the file, cannot read it.
    fd: OwnedFd,
    /// A directory listing being paged out by `ReadDir`.
    listing: Option<Vec<DirEntry>>,
}

/// Host kernel filesystems the gofer never serves (their contents describe the host).
const REFUSED_FILESYSTEMS: &[i64] = &[
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

fn stat_fd(fd: &OwnedFd) -> Result<rustix::fs::Stat, Errno> {
    rustix::fs::statat(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
}

/// Reopen the file an `O_PATH` fd names, through its `/proc/self/fd` entry (the fd, not any
/// path the application controls, decides which file this is).
fn reopen(fd: &OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    let path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|_| Errno::INVAL)?;
    let opened = rustix::fs::open(
        path.as_c_str(),
        flags | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    // The reopened file must be the very same inode.
    let (a, b) = (stat_fd(fd)?, rustix::fs::fstat(&opened)?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Errno::IO);
    }
    Ok(opened)
}

struct Server {
    fids: HashMap<u64, Fid>,
    next_fid: u64,
    mounts: u32,
}

impl Server {
    fn fid(&self, fid: u64) -> Result<&Fid, Errno> {
        self.fids.get(&fid).ok_or(Errno::BADF)
    }

    fn walk(&mut self, dir: u64, name: &[u8]) -> Result<Response, Errno> {
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
            || name.len() > 255
        {
            return Err(Errno::INVAL);
        }
        let parent = self.fid(dir)?;
        if stat_fd(&parent.fd)?.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::NOTDIR);
        }
        let cname = CString::new(name).map_err(|_| Errno::INVAL)?;
        let fd = rustix::fs::openat(
            &parent.fd,
            cname.as_c_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = stat_fd(&fd)?;
        if let Ok(fs) = rustix::fs::fstatfs(&fd) {
            if REFUSED_FILESYSTEMS.contains(&fs.f_type) {
                return Err(Errno::ACCESS);
            }
        }
        let fid = self.next_fid;
        self.next_fid += 1;
        self.fids.insert(fid, Fid { fd, listing: None });
        Ok(Response::Node {
            fid,
            attr: attr_of(&st),
        })
    }

    fn open(&self, fid: u64, flags: u32) -> Result<(Response, Option<OwnedFd>), Errno> {
        let f = self.fid(fid)?;
        let accmode = flags & libc::O_ACCMODE as u32;
        if accmode != libc::O_RDONLY as u32 || flags & (libc::O_TRUNC | libc::O_CREAT) as u32 != 0 {
            return Err(Errno::ROFS);
        }
        match stat_fd(&f.fd)?.st_mode & libc::S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(Errno::ISDIR),
            libc::S_IFLNK => return Err(Errno::LOOP),
            // Host devices, FIFOs and sockets are never opened for the sandbox.
            _ => return Err(Errno::ACCESS),
        }
        Ok((Response::Opened, Some(reopen(&f.fd, OFlags::RDONLY)?)))
    }

    fn read_dir(&mut self, fid: u64, cookie: u64) -> Result<Response, Errno> {
        let f = self.fids.get_mut(&fid).ok_or(Errno::BADF)?;
        if cookie == 0 || f.listing.is_none() {
            let dir = reopen(&f.fd, OFlags::RDONLY | OFlags::DIRECTORY)?;
            let mut entries = Vec::new();
            let mut it = rustix::fs::Dir::read_from(dir.as_fd())?;
            while let Some(e) = it.read() {
                let e = e?;
                let name = e.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let kind = match e.file_type() {
                    rustix::fs::FileType::Directory => libc::DT_DIR,
                    rustix::fs::FileType::RegularFile => libc::DT_REG,
                    rustix::fs::FileType::Symlink => libc::DT_LNK,
                    rustix::fs::FileType::CharacterDevice => libc::DT_CHR,
                    rustix::fs::FileType::BlockDevice => libc::DT_BLK,
                    rustix::fs::FileType::Fifo => libc::DT_FIFO,
                    rustix::fs::FileType::Socket => libc::DT_SOCK,
                    rustix::fs::FileType::Unknown => libc::DT_UNKNOWN,
                };
                entries.push(DirEntry {
                    ino: e.ino(),
                    kind,
                    name: name.to_vec(),
                });
            }
            f.listing = Some(entries);
        }
        let listing = f.listing.as_ref().map_or(&[][..], Vec::as_slice);
        let start = usize::try_from(cookie)
            .unwrap_or(usize::MAX)
            .min(listing.len());
        let mut size = 64;
        let mut end = start;
        while end < listing.len() && size + 16 + listing[end].name.len() < MAX_MESSAGE - 64 {
            size += 16 + listing[end].name.len();
            end += 1;
        }
        let entries = listing[start..end].to_vec();
        let done = end == listing.len();
        if done {
            f.listing = None;
        }
        Ok(Response::Entries {
            entries,
            next: end as u64,
            done,
        })
    }

    fn handle(&mut self, req: Request) -> (Reply, Option<OwnedFd>) {
        let result = match req {
            Request::Version { version } if version == PROTOCOL_VERSION => Ok(Response::Version {
                version,
                mounts: self.mounts,
            }),
            Request::Version { .. } => Err(Errno::PROTO),
            Request::Walk { dir, name } => self.walk(dir, &name),
            Request::Stat { fid } => self
                .fid(fid)
                .and_then(|f| stat_fd(&f.fd))
                .map(|st| Response::Attr(attr_of(&st))),
            Request::Open { fid, flags } => {
                return match self.open(fid, flags) {
                    Ok((r, fd)) => (Ok(r), fd),
                    Err(e) => (Err(e.raw_os_error()), None),
                }
            }
            Request::ReadDir { fid, cookie } => self.read_dir(fid, cookie),
            Request::Readlink { fid } => self
                .fid(fid)
                .and_then(|f| rustix::fs::readlinkat(&f.fd, "", Vec::new()))
                .map(|t| Response::Target(t.into_bytes())),
            Request::Clunk { fid } => {
                if fid >= FIRST_WALKED_FID {
                    self.fids.remove(&fid);
                }
                Ok(Response::Ok)
            }
        };
        (result.map_err(Errno::raw_os_error), None)
    }
}

/// Receive one datagram (`Ok(None)` when the peer hung up).
pub(crate) fn recv_message(
    sock: &OwnedFd,
    buf: &mut [u8],
) -> Result<Option<(usize, Option<OwnedFd>)>, GoferError> {
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) if msg.bytes == 0 => return Ok(None),
            Ok(msg) => {
                if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
                    return Err(GoferError::Malformed("message past the size limit"));
                }
                let mut fd = None;
                for m in control.drain() {
                    if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = m {
                        for f in fds {
                            fd.get_or_insert(f);
                        }
                    }
                }
                return Ok(Some((msg.bytes, fd)));
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(GoferError::Io(e.into())),
        }
    }
}

/// Send one datagram, with an fd if given.
pub(crate) fn send_message(
    sock: &OwnedFd,
    data: &[u8],
    fd: Option<&OwnedFd>,
) -> Result<(), GoferError> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[std::io::IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(GoferError::Io(e.into())),
        }
    }
}

/// Serve `mounts` on `sock` until the kernel closes it. Mount N's root is fid N. Malformed
/// requests get an `EINVAL` reply; the gofer never panics on what it receives.
pub fn serve(sock: &OwnedFd, mounts: &[Mount]) -> Result<(), GoferError> {
    let mut fids = HashMap::new();
    for (i, m) in mounts.iter().enumerate() {
        let fd = rustix::fs::openat(
            CWD,
            &m.host_path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| GoferError::Io(e.into()))?;
        fids.insert(i as u64, Fid { fd, listing: None });
    }
    let mut server = Server {
        fids,
        next_fid: FIRST_WALKED_FID,
        mounts: mounts.len() as u32,
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Some((n, stray_fd)) = recv_message(sock, &mut buf)? else {
            return Ok(());
        };
        drop(stray_fd);
        let (reply, fd) = match Request::decode(&buf[..n]) {
            Ok(req) => server.handle(req),
            Err(e) => {
                tracing::warn!("gofer: {e}");
                (Err(libc::EINVAL), None)
            }
        };
        send_message(sock, &encode_reply(&reply), fd.as_ref())?;
    }
}
