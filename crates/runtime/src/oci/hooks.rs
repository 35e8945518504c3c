//! OCI hooks: host programs run at points of a container's life with the container's state
//! (JSON) on their stdin. A failing `createRuntime`, `createContainer` or `prestart` hook
//! fails `create`; `poststart` and `poststop` failures are logged, as the spec says.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::OciError;

/// Run `hooks` in order with `state` on stdin; the first failure stops them.
pub fn run(hooks: &[Hook], state: &serde_json::Value, stage: &str) -> Result<(), OciError> {
    let input = state.to_string();
    for hook in hooks {
        run_one(hook, &input)
            .map_err(|e| OciError::Hook(format!("{stage} hook {}: {e}", hook.path().display())))?;
    }
    Ok(())
}

fn run_one(hook: &Hook, input: &str) -> Result<(), String> {
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is fine.
        let _ = stdin.write_all(input.as_bytes());
    }
    let deadline = hook
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out".into());
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str) -> Hook {
        let mut h = Hook::default();
        h.set_path("/bin/sh".into());
        h.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
        h.set_env(Some(vec!["X=1".into()]));
        h
    }

    #[test]
    fn hooks_read_the_state_and_failures_stop_them() {
        let out = std::env::temp_dir().join(format!("moat-hook-{}", std::process::id()));
        let state = serde_json::json!({"id": "c1", "status": "created"});
        let script = format!("cat > {}; echo $X >> {}", out.display(), out.display());
        run(&[hook(&script)], &state, "createRuntime").unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("\"id\":\"c1\"") && text.ends_with("1\n"),
            "{text}"
        );
        let err = run(&[hook("echo bad >&2; exit 3")], &state, "createRuntime").unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
        let mut slow = hook("sleep 5");
        slow.set_timeout(Some(1));
        assert!(run(&[slow], &state, "poststart")
            .unwrap_err()
            .to_string()
            .contains("timed out"));
        let _ = std::fs::remove_file(out);
    }
}
