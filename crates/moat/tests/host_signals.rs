//! Signals sent to `moat` itself reach the sandbox's init: a program that handles SIGINT
//! decides what ^C does (here: print and exit 3), and one that does not dies of it, reported
//! as 128+N like a shell. Uses busybox-static (installed by scripts/setup).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Start `moat do busybox sh -c SCRIPT` (its stdin a pipe that stays open and empty), wait
/// for its first line, send `signo` to Moat, and return the rest of its output and its exit
/// code.
fn signalled(script: &str, signo: i32) -> (String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("do")
        .args(common::platform_args())
        .args(["/bin/busybox", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run moat");
    let _stdin = child.stdin.take();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    assert_eq!(first, "ready\n");
    // Let the program get to what it waits in.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = rustix::process::Pid::from_child(&child);
    let sig = rustix::process::Signal::from_named_raw(signo).expect("a signal");
    rustix::process::kill_process(pid, sig).expect("signal moat");
    let mut rest = String::new();
    for line in out.lines() {
        rest.push_str(&line.expect("a line"));
        rest.push('\n');
    }
    let status = child.wait().expect("wait for moat");
    (rest, status.code())
}

#[test]
fn a_handled_sigint_reaches_the_program() {
    let (out, code) = signalled(
        "trap 'echo got INT; exit 3' INT; echo ready; while :; do sleep 0.05; done",
        libc::SIGINT,
    );
    assert_eq!(out, "got INT\n");
    assert_eq!(code, Some(3));
}

#[test]
fn an_unhandled_sigterm_ends_the_program() {
    // `exec sleep`: the shell (init) becomes sleep, whose SIGTERM disposition is the default.
    let (out, code) = signalled("echo ready; exec /bin/busybox sleep 30", libc::SIGTERM);
    assert_eq!(out, "");
    assert_eq!(code, Some(128 + libc::SIGTERM));
}

#[test]
fn a_read_of_the_terminal_or_a_pipe_is_interrupted() {
    // cat waits in a read of the host's stdin (a pipe that never delivers): the read must not
    // block on the host, where the signal could not reach it.
    let (out, code) = signalled("echo ready; exec /bin/busybox cat", libc::SIGINT);
    assert_eq!(out, "");
    assert_eq!(code, Some(128 + libc::SIGINT));
}
