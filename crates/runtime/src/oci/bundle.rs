//! An OCI bundle's `config.json`, turned into what Moat's processes need: the kernel's
//! [`KernelSpec`], the trees the gofer serves (the bundle's root, read-only, under the
//! sandbox's in-memory overlay; bind mounts of directories as volumes), and what the front
//! and the commands do themselves (terminal, hooks, cgroup limits).
//!
//! Moat honours what its model gives a meaning to and says so for the rest: every field it
//! ignores or serves differently produces a warning in the log ([`Plan::warnings`]), never a
//! silent difference. The sandbox is always fully isolated, whatever `linux.namespaces` asks;
//! a network namespace's path names the namespace whose interface the sandbox's own stack
//! takes over (`network.rs`), as runsc does.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use moat_abi::Rlimit;
use moat_kernel::capability::{self, CapSets};
use moat_kernel::{Credentials, NetworkMode, SeedFile, TmpfsMount, Volume, RLIMIT_COUNT};
use oci_spec::runtime::{Hooks, LinuxResources, PosixRlimitType, Process, Spec};

use super::OciError;
use crate::confine::Served;
use crate::control::ExecSpec;
use crate::spec::{Confinement, KernelSpec};

/// The annotation a bundle may use to ask for a *more* isolated network than the runtime's
/// `--network` gives: `none` or `sandbox`. It can never ask for the host's network (that
/// is the operator's choice, on the command line), as runsc honours only its flag.
pub const NETWORK_ANNOTATION: &str = "dev.moat.network";

/// The network a container gets: the more isolated of the runtime's `--network` and the
/// bundle's [`NETWORK_ANNOTATION`] (`none` over `sandbox` over `host`). Without a network
/// namespace in `linux.namespaces` runc would share the host's network; Moat keeps the
/// sandbox's own unless `--network=host` (as runsc does), and says so.
pub fn network_mode(
    flag: NetworkMode,
    annotation: Option<&str>,
    network_namespace: bool,
    warnings: &mut Vec<String>,
) -> NetworkMode {
    let rank = |m: NetworkMode| match m {
        NetworkMode::None => 2,
        NetworkMode::Sandbox => 1,
        NetworkMode::Host => 0,
    };
    let mut mode = flag;
    if let Some(asked) = annotation {
        match NetworkMode::parse(asked) {
            Some(NetworkMode::Host) if flag != NetworkMode::Host => warnings.push(format!(
                "annotation {NETWORK_ANNOTATION}=host: the host's network is given only by \
                 `moat --network=host`; the container gets {}",
                flag.name()
            )),
            Some(m) if rank(m) > rank(mode) => mode = m,
            Some(_) => {}
            None => warnings.push(format!(
                "annotation {NETWORK_ANNOTATION}={asked:?}: not a network mode (none, \
                 sandbox, host); ignored"
            )),
        }
    }
    if !network_namespace && mode != NetworkMode::Host {
        warnings.push(format!(
            "linux.namespaces has no network namespace (runc would share the host's \
             network): the container gets the sandbox's own network ({}); use \
             `moat --network=host` for the host's",
            mode.name()
        ));
    }
    mode
}

/// The default memory ceiling of a sandbox (the memory file's address range).
pub const MEMORY_FILE_SIZE: u64 = 64 << 30;

/// A bind mount of a file larger than this is refused (it is copied into memory).
const MAX_SEED_FILE: u64 = 1 << 20;

/// Everything `create` needs from a bundle.
#[derive(Debug)]
pub struct Plan {
    pub spec: KernelSpec,
    pub served: Vec<Served>,
    pub rootfs: PathBuf,
    pub terminal: bool,
    /// `process.consoleSize`: rows, columns.
    pub console_size: Option<(u16, u16)>,
    pub hooks: Option<Hooks>,
    pub annotations: HashMap<String, String>,
    /// `linux.namespaces` asks for a network namespace of the container's own.
    pub network_namespace: bool,
    pub cgroups_path: Option<PathBuf>,
    pub resources: Option<LinuxResources>,
    /// What Moat does not honour, or serves otherwise, one line each.
    pub warnings: Vec<String>,
    /// `linux.namespaces`' network namespace path: the sandbox takes that namespace's
    /// interface (`--network=sandbox`, `network.rs`); none gives a loopback-only sandbox.
    pub netns: Option<PathBuf>,
}

