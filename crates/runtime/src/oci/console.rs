//! The terminal of a `terminal: true` container: a pseudo-terminal pair made on the host; the
//! master goes to the client over `--console-socket` (`SCM_RIGHTS`, with the pty's name as
//! the message, as runc sends it), the slave becomes the sandbox's stdio (a donated host fd:
//! the kernel serves the application's terminal calls on it).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::OciError;

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub name: std::ffi::CString,
}

fn err(what: &'static str) -> impl Fn(rustix::io::Errno) -> OciError {
    move |e| OciError::io(what)(e.into())
}

/// Make a pty pair, the window `size` (rows, columns) set if given.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty, OciError> {
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(err("opening a pseudo-terminal"))?;
    rustix::pty::grantpt(&master).map_err(err("grantpt"))?;
    rustix::pty::unlockpt(&master).map_err(err("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(err("ptsname"))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(err("opening the pseudo-terminal's slave"))?;
    if let Some((rows, cols)) = size.filter(|&(r, c)| r > 0 && c > 0) {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, ws).map_err(err("setting the window size"))?;
    }
    Ok(Pty {
        master,
        slave,
        name,
    })
}

/// Send the pty's master over the unix socket at `socket` (the client's console socket).
pub fn send_master(socket: &Path, pty: &Pty) -> Result<(), OciError> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let stream = std::os::unix::net::UnixStream::connect(socket).map_err(OciError::io(format!(
        "connecting to the console socket {}",
        socket.display()
    )))?;
    let fds = [pty.master.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &stream,
        &[std::io::IoSlice::new(pty.name.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(err("sending the terminal over the console socket"))?;
    Ok(())
}

/// Receive a terminal master sent by [`send_master`] on a connected stream (for tests and
/// for `moat run -t` without a client).
pub fn recv_master(stream: &std::os::unix::net::UnixStream) -> Result<OwnedFd, OciError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = [0u8; 4096];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        stream,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(err("receiving the terminal"))?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(OciError::Failed(
        "no terminal came over the console socket".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_travels_over_a_console_socket() {
        let dir = std::env::temp_dir().join(format!("moat-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let pty = open_pty(Some((24, 80))).unwrap();
        send_master(&path, &pty).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let master = recv_master(&stream).unwrap();
        rustix::io::write(&pty.slave, b"hello\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rustix::io::read(&master, &mut buf).unwrap();
        assert!(buf[..n].starts_with(b"hello"), "{:?}", &buf[..n]);
        let ws = rustix::termios::tcgetwinsize(&pty.slave).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (24, 80));
        let _ = std::fs::remove_dir_all(dir);
    }
}
