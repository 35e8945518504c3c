//! Moat as an OCI runtime, driven as containerd's shim and conmon drive runc
//! (shared/clients/argv.txt), on a busybox bundle made here: `run`, the create / start /
//! state / kill / delete lifecycle with runc's wrong-state errors, the pid-file process's
//! exit status, `exec`, and a terminal sent over `--console-socket`.

mod common;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{bundle, edit_config, eventually, moat, status, text, Scratch, MOAT};

#[test]
fn run_relays_stdout_stderr_and_the_exit_status() {
    let s = Scratch::new("oci-run");
    let b = bundle(
        &s.path().join("b"),
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; hostname; id -u; pwd; grep NoNewPrivs /proc/self/status; exit 7",
        ],
        false,
    );
    edit_config(&b, |c| {
        c["hostname"] = "box".into();
        c["process"]["cwd"] = "/tmp".into();
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    });
    let root = s.path().join("root");
    let out = Command::new(MOAT)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("r1")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "out\nbox\n1000\n/tmp\nNoNewPrivs:\t1\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(7));
    // `run` deletes what it created.
    assert_eq!(status(&root, "r1"), None);
}

/// The capability sets of `process.capabilities` are the program's, as runc gives them: root
/// limited to Docker's default list, and a user holding one ambient capability. CAP_NET_RAW,
/// in Docker's list, is withheld by the sandbox (it has no raw sockets).
#[test]
fn process_capabilities_are_the_programs_sets() {
    let s = Scratch::new("oci-caps");
    let docker: Vec<&str> = vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3 to SETPCAP 8, NET_BIND_SERVICE 10, SYS_CHROOT 18,
    // MKNOD 27, AUDIT_WRITE 29, SETFCAP 31: 0xa80405fb. NET_RAW (13) is not there.
    let script = "grep Cap /proc/self/status; chroot / true && echo chroot ok; \
                  nice -n -5 true 2>/dev/null || echo no CAP_SYS_NICE";
    let b = bundle(&s.path().join("b"), &["sh", "-c", script], false);
    edit_config(&b, |c| {
        c["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
        let sets = serde_json::json!(docker);
        c["process"]["capabilities"] = serde_json::json!({
            "bounding": sets, "effective": sets, "permitted": sets
        });
    });
    let root = s.path().join("root");
    let out = Command::new(MOAT)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("c1")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80405fb\nCapEff:\t00000000a80405fb\n\
         CapBnd:\t00000000a80405fb\nCapAmb:\t0000000000000000\nchroot ok\nno CAP_SYS_NICE\n",
        "{}",
        text(&out.stderr)
    );

    // A user keeps an ambient CAP_NET_BIND_SERVICE across the exec; without it, nothing.
    let bind = "grep CapEff /proc/self/status";
    for (ambient, want) in [(true, "0000000000000400"), (false, "0000000000000000")] {
        let b = bundle(
            &s.path().join(format!("u{ambient}")),
            &["sh", "-c", bind],
            false,
        );
        edit_config(&b, |c| {
            c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
            let sets = if ambient {
                serde_json::json!(["CAP_NET_BIND_SERVICE"])
            } else {
                serde_json::json!([])
            };
            c["process"]["capabilities"] = serde_json::json!({
                "bounding": sets, "effective": sets, "permitted": sets,
                "inheritable": sets, "ambient": sets
            });
        });
        let out = Command::new(MOAT)
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(&b)
            .arg("c2")
            .output()
            .unwrap();
        assert_eq!(
            text(&out.stdout),
            format!("CapEff:\t{want}\n"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// A bind mount of a small file over a path that is a symlink in the image (as containerd and
/// podman mount `/etc/resolv.conf`, which images such as systemd-based ones ship as a
/// symlink) shows the mounted file, not the symlink's target.
#[test]
fn a_file_bind_mounted_over_a_symlink_replaces_it() {
    let s = Scratch::new("oci-seed-symlink");
    let b = bundle(&s.path().join("b"), &["cat", "/etc/resolv.conf"], false);
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        b.join("rootfs/etc/resolv.conf"),
    )
    .unwrap();
    let host_file = s.path().join("resolv.conf");
    std::fs::write(&host_file, "nameserver 192.0.2.53\n").unwrap();
    edit_config(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/etc/resolv.conf",
            "type": "bind",
            "source": host_file,
            "options": ["rbind", "ro"]
        }));
    });
    let out = Command::new(MOAT)
        .arg("--root")
        .arg(s.path().join("root"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("seed")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "nameserver 192.0.2.53\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_of_a_missing_program_fails_like_a_shell() {
    let s = Scratch::new("oci-missing");
    let b = bundle(&s.path().join("b"), &["no-such-program"], false);
    let root = s.path().join("root");
    let out = moat(&root, &["run", "--bundle", b.to_str().unwrap(), "m1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no-such-program: No such file or directory"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(status(&root, "m1"), None);
}

#[test]
fn a_malformed_config_is_a_clear_error_and_leaves_nothing() {
    let s = Scratch::new("oci-bad");
    let b = bundle(&s.path().join("b"), &["true"], false);
    std::fs::write(
        b.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": 5",
    )
    .unwrap();
    let root = s.path().join("root");
    let out = moat(&root, &["create", "--bundle", b.to_str().unwrap(), "bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("config.json"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(status(&root, "bad"), None);
    let out = moat(
        &root,
        &["create", "--bundle", b.to_str().unwrap(), "../escape"],
    );
    assert!(
        text(&out.stderr).contains("invalid container id"),
        "{}",
        text(&out.stderr)
    );
}

/// `create` with the container's stdout in `out`: returns the pid in the pid file.
fn create(root: &Path, bundle: &Path, id: &str, out: &Path) -> i32 {
    let pid_file = root.with_extension(format!("{id}.pid"));
    let status = Command::new(MOAT)
        .arg("--root")
        .arg(root)
        .args(["create", "--bundle"])
        .arg(bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "create {id}");
    std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_lifecycle_has_runc_states_and_errors() {
    let s = Scratch::new("oci-life");
    let b = bundle(
        &s.path().join("b"),
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo started; while :; do sleep 0.05; done",
        ],
        false,
    );
    let root = s.path().join("root");
    let out = s.path().join("out");
    let pid = create(&root, &b, "c1", &out);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(status(&root, "c1").as_deref(), Some("created"));
    // Nothing of the application runs before start.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    let state: serde_json::Value =
        serde_json::from_slice(&moat(&root, &["state", "c1"]).stdout).unwrap();
    assert_eq!(state["id"], "c1");
    assert_eq!(state["pid"], pid);
    assert_eq!(state["ociVersion"], "1.0.2");
    assert_eq!(state["bundle"], b.canonicalize().unwrap().to_str().unwrap());
    let again = moat(&root, &["create", "--bundle", b.to_str().unwrap(), "c1"]);
    assert!(text(&again.stderr).contains("container with id exists"));

    assert!(moat(&root, &["start", "c1"]).status.success());
    assert_eq!(status(&root, "c1").as_deref(), Some("running"));
    assert!(eventually(5, || std::fs::read_to_string(&out)
        .unwrap()
        .contains("started")));
    let e = moat(&root, &["start", "c1"]);
    assert!(text(&e.stderr).contains("cannot start an already running container"));
    let e = moat(&root, &["delete", "c1"]);
    assert!(text(&e.stderr).contains("cannot delete container c1 that is not stopped: running"));
    let list = text(&moat(&root, &["list", "-q"]).stdout);
    assert_eq!(list, "c1\n");
    let ps: Vec<i32> =
        serde_json::from_slice(&moat(&root, &["ps", "--format", "json", "c1"]).stdout).unwrap();
    // The sandbox's own pids: the shell is its init.
    assert!(ps.contains(&1), "{ps:?}");

    assert!(moat(&root, &["kill", "c1", "TERM"]).status.success());
    assert!(eventually(5, || status(&root, "c1").as_deref() == Some("stopped")));
    assert!(std::fs::read_to_string(&out).unwrap().contains("got TERM"));
    let e = moat(&root, &["start", "c1"]);
    assert!(text(&e.stderr).contains("cannot start a container that has stopped"));
    let e = moat(&root, &["kill", "c1", "KILL"]);
    assert!(text(&e.stderr).contains("container not running"));
    assert!(moat(&root, &["delete", "c1"]).status.success());
    let e = moat(&root, &["state", "c1"]);
    assert!(text(&e.stderr).contains("container does not exist"));
    assert!(moat(&root, &["delete", "--force", "c1"]).status.success());
}

#[test]
fn a_created_container_can_be_killed_and_deleted() {
    let s = Scratch::new("oci-created");
    let b = bundle(&s.path().join("b"), &["sh", "-c", "echo ran"], false);
    let root = s.path().join("root");
    let out = s.path().join("out");
    let pid = create(&root, &b, "k1", &out);
    // delete of a created container kills it (runc does the same).
    assert!(moat(&root, &["delete", "k1"]).status.success());
    assert!(eventually(5, || !Path::new(&format!("/proc/{pid}/stat"))
        .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z"))));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    let pid = create(&root, &b, "k2", &out);
    let _ = pid;
    assert!(moat(&root, &["kill", "k2", "9"]).status.success());
    assert!(eventually(5, || status(&root, "k2").as_deref() == Some("stopped")));
    assert!(moat(&root, &["delete", "--force", "k2"]).status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
}

/// The pid in --pid-file is what the shim waits for: it must end as init ends. The test
/// becomes a subreaper so that the orphaned front is its child, as it is the shim's.
#[test]
fn the_pid_file_process_ends_with_init_s_status() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let s = Scratch::new("oci-status");
    let root = s.path().join("root");
    let out = s.path().join("out");
    for (i, (args, expect_code, expect_signal)) in [
        (vec!["sh", "-c", "exit 42"], Some(42), None),
        (vec!["sh", "-c", "kill -USR1 $$"], None, Some(libc::SIGUSR1)),
    ]
    .into_iter()
    .enumerate()
    {
        let b = bundle(&s.path().join(format!("b{i}")), &args, false);
        let pid = create(&root, &b, "s1", &out);
        assert!(moat(&root, &["start", "s1"]).status.success());
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let (_, st) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .unwrap()
            .unwrap();
        assert_eq!(st.exit_status(), expect_code);
        assert_eq!(st.terminating_signal(), expect_signal);
        assert!(moat(&root, &["delete", "s1"]).status.success());
    }
    // SIGKILL through `kill`: the front dies of it too.
    let b = bundle(&s.path().join("b-sleep"), &["sleep", "30"], false);
    let pid = create(&root, &b, "s2", &out);
    assert!(moat(&root, &["start", "s2"]).status.success());
    assert!(moat(&root, &["kill", "s2", "SIGKILL"]).status.success());
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    let (_, st) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .unwrap()
        .unwrap();
    assert_eq!(st.terminating_signal(), Some(libc::SIGKILL));
    assert!(moat(&root, &["delete", "s2"]).status.success());
}

#[test]
fn exec_runs_another_process_in_the_container() {
    let s = Scratch::new("oci-exec");
    let b = bundle(
        &s.path().join("b"),
        &[
            "sh",
            "-c",
            "echo shared > /tmp/x; while :; do sleep 0.05; done",
        ],
        false,
    );
    let root = s.path().join("root");
    let out = s.path().join("out");
    create(&root, &b, "e1", &out);
    let e = moat(&root, &["exec", "e1", "true"]);
    assert!(text(&e.stderr).contains("cannot exec in a created container"));
    assert!(moat(&root, &["start", "e1"]).status.success());
    // The exec'd process sees the container's files (init's writes in the overlay).
    assert!(eventually(5, || {
        let e = moat(&root, &["exec", "e1", "cat", "/tmp/x"]);
        text(&e.stdout) == "shared\n"
    }));
    let e = moat(
        &root,
        &[
            "exec",
            "--cwd",
            "/tmp",
            "-e",
            "X=1",
            "e1",
            "sh",
            "-c",
            "echo $X $(pwd); exit 5",
        ],
    );
    assert_eq!(text(&e.stdout), "1 /tmp\n");
    assert_eq!(e.status.code(), Some(5));
    // --process and --detach, as the containerd shim sends it.
    let process = s.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::json!({
            "args": ["sh", "-c", "echo detached; exit 3"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let pid_file = s.path().join("exec.pid");
    let exec_out = s.path().join("exec.out");
    let st = Command::new(MOAT)
        .arg("--root")
        .arg(&root)
        .args(["exec", "--process"])
        .arg(&process)
        .args(["--detach", "--pid-file"])
        .arg(&pid_file)
        .arg("e1")
        .stdout(std::fs::File::create(&exec_out).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (_, st) = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::empty(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(st.exit_status(), Some(3));
    assert_eq!(std::fs::read_to_string(&exec_out).unwrap(), "detached\n");
    let e = moat(&root, &["exec", "e1", "no-such-program"]);
    assert!(!e.status.success());
    // SIGKILL to a detached exec's process (as a shim kills it) ends the exec'd process too.
    let marker = s.path().join("exec2.out");
    let st = Command::new(MOAT)
        .arg("--root")
        .arg(&root)
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args(["e1", "sh", "-c", "while :; do echo tick; sleep 0.05; done"])
        .stdout(std::fs::File::create(&marker).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    assert!(eventually(5, || std::fs::read_to_string(&marker)
        .unwrap()
        .contains("tick")));
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let len = std::fs::metadata(&marker).unwrap().len();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        std::fs::metadata(&marker).unwrap().len(),
        len,
        "the exec'd process still runs"
    );
    assert!(moat(&root, &["delete", "--force", "e1"]).status.success());
}

#[test]
fn a_terminal_goes_over_the_console_socket() {
    let s = Scratch::new("oci-tty");
    let b = bundle(
        &s.path().join("b"),
        &[
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo is-a-tty; read line; echo got $line",
        ],
        true,
    );
    edit_config(&b, |c| {
        c["process"]["consoleSize"] = serde_json::json!({"height": 30, "width": 100});
    });
    let root = s.path().join("root");
    let sock = s.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        moat_runtime::oci::console::recv_master(&stream).unwrap()
    });
    let out = moat(
        &root,
        &[
            "create",
            "--bundle",
            b.to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            "t1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let master = receiver.join().unwrap();
    let ws = rustix::termios::tcgetwinsize(&master).unwrap();
    assert_eq!((ws.ws_row, ws.ws_col), (30, 100));
    assert!(moat(&root, &["start", "t1"]).status.success());
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let mut wrote = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text(&seen).contains("got hello") && std::time::Instant::now() < deadline {
        if !wrote && text(&seen).contains("is-a-tty") {
            rustix::io::write(&master, b"hello\n").unwrap();
            wrote = true;
        }
        let mut fds = [rustix::event::PollFd::new(
            &master,
            rustix::event::PollFlags::IN,
        )];
        if rustix::event::poll(
            &mut fds,
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            }),
        )
        .unwrap_or(0)
            > 0
        {
            match rustix::io::read(&master, &mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    }
    let seen = text(&seen);
    assert!(seen.contains("is-a-tty"), "{seen:?}");
    assert!(seen.contains("got hello"), "{seen:?}");
    assert!(eventually(5, || status(&root, "t1").as_deref() == Some("stopped")));
    assert!(moat(&root, &["delete", "t1"]).status.success());
}

#[test]
fn hooks_run_with_the_state_and_errors_reach_the_json_log() {
    let s = Scratch::new("oci-hooks");
    let b = bundle(&s.path().join("b"), &["true"], false);
    let marks = s.path().join("marks");
    let hook = |stage: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("read -r state; echo {stage} $state >> {}", marks.display())]
        })
    };
    edit_config(&b, |c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")]
        });
        c["annotations"] = serde_json::json!({"org.example.k": "v"});
    });
    let root = s.path().join("root");
    let out = s.path().join("out");
    create(&root, &b, "h1", &out);
    assert!(moat(&root, &["start", "h1"]).status.success());
    assert!(eventually(5, || status(&root, "h1").as_deref() == Some("stopped")));
    assert!(moat(&root, &["delete", "h1"]).status.success());
    let marks = std::fs::read_to_string(&marks).unwrap();
    let stages: Vec<&str> = marks
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["createRuntime", "poststart", "poststop"],
        "{marks}"
    );
    assert!(
        marks.contains("\"id\":\"h1\"") && marks.contains("org.example.k"),
        "{marks}"
    );
    assert!(
        marks
            .lines()
            .last()
            .unwrap()
            .contains("\"status\":\"stopped\""),
        "{marks}"
    );

    // A failing createRuntime hook fails create, as a JSON error line in --log.
    edit_config(&b, |c| {
        c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let log = s.path().join("log.json");
    let o = Command::new(MOAT)
        .arg("--root")
        .arg(&root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(&b)
        .arg("h2")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let last: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("createRuntime hook"),
        "{last}"
    );
    assert_eq!(status(&root, "h2"), None);
}

/// Limits land in the container's cgroup, below the test's own, and the sandbox's host
/// processes are in it; `delete` removes it.
#[test]
fn resources_are_applied_in_the_container_s_cgroup() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(memory) = own.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, list, path) = (p.next(), p.next()?, p.next()?);
        list.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    }) else {
        println!("SKIP: no cgroup v1 memory controller here");
        return;
    };
    let base = Path::new("/sys/fs/cgroup/memory").join(memory.trim_start_matches('/'));
    if std::fs::create_dir(base.join("moat-probe"))
        .and_then(|()| std::fs::remove_dir(base.join("moat-probe")))
        .is_err()
    {
        println!(
            "SKIP: the memory cgroup {} is not writable here",
            base.display()
        );
        return;
    }
    let s = Scratch::new("oci-cgroup");
    let b = bundle(&s.path().join("b"), &["sleep", "30"], false);
    let name = format!("moat-test-{}", std::process::id());
    edit_config(&b, |c| {
        c["linux"]["cgroupsPath"] = format!("/{name}/c1").into();
        c["linux"]["resources"] = serde_json::json!({
            "memory": {"limit": 268435456},
            "pids": {"limit": 100}
        });
    });
    let root = s.path().join("root");
    let pid = create(&root, &b, "c1", &s.path().join("out"));
    let dir = base.join(&name).join("c1");
    assert_eq!(
        std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "268435456"
    );
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
    // The gofer and the kernel (started after the front joined) are in it too.
    assert!(procs.lines().count() >= 3, "{procs}");
    assert!(moat(&root, &["start", "c1"]).status.success());
    assert!(moat(&root, &["pause", "c1"]).status.success());
    assert_eq!(status(&root, "c1").as_deref(), Some("paused"));
    // A frozen sandbox's kernel cannot say what runs in it: a clear error, not a hang.
    let ps = moat(&root, &["ps", "c1"]);
    assert!(text(&ps.stderr).contains("container is paused"), "{ps:?}");
    assert!(moat(&root, &["resume", "c1"]).status.success());
    assert_eq!(status(&root, "c1").as_deref(), Some("running"));
    assert!(moat(&root, &["delete", "--force", "c1"]).status.success());
    assert!(!dir.exists());
    let _ = std::fs::remove_dir(base.join(&name));
    for c in ["cpu", "cpuacct", "pids", "blkio", "freezer"] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(&name));
    }
}

