//! Everyday programs run unchanged under `moat do`, confined: each exercises kernel paths (and
//! so host calls of the kernel process, which its seccomp allowlist must permit) that the
//! differential C programs may not. A program the machine lacks is skipped with a line saying
//! so; one that is present must work.

use std::path::Path;
use std::process::Command;

/// Run `script` with /bin/sh in the sandbox; its stdout must contain `expect`.
fn check(needs: &str, script: &str, expect: &str) {
    if !Path::new(needs).exists() {
        eprintln!("skipped: {needs} is not installed");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["do", "/bin/sh", "-c", script])
        .output()
        .expect("run moat");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(expect),
        "{script}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn filesystem_and_process_tools() {
    check("/bin/df", "df -h /", "Filesystem");
    check("/usr/bin/stat", "stat -f / | head -1", "File:");
    check("/bin/ps", "sleep 1 & ps -ef", "sleep 1");
    check("/usr/bin/free", "free -m", "Mem:");
    check("/usr/bin/seq", "seq 1000 | sort -rn | head -1", "1000");
}

#[test]
fn interpreters_and_databases() {
    check("/usr/bin/perl", "perl -e 'print 6*7'", "42");
    check(
        "/usr/bin/sqlite3",
        "sqlite3 /tmp/t.db 'create table t(x); insert into t values (41); select x+1 from t'",
        "42",
    );
    check(
        "/usr/bin/python3",
        "python3 -c 'import socket, threading, json; a, b = socket.socketpair(); \
         threading.Thread(target=lambda: a.sendall(json.dumps([42]).encode())).start(); \
         print(json.loads(b.recv(64))[0])'",
        "42",
    );
}

#[test]
fn version_control_and_crypto() {
    check(
        "/usr/bin/git",
        "cd /tmp && git init -q r && cd r && echo hi > f && git add f && \
         git -c user.name=m -c user.email=m@m commit -qm one && git log --oneline | wc -l",
        "1",
    );
    check(
        "/usr/bin/openssl",
        "printf abc | openssl dgst -sha256",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
}

/// Issue "Processes"' own examples: background jobs in bash, a C compiler run inside the
/// sandbox (cc1, as, ld: fork, exec, pipes, temporary files), and Python's threads,
/// subprocesses, alarms and process pools.
#[test]
fn shells_compilers_and_python_processes() {
    check(
        "/bin/bash",
        "bash -c 'for i in 1 2 3; do echo $i & done; wait' | sort | tr '\\n' ' '",
        "1 2 3 ",
    );
    check(
        "/usr/bin/gcc",
        r#"cd /tmp && printf '#include <stdio.h>\nint main(void){puts("compiled inside");return 0;}\n' > hello.c && gcc -O2 -o hello hello.c && ./hello"#,
        "compiled inside",
    );
    check(
        "/usr/bin/python3",
        r#"python3 - <<'PY'
import multiprocessing, signal, subprocess, threading, time

def square(x):
    return x * x

seen = []
threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
fired = []
signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
signal.alarm(1)
time.sleep(3)
out = subprocess.run(["sh", "-c", "echo $((6*7))"], capture_output=True, text=True).stdout
with multiprocessing.Pool(4) as pool:
    total = sum(pool.map(square, range(100)))
q = multiprocessing.Queue()
p = multiprocessing.Process(target=q.put, args=(7,))
p.start()
got = q.get()
p.join()
print("python:", sorted(seen) == list(range(8)), fired == [signal.SIGALRM], out.strip(), total, got, p.exitcode)
PY"#,
        "python: True True 42 328350 7 0",
    );
}
