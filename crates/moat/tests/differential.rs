//! The differential suite: every C program in tests/programs is built with `gcc -static`, run
//! natively and under `moat do`, and the two runs must print the same stdout and end the same
//! way. The native run proves the program (and so the test) right: it must end as the
//! program's `// expect:` header declares (exit 0 by default).
//!
//! Programs in tests/programs/sandbox are Moat-only: they prove there is no pass-through
//! (pid 1, Moat's own uname, ENOSYS for an unimplemented call, named once in the debug log)
//! and are not run natively.
//!
//! Headers, on the first comment lines of a program:
//!   // expect: exit N      |  // expect: signal N
//!   // args: a b c         (argv passed to both runs, split on white space)
//!   // also-network: host  (also run under `moat do --network=host`)
//!   // native-netns: ping  (the native run happens in a fresh network namespace with `lo`
//!                          up and `net.ipv4.ping_group_range` admitting every group, as
//!                          the sandbox's network is; needs root, else skipped with a line)
//!
//! Every run has stdin = /dev/null, stdout a pipe, and its own empty working directory; it is
//! killed (with its whole process group) after `MOAT_DIFFERENTIAL_TIMEOUT` seconds (default 60).
//! `MOAT_DIFFERENTIAL_BIN` runs another `moat` binary than the one Cargo built;
//! `MOAT_TEST_PLATFORM` picks the platform (`moat do --platform`).

mod common;

use std::fmt;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Exit(i32),
    Signal(i32),
}