/// `moat --network=host run`: the container reaches a server on the host's loopback; without
/// the flag (whatever the bundle's namespaces say) and with the bundle's `dev.moat.network`
/// annotation asking for `none`, it finds only its own loopback.
#[test]
fn network_host_is_the_runtimes_choice() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // Exactly one connection is expected: the run with --network=host.
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hi from the host\n").unwrap();
    });
    let s = Scratch::new("oci-network");
    let script = format!("nc 127.0.0.1 {port} </dev/null 2>/dev/null; echo rc=$?");
    let b = bundle(&s.path().join("b"), &["sh", "-c", &script], false);
    edit_config(&b, |c| {
        // No network namespace: runc would share the host's network; Moat does not.
        if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
            list.retain(|ns| ns["type"] != "network");
        }
    });
    let root = s.path().join("root");
    let bundle_arg = b.to_str().unwrap();
    let out = moat(&root, &["run", "--bundle", bundle_arg, "n1"]);
    assert_eq!(text(&out.stdout), "rc=1\n", "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no network namespace"),
        "{}",
        text(&out.stderr)
    );
    edit_config(&b, |c| {
        c["annotations"] = serde_json::json!({"dev.moat.network": "none"});
    });
    let out = moat(
        &root,
        &["--network=host", "run", "--bundle", bundle_arg, "n2"],
    );
    assert_eq!(text(&out.stdout), "rc=1\n", "{}", text(&out.stderr));
    edit_config(&b, |c| {
        c["annotations"] = serde_json::json!({});
    });
    let out = moat(
        &root,
        &["--network=host", "run", "--bundle", bundle_arg, "n3"],
    );
    assert_eq!(
        text(&out.stdout),
        "hi from the host\nrc=0\n",
        "{}",
        text(&out.stderr)
    );
    server.join().unwrap();
}

