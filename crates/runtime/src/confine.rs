//! Confinement of Moat's own processes, from the inside: each process, started by
//! [`moat_platform::confine::spawn`] in fresh namespaces, calls these before it handles any
//! untrusted input.
//!
//! - [`kernel_root`]: the kernel process's root becomes an empty, read-only tmpfs (it opens no
//!   host path: files come from the gofer). A procfs of its own pid namespace (`subset=pid`:
//!   only process directories) is mounted first and kept as an fd, from which the platform
//!   reads the stub threads' CPU time; it is not reachable by path.
//! - [`gofer_root`]: the gofer's root becomes a read-only tmpfs holding only the trees it
//!   serves (`/0` the root, `/1`... the volumes; read-only ones read-only all the way down,
//!   the host's kernel filesystems such as `/proc`, `/sys` and `/dev` detached from them) and
//!   a procfs of its own pid namespace at `/proc` (it reaches files through `/proc/self/fd`).
//! - [`drop_privileges`]: every capability but those kept, from every set (bounding,
//!   effective, permitted, inheritable, ambient), and NO_NEW_PRIVS.
//!
//! The seccomp allowlists are [`crate::seccomp`].

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::RuntimeError;

/// The namespaces Moat's processes run in: everything but the cgroup and time namespaces,
/// plus a user namespace when Moat is not started as root.
pub fn namespaces(unprivileged: bool) -> i32 {
    let base = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if unprivileged {
        base | libc::CLONE_NEWUSER
    } else {
        base
    }
}

fn step(what: &'static str) -> impl Fn(rustix::io::Errno) -> RuntimeError {
    move |e| RuntimeError::Confine {
        step: what,
        source: e.into(),
    }
}

/// A directory to build the new root on: mounting over it in our own mount namespace hides
/// nothing from anyone else.
fn staging_dir() -> &'static str {
    ["/tmp", "/mnt", "/proc"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap_or("/proc")
}

/// Stop mount events from reaching the host, and mount a fresh tmpfs to build a root on.
fn private_staging_root() -> Result<&'static str, RuntimeError> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(step("making the mount namespace private"))?;
    let staging = staging_dir();
    rustix::mount::mount(
        "moat-root",
        staging,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"mode=0555,size=64k",
    )
    .map_err(step("mounting the new root's tmpfs"))?;
    Ok(staging)
}

/// Mount a procfs of the caller's pid namespace showing only process directories.
fn mount_own_proc(at: &Path) -> Result<(), rustix::io::Errno> {
    rustix::fs::mkdir(at, Mode::from_raw_mode(0o555))?;
    rustix::mount::mount(
        "proc",
        at,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"subset=pid",
    )
}

/// Make `staging` the root (the old one is stacked under it, then detached), and make the
/// new root's own tmpfs read-only.
fn pivot_into(staging: &str) -> Result<(), RuntimeError> {
    rustix::process::chdir(staging).map_err(step("entering the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(step("pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(step("detaching the old root"))?;
    rustix::process::chdir("/").map_err(step("entering the new root"))?;
    Ok(())
}

fn seal_root() -> Result<(), RuntimeError> {
    rustix::mount::mount_remount(
        "/",
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
        "",
    )
    .map_err(step("making the new root read-only"))
}

/// Confine the kernel process's view of the host's files: an empty, read-only root. Returns
/// a procfs directory of its pid namespace for the platform, if one could be mounted (a host
/// that refuses mounting procfs in a user namespace leaves the platform without per-thread
/// CPU time, not unconfined).
pub fn kernel_root() -> Result<Option<OwnedFd>, RuntimeError> {
    let staging = private_staging_root()?;
    let proc_at = PathBuf::from(staging).join("proc");
    let proc_dir = match mount_own_proc(&proc_at) {
        Ok(()) => Some(
            rustix::fs::open(
                &proc_at,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(step("opening the kernel's procfs"))?,
        ),
        Err(e) => {
            tracing::warn!("no procfs for the kernel process ({e}): CPU time per stub process");
            None
        }
    };
    pivot_into(staging)?;
    if proc_dir.is_some() {
        // Reachable only through the fd from now on.
        rustix::mount::unmount("/proc", UnmountFlags::DETACH)
            .map_err(step("detaching the kernel's procfs"))?;
    }
    let _ = rustix::fs::rmdir("/proc");
    seal_root()?;
    Ok(proc_dir)
}

/// A tree the gofer serves: a host directory and whether it is read-only.
#[derive(Clone, Debug)]
pub struct Served {
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// Host kernel filesystems detached from the trees the gofer serves (it refuses to walk into
/// them anyway; detached, a compromised gofer cannot reach them either).
const DETACHED_FILESYSTEMS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "mqueue",
    "hugetlbfs",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "bpf",
    "pstore",
    "configfs",
    "binfmt_misc",
    "selinuxfs",
    "fusectl",
    "efivarfs",
    "nsfs",
    "autofs",
    "rpc_pipefs",
];

/// How many mounts deep the host's kernel filesystems may be stacked on one point.
const MAX_DETACH_PASSES: usize = 16;

/// Undo the octal escapes (`\040`) of a mountinfo path.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| {
                b[i + 1..i + 4].iter().try_fold(0u32, |v, &d| {
                    (b'0'..=b'7')
                        .contains(&d)
                        .then(|| v * 8 + u32::from(d - b'0'))
                })
            })
            .flatten()
            .and_then(|v| u8::try_from(v).ok());
        if let Some(v) = octal {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Mount points below `under` whose filesystem is one of [`DETACHED_FILESYSTEMS`] and that
/// no other such mount point contains (detaching a mount takes its submounts with it, and
/// each detach costs the host an RCU grace period), from a mountinfo text.
fn kernel_filesystems_below(mountinfo: &str, under: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = unescape(fields.get(4)?);
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            (point.starts_with(under) && DETACHED_FILESYSTEMS.contains(fstype)).then_some(point)
        })
        .collect();
    found.sort();
    found.dedup();
    let mut topmost: Vec<PathBuf> = Vec::new();
    for point in found {
        if !topmost.iter().any(|t| point.starts_with(t)) {
            topmost.push(point);
        }
    }
    topmost
}

