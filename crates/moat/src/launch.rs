//! `moat do`: gather what the sandbox inherits from the caller (program, arguments,
//! environment, stdio, working directory, credentials, limits) and start the sandbox's gofer
//! and kernel processes (`moat_runtime`), which confine themselves; this front process stays
//! outside, owns the terminal, passes host signals on and relays the exit status.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use moat_kernel::Credentials;
use moat_runtime::confine::Served;
use moat_runtime::launch::{EXIT_MOAT_FAILED, EXIT_NOT_FOUND};
use moat_runtime::{Confinement, KernelSpec};

use crate::DoArgs;
use moat_kernel::NetworkMode;

/// Default size of the memory file's range: the ceiling on the sandbox's memory.
const MEMORY_FILE_SIZE: u64 = 64 << 30;

/// Set in `moat do`'s environment (by a test), makes the confined kernel process issue a
/// host system call its seccomp allowlist refuses, to show that the filter kills it. Read
/// only here, in the front: nothing inside the sandbox can set it for a running kernel.
const SECCOMP_PROBE_ENV: &str = "MOAT_TEST_SECCOMP_PROBE";

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("moat: {msg}");
    ExitCode::from(code)
}

/// Find the program like a shell does: a name with a '/' is a path, others are looked up in
/// `PATH`.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `--volume HOST:SANDBOX[:ro]` options: the kernel's bind mounts (gofer mounts 1, 2, ...)
/// and the gofer's `--mount` arguments for them.
fn parse_volumes(specs: &[String]) -> Result<(Vec<moat_kernel::Volume>, Vec<Served>), String> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (rest, read_only) = match spec.strip_suffix(":ro") {
            Some(r) => (r, true),
            None => (spec.strip_suffix(":rw").unwrap_or(spec), false),
        };
        let Some((host, sandbox)) = rest.split_once(':') else {
            return Err(format!(
                "--volume {spec}: expected HOST_DIR:SANDBOX_DIR[:ro]"
            ));
        };
        if !sandbox.starts_with('/') {
            return Err(format!(
                "--volume {spec}: the sandbox path must be absolute"
            ));
        }
        let host =
            std::fs::canonicalize(host).map_err(|e| format!("--volume {spec}: {host}: {e}"))?;
        if !host.is_dir() {
            return Err(format!(
                "--volume {spec}: {} is not a directory",
                host.display()
            ));
        }
        mounts.push(Served {
            host_path: host,
            read_only,
        });
        volumes.push(moat_kernel::Volume {
            path: sandbox.as_bytes().to_vec(),
            mount: i as u64 + 1,
            read_only,
        });
    }
    Ok((volumes, mounts))
}

/// Open the debug log before the sandbox starts (its kernel could not open it later).
fn open_debug_log(args: &DoArgs) -> Result<Option<OwnedFd>, String> {
    match &args.debug_log {
        Some(path) => std::fs::File::create(path)
            .map(|f| Some(f.into()))
            .map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(None),
    }
}

