//! The real clients drive Moat as their runtime, with runc beside it as the reference, in one
//! test each (shared/clients/NOTES.md says how they run on these machines): `ctr` under a
//! containerd the test starts, `podman`, and `docker` under a dockerd the test starts with a
//! `runtimes` entry for Moat. Every daemon runs from a scratch directory and
//! is stopped at the end. A client that cannot run here (not installed, no cgroups, a daemon
//! that does not come up) makes its test print `SKIP: why` and pass; where it can, it runs.
//!
//! Packages: scripts/setup installs containerd, podman, docker.io, runc, umoci and skopeo.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{busybox_rootfs, eventually, have, text, Scratch, MOAT};

fn skip(why: &str) {
    println!("SKIP: {why}");
    eprintln!("SKIP: {why}");
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run a client")
}

/// Unmount whatever a client left mounted below `dir` (podman's storage), deepest first.
fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// A daemon started by a test, killed (by its pid) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: dockerd then stops the containerd it started.
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if !eventually(15, || matches!(self.0.try_wait(), Ok(Some(_)))) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The busybox image as an OCI archive (umoci), for `ctr image import`.
fn oci_image(dir: &Path) -> Option<PathBuf> {
    let layout = dir.join("layout");
    let unpacked = dir.join("unpacked");
    let l = format!("{}:latest", layout.display());
    let steps: [&[&str]; 3] = [
        &["init", "--layout", layout.to_str()?],
        &["new", "--image", &l],
        &["unpack", "--image", &l, unpacked.to_str()?],
    ];
    for args in steps {
        let out = run(Command::new("umoci").args(args));
        if !out.status.success() {
            skip(&format!("umoci {args:?}: {}", text(&out.stderr)));
            return None;
        }
    }
    busybox_rootfs(&unpacked.join("rootfs"));
    for args in [
        vec!["repack", "--image", &l, unpacked.to_str()?],
        vec!["config", "--image", &l, "--config.cmd", "/bin/sh"],
    ] {
        let out = run(Command::new("umoci").args(&args));
        if !out.status.success() {
            skip(&format!("umoci {args:?}: {}", text(&out.stderr)));
            return None;
        }
    }
    let tar = dir.join("img.tar");
    let out = run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    out.status.success().then_some(tar)
}

/// What a client's run of a container gave.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    stdout: String,
    code: Option<i32>,
}

fn seen(out: &Output) -> Seen {
    Seen {
        stdout: text(&out.stdout),
        code: out.status.code(),
    }
}

