//! A program that jumps into the stub's code page to make raw host system calls from there
//! (tests/escape/stub_escape.c: what an application trying to escape would do) gains nothing:
//! the calls never reach the host. Under systrap the stub's filter kills the stub process
//! (Moat then ends that process as killed); under ptrace the call is served by Moat like any
//! other, inside the sandbox.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn jumping_into_the_stub_gains_nothing() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stub_escape");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let exe = out.join("stub_escape");
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-I"])
        .arg(root.join("tests/programs"))
        .arg("-o")
        .arg(&exe)
        .arg(root.join("tests/escape/stub_escape.c"))
        .output()
        .expect("run gcc (scripts/setup installs it)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let file = out.join("escaped-file");
    let dir = out.join("escaped-dir");
    let run = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("do")
        .args(common::platform_args())
        .arg("--")
        .arg(&exe)
        .arg(&file)
        .arg(&dir)
        .output()
        .expect("run moat");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stdout.contains(" sites, "),
        "status {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        run.status
    );
    eprintln!("{stdout}");
    assert!(
        !file.exists(),
        "a raw openat from the stub page reached the host"
    );
    assert!(
        !dir.exists(),
        "a raw mkdirat from the stub page reached the host"
    );
}