fn invalid(path: &Path, message: impl Into<String>) -> OciError {
    OciError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Read and parse `BUNDLE/config.json`: the typed spec, and the raw document (for the
/// fields the typed one would drop without a word).
pub fn load(bundle: &Path) -> Result<(Spec, serde_json::Value), OciError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(OciError::io(format!("reading {}", path.display())))?;
    let raw: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(&path, e.to_string()))?;
    if !raw.is_object() {
        return Err(invalid(&path, "not a JSON object"));
    }
    let spec: Spec =
        serde_json::from_value(raw.clone()).map_err(|e| invalid(&path, e.to_string()))?;
    Ok((spec, raw))
}

/// Read and parse an exec's `--process` file.
pub fn load_process(path: &Path) -> Result<Process, OciError> {
    let text = std::fs::read(path).map_err(OciError::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| invalid(path, e.to_string()))
}

/// Keys of `value` (an object) that are not in `known`, as `prefix.key`.
fn unknown_keys(value: &serde_json::Value, prefix: &str, known: &[&str], out: &mut Vec<String>) {
    if let Some(map) = value.as_object() {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                out.push(format!("{prefix}{key}: unknown field, ignored"));
            }
        }
    }
}

fn is_set(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// The warnings for the raw document: unknown fields, and known ones Moat does not apply.
fn raw_warnings(raw: &serde_json::Value, out: &mut Vec<String>) {
    unknown_keys(
        raw,
        "",
        &[
            "ociVersion",
            "root",
            "mounts",
            "process",
            "hostname",
            "domainname",
            "hooks",
            "annotations",
            "linux",
        ],
        out,
    );
    let process = &raw["process"];
    unknown_keys(
        process,
        "process.",
        &[
            "terminal",
            "consoleSize",
            "user",
            "args",
            "commandLine",
            "env",
            "cwd",
            "capabilities",
            "rlimits",
            "noNewPrivileges",
            "apparmorProfile",
            "oomScoreAdj",
            "selinuxLabel",
            "ioPriority",
            "scheduler",
            "execCPUAffinity",
        ],
        out,
    );
    for (field, why) in [
        (
            "apparmorProfile",
            "AppArmor is not applied inside Moat's kernel",
        ),
        (
            "selinuxLabel",
            "SELinux is not applied inside Moat's kernel",
        ),
        ("oomScoreAdj", "not applied"),
        ("ioPriority", "not applied"),
        ("scheduler", "not applied"),
        ("execCPUAffinity", "not applied"),
        ("commandLine", "a Windows field"),
    ] {
        if is_set(&process[field]) {
            out.push(format!("process.{field}: {why}, ignored"));
        }
    }
    if is_set(&raw["domainname"]) {
        out.push("domainname: not applied, ignored".into());
    }
    let linux = &raw["linux"];
    unknown_keys(
        linux,
        "linux.",
        &[
            "namespaces",
            "uidMappings",
            "gidMappings",
            "timeOffsets",
            "devices",
            "cgroupsPath",
            "resources",
            "intelRdt",
            "sysctl",
            "seccomp",
            "rootfsPropagation",
            "maskedPaths",
            "readonlyPaths",
            "mountLabel",
            "personality",
            "netDevices",
            "memoryPolicy",
        ],
        out,
    );
    for (field, why) in [
        (
            "seccomp",
            "the application's system calls are all served by Moat's kernel and never reach the \
             host; the profile's own restrictions are not enforced inside the sandbox",
        ),
        ("uidMappings", "the sandbox's ids are its own; not applied"),
        ("gidMappings", "the sandbox's ids are its own; not applied"),
        ("timeOffsets", "not applied"),
        ("intelRdt", "not applied"),
        (
            "sysctl",
            "the sandbox's /proc/sys is Moat's own; not applied",
        ),
        ("mountLabel", "SELinux is not applied"),
        ("personality", "not applied"),
        (
            "netDevices",
            "the sandbox has no network devices; not applied",
        ),
        ("memoryPolicy", "not applied"),
    ] {
        if is_set(&linux[field]) {
            out.push(format!("linux.{field}: {why}"));
        }
    }
    if let Some(namespaces) = linux["namespaces"].as_array() {
        for ns in namespaces {
            let network = ns["type"].as_str() == Some("network");
            if let Some(path) = ns["path"].as_str().filter(|p| !p.is_empty() && !network) {
                out.push(format!(
                    "linux.namespaces: joining the {} namespace at {path} is not supported; \
                     the sandbox has its own",
                    ns["type"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    if let Some(devices) = linux["devices"].as_array() {
        for d in devices {
            let path = d["path"].as_str().unwrap_or("?");
            if !matches!(
                path,
                "/dev/null"
                    | "/dev/zero"
                    | "/dev/full"
                    | "/dev/random"
                    | "/dev/urandom"
                    | "/dev/tty"
            ) {
                out.push(format!(
                    "linux.devices: {path} is not provided (Moat's /dev has null, zero, full, \
                     random, urandom and tty)"
                ));
            }
        }
    }
}

/// `hooks.startContainer`: run as runc runs them, in the container (its file tree, user and
/// working directory) after `start`, before the program; here as processes of the sandbox.
fn start_hooks(spec: &Spec) -> Vec<crate::spec::StartHook> {
    let list = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    list.iter()
        .map(|h| crate::spec::StartHook {
            path: bytes(h.path()),
            args: h
                .args()
                .clone()
                .unwrap_or_else(|| vec![h.path().to_string_lossy().into_owned()])
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            env: h
                .env()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            timeout: h.timeout().and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
        })
        .collect()
}

/// A process's credentials: `user.uid`, `user.gid`, `user.additionalGids`, and the
/// capability sets of `capabilities` as runc leaves them just before it executes the program
/// (the kernel then moves them as `execve` does). Without `capabilities`, root keeps every
/// capability and other users have none, as with runc.
fn credentials(process: &Process) -> Credentials {
    let user = process.user();
    let mut creds = Credentials::for_user(
        user.uid(),
        user.gid(),
        user.additional_gids().clone().unwrap_or_default(),
    );
    if let Some(caps) = process.capabilities() {
        let set = |listed: &Option<oci_spec::runtime::Capabilities>| {
            listed
                .iter()
                .flatten()
                .filter_map(|c| capability::by_name(&c.to_string()))
                .fold(0u64, |set, cap| set | 1 << cap)
        };
        let permitted = set(caps.permitted());
        let inheritable = set(caps.inheritable());
        creds.caps = CapSets {
            effective: set(caps.effective()) & permitted,
            permitted,
            inheritable,
            bounding: set(caps.bounding()),
            // An ambient capability must be permitted and inheritable (runc skips others).
            ambient: set(caps.ambient()) & permitted & inheritable,
        };
    }
    creds
}

fn rlimit_index(t: PosixRlimitType) -> Option<usize> {
    use PosixRlimitType as T;
    Some(match t {
        T::RlimitCpu => 0,
        T::RlimitFsize => 1,
        T::RlimitData => 2,
        T::RlimitStack => 3,
        T::RlimitCore => 4,
        T::RlimitRss => 5,
        T::RlimitNproc => 6,
        T::RlimitNofile => 7,
        T::RlimitMemlock => 8,
        T::RlimitAs => 9,
        T::RlimitLocks => 10,
        T::RlimitSigpending => 11,
        T::RlimitMsgqueue => 12,
        T::RlimitNice => 13,
        T::RlimitRtprio => 14,
        T::RlimitRttime => 15,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// The process's limits: this process's, with `process.rlimits` applied over them.
fn limits(process: &Process, path: &Path) -> Result<[Rlimit; RLIMIT_COUNT], OciError> {
    let mut limits = crate::host::limits();
    for l in process.rlimits().iter().flatten() {
        if l.soft() > l.hard() {
            return Err(invalid(
                path,
                format!(
                    "process.rlimits: {:?} soft limit above the hard one",
                    l.typ()
                ),
            ));
        }
        if let Some(i) = rlimit_index(l.typ()) {
            limits[i] = Rlimit {
                cur: l.soft(),
                max: l.hard(),
            };
        }
    }
    Ok(limits)
}

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// What an exec (or the init) process runs: the OCI `process` as the kernel's terms.
pub fn exec_spec(process: &Process, path: &Path) -> Result<ExecSpec, OciError> {
    let args = process.args().clone().unwrap_or_default();
    let Some(program) = args.first() else {
        return Err(invalid(path, "process.args must not be empty"));
    };
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(invalid(path, "process.cwd must be an absolute path"));
    }
    Ok(ExecSpec {
        filename: program.as_bytes().to_vec(),
        argv: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: process
            .env()
            .iter()
            .flatten()
            .map(|e| e.as_bytes().to_vec())
            .collect(),
        cwd: bytes(cwd),
        creds: credentials(process),
        umask: process.user().umask().unwrap_or(0o022),
        search_path: true,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
    })
}

/// The `mode=` option of a tmpfs mount (octal), else 1777 as Linux's tmpfs.
fn tmpfs_mode(options: &[String]) -> u32 {
    options
        .iter()
        .find_map(|o| o.strip_prefix("mode="))
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .unwrap_or(0o1777)
        & 0o7777
}

/// Turn a bundle into the sandbox's plan.
pub fn plan(
    bundle: &Path,
    spec: &Spec,
    raw: &serde_json::Value,
    platform: &str,
) -> Result<Plan, OciError> {
    let path = bundle.join("config.json");
    let mut warnings = Vec::new();
    raw_warnings(raw, &mut warnings);
    if !spec.version().starts_with("1.") {
        warnings.push(format!(
            "ociVersion {}: Moat follows {}",
            spec.version(),
            super::OCI_VERSION
        ));
    }

    let Some(root) = spec.root() else {
        return Err(invalid(&path, "root is missing"));
    };
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(OciError::io(format!("root.path {}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(invalid(
            &path,
            format!("root.path {} is not a directory", rootfs.display()),
        ));
    }
    let Some(process) = spec.process() else {
        return Err(invalid(&path, "process is missing (nothing to run)"));
    };
    let exec = exec_spec(process, &path)?;
    // The gofer's trees: 0 the root (read-only: writes land in the overlay), 1.. volumes.
    let mut served = vec![Served {
        host_path: rootfs.clone(),
        read_only: true,
    }];
    let mut volumes = Vec::new();
    let mut tmpfs_mounts = Vec::new();
    let mut seed_files = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(invalid(
                &path,
                format!("mounts: destination {} must be absolute", dest.display()),
            ));
        }
        let options = m.options().clone().unwrap_or_default();
        let typ = m.typ().clone().unwrap_or_default();
        let read_only = options.iter().any(|o| o == "ro");
        let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let dest_s = dest.to_string_lossy();
        if is_bind {
            let Some(source) = m.source() else {
                return Err(invalid(
                    &path,
                    format!("mounts: bind to {dest_s} without a source"),
                ));
            };
            let source = if source.is_absolute() {
                source.clone()
            } else {
                bundle.join(source)
            };
            let meta = match std::fs::metadata(&source) {
                Ok(meta) => meta,
                Err(e) => {
                    return Err(OciError::io(format!(
                        "mounts: bind source {}",
                        source.display()
                    ))(e))
                }
            };
            if meta.is_dir() {
                let host = std::fs::canonicalize(&source)
                    .map_err(OciError::io(format!("mounts: {}", source.display())))?;
                served.push(Served {
                    host_path: host,
                    read_only,
                });
                volumes.push(Volume {
                    path: bytes(dest),
                    mount: volumes.len() as u64 + 1,
                    read_only,
                });
            } else if meta.is_file() && meta.len() <= MAX_SEED_FILE {
                let contents = std::fs::read(&source)
                    .map_err(OciError::io(format!("mounts: {}", source.display())))?;
                warnings.push(format!(
                    "mounts: {dest_s} (a bind mount of the file {}) is a copy made at create: \
                     changes on either side are not seen by the other",
                    source.display()
                ));
                seed_files.push(SeedFile {
                    path: bytes(dest),
                    contents,
                    mode: std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
                });
            } else {
                warnings.push(format!(
                    "mounts: {dest_s}: bind mounts of {} are not supported, not mounted",
                    if meta.is_file() {
                        "files over 1 MiB"
                    } else {
                        "devices, sockets and FIFOs"
                    }
                ));
            }
            continue;
        }
        match (typ.as_str(), dest_s.as_ref()) {
            // Moat's own /dev (devfs, with /dev/shm and /dev/pts), /proc and /sys.
            ("tmpfs", "/dev" | "/dev/shm")
            | ("proc", "/proc")
            | ("sysfs", "/sys")
            | ("devpts", "/dev/pts")
            | ("mqueue", "/dev/mqueue")
            | ("cgroup" | "cgroup2", "/sys/fs/cgroup") => {}
            ("tmpfs", _) => tmpfs_mounts.push(TmpfsMount {
                path: bytes(dest),
                mode: tmpfs_mode(&options),
                read_only,
            }),
            (typ, dest) => warnings.push(format!(
                "mounts: {dest} of type {typ:?} is not supported, not mounted"
            )),
        }
    }

    let linux = spec.linux().as_ref();
    let creds = exec.creds.clone();
    let kernel = KernelSpec {
        platform: platform.to_string(),
        filename: exec.filename,
        argv: exec.argv,
        envp: exec.envp,
        cwd: exec.cwd,
        cwd_required: true,
        volumes,
        root_read_only: root.readonly().unwrap_or(false),
        tmpfs_mounts,
        seed_files,
        search_path: true,
        no_new_privs: exec.no_new_privs,
        aux: crate::host::aux(&creds),
        creds,
        umask: exec.umask,
        limits: limits(process, &path)?,
        hostname: spec.hostname().clone().unwrap_or_else(|| "moat".into()),
        strace: false,
        memory_size: MEMORY_FILE_SIZE,
        // The same bound in Moat's kernel as in the host cgroup (`cgroup.rs`): the kernel's
        // OOM killer then picks a victim inside the sandbox, as Linux would inside the
        // container, rather than the host's killing the whole sandbox.
        memory_limit: linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(oci_spec::runtime::LinuxMemory::limit)
            .and_then(|l| u64::try_from(l).ok())
            .filter(|&l| l > 0)
            .unwrap_or(u64::MAX),
        cpu_mask: crate::host::cpu_mask(),
        confinement: Confinement::Full,
        debug_log: false,
        probe_seccomp: false,
        wait_for_start: true,
        network: NetworkMode::Sandbox,
        interface: None,
        host_interfaces: Vec::new(),
        start_hooks: start_hooks(spec),
        // Written by `create` once the front's pid is known.
        hook_state: Vec::new(),
    };
    let network_namespace = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|list| {
            list.iter()
                .any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
        });
    Ok(Plan {
        network_namespace,
        spec: kernel,
        served,
        rootfs,
        terminal: process.terminal().unwrap_or(false),
        console_size: process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16)),
        hooks: spec.hooks().clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroups_path: linux.and_then(|l| l.cgroups_path().clone()),
        resources: linux.and_then(|l| l.resources().clone()),
        warnings,
        netns: linux
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|nss| {
                nss.iter()
                    .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
            })
            .and_then(|n| n.path().clone())
            .filter(|p| !p.as_os_str().is_empty()),
    })
}

/// `moat spec`: a default `config.json` for a bundle whose root is `rootfs` (runc's shape:
/// `sh` on a terminal, the usual mounts and namespaces).
pub fn default_spec() -> Result<String, OciError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("moat".into()));
    serde_json::to_string_pretty(&spec).map_err(|e| OciError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &serde_json::Value) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moat-bundle-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        dir
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "process": {
                "args": ["echo", "hi"],
                "env": ["PATH=/bin"],
                "cwd": "/",
                "user": {"uid": 1000, "gid": 100, "additionalGids": [5]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 50}]
            },
            "hostname": "box",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
                {"destination": "/weird", "type": "nfs", "source": "x"}
            ],
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}},
            "surprise": 1
        })
    }

    #[test]
    fn a_bundle_becomes_a_plan() {
        let dir = bundle_with(&minimal());
        let (spec, raw) = load(&dir).unwrap();
        let plan = plan(&dir, &spec, &raw, "ptrace").unwrap();
        let k = &plan.spec;
        assert_eq!(k.filename, b"echo");
        assert!(k.search_path && k.wait_for_start && k.root_read_only);
        assert_eq!(k.creds.uid, 1000);
        assert_eq!(k.creds.egid, 100);
        assert_eq!(k.creds.groups, vec![5]);
        assert_eq!(k.limits[libc::RLIMIT_NOFILE as usize].cur, 50);
        assert_eq!(k.hostname, "box");
        assert_eq!(k.tmpfs_mounts.len(), 1);
        assert_eq!(k.tmpfs_mounts[0].mode, 0o755);
        assert_eq!(plan.served.len(), 1);
        assert!(plan.served[0].read_only);
        let text = plan.warnings.join("\n");
        assert!(text.contains("surprise: unknown field"), "{text}");
        assert!(text.contains("/weird"), "{text}");
        assert!(text.contains("linux.seccomp"), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn capabilities_become_the_programs_sets() {
        let mut config = minimal();
        config["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
        let plan_of = |config: &serde_json::Value| {
            let dir = bundle_with(config);
            let (spec, raw) = load(&dir).unwrap();
            let plan = plan(&dir, &spec, &raw, "ptrace").unwrap();
            let _ = std::fs::remove_dir_all(dir);
            plan.spec.creds.caps
        };
        // Without `capabilities`, root has them all.
        assert_eq!(plan_of(&config).effective, capability::ALL_CAPS);
        let chown = 1 << capability::Cap::Chown as u32;
        let bind = 1 << capability::Cap::NetBindService as u32;
        config["process"]["capabilities"] = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
        });
        let caps = plan_of(&config);
        assert_eq!(caps.bounding, chown | bind);
        assert_eq!(caps.effective, chown);
        assert_eq!(caps.permitted, chown | bind);
        assert_eq!(caps.inheritable, bind);
        // CAP_CHOWN is not inheritable, so it cannot be ambient.
        assert_eq!(caps.ambient, bind);
    }

    #[test]
    fn bind_mounts_are_volumes_or_copies() {
        let mut config = minimal();
        let host = std::env::temp_dir().join(format!("moat-bind-{}", std::process::id()));
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        config["mounts"] = serde_json::json!([
            {"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": host.join("hosts"), "options": ["bind"]}
        ]);
        let dir = bundle_with(&config);
        let (spec, raw) = load(&dir).unwrap();
        let plan = plan(&dir, &spec, &raw, "ptrace").unwrap();
        assert_eq!(plan.served.len(), 2);
        assert!(plan.served[1].read_only);
        assert_eq!(plan.spec.volumes[0].path, b"/data");
        assert_eq!(plan.spec.volumes[0].mount, 1);
        assert_eq!(plan.spec.seed_files[0].contents, b"127.0.0.1 localhost\n");
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(host);
    }

    #[test]
    fn malformed_configs_are_clear_errors() {
        for (config, needle) in [
            (serde_json::json!([1, 2]), "not a JSON object"),
            (
                serde_json::json!({"ociVersion": "1.0.2"}),
                "root is missing",
            ),
            (
                serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}}),
                "process is missing",
            ),
            (
                serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                    "process": {"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}}),
                "args must not be empty",
            ),
            (
                serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                    "process": {"args": ["x"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}}),
                "absolute",
            ),
            (
                serde_json::json!({"ociVersion": "1.0.2", "root": {"path": 5}}),
                "config.json",
            ),
        ] {
            let dir = bundle_with(&config);
            let err = load(&dir)
                .and_then(|(spec, raw)| plan(&dir, &spec, &raw, "ptrace").map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
            let _ = std::fs::remove_dir_all(dir);
        }
        let dir = bundle_with(&minimal());
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("config.json"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_default_spec_parses_back() {
        let text = default_spec().unwrap();
        let spec: Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap()[0],
            "sh"
        );
    }

    #[test]
    fn the_network_is_the_more_isolated_of_flag_and_annotation() {
        let mode = |flag, annotation, netns| {
            let mut warnings = Vec::new();
            let m = network_mode(flag, annotation, netns, &mut warnings);
            (m, warnings.len())
        };
        use NetworkMode::{Host, None as Off, Sandbox};
        assert_eq!(mode(Sandbox, None, true), (Sandbox, 0));
        assert_eq!(mode(Host, None, true), (Host, 0));
        assert_eq!(mode(Host, Some("none"), true), (Off, 0));
        assert_eq!(mode(Host, Some("sandbox"), true), (Sandbox, 0));
        assert_eq!(mode(Off, Some("sandbox"), true), (Off, 0));
        // A bundle cannot ask for the host's network; it is told so.
        assert_eq!(mode(Sandbox, Some("host"), true), (Sandbox, 1));
        assert_eq!(mode(Sandbox, Some("bogus"), true), (Sandbox, 1));
        // No network namespace: runc would share the host's; Moat says what it does instead.
        assert_eq!(mode(Sandbox, None, false), (Sandbox, 1));
        assert_eq!(mode(Host, None, false), (Host, 0));
    }
}
