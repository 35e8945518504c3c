//! What a sandbox may take from the host: a fork bomb run as root (which RLIMIT_NPROC does
//! not stop) meets the sandbox's own cap on tasks, fails with EAGAIN, and the host is fine.

use std::process::Command;

const BOMB: &str = r#"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    int n = 0, err = 0;
    for (int i = 0; i < 100000; i++) {
        pid_t p = fork();
        if (p == 0) { pause(); _exit(0); }
        if (p < 0) { err = errno; break; }
        n++;
    }
    printf("%d %d\n", n, err);
    fflush(stdout);
    kill(0, SIGKILL);
    return 0;
}
"#;

#[test]
fn a_fork_bomb_is_contained() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limits");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("bomb.c");
    let exe = dir.join("bomb");
    std::fs::write(&src, BOMB).unwrap();
    let cc = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(cc.success());
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("do")
        .arg(&exe)
        .output()
        .expect("run moat");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut fields = stdout
        .split_whitespace()
        .map(|f| f.parse::<i64>().unwrap_or(-1));
    let (forked, errno) = (fields.next().unwrap_or(-1), fields.next().unwrap_or(-1));
    // The bomb's own task and every child it made fill the sandbox's 8192 tasks.
    assert_eq!((forked, errno), (8191, i64::from(libc::EAGAIN)), "{stdout}");
    // The bomb ends itself with SIGKILL once fork fails: the sandbox reports that.
    assert_eq!(out.status.code(), Some(128 + libc::SIGKILL));
}
