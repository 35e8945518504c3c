//! Servers and clients talking TCP over the sandbox's own loopback, inside one `moat do`:
//! Python's `http.server` serves a file that a Python client fetches (over IPv4, and over
//! IPv6 with curl when the machine has it). Nothing here touches the host's network: the
//! sandbox's ports are its own, so fixed port numbers cannot collide with the host's.

use std::path::{Path, PathBuf};
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

/// A host directory holding the file to serve, and its SHA-256.
fn site(name: &str) -> (PathBuf, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("inet")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 300 KB of varied bytes: larger than one socket buffer, so the server's writes wait.
    let mut data = Vec::with_capacity(300_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push((x >> 24) as u8);
    }
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    let sum = Command::new("sha256sum")
        .arg(dir.join("data.bin"))
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    (dir, sum)
}

/// Run `script` with /bin/sh inside one sandbox; it must succeed. Returns its stdout.
fn sandboxed(script: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["do", "/bin/sh", "-c", script])
        .output()
        .expect("run moat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A Python client: fetch `url` (retrying while the server starts) and print the body's
/// length and SHA-256.
const CLIENT: &str = r"
import hashlib, sys, time, urllib.request
for _ in range(400):
    try:
        body = urllib.request.urlopen(sys.argv[1], timeout=20).read()
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit('the server never answered')
print(len(body), hashlib.sha256(body).hexdigest())
";

#[test]
fn python_http_server_and_client() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    let (dir, sum) = site("http");
    std::fs::write(dir.join("client.py"), CLIENT).unwrap();
    let script = format!(
        "{PYTHON} -m http.server --bind 127.0.0.1 --directory {d} 8000 >/dev/null 2>&1 & s=$!; \
         {PYTHON} {d}/client.py http://127.0.0.1:8000/data.bin && \
         {PYTHON} {d}/client.py http://127.0.0.1:8000/data.bin; r=$?; kill $s; exit $r",
        d = dir.display()
    );
    let out = sandboxed(&script);
    let want = format!("300000 {sum}\n");
    assert_eq!(out, want.repeat(2), "two fetches of the file");
}

#[test]
fn curl_over_ipv6() {
    if !Path::new(PYTHON).exists() || !Path::new("/usr/bin/curl").exists() {
        eprintln!("skipped: needs {PYTHON} and /usr/bin/curl");
        return;
    }
    let (dir, sum) = site("curl6");
    let script = format!(
        "{PYTHON} -m http.server --bind ::1 --directory {d} 8080 >/dev/null 2>&1 & s=$!; \
         for i in $(seq 100); do curl -sf -g -o /dev/null 'http://[::1]:8080/' && break; sleep 0.1; done; \
         curl -sS -g 'http://[::1]:8080/data.bin' | sha256sum; \
         curl -s -o /dev/null -w '%{{http_code}}\\n' -g 'http://[::1]:8080/missing'; kill $s",
        d = dir.display()
    );
    let out = sandboxed(&script);
    assert_eq!(out, format!("{sum}  -\n404\n"));
}
