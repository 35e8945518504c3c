//! `--network=sandbox` through a veth: each test makes a network namespace of its own with a
//! veth pair (the host side, 10.X.Y.1/24, stays in the test's namespace; the sandbox side,
//! 10.X.Y.2/24, goes into the new one) and runs `ip netns exec NS moat do ...`, so that the
//! sandbox takes the interface over. Then:
//! - a server inside the sandbox, listening on 0.0.0.0, serves the host through the veth and
//!   a client inside the sandbox through loopback, and the host's `ping` gets answers;
//! - a client inside reaches a TCP server of the test's (on the host side), and 64 MiB go
//!   each way with checksums (the throughput is printed: docs/BENCHMARKS.md);
//! - UDP echoes both ways;
//! - with `--network=none` the same client finds the network unreachable, as a Linux process
//!   in a namespace with only `lo` does;
//! - programs inside see the interface (`ip addr`, `/proc/net/dev`) with its address and MAC,
//!   and the namespace has its address and default route back when the sandbox ends.
//!
//! Needs root (network namespaces, veths), iproute2 and util-linux; skipped with a line
//! otherwise. The namespaces and links are removed even when a test fails. Last, a sandbox
//! must leave the host's `ip netns` namespace files alone.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{have, platform_args, text, Scratch, MOAT};

const PYTHON: &str = "/usr/bin/python3";

/// A network namespace with the sandbox's end of a veth pair in it; removed when dropped.
///
/// The namespace is held by a process of its own (`unshare --net sleep`) and entered with
/// `nsenter`, not named with `ip netns add`: a bind-mounted namespace file under
/// `/run/netns` is at the mercy of every other program on the machine that detaches mounts
/// (Moat's own gofer did, before its trees were made private; other test runs may share the
/// machine).
struct Veth {
    holder: Child,
    /// `/proc/PID/ns/net` of the holder.
    ns: String,
    host_if: String,
    sandbox_if: String,
    net: (u8, u8),
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Veth {
    /// A fresh pair, or `None` (said on stderr) when this machine cannot make one.
    fn new() -> Option<Veth> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP: not root: network namespaces and veths need it");
            return None;
        }
        if !have("ip") || !have("nsenter") || !have("unshare") || !Path::new(PYTHON).exists() {
            eprintln!(
                "SKIP: iproute2, util-linux or {PYTHON} missing (scripts/setup installs them)"
            );
            return None;
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as usize;
        // Names and a subnet unique to this run (other test runs may share the machine).
        let tag = format!("{}{n}", pid % 100_000);
        let net = ((64 + (pid / 251 + n * 7) % 150) as u8, (pid % 251) as u8);
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net");
        let ns = format!("/proc/{}/ns/net", holder.id());
        // Wait until the holder is in its namespace.
        let ours = std::fs::read_link("/proc/self/ns/net").ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&ns).ok() == ours && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let v = Veth {
            holder,
            ns,
            host_if: format!("mvh{tag}"),
            sandbox_if: format!("mvs{tag}"),
            net,
        };
        let (a, b) = net;
        let holder_pid = v.holder.id().to_string();
        ip(&[
            "link",
            "add",
            &v.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &v.sandbox_if,
        ]);
        ip(&["link", "set", &v.sandbox_if, "netns", &holder_pid]);
        ip(&[
            "addr",
            "add",
            &format!("10.{a}.{b}.1/24"),
            "dev",
            &v.host_if,
        ]);
        ip(&["link", "set", &v.host_if, "up"]);
        for step in [
            vec![
                "addr".to_string(),
                "add".into(),
                format!("10.{a}.{b}.2/24"),
                "dev".into(),
                v.sandbox_if.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                v.sandbox_if.clone(),
                "up".into(),
            ],
            vec!["link".into(), "set".into(), "lo".into(), "up".into()],
            vec![
                "route".into(),
                "add".into(),
                "default".into(),
                "via".into(),
                format!("10.{a}.{b}.1"),
            ],
        ] {
            let out = v.inside("ip").args(&step).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {} (in the namespace): {}",
                step.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(v)
    }

    fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 1)
    }

    fn sandbox_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net.0, self.net.1, 2)
    }

    /// `program` to run in the namespace.
    fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns)).arg("--").arg(program);
        c
    }

    /// `moat do [options] /usr/bin/python3 SCRIPT ARGS...` in the namespace.
    fn moat(&self, options: &[&str], script: &Path, args: &[String]) -> Command {
        let mut c = self.inside(MOAT);
        c.arg("do")
            .args(platform_args())
            .args(options)
            .arg(PYTHON)
            .arg(script)
            .args(args);
        c
    }

    /// The same without Moat: the native reference.
    fn native(&self, script: &Path, args: &[String]) -> Command {
        let mut c = self.inside(PYTHON);
        c.arg(script).args(args);
        c
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Wait for `child` at most `limit`, killing it past that; its output.
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

fn check(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Bytes that are not all alike (so a checksum catches a misplaced segment).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The sandbox's server: listens on 0.0.0.0:PORT, says so, then for each of COUNT
/// connections sends the file's bytes; meanwhile a thread of its own fetches once through
/// loopback (a listener on the wildcard takes both).
const SERVER: &str = r#"
import hashlib, socket, sys, threading
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = open(path, "rb").read()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(8)
print("listening", flush=True)
def local():
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    got = b""
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        got += b
    print("loopback", len(got), hashlib.sha256(got).hexdigest(), flush=True)
t = threading.Thread(target=local)
t.start()
for _ in range(count):
    c, peer = s.accept()
    c.sendall(data)
    c.close()
t.join()
"#;

#[test]
fn a_server_inside_serves_the_host_and_loopback_and_answers_ping() {
    let Some(veth) = Veth::new() else { return };
    let dir = Scratch::new("netext-server");
    let script = dir.path().join("server.py");
    std::fs::write(&script, SERVER).unwrap();
    let data = pattern(3 << 20, 7);
    std::fs::write(dir.path().join("data.bin"), &data).unwrap();
    let port = 8000 + (std::process::id() % 1000) as u16;
    let mut server = veth
        .moat(
            &[],
            &script,
            &[
                port.to_string(),
                "3".into(),
                dir.path().join("data.bin").display().to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sandbox");
    // Wait for "listening".
    let mut stdout = server.stdout.take().unwrap();
    let mut first = [0u8; 10];
    let ready = stdout.read_exact(&mut first).is_ok() && &first == b"listening\n";
    let fetch = || -> std::io::Result<Vec<u8>> {
        let mut c = std::net::TcpStream::connect_timeout(
            &(veth.sandbox_ip(), port).into(),
            Duration::from_secs(10),
        )?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut got = Vec::new();
        c.read_to_end(&mut got)?;
        Ok(got)
    };
    let ping = (ready && have("ping")).then(|| {
        Command::new("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "2"])
            .arg(veth.sandbox_ip().to_string())
            .output()
            .expect("ping")
    });
    let first_fetch = ready.then(fetch);
    let second_fetch = ready.then(fetch);
    let mut out = finish(server, Duration::from_secs(60));
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    out.stdout = [first.to_vec(), rest].concat();
    let printed = check(&out, "the sandbox's server");
    assert!(ready, "the server never listened: {printed}");
    let want = format!("loopback {} {}", data.len(), sha256(&data));
    assert!(printed.contains(&want), "{printed}");
    for got in [first_fetch, second_fetch] {
        let got = got.unwrap().expect("fetch through the veth");
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the bytes through the veth differ");
    }
    match ping {
        Some(p) => assert!(
            p.status.success(),
            "ping {}: {}",
            veth.sandbox_ip(),
            String::from_utf8_lossy(&p.stdout)
        ),
        None if ready => {
            eprintln!("SKIP: ping is not installed (scripts/setup installs iputils-ping)");
        }
        None => {}
    }
}

/// The sandbox's client: connects to HOST:PORT, receives LEN bytes and prints their
/// checksum, then sends LEN bytes of its own and prints theirs; or prints the errno of a
/// failed connect.
const CLIENT: &str = r#"
import hashlib, os, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    c = socket.create_connection((host, port), timeout=20)
except OSError as e:
    print("error", e.errno, flush=True)
    sys.exit(0)
h = hashlib.sha256()
got = 0
t = time.monotonic()
while got < n:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
    got += len(b)
down = time.monotonic() - t
print("received", got, h.hexdigest(), flush=True)
data = os.urandom(n)
t = time.monotonic()
c.sendall(data)
c.shutdown(socket.SHUT_WR)
c.recv(1)
up = time.monotonic() - t
print("sent", len(data), hashlib.sha256(data).hexdigest(), flush=True)
print("seconds %.3f %.3f" % (down, up), flush=True)
"#;

/// Serve one connection: send `data`, then read what comes back until the client's FIN,
/// and return it.
fn serve_once(listener: TcpListener, data: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let Ok((mut c, _)) = listener.accept() else {
            return Vec::new();
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = c.write_all(&data);
        let mut back = Vec::new();
        let _ = c.read_to_end(&mut back);
        back
    })
}

/// Run the client (with Moat, or natively) against a server of the test's; returns what it
/// printed and what it sent.
fn client_run(veth: &Veth, moat: Option<&[&str]>, len: usize) -> (String, Vec<u8>, Vec<u8>) {
    let dir = Scratch::new("netext-client");
    let script = dir.path().join("client.py");
    std::fs::write(&script, CLIENT).unwrap();
    let listener = TcpListener::bind((veth.host_ip(), 0)).expect("bind on the veth");
    let port = listener.local_addr().unwrap().port();
    let data = pattern(len, 11);
    let server = serve_once(listener, data.clone());
    let args = [
        veth.host_ip().to_string(),
        port.to_string(),
        len.to_string(),
    ];
    let cmd = match moat {
        Some(options) => veth.moat(options, &script, &args),
        None => veth.native(&script, &args),
    };
    let mut cmd = cmd;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(240));
    let printed = check(&out, "the client");
    if printed.starts_with("error") {
        // Nothing connected: let the server's accept go.
        let _ = std::net::TcpStream::connect((veth.host_ip(), port));
    }
    let back = server.join().unwrap();
    (printed, data, back)
}

#[test]
fn a_client_inside_reaches_the_host_with_64_mib_each_way() {
    let Some(veth) = Veth::new() else { return };
    let len = 64 << 20;
    let (printed, data, back) = client_run(&veth, Some(&[]), len);
    assert!(
        printed.contains(&format!("received {len} {}", sha256(&data))),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("sent {len} {}", sha256(&back))),
        "{printed}"
    );
    assert_eq!(back.len(), len);
    let mib = 64.0;
    if let Some(line) = printed.lines().find(|l| l.starts_with("seconds")) {
        let t: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        if let [down, up] = t[..] {
            eprintln!(
                "moat over the veth: host->sandbox {:.0} MiB/s, sandbox->host {:.0} MiB/s",
                mib / down,
                mib / up
            );
        }
    }
}

#[test]
fn network_none_leaves_the_host_unreachable_as_linux_does() {
    let Some(veth) = Veth::new() else { return };
    let (printed, _, _) = client_run(&veth, Some(&["--network=none"]), 1);
    // A Linux process whose namespace has only `lo` gets ENETUNREACH at once.
    assert_eq!(
        printed.trim(),
        format!("error {}", libc::ENETUNREACH),
        "{printed}"
    );
    // The interface is untouched: the same client natively still gets through.
    let (printed, _, _) = client_run(&veth, None, 1000);
    assert!(printed.contains("received 1000"), "{printed}");
}

/// Ping sockets: echo requests to the host's side of the veth (out of the interface), to
/// the sandbox's own address and to 127.0.0.1 (both answered by the stack itself), each
/// reply checked (type, identifier = the socket's, sequence, payload, checksum, source);
/// then a connected socket with poll, and a request near the MTU.
const PING4: &str = r#"
import select, socket, struct, sys
host, own = sys.argv[1], sys.argv[2]
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s
def echo(s, dst, seq, payload, connected=False):
    req = struct.pack("!BBHHH", 8, 0, 0x1234, 0xffff, seq) + payload
    if connected:
        s.send(req)
        r, _, _ = select.select([s], [], [], 10)
        assert r, "no reply"
    else:
        s.sendto(req, (dst, 0))
    d, a = s.recvfrom(4000)
    t, c, _, ident, sq = struct.unpack("!BBHHH", d[:8])
    return "%d %d %s %d %s %s %s" % (t, c, ident == s.getsockname()[1], sq,
        d[8:] == payload, csum(d) == 0xffff, a == (dst, 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(10)
for i, (name, dst) in enumerate([("host", host), ("own", own), ("lo", "127.0.0.1")]):
    print(name, echo(s, dst, i + 1, bytes(range(i, i + 40))), flush=True)
print("big", echo(s, host, 9, bytes(1400)), flush=True)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
c.connect((host, 0))
print("connected", echo(c, host, 10, b"connected", True), flush=True)
"#;

#[test]
fn ping_sockets_reach_the_host_and_the_sandbox_itself() {
    let Some(veth) = Veth::new() else { return };
    let dir = Scratch::new("netext-ping");
    let script = dir.path().join("ping.py");
    std::fs::write(&script, PING4).unwrap();
    let args = [veth.host_ip().to_string(), veth.sandbox_ip().to_string()];
    // Natively first (Moat takes the addresses over): in the namespace, with every group
    // admitted to ping sockets, as the sandbox has it.
    let native = veth
        .inside("sh")
        .args([
            "-c",
            "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && exec \"$0\" \"$@\"",
            PYTHON,
        ])
        .arg(&script)
        .args(&args)
        .output()
        .expect("native ping script");
    let want = check(&native, "the native ping script");
    assert_eq!(
        want,
        "host 0 0 True 1 True True True\nown 0 0 True 2 True True True\n\
         lo 0 0 True 3 True True True\nbig 0 0 True 9 True True True\n\
         connected 0 0 True 10 True True True\n"
    );
    let out = finish(
        veth.moat(&[], &script, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moat"),
        Duration::from_secs(60),
    );
    assert_eq!(check(&out, "the ping script in Moat"), want);
}

/// UDP both ways: the sandbox sends to the host's echo socket and prints the echo; then
/// echoes one datagram the host sends to its port.
const UDP: &str = r#"
import socket, sys
host, port, mine = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(10)
c.sendto(b"ping from the sandbox", (host, port))
data, peer = c.recvfrom(1000)
print("echo", data.decode(), peer[0] == host, flush=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", mine))
s.settimeout(20)
print("bound", flush=True)
data, peer = s.recvfrom(1000)
s.sendto(data.upper(), peer)
print("echoed", data.decode(), flush=True)
"#;

#[test]
fn udp_echoes_both_ways() {
    let Some(veth) = Veth::new() else { return };
    let dir = Scratch::new("netext-udp");
    let script = dir.path().join("udp.py");
    std::fs::write(&script, UDP).unwrap();
    let echo = UdpSocket::bind((veth.host_ip(), 0)).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = echo.local_addr().unwrap().port();
    let mine = 9000 + (std::process::id() % 1000) as u16;
    let child = veth
        .moat(
            &[],
            &script,
            &[
                veth.host_ip().to_string(),
                port.to_string(),
                mine.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 1000];
    let (n, from) = echo.recv_from(&mut buf).expect("the sandbox's datagram");
    assert_eq!(&buf[..n], b"ping from the sandbox");
    assert_eq!(from.ip(), veth.sandbox_ip());
    echo.send_to(&buf[..n], from).unwrap();
    // Until the sandbox's socket is bound, datagrams to it are refused: try a few times.
    let asker = UdpSocket::bind((veth.host_ip(), 0)).unwrap();
    asker
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answer = None;
    for _ in 0..60 {
        let _ = asker.send_to(b"hello sandbox", (veth.sandbox_ip(), mine));
        if let Ok((n, _)) = asker.recv_from(&mut buf) {
            answer = Some(buf[..n].to_vec());
            break;
        }
    }
    let out = finish(child, Duration::from_secs(60));
    let printed = check(&out, "the UDP program");
    assert!(
        printed.contains("echo ping from the sandbox True"),
        "{printed}"
    );
    assert_eq!(answer.as_deref(), Some(&b"HELLO SANDBOX"[..]), "{printed}");
    assert!(printed.contains("echoed hello sandbox"), "{printed}");
}

#[test]
fn programs_inside_see_the_interface() {
    let Some(veth) = Veth::new() else { return };
    let sandbox_if = veth.sandbox_if.clone();
    let link = veth
        .inside("ip")
        .args(["-o", "link", "show", "dev", &sandbox_if])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).into_owned();
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("the veth's MAC")
        .to_string();
    let out = veth
        .inside(MOAT)
        .arg("do")
        .args(platform_args())
        .args([
            "/bin/sh",
            "-c",
            "cat /proc/net/dev /proc/net/route; ip -4 addr; ip link; ip route",
        ])
        .output()
        .unwrap();
    let printed = check(&out, "ip addr in the sandbox");
    assert!(printed.contains(&format!("link/ether {mac}")), "{printed}");
    let addr = format!("inet {}/24", veth.sandbox_ip());
    assert!(printed.contains(&addr), "{printed}");
    assert!(printed.contains(&format!("{sandbox_if}:")), "{printed}");
    assert!(printed.contains("link/ether"), "{printed}");
    assert!(
        printed.contains(&format!("default via {}", veth.host_ip())),
        "{printed}"
    );
    // While the sandbox ran, the namespace's stack did not have the address; now that it
    // ended, the address and the default route are the namespace's again.
    let after = veth
        .inside("sh")
        .args(["-c", "ip -4 addr; ip route"])
        .output()
        .unwrap();
    let after = check(&after, "ip addr after the sandbox");
    assert!(after.contains(&addr), "{after}");
    assert!(
        after.contains(&format!("default via {}", veth.host_ip())),
        "{after}"
    );
}

/// The gofer detaches the host's kernel filesystems from its copy of the host's tree; that
/// must not detach the host's own. In a mount namespace of the test's own (so that nothing
/// else on the machine can interfere), a network namespace file is bind-mounted under a
/// shared tmpfs, as `ip netns` does under `/run/netns`; after `moat do` it must still work.
#[test]
fn a_sandbox_leaves_the_hosts_namespace_files_alone() {
    if !rustix::process::geteuid().is_root() || !have("unshare") || !have("nsenter") {
        eprintln!("SKIP: needs root and util-linux");
        return;
    }
    const SCRIPT: &str = r#"
set -e
d=$(mktemp -d)
mount -t tmpfs moat-test "$d"
mount --make-shared "$d"
touch "$d/ns"
unshare --net sleep 60 & p=$!
sleep 0.2
mount --bind /proc/$p/ns/net "$d/ns"
"$@" /bin/true
if nsenter --net="$d/ns" true 2>/dev/null; then echo kept; else echo detached; fi
kill $p
"#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
            MOAT,
            "do",
        ])
        .args(platform_args())
        .output()
        .unwrap();
    let printed = check(&out, "the namespace file test");
    assert_eq!(
        printed.trim(),
        "kept",
        "the sandbox detached the host's nsfs mount"
    );
}

/// An OCI container whose spec names a network namespace takes that namespace's interface:
/// busybox's `wget` inside fetches from a server on the host side of the veth.
#[test]
fn an_oci_container_takes_its_spec_s_network_namespace() {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: busybox-static is not installed");
        return;
    }
    let Some(veth) = Veth::new() else { return };
    let listener = TcpListener::bind((veth.host_ip(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let Ok((mut c, _)) = listener.accept() else {
            return;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhello oci\n");
    });
    let s = Scratch::new("netext-oci");
    let url = format!("http://{}:{port}/", veth.host_ip());
    let b = common::bundle(&s.path().join("b"), &["wget", "-q", "-O", "-", &url], false);
    common::edit_config(&b, |c| {
        let entry = serde_json::json!({"type": "network", "path": veth.ns});
        let list = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        list.retain(|n| n["type"] != "network");
        list.push(entry);
    });
    let out = Command::new(MOAT)
        .arg("--root")
        .arg(s.path().join("root"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg(format!("net{}", std::process::id()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Unblock the server if nothing came.
    let _ = std::net::TcpStream::connect((veth.host_ip(), port));
    let _ = server.join();
    let printed = check(&out, "moat run");
    assert_eq!(printed, "hello oci\n");
}

/// IPv6 on the interface: the sandbox takes the global address too. The host's own namespace
/// may have IPv6 disabled, so both ends are namespaces of the test's: a peer (server and
/// client natively) and the sandbox's.
const SANDBOX6: &str = r#"
import socket, sys
peer, port, mine = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((peer, port), timeout=20)
print("client got", c.recv(100).decode(), flush=True)
p = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
p.settimeout(10)
p.sendto(b"\x80\x00\x00\x00\xff\xff\x00\x05six", (peer, 0))
d, a = p.recvfrom(100)
ours = d[4:6] == p.getsockname()[1].to_bytes(2, "big")
print("ping6 reply", d[0], d[6:].hex(), d[8:].decode(), a[0] == peer, ours, flush=True)
s = socket.socket(socket.AF_INET6)
s.bind(("::", mine))
s.listen(1)
s.settimeout(30)
print("listening", flush=True)
c, a = s.accept()
c.sendall(b"from the sandbox over IPv6")
c.close()
print("served", a[0], flush=True)
"#;

const PEER6: &str = r#"
import socket, sys
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(30)
    print("ready", flush=True)
    c, a = s.accept()
    c.sendall(b"hello over IPv6")
    c.close()
    print("peer served", a[0], flush=True)
else:
    c = socket.create_connection((addr, port), timeout=20)
    got = b""
    while True:
        b = c.recv(100)
        if not b:
            break
        got += b
    print(got.decode(), flush=True)
"#;

#[test]
fn ipv6_through_the_interface_both_ways() {
    use std::io::BufRead;
    if !rustix::process::geteuid().is_root()
        || !have("ip")
        || !have("nsenter")
        || !have("unshare")
        || !Path::new(PYTHON).exists()
    {
        eprintln!("SKIP: needs root, iproute2, util-linux and {PYTHON}");
        return;
    }
    struct Holders(Vec<Child>);
    impl Drop for Holders {
        fn drop(&mut self) {
            for h in &mut self.0 {
                let _ = h.kill();
                let _ = h.wait();
            }
        }
    }
    let hold = || {
        Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net")
    };
    let holders = Holders(vec![hold(), hold()]);
    std::thread::sleep(Duration::from_millis(200));
    let ns: Vec<String> = holders
        .0
        .iter()
        .map(|h| format!("--net=/proc/{}/ns/net", h.id()))
        .collect();
    let tag = std::process::id() % 100_000;
    let (pa, sb) = (format!("m6p{tag}"), format!("m6s{tag}"));
    let n = (std::process::id() % 0xffff) as u16;
    let (peer_ip, sandbox_ip) = (format!("fd00:{n:x}::1"), format!("fd00:{n:x}::2"));
    ip(&["link", "add", &pa, "type", "veth", "peer", "name", &sb]);
    ip(&["link", "set", &pa, "netns", &holders.0[0].id().to_string()]);
    ip(&["link", "set", &sb, "netns", &holders.0[1].id().to_string()]);
    let setup = [
        (0, format!("ip link set lo up; ip link set {pa} up; ip addr add 10.251.{}.1/24 dev {pa}; ip -6 addr add {peer_ip}/64 dev {pa} nodad", n % 250)),
        (1, format!("ip link set lo up; ip link set {sb} up; ip addr add 10.251.{}.2/24 dev {sb}; ip -6 addr add {sandbox_ip}/64 dev {sb} nodad", n % 250)),
    ];
    for (i, script) in setup {
        let out = Command::new("nsenter")
            .arg(&ns[i])
            .args(["sh", "-c", &script])
            .output()
            .unwrap();
        check(&out, &script);
    }
    // `ip -6 route` inside lists the interface's prefix route as Linux lists it in the
    // namespace (whose link-local routes stay the host's).
    let native = Command::new("nsenter")
        .arg(&ns[1])
        .args(["ip", "-6", "route", "show", "dev", &sb])
        .output()
        .unwrap();
    let prefix_route = text(&native.stdout)
        .lines()
        .find(|l| l.starts_with("fd00:"))
        .map(str::to_string)
        .expect("the namespace's prefix route");
    let inside = Command::new("nsenter")
        .arg(&ns[1])
        .arg(MOAT)
        .arg("do")
        .args(platform_args())
        .args(["ip", "-6", "route", "show", "dev", &sb])
        .output()
        .unwrap();
    assert_eq!(
        check(&inside, "ip -6 route inside"),
        format!("{prefix_route}\n")
    );
    let dir = Scratch::new("netext-v6");
    std::fs::write(dir.path().join("sandbox.py"), SANDBOX6).unwrap();
    std::fs::write(dir.path().join("peer.py"), PEER6).unwrap();
    let (port, mine) = (7000 + n % 1000, 8000 + n % 1000);
    let mut peer = Command::new("nsenter")
        .arg(&ns[0])
        .arg(PYTHON)
        .arg(dir.path().join("peer.py"))
        .args(["serve", &peer_ip, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peer_out = std::io::BufReader::new(peer.stdout.take().unwrap());
    let mut line = String::new();
    let _ = peer_out.read_line(&mut line);
    assert_eq!(line, "ready\n");
    let mut sandbox = Command::new("nsenter")
        .arg(&ns[1])
        .arg(MOAT)
        .arg("do")
        .args(platform_args())
        .arg(PYTHON)
        .arg(dir.path().join("sandbox.py"))
        .args([peer_ip.clone(), port.to_string(), mine.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sandbox_out = std::io::BufReader::new(sandbox.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.ends_with("listening\n") {
        let mut l = String::new();
        if sandbox_out.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        printed.push_str(&l);
    }
    // While the sandbox still runs: it ends after serving.
    let ping = have("ping").then(|| {
        Command::new("nsenter")
            .arg(&ns[0])
            .args(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", &sandbox_ip])
            .output()
            .unwrap()
    });
    let fetched = Command::new("nsenter")
        .arg(&ns[0])
        .arg(PYTHON)
        .arg(dir.path().join("peer.py"))
        .args(["fetch", &sandbox_ip, &mine.to_string()])
        .output()
        .unwrap();
    let mut rest = String::new();
    let _ = sandbox_out.read_to_string(&mut rest);
    let out = finish(sandbox, Duration::from_secs(60));
    check(&out, "the IPv6 sandbox");
    printed.push_str(&rest);
    let _ = peer_out.read_to_string(&mut line);
    let _ = finish(peer, Duration::from_secs(10));
    assert!(printed.contains("client got hello over IPv6"), "{printed}");
    // A ping socket inside reached the peer through the interface.
    assert!(
        printed.contains("ping6 reply 129 0005736978 six True True"),
        "{printed}"
    );
    assert!(
        line.contains(&format!("peer served {sandbox_ip}")),
        "{line}"
    );
    assert_eq!(text(&fetched.stdout), "from the sandbox over IPv6\n");
    assert!(printed.contains(&format!("served {peer_ip}")), "{printed}");
    if let Some(p) = ping {
        assert!(p.status.success(), "ping -6: {}", text(&p.stdout));
    }
}

/// `moat do --veth`: the sandbox gets an `eth0` of its own, at the end of a veth pair whose
/// other end stays in the namespace `moat do` runs in, which forwards and masquerades its
/// traffic. Run in the test's namespace (standing for a host), the sandbox reaches a server
/// beyond it (the test's own end of that namespace's veth), which sees the namespace's
/// address (masqueraded), not the sandbox's; at the end the pair and the rules are gone.
#[test]
fn veth_gives_the_sandbox_its_own_interface_with_nat() {
    let Some(veth) = Veth::new() else { return };
    if !have("iptables") {
        eprintln!("SKIP: iptables missing (scripts/setup installs it)");
        return;
    }
    let listener = TcpListener::bind((veth.host_ip(), 0)).expect("bind on the veth");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, peer) = listener.accept().expect("accept");
        c.write_all(b"hello from outside").unwrap();
        peer.ip()
    });
    let code = "import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
print(s.recv(100).decode())";
    let out = veth
        .inside(MOAT)
        .arg("do")
        .args(platform_args())
        .args(["--veth", "/bin/sh", "-c"])
        .arg(format!(
            "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route | head -1 | cut -d' ' -f1-2; {PYTHON} -c \"$0\" {} {port}",
            veth.host_ip()
        ))
        .arg(code)
        .output()
        .unwrap();
    let printed = check(&out, "moat do --veth");
    // eth0 has a /30 of 100.64.0.0/10 (which /30 depends on the front's pid).
    let (addr, rest) = printed.split_once('\n').unwrap_or_default();
    let (ip, prefix) = addr.split_once('/').unwrap_or_default();
    let ip: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    assert!(
        ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1]) && prefix == "30",
        "{printed}"
    );
    assert_eq!(rest, "default via\nhello from outside\n");
    assert_eq!(
        server.join().unwrap(),
        std::net::IpAddr::V4(veth.sandbox_ip())
    );
    // Nothing is left in the namespace: no `moat` link, no rule naming one.
    let left = veth
        .inside("sh")
        .args(["-c", "ip -o link; iptables -S; iptables -t nat -S"])
        .output()
        .unwrap();
    let left = check(&left, "the namespace after the sandbox");
    assert!(!left.contains("moat"), "{left}");
}
