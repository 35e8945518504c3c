//! Moat's own confinement (docs/SECURITY.md): the kernel and gofer processes run in their own
//! namespaces and roots, without capabilities (the gofer keeps five), with NO_NEW_PRIVS and a
//! seccomp filter; a host system call outside the kernel's allowlist kills the sandbox; and
//! what a program inside tries in order to reach the host fails.
//! Uses busybox-static (installed by scripts/setup) as the program inside.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("do")
        .args(args)
        .output()
        .expect("run moat")
}

/// A `moat do` that waits on its stdin until the test closes it.
fn waiting_sandbox() -> Child {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["do", BUSYBOX, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run moat")
}

/// The host's processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.split_whitespace().collect::<Vec<_>>() == ["PPid:", &parent.to_string()]
                })
            })
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The kernel (`moat kernel`) and gofer (`moat gofer`) processes of the `moat do` with
/// host pid `front`, once both are up and confined.
fn sandbox_processes(front: u32) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kids = children(front);
        let find = |what: &str| {
            kids.iter()
                .copied()
                .find(|&p| cmdline(p).starts_with(&format!("moat {what}")))
        };
        if let (Some(kernel), Some(gofer)) = (find("kernel"), find("gofer")) {
            // Confined once their filters are in (the last step before serving).
            if [kernel, gofer]
                .iter()
                .all(|p| status_field(*p, "Seccomp") == "2")
                && !children(kernel).is_empty()
            {
                return (kernel, gofer);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox's processes never showed up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn namespace(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

fn root_entries(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// What both confined processes share: fresh namespaces, NO_NEW_PRIVS, a seccomp filter (the
/// allowlist and the one that refuses `clone3`), and no capability outside `caps`.
fn assert_confined(pid: u32, caps: &str) {
    assert_eq!(status_field(pid, "NoNewPrivs"), "1", "pid {pid}");
    assert_eq!(status_field(pid, "Seccomp"), "2", "pid {pid}");
    assert_eq!(status_field(pid, "Seccomp_filters"), "2", "pid {pid}");
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(pid, set), caps, "{set} of pid {pid}");
    }
    for set in ["CapInh", "CapAmb"] {
        assert_eq!(
            status_field(pid, set),
            "0000000000000000",
            "{set} of pid {pid}"
        );
    }
    for kind in ["mnt", "pid", "net", "ipc", "uts"] {
        assert_ne!(
            namespace(&pid.to_string(), kind),
            namespace("self", kind),
            "{kind} namespace of pid {pid}"
        );
    }
    // The init of its own pid namespace.
    assert_eq!(
        status_field(pid, "NSpid").split_whitespace().last(),
        Some("1")
    );
}

#[test]
fn the_kernel_and_the_gofer_are_confined() {
    let mut front = waiting_sandbox();
    let (kernel, gofer) = sandbox_processes(front.id());

    assert_confined(kernel, "0000000000000000");
    assert!(
        root_entries(kernel).is_empty(),
        "the kernel's root is not empty"
    );
    // CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID: serving files as their owners.
    assert_confined(gofer, "000000000000001f");
    assert_eq!(
        root_entries(gofer),
        BTreeSet::from(["0".to_string(), "proc".to_string()]),
        "the gofer sees more than the tree it serves"
    );
    // The served root is the host's, read-only, without the host's kernel filesystems.
    assert!(Path::new(&format!("/proc/{gofer}/root/0/etc")).is_dir());
    assert!(root_entries_at(gofer, "0/proc").is_empty());
    // Its /proc is its own pid namespace's: itself only.
    let procs: Vec<String> = root_entries_at(gofer, "proc")
        .into_iter()
        .filter(|n| n.parse::<u32>().is_ok())
        .collect();
    assert_eq!(procs, ["1"]);
    // The two share no namespace either.
    for kind in ["mnt", "pid", "net"] {
        assert_ne!(
            namespace(&kernel.to_string(), kind),
            namespace(&gofer.to_string(), kind)
        );
    }
    // The stubs (the kernel's children) inherit the kernel's filter under their own.
    for stub in children(kernel) {
        assert_eq!(status_field(stub, "Seccomp_filters"), "3", "stub {stub}");
        assert_eq!(
            status_field(stub, "CapEff"),
            "0000000000000000",
            "stub {stub}"
        );
    }

    drop(front.stdin.take());
    assert!(front.wait().unwrap().success());
}

/// `--network=host`: the kernel stays in the host's network namespace (its sockets are host
/// sockets) and is otherwise confined as always; the gofer keeps a network namespace of its
/// own.
#[test]
fn with_network_host_only_the_kernel_shares_the_network() {
    let mut front = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["do", "--network=host", BUSYBOX, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run moat");
    let (kernel, gofer) = sandbox_processes(front.id());
    let kernel_pid = kernel.to_string();
    assert_eq!(namespace(&kernel_pid, "net"), namespace("self", "net"));
    assert_ne!(
        namespace(&gofer.to_string(), "net"),
        namespace("self", "net")
    );
    for kind in ["mnt", "pid", "ipc", "uts"] {
        assert_ne!(
            namespace(&kernel_pid, kind),
            namespace("self", kind),
            "{kind}"
        );
    }
    assert_eq!(status_field(kernel, "NoNewPrivs"), "1");
    assert_eq!(status_field(kernel, "Seccomp"), "2");
    assert_eq!(status_field(kernel, "CapEff"), "0000000000000000");
    assert!(root_entries(kernel).is_empty());
    drop(front.stdin.take());
    assert!(front.wait().unwrap().success());
}

fn root_entries_at(pid: u32, dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/root/{dir}"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_refused_host_call_kills_the_sandbox() {
    // The probe is a blocking `socket(AF_INET, SOCK_STREAM, 0)`: refused in every network
    // mode, since host networking allows only non-blocking, close-on-exec TCP/UDP sockets.
    for network in ["--network=sandbox", "--network=host"] {
        refused_host_call_kills(network);
    }
}

fn refused_host_call_kills(network: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["do", network, BUSYBOX, "echo", "never"])
        .env("MOAT_TEST_SECCOMP_PROBE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(out.stdout.is_empty(), "the program ran");
    assert!(
        stderr.contains("sandbox kernel killed by seccomp"),
        "{stderr}"
    );
    if cfg!(debug_assertions) {
        assert!(
            stderr.contains("disallowed host system call 41 (socket)"),
            "{stderr}"
        );
    }
}

#[test]
fn the_probe_cannot_be_set_from_inside() {
    // The variable in the program's own environment, and a program exec'd with it: nothing
    // happens, the kernel reads its instructions only from the front.
    let out = moat(&[
        BUSYBOX,
        "env",
        "MOAT_TEST_SECCOMP_PROBE=1",
        BUSYBOX,
        "sh",
        "-c",
        "/bin/busybox echo still here",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");
    assert!(out.status.success());
}

#[test]
fn no_confine_warns_loudly() {
    let out = moat(&["--no-confine", BUSYBOX, "true"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT a security boundary"));
}

#[test]
fn host_processes_cannot_be_signalled_or_seen() {
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id().to_string();
    for script in [
        format!("kill -9 {pid}"),
        format!("kill -0 {pid}"),
        format!("cat /proc/{pid}/status"),
        format!("ls /proc/{pid}"),
        // The host's procfs is not behind any path: `..`, a symlink, a process's root.
        format!("cat /proc/1/root/proc/{pid}/environ"),
        format!("cat /proc/self/root/../../proc/{pid}/cmdline"),
        format!("ln -s /proc/{pid} /tmp/p && cat /tmp/p/status"),
        format!("cat /proc/1/root/../proc/1/root/proc/{pid}/status"),
    ] {
        let out = moat(&[BUSYBOX, "sh", "-c", &script]);
        assert!(!out.status.success(), "`{script}` succeeded");
    }
    // Every process the sandbox sees is its own; pid 1 is the sandbox's init, whose root is
    // the sandbox's root.
    let out = moat(&[
        BUSYBOX,
        "sh",
        "-c",
        "ls /proc | grep -c '^[0-9]'; readlink /proc/1/root; readlink /proc/self/root",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let count: u32 = lines[0].parse().unwrap();
    assert!(count <= 3, "{text}");
    assert_eq!(&lines[1..], ["/", "/"]);
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn a_host_tcp_port_cannot_be_reached() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = moat(&[
        BUSYBOX,
        "sh",
        "-c",
        &format!("echo hello | /bin/busybox nc -w 2 127.0.0.1 {port}"),
    ]);
    assert!(!out.status.success());
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the sandbox connected to the host"
    );
}

#[test]
fn the_host_root_is_written_by_no_path() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("confinement");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("marker");
    std::fs::write(&marker, "host\n").unwrap();
    let m = marker.display().to_string();
    let rel = m.trim_start_matches('/');
    let script = format!(
        "echo 1 > {m}; echo 2 > /proc/1/root/{rel}; echo 3 > /proc/self/root/{rel}; \
         echo 4 > /../../{rel}; ln -s {m} {m}.link; echo 5 > {m}.link; \
         echo 6 > /proc/1/cwd/../../../../../{rel}; rm -f {m}.new; echo 7 > {m}.new; \
         mv {m}.new {m}; cat {m}"
    );
    let out = moat(&[BUSYBOX, "sh", "-c", &script]);
    // Every write lands in the sandbox's overlay...
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n", "{out:?}");
    // ...none on the host.
    let mut host = String::new();
    std::fs::File::open(&marker)
        .unwrap()
        .read_to_string(&mut host)
        .unwrap();
    assert_eq!(host, "host\n");
    assert!(!dir.join("marker.new").exists());
    assert!(std::fs::symlink_metadata(dir.join("marker.link")).is_err());
}
