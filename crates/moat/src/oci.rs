//! The runc-compatible commands: what containerd's runc shim, podman's conmon and docker send
//! a runtime (shared/clients/argv.txt). The work is `moat_runtime::oci::ops`; this file
//! parses the command lines and prints as runc prints.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use moat_runtime::oci::log::Log;
use moat_runtime::oci::ops::{self, Globals};
use moat_runtime::oci::{bundle, state, OciError};

/// runc's global options.
#[derive(Args, Debug, Default)]
pub struct GlobalArgs {
    /// Where containers' state lives.
    #[arg(long, value_name = "DIR", default_value = state::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write the log to this file (errors and warnings go to stderr without it).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The log's format.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log debug lines too.
    #[arg(long)]
    pub debug: bool,
    /// Accepted for compatibility: Moat manages cgroups itself (cgroupfs).
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility (runc's rootless mode): ignored.
    #[arg(long, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    /// Whose network containers' TCP and UDP sockets use, as runsc's `--network`:
    /// `sandbox` (Moat's own stack, whatever the bundle's namespaces say), `none`
    /// (loopback only), `host` (real host sockets; weaker, see docs/SECURITY.md). A bundle's
    /// `dev.moat.network` annotation may ask for more isolation, never less.
    #[arg(long, value_name = "MODE", default_value = "sandbox", value_parser = crate::parse_network)]
    pub network: moat_kernel::NetworkMode,
}

/// The OCI runtime commands.
#[derive(Subcommand, Debug)]
pub enum OciCommand {
    /// Create a container from an OCI bundle: its sandbox starts, its program waits for `start`.
    Create(CreateArgs),
    /// Start a created container's program.
    Start(IdArgs),
    /// Create and start a container, and (unless --detach) wait for it and delete it.
    Run(RunArgs),
    /// Print a container's OCI state (JSON).
    State(IdArgs),
    /// Send a signal to a container's init (or every process with --all).
    Kill(KillArgs),
    /// Delete a stopped container (--force: any).
    Delete(DeleteArgs),
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// List a container's host processes.
    Ps(PsArgs),
    /// List containers.
    List(ListArgs),
    /// Write a default config.json for a bundle.
    Spec(SpecArgs),
    /// Print a container's resource usage (events: --stats only, or one per interval).
    Events(EventsArgs),
    /// Freeze a container's processes (its freezer cgroup).
    Pause(IdArgs),
    /// Thaw a paused container.
    Resume(IdArgs),
    /// Print what this runtime supports (JSON, the OCI features document).
    Features,
    /// A container's front process (started by `create`).
    #[command(hide = true)]
    Front(FrontArgs),
    /// A detached exec's process (started by `exec --detach`).
    #[command(hide = true, name = "exec-front")]
    ExecFront(FrontArgs),
}

#[derive(Args, Debug)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's pid (its front process) here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to (`terminal: true`).
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for compatibility (Moat's kernel never sees the host's root).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for compatibility.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass our fds 3 .. 3+N into the container, where they are the process's 3 .. 3+N
    /// (as runc: for socket activation, or a pipe the caller reads).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container after it exits.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process of the container.
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// A signal name (TERM, SIGKILL) or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill a running container first.
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The process to run, as an OCI process JSON file.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process runs (a process stays for it; --pid-file names it).
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// The working directory in the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Environment variables to add, KEY=VALUE.
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Extra group ids.
    #[arg(long, short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Run the process with NO_NEW_PRIVS.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Accepted for compatibility (ignored).
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Accepted for compatibility (ignored).
    #[arg(long)]
    pub process_label: Option<String>,
    /// Accepted for compatibility (ignored).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Not supported for exec (warned): only `create`/`run` pass extra fds in.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    pub id: String,
    /// ps(1) options (accepted, ignored).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub options: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Accepted for compatibility.
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Between two statistics events.
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct FrontArgs {
    #[arg(long)]
    pub sync_fd: i32,
    /// The container's state directory (front) or control socket (exec-front).
    pub path: PathBuf,
}

fn globals(g: &GlobalArgs) -> Globals {
    let json = g.log_format == "json";
    let log = Log::open(g.log.as_deref(), json, g.debug);
    if g.systemd_cgroup {
        log.warn(
            "--systemd-cgroup: ignored; Moat places containers in cgroups itself (cgroupfs paths)",
        );
    }
    Globals {
        root: g.root.clone(),
        network: g.network,
        log_path: g.log.clone(),
        log_json: json,
        debug: g.debug,
        log,
    }
}

fn failed(g: &Globals, e: &OciError) -> ExitCode {
    g.log.error(&e.to_string());
    if g.log_path.is_some() {
        // runc prints fatal errors on stderr as well as in the log.
        eprintln!("moat: {e}");
    }
    ExitCode::FAILURE
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Run one OCI command.
pub fn run(global: &GlobalArgs, command: OciCommand) -> ExitCode {
    // `--preserve-fds`: take the fds before anything of ours can be opened at their numbers.
    let preserve = match &command {
        OciCommand::Create(a) => a.preserve_fds,
        OciCommand::Run(a) => a.create.preserve_fds,
        _ => 0,
    };
    let preserved = take_preserved_fds(preserve);
    let g = globals(global);
    let result = preserved.and_then(|fds| command_result(&g, command, fds));
    match result {
        Ok(code) => code,
        Err(e) => failed(&g, &e),
    }
}

/// Our fds 3 .. 3+`count`, owned and made close-on-exec (they travel to the container's
/// front over a socket, not by inheritance); each must be open, as runc requires.
fn take_preserved_fds(count: u32) -> Result<Vec<OwnedFd>, OciError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let numbers: Vec<i32> = (0..count.min(4096) as i32).map(|i| 3 + i).collect();
    let taken = moat_platform::confine::take_inherited_fds(&numbers);
    numbers
        .iter()
        .zip(taken)
        .map(|(n, fd)| {
            let fd = fd.ok_or_else(|| {
                OciError::Failed(format!("--preserve-fds {count}: fd {n} is not open"))
            })?;
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
                .map_err(|e| OciError::Failed(format!("--preserve-fds: fd {n}: {e}")))?;
            Ok(fd)
        })
        .collect()
}

fn create_options(a: &CreateArgs, preserved_fds: Vec<OwnedFd>) -> ops::CreateOptions {
    ops::CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserved_fds,
        allow_inherited_terminal: false,
    }
}

