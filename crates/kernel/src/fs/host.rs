//! Host files donated to the sandbox: `moat do` hands the kernel its stdin, stdout and stderr.
//!
//! These are Moat objects wrapping an fd Moat owns; the kernel reads, writes and queries the
//! terminal through it (as gVisor does for its donated stdio). Status flags such as
//! `O_NONBLOCK` live in Moat's file description and never change the shared host fd.

use std::os::fd::OwnedFd;

use rustix::event::{PollFd, PollFlags};

use moat_abi::{Errno, Stat, Termios, Winsize};

use super::{FileOps, OpenFile};
use crate::mm::MemoryManager;

/// A donated host fd.
pub struct HostFile {
    fd: OwnedFd,
    /// Positioned I/O works: a regular file or a block device, or a character device the
    /// host can seek (`/dev/null` can, a terminal cannot).
    seekable: bool,
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno(e.raw_os_error())
}

impl HostFile {
    /// Wrap a host fd; returns the file and the access mode it was opened with.
    pub fn new(fd: OwnedFd) -> Result<(Self, u32), Errno> {
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(errno)?;
        let kind = st.st_mode & libc::S_IFMT;
        let seekable = match kind {
            libc::S_IFREG | libc::S_IFBLK => true,
            libc::S_IFCHR => rustix::fs::seek(&fd, rustix::fs::SeekFrom::Current(0)).is_ok(),
            _ => false,
        };
        Ok((Self { fd, seekable }, flags.bits() & libc::O_ACCMODE as u32))
    }

    /// When the description is non-blocking, fail with `EAGAIN` unless the fd is ready now.
    fn check_ready(&self, file: &OpenFile, events: PollFlags) -> Result<(), Errno> {
        if !file.nonblocking() {
            return Ok(());
        }
        let mut fds = [PollFd::new(&self.fd, events)];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if retry(|| rustix::event::poll(&mut fds, Some(&zero)))? == 0 {
            return Err(Errno::EAGAIN);
        }
        Ok(())
    }
}

/// Repeat a host call interrupted by a signal to Moat.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> Result<T, Errno> {
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
}

/// The kernel's `struct termios` from rustix's portable one.
fn kernel_termios(t: &rustix::termios::Termios) -> Termios {
    use rustix::termios::SpecialCodeIndex as I;
    let codes = [
        I::VINTR,
        I::VQUIT,
        I::VERASE,
        I::VKILL,
        I::VEOF,
        I::VTIME,
        I::VMIN,
        I::VSWTC,
        I::VSTART,
        I::VSTOP,
        I::VSUSP,
        I::VEOL,
        I::VREPRINT,
        I::VDISCARD,
        I::VWERASE,
        I::VLNEXT,
        I::VEOL2,
    ];
    let mut c_cc = [0u8; 19];
    for (i, code) in codes.into_iter().enumerate() {
        c_cc[i] = t.special_codes[code];
    }
    Termios {
        c_iflag: t.input_modes.bits(),
        c_oflag: t.output_modes.bits(),
        c_cflag: t.control_modes.bits(),
        c_lflag: t.local_modes.bits(),
        c_line: t.line_discipline,
        c_cc,
    }
}

impl FileOps for HostFile {
    /// The host answers for its own fd: a regular file syncs, a pipe or terminal is EINVAL.
    fn sync(&self) -> Result<(), Errno> {
        retry(|| rustix::fs::fsync(&self.fd))
    }

    fn read(&self, file: &OpenFile, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        self.check_ready(file, PollFlags::IN)?;
        match offset {
            None => retry(|| rustix::io::read(&self.fd, &mut *buf)),
            Some(o) => retry(|| rustix::io::pread(&self.fd, &mut *buf, o)),
        }
    }

    fn write(&self, file: &OpenFile, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        self.check_ready(file, PollFlags::OUT)?;
        match offset {
            None => retry(|| rustix::io::write(&self.fd, buf)),
            Some(o) => retry(|| rustix::io::pwrite(&self.fd, buf, o)),
        }
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        match u64::from(request) {
            libc::TCGETS => {
                let t = rustix::termios::tcgetattr(&self.fd).map_err(errno)?;
                mm.write_obj(arg, &kernel_termios(&t))?;
                Ok(0)
            }
            libc::TIOCGWINSZ => {
                let w = rustix::termios::tcgetwinsize(&self.fd).map_err(errno)?;
                let w = Winsize {
                    ws_row: w.ws_row,
                    ws_col: w.ws_col,
                    ws_xpixel: w.ws_xpixel,
                    ws_ypixel: w.ws_ypixel,
                };
                mm.write_obj(arg, &w)?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let st = rustix::fs::fstat(&self.fd).map_err(errno)?;
        // The host's device and inode numbers say nothing the application needs; a fixed
        // Moat device keeps them from leaking, the rest describes the file honestly.
        Ok(Stat {
            st_dev: HOST_FILE_DEV,
            st_ino: st.st_ino,
            st_nlink: st.st_nlink as u64,
            st_mode: st.st_mode,
            st_uid: st.st_uid,
            st_gid: st.st_gid,
            st_rdev: st.st_rdev,
            st_size: st.st_size,
            st_blksize: st.st_blksize,
            st_blocks: st.st_blocks,
            st_atime: st.st_atime,
            st_atime_nsec: st.st_atime_nsec as i64,
            st_mtime: st.st_mtime,
            st_mtime_nsec: st.st_mtime_nsec as i64,
            st_ctime: st.st_ctime,
            st_ctime_nsec: st.st_ctime_nsec as i64,
            ..Stat::default()
        })
    }

    fn seekable(&self) -> bool {
        self.seekable
    }

    /// The host keeps the position of a donated fd: it is shared with whoever else has it
    /// (the shell that redirected stdout to a file), exactly as natively.
    fn own_offset(&self) -> bool {
        false
    }

    fn host_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.fd.as_fd())
    }

    fn host_seek(&self, offset: i64, whence: i32) -> Result<u64, Errno> {
        use rustix::fs::SeekFrom;
        let pos = match whence {
            libc::SEEK_SET => SeekFrom::Start(u64::try_from(offset).map_err(|_| Errno::EINVAL)?),
            libc::SEEK_CUR => SeekFrom::Current(offset),
            libc::SEEK_END => SeekFrom::End(offset),
            libc::SEEK_DATA => SeekFrom::Data(u64::try_from(offset).map_err(|_| Errno::ENXIO)?),
            libc::SEEK_HOLE => SeekFrom::Hole(u64::try_from(offset).map_err(|_| Errno::ENXIO)?),
            _ => return Err(Errno::EINVAL),
        };
        rustix::fs::seek(&self.fd, pos).map_err(errno)
    }
}

/// Device number reported for donated host files.
const HOST_FILE_DEV: u64 = 0x1d;