/// Confine the gofer's view of the host's files to the trees it serves; returns their paths
/// in the new root.
pub fn gofer_root(served: &[Served]) -> Result<Vec<Served>, RuntimeError> {
    // Clone every tree first: the staging tmpfs may hide a served path.
    let mut trees = Vec::new();
    for s in served {
        let tree = rustix::mount::open_tree(
            CWD,
            &s.host_path,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(|e| RuntimeError::Serve {
            path: s.host_path.clone(),
            source: e.into(),
        })?;
        let attrs = if s.read_only {
            moat_platform::confine::make_tree_read_only(&tree)
        } else {
            moat_platform::confine::make_tree_nosuid(&tree)
        };
        attrs.map_err(|source| RuntimeError::Confine {
            step: "setting a served tree's mount attributes",
            source,
        })?;
        trees.push(tree);
    }
    let staging = private_staging_root()?;
    let mut moved = Vec::new();
    for (i, (tree, s)) in trees.into_iter().zip(served).enumerate() {
        let at = PathBuf::from(staging).join(i.to_string());
        rustix::fs::mkdir(&at, Mode::from_raw_mode(0o555))
            .map_err(step("making a served tree's mount point"))?;
        rustix::mount::move_mount(
            &tree,
            c"",
            CWD,
            &at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(step("mounting a served tree"))?;
        moved.push(Served {
            host_path: PathBuf::from("/").join(i.to_string()),
            read_only: s.read_only,
        });
    }
    let proc_at = PathBuf::from(staging).join("proc");
    mount_own_proc(&proc_at).map_err(step("mounting the gofer's procfs"))?;
    // Mounts may be stacked on one point (a container's /proc over the host's): detaching the
    // top one reveals the next, so look again until none is left. Only below the served trees:
    // the staging directory's old contents (other mounts of the host's, say a container's
    // /proc under /tmp) are hidden under the staging tmpfs, out of reach, and leave with the
    // old root.
    let trees: Vec<PathBuf> = (0..moved.len())
        .map(|i| PathBuf::from(staging).join(i.to_string()))
        .collect();
    for pass in 0.. {
        let mountinfo =
            std::fs::read_to_string(proc_at.join("self/mountinfo")).map_err(|source| {
                RuntimeError::Confine {
                    step: "reading the gofer's mounts",
                    source,
                }
            })?;
        let points: Vec<PathBuf> = trees
            .iter()
            .flat_map(|tree| kernel_filesystems_below(&mountinfo, tree))
            .collect();
        if points.is_empty() {
            break;
        }
        if pass == MAX_DETACH_PASSES {
            return Err(RuntimeError::Confine {
                step: "detaching host kernel filesystems (too deeply stacked)",
                source: std::io::Error::from_raw_os_error(libc::ELOOP),
            });
        }
        for point in points {
            rustix::mount::unmount(&point, UnmountFlags::DETACH)
                .map_err(step("detaching a host kernel filesystem"))?;
        }
    }
    pivot_into(staging)?;
    seal_root()?;
    Ok(moved)
}

/// Drop every capability but `keep` (those of it the process has) from every set, and set
/// NO_NEW_PRIVS.
pub fn drop_privileges(keep: CapabilitySet) -> Result<(), RuntimeError> {
    let held = rustix::thread::capabilities(None).map_err(step("reading capabilities"))?;
    let keep = keep & held.permitted;
    for cap in 0..64 {
        let set = CapabilitySet::from_bits_retain(1 << cap);
        if keep.contains(set) {
            continue;
        }
        // Past the host's last capability, the question fails: nothing to drop.
        if let Ok(true) = rustix::thread::capability_is_in_bounding_set(set) {
            rustix::thread::remove_capability_from_bounding_set(set)
                .map_err(step("dropping the bounding capabilities"))?;
        }
    }
    rustix::thread::clear_ambient_capability_set()
        .map_err(step("clearing the ambient capabilities"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(step("dropping capabilities"))?;
    rustix::thread::set_no_new_privs(true).map_err(step("setting NO_NEW_PRIVS"))?;
    Ok(())
}

/// What the gofer keeps: serving files as their owners and as the sandbox's users, not
/// the host's root: read and search any file (`DAC_READ_SEARCH`, `DAC_OVERRIDE` for writes
/// to a volume), give new files the sandbox user's owner (`CHOWN`), change modes and times
/// of files it does not own (`FOWNER`) and keep set-id bits while doing so (`FSETID`).
pub const GOFER_CAPABILITIES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::DAC_READ_SEARCH)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::FSETID);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_topmost_kernel_filesystems_are_detached() {
        let info = "\
22 27 0:21 / /tmp/0/proc rw,relatime - proc proc rw
27 1 254:0 / /tmp/0 ro,relatime - ext4 /dev/vda rw
28 27 0:25 / /tmp/0/mnt\\040x ro - tmpfs x ro
24 27 0:6 / /tmp/0/dev rw,relatime - devtmpfs devtmpfs rw
26 24 0:24 / /tmp/0/dev/pts rw,relatime - devpts devpts rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup rw
";
        let found = kernel_filesystems_below(info, Path::new("/tmp"));
        assert_eq!(
            found,
            ["/tmp/0/dev", "/tmp/0/proc"].map(PathBuf::from).to_vec()
        );
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
    }
}
