//! `moat`: run programs inside Moat's application kernel.
//!
//! `moat do PROGRAM ARGS...` runs a program sandboxed on the host's root filesystem, with no
//! image and no set-up. The OCI runtime commands (`create`, `start`, `run`, `state`, `kill`,
//! `delete`, `exec`...) make `moat` a runc-compatible runtime for containerd, podman and
//! docker (`oci.rs`).

#![forbid(unsafe_code)]

mod compat;
mod launch;
mod oci;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Moat: an application kernel that sandboxes untrusted Linux programs.
#[derive(Parser, Debug)]
#[command(name = "moat", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: oci::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a program sandboxed on the host's root filesystem (no image needed).
    Do(DoArgs),
    /// List the x86-64 system calls and how completely Moat implements each.
    Syscalls(SyscallsArgs),
    /// Serve files to a sandbox's kernel over the socket on stdin (started by Moat itself).
    #[command(hide = true)]
    Gofer(GoferArgs),
    /// Run a sandbox's kernel, confined (started by `moat do` in new namespaces).
    #[command(hide = true)]
    Kernel,
    /// Print the seccomp allowlists of Moat's kernel and gofer processes (docs/SECURITY.md).
    #[command(hide = true, name = "seccomp-list")]
    SeccompList(SeccompListArgs),
    #[command(flatten)]
    Oci(oci::OciCommand),
}

/// Arguments of the internal `moat gofer`.
#[derive(Args, Debug)]
struct GoferArgs {
    /// A host directory to serve, `PATH` or `PATH:ro`; the first is the root.
    #[arg(long = "mount", required = true)]
    mounts: Vec<String>,
    /// How the gofer confines itself: full, log-seccomp or none.
    #[arg(long, default_value = "full", value_parser = ["full", "log-seccomp", "none"])]
    confine: String,
}

/// Arguments of the internal `moat seccomp-list`.
#[derive(Args, Debug)]
struct SeccompListArgs {
    /// Print the lists as docs/SECURITY.md shows them.
    #[arg(long)]
    markdown: bool,
}

/// Arguments of `moat do`.
#[derive(Args, Debug)]
pub struct DoArgs {
    /// How application code runs: systrap (system calls trap to a signal handler in the stub,
    /// which hands them to Moat through shared memory) or ptrace (slower; a reference).
    #[arg(long, default_value = "systrap", value_parser = clap::builder::PossibleValuesParser::new(moat_platform::PLATFORMS))]
    pub platform: String,
    /// Print every system call, strace-style, on stderr.
    #[arg(long)]
    pub strace: bool,
    /// Write Moat's debug log to this file.
    #[arg(long, value_name = "FILE")]
    pub debug_log: Option<PathBuf>,
    /// Bind-mount a host directory into the sandbox, writable unless `:ro` is added:
    /// `HOST_DIR:SANDBOX_DIR[:ro]`. Repeatable. Changes under it reach the host (through the
    /// gofer); everything else stays in the sandbox's in-memory overlay.
    #[arg(long = "volume", short = 'v', value_name = "HOST_DIR:SANDBOX_DIR[:ro]")]
    pub volumes: Vec<String>,
    /// The working directory in the sandbox (default: the current directory, if the sandbox
    /// has it, else `/`).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// The most memory the sandbox may use, in bytes or with a binary suffix (`512M`, `2G`).
    /// Past it a page fault kills the process holding the most memory (SIGKILL), as a memory
    /// cgroup's limit does; mmap and brk still succeed (memory is overcommitted).
    #[arg(long, value_name = "BYTES", value_parser = parse_memory_size)]
    pub memory: Option<u64>,
    /// Debugging Moat only: run the kernel and the gofer unconfined (no namespaces, own root,
    /// capability drop or seccomp filter). The sandbox is then NOT a security boundary.
    #[arg(long)]
    pub no_confine: bool,
    /// Debugging Moat only: confine, but let host system calls outside the seccomp
    /// allowlists through, logged by the host (`dmesg`: audit type=1326 lines). For finding
    /// the calls a new platform or feature makes.
    #[arg(long, hide = true, conflicts_with = "no_confine")]
    pub seccomp_log: bool,
    /// Whose network the sandbox's TCP and UDP sockets use: `sandbox` (Moat's own TCP/IP
    /// stack: loopback, and the first Ethernet interface with an IPv4 address of the network
    /// namespace `moat do` runs in, whose addresses the sandbox takes over, never in the host's
    /// initial namespace; the host's stack never sees the application's sockets), `none` (the
    /// sandbox's loopback only, nothing outside ever), or `host` (real host sockets the kernel
    /// makes on the application's behalf, in the host's network namespace: faster and
    /// reachable, but the host's network stack is exposed; docs/SECURITY.md). Default:
    /// `sandbox`.
    #[arg(long, value_name = "MODE", value_parser = parse_network)]
    pub network: Option<moat_kernel::NetworkMode>,
    /// With `--network=sandbox`: give the sandbox an interface of its own, `eth0` at the
    /// end of a veth pair whose other end (`moatPID`, with a /30 in 100.64.0.0/10) stays in
    /// this network namespace, which forwards and masquerades its traffic when `iptables`
    /// is installed; instead of taking this namespace's interface (docs/ARCHITECTURE.md).
    #[arg(long)]
    pub veth: bool,
    /// The program to run (searched in PATH unless it contains a '/'), then its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    pub command: Vec<std::ffi::OsString>,
}

/// Arguments of `moat syscalls`.
#[derive(Args, Debug)]
struct SyscallsArgs {
    /// Print only the system calls Moat does not implement, as `NUMBER NAME` lines.
    #[arg(long, conflicts_with = "markdown")]
    unimplemented: bool,
    /// Print the table as docs/COMPATIBILITY.md.
    #[arg(long)]
    markdown: bool,
}

/// `--network`'s values.
pub fn parse_network(name: &str) -> Result<moat_kernel::NetworkMode, String> {
    moat_kernel::NetworkMode::parse(name)
        .ok_or_else(|| format!("unknown network mode {name:?} (sandbox, none or host)"))
}

/// A size like docker's `--memory`: a number of bytes with an optional `K`, `M`, `G` or `T`
/// suffix (binary multiples, case-insensitive, `B`/`iB` allowed).
fn parse_memory_size(s: &str) -> Result<u64, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e}"))?;
    if bytes < 1 << 20 {
        return Err("the memory limit must be at least 1M".into());
    }
    Ok(bytes)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Do(args) => launch::run_do(&args),
        Command::Gofer(args) => moat_runtime::gofer_main(
            &args.mounts,
            moat_runtime::launch::parse_confinement(&args.confine)
                .unwrap_or(moat_runtime::Confinement::Full),
        ),
        Command::Kernel => moat_runtime::kernel_main(),
        Command::SeccompList(args) => {
            print!("{}", launch::seccomp_list(args.markdown));
            ExitCode::SUCCESS
        }
        Command::Oci(command) => oci::run(&cli.global, command),
        Command::Syscalls(args) => {
            let text = if args.markdown {
                compat::markdown()
            } else if args.unimplemented {
                compat::unimplemented_list()
            } else {
                compat::plain_list()
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}
