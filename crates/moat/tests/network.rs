//! `--network=sandbox|none|host`: which network the sandbox's TCP and UDP sockets reach.
//! The test makes servers on the host's loopback natively; a sandbox reaches them only with
//! `--network=host` (the others find their own, empty loopback: `ECONNREFUSED`), and a
//! server inside a `--network=host` sandbox is reachable from the host. Clients and servers
//! inside are Python (installed by scripts/setup); ports are the host's ephemeral ones.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{platform_args, MOAT};

const PYTHON: &str = "/usr/bin/python3";

/// `moat do --network=MODE python3 -c CODE ARGS...`: status, stdout, stderr.
fn python_in(mode: &str, code: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(MOAT)
        .arg("do")
        .args(platform_args())
        .arg(format!("--network={mode}"))
        .args([PYTHON, "-c", code])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run moat");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP client: connect to 127.0.0.1:PORT, send a line, print what comes back, or the
/// connect error's name.
const TCP_CLIENT: &str = r"
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect(('127.0.0.1', int(sys.argv[1])))
except OSError as e:
    print('connect:', errno.errorcode.get(e.errno, e.errno))
    sys.exit(0)
s.sendall(b'ping from the sandbox\n')
data = b''
while not data.endswith(b'\n'):
    chunk = s.recv(100)
    if not chunk:
        break
    data += chunk
print('got:', data.decode().strip())
";

/// A host server on 127.0.0.1: answers each connection's line with `pong: LINE`.
fn host_tcp_server() -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on the host");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline && lines.is_empty() {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let mut stream = stream;
                    let _ = stream.write_all(format!("pong: {line}").as_bytes());
                    lines.push(line.trim().to_string());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        lines
    });
    (port, handle)
}

#[test]
fn a_host_loopback_server_is_reachable_only_with_network_host() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    let (port, server) = host_tcp_server();
    let port = port.to_string();
    for mode in ["none", "sandbox"] {
        let (ok, out, err) = python_in(mode, TCP_CLIENT, &[&port]);
        assert!(ok, "{mode}: {out}{err}");
        assert_eq!(
            out, "connect: ECONNREFUSED\n",
            "--network={mode} must not reach the host's loopback\n{err}"
        );
    }
    let (ok, out, err) = python_in("host", TCP_CLIENT, &[&port]);
    assert!(ok, "host: {out}{err}");
    assert_eq!(out, "got: pong: ping from the sandbox\n", "{err}");
    assert_eq!(server.join().unwrap(), ["ping from the sandbox"]);
}

/// A TCP server inside: bind 127.0.0.1 port 0, print the port, answer one connection.
const TCP_SERVER: &str = r"
import socket, sys
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', 0))
l.listen(4)
print(l.getsockname()[1], flush=True)
c, peer = l.accept()
line = b''
while not line.endswith(b'\n'):
    chunk = c.recv(100)
    if not chunk:
        break
    line += chunk
c.sendall(b'hello from the sandbox, ' + line)
c.close()
print('served', peer[0], c.type == socket.SOCK_STREAM, flush=True)
";

#[test]
fn a_server_inside_network_host_is_reachable_from_the_host() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    let mut child = Command::new(MOAT)
        .arg("do")
        .args(platform_args())
        .args(["--network=host", PYTHON, "-c", TCP_SERVER])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let Ok(port) = first.trim().parse::<u16>() else {
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("no port from the sandbox: {first:?}\n{err}");
    };
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect from the host");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(b"host here\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "hello from the sandbox, host here\n");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?} {rest}");
    assert_eq!(rest, "served 127.0.0.1 True\n");
}

/// UDP both ways: a datagram to the host's socket on 127.0.0.1:PORT, and its answer back to
/// the sandbox's socket.
const UDP_CLIENT: &str = r"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(20)
s.sendto(b'datagram from the sandbox', ('127.0.0.1', int(sys.argv[1])))
data, peer = s.recvfrom(100)
print(data.decode(), peer[1] == int(sys.argv[1]))
";

#[test]
fn udp_both_ways_with_network_host() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    let host = UdpSocket::bind("127.0.0.1:0").unwrap();
    host.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 100];
        let (n, from) = host
            .recv_from(&mut buf)
            .expect("a datagram from the sandbox");
        host.send_to(b"answer from the host", from).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let (ok, out, err) = python_in("host", UDP_CLIENT, &[&port]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "answer from the host True\n", "{err}");
    assert_eq!(echo.join().unwrap(), "datagram from the sandbox");
}

/// `--network=none`: the sandbox's own loopback still works (TCP between two sockets
/// inside), and nothing else is routed.
#[test]
fn network_none_has_loopback_and_nothing_else() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    let code = r"
import errno, socket
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
c.sendall(b'loop'); print(a.recv(10).decode())
try:
    socket.create_connection(('192.0.2.1', 80), timeout=5)
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
";
    let (ok, out, err) = python_in("none", code, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "loop\nENETUNREACH\n", "{err}");
}

/// With `--network=host`, programs see the host's interfaces (their sockets are the host's):
/// the interface names and indexes, and the IPv4 addresses `getifaddrs` finds, are those a
/// native run of the same program prints. The sandbox's own network shows its `lo` only.
#[test]
fn network_host_shows_the_hosts_interfaces() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    // Names and indexes (netlink links), then the IPv4 addresses through the SIOCGIFCONF
    // and SIOCGIFADDR ioctls, then the IPv6 ones from /proc/net/if_inet6.
    let code = r"