/// `linux.resources.memory.limit` bounds the sandbox from inside too: a program that touches
/// memory without end is killed by Moat's OOM killer (SIGKILL, the largest process), and the
/// container's shell lives on to report it, as under runc with a memory cgroup.
#[test]
fn the_memory_limit_kills_the_largest_process_inside_the_container() {
    let s = Scratch::new("oci-memory");
    let b = bundle(
        &s.path().join("b"),
        &[
            "sh",
            "-c",
            "/hog; echo hog ended with $?; head -1 /proc/meminfo",
        ],
        false,
    );
    let src = s.path().join("hog.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) { char *p = \
         malloc(1 << 20); if (!p) return 1; memset(p, 1, 1 << 20); __asm__ volatile(\"\" : : \
         \"r\"(p) : \"memory\"); } }\n",
    )
    .unwrap();
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(b.join("rootfs/hog"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(cc.success());
    edit_config(&b, |c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 268435456}});
        // Where the host allows it, the host's memory cgroup has the same limit (as under
        // containerd): Moat's own bound must act first, so that it chooses the victim.
        c["linux"]["cgroupsPath"] = format!("/moat-test-{}/mem1", std::process::id()).into();
    });
    let root = s.path().join("root");
    let out = moat(&root, &["run", "--bundle", b.to_str().unwrap(), "mem1"]);
    for c in ["memory", "cpu", "cpuacct", "pids", "blkio", "freezer"] {
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join(format!("moat-test-{}", std::process::id())),
        );
    }
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        ("hog ended with 137\nMemTotal:         262144 kB\n", Some(0)),
        "{}",
        text(&out.stderr)
    );
}