impl Ended {
    fn from_status(status: ExitStatus) -> Ended {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exit(code),
            (None, Some(sig)) => Ended::Signal(sig),
            (None, None) => unreachable!("a process that neither exited nor was killed"),
        }
    }

    /// How `moat do` ends when the program inside ends like this: a signal N becomes exit
    /// 128+N, as a shell reports it.
    fn under_moat(self) -> Ended {
        match self {
            Ended::Signal(sig) => Ended::Exit(128 + sig),
            exit @ Ended::Exit(_) => exit,
        }
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ended::Exit(code) => write!(f, "exit {code}"),
            Ended::Signal(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// One C program and what its header says about it.
struct Program {
    name: String,
    source: PathBuf,
    expect: Ended,
    args: Vec<String>,
    /// `--network` modes to run under as well (`// also-network: host`).
    networks: Vec<String>,
    /// The native run needs a network namespace of its own (`// native-netns: ping`).
    native_netns: bool,
}

/// What a program's headers say: how it ends, its argv, its extra networks, whether its
/// native run needs a network namespace of its own.
type Headers = (Ended, Vec<String>, Vec<String>, bool);

fn parse_headers(text: &str) -> Result<Headers, String> {
    let mut expect = Ended::Exit(0);
    let mut args = Vec::new();
    let mut networks = Vec::new();
    let mut native_netns = false;
    for line in text.lines().take_while(|l| l.starts_with("//")) {
        let line = line.trim_start_matches('/').trim();
        if let Some(rest) = line.strip_prefix("expect:") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            expect = match words[..] {
                ["exit", n] => match n.parse() {
                    Ok(code @ 0..=255) => Ended::Exit(code),
                    _ => return Err(format!("bad exit status in header: {line}")),
                },
                ["signal", n] => match n.parse() {
                    Ok(sig @ 1..=64) => Ended::Signal(sig),
                    _ => return Err(format!("bad signal number in header: {line}")),
                },
                _ => {
                    return Err(format!(
                        "bad header (want `expect: exit N` or `expect: signal N`): {line}"
                    ))
                }
            };
        } else if let Some(rest) = line.strip_prefix("args:") {
            args = rest.split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix("also-network:") {
            networks = rest.split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix("native-netns:") {
            if rest.trim() != "ping" {
                return Err(format!("bad header (want `native-netns: ping`): {line}"));
            }
            native_netns = true;
        }
    }
    Ok((expect, args, networks, native_netns))
}

/// The `*.c` files of `dir`, sorted by name; a program whose headers do not parse becomes a
/// trial that fails with the reason, rather than stopping the whole suite.
fn programs(dir: &Path) -> Vec<Result<Program, (String, String)>> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut sources: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    sources
        .into_iter()
        .map(|source| {
            let name = source.file_stem().unwrap().to_string_lossy().into_owned();
            let parsed = std::fs::read_to_string(&source)
                .map_err(|e| e.to_string())
                .and_then(|text| parse_headers(&text));
            match parsed {
                Ok((expect, args, networks, native_netns)) => Ok(Program {
                    name,
                    source,
                    expect,
                    args,
                    networks,
                    native_netns,
                }),
                Err(e) => Err((name, format!("{}: {e}", source.display()))),
            }
        })
        .collect()
}

/// Builds `program` into `out_dir` with the suite's one compiler command line.
fn build(program: &Program, include: &Path, out_dir: &Path) -> Result<PathBuf, Failed> {
    let exe = out_dir.join(&program.name);
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-I"])
        .arg(include)
        .arg("-o")
        .arg(&exe)
        .arg(&program.source)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run gcc ({e}): the differential suite needs gcc and static glibc (scripts/setup installs them)")
        })?;
    if !out.status.success() {
        return Err(format!(
            "gcc failed on {}:\n{}",
            program.source.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(exe)
}

/// Reads a pipe to its end on a thread; the bytes read so far are always available.
struct Collector {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&bytes);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 16384];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
        Collector { bytes, done }
    }

    /// Waits until `deadline` for the end of the pipe; says whether it came.
    fn finish(&self, deadline: Instant) -> bool {
        let wait = deadline.saturating_duration_since(Instant::now());
        self.done.recv_timeout(wait).is_ok()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// What a finished run printed and how it ended.
struct Run {
    ended: Ended,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

fn timeout() -> Duration {
    let secs = std::env::var("MOAT_DIFFERENTIAL_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Runs `cmd` with stdin = /dev/null and stdout, stderr captured, in a process group of its
/// own, so that a run that hangs (or leaves something behind holding its stdout) is killed
/// whole and reported rather than hanging the suite.
fn run(what: &str, cmd: &mut Command) -> Result<Run, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the {what} run {cmd:?}: {e}"))?;
    let group = rustix::process::Pid::from_child(&child);
    let kill_group = || {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    };
    let stdout = Collector::start(child.stdout.take().unwrap());
    let stderr = Collector::start(child.stderr.take().unwrap());
    let limit = timeout();
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                kill_group();
                return Err(format!("waiting for the {what} run: {e}"));
            }
        }
    };
    let Some(status) = status else {
        kill_group();
        let _ = child.wait();
        let grace = Instant::now() + Duration::from_secs(2);
        stdout.finish(grace);
        stderr.finish(grace);
        return Err(format!(
            "the {what} run did not end within {}s and was killed\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
            limit.as_secs(),
            stdout.text(),
            stderr.text()
        ));
    };
    // The process ended; its pipes close when the last process holding them does.
    let stdout_closed = stdout.finish(deadline);
    let stderr_closed = stderr.finish(deadline);
    if !(stdout_closed && stderr_closed) {
        kill_group();
        return Err(format!(
            "the {what} run ended ({}) but something it started kept its stdout or stderr open for {}s\n--- stdout:\n{}\n--- stderr:\n{}",
            Ended::from_status(status),
            limit.as_secs(),
            stdout.text(),
            stderr.text()
        ));
    }
    let take = |c: &Collector| std::mem::take(&mut *c.bytes.lock().unwrap());
    Ok(Run {
        ended: Ended::from_status(status),
        stdout: take(&stdout),
        stderr: take(&stderr),
    })
}

fn moat() -> Command {
    match std::env::var_os("MOAT_DIFFERENTIAL_BIN") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_moat")),
    }
}

