//! The gofer served over a real socket pair from a thread, on a scratch directory.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use moat_gofer::{serve, GoferClient, Mount};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "moat-gofer-test-{}-{}",
        std::process::id(),
        moat_abi::syscalls::SYSCALLS.len() as u64 ^ rand_u32()
    ));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::os::unix::fs::symlink("hosts", dir.join("etc/link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("escape")).unwrap();
    std::os::unix::fs::symlink("../../../..", dir.join("up")).unwrap();
    std::fs::create_dir(dir.join("big")).unwrap();
    for i in 0..2000 {
        std::fs::write(
            dir.join(format!("big/file-with-a-longish-name-{i:05}")),
            b"",
        )
        .unwrap();
    }
    Scratch(dir)
}

fn rand_u32() -> u64 {
    let mut b = [0u8; 4];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    u64::from(u32::from_le_bytes(b))
}

fn start(root: &std::path::Path) -> (GoferClient, std::thread::JoinHandle<()>, OwnedFd) {
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let mounts = vec![Mount {
        host_path: root.to_path_buf(),
        read_only: true,
    }];
    let server = std::thread::spawn(move || serve(&b, &mounts).unwrap());
    let raw = a.try_clone().unwrap();
    (GoferClient::connect(a).unwrap(), server, raw)
}

#[test]
fn walks_reads_and_lists() {
    let s = scratch();
    let (c, _server, _raw) = start(&s.0);
    assert_eq!(c.mounts, 1);
    let (etc, attr) = c.walk(0, b"etc").unwrap();
    assert_eq!(attr.mode & libc::S_IFMT, libc::S_IFDIR);
    let (hosts, attr) = c.walk(etc, b"hosts").unwrap();
    assert_eq!(attr.size, 20);
    let mut text = String::new();
    std::fs::File::from(c.open(hosts, libc::O_RDONLY as u32).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "127.0.0.1 localhost\n");
    assert_eq!(c.stat(hosts).unwrap().ino, attr.ino);
    let mut names: Vec<_> = c
        .readdir(etc)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, [b"hosts".to_vec(), b"link".to_vec()]);
    let (big, _) = c.walk(0, b"big").unwrap();
    let entries = c.readdir(big).unwrap();
    assert_eq!(entries.len(), 2000, "pagination returns every entry once");
    let mut unique: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 2000);
    c.clunk(hosts);
    assert_eq!(c.stat(hosts).err(), Some(libc::EBADF));
}

#[test]
fn symlinks_are_never_followed_and_writes_are_refused() {
    let s = scratch();
    let (c, _server, _raw) = start(&s.0);
    let (escape, attr) = c.walk(0, b"escape").unwrap();
    assert_eq!(
        attr.mode & libc::S_IFMT,
        libc::S_IFLNK,
        "walk returns the link itself"
    );
    assert_eq!(c.readlink(escape).unwrap(), b"/etc/passwd");
    assert_eq!(c.open(escape, 0).err(), Some(libc::ELOOP));
    assert_eq!(c.walk(escape, b"x").err(), Some(libc::ENOTDIR));
    let (up, _) = c.walk(0, b"up").unwrap();
    assert_eq!(c.walk(up, b"etc").err(), Some(libc::ENOTDIR));
    for bad in [&b".."[..], b".", b"", b"etc/hosts", b"a\0b"] {
        assert_eq!(c.walk(0, bad).err(), Some(libc::EINVAL), "{bad:?}");
    }
    let (etc, _) = c.walk(0, b"etc").unwrap();
    let (hosts, _) = c.walk(etc, b"hosts").unwrap();
    assert_eq!(c.open(hosts, libc::O_RDWR as u32).err(), Some(libc::EROFS));
    assert_eq!(
        c.open(hosts, (libc::O_RDONLY | libc::O_TRUNC) as u32).err(),
        Some(libc::EROFS)
    );
    assert_eq!(c.open(etc, 0).err(), Some(libc::EISDIR));
    assert_eq!(c.walk(999, b"x").err(), Some(libc::EBADF));
}

#[test]
fn host_kernel_filesystems_and_devices_are_refused() {
    let (c, _server, _raw) = start(std::path::Path::new("/"));
    assert_eq!(c.walk(0, b"proc").err(), Some(libc::EACCES));
    assert_eq!(c.walk(0, b"sys").err(), Some(libc::EACCES));
    let (dev, _) = c.walk(0, b"dev").unwrap();
    let (null, _) = c.walk(dev, b"null").unwrap();
    assert_eq!(
        c.open(null, 0).err(),
        Some(libc::EACCES),
        "host devices are never opened"
    );
}

#[test]
fn malformed_messages_get_errors_and_the_server_keeps_serving() {
    let s = scratch();
    let (c, _server, raw) = start(&s.0);
    // Garbage straight onto the socket, then read the error reply it earns.
    for junk in [&[0xffu8, 1, 2][..], &[2, 0, 0], &[]] {
        if junk.is_empty() {
            continue;
        }
        rustix::net::send(&raw, junk, rustix::net::SendFlags::empty()).unwrap();
        let mut buf = [0u8; 64];
        let n = rustix::net::recv(&raw, &mut buf, rustix::net::RecvFlags::empty())
            .unwrap()
            .0;
        assert_eq!(
            moat_gofer::protocol::decode_reply(&buf[..n]).unwrap(),
            Err(libc::EINVAL)
        );
    }
    assert!(c.walk(0, b"etc").is_ok());
}
