//! The differential suite: every C program in tests/programs is built with `gcc -static`, run
//! natively and under `moat do`, and the two runs must print the same stdout and end with the
//! same status. The native run proves the program (and so the test) right: its status must be
//! the one its `// expect:` header declares (exit 0 by default).
//!
//! Programs in tests/programs/sandbox are Moat-only: they prove there is no pass-through
//! (pid 1, Moat's own uname, ENOSYS for an unimplemented call) and are not run natively.
//!
//! Headers, on the first lines of a program:
//!   // expect: exit N      |  // expect: signal N
//!   // args: a b c         (argv passed to both runs)

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};

/// How a run ended, comparable between native and Moat (moat reports a signal N as 128+N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Exit(i32),
    Signal(i32),
}

fn native_status(out: &Output) -> Status {
    use std::os::unix::process::ExitStatusExt;
    match (out.status.code(), out.status.signal()) {
        (Some(c), _) => Status::Exit(c),
        (None, Some(s)) => Status::Signal(s),
        _ => Status::Exit(-1),
    }
}

fn moat_status(out: &Output) -> Status {
    match out.status.code() {
        Some(c) if c > 128 && c < 128 + 65 => Status::Signal(c - 128),
        Some(c) => Status::Exit(c),
        None => Status::Exit(-1),
    }
}

struct Program {
    name: String,
    source: PathBuf,
    expect: Status,
    args: Vec<String>,
}

fn parse_headers(source: &Path) -> Result<(Status, Vec<String>), String> {
    let text = std::fs::read_to_string(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut expect = Status::Exit(0);
    let mut args = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with("//")) {
        let line = line.trim_start_matches("//").trim();
        if let Some(rest) = line.strip_prefix("expect:") {
            let mut words = rest.split_whitespace();
            let (kind, n) = (words.next(), words.next().and_then(|w| w.parse().ok()));
            expect = match (kind, n) {
                (Some("exit"), Some(n)) => Status::Exit(n),
                (Some("signal"), Some(n)) => Status::Signal(n),
                _ => return Err(format!("{}: bad expect header: {line}", source.display())),
            };
        } else if let Some(rest) = line.strip_prefix("args:") {
            args = rest.split_whitespace().map(str::to_string).collect();
        }
    }
    Ok((expect, args))
}

fn programs(dir: &Path) -> Vec<Program> {
    let mut found: Vec<Program> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .map(|source| {
            let (expect, args) = parse_headers(&source).unwrap_or_else(|e| panic!("{e}"));
            let name = source.file_stem().unwrap().to_string_lossy().into_owned();
            Program {
                name,
                source,
                expect,
                args,
            }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

fn build(program: &Program, include: &Path, out_dir: &Path) -> Result<PathBuf, Failed> {
    let exe = out_dir.join(&program.name);
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-I"])
        .arg(include)
        .arg("-o")
        .arg(&exe)
        .arg(&program.source)
        .output()
        .map_err(|e| format!("cannot run gcc (scripts/setup installs it): {e}"))?;
    if !out.status.success() {
        return Err(format!("gcc failed:\n{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(exe)
}

fn run(cmd: &mut Command) -> Result<Output, Failed> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}").into())
}

fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

fn differential(program: &Program, include: &Path, out_dir: &Path) -> Result<(), Failed> {
    let exe = build(program, include, out_dir)?;
    // Each run starts in its own empty directory (files tests create their files there).
    let workdir = |tag: &str| -> Result<PathBuf, Failed> {
        let dir = out_dir.join(format!("{}.{tag}", program.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    };
    let native = run(Command::new(&exe)
        .args(&program.args)
        .current_dir(workdir("native")?))?;
    let native_st = native_status(&native);
    if native_st != program.expect {
        return Err(format!(
            "the program itself is wrong: natively it ended with {native_st:?}, its header expects {:?}\nstdout:\n{}",
            program.expect,
            String::from_utf8_lossy(&native.stdout)
        )
        .into());
    }
    let sandboxed = run(moat()
        .arg("do")
        .arg("--")
        .arg(&exe)
        .args(&program.args)
        .current_dir(workdir("moat")?))?;
    let moat_st = moat_status(&sandboxed);
    if moat_st != native_st || sandboxed.stdout != native.stdout {
        return Err(format!(
            "native and Moat differ\nnative: {native_st:?}\n{}\nmoat:   {moat_st:?}\n{}\nmoat stderr:\n{}",
            String::from_utf8_lossy(&native.stdout),
            String::from_utf8_lossy(&sandboxed.stdout),
            String::from_utf8_lossy(&sandboxed.stderr)
        )
        .into());
    }
    Ok(())
}

/// The first system call `moat syscalls --unimplemented` names.
fn unimplemented_syscall() -> Result<(String, String), Failed> {
    let out = run(moat().args(["syscalls", "--unimplemented"]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text
        .lines()
        .next()
        .ok_or("moat names no unimplemented syscall")?
        .split_whitespace();
    match (words.next(), words.next()) {
        (Some(nr), Some(name)) => Ok((nr.to_string(), name.to_string())),
        _ => Err("bad `moat syscalls --unimplemented` output".into()),
    }
}

fn sandbox_only(program: &Program, include: &Path, out_dir: &Path) -> Result<(), Failed> {
    let exe = build(program, include, out_dir)?;
    let (nr, name) = unimplemented_syscall()?;
    let log = out_dir.join(format!("{}.log", program.name));
    let out = run(moat()
        .arg("do")
        .arg("--debug-log")
        .arg(&log)
        .arg("--")
        .arg(&exe)
        .arg(&nr)
        .args(&program.args))?;
    let st = moat_status(&out);
    if st != program.expect {
        return Err(format!(
            "under Moat it ended with {st:?}, expected {:?}\nstdout:\n{}\nstderr:\n{}",
            program.expect,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    // The program calls the unimplemented syscall twice; the log names it exactly once.
    let text = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mentions = text
        .lines()
        .filter(|l| {
            l.contains("unimplemented")
                && l.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == name)
        })
        .count();
    if mentions != 1 {
        return Err(format!("the log should name unimplemented syscall {name} once, found {mentions} times:\n{text}").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs");
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("programs");
    std::fs::create_dir_all(&out_dir).expect("create the build directory");
    let mut trials = Vec::new();
    for program in programs(&root) {
        let (include, out) = (root.clone(), out_dir.clone());
        trials.push(Trial::test(
            format!("differential::{}", program.name),
            move || differential(&program, &include, &out),
        ));
    }
    for program in programs(&root.join("sandbox")) {
        let (include, out) = (root.clone(), out_dir.clone());
        trials.push(Trial::test(
            format!("sandbox::{}", program.name),
            move || sandbox_only(&program, &include, &out),
        ));
    }
    assert!(
        trials.len() > 1,
        "no test programs found in {}",
        root.display()
    );
    libtest_mimic::run(&args, trials).exit();
}