/// An empty directory for one run to start in (programs that make files make them there).
fn workdir(out_dir: &Path, name: &str, tag: &str) -> Result<PathBuf, Failed> {
    let dir = out_dir.join(format!("{name}.{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Set up a fresh network namespace as the sandbox's network is, then run the program
/// (`$0`, with its arguments): `lo` up, and every group admitted to ping sockets (the
/// setting is per namespace; a host's default, "1 0", admits nobody).
const PING_NETNS: &str = "ip link set lo up && \
    echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && exec \"$0\" \"$@\"";

/// The command of the native run.
fn native_command(program: &Program, exe: &Path) -> Command {
    if !program.native_netns {
        let mut c = Command::new(exe);
        c.args(&program.args);
        return c;
    }
    let mut c = Command::new("unshare");
    c.args(["--net", "--", "sh", "-c", PING_NETNS])
        .arg(exe)
        .args(&program.args);
    c
}

fn differential(program: &Program, include: &Path, out_dir: &Path) -> Result<(), Failed> {
    let exe = build(program, include, out_dir)?;
    if program.native_netns && !rustix::process::geteuid().is_root() {
        eprintln!(
            "SKIP {}: its native run needs a network namespace of its own (root)",
            program.name
        );
        return Ok(());
    }
    let native = run(
        "native",
        native_command(program, &exe).current_dir(workdir(out_dir, &program.name, "native")?),
    )?;
    if native.ended != program.expect {
        return Err(format!(
            "the program itself is wrong: natively it ended with {}, its header expects {}\n--- stdout:\n{}\n--- stderr:\n{}",
            native.ended,
            program.expect,
            native.stdout(),
            native.stderr()
        )
        .into());
    }
    // The default network, then any other the program asks for.
    let networks = std::iter::once(None).chain(program.networks.iter().map(Some));
    for network in networks {
        let tag = network.map_or("moat".to_string(), |n| format!("moat-{n}"));
        let sandboxed = run(
            "moat",
            moat()
                .arg("do")
                .args(common::platform_args())
                .args(network.map(|n| format!("--network={n}")))
                .arg("--")
                .arg(&exe)
                .args(&program.args)
                .current_dir(workdir(out_dir, &program.name, &tag)?),
        )?;
        let want = native.ended.under_moat();
        if sandboxed.ended != want || sandboxed.stdout != native.stdout {
            let what = match (sandboxed.ended == want, sandboxed.stdout == native.stdout) {
                (false, false) => "status and stdout differ",
                (false, true) => "status differs",
                _ => "stdout differs",
            };
            let network = network.map_or(String::new(), |n| format!(" (--network={n})"));
            return Err(format!(
                "native and Moat{network} differ: {what}\n\
                 native: {} (so `moat do` should end with {want})\n--- native stdout:\n{}\n\
                 moat:   {}\n--- moat stdout:\n{}\n--- moat stderr:\n{}",
                native.ended,
                native.stdout(),
                sandboxed.ended,
                sandboxed.stdout(),
                sandboxed.stderr()
            )
            .into());
        }
    }
    Ok(())
}

/// The first system call `moat syscalls --unimplemented` names, as (number, name).
fn unimplemented_syscall() -> Result<(String, String), Failed> {
    let out = run(
        "`moat syscalls --unimplemented`",
        moat().args(["syscalls", "--unimplemented"]),
    )?;
    if out.ended != Ended::Exit(0) {
        return Err(format!(
            "`moat syscalls --unimplemented` ended with {}\n{}",
            out.ended,
            out.stderr()
        )
        .into());
    }
    let text = out.stdout();
    let first = text
        .lines()
        .next()
        .ok_or("`moat syscalls --unimplemented` names no system call")?;
    match first.split_whitespace().collect::<Vec<_>>()[..] {
        [nr, name] if nr.parse::<u32>().is_ok() => Ok((nr.to_string(), name.to_string())),
        _ => {
            Err(format!("`moat syscalls --unimplemented` printed {first:?}, want `NR NAME`").into())
        }
    }
}

/// How many lines of `log` say that `name` is unimplemented (`name` as a whole word).
fn log_mentions(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("unimplemented"))
        .filter(|line| {
            line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == name)
        })
        .count()
}

fn sandbox_only(program: &Program, include: &Path, out_dir: &Path) -> Result<(), Failed> {
    let exe = build(program, include, out_dir)?;
    let (nr, name) = unimplemented_syscall()?;
    let log = out_dir.join(format!("{}.log", program.name));
    let _ = std::fs::remove_file(&log);
    let out = run(
        "moat",
        moat()
            .arg("do")
            .args(common::platform_args())
            .arg("--debug-log")
            .arg(&log)
            .arg("--")
            .arg(&exe)
            .arg(&nr)
            .args(&program.args)
            .current_dir(workdir(out_dir, &program.name, "moat")?),
    )?;
    let want = program.expect.under_moat();
    if out.ended != want {
        return Err(format!(
            "under Moat it ended with {}, expected {want} (argv[1] = {nr}, {name})\n--- stdout:\n{}\n--- stderr:\n{}",
            out.ended,
            out.stdout(),
            out.stderr()
        )
        .into());
    }
    // The program calls the unimplemented syscall twice; the log names it exactly once.
    let text = std::fs::read_to_string(&log)
        .map_err(|e| format!("the debug log {}: {e}", log.display()))?;
    let mentions = log_mentions(&text, &name);
    if mentions != 1 {
        return Err(format!(
            "the debug log should name unimplemented syscall {name} ({nr}) on exactly one line, found {mentions}:\n{text}"
        )
        .into());
    }
    Ok(())
}

/// The way one kind of program is tested: `differential` or `sandbox_only`.
type Test = fn(&Program, &Path, &Path) -> Result<(), Failed>;

/// One trial per program of `dir`, named `kind::NAME`, built into `out_dir/kind`.
fn trials(kind: &str, test: Test, dir: &Path, include: &Path, out_dir: &Path) -> Vec<Trial> {
    let out_dir = out_dir.join(kind);
    std::fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("{}: {e}", out_dir.display()));
    programs(dir)
        .into_iter()
        .map(|program| match program {
            Ok(program) => {
                let (include, out_dir) = (include.to_path_buf(), out_dir.clone());
                Trial::test(format!("{kind}::{}", program.name), move || {
                    test(&program, &include, &out_dir)
                })
            }
            Err((name, why)) => Trial::test(format!("{kind}::{name}"), move || Err(why.into())),
        })
        .collect()
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/programs");
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("programs");
    let mut all = trials("differential", differential, &root, &root, &out_dir);
    let native_count = all.len();
    all.extend(trials(
        "sandbox",
        sandbox_only,
        &root.join("sandbox"),
        &root,
        &out_dir,
    ));
    all.extend(self_tests());
    assert!(
        native_count > 0 && all.len() > native_count,
        "no test programs found in {} and {}/sandbox",
        root.display(),
        root.display()
    );
    libtest_mimic::run(&args, all).exit();
}

