//! Real servers inside one sandbox, on the sandbox's own loopback (issue 7's first "Done
//! when"): redis-server with redis-benchmark and redis-cli, and nginx — a master process and
//! forked workers — with curl fetching a file. Both run in the same `moat do`, so the ports
//! are the sandbox's own and cannot collide with the host's. The packages come from
//! scripts/setup; a machine without them skips with a line saying so.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{have, platform_args, Scratch, MOAT};

/// A file larger than a socket buffer (so nginx's `sendfile` has to wait for room), with
/// varied bytes, and its SHA-256.
fn write_site(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello from nginx in moat\n").unwrap();
    let mut data = Vec::with_capacity(600_000);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..600_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push(b'a' + (x >> 40) as u8 % 26);
    }
    std::fs::write(dir.join("www/big.txt"), &data).unwrap();
    let out = Command::new("sha256sum")
        .arg(dir.join("www/big.txt"))
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// nginx in the foreground (`daemon off`) with a master that forks two workers, everything it
/// writes under `/srv/site` (the test's volume), listening on the sandbox's loopback.
const NGINX_CONF: &str = "\
daemon off;
master_process on;
worker_processes 2;
error_log /srv/site/error.log info;
pid /srv/site/nginx.pid;
events { worker_connections 64; }
http {
  access_log /srv/site/access.log;
  client_body_temp_path /srv/site/tmp/body;
  proxy_temp_path /srv/site/tmp/proxy;
  fastcgi_temp_path /srv/site/tmp/fastcgi;
  uwsgi_temp_path /srv/site/tmp/uwsgi;
  scgi_temp_path /srv/site/tmp/scgi;
  server {
    listen 127.0.0.1:NGINX_PORT;
    root /srv/site/www;
  }
}
";

/// The sandboxed script: redis first, then nginx. Every client has a time limit, and each
/// result is one line the test checks. `$1` is redis's port, `$2` nginx's.
const SCRIPT: &str = r#"
rport=$1
nport=$2
redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --logfile /srv/site/redis.log --pidfile /srv/site/redis.pid
up=no
for i in $(seq 100); do
  [ "$(redis-cli -h 127.0.0.1 -p $rport ping 2>/dev/null)" = PONG ] && { up=yes; break; }
  sleep 0.1
done
echo "redis up: $up"
redis-cli -h 127.0.0.1 -p $rport set greeting "hello redis"
echo "get: $(redis-cli -h 127.0.0.1 -p $rport get greeting)"
timeout 120 redis-benchmark -h 127.0.0.1 -p $rport -q -n 2000 -t set,get | tr '\r' '\n' | grep 'requests per second, '
echo "benchmark: $?"
echo "after: $(redis-cli -h 127.0.0.1 -p $rport dbsize)"
redis-cli -h 127.0.0.1 -p $rport shutdown nosave
echo "redis shutdown: $?"

mkdir -p /srv/site/tmp
nginx -c /srv/site/nginx.conf -p /srv/site &
nginx=$!
for i in $(seq 100); do
  curl -sf --max-time 5 -o /dev/null http://127.0.0.1:$nport/ && break
  sleep 0.1
done
echo "index: $(curl -sS --max-time 20 http://127.0.0.1:$nport/index.html)"
echo "big: $(curl -sS --max-time 60 http://127.0.0.1:$nport/big.txt | sha256sum)"
echo "missing: $(curl -s --max-time 20 -o /dev/null -w '%{http_code}' http://127.0.0.1:$nport/missing)"
kill -QUIT $nginx
wait $nginx
echo "nginx exit: $?"
"#;

/// Run `moat do` with `args`, killing it if it takes longer than `limit`. Returns its
/// status, stdout and stderr.
fn run_limited(args: &[&str], limit: Duration) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(MOAT)
        .arg("do")
        .args(platform_args())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for moat") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait for moat");
            panic!(
                "moat did not finish in {limit:?} ({status:?})\nstdout: {}\nstderr: {}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// A port free on the host's loopback now (for servers in a `--network=host` sandbox).
fn free_host_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn redis_and_nginx_in_one_sandbox() {
    servers_in_one_sandbox("sandbox", 6379, 8080);
}

/// The same servers and clients on real host sockets: many connections at once
/// (redis-benchmark's 50 clients), epoll on host sockets, forked workers sharing a listener.
#[test]
fn redis_and_nginx_with_network_host() {
    servers_in_one_sandbox("host", free_host_port(), free_host_port());
}

fn servers_in_one_sandbox(network: &str, redis_port: u16, nginx_port: u16) {
    let needed = [
        "redis-server",
        "redis-cli",
        "redis-benchmark",
        "nginx",
        "curl",
    ];
    if let Some(missing) = needed.iter().find(|p| !have(p)) {
        eprintln!("skipped: {missing} is not installed (scripts/setup installs it)");
        return;
    }
    let scratch = Scratch::new("servers");
    let dir = scratch.path();
    let sum = write_site(dir);
    std::fs::write(
        dir.join("nginx.conf"),
        NGINX_CONF.replace("NGINX_PORT", &nginx_port.to_string()),
    )
    .unwrap();
    std::fs::write(dir.join("run.sh"), SCRIPT).unwrap();
    let volume = format!("{}:/srv/site", dir.display());
    let network = format!("--network={network}");
    let (redis_port, nginx_port) = (redis_port.to_string(), nginx_port.to_string());
    let (status, out, err) = run_limited(
        &[
            &network,
            "-v",
            &volume,
            "/bin/sh",
            "/srv/site/run.sh",
            &redis_port,
            &nginx_port,
        ],
        Duration::from_secs(240),
    );
    let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let context = format!(
        "{network} {status:?}\nstdout:\n{out}\nstderr:\n{err}\nredis.log:\n{}\nnginx error.log:\n{}",
        log("redis.log"),
        log("error.log")
    );
    assert!(status.success(), "{context}");
    let lines: Vec<&str> = out.lines().collect();
    let has = |want: &str| lines.iter().any(|l| l.trim() == want);

    // redis: up, a value stored and read back, both benchmark tests finished, the
    // benchmark's keys there, and a clean shutdown.
    assert!(has("redis up: yes"), "{context}");
    assert!(has("OK") && has("get: hello redis"), "{context}");
    for test in ["SET", "GET"] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{test}: ")))
            .unwrap_or_else(|| panic!("no {test} result\n{context}"));
        let rps: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        assert!(rps > 0.0, "{line}\n{context}");
    }
    assert!(has("benchmark: 0"), "{context}");
    // `greeting` and the benchmark's `key:__rand_int__`.
    assert!(has("after: 2"), "{context}");
    assert!(has("redis shutdown: 0"), "{context}");

    // nginx: a master and two workers, the small and the large file served whole, a 404,
    // and a graceful exit with nothing alarming in its log.
    assert!(has("index: hello from nginx in moat"), "{context}");
    assert!(has(&format!("big: {sum}  -")), "{context}");
    assert!(has("missing: 404"), "{context}");
    assert!(has("nginx exit: 0"), "{context}");
    let nginx_log = log("error.log");
    assert!(
        nginx_log.contains("start worker process"),
        "workers forked\n{context}"
    );
    for bad in ["[alert]", "[emerg]", "[crit]"] {
        assert!(!nginx_log.contains(bad), "{bad} in nginx's log\n{context}");
    }
    assert_eq!(
        nginx_log.matches("gracefully shutting down").count(),
        2,
        "both workers shut down gracefully\n{context}"
    );
    assert_eq!(
        nginx_log.matches(" exited with code 0").count(),
        2,
        "the master reaped both workers\n{context}"
    );
}