import fcntl, socket, struct
print(socket.if_nameindex())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i, name in socket.if_nameindex():
    try:
        r = fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', name.encode()))
        print(name, socket.inet_ntoa(r[20:24]))
    except OSError as e:
        print(name, e.errno)
print(sorted(l.split()[0] for l in open('/proc/net/if_inet6')))
";
    let native = Command::new(PYTHON).args(["-c", code]).output().unwrap();
    let native = String::from_utf8_lossy(&native.stdout).into_owned();
    let (ok, out, err) = python_in("host", code, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, native, "{err}");
    let (ok, out, err) = python_in("none", code, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out, "[(1, 'lo')]\nlo 127.0.0.1\n['00000000000000000000000000000001']\n",
        "{err}"
    );
}

/// Blocking calls on host sockets wait in Moat, so a signal ends them: a handler that
/// raises interrupts a blocking `accept` and a blocking `recv`; and a program killed in such
/// a wait by a signal sent to `moat` ends the sandbox.
#[test]
fn blocking_host_socket_calls_are_interruptible() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    let code = r"
import signal, socket
class Alarm(Exception):
    pass
def ring(*_):
    raise Alarm()
signal.signal(signal.SIGALRM, ring)
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
for name, call in [('accept', l.accept), ('recv', lambda: u.recv(10))]:
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        call()
        print(name, 'returned')
    except Alarm:
        print(name, 'interrupted')
";
    let (ok, out, err) = python_in("host", code, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "accept interrupted\nrecv interrupted\n", "{err}");

    // SIGTERM to `moat do` reaches the program blocked in `accept`, which dies of it.
    let mut child = Command::new(MOAT)
        .arg("do")
        .args(platform_args())
        .args([
            "--network=host",
            PYTHON,
            "-c",
            "import socket\nl = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\nprint('waiting', flush=True)\nl.accept()",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run moat");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "waiting\n");
    std::thread::sleep(Duration::from_millis(200));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
}

/// A ping-socket client: an echo request to each address given, printing the reply's
/// payload or the error's name; first the socket's own creation.
const PINGER: &str = r"
import errno, socket, sys
def name(e):
    return errno.errorcode.get(e.errno, e.errno)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
except OSError as e:
    print('socket:', name(e))
    sys.exit(0)
s.settimeout(10)
for host in sys.argv[1:]:
    try:
        s.sendto(b'\x08\x00\x00\x00\x00\x00\x00\x01hello', (host, 0))
        data, (ip, port) = s.recvfrom(100)
        print(host, 'reply from', ip, data[8:].decode())
    except OSError as e:
        print(host, name(e))
";

#[test]
fn ping_sockets_by_network_mode() {
    if !Path::new(PYTHON).exists() {
        eprintln!("skipped: {PYTHON} is not installed");
        return;
    }
    // The sandbox's own stack answers on loopback; nothing is beyond it with `none` (nor in
    // the test's namespace, where `sandbox` takes no interface).
    for mode in ["sandbox", "none"] {
        let (ok, out, err) = python_in(mode, PINGER, &["127.0.0.1", "192.0.2.1"]);
        assert!(ok, "{mode}: {err}");
        assert_eq!(
            out, "127.0.0.1 reply from 127.0.0.1 hello\n192.0.2.1 ENETUNREACH\n",
            "{mode}: {err}"
        );
    }
    // With the host's network, ping sockets would be the host's, which Moat does not make:
    // refused as a host with Linux's default `ping_group_range` refuses them.
    let (ok, out, err) = python_in("host", PINGER, &["127.0.0.1"]);
    assert!(ok, "{err}");
    assert_eq!(out, "socket: EACCES\n", "{err}");
}

/// iputils `ping` inside the sandbox, which answers itself on loopback: as root (ping drops
/// its capabilities with `cap_set_proc` and `PR_SET_KEEPCAPS` first, which needs per-thread
/// capability sets) and as another user (through `setpriv`), both over ping sockets.
#[test]
fn iputils_ping_inside_the_sandbox() {
    if !Path::new("/bin/ping").exists() {
        eprintln!("skipped: /bin/ping is not installed (scripts/setup installs iputils-ping)");
        return;
    }
    let as_user = [
        "/usr/bin/setpriv",
        "--reuid",
        "1000",
        "--regid",
        "1000",
        "--clear-groups",
    ];
    for (user, args) in [
        (false, &["-c", "2", "-i", "0.2", "127.0.0.1"][..]),
        (false, &["-6", "-c", "1", "::1"][..]),
        (true, &["-c", "1", "127.0.0.1"][..]),
    ] {
        let out = Command::new(MOAT)
            .arg("do")
            .args(platform_args())
            .args(if user { &as_user[..] } else { &[] })
            .arg("/bin/ping")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run moat");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ping {args:?}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let count = args[args.iter().position(|a| *a == "-c").unwrap() + 1];
        assert!(
            stdout.contains(&format!("{count} received, 0% packet loss")),
            "{stdout}"
        );
        assert!(stdout.contains("ttl=64"), "{stdout}");
    }
}
