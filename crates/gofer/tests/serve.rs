//! The gofer served over a real socket pair from a thread, on scratch directories.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use moat_gofer::protocol::{
    decode_reply, encode_request, Request, Response, FIRST_WALKED_FID, MAX_MESSAGE,
};
use moat_gofer::{serve, GoferClient, GoferError, Mount, SetAttr, TimeSpec, PROTOCOL_VERSION};

const S_IFMT: u32 = libc::S_IFMT;

/// A scratch directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut b = [0u8; 4];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    u64::from(u32::from_le_bytes(b)) << 16 | NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// etc/hosts, etc/link -> hosts, escape -> /etc/passwd, up -> ../../.., big/ (2,000 files).
fn scratch() -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "moat-gofer-test-{}-{:x}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::os::unix::fs::symlink("hosts", dir.join("etc/link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("escape")).unwrap();
    std::os::unix::fs::symlink("../../..", dir.join("up")).unwrap();
    Scratch(dir)
}

struct Gofer {
    client: GoferClient,
    /// The client's socket, to write raw datagrams on.
    raw: OwnedFd,
    server: Option<JoinHandle<Result<(), GoferError>>>,
}

impl Gofer {
    /// Hang up and return what `serve` returned.
    fn stop(mut self) -> Result<(), GoferError> {
        let server = self.server.take().unwrap();
        drop(self);
        server.join().unwrap()
    }
}

fn socket_pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

fn start_mounts(mounts: Vec<Mount>) -> Gofer {
    let (a, b) = socket_pair();
    let server = std::thread::spawn(move || serve(b, mounts));
    let raw = a.try_clone().unwrap();
    Gofer {
        client: GoferClient::connect(a).unwrap(),
        raw,
        server: Some(server),
    }
}

fn start(root: &Path, read_only: bool) -> Gofer {
    start_mounts(vec![Mount {
        host_path: root.to_path_buf(),
        read_only,
    }])
}

/// Send a raw datagram, read one reply (with a timeout).
fn exchange(raw: &OwnedFd, message: &[u8]) -> Option<Vec<u8>> {
    rustix::net::send(raw, message, rustix::net::SendFlags::empty()).unwrap();
    read_reply(raw)
}

