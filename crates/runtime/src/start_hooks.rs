//! OCI `startContainer` hooks, run where runc runs them: inside the container, after `start`
//! and before the user's program, with the container's file tree, user and working
//! directory. A Moat container has no host namespaces to run a host program in, so each
//! hook is a process of the sandbox (started like an `exec`'d one, while init is loaded but
//! has not run an instruction), with the container's state JSON on its stdin. Its output is
//! kept, as runc keeps it, and shown only in the error when it fails: a hook that cannot
//! start, fails or outlives its `timeout` fails `start`, and the program never runs.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::Duration;

use moat_kernel::{Credentials, ExecCall, ExitStatus, HostSignal, SignalTarget};

use crate::spec::StartHook;

/// What the hooks share with the container's process.
pub struct HookContext {
    pub cwd: Vec<u8>,
    pub creds: Credentials,
    pub umask: u32,
    /// The container's state JSON (each hook's stdin).
    pub state: Vec<u8>,
}

/// How much of a failed hook's output its error shows.
const MAX_SHOWN_OUTPUT: usize = 4096;

enum Event {
    Started(Result<i32, String>),
    Exited(ExitStatus),
}

/// Run `hooks` in order through the kernel's exec calls; the first failure is the error.
pub fn run(
    hooks: &[StartHook],
    cx: &HookContext,
    execs: &Sender<ExecCall>,
    signals: &Sender<HostSignal>,
) -> Result<(), String> {
    for (i, hook) in hooks.iter().enumerate() {
        let name = format!(
            "startContainer hook #{i} ({})",
            String::from_utf8_lossy(&hook.path)
        );
        run_one(hook, cx, execs, signals).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

fn run_one(
    hook: &StartHook,
    cx: &HookContext,
    execs: &Sender<ExecCall>,
    signals: &Sender<HostSignal>,
) -> Result<(), String> {
    let (tx, rx) = channel();
    let exited = tx.clone();
    let (stdio, output) = stdio(cx).map_err(|e| format!("its stdio: {e}"))?;
    let call = ExecCall {
        filename: hook.path.clone(),
        argv: hook.args.clone(),
        envp: hook.env.clone(),
        cwd: cx.cwd.clone(),
        creds: cx.creds.clone(),
        umask: cx.umask,
        search_path: false,
        no_new_privs: false,
        stdio,
        started: Some(Box::new(move |r| {
            let _ = tx.send(Event::Started(r.map_err(|e| e.to_string())));
        })),
        exited: Some(Box::new(move |status| {
            let _ = exited.send(Event::Exited(status));
        })),
    };
    execs
        .send(call)
        .map_err(|_| "the sandbox has ended".to_string())?;
    let pid = match rx.recv() {
        Ok(Event::Started(Ok(pid))) => pid,
        Ok(Event::Started(Err(e))) => return Err(e),
        Ok(Event::Exited(_)) | Err(_) => return Err("the sandbox has ended".into()),
    };
    let status = if hook.timeout > 0 {
        match rx.recv_timeout(Duration::from_secs(hook.timeout)) {
            Ok(Event::Exited(status)) => status,
            Err(RecvTimeoutError::Timeout) => {
                let target = SignalTarget::Process(pid);
                let _ = signals.send(HostSignal {
                    signo: libc::SIGKILL,
                    target,
                });
                let _ = rx.recv();
                return Err(format!("timed out after {} s", hook.timeout));
            }
            Ok(Event::Started(_)) | Err(RecvTimeoutError::Disconnected) => {
                return Err("the sandbox has ended".into())
            }
        }
    } else {
        match rx.recv() {
            Ok(Event::Exited(status)) => status,
            _ => return Err("the sandbox has ended".into()),
        }
    };
    let failure = match status {
        ExitStatus::Exited(0) => return Ok(()),
        ExitStatus::Exited(code) => format!("exit status {code}"),
        ExitStatus::Signaled { signo, .. } => format!("killed by signal {signo}"),
    };
    let shown = shown_output(&output);
    if shown.is_empty() {
        Err(failure)
    } else {
        Err(format!("{failure}, output: {shown}"))
    }
}

/// The start of what a hook wrote, trimmed, for its error.
fn shown_output(output: &OwnedFd) -> String {
    let mut buf = vec![0u8; MAX_SHOWN_OUTPUT];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(output, &mut buf[got..], got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    String::from_utf8_lossy(&buf[..got]).trim().to_string()
}

/// A hook's fds 0-2: a memfd holding the state (read from its start, then end of file), and
/// twice one memfd that keeps its output; that memfd is also returned, to be read after.
fn stdio(cx: &HookContext) -> std::io::Result<(Vec<OwnedFd>, OwnedFd)> {
    let state = rustix::fs::memfd_create(c"moat-hook-state", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut written = 0;
    while written < cx.state.len() {
        written += rustix::io::pwrite(&state, &cx.state[written..], written as u64)?;
    }
    let output = rustix::fs::memfd_create(c"moat-hook-output", rustix::fs::MemfdFlags::CLOEXEC)?;
    let fds = vec![state, output.try_clone()?, output.try_clone()?];
    Ok((fds, output))
}
