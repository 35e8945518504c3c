//! The packet socket through which a sandbox's own network stack reaches an interface of
//! the host (`--network=sandbox`): the runtime opens it in the namespace that holds the
//! interface, and the kernel process, which runs in an empty network namespace, only reads
//! and writes whole Ethernet frames on it.
//!
//! Here because binding to a link-layer address and `PACKET_IGNORE_OUTGOING` have no safe
//! wrapper in rustix.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `ETH_P_ALL`: every protocol, in network byte order as `socket` and `sockaddr_ll` take it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();
/// `PACKET_IGNORE_OUTGOING` (Linux 4.20): do not hand the socket the frames it sent itself.
const PACKET_IGNORE_OUTGOING: i32 = 23;

/// Set an `int` socket option.
fn set_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `value` is a live int and its size is passed with it; the fd is ours.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open a non-blocking, close-on-exec `AF_PACKET`/`SOCK_RAW` socket bound to the interface
/// with index `ifindex`, which receives every frame that arrives on it (not those it sends)
/// with receive and send buffers of `buffer` bytes (forced: the caller is privileged).
pub fn open_packet_socket(ifindex: u32, buffer: i32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: socket takes no pointers.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ALL_BE),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
    // Bursts of a bulk transfer arrive faster than one thread drains them: deep buffers
    // keep frames from being dropped (which TCP would have to retransmit).
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int(&fd, libc::SOL_SOCKET, force, buffer).is_err() {
            set_int(&fd, libc::SOL_SOCKET, plain, buffer)?;
        }
    }
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL_BE;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Move the calling thread into a new, empty network namespace (`unshare(CLONE_NEWNET)`):
/// where the runtime makes the end of a veth pair that a sandbox takes (`runtime/src/veth.rs`).
/// Meant for a thread made for it, which then leaves the namespace by ending.
pub fn unshare_network() -> io::Result<()> {
    // SAFETY: CLONE_NEWNET changes only the calling thread's network namespace: no memory,
    // file table or filesystem context is unshared, so nothing another thread relies on
    // changes under it (rustix marks `unshare` unsafe for the flags that do).
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