#[test]
fn ctr_runs_containers_with_moat_as_with_runc() {
    for tool in [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "umoci",
        "runc",
    ] {
        if !have(tool) {
            return skip(&format!(
                "{tool} is not installed (scripts/setup installs it)"
            ));
        }
    }
    let s = Scratch::new("ctr");
    let d = s.path();
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n",
            d.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("containerd.log")).unwrap();
    let daemon = Daemon(
        Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd"),
    );
    let sock = d.join("containerd.sock");
    let ctr =
        |args: &[&str]| -> Output { run(Command::new("ctr").arg("-a").arg(&sock).args(args)) };
    if !eventually(15, || sock.exists() && ctr(&["version"]).status.success()) {
        let log = std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default();
        drop(daemon);
        return skip(&format!("containerd did not come up: {log}"));
    }
    let Some(tar) = oci_image(d) else { return };
    let out = ctr(&[
        "image",
        "import",
        "--base-name",
        "local/busybox",
        "--digests",
        tar.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let image = "local/busybox:latest";
    let tag = std::process::id();
    for runtime in ["runc", MOAT] {
        let name = if runtime == MOAT { "moat" } else { "runc" };
        let id = |what: &str| format!("{name}-{what}-{tag}");
        // Output and exit status of a short container.
        let out = ctr(&[
            "run",
            "--rm",
            "--runc-binary",
            runtime,
            image,
            &id("echo"),
            "sh",
            "-c",
            "echo hi from container; exit 5",
        ]);
        assert_eq!(
            seen(&out),
            Seen {
                stdout: "hi from container\n".into(),
                code: Some(5)
            },
            "{name}: {}",
            text(&out.stderr)
        );
        // A detached container: exec into it, then kill it.
        let c = id("long");
        let out = ctr(&[
            "run",
            "-d",
            "--runc-binary",
            runtime,
            image,
            &c,
            "sh",
            "-c",
            "echo ready > /tmp/ready; trap 'exit 7' TERM; while :; do sleep 0.05; done",
        ]);
        assert!(
            out.status.success(),
            "{name}: run -d: {}",
            text(&out.stderr)
        );
        assert!(
            eventually(10, || ctr(&[
                "task",
                "exec",
                "--exec-id",
                "probe",
                &c,
                "cat",
                "/tmp/ready"
            ])
            .stdout
                == b"ready\n"),
            "{name}: exec never saw the container's file"
        );
        // Once in many runs ctr has reported this exec's exit with its output missing (under
        // investigation, see the issue notes): a second exec must then show it.
        let exec = |exec_id: &str| {
            ctr(&[
                "task",
                "exec",
                "--exec-id",
                exec_id,
                &c,
                "sh",
                "-c",
                "echo in exec; exit 3",
            ])
        };
        let mut out = exec("e1");
        if out.stdout.is_empty() {
            eprintln!("{name}: ctr exec printed nothing, once: {out:?}");
            out = exec("e2");
        }
        assert_eq!(
            seen(&out),
            Seen {
                stdout: "in exec\n".into(),
                code: Some(3)
            },
            "{name}: exec: {}",
            text(&out.stderr)
        );
        let out = ctr(&["task", "kill", "--signal", "SIGTERM", &c]);
        assert!(out.status.success(), "{name}: kill: {}", text(&out.stderr));
        assert!(
            eventually(10, || text(&ctr(&["task", "ls"]).stdout)
                .lines()
                .any(|l| l.starts_with(&c) && l.contains("STOPPED"))),
            "{name}: the container did not stop"
        );
        assert!(ctr(&["task", "rm", &c]).status.success());
        assert!(ctr(&["container", "rm", &c]).status.success());
    }
    drop(daemon);
    unmount_below(d);
}

#[test]
fn podman_runs_containers_with_moat_as_with_runc() {
    for tool in ["podman", "runc"] {
        if !have(tool) {
            return skip(&format!(
                "{tool} is not installed (scripts/setup installs it)"
            ));
        }
    }
    let s = Scratch::new("podman");
    let d = s.path();
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    std::fs::write(
        d.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=16384:16384\", \"nproc=16384:16384\"]\n\
             netns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\nevents_logfile_path = \"{0}/events.log\"\n\
             tmp_dir = \"{0}/tmp\"\n",
            d.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/runroot\"\n",
            d.display()
        ),
    )
    .unwrap();
    let podman = |args: &[&str]| -> Output {
        run(Command::new("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .args(args))
    };
    let rootfs = d.join("rootfs");
    busybox_rootfs(&rootfs);
    let tar = d.join("rootfs.tar");
    assert!(run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .status
    .success());
    let out = podman(&["import", tar.to_str().unwrap(), "localhost/busybox:latest"]);
    if !out.status.success() {
        unmount_below(d);
        return skip(&format!(
            "podman cannot import an image here: {}",
            text(&out.stderr)
        ));
    }
    let image = "localhost/busybox:latest";
    let tag = std::process::id();
    for runtime in ["runc", MOAT] {
        let name = if runtime == MOAT { "moat" } else { "runc" };
        let base = ["--runtime", runtime];
        let with = |args: &[&str]| -> Output {
            let mut all = base.to_vec();
            all.extend_from_slice(args);
            podman(&all)
        };
        let out = with(&[
            "run",
            "--rm",
            "--network=none",
            image,
            "sh",
            "-c",
            "echo hi; exit 4",
        ]);
        assert_eq!(
            seen(&out),
            Seen {
                stdout: "hi\n".into(),
                code: Some(4)
            },
            "{name}: {}",
            text(&out.stderr)
        );
        // A terminal (conmon's console socket): the program's stdout is a tty.
        let out = with(&[
            "run",
            "--rm",
            "-t",
            "--network=none",
            image,
            "sh",
            "-c",
            "test -t 1 && echo tty-ok",
        ]);
        assert!(
            text(&out.stdout).contains("tty-ok"),
            "{name}: -t: {:?} {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{name}: -t");
        // Detached: exec, kill with a handled signal, the exit code through wait.
        let c = format!("{name}-long-{tag}");
        let out = with(&[
            "run",
            "-d",
            "--name",
            &c,
            "--network=none",
            image,
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done",
        ]);
        assert!(
            out.status.success(),
            "{name}: run -d: {}",
            text(&out.stderr)
        );
        assert!(
            eventually(10, || with(&["exec", &c, "cat", "/tmp/ready"]).stdout
                == b"ready\n"),
            "{name}: exec never saw the container's file"
        );
        let out = with(&["exec", &c, "sh", "-c", "echo in exec; exit 6"]);
        assert_eq!(
            seen(&out),
            Seen {
                stdout: "in exec\n".into(),
                code: Some(6)
            },
            "{name}: exec: {}",
            text(&out.stderr)
        );
        let out = with(&[
            "exec",
            "-t",
            &c,
            "sh",
            "-c",
            "test -t 0 && echo exec-tty-ok",
        ]);
        assert!(
            text(&out.stdout).contains("exec-tty-ok"),
            "{name}: exec -t: {:?} {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let out = with(&["kill", "--signal", "TERM", &c]);
        assert!(out.status.success(), "{name}: kill: {}", text(&out.stderr));
        let out = with(&["wait", &c]);
        assert_eq!(
            text(&out.stdout).trim(),
            "9",
            "{name}: wait: {}",
            text(&out.stderr)
        );
        assert!(with(&["rm", &c]).status.success());
        // Killed by a signal it does not handle: 128+N.
        let c = format!("{name}-killed-{tag}");
        let out = with(&[
            "run",
            "-d",
            "--name",
            &c,
            "--network=none",
            image,
            "sleep",
            "100",
        ]);
        assert!(
            out.status.success(),
            "{name}: run -d: {}",
            text(&out.stderr)
        );
        assert!(with(&["kill", "--signal", "KILL", &c]).status.success());
        let out = with(&["wait", &c]);
        assert_eq!(
            text(&out.stdout).trim(),
            "137",
            "{name}: wait: {}",
            text(&out.stderr)
        );
        assert!(with(&["rm", &c]).status.success());
    }
    let _ = podman(&["rm", "-af"]);
    unmount_below(d);
}

#[test]
fn docker_runs_containers_with_moat_as_with_runc() {
    if !have("dockerd") || !Path::new("/usr/bin/docker").exists() {
        return skip(
            "dockerd or /usr/bin/docker is not installed (scripts/setup installs docker.io)",
        );
    }
    let s = Scratch::new("docker");
    let d = s.path();
    std::fs::write(
        d.join("daemon.json"),
        serde_json::json!({"runtimes": {"moat": {"path": MOAT}}}).to_string(),
    )
    .unwrap();
    let sock = d.join("docker.sock");
    let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
    let daemon = Daemon(
        Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd"),
    );
    // Debian's client, which matches the daemon (another on PATH may not).
    let docker = |args: &[&str]| -> Output {
        run(Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args))
    };
    if !eventually(30, || docker(&["version"]).status.success()) {
        let log = std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default();
        drop(daemon);
        unmount_below(d);
        return skip(&format!("dockerd did not come up: {log}"));
    }
    let rootfs = d.join("rootfs");
    busybox_rootfs(&rootfs);
    let tar = d.join("rootfs.tar");
    assert!(run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .status
    .success());
    let out = docker(&["import", tar.to_str().unwrap(), "local/busybox:latest"]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let image = "local/busybox:latest";
    let tag = std::process::id();
    for runtime in ["runc", "moat"] {
        let name = runtime;
        let rt = format!("--runtime={runtime}");
        let out = docker(&[
            "run",
            "--rm",
            "--network=none",
            &rt,
            image,
            "sh",
            "-c",
            "echo hi; exit 3",
        ]);
        assert_eq!(
            seen(&out),
            Seen {
                stdout: "hi\n".into(),
                code: Some(3)
            },
            "{name}: {}",
            text(&out.stderr)
        );
        let out = docker(&[
            "run",
            "--rm",
            "-t",
            "--network=none",
            &rt,
            image,
            "sh",
            "-c",
            "test -t 1 && echo tty-ok",
        ]);
        assert!(
            text(&out.stdout).contains("tty-ok"),
            "{name}: -t: {}",
            text(&out.stderr)
        );
        let c = format!("{name}-long-{tag}");
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &c,
            "--network=none",
            &rt,
            image,
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done",
        ]);
        assert!(
            out.status.success(),
            "{name}: run -d: {}",
            text(&out.stderr)
        );
        assert!(
            eventually(10, || docker(&["exec", &c, "cat", "/tmp/ready"]).stdout
                == b"ready\n"),
            "{name}: exec never saw the container's file"
        );
        let out = docker(&["exec", &c, "sh", "-c", "echo in exec; exit 6"]);
        assert_eq!(
            seen(&out),
            Seen {
                stdout: "in exec\n".into(),
                code: Some(6)
            },
            "{name}: exec: {}",
            text(&out.stderr)
        );
        assert!(docker(&["kill", "--signal", "TERM", &c]).status.success());
        let out = docker(&["wait", &c]);
        assert_eq!(
            text(&out.stdout).trim(),
            "9",
            "{name}: wait: {}",
            text(&out.stderr)
        );
        assert!(docker(&["rm", &c]).status.success());
    }
    drop(daemon);
    unmount_below(d);
}