/// `--preserve-fds 1`: the caller's fd 3 (here a pipe the test reads) is the container
/// process's fd 3, and nothing past it comes in; a fd that is not open is an error.
#[test]
fn preserved_fds_reach_the_container_process() {
    let s = Scratch::new("oci-preserve");
    let b = bundle(
        &s.path().join("b"),
        &[
            "sh",
            "-c",
            "echo through fd 3 >&3; ls /proc/self/fd >&3; echo on stdout",
        ],
        false,
    );
    let root = s.path().join("root");
    // fd 3 of `moat run` is the shell's stdout: the pipe this test reads. Its own stdout
    // goes elsewhere, so what arrives came through fd 3.
    let run = |preserve: &str, id: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" --root "$1" run --preserve-fds "$2" --bundle "$3" "$4" 3>&1 1>"$5""#)
            .arg(MOAT)
            .arg(&root)
            .arg(preserve)
            .arg(&b)
            .arg(id)
            .arg(s.path().join("stdout"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run("1", "p1");
    // `ls` lists 0-2, the pipe at 3, and its own directory fd (the lowest free: 4).
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        ("through fd 3\n0\n1\n2\n3\n4\n", Some(0)),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("stdout")).unwrap(),
        "on stdout\n"
    );
    let out = run("2", "p2");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("fd 4 is not open"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(status(&root, "p2"), None);
}

/// `startContainer` hooks run as runc runs them: inside the container (its file tree, user
/// and working directory), after `start`, before the program, with the state on stdin; a
/// failing or slow hook fails `start` and the program never runs.
#[test]
fn start_container_hooks_run_in_the_container_before_the_program() {
    let s = Scratch::new("oci-start-hooks");
    let marker = format!("moat-hooked-{}", std::process::id());
    let b = bundle(
        &s.path().join("b"),
        &["sh", "-c", &format!("cat /tmp/{marker}; echo program ran")],
        false,
    );
    // As in a real image: anyone may write in /tmp.
    std::fs::set_permissions(
        b.join("rootfs/tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    edit_config(&b, |c| {
        c["process"]["cwd"] = "/tmp".into();
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        c["hooks"] = serde_json::json!({"startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!(
                "echo hook-noise; read -r state; echo \"$HOOK_ENV $(id -u) $PWD $state\" > /tmp/{marker}"
            )],
            "env": ["HOOK_ENV=from-the-hook"]
        }]});
    });
    let root = s.path().join("root");
    let out = moat(&root, &["run", "--bundle", b.to_str().unwrap(), "sh1"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("from-the-hook 1000 /tmp {")
            && stdout.contains("\"id\":\"sh1\"")
            && stdout.contains("\"status\":\"created\"")
            && stdout.ends_with("}\nprogram ran\n"),
        "{stdout}"
    );
    // As under runc, a hook's output is not the container's.
    assert!(!stdout.contains("hook-noise") && !text(&out.stderr).contains("hook-noise"));
    // The hook ran in the sandbox: nothing of it is on the host.
    assert!(!Path::new("/tmp").join(&marker).exists());

    for (hook, error) in [
        (
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo no good >&2; exit 4"]}),
            "startContainer hook #0 (/bin/sh): exit status 4, output: no good",
        ),
        (
            serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}),
            "startContainer hook #0 (/bin/sleep): timed out after 1 s",
        ),
        (
            serde_json::json!({"path": "/no/such/hook"}),
            "startContainer hook #0 (/no/such/hook)",
        ),
    ] {
        edit_config(&b, |c| {
            c["hooks"] = serde_json::json!({"startContainer": [hook]});
        });
        let out = moat(&root, &["run", "--bundle", b.to_str().unwrap(), "sh2"]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(error), "{}", text(&out.stderr));
        assert!(!text(&out.stdout).contains("program ran"));
        assert_eq!(status(&root, "sh2"), None);
    }
}

