//! Host calls on a host socket the kernel owns (`--network=host`) that rustix has no safe
//! wrapper for: the `ioctl`s that report its queues (they write one `int`), and options read
//! or set through the kernel's own buffers (the kernel decides which options may pass).

use std::os::fd::{AsRawFd, BorrowedFd};

/// Which of a host socket's queues to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketQueue {
    /// `FIONREAD`/`SIOCINQ`: bytes waiting to be read (a listening socket: `EINVAL`).
    Incoming,
    /// `SIOCOUTQ`: bytes sent but not yet acknowledged, or not yet sent.
    Outgoing,
    /// `SIOCOUTQNSD`: bytes not yet sent.
    Unsent,
}

/// The size of `queue` of the host socket `fd`.
pub fn socket_queue(fd: BorrowedFd<'_>, queue: SocketQueue) -> std::io::Result<i32> {
    let request = match queue {
        SocketQueue::Incoming => libc::FIONREAD,
        SocketQueue::Outgoing => libc::TIOCOUTQ,
        SocketQueue::Unsent => 0x894b, // SIOCOUTQNSD
    };
    let mut n: libc::c_int = 0;
    // SAFETY: these three requests write exactly one `int` through the pointer, which points
    // at `n`; `fd` is a live fd borrowed for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut n) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n)
}

/// Read option `name` at `level` of the host socket `fd` into `buf` (the kernel's own
/// buffer); returns the length the host wrote.
pub fn get_option(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: the host writes at most `len` bytes into `buf`, which has that many, and the
    // length back into `len`; `fd` is a live fd borrowed for the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((len as usize).min(buf.len()))
}

/// Set option `name` at `level` of the host socket `fd` to `value` (the kernel's own copy).
pub fn set_option(fd: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> std::io::Result<()> {
    let len = libc::socklen_t::try_from(value.len()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: the host reads at most `len` bytes from `value`, which has that many; `fd` is
    // a live fd borrowed for the call.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
