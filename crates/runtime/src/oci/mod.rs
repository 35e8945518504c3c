//! Moat as an OCI runtime: what the runc-compatible commands of the `moat` binary need.
//!
//! - [`bundle`]: an OCI bundle's `config.json` turned into the kernel's instructions
//!   ([`crate::KernelSpec`]) and the gofer's trees, with a warning for everything Moat does
//!   not honour;
//! - [`state`]: the state directory of each container under `--root`, locked while a
//!   command works on it, and the OCI state (created, running, stopped);
//! - [`front`]: the container's front process — the pid in `--pid-file` — which starts the
//!   gofer and the kernel at `create`, serves the container's control socket (start, kill,
//!   exec) and ends with the status of the container's init;
//! - [`console`]: the pseudo-terminal of a `terminal: true` container, sent over the
//!   `--console-socket`; [`hooks`]: the OCI hooks; [`cgroup`]: `linux.resources` in the host's
//!   cgroups.
//!
//! docs/ARCHITECTURE.md ("Moat as an OCI runtime") describes the whole.

pub mod bundle;
pub mod cgroup;
pub mod console;
pub mod front;
pub mod hooks;
pub mod log;
pub mod ops;
pub mod state;

use std::path::PathBuf;

/// Failures of the OCI commands. The wrong-state messages are runc's, which clients show.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("container does not exist")]
    NotFound,
    #[error("invalid container id format: {0}")]
    BadId(String),
    /// An operation the container's state does not allow (`start` of a running one...).
    #[error("{0}")]
    WrongState(String),
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] crate::RuntimeError),
    #[error("{0}")]
    Hook(String),
    /// The container's front or kernel refused or failed.
    #[error("{0}")]
    Failed(String),
    #[error("{0} is not supported by Moat: {1}")]
    Unsupported(&'static str, &'static str),
}

impl OciError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OciError {
        let what = what.into();
        move |source| OciError::Io { what, source }
    }
}

/// The OCI runtime specification version Moat follows.
pub const OCI_VERSION: &str = "1.0.2";