/// `ps` lists the container's processes as the sandbox sees them (runc's `--format json` is
/// their pids), and `events --stats` reports the kernel's figures in runc's shape.
#[test]
fn ps_and_stats_come_from_the_sandbox_kernel() {
    let s = Scratch::new("oci-ps");
    let b = bundle(
        &s.path().join("b"),
        &["sh", "-c", "sleep 100 & sleep 101; true"],
        false,
    );
    edit_config(&b, |c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 268435456}});
    });
    let root = s.path().join("root");
    create(&root, &b, "ps1", &s.path().join("out"));
    // Whatever happens below, the container goes.
    struct Delete<'a>(&'a Path);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = moat(self.0, &["delete", "--force", "ps1"]);
        }
    }
    let _delete = Delete(&root);
    // Created: no process has run yet.
    let out = moat(&root, &["ps", "--format", "json", "ps1"]);
    assert_eq!(text(&out.stdout).trim(), "[]", "{}", text(&out.stderr));
    assert!(moat(&root, &["start", "ps1"]).status.success());
    assert!(
        eventually(10, || {
            let out = moat(&root, &["ps", "--format", "json", "ps1"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
                == Some(serde_json::json!([1, 2, 3]))
        }),
        "{}",
        text(&moat(&root, &["ps", "--format", "json", "ps1"]).stdout)
    );
    // Each child shows its own command once it has exec'd (a forked shell shows the
    // shell's until then).
    let expected = [
        ["0", "1", "0", "sh -c sleep 100 & sleep 101; true"],
        ["0", "2", "1", "sleep 100"],
        ["0", "3", "1", "sleep 101"],
    ];
    let rows = || {
        let table = text(&moat(&root, &["ps", "ps1"]).stdout);
        let rows: Vec<Vec<String>> = table
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() < 8 {
                    return f.iter().map(|s| (*s).to_string()).collect();
                }
                vec![f[0].into(), f[1].into(), f[2].into(), f[7..].join(" ")]
            })
            .collect();
        (table, rows)
    };
    assert!(
        eventually(10, || rows().1[1..]
            == expected.map(|r| r.map(String::from).to_vec())),
        "{}",
        rows().0
    );
    // The header's columns are `ps -ef`'s (UID PID PPID C STIME TTY TIME CMD).
    assert_eq!(rows().1[0], ["UID", "PID", "PPID", "CMD"]);

    let out = moat(&root, &["events", "--stats", "ps1"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["id"], "ps1");
    let data = &stats["data"];
    assert_eq!(data["pids"]["current"], 3, "{stats}");
    assert_eq!(data["memory"]["usage"]["limit"], 268_435_456_u64, "{stats}");
    let usage = data["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!((1 << 16..1 << 28).contains(&usage), "{stats}");
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{stats}"
    );

    assert!(moat(&root, &["delete", "--force", "ps1"]).status.success());
}
