//! Syscall-site patching on the systrap platform (docs/ARCHITECTURE.md, "Patched sites"):
//! the differential programs `patched_sites` and `patched_jit` prove the results right with
//! or without patching; this proves the patched path is what ran — the platform's counter of
//! calls that came through a patched site is high with patching on and zero with
//! `MOAT_SYSTRAP_PATCH=0` — and that the `[moat]` area shows in `/proc/self/maps`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(name: &str, source: &Path, out: &Path) -> PathBuf {
    let exe = out.join(name);
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-pthread", "-I"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs"))
        .arg("-o")
        .arg(&exe)
        .arg(source)
        .output()
        .expect("run gcc (scripts/setup installs it)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    exe
}

/// Run `exe` under systrap (with `MOAT_SYSTRAP_PATCH=patch` if given): its stdout, and how
/// many calls came through patched sites (from the wait statistics in the debug log).
fn run(exe: &Path, log: &Path, patch: Option<&str>) -> (String, u64) {
    let _ = std::fs::remove_file(log);
    let mut cmd = Command::new(common::MOAT);
    cmd.args(["do", "--platform", "systrap", "--debug-log"])
        .arg(log)
        .arg("--")
        .arg(exe);
    match patch {
        Some(v) => cmd.env("MOAT_SYSTRAP_PATCH", v),
        None => cmd.env_remove("MOAT_SYSTRAP_PATCH"),
    };
    let out = cmd.output().expect("run moat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "status {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(log).expect("the debug log");
    let patched = text
        .lines()
        .filter_map(|l| l.split("patched: ").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .next_back()
        .unwrap_or_else(|| panic!("no systrap statistics in the log:\n{text}"));
    (stdout, patched)
}

#[test]
fn patched_sites_take_no_signal_and_can_be_turned_off() {
    if !moat_platform::systrap::patch::available() {
        eprintln!("SKIP: this host cannot run patched sites (no FSGSBASE)");
        return;
    }
    let dir = common::Scratch::new("patching");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = build(
        "patched_sites",
        &root.join("tests/programs/patched_sites.c"),
        dir.path(),
    );
    let log = dir.path().join("log");
    let (out, on) = run(&exe, &log, None);
    assert!(
        out.contains("registers, red zone, flags and results kept"),
        "{out}"
    );
    // 6 threads x 3000 rounds x 2 sites, plus the handlers' and the GS-base part's calls.
    assert!(on >= 30_000, "only {on} calls came through patched sites");
    let (out, off) = run(&exe, &log, Some("0"));
    assert!(
        out.contains("registers, red zone, flags and results kept"),
        "{out}"
    );
    assert_eq!(off, 0, "MOAT_SYSTRAP_PATCH=0 still patched");
}

#[test]
fn the_moat_area_shows_in_proc_maps() {
    if !moat_platform::systrap::patch::available() {
        eprintln!("SKIP: this host cannot run patched sites (no FSGSBASE)");
        return;
    }
    let dir = common::Scratch::new("patching-maps");
    let source = dir.path().join("maps.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 20; i++) getppid();
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "[moat]")) fputs(line, stdout);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = build("maps", &source, dir.path());
    let (out, patched) = run(&exe, &dir.path().join("log"), None);
    // A site is patched at its eighth slow trap: the last twelve calls take the patch.
    assert!(patched >= 10, "getppid was not patched ({patched})");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("00060000-000f1000 r-xp ") && lines[0].ends_with("[moat]"),
        "{out}"
    );
}
