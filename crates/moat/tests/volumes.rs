//! The sandbox's file tree as the host sees it: the root overlay never changes the host, a
//! `--volume` bind mount does (through the gofer), and `:ro` refuses writes with EROFS.
//! Uses busybox-static (installed by scripts/setup) for the file commands.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUSYBOX: &str = "/bin/busybox";

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("do")
        .args(common::platform_args())
        .args(args)
        .output()
        .expect("run moat")
}

/// A fresh host directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("volumes")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("in.txt"), "from the host\n").unwrap();
    dir
}

fn volume(dir: &Path, suffix: &str) -> String {
    format!("{}:/work{suffix}", dir.display())
}

#[test]
fn writes_to_a_volume_reach_the_host() {
    let dir = scratch("rw");
    let v = volume(&dir, "");
    for cmd in [
        &["cp", "in.txt", "copy.txt"][..],
        &["mkdir", "made"],
        &["mv", "sub", "moved"],
        &["ln", "-s", "in.txt", "link"],
        &["rm", "copy.txt"],
        &["cp", "in.txt", "kept.txt"],
    ] {
        let mut args = vec!["-v", &v, "--cwd", "/work", BUSYBOX];
        args.extend_from_slice(cmd);
        let out = moat(&args);
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("kept.txt")).unwrap(),
        "from the host\n"
    );
    assert!(dir.join("made").is_dir());
    assert!(dir.join("moved").is_dir() && !dir.join("sub").exists());
    assert_eq!(
        std::fs::read_link(dir.join("link")).unwrap(),
        Path::new("in.txt")
    );
    assert!(!dir.join("copy.txt").exists());
    // And the sandbox reads back what the host has.
    let out = moat(&["-v", &v, BUSYBOX, "cat", "/work/kept.txt"]);
    assert_eq!(out.stdout, b"from the host\n");
}