/// Checks of the harness's own parsing, which need neither gcc nor Moat.
fn self_tests() -> Vec<Trial> {
    fn check(ok: bool, what: &str) -> Result<(), Failed> {
        if ok {
            Ok(())
        } else {
            Err(what.into())
        }
    }
    vec![
        Trial::test("harness::headers", || {
            let (e, a, n, ns) = parse_headers(
                "// expect: signal 11\n// args: a  b\n// also-network: host\n// native-netns: ping\n#include <x.h>\n// args: late\n",
            )?;
            check(
                e == Ended::Signal(11) && a == ["a", "b"] && n == ["host"] && ns,
                "signal header, args, networks and namespace",
            )?;
            let (e, a, n, ns) = parse_headers("// A comment only.\nint main;\n")?;
            check(
                e == Ended::Exit(0) && a.is_empty() && n.is_empty() && !ns,
                "defaults",
            )?;
            check(
                parse_headers("// native-netns: raw\n").is_err(),
                "unknown namespace set-up",
            )?;
            check(
                parse_headers("// expect: exit 42\n")?.0 == Ended::Exit(42),
                "exit header",
            )?;
            check(
                parse_headers("// expect: exit 300\n").is_err(),
                "exit out of range",
            )?;
            check(
                parse_headers("// expect: crash\n").is_err(),
                "unknown expectation",
            )?;
            check(parse_headers("// expect: signal 0\n").is_err(), "signal 0")
        }),
        Trial::test("harness::statuses", || {
            check(
                Ended::Signal(11).under_moat() == Ended::Exit(139),
                "signal 11 is exit 139",
            )?;
            check(
                Ended::Exit(42).under_moat() == Ended::Exit(42),
                "exits are kept",
            )
        }),
        Trial::test("harness::log_mentions", || {
            let log = "WARN unimplemented syscall pipe (22): returning ENOSYS\n\
                       WARN unimplemented syscall pipe2 (293): returning ENOSYS\n\
                       INFO pipe opened\n";
            check(log_mentions(log, "pipe") == 1, "pipe once, not pipe2")?;
            check(log_mentions(log, "pipe2") == 1, "pipe2 once")?;
            check(log_mentions(log, "select") == 0, "select never")
        }),
    ]
}