/// `moat do`.
pub fn run_do(args: &DoArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::ERROR)
        .init();
    let log = match open_debug_log(args) {
        Ok(log) => log,
        Err(e) => return fail(EXIT_MOAT_FAILED, &format!("cannot open the debug log {e}")),
    };
    let program = PathBuf::from(&args.command[0]);
    let shown = program.display().to_string();
    let Some(path) = resolve(&program) else {
        return fail(
            EXIT_NOT_FOUND,
            &format!("{shown}: No such file or directory"),
        );
    };
    // Whether it exists is the sandbox's question (a volume or --cwd may change the answer).
    let (volumes, mut served) = match parse_volumes(&args.volumes) {
        Ok(v) => v,
        Err(e) => return fail(2, &e),
    };
    served.insert(
        0,
        Served {
            host_path: PathBuf::from("/"),
            read_only: true,
        },
    );
    if moat_platform::by_name(&args.platform).is_none() {
        return fail(2, &format!("unknown platform {}", args.platform));
    }
    let confinement = if args.no_confine {
        eprintln!(
            "moat: WARNING: --no-confine: the sandbox's kernel and gofer run with your full \
             privileges and no seccomp filter; this is NOT a security boundary"
        );
        Confinement::None
    } else if args.seccomp_log {
        eprintln!(
            "moat: WARNING: --seccomp-log: host system calls outside the allowlists are \
             allowed (and logged by the host); this is NOT a security boundary"
        );
        Confinement::LogSeccomp
    } else {
        Confinement::Full
    };

    let creds = Credentials {
        uid: rustix::process::getuid().as_raw(),
        euid: rustix::process::geteuid().as_raw(),
        suid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        egid: rustix::process::getegid().as_raw(),
        sgid: rustix::process::getegid().as_raw(),
        fsuid: rustix::process::geteuid().as_raw(),
        fsgid: rustix::process::getegid().as_raw(),
        groups: rustix::process::getgroups()
            .unwrap_or_default()
            .iter()
            .map(|g| g.as_raw())
            .collect(),
        caps: moat_runtime::host::capabilities(
            rustix::process::getuid().as_raw(),
            rustix::process::geteuid().as_raw(),
        ),
        securebits: 0,
    };
    let aux = moat_runtime::host::aux(&creds);
    let umask = moat_runtime::host::umask();

    let spec = KernelSpec {
        platform: args.platform.clone(),
        filename: path.as_os_str().as_bytes().to_vec(),
        argv: args.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: std::env::vars_os()
            .map(|(k, v)| {
                let mut kv: OsString = k;
                kv.push("=");
                kv.push(v);
                kv.into_vec()
            })
            .collect(),
        cwd: match &args.cwd {
            Some(dir) => dir.as_os_str().as_bytes().to_vec(),
            None => std::env::current_dir()
                .map_or_else(|_| b"/".to_vec(), |p| p.into_os_string().into_vec()),
        },
        cwd_required: args.cwd.is_some(),
        volumes,
        root_read_only: false,
        tmpfs_mounts: Vec::new(),
        seed_files: Vec::new(),
        search_path: false,
        no_new_privs: false,
        creds,
        umask,
        limits: moat_runtime::host::limits(),
        hostname: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        aux,
        strace: args.strace,
        memory_size: MEMORY_FILE_SIZE,
        memory_limit: args.memory.unwrap_or(u64::MAX),
        cpu_mask: moat_runtime::host::cpu_mask(),
        confinement,
        debug_log: log.is_some(),
        probe_seccomp: std::env::var_os(SECCOMP_PROBE_ENV).is_some(),
        wait_for_start: false,
        network: args.network.unwrap_or(NetworkMode::Sandbox),
        interface: None,
        host_interfaces: Vec::new(),
        start_hooks: Vec::new(),
        hook_state: Vec::new(),
    };
    let mut spec = spec;
    let mut give_back = None;
    let mut veth = None;
    let net = match args.network.unwrap_or(NetworkMode::Sandbox) {
        NetworkMode::None => None,
        NetworkMode::Sandbox if args.veth => match moat_runtime::veth::Veth::make() {
            Ok((made, taken)) => {
                spec.interface = Some(taken.config);
                veth = Some(made);
                // A host resolving through a loopback stub: the sandbox gets the upstream
                // servers in its /etc/resolv.conf (in its overlay; the host's file stays).
                let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let upstream = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
                if let Some(text) = moat_runtime::veth::resolv_conf(&host, upstream.as_deref()) {
                    spec.seed_files.push(moat_kernel::SeedFile {
                        path: b"/etc/resolv.conf".to_vec(),
                        contents: text.into_bytes(),
                        mode: 0o644,
                    });
                }
                Some(taken.fd)
            }
            Err(e) => return fail(EXIT_MOAT_FAILED, &format!("--veth: {e}")),
        },
        NetworkMode::Sandbox => match moat_runtime::network::take_interface(args.network.is_some())
        {
            Ok(Some(taken)) => {
                spec.interface = Some(taken.config);
                give_back = Some(taken.give_back);
                Some(taken.fd)
            }
            Ok(None) => None,
            Err(e) => return fail(EXIT_MOAT_FAILED, &format!("--network=sandbox: {e}")),
        },
        // The kernel makes host sockets in the host's namespace: no interface to take, but
        // programs see the namespace's interfaces.
        NetworkMode::Host => {
            match moat_runtime::network::host_interfaces() {
                Ok(interfaces) => spec.host_interfaces = interfaces,
                Err(e) => eprintln!("moat: reading the host's interfaces: {e}"),
            }
            None
        }
    };
    let code = match moat_runtime::run_sandbox(&spec, &served, log, net) {
        Ok(code) => code,
        Err(e) => fail(EXIT_MOAT_FAILED, &format!("cannot start the sandbox: {e}")),
    };
    // The namespace gets its addresses back once the sandbox no longer answers for them.
    if let Some(Err(e)) = give_back.map(moat_runtime::network::GiveBack::apply) {
        eprintln!("moat: giving the network interface's addresses back: {e}");
    }
    if let Some(mut veth) = veth {
        veth.remove();
    }
    code
}

/// `moat seccomp-list`: both allowlists, as text or as docs/SECURITY.md's section.
pub fn seccomp_list(markdown: bool) -> String {
    use moat_runtime::seccomp;
    use std::fmt::Write;
    let mut out = String::new();
    let lists: Vec<(String, Vec<moat_platform::HostSyscall>)> = moat_platform::PLATFORMS
        .iter()
        .filter_map(|name| {
            let platform = moat_platform::by_name(name)?;
            Some((
                format!("kernel process, {name} platform"),
                seccomp::kernel_allowlist(platform.as_ref(), moat_kernel::NetworkMode::Sandbox),
            ))
        })
        .chain([
            (
                "kernel process's host-network section (added only with --network=host)"
                    .to_string(),
                seccomp::KERNEL_HOST_NETWORK.to_vec(),
            ),
            ("gofer process".to_string(), seccomp::gofer_allowlist()),
        ])
        .collect();
    for (title, list) in lists {
        if markdown {
            let _ = write!(
                out,
                "### The {title}: {} system calls\n\n```\n{}```\n\n",
                seccomp::count(&list),
                seccomp::listing(&list)
            );
        } else {
            let _ = write!(
                out,
                "# {title}: {} system calls\n{}",
                seccomp::count(&list),
                seccomp::listing(&list)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// docs/SECURITY.md's allowlists must be what the code installs: regenerate the section
    /// between its `seccomp-list` markers with `moat seccomp-list --markdown`.
    #[test]
    fn security_md_lists_the_allowlists_as_installed() {
        let doc = include_str!("../../../docs/SECURITY.md");
        let begin = "<!-- seccomp-list begin -->\n";
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let end = doc.find("<!-- seccomp-list end -->").expect("end marker");
        assert!(
            doc[start..end] == super::seccomp_list(true),
            "docs/SECURITY.md is stale: put `moat seccomp-list --markdown` between its markers"
        );
    }
}
