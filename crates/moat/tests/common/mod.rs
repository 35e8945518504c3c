//! What the integration tests share: the platform to run on, and for the OCI tests a busybox
//! bundle made locally (busybox-static, installed by scripts/setup), scratch directories, and
//! `moat` runs with a private `--root`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// A fresh scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moat-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A busybox root filesystem: the static binary and relative applet links (absolute links
/// would name the host's files).
pub fn busybox_rootfs(rootfs: &Path) {
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            let _ = std::os::unix::fs::symlink("busybox", link);
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A bundle in `dir` (rootfs made), its config `moat spec`'s with `args` and `terminal`.
pub fn bundle(dir: &Path, args: &[&str], terminal: bool) -> PathBuf {
    busybox_rootfs(&dir.join("rootfs"));
    let out = Command::new(MOAT)
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "moat spec: {out:?}");
    edit_config(dir, |c| {
        c["process"]["args"] = serde_json::json!(args);
        c["process"]["terminal"] = serde_json::json!(terminal);
        // As containerd and podman make it: writes land in the sandbox's overlay.
        c["root"]["readonly"] = serde_json::json!(false);
    });
    dir.to_path_buf()
}

pub fn edit_config(bundle: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

/// `moat --root ROOT ARGS...`, stdio captured (stdin empty).
pub fn moat(root: &Path, args: &[&str]) -> Output {
    Command::new(MOAT)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run moat")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `status` of `moat state`, or None if it failed.
pub fn status(root: &Path, id: &str) -> Option<String> {
    let out = moat(root, &["state", id]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["status"].as_str()?.to_string())
}

/// Poll `f` until it is true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `moat do` options that pick the platform the tests run on: `MOAT_TEST_PLATFORM`
/// (`ptrace`, `systrap`) if set, else none (Moat's default). `scripts/test` runs the suite
/// once per platform.
pub fn platform_args() -> Vec<String> {
    match std::env::var("MOAT_TEST_PLATFORM") {
        Ok(name) if !name.is_empty() => vec!["--platform".to_string(), name],
        _ => Vec::new(),
    }
}
