//! `linux.resources` in the host's cgroups. The container's cgroup is made at `cgroupsPath`
//! *below the cgroup of the process that creates it* (for each controller): a container never
//! leaves the limits its caller runs under. The front joins it before it starts the gofer
//! and the kernel, so every host process of the sandbox is counted (the stubs included).
//! Both cgroup v1 (one hierarchy per controller, as on these machines) and v2 are handled;
//! when the host's cgroups cannot be written, the limits are reported as not applied.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

const MOUNT: &str = "/sys/fs/cgroup";
/// v1 controllers a container gets a cgroup in (cpuset is left alone: a new cpuset cgroup
/// holds no CPUs until it is given some).
const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "blkio", "freezer"];

fn is_v2() -> bool {
    Path::new(MOUNT).join("cgroup.controllers").is_file()
}

/// This process's cgroup in `controller`'s hierarchy ("" for v2's).
fn own_cgroup(controller: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next(), parts.next(), parts.next());
        let (Some(list), Some(path)) = (list, path) else {
            continue;
        };
        let matches = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        if matches {
            return path.to_string();
        }
    }
    "/".into()
}

fn nested(base: &Path, own: &str, path: &Path) -> PathBuf {
    let mut dir = base.join(own.trim_start_matches('/'));
    for part in path.components() {
        if let std::path::Component::Normal(p) = part {
            dir.push(p);
        }
    }
    dir
}

fn write(dir: &Path, file: &str, value: &str, warnings: &mut Vec<String>) {
    if let Err(e) = std::fs::write(dir.join(file), value) {
        warnings.push(format!(
            "linux.resources: writing {value} to {}: {e}; not applied",
            dir.join(file).display()
        ));
    }
}

/// Make the container's cgroups, set the limits, and put `pid` in them. Returns the
/// directories made (for [`remove`]); what could not be done is in `warnings`.
pub fn apply(
    path: &Path,
    resources: Option<&LinuxResources>,
    pid: i32,
    warnings: &mut Vec<String>,
) -> Vec<PathBuf> {
    let mut made = Vec::new();
    let v2 = is_v2();
    let controllers: Vec<&str> = if v2 {
        vec![""]
    } else {
        V1_CONTROLLERS.to_vec()
    };
    for controller in controllers {
        let base = Path::new(MOUNT).join(controller);
        if !base.is_dir() {
            continue;
        }
        let dir = nested(&base, &own_cgroup(controller), path);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warnings.push(format!(
                "linux.cgroupsPath: cannot make {}: {e}; resource limits are not applied",
                dir.display()
            ));
            continue;
        }
        made.push(dir.clone());
        if let Some(r) = resources {
            limits(&dir, controller, r, warnings);
        }
        write(&dir, "cgroup.procs", &pid.to_string(), warnings);
    }
    made
}

fn limits(dir: &Path, controller: &str, r: &LinuxResources, warnings: &mut Vec<String>) {
    let memory = r
        .memory()
        .as_ref()
        .and_then(oci_spec::runtime::LinuxMemory::limit)
        .filter(|&l| l > 0);
    let cpu = r.cpu().as_ref();
    let quota = cpu
        .and_then(oci_spec::runtime::LinuxCpu::quota)
        .filter(|&q| q > 0);
    let period = cpu.and_then(oci_spec::runtime::LinuxCpu::period);
    let shares = cpu.and_then(oci_spec::runtime::LinuxCpu::shares);
    let pids = r
        .pids()
        .as_ref()
        .map(oci_spec::runtime::LinuxPids::limit)
        .filter(|&l| l > 0);
    match controller {
        "" => {
            if let Some(l) = memory {
                write(dir, "memory.max", &l.to_string(), warnings);
            }
            if let Some(q) = quota {
                let p = period.unwrap_or(100_000);
                write(dir, "cpu.max", &format!("{q} {p}"), warnings);
            }
            if let Some(l) = pids {
                write(dir, "pids.max", &l.to_string(), warnings);
            }
        }
        "memory" => {
            if let Some(l) = memory {
                write(dir, "memory.limit_in_bytes", &l.to_string(), warnings);
            }
        }
        "cpu" => {
            if let Some(p) = period {
                write(dir, "cpu.cfs_period_us", &p.to_string(), warnings);
            }
            if let Some(q) = quota {
                write(dir, "cpu.cfs_quota_us", &q.to_string(), warnings);
            }
            if let Some(s) = shares.filter(|&s| s > 0) {
                write(dir, "cpu.shares", &s.to_string(), warnings);
            }
        }
        "pids" => {
            if let Some(l) = pids {
                write(dir, "pids.max", &l.to_string(), warnings);
            }
        }
        _ => {}
    }
}

/// The freezer state file of a container's cgroups (for pause and resume), if there is one.
pub fn freezer(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        ["freezer.state", "cgroup.freeze"]
            .iter()
            .map(|f| d.join(f))
            .find(|f| f.is_file())
    })
}

/// Remove the container's cgroups (once its processes are gone; retried briefly, as the
/// host empties a cgroup a little after its last process died).
pub fn remove(dirs: &[PathBuf]) {
    for dir in dirs {
        for _ in 0..50 {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        // Parents made for the path (`default/` of `/default/ID`) stay, as runc leaves them.
    }
}