#[test]
fn a_read_only_volume_refuses_writes() {
    let dir = scratch("ro");
    let v = volume(&dir, ":ro");
    let out = moat(&["-v", &v, BUSYBOX, "touch", "/work/new"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{out:?}"
    );
    assert!(!dir.join("new").exists());
    let out = moat(&["-v", &v, BUSYBOX, "rm", "/work/in.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(dir.join("in.txt").exists());
    let out = moat(&["-v", &v, BUSYBOX, "cat", "/work/in.txt"]);
    assert_eq!(out.stdout, b"from the host\n");
}

#[test]
fn the_root_overlay_keeps_the_host_unchanged() {
    let dir = scratch("overlay");
    // Outside any volume, the host's tree is the read-only lower layer: changes stay in memory.
    let path = dir.join("in.txt");
    let p = path.to_str().unwrap();
    let out = moat(&[BUSYBOX, "rm", p]);
    assert!(out.status.success(), "{out:?}");
    let made = dir.join("made");
    let out = moat(&[BUSYBOX, "mkdir", made.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(path.exists(), "rm in the sandbox removed the host's file");
    assert!(!made.exists(), "mkdir in the sandbox reached the host");
}

#[test]
fn bad_volume_and_cwd_arguments_are_errors() {
    let out = moat(&["-v", "/nonexistent-dir:/work", BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = moat(&["-v", "/tmp:relative", BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = moat(&["--cwd", "/nonexistent-dir", BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
}

#[test]
fn walking_a_tree_larger_than_the_dentry_cache_works() {
    // More files than the kernel caches and than the gofer may hold fds for (these machines
    // allow 20000): the walk must see every one (the cache prunes unused dentries, which
    // closes their gofer fds).
    let dir = scratch("many");
    for i in 0..22000 {
        std::fs::write(dir.join(format!("f{i}")), "").unwrap();
    }
    let sub = dir.join("sub");
    for i in 0..3000 {
        std::fs::create_dir(sub.join(format!("d{i}"))).unwrap();
    }
    let out = moat(&[BUSYBOX, "find", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The directory itself, in.txt, sub, 22000 files and 3000 directories.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 25003);
}

#[test]
fn attributes_follow_the_sandboxs_own_changes() {
    // The kernel caches a volume's attributes; its own writes, truncations and new names
    // must show at once.
    let dir = scratch("attrs");
    let v = volume(&dir, "");
    let script = "import os\n\
        f = open('/work/app', 'a'); f.write('abc'); f.flush(); print(os.stat('/work/app').st_size)\n\
        f.write('de'); f.flush(); print(os.stat('/work/app').st_size)\n\
        os.truncate('/work/app', 1); print(os.path.getsize('/work/app'))\n\
        before = os.stat('/work').st_nlink; os.mkdir('/work/dd'); print(os.stat('/work').st_nlink - before)\n";
    let out = moat(&["-v", &v, "/usr/bin/python3", "-c", script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n5\n1\n1\n");
    assert_eq!(std::fs::metadata(dir.join("app")).unwrap().len(), 1);
}

#[test]
fn symlinks_and_dotdot_in_a_volume_cannot_reach_host_files_outside_it() {
    // A volume holding symlinks that point outside it (absolute and relative): the sandbox's
    // VFS resolves them in the sandbox's own tree, where everything outside the volume is the
    // read-only lower layer under the memory overlay. Writing through them must change no host
    // file, and `..` above the volume's root stays in the sandbox's tree.
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("volumes");
    let dir = scratch("escape");
    let victim = base.join("escape-victim");
    std::fs::write(&victim, "host secret\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("abs")).unwrap();
    std::os::unix::fs::symlink("../escape-victim", dir.join("rel")).unwrap();
    // Mounted at /sandbox-vol: the victim's host path must not fall inside the volume.
    let v = format!("{}:/sandbox-vol", dir.display());
    let script = "import os\n\
        print(open('/sandbox-vol/abs').read(), end='')\n\
        open('/sandbox-vol/abs', 'w').write('overwritten\\n')\n\
        open('/sandbox-vol/rel', 'w').write('created\\n')\n\
        print(open('/sandbox-vol/abs').read(), end='')\n\
        print(os.path.realpath('/sandbox-vol/../../..'))\n";
    let out = moat(&["-v", &v, "/usr/bin/python3", "-c", script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The absolute link reads the host file (the root is the host's, read-only) ...
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "host secret\noverwritten\n/\n"
    );
    // ... but the write went to the sandbox's overlay, not to the host file.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host secret\n");
    // The relative link climbs out of the volume into the sandbox's /: nothing on the host.
    assert!(!Path::new("/escape-victim").exists());
    // The links themselves are untouched on the host.
    assert_eq!(std::fs::read_link(dir.join("abs")).unwrap(), victim);
}

#[test]
fn a_socket_bound_in_a_volume_leaves_an_inert_socket_file_on_the_host() {
    // The sandbox's socket lives in Moat's kernel; the host gets only the file, as Linux
    // leaves one, and nothing on the host answers at it.
    let dir = scratch("socket");
    let v = volume(&dir, "");
    let script = "import socket, os\n\
        s = socket.socket(socket.AF_UNIX); s.bind('/work/sock'); s.listen()\n\
        c = socket.socket(socket.AF_UNIX); c.connect('/work/sock')\n\
        a, _ = s.accept(); c.sendall(b'over a volume'); print(a.recv(64).decode())\n";
    let out = moat(&["-v", &v, "/usr/bin/python3", "-c", script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over a volume\n");
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(dir.join("sock")).unwrap();
    assert!(meta.file_type().is_socket());
    let err = std::os::unix::net::UnixStream::connect(dir.join("sock")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn a_script_runs_as_the_first_program() {
    // `moat do ./script` follows the `#!` line as execve does (pyenv's shims are scripts).
    let dir = scratch("script");
    let script = dir.join("hello");
    std::fs::write(&script, "#!/bin/sh -e\necho \"$0 says $1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = script.to_str().unwrap();
    let out = moat(&[path, "hi"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{path} says hi\n")
    );
}

#[test]
fn shared_writable_mappings_of_volume_files_reach_the_host() {
    // MAP_SHARED|PROT_WRITE of a host file (sqlite's WAL index does this): the mapping, write()
    // and a second process agree, and the host file has the bytes once the file is closed.
    let dir = scratch("mmap");
    std::fs::write(dir.join("data"), vec![b'.'; 8192]).unwrap();
    let v = volume(&dir, "");
    let script = "import mmap, os\n\
        fd = os.open('/work/data', os.O_RDWR)\n\
        m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)\n\
        m[0:5] = b'hello'\n\
        os.pwrite(fd, b'WORLD', 4096)\n\
        print(m[4096:4101].decode())\n\
        pid = os.fork()\n\
        if pid == 0:\n\
        \x20   m[10:15] = b'child'\n\
        \x20   os._exit(0)\n\
        os.waitpid(pid, 0)\n\
        print(os.pread(fd, 15, 0).decode())\n\
        m.close(); os.close(fd)\n";
    let out = moat(&["-v", &v, "/usr/bin/python3", "-c", script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "WORLD\nhello.....child\n"
    );
    let host = std::fs::read(dir.join("data")).unwrap();
    assert_eq!(host.len(), 8192);
    assert_eq!(&host[..15], b"hello.....child");
    assert_eq!(&host[4096..4101], b"WORLD");
}

#[test]
fn sqlite_in_wal_mode_works_on_a_volume() {
    let dir = scratch("sqlite");
    let v = volume(&dir, "");
    let sqlite = "/usr/bin/sqlite3";
    if !Path::new(sqlite).exists() {
        eprintln!("skipped: {sqlite} is not installed");
        return;
    }
    let out = moat(&[
        "-v",
        &v,
        sqlite,
        "/work/t.db",
        "pragma journal_mode=wal; create table t(x); insert into t values (1), (2); select count(*) from t;",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "wal\n2\n");
}
