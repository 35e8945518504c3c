//! Moat's runtime: how a sandbox's processes are started and confined.
//!
//! A sandbox is three host processes:
//! - the **front** (`moat do`), which stays as it was started: it owns the terminal, passes
//!   host signals on and relays the sandbox's exit status ([`launch::run_sandbox`]);
//! - the **gofer** (`moat gofer`), which serves the host's files ([`launch::gofer_main`]);
//! - the **kernel** (`moat kernel`), Moat's application kernel and the stubs it traces
//!   ([`launch::kernel_main`]).
//!
//! The gofer and the kernel are re-executions of Moat's own binary, each started in fresh
//! mount, pid, network, IPC and UTS namespaces (and a user namespace when Moat is not root),
//! each confined before it reads anything untrusted: its own root ([`confine`]), no
//! capabilities but what the gofer needs to serve files, NO_NEW_PRIVS, and a seccomp
//! allowlist ([`seccomp`]). docs/SECURITY.md describes the whole.

#![forbid(unsafe_code)]

pub mod confine;
pub mod control;
pub mod host;
pub mod launch;
pub mod network;
pub mod oci;
pub mod seccomp;
pub mod spec;
pub mod start_hooks;
pub mod veth;

pub use launch::{gofer_main, kernel_main, run_sandbox, Sandbox};
pub use spec::{Confinement, KernelSpec};

/// Failures of starting or confining a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("confining: {step}: {source}")]
    Confine {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("serving {}: {source}", path.display())]
    Serve {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the seccomp filter: {0}")]
    Seccomp(String),
    #[error("malformed kernel spec: {0}")]
    Spec(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> RuntimeError {
        move |source| RuntimeError::Io { what, source }
    }
}