fn read_reply(raw: &OwnedFd) -> Option<Vec<u8>> {
    let mut fds = [rustix::event::PollFd::new(
        raw,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&timeout)).unwrap() == 0 {
        return None;
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = rustix::net::recv(raw, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    buf.truncate(n);
    Some(buf)
}

fn names(c: &GoferClient, fid: u64) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = c
        .readdir(fid)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).unwrap();
    out
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn handshake_attach_and_stat() {
    let s = scratch();
    let other = scratch();
    let g = start_mounts(vec![
        Mount {
            host_path: s.0.clone(),
            read_only: false,
        },
        Mount {
            host_path: other.0.clone(),
            read_only: true,
        },
    ]);
    let c = &g.client;
    assert_eq!(c.mounts, 2);
    let (root, attr) = c.attach(0).unwrap();
    assert_eq!(root, 0);
    assert_eq!(attr.mode & S_IFMT, libc::S_IFDIR);
    assert_eq!(attr.ino, std::fs::metadata(&s.0).unwrap().ino());
    let (one, attr) = c.attach(1).unwrap();
    assert_eq!(
        (one, attr.ino),
        (1, std::fs::metadata(&other.0).unwrap().ino())
    );
    assert_eq!(c.attach(2).err(), Some(libc::ENOENT));
    assert_eq!(
        c.stat(0).unwrap().ino,
        std::fs::metadata(&s.0).unwrap().ino()
    );
    // Mount roots outlive a clunk.
    c.try_clunk(0).unwrap();
    assert!(c.stat(0).is_ok());
    assert_eq!(c.stat(FIRST_WALKED_FID + 1000).err(), Some(libc::EBADF));
    assert_eq!(
        c.try_clunk(FIRST_WALKED_FID + 1000).err(),
        Some(libc::EBADF)
    );
    assert_eq!(c.stat(77).err(), Some(libc::EBADF));
    // The server returns Ok when the kernel hangs up.
    g.stop().unwrap();
}

#[test]
fn nothing_is_served_before_the_handshake_and_a_wrong_version_is_refused() {
    let s = scratch();
    let (a, b) = socket_pair();
    let mounts = vec![Mount {
        host_path: s.0.clone(),
        read_only: true,
    }];
    let server = std::thread::spawn(move || serve(&b, &mounts));
    let reply = exchange(&a, &encode_request(7, &Request::Stat { fid: 0 })).unwrap();
    assert_eq!(decode_reply(&reply).unwrap(), (7, Err(libc::EPROTO)));
    let reply = exchange(
        &a,
        &encode_request(
            8,
            &Request::Version {
                version: PROTOCOL_VERSION + 1,
            },
        ),
    )
    .unwrap();
    assert_eq!(decode_reply(&reply).unwrap(), (8, Err(libc::EPROTO)));
    let reply = exchange(&a, &encode_request(9, &Request::Stat { fid: 0 })).unwrap();
    assert_eq!(decode_reply(&reply).unwrap(), (9, Err(libc::EPROTO)));
    let reply = exchange(
        &a,
        &encode_request(
            10,
            &Request::Version {
                version: PROTOCOL_VERSION,
            },
        ),
    )
    .unwrap();
    assert_eq!(
        decode_reply(&reply).unwrap(),
        (
            10,
            Ok(Response::Version {
                version: PROTOCOL_VERSION,
                mounts: 1
            })
        )
    );
    let reply = exchange(&a, &encode_request(11, &Request::Stat { fid: 0 })).unwrap();
    assert!(matches!(
        decode_reply(&reply).unwrap(),
        (11, Ok(Response::Attr(_)))
    ));
    drop(a);
    server.join().unwrap().unwrap();
}

#[test]
fn a_missing_mount_is_an_error_at_start() {
    let (_a, b) = socket_pair();
    let mounts = [Mount {
        host_path: PathBuf::from("/nonexistent/moat-gofer"),
        read_only: true,
    }];
    assert!(matches!(serve(b, mounts), Err(GoferError::Mount { .. })));
}

#[test]
fn walks_one_component_at_a_time() {
    let s = scratch();
    let g = start(&s.0, true);
    let c = &g.client;
    let (etc, attr) = c.walk(0, b"etc").unwrap();
    assert!(etc >= FIRST_WALKED_FID);
    assert_eq!(attr.mode & S_IFMT, libc::S_IFDIR);
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
    assert_eq!(w.errno, None);
    assert_eq!(w.nodes.len(), 2);
    assert_eq!(w.nodes[1].1.size, 20);
    assert_eq!(
        w.nodes[1].1.ino,
        std::fs::metadata(s.0.join("etc/hosts")).unwrap().ino()
    );
    // Stops at the first failing component, with what was walked so far.
    let w = c.walk_names(0, &[&b"etc"[..], b"missing", b"x"]).unwrap();
    assert_eq!((w.nodes.len(), w.errno), (1, Some(libc::ENOENT)));
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts", b"x"]).unwrap();
    assert_eq!((w.nodes.len(), w.errno), (2, Some(libc::ENOTDIR)));
    assert_eq!(c.walk(0, b"missing").err(), Some(libc::ENOENT));
    // Walking from a non-directory.
    let hosts = w.nodes[1].0;
    assert_eq!(c.walk(hosts, b"x").err(), Some(libc::ENOTDIR));
    // Each walked node is its own fid.
    assert_ne!(w.nodes[0].0, etc);
    assert_eq!(c.stat(w.nodes[0].0).unwrap().ino, attr.ino);
    // A walk longer than one request takes several: 300 levels deep.
    let mut deep = s.0.clone();
    for _ in 0..300 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let path = vec![b"d".to_vec(); 300];
    let w = c.walk_names(0, &path).unwrap();
    assert_eq!((w.nodes.len(), w.errno), (300, None));
    assert_eq!(w.nodes[299].1.ino, std::fs::metadata(&deep).unwrap().ino());
    let mut longer = path.clone();
    longer.push(b"nothing".to_vec());
    let w = c.walk_names(0, &longer).unwrap();
    assert_eq!((w.nodes.len(), w.errno), (300, Some(libc::ENOENT)));
    // Clunked fids are gone.
    c.try_clunk(etc).unwrap();
    assert_eq!(c.stat(etc).err(), Some(libc::EBADF));
    assert_eq!(c.try_clunk(etc).err(), Some(libc::EBADF));
}

#[test]
fn malformed_names_are_einval() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let (etc, _) = c.walk(0, b"etc").unwrap();
    for bad in [&b".."[..], b".", b"", b"a/b", b"etc/hosts", b"/", b"a\0b"] {
        assert_eq!(c.walk(0, bad).err(), Some(libc::EINVAL), "walk {bad:?}");
        // A bad name anywhere refuses the whole walk.
        assert_eq!(
            c.walk_names(0, &[&b"etc"[..], bad]).err(),
            Some(libc::EINVAL),
            "walk etc/{bad:?}"
        );
        assert_eq!(
            c.create(etc, bad, 0, 0o644, 0, 0).err(),
            Some(libc::EINVAL),
            "create {bad:?}"
        );
        assert_eq!(
            c.mkdir(etc, bad, 0o755, 0, 0).err(),
            Some(libc::EINVAL),
            "mkdir {bad:?}"
        );
        assert_eq!(
            c.symlink(etc, bad, b"x", 0, 0).err(),
            Some(libc::EINVAL),
            "symlink {bad:?}"
        );
        assert_eq!(
            c.mknod(etc, bad, libc::S_IFIFO | 0o644, 0, 0, 0).err(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            c.unlink(0, bad, false).err(),
            Some(libc::EINVAL),
            "unlink {bad:?}"
        );
        assert_eq!(
            c.unlink(0, bad, true).err(),
            Some(libc::EINVAL),
            "rmdir {bad:?}"
        );
        assert_eq!(
            c.rename(0, bad, etc, b"x", 0).err(),
            Some(libc::EINVAL),
            "rename {bad:?}"
        );
        assert_eq!(
            c.rename(etc, b"hosts", etc, bad, 0).err(),
            Some(libc::EINVAL),
            "rename to {bad:?}"
        );
        assert_eq!(
            c.link(etc, 0, bad).err(),
            Some(libc::EINVAL),
            "link {bad:?}"
        );
    }
    assert_eq!(c.walk(0, &[b'a'; 256]).err(), Some(libc::ENAMETOOLONG));
    assert_eq!(c.walk_names(0, &[] as &[&[u8]]).err(), Some(libc::EINVAL));
    // `..` never climbs out: the tree is untouched, the etc fid still names etc.
    assert!(s.0.join("etc/hosts").exists());
    assert_eq!(names(c, etc), [b"hosts".to_vec(), b"link".to_vec()]);
}

#[test]
fn symlinks_are_never_followed() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let (escape, attr) = c.walk(0, b"escape").unwrap();
    assert_eq!(
        attr.mode & S_IFMT,
        libc::S_IFLNK,
        "walk returns the link itself"
    );
    assert_eq!(attr.size, b"/etc/passwd".len() as u64);
    assert_eq!(c.stat(escape).unwrap().mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(c.readlink(escape).unwrap(), b"/etc/passwd");
    assert_eq!(
        c.open(escape, libc::O_RDONLY as u32).err(),
        Some(libc::ELOOP)
    );
    assert_eq!(c.open(escape, libc::O_RDWR as u32).err(), Some(libc::ELOOP));
    assert_eq!(c.walk(escape, b"x").err(), Some(libc::ENOTDIR));
    let (up, attr) = c.walk(0, b"up").unwrap();
    assert_eq!(attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(c.readlink(up).unwrap(), b"../../..");
    assert_eq!(c.walk(up, b"etc").err(), Some(libc::ENOTDIR));
    let w = c.walk_names(0, &[&b"up"[..], b"etc", b"passwd"]).unwrap();
    assert_eq!((w.nodes.len(), w.errno), (1, Some(libc::ENOTDIR)));
    assert_eq!(w.nodes[0].1.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(c.readdir(up).err(), Some(libc::ENOTDIR));
    // A link inside the tree is not followed either.
    let w = c.walk_names(0, &[&b"etc"[..], b"link"]).unwrap();
    assert_eq!(w.nodes[1].1.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(c.open(w.nodes[1].0, 0).err(), Some(libc::ELOOP));
    // No xattrs, no chmod, no truncation through a link.
    assert_eq!(
        c.set_attr(
            escape,
            &SetAttr {
                mode: Some(0o777),
                ..SetAttr::default()
            }
        )
        .err(),
        Some(libc::EOPNOTSUPP)
    );
    assert_eq!(
        c.set_attr(
            escape,
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        )
        .err(),
        Some(libc::EINVAL)
    );
    assert_eq!(
        c.set_xattr(escape, b"user.a", b"b", 0).err(),
        Some(libc::EPERM)
    );
    assert_eq!(c.get_xattr(escape, b"user.a").err(), Some(libc::ENODATA));
    assert_eq!(c.list_xattr(escape).unwrap(), Vec::<Vec<u8>>::new());
    // Readlink of what is not a link.
    assert_eq!(c.readlink(0).err(), Some(libc::EINVAL));
    // The host's /etc/passwd is untouched and was never reached.
    assert_eq!(
        std::fs::symlink_metadata(s.0.join("escape"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o777
    );
}

#[test]
fn a_symlink_swapped_in_after_the_walk_changes_nothing() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let (etc, _) = c.walk(0, b"etc").unwrap();
    // A host process replaces etc with a symlink to /etc after the kernel walked it.
    std::fs::rename(s.0.join("etc"), s.0.join("etc.old")).unwrap();
    std::os::unix::fs::symlink("/etc", s.0.join("etc")).unwrap();
    // The fid still names the directory it walked, never the host's /etc.
    assert_eq!(names(c, etc), [b"hosts".to_vec(), b"link".to_vec()]);
    let (hosts, _) = c.walk(etc, b"hosts").unwrap();
    assert_eq!(
        read_all(c.open(hosts, 0).unwrap()),
        b"127.0.0.1 localhost\n"
    );
    // A fresh walk finds the symlink itself.
    let (link, attr) = c.walk(0, b"etc").unwrap();
    assert_eq!(attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(c.walk(link, b"passwd").err(), Some(libc::ENOTDIR));
}

#[test]
fn donated_fds_read_and_write_the_file() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
    let hosts = w.nodes[1].0;
    assert_eq!(
        read_all(c.open(hosts, libc::O_RDONLY as u32).unwrap()),
        b"127.0.0.1 localhost\n"
    );
    // O_CREAT/O_EXCL/O_NOFOLLOW/O_CLOEXEC are dropped; the fd is close-on-exec.
    let flags = (libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW) as u32;
    let fd = c.open(hosts, flags).unwrap();
    assert!(rustix::io::fcntl_getfd(&fd)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC));
    let mut f = std::fs::File::from(c.open(hosts, libc::O_RDWR as u32).unwrap());
    f.seek(std::io::SeekFrom::End(0)).unwrap();
    f.write_all(b"::1 localhost\n").unwrap();
    assert_eq!(
        std::fs::read(s.0.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n::1 localhost\n"
    );
    let fd = c
        .open(hosts, (libc::O_WRONLY | libc::O_TRUNC) as u32)
        .unwrap();
    drop(fd);
    assert_eq!(c.stat(hosts).unwrap().size, 0);
    let mut f = std::fs::File::from(
        c.open(hosts, (libc::O_WRONLY | libc::O_APPEND) as u32)
            .unwrap(),
    );
    f.write_all(b"a").unwrap();
    f.write_all(b"b").unwrap();
    assert_eq!(std::fs::read(s.0.join("etc/hosts")).unwrap(), b"ab");
    // Directories are listed, not opened; bad flags are refused.
    assert_eq!(c.open(0, 0).err(), Some(libc::EISDIR));
    assert_eq!(
        c.open(hosts, libc::O_ACCMODE as u32).err(),
        Some(libc::EINVAL)
    );
    assert_eq!(c.open(hosts, libc::O_PATH as u32).err(), Some(libc::EINVAL));
    assert_eq!(
        c.open(hosts, (libc::O_TMPFILE | libc::O_RDWR) as u32).err(),
        Some(libc::EINVAL)
    );
}

#[test]
fn creates_files_directories_links_and_fifos() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    // Create: the fd is donated and writable; the mode is exact (no umask).
    let (file, attr, fd) = c
        .create(0, b"new", libc::O_RDWR as u32, 0o640, uid, gid)
        .unwrap();
    assert_eq!(attr.mode, libc::S_IFREG | 0o640);
    std::fs::File::from(fd).write_all(b"hello").unwrap();
    assert_eq!(std::fs::read(s.0.join("new")).unwrap(), b"hello");
    assert_eq!(c.stat(file).unwrap().size, 5);
    assert_eq!(read_all(c.open(file, 0).unwrap()), b"hello");
    assert_eq!(
        c.create(0, b"new", libc::O_RDWR as u32, 0o640, uid, gid)
            .err(),
        Some(libc::EEXIST)
    );
    // Never through a symlink, even a dangling one.
    assert_eq!(
        c.create(0, b"escape", libc::O_RDWR as u32, 0o644, uid, gid)
            .err(),
        Some(libc::EEXIST)
    );
    std::os::unix::fs::symlink(s.0.join("target"), s.0.join("dangling")).unwrap();
    assert_eq!(
        c.create(0, b"dangling", libc::O_RDWR as u32, 0o644, uid, gid)
            .err(),
        Some(libc::EEXIST)
    );
    assert!(!s.0.join("target").exists());
    assert_eq!(
        c.create(file, b"x", 0, 0o644, uid, gid).err(),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        c.create(999, b"x", 0, 0o644, uid, gid).err(),
        Some(libc::EBADF)
    );

    // Mkdir.
    let (dir, attr) = c.mkdir(0, b"sub", 0o2751, uid, gid).unwrap();
    assert_eq!(attr.mode, libc::S_IFDIR | 0o2751);
    assert!(s.0.join("sub").is_dir());
    assert_eq!(
        c.mkdir(0, b"sub", 0o755, uid, gid).err(),
        Some(libc::EEXIST)
    );
    let (inner, _, _) = c
        .create(dir, b"inner", libc::O_WRONLY as u32, 0o600, uid, gid)
        .unwrap();
    assert!(s.0.join("sub/inner").is_file());

    // Symlink: made, never followed.
    let (link, attr) = c
        .symlink(dir, b"link", b"../../../etc/shadow", uid, gid)
        .unwrap();
    assert_eq!(attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(c.readlink(link).unwrap(), b"../../../etc/shadow");
    assert_eq!(
        std::fs::read_link(s.0.join("sub/link")).unwrap(),
        Path::new("../../../etc/shadow")
    );
    assert_eq!(
        c.symlink(dir, b"empty", b"", uid, gid).err(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        c.symlink(dir, b"long", &[b'a'; 4096], uid, gid).err(),
        Some(libc::ENAMETOOLONG)
    );

    // Mknod: FIFOs, sockets and regular files only.
    let (fifo, attr) = c
        .mknod(dir, b"fifo", libc::S_IFIFO | 0o620, 0, uid, gid)
        .unwrap();
    assert_eq!(attr.mode, libc::S_IFIFO | 0o620);
    assert_eq!(
        c.open(fifo, 0).err(),
        Some(libc::EACCES),
        "host FIFOs are never opened"
    );
    let (_, attr) = c
        .mknod(dir, b"plain", libc::S_IFREG | 0o604, 0, uid, gid)
        .unwrap();
    assert_eq!((attr.mode, attr.size), (libc::S_IFREG | 0o604, 0));
    let (_, attr) = c.mknod(dir, b"plain0", 0o600, 0, uid, gid).unwrap();
    assert_eq!(attr.mode, libc::S_IFREG | 0o600);
    // A socket node (left by a sandboxed bind): inert on the host, and never opened.
    let (sock, attr) = c
        .mknod(dir, b"sock", libc::S_IFSOCK | 0o755, 0, uid, gid)
        .unwrap();
    assert_eq!(attr.mode, libc::S_IFSOCK | 0o755);
    assert!(c.open(sock, 0).is_err(), "host sockets are never opened");
    for dev in [libc::S_IFCHR, libc::S_IFBLK, libc::S_IFDIR] {
        assert_eq!(
            c.mknod(dir, b"dev", dev | 0o666, 0x0103, uid, gid).err(),
            Some(libc::EPERM)
        );
    }
    assert_eq!(
        c.mknod(dir, b"dev", libc::S_IFLNK | 0o666, 0, uid, gid)
            .err(),
        Some(libc::EINVAL)
    );
    assert!(!s.0.join("sub/dev").exists());

    // Link: a second name for the same inode.
    let (linked, attr) = c.link(inner, 0, b"hard").unwrap();
    assert_eq!(attr.nlink, 2);
    assert_eq!(attr.ino, c.stat(inner).unwrap().ino);
    assert_ne!(linked, inner);
    assert_eq!(c.link(dir, 0, b"dirlink").err(), Some(libc::EPERM));
    assert_eq!(c.link(inner, 0, b"hard").err(), Some(libc::EEXIST));
    let (slink, attr) = c.link(link, 0, b"hardsym").unwrap();
    assert_eq!(
        attr.mode & S_IFMT,
        libc::S_IFLNK,
        "a link to a symlink is the symlink"
    );
    assert_eq!(c.readlink(slink).unwrap(), b"../../../etc/shadow");

    if is_root() {
        // The owner asked for is given when the gofer may.
        let (_, attr) = c.mkdir(0, b"owned", 0o755, 1234, 5678).unwrap();
        assert_eq!((attr.uid, attr.gid), (1234, 5678));
        let (_, attr, _) = c.create(0, b"owned-file", 0, 0o4755, 1234, 5678).unwrap();
        assert_eq!(
            (attr.uid, attr.gid, attr.mode),
            (1234, 5678, libc::S_IFREG | 0o4755)
        );
        let (_, attr) = c.symlink(0, b"owned-link", b"x", 1234, 5678).unwrap();
        assert_eq!((attr.uid, attr.gid), (1234, 5678));
    }
}

#[test]
fn unlinks_and_renames() {
    let s = scratch();
    let other = scratch();
    let g = start_mounts(vec![
        Mount {
            host_path: s.0.clone(),
            read_only: false,
        },
        Mount {
            host_path: other.0.clone(),
            read_only: false,
        },
    ]);
    let c = &g.client;
    let (etc, _) = c.walk(0, b"etc").unwrap();
    std::fs::write(s.0.join("a"), b"A").unwrap();
    std::fs::write(s.0.join("b"), b"B").unwrap();
    std::fs::create_dir(s.0.join("d")).unwrap();
    std::fs::write(s.0.join("d/f"), b"").unwrap();

    // Rename within and across directories.
    c.rename(0, b"a", etc, b"a2", 0).unwrap();
    assert_eq!(std::fs::read(s.0.join("etc/a2")).unwrap(), b"A");
    c.rename(etc, b"a2", 0, b"a", 0).unwrap();
    assert_eq!(
        c.rename(0, b"a", 0, b"b", libc::RENAME_NOREPLACE).err(),
        Some(libc::EEXIST)
    );
    c.rename(0, b"a", 0, b"b", libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(std::fs::read(s.0.join("a")).unwrap(), b"B");
    assert_eq!(std::fs::read(s.0.join("b")).unwrap(), b"A");
    c.rename(0, b"a", 0, b"b", 0).unwrap();
    assert_eq!(std::fs::read(s.0.join("b")).unwrap(), b"B");
    assert!(!s.0.join("a").exists());
    for bad in [
        8,
        libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE,
        libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT,
    ] {
        assert_eq!(
            c.rename(0, b"b", 0, b"c", bad).err(),
            Some(libc::EINVAL),
            "flags {bad}"
        );
    }
    assert_eq!(
        c.rename(0, b"missing", 0, b"c", 0).err(),
        Some(libc::ENOENT)
    );
    // Another mount is another filesystem as far as the kernel knows.
    assert_eq!(c.rename(0, b"b", 1, b"b", 0).err(), Some(libc::EXDEV));
    let (b, _) = c.walk(0, b"b").unwrap();
    assert_eq!(c.link(b, 1, b"b").err(), Some(libc::EXDEV));
    assert_eq!(c.rename(b, b"x", 0, b"y", 0).err(), Some(libc::ENOTDIR));

    // Unlink and rmdir.
    assert_eq!(c.unlink(0, b"d", false).err(), Some(libc::EISDIR));
    assert_eq!(c.unlink(0, b"d", true).err(), Some(libc::ENOTEMPTY));
    assert_eq!(c.unlink(0, b"b", true).err(), Some(libc::ENOTDIR));
    let (d, _) = c.walk(0, b"d").unwrap();
    c.unlink(d, b"f", false).unwrap();
    c.unlink(0, b"d", true).unwrap();
    assert!(!s.0.join("d").exists());
    assert_eq!(c.unlink(0, b"missing", false).err(), Some(libc::ENOENT));
    // The fid of an unlinked file still names it.
    c.unlink(0, b"b", false).unwrap();
    assert_eq!(c.stat(b).unwrap().nlink, 0);
    assert_eq!(read_all(c.open(b, 0).unwrap()), b"B");
    // Unlinking a symlink removes the link, never its target.
    c.unlink(0, b"escape", false).unwrap();
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn readdir_pages_through_a_big_directory() {
    let s = scratch();
    std::fs::create_dir(s.0.join("big")).unwrap();
    let pad = "x".repeat(100);
    for i in 0..2000 {
        std::fs::write(s.0.join(format!("big/{pad}-{i:05}")), b"").unwrap();
    }
    std::fs::create_dir(s.0.join("big/zdir")).unwrap();
    let g = start(&s.0, true);
    let c = &g.client;
    let (big, _) = c.walk(0, b"big").unwrap();
    // Page by page: more than one page, every name exactly once, no "." or "..".
    let mut pages = 0;
    let mut all = Vec::new();
    let mut cookie = 0;
    let mut resume = None;
    loop {
        let page = c.read_dir(big, cookie).unwrap();
        pages += 1;
        if pages == 2 {
            resume = Some((cookie, page.clone()));
        }
        all.extend(page.entries);
        if page.done {
            break;
        }
        cookie = page.next_cookie;
    }
    assert!(pages >= 2, "{pages} pages");
    assert_eq!(all.len(), 2001);
    let mut unique: Vec<_> = all.iter().map(|e| e.name.clone()).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 2001);
    assert!(!unique.iter().any(|n| n == b"." || n == b".."));
    let zdir = all.iter().find(|e| e.name == b"zdir").unwrap();
    assert_eq!(zdir.kind, libc::DT_DIR);
    assert_eq!(
        zdir.ino,
        std::fs::metadata(s.0.join("big/zdir")).unwrap().ino()
    );
    assert!(all
        .iter()
        .filter(|e| e.name != b"zdir")
        .all(|e| e.kind == libc::DT_REG));
    // A cookie can be resumed again: the same page.
    let (cookie, page) = resume.unwrap();
    assert_eq!(c.read_dir(big, cookie).unwrap(), page);
    // readdir does all of it.
    assert_eq!(c.readdir(big).unwrap().len(), 2001);
    // An empty directory.
    let g2 = start(&s.0.join("big/zdir"), true);
    let page = g2.client.read_dir(0, 0).unwrap();
    assert!(page.done && page.entries.is_empty());
    assert_eq!(c.read_dir(0, 0).unwrap().entries.len(), 4);
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
    assert_eq!(c.read_dir(w.nodes[1].0, 0).err(), Some(libc::ENOTDIR));
}

#[test]
fn set_attr_changes_each_attribute() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
    let (etc, hosts) = (w.nodes[0].0, w.nodes[1].0);
    let set = |fid, set: SetAttr| c.set_attr(fid, &set);
    let attr = set(
        hosts,
        SetAttr {
            mode: Some(0o100600),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(attr.mode, libc::S_IFREG | 0o600);
    assert_eq!(
        std::fs::metadata(s.0.join("etc/hosts"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    let attr = set(
        hosts,
        SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(attr.size, 4);
    assert_eq!(std::fs::read(s.0.join("etc/hosts")).unwrap(), b"127.");
    let attr = set(
        hosts,
        SetAttr {
            size: Some(1 << 20),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(attr.size, 1 << 20);
    assert_eq!(
        set(
            etc,
            SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        )
        .err(),
        Some(libc::EISDIR)
    );
    let t = |sec, nsec| Some(TimeSpec { sec, nsec });
    let attr = set(
        hosts,
        SetAttr {
            atime: t(1_000_000, 5),
            mtime: t(2_000_000, 7),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!((attr.atime, attr.mtime), ((1_000_000, 5), (2_000_000, 7)));
    let attr = set(
        hosts,
        SetAttr {
            mtime: t(0, TimeSpec::NOW),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(attr.atime, (1_000_000, 5), "atime omitted");
    assert!(attr.mtime.0 > 2_000_000);
    let attr = set(
        hosts,
        SetAttr {
            atime: t(3, TimeSpec::OMIT),
            mtime: t(9, 0),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!((attr.atime, attr.mtime), ((1_000_000, 5), (9, 0)));
    assert_eq!(
        set(
            hosts,
            SetAttr {
                mtime: t(0, 1_000_000_000),
                ..SetAttr::default()
            }
        )
        .err(),
        Some(libc::EINVAL)
    );
    // All at once: times set last win over those truncation sets.
    let attr = set(
        hosts,
        SetAttr {
            mode: Some(0o644),
            size: Some(2),
            atime: t(10, 1),
            mtime: t(20, 2),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(
        (attr.mode & 0o7777, attr.size, attr.atime, attr.mtime),
        (0o644, 2, (10, 1), (20, 2))
    );
    // A symlink's own times, never its target's.
    let (link, _) = c.walk(0, b"escape").unwrap();
    let before = std::fs::metadata("/etc/passwd").unwrap().mtime();
    let attr = set(
        link,
        SetAttr {
            mtime: t(42, 0),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(attr.mtime, (42, 0));
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().mtime(), before);
    // Nothing to change is fine.
    assert_eq!(set(hosts, SetAttr::default()).unwrap().size, 2);
    if is_root() {
        let attr = set(
            hosts,
            SetAttr {
                uid: Some(1234),
                gid: Some(4321),
                ..SetAttr::default()
            },
        )
        .unwrap();
        assert_eq!((attr.uid, attr.gid), (1234, 4321));
        let attr = set(
            hosts,
            SetAttr {
                gid: Some(99),
                ..SetAttr::default()
            },
        )
        .unwrap();
        assert_eq!((attr.uid, attr.gid), (1234, 99));
        let attr = set(
            link,
            SetAttr {
                uid: Some(77),
                ..SetAttr::default()
            },
        )
        .unwrap();
        assert_eq!(attr.uid, 77);
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().uid(),
            0,
            "lchown, not chown"
        );
    }
}

#[test]
fn user_xattrs_only() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
    let (etc, hosts) = (w.nodes[0].0, w.nodes[1].0);
    match c.set_xattr(hosts, b"user.moat", b"value", 0) {
        Ok(()) => {}
        Err(libc::EOPNOTSUPP) => {
            eprintln!("skipped: {} has no user xattrs", s.0.display());
            return;
        }
        Err(e) => panic!("set_xattr: errno {e}"),
    }
    assert_eq!(c.get_xattr(hosts, b"user.moat").unwrap(), b"value");
    assert_eq!(
        c.set_xattr(hosts, b"user.moat", b"x", libc::XATTR_CREATE as u32)
            .err(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        c.set_xattr(hosts, b"user.none", b"x", libc::XATTR_REPLACE as u32)
            .err(),
        Some(libc::ENODATA)
    );
    assert_eq!(
        c.set_xattr(hosts, b"user.moat", b"x", 4).err(),
        Some(libc::EINVAL)
    );
    c.set_xattr(hosts, b"user.moat", &[7; 3000], libc::XATTR_REPLACE as u32)
        .unwrap();
    assert_eq!(c.get_xattr(hosts, b"user.moat").unwrap(), vec![7; 3000]);
    c.set_xattr(hosts, b"user.empty", b"", 0).unwrap();
    assert_eq!(c.get_xattr(hosts, b"user.empty").unwrap(), b"");
    c.set_xattr(etc, b"user.dir", b"d", 0).unwrap();
    assert_eq!(c.list_xattr(etc).unwrap(), [b"user.dir".to_vec()]);
    let mut names = c.list_xattr(hosts).unwrap();
    names.sort();
    assert_eq!(names, [b"user.empty".to_vec(), b"user.moat".to_vec()]);
    c.remove_xattr(hosts, b"user.moat").unwrap();
    assert_eq!(c.get_xattr(hosts, b"user.moat").err(), Some(libc::ENODATA));
    assert_eq!(
        c.remove_xattr(hosts, b"user.moat").err(),
        Some(libc::ENODATA)
    );
    for other in [
        &b"trusted.moat"[..],
        b"security.selinux",
        b"system.posix_acl_access",
        b"moat",
    ] {
        assert_eq!(c.get_xattr(hosts, other).err(), Some(libc::EOPNOTSUPP));
        assert_eq!(
            c.set_xattr(hosts, other, b"x", 0).err(),
            Some(libc::EOPNOTSUPP)
        );
        assert_eq!(c.remove_xattr(hosts, other).err(), Some(libc::EOPNOTSUPP));
    }
    if is_root() {
        // Other namespaces exist on the host, but are never listed.
        rustix::fs::setxattr(
            s.0.join("etc/hosts"),
            "trusted.moat",
            b"t",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert_eq!(c.list_xattr(hosts).unwrap(), [b"user.empty".to_vec()]);
    }
    assert_eq!(c.get_xattr(hosts, &[b'u'; 300]).err(), Some(libc::ERANGE));
    assert_eq!(
        c.set_xattr(hosts, b"user.big", &vec![0; 65537], 0).err(),
        Some(libc::E2BIG)
    );
}

#[test]
fn statfs_reports_the_host_filesystem() {
    let s = scratch();
    let g = start_mounts(vec![
        Mount {
            host_path: s.0.clone(),
            read_only: false,
        },
        Mount {
            host_path: s.0.clone(),
            read_only: true,
        },
    ]);
    let c = &g.client;
    let host = rustix::fs::statfs(&s.0).unwrap();
    let rw = c.statfs(0).unwrap();
    assert_eq!(rw.fs_type, host.f_type as u64);
    assert_eq!(rw.bsize, host.f_bsize as u64);
    assert_eq!(rw.blocks, host.f_blocks);
    assert_eq!(rw.namelen, 255);
    assert_eq!(
        rw.flags & libc::ST_RDONLY,
        host.f_flags as u64 & libc::ST_RDONLY
    );
    let ro = c.statfs(1).unwrap();
    assert_ne!(ro.flags & libc::ST_RDONLY, 0);
    let (escape, _) = c.walk(0, b"escape").unwrap();
    assert_eq!(c.statfs(escape).unwrap().fs_type, host.f_type as u64);
}

#[test]
fn read_only_mounts_refuse_every_change() {
    let s = scratch();
    let g = start(&s.0, true);
    let c = &g.client;
    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
    let (etc, hosts) = (w.nodes[0].0, w.nodes[1].0);
    let rofs = Some(libc::EROFS);
    assert_eq!(
        c.create(0, b"new", libc::O_RDWR as u32, 0o644, 0, 0).err(),
        rofs
    );
    assert_eq!(c.mkdir(0, b"new", 0o755, 0, 0).err(), rofs);
    assert_eq!(c.symlink(0, b"new", b"x", 0, 0).err(), rofs);
    assert_eq!(
        c.mknod(0, b"new", libc::S_IFIFO | 0o644, 0, 0, 0).err(),
        rofs
    );
    assert_eq!(c.link(hosts, 0, b"new").err(), rofs);
    assert_eq!(c.unlink(etc, b"hosts", false).err(), rofs);
    assert_eq!(c.unlink(0, b"etc", true).err(), rofs);
    assert_eq!(c.rename(etc, b"hosts", etc, b"h2", 0).err(), rofs);
    for set in [
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        SetAttr {
            uid: Some(0),
            ..SetAttr::default()
        },
        SetAttr {
            mtime: Some(TimeSpec { sec: 1, nsec: 0 }),
            ..SetAttr::default()
        },
    ] {
        assert_eq!(c.set_attr(hosts, &set).err(), rofs, "{set:?}");
    }
    assert_eq!(c.set_xattr(hosts, b"user.a", b"b", 0).err(), rofs);
    assert_eq!(c.remove_xattr(hosts, b"user.a").err(), rofs);
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(c.open(hosts, flags as u32).err(), rofs, "flags {flags:o}");
    }
    // Reading is fine, and nothing changed.
    assert_eq!(
        read_all(c.open(hosts, libc::O_RDONLY as u32).unwrap()),
        b"127.0.0.1 localhost\n"
    );
    assert!(c.set_attr(hosts, &SetAttr::default()).is_ok());
    assert_eq!(
        names(c, 0),
        [b"escape".to_vec(), b"etc".to_vec(), b"up".to_vec()]
    );
    assert_eq!(names(c, etc), [b"hosts".to_vec(), b"link".to_vec()]);
    assert_eq!(
        std::fs::metadata(s.0.join("etc/hosts"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

#[test]
fn host_kernel_filesystems_and_devices_are_refused() {
    let g = start(Path::new("/"), true);
    let c = &g.client;
    if Path::new("/proc/self").exists() {
        assert_eq!(c.walk(0, b"proc").err(), Some(libc::EACCES));
    }
    if Path::new("/sys/kernel").exists() {
        assert_eq!(c.walk(0, b"sys").err(), Some(libc::EACCES));
    }
    let w = c.walk_names(0, &[&b"dev"[..], b"null"]).unwrap();
    assert_eq!(w.errno, None);
    assert_eq!(w.nodes[1].1.mode & S_IFMT, libc::S_IFCHR);
    assert_eq!(
        c.open(w.nodes[1].0, 0).err(),
        Some(libc::EACCES),
        "host devices are never opened"
    );
}

#[test]
fn malformed_datagrams_get_errors_and_the_server_keeps_serving() {
    let s = scratch();
    let g = start(&s.0, false);
    let c = &g.client;
    let raw = &g.raw;
    let valid = encode_request(500, &Request::Stat { fid: 0 });
    // (datagram, the errno it earns; None: dropped without a reply)
    let mut cases: Vec<(Vec<u8>, Option<i32>)> = vec![
        (vec![], None),
        (vec![1], None),
        (vec![1, 2, 3], None),
        (vec![1, 0, 0, 0], Some(libc::EINVAL)),
        (vec![2, 0, 0, 0, 0xee, 1, 2], Some(libc::EPROTO)),
        (valid[..valid.len() - 1].to_vec(), Some(libc::EINVAL)),
        ([&valid[..], &[0]].concat(), Some(libc::EINVAL)),
        // A walk claiming 4 billion names.
        (
            [&[3, 0, 0, 0, 3][..], &[0; 8], &[0xff; 4]].concat(),
            Some(libc::EINVAL),
        ),
        // A name claiming 2 GiB.
        (
            [
                &[4, 0, 0, 0, 16][..],
                &[0; 8],
                &[0xff, 0xff, 0xff, 0x7f],
                b"user.x",
            ]
            .concat(),
            Some(libc::EINVAL),
        ),
        // Bigger than any message: truncated on receipt, answered by its tag.
        (
            {
                let mut big = encode_request(
                    6,
                    &Request::GetXattr {
                        fid: 0,
                        name: vec![b'x'; 200_000],
                    },
                );
                big.truncate(MAX_MESSAGE + 1000);
                big
            },
            Some(libc::EINVAL),
        ),
    ];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..200 {
        let len = (next() % 40) as usize;
        cases.push(((0..len).map(|_| next() as u8).collect(), None));
    }
    for (i, (junk, expect)) in cases.iter().enumerate() {
        // The junk, then a valid request: the replies say what the junk earned.
        let probe = encode_request(1_000_000 + i as u32, &Request::Stat { fid: 0 });
        rustix::net::send(raw, junk, rustix::net::SendFlags::empty()).unwrap();
        let first = decode_reply(&exchange(raw, &probe).expect("the gofer answers")).unwrap();
        if junk.len() < 4 {
            assert!(expect.is_none(), "case {i}");
            assert_eq!(
                first.0,
                1_000_000 + i as u32,
                "case {i}: dropped without a reply"
            );
        } else {
            assert_eq!(
                first.0,
                u32::from_le_bytes(junk[..4].try_into().unwrap()),
                "case {i}"
            );
            if i < 10 {
                assert_eq!(first.1.err(), *expect, "case {i}");
            }
            let second = decode_reply(&read_reply(raw).expect("the gofer answers")).unwrap();
            assert_eq!(second.0, 1_000_000 + i as u32, "case {i}");
        }
        // Still serving, through the client too.
        assert!(c.stat(0).is_ok(), "case {i}");
    }
    // An fd sent to the gofer is closed, the request still answered.
    let fd = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let fds = [std::os::fd::AsFd::as_fd(&fd)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        raw,
        &[std::io::IoSlice::new(&valid)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    let (tag, reply) = decode_reply(&read_reply(raw).unwrap()).unwrap();
    assert_eq!(tag, 500);
    assert!(matches!(reply, Ok(Response::Attr(_))));
    assert!(c.walk(0, b"etc").is_ok());
}

#[test]
fn the_client_is_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GoferClient>();
    let s = scratch();
    let g = start(&s.0, true);
    let c = &g.client;
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..200 {
                    let w = c.walk_names(0, &[&b"etc"[..], b"hosts"]).unwrap();
                    assert_eq!(w.nodes[1].1.size, 20);
                    assert_eq!(
                        read_all(c.open(w.nodes[1].0, 0).unwrap()),
                        b"127.0.0.1 localhost\n"
                    );
                    for (fid, _) in w.nodes {
                        c.try_clunk(fid).unwrap();
                    }
                }
            });
        }
    });
}

#[test]
fn a_dead_gofer_is_eio() {
    let (a, b) = socket_pair();
    let server = std::thread::spawn(move || {
        // Serve the handshake, then hang up.
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = rustix::net::recv(&b, &mut buf, rustix::net::RecvFlags::empty())
            .unwrap()
            .0;
        let (tag, _) = moat_gofer::protocol::decode_request(&buf[..n]).unwrap();
        let reply = moat_gofer::protocol::encode_reply(
            tag,
            &Ok(Response::Version {
                version: PROTOCOL_VERSION,
                mounts: 1,
            }),
        );
        rustix::net::send(&b, &reply, rustix::net::SendFlags::empty()).unwrap();
    });
    let c = GoferClient::connect(a).unwrap();
    server.join().unwrap();
    assert_eq!(c.stat(0).err(), Some(libc::EIO));
    assert_eq!(c.walk(0, b"etc").err(), Some(libc::EIO));
}
