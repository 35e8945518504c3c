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
