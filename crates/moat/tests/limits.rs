//! What a sandbox may take from the host: a fork bomb run as root (which RLIMIT_NPROC does
//! not stop) meets the sandbox's own cap on tasks, fails with EAGAIN, and the host is fine; a
//! program that allocates and touches memory without end meets `--memory` and is killed
//! (SIGKILL, the OOM killer's choice), while the host's available memory stays up; a huge
//! mapping that is barely touched still works under the same limit.

mod common;

use std::path::PathBuf;
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

/// Allocates 1 MiB blocks and writes every page of each, without end; prints how far it got
/// every 64 MiB (so the test sees it ran), then "survived" if an allocation ever fails.
const HOG: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    for (unsigned long mib = 1;; mib++) {
        char *p = malloc(1 << 20);
        if (!p) { puts("survived"); return 1; }
        memset(p, 1, 1 << 20);
        __asm__ volatile("" : : "r"(p) : "memory"); /* the pages are really written */
        if (mib % 64 == 0) { printf("%lu\n", mib); fflush(stdout); }
    }
}
"#;

/// Maps 1 TiB (no reserve needed: memory is overcommitted), touches one page in the middle
/// and one at the end, and a 64 MiB heap; what a sparse-array program does.
const SPARSE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
    size_t len = 1UL << 40;
    char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    p[len / 2] = 7;
    p[len - 1] = 9;
    char *heap = malloc(64 << 20);
    if (!heap) { perror("malloc"); return 1; }
    memset(heap, 3, 64 << 20);
    __asm__ volatile("" : : "r"(heap) : "memory");
    printf("%d %d %d\n", p[len / 2], p[len - 1], heap[(64 << 20) - 1]);
    return 0;
}
"#;

/// Init holds a little memory and starts two children: a big one that takes 160 MiB and
/// waits, then a small one that needs 120 MiB more. Under a 256 MiB limit the small one's
/// faults must kill the big one (the largest process), not init and not the small one.
const VICTIM: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static pid_t child(size_t mib, int wait_forever, int ready) {
    pid_t p = fork();
    if (p == 0) {
        char *m = malloc(mib << 20);
        memset(m, 1, mib << 20);
        __asm__ volatile("" : : "r"(m) : "memory"); /* the pages are really written */
        if (ready >= 0) { char c = 'r'; write(ready, &c, 1); }
        if (wait_forever) for (;;) pause();
        _exit(m[(mib << 20) - 1] == 1 ? 0 : 1);
    }
    return p;
}
int main(void) {
    int fds[2];
    char c;
    pipe(fds);
    pid_t big = child(160, 1, fds[1]);
    read(fds[0], &c, 1);
    pid_t small = child(120, 0, -1);
    int st;
    waitpid(small, &st, 0);
    printf("small: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    kill(big, SIGTERM);
    waitpid(big, &st, 0);
    printf("big: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return 0;
}
"#;

/// Compile a C program into the test's scratch directory.
fn build(name: &str, source: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("limits");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let cc = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(cc.success());
    exe
}

/// `MemAvailable` of the host, in KiB.
fn host_available_kib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemAvailable in /proc/meminfo")
}

#[test]
fn touching_memory_without_end_is_killed_at_the_limit() {
    let exe = build("hog", HOG);
    let before = host_available_kib();
    let mut child = Command::new(common::MOAT)
        .arg("do")
        .args(common::platform_args())
        .args(["--memory", "256M"])
        .arg(&exe)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run moat");
    // Watch the host while the hog runs: the sandbox never takes much more than its limit.
    let mut lowest = before;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        lowest = lowest.min(host_available_kib());
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the hog was not stopped within 2 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let reached: u64 = stdout
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    assert!(
        (128..256).contains(&reached),
        "the hog got to {reached} MiB before it was stopped: {stdout}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status).or(status.code().map(|c| c - 128)),
        Some(libc::SIGKILL),
        "killed by the OOM killer: {status:?}"
    );
    // Other engineers' builds move the host's figure too: allow the limit twice over.
    let taken_mib = before.saturating_sub(lowest) >> 10;
    assert!(
        taken_mib < 512,
        "the host's available memory fell by {taken_mib} MiB under a 256 MiB limit"
    );
}

#[test]
fn the_oom_killer_picks_the_largest_process() {
    let exe = build("victim", VICTIM);
    let out = Command::new(common::MOAT)
        .arg("do")
        .args(common::platform_args())
        .args(["--memory", "256M"])
        .arg(&exe)
        .output()
        .expect("run moat");
    assert_eq!(
        (common::text(&out.stdout).as_str(), out.status.code()),
        ("small: exit 0\nbig: signal 9\n", Some(0)),
        "{}",
        common::text(&out.stderr)
    );
}

#[test]
fn a_huge_mapping_barely_touched_works_under_a_limit() {
    let exe = build("sparse", SPARSE);
    let out = Command::new(common::MOAT)
        .arg("do")
        .args(common::platform_args())
        .args(["--memory", "128M"])
        .arg(&exe)
        .output()
        .expect("run moat");
    assert_eq!(
        (common::text(&out.stdout).as_str(), out.status.code()),
        ("7 9 3\n", Some(0)),
        "{}",
        common::text(&out.stderr)
    );
}

#[test]
fn a_fork_bomb_is_contained() {
    let exe = build("bomb", BOMB);
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

#[test]
fn the_limit_is_the_sandboxs_total_memory() {
    let out = Command::new(common::MOAT)
        .arg("do")
        .args(common::platform_args())
        .args(["--memory", "300M", "/bin/head", "-1", "/proc/meminfo"])
        .output()
        .expect("run moat");
    assert_eq!(
        common::text(&out.stdout),
        "MemTotal:         307200 kB\n",
        "{}",
        common::text(&out.stderr)
    );
}

/// A limit too small for the program to even be loaded ends it with SIGKILL, as the OOM killer
/// would, instead of leaving the kernel looping on pages it cannot have or faulting it;
/// a dynamic program whose libraries come from the page cache starts under a small limit.
#[test]
fn a_limit_too_small_to_load_ends_the_program() {
    let run = |limit: &str, args: &[&str]| {
        let mut child = Command::new(common::MOAT)
            .arg("do")
            .args(common::platform_args())
            .args(["--memory", limit])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run moat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut out = String::new();
                std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut out)
                    .expect("read");
                return (out, status.code());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("moat do --memory {limit} {args:?} did not end in 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // As under a memory cgroup: the OOM killer's SIGKILL (moat do's 128+9), not a SIGSEGV from
    // a page the kernel silently failed to supply, and not a hang.
    let (_, code) = run("1M", &["/usr/bin/python3", "-c", "print(1)"]);
    assert_eq!(code, Some(137), "python3 cannot run in 1 MiB");
    let (out, code) = run("32M", &["/usr/bin/python3", "-c", "print(6*7)"]);
    assert_eq!((out.as_str(), code), ("42\n", Some(0)));
}
