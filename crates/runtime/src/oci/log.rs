//! The OCI commands' log: runc's `--log FILE --log-format json|text`. Clients read it: the
//! containerd shim takes the last `error` line of a failed command as its message. Without
//! `--log`, lines go to stderr — but only errors and warnings, since the stderr of `create`
//! is often the container's own.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Where and how the commands log.
#[derive(Debug)]
pub struct Log {
    file: Option<Mutex<std::fs::File>>,
    json: bool,
    debug: bool,
}

impl Log {
    /// `path`: `--log`; `json`: `--log-format json`; `debug`: `--debug`.
    pub fn open(path: Option<&Path>, json: bool, debug: bool) -> Log {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Log {
            file: file.map(Mutex::new),
            json,
            debug,
        }
    }

    /// A log that writes nowhere but stderr (errors only).
    pub fn stderr() -> Log {
        Log {
            file: None,
            json: false,
            debug: false,
        }
    }

    fn line(&self, level: &str, msg: &str) {
        let Some(file) = &self.file else {
            if level != "debug" && level != "info" {
                eprintln!("moat: {level}: {msg}");
            }
            return;
        };
        let time = super::state::now_rfc3339();
        let text = if self.json {
            let mut s = serde_json::json!({"level": level, "msg": msg, "time": time}).to_string();
            s.push('\n');
            s
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}\n")
        };
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }

    pub fn error(&self, msg: &str) {
        self.line("error", msg);
    }
    pub fn warn(&self, msg: &str) {
        self.line("warning", msg);
    }
    pub fn info(&self, msg: &str) {
        self.line("info", msg);
    }
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.line("debug", msg);
        }
    }

    /// The arguments that give a child process the same log.
    pub fn is_json(&self) -> bool {
        self.json
    }
    pub fn is_debug(&self) -> bool {
        self.debug
    }
}
