//! Containers' state under `--root` (default `/run/moat`): one directory per container,
//! `ROOT/ID/`, holding `state.json` (what `create` and `start` recorded) and `ctl.sock`
//! (the front's control socket). Commands take an exclusive `flock` on the directory while
//! they read and change it, so concurrent commands on one container are serialised.
//!
//! The status is derived, as runc does: `stopped` once the front process (the pid recorded,
//! checked against its start time so a reused pid is not mistaken for it) is gone or a
//! zombie; otherwise what was recorded (`created`, then `running` after `start`).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{OciError, OCI_VERSION};

/// The default `--root`.
pub const DEFAULT_ROOT: &str = "/run/moat";
pub const STATE_FILE: &str = "state.json";
/// Short: a unix socket path is at most 107 bytes, and the directory may be deep already.
pub const CONTROL_SOCKET: &str = "ctl.sock";

/// What is kept about a container between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The front's host pid and its start time (clock ticks after boot, /proc/PID/stat).
    pub pid: i32,
    pub pid_start: u64,
    /// `created` or `running`; `stopped` is never recorded, it is seen.
    pub status: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: HashMap<String, String>,
    /// The bundle's hooks (`poststart` and `poststop` run by later commands).
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Host cgroup directories made for `linux.resources`, removed by `delete`.
    pub cgroups: Vec<PathBuf>,
    /// Host pids of `moat exec` processes (for `ps`).
    #[serde(default)]
    pub execs: Vec<i32>,
}

/// The OCI status of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    /// Frozen by `pause` (its freezer cgroup).
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// A container's state directory, locked for as long as this lives.
#[derive(Debug)]
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
    _lock: OwnedFd,
}

/// A container id must name one directory: runc's rule (letters, digits, `_+-.`).
pub fn check_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OciError::BadId(id.to_string()))
    }
}

fn lock(dir: &Path) -> Result<OwnedFd, OciError> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::NOENT {
            OciError::NotFound
        } else {
            OciError::io(format!("opening {}", dir.display()))(e.into())
        }
    })?;
    loop {
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(fd),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(OciError::io(format!("locking {}", dir.display()))(e.into())),
        }
    }
}

/// The directory of container `id` under `root`.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, OciError> {
    check_id(id)?;
    Ok(root.join(id))
}

impl Container {
    /// Make the state directory of a new container (an error if it exists), locked.
    pub fn create(root: &Path, id: &str, record: Record) -> Result<Container, OciError> {
        let dir = container_dir(root, id)?;
        std::fs::create_dir_all(root)
            .map_err(OciError::io(format!("creating {}", root.display())))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(OciError::Exists(id.to_string()))
            }
            Err(e) => return Err(OciError::io(format!("creating {}", dir.display()))(e)),
        }
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711));
        let lock = lock(&dir)?;
        let container = Container {
            dir,
            record,
            _lock: lock,
        };
        Ok(container)
    }

    /// Open and lock an existing container's state.
    pub fn open(root: &Path, id: &str) -> Result<Container, OciError> {
        let dir = container_dir(root, id)?;
        let lock = lock(&dir)?;
        let text = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(text) => text,
            // A directory without a record: a `create` that failed half-way.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OciError::NotFound),
            Err(e) => return Err(OciError::io(format!("reading {}", dir.display()))(e)),
        };
        let record: Record = serde_json::from_slice(&text).map_err(|e| OciError::Config {
            path: dir.join(STATE_FILE),
            message: e.to_string(),
        })?;
        Ok(Container {
            dir,
            record,
            _lock: lock,
        })
    }

    /// Write the record (atomically: a new file renamed over the old).
    pub fn save(&self) -> Result<(), OciError> {
        let tmp = self.dir.join(".state.json.new");
        let text = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| OciError::Failed(format!("encoding the state: {e}")))?;
        std::fs::write(&tmp, text).map_err(OciError::io("writing the state"))?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE)).map_err(OciError::io("writing the state"))
    }

    pub fn status(&self) -> Status {
        if self.record.pid > 0 && alive(self.record.pid, self.record.pid_start) {
            if self.record.status == "running" {
                let frozen = super::cgroup::freezer(&self.record.cgroups)
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .is_some_and(|v| matches!(v.trim(), "FROZEN" | "FREEZING" | "1"));
                if frozen {
                    Status::Paused
                } else {
                    Status::Running
                }
            } else {
                Status::Created
            }
        } else {
            Status::Stopped
        }
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.join(CONTROL_SOCKET)
    }

    /// The OCI state document (`moat state`), with runc's extra fields.
    pub fn state_json(&self) -> serde_json::Value {
        let status = self.status();
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.record.id,
            "pid": if status == Status::Stopped { 0 } else { self.record.pid },
            "status": status.as_str(),
            "bundle": self.record.bundle,
            "rootfs": self.record.rootfs,
            "created": self.record.created,
            "owner": "",
            "annotations": self.record.annotations,
        })
    }

    /// Remove the state directory (the lock goes with it).
    pub fn remove(self) -> Result<(), OciError> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(OciError::io(format!("removing {}", self.dir.display())))
    }
}

/// Every container id under `root`.
pub fn list(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join(STATE_FILE).is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A process's state letter and start time from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 of the whole line, the 20th after the name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is still the process that started at `start` and has not ended.
pub fn alive(pid: i32, start: u64) -> bool {
    match proc_stat(pid) {
        Some((state, started)) => started == start && state != 'Z' && state != 'X',
        None => false,
    }
}

/// Now, as RFC 3339 in UTC with nanoseconds (runc's `created`).
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_one_directory() {
        for good in ["a", "abc-1_2+3.4", "0123456789abcdef"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let (_, start) = proc_stat(pid).unwrap();
        assert!(alive(pid, start));
        assert!(!alive(pid, start + 1));
    }

    #[test]
    fn timestamps_look_like_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2024-01-02T03:04:05.123456789Z".len(), "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }

    #[test]
    fn a_record_lives_and_dies_with_its_directory() {
        let root = std::env::temp_dir().join(format!("moat-state-{}", std::process::id()));
        let record = Record {
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: 0,
            pid_start: 0,
            status: "created".into(),
            created: now_rfc3339(),
            annotations: HashMap::new(),
            hooks: None,
            cgroups: Vec::new(),
            execs: Vec::new(),
        };
        let c = Container::create(&root, "c1", record.clone()).unwrap();
        c.save().unwrap();
        assert!(matches!(
            Container::create(&root, "c1", record),
            Err(OciError::Exists(_))
        ));
        drop(c);
        let c = Container::open(&root, "c1").unwrap();
        assert_eq!(c.status(), Status::Stopped);
        assert_eq!(c.state_json()["status"], "stopped");
        assert_eq!(list(&root), vec!["c1".to_string()]);
        c.remove().unwrap();
        assert!(matches!(
            Container::open(&root, "c1"),
            Err(OciError::NotFound)
        ));
        let _ = std::fs::remove_dir_all(&root);
    }
}