fn command_result(
    g: &Globals,
    command: OciCommand,
    preserved: Vec<OwnedFd>,
) -> Result<ExitCode, OciError> {
    match command {
        OciCommand::Create(a) => {
            ops::create(g, &create_options(&a, preserved))?;
            Ok(ExitCode::SUCCESS)
        }
        OciCommand::Start(a) => ops::start(g, &a.id).map(|()| ExitCode::SUCCESS),
        OciCommand::Run(a) => run_container(g, &a, preserved),
        OciCommand::State(a) => {
            print_json(&ops::state(g, &a.id)?);
            Ok(ExitCode::SUCCESS)
        }
        OciCommand::Kill(a) => {
            let signo = ops::parse_signal(&a.signal)?;
            ops::kill(g, &a.id, signo, a.all).map(|()| ExitCode::SUCCESS)
        }
        OciCommand::Delete(a) => ops::delete(g, &a.id, a.force).map(|()| ExitCode::SUCCESS),
        OciCommand::Exec(a) => exec(g, a),
        OciCommand::Ps(a) => {
            let processes = ops::ps(g, &a.id)?;
            if a.format == "json" {
                let pids: Vec<i32> = processes.iter().map(|p| p.pid).collect();
                print_json(&serde_json::json!(pids));
            } else {
                print!("{}", ps_table(&processes));
            }
            Ok(ExitCode::SUCCESS)
        }
        OciCommand::List(a) => {
            let all = ops::list(g);
            if a.quiet {
                for c in &all {
                    println!("{}", c["id"].as_str().unwrap_or(""));
                }
            } else if a.format == "json" {
                print_json(&serde_json::json!(all));
            } else {
                println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
                for c in &all {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\troot",
                        c["id"].as_str().unwrap_or(""),
                        c["pid"],
                        c["status"].as_str().unwrap_or(""),
                        c["bundle"].as_str().unwrap_or(""),
                        c["created"].as_str().unwrap_or(""),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        OciCommand::Spec(a) => {
            let path = a.bundle.join("config.json");
            if path.exists() {
                return Err(OciError::Failed(format!(
                    "File {} exists. Remove it first",
                    path.display()
                )));
            }
            std::fs::write(&path, bundle::default_spec()?)
                .map_err(OciError::io(format!("writing {}", path.display())))?;
            Ok(ExitCode::SUCCESS)
        }
        OciCommand::Events(a) => events(g, &a),
        OciCommand::Pause(a) => ops::freeze(g, &a.id, true).map(|()| ExitCode::SUCCESS),
        OciCommand::Resume(a) => ops::freeze(g, &a.id, false).map(|()| ExitCode::SUCCESS),
        OciCommand::Features => {
            print_json(&features());
            Ok(ExitCode::SUCCESS)
        }
        OciCommand::Front(a) => Ok(moat_runtime::oci::front::front_main(
            &a.path,
            a.sync_fd,
            Log::open(g.log_path.as_deref(), g.log_json, g.debug),
        )),
        OciCommand::ExecFront(a) => Ok(ops::exec_front_main(&a.path, a.sync_fd, &g.log)),
    }
}

/// `run`: create and start; unless detached, wait for the container, delete it and end
/// with its status (128+N for a signal, as runc).
fn run_container(g: &Globals, a: &RunArgs, preserved: Vec<OwnedFd>) -> Result<ExitCode, OciError> {
    let mut options = create_options(&a.create, preserved);
    options.allow_inherited_terminal = !a.detach;
    let mut front = ops::create(g, &options)?;
    if let Err(e) = ops::start(g, &a.create.id) {
        let _ = ops::delete(g, &a.create.id, true);
        let _ = front.wait();
        return Err(e);
    }
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    // Signals for us are for the container: the front passes them on.
    let pid = front.id() as i32;
    if let Ok(mut signals) =
        signal_hook::iterator::Signals::new(moat_runtime::oci::front::FORWARDED_SIGNALS)
    {
        std::thread::spawn(move || {
            for signo in signals.forever() {
                if let (Some(pid), Some(sig)) = (
                    rustix::process::Pid::from_raw(pid),
                    rustix::process::Signal::from_named_raw(signo),
                ) {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        });
    }
    let status = front
        .wait()
        .map_err(OciError::io("waiting for the container"))?;
    if !a.keep {
        ops::delete(g, &a.create.id, true)?;
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        _ => ExitCode::FAILURE,
    })
}

/// `exec`: the process from --process, or the container's own process with the command,
/// --cwd, --env and --user of the command line.
fn exec(g: &Globals, a: ExecArgs) -> Result<ExitCode, OciError> {
    if a.preserve_fds > 0 {
        g.log.warn(&format!(
            "exec --preserve-fds {}: not supported for exec; no extra fds are passed in",
            a.preserve_fds
        ));
    }
    let (process, source) = match &a.process {
        Some(path) => (bundle::load_process(path)?, path.clone()),
        None => {
            if a.command.is_empty() {
                return Err(OciError::Failed(
                    "exec: no command (and no --process)".into(),
                ));
            }
            let c = state::Container::open(&g.root, &a.id)?;
            let (spec, _) = bundle::load(&c.record.bundle)?;
            let mut p = spec.process().clone().unwrap_or_default();
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            if let Some(cwd) = &a.cwd {
                p.set_cwd(cwd.clone());
            }
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(a.env.iter().cloned());
            p.set_env(Some(env));
            if let Some(user) = &a.user {
                let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
                let parse = |s: &str| {
                    s.parse::<u32>().map_err(|_| {
                        OciError::Failed(format!("--user {user}: numeric UID[:GID] only"))
                    })
                };
                p.user_mut().set_uid(parse(uid)?);
                p.user_mut().set_gid(parse(gid)?);
            }
            if a.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            if !a.additional_gids.is_empty() {
                p.user_mut()
                    .set_additional_gids(Some(a.additional_gids.clone()));
            }
            (p, c.record.bundle.join("config.json"))
        }
    };
    let spec = bundle::exec_spec(&process, &source)?;
    let options = ops::ExecOptions {
        id: a.id,
        process: spec,
        terminal: process.terminal().unwrap_or(false) || a.tty,
        console_socket: a.console_socket,
        detach: a.detach,
        pid_file: a.pid_file,
    };
    ops::exec(g, &options).map(ExitCode::from)
}

/// `ps -ef`'s columns, as `runc ps` prints them; what Moat does not track (start time,
/// terminal) is `?`, the CPU column 0.
fn ps_table(processes: &[moat_kernel::inspect::ProcessEntry]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<8} {:>7} {:>7} {:>2} {:<5} {:<8} {:>8} CMD\n",
        "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME"
    );
    for p in processes {
        let secs = p.cpu.as_secs();
        let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>7} {:>2} {:<5} {:<8} {:>8} {}",
            p.uid,
            p.pid,
            p.ppid,
            0,
            "?",
            "?",
            time,
            String::from_utf8_lossy(&p.command)
        );
    }
    out
}

fn events(g: &Globals, a: &EventsArgs) -> Result<ExitCode, OciError> {
    if a.stats {
        println!("{}", ops::stats(g, &a.id)?);
        return Ok(ExitCode::SUCCESS);
    }
    let secs: f64 =
        a.interval.trim_end_matches('s').parse().map_err(|_| {
            OciError::Failed(format!("--interval {}: seconds, like 5s", a.interval))
        })?;
    loop {
        let c = state::Container::open(&g.root, &a.id)?;
        if c.status() == state::Status::Stopped {
            return Ok(ExitCode::SUCCESS);
        }
        drop(c);
        println!("{}", ops::stats(g, &a.id)?);
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.max(0.1)));
    }
}

/// The OCI features document.
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": moat_runtime::oci::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "mode"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "dev.moat.version": env!("CARGO_PKG_VERSION"),
            "dev.moat.isolation": "application kernel (every system call served by Moat; none passed through)"
        }
    })
}
