//! The credential calls: get/set of the real, effective, saved and filesystem IDs, the
//! supplementary groups, and the capability sets (capget, capset).
//!
//! Credentials belong to a thread, as in Linux: the raw calls change only the caller
//! (`task.creds`, copied to `task.handle.creds` for others to read). glibc makes `setuid` and
//! friends process-wide by signalling every thread (`SIGSETXID`) to repeat the call.
//!
//! Privilege is `CAP_SETUID` for the user IDs and `CAP_SETGID` for the group IDs; every
//! change of user IDs moves the capability sets by Linux's rules (`crate::capability`).

use moat_abi::Errno;

use super::{int, SyscallResult};
use crate::capability::{self, Cap, ALL_CAPS};
use crate::process::Guard;
use crate::task::Task;
use crate::Credentials;

pub fn getuid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.uid))
}

pub fn geteuid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.euid))
}

pub fn getgid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.gid))
}

pub fn getegid(task: &mut Task, _: &[u64; 6]) -> SyscallResult {
    Ok(u64::from(task.creds.egid))
}

pub fn getgroups(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let size = int(a[0]);
    let count = task.creds.groups.len();
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    if size == 0 {
        return Ok(count as u64);
    }
    if (size as usize) < count {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = task
        .creds
        .groups
        .iter()
        .flat_map(|g| g.to_ne_bytes())
        .collect();
    task.mm.guard().write_bytes(a[1], &bytes)?;
    Ok(count as u64)
}

/// `(uid_t)-1`: "unchanged" for the set*id calls, and never a valid ID.
const UNCHANGED: u32 = u32::MAX;

/// The most supplementary groups a task may have (`NGROUPS_MAX`).
const NGROUPS_MAX: u32 = 65536;

/// Install new credentials for the calling thread, with Linux's side effects: a change of
/// the effective or filesystem IDs clears the parent-death signal (`commit_creds`).
pub(crate) fn commit(task: &mut Task, new: Credentials) {
    let old = &task.creds;
    if old.euid != new.euid
        || old.egid != new.egid
        || old.fsuid != new.fsuid
        || old.fsgid != new.fsgid
    {
        *task.handle.pdeathsig.guard() = 0;
    }
    task.creds = new;
    *task.handle.creds.guard() = task.creds.clone();
}

/// Which of a task's IDs a set*id call acts on: the user IDs or the group IDs.
#[derive(Clone, Copy)]
enum Ids {
    User,
    Group,
}

impl Ids {
    /// The capability that lets a task set these IDs freely.
    fn capability(self) -> Cap {
        match self {
            Ids::User => Cap::Setuid,
            Ids::Group => Cap::Setgid,
        }
    }

    /// Install `new` IDs, moving the capability sets as a user-ID change does.
    fn commit(self, task: &mut Task, mut new: Credentials) {
        if let Ids::User = self {
            capability::fix_after_setuid(&task.creds, &mut new);
        }
        commit(task, new);
    }

    /// The real, effective, saved and filesystem IDs.
    fn get(self, c: &Credentials) -> [u32; 4] {
        match self {
            Ids::User => [c.uid, c.euid, c.suid, c.fsuid],
            Ids::Group => [c.gid, c.egid, c.sgid, c.fsgid],
        }
    }

    fn set(self, c: &mut Credentials, [r, e, s, fs]: [u32; 4]) {
        match self {
            Ids::User => (c.uid, c.euid, c.suid, c.fsuid) = (r, e, s, fs),
            Ids::Group => (c.gid, c.egid, c.sgid, c.fsgid) = (r, e, s, fs),
        }
    }
}

/// `setuid`/`setgid`: privileged, all of real, effective and saved; otherwise only the
/// effective ID, to the real or the saved one.
fn set_id(task: &mut Task, ids: Ids, id: u32) -> SyscallResult {
    if id == UNCHANGED {
        return Err(Errno::EINVAL);
    }
    let [mut r, _, mut s, _] = ids.get(&task.creds);
    if task.creds.has(ids.capability()) {
        (r, s) = (id, id);
    } else if id != r && id != s {
        return Err(Errno::EPERM);
    }
    let mut new = task.creds.clone();
    ids.set(&mut new, [r, id, s, id]);
    ids.commit(task, new);
    Ok(0)
}

/// `setreuid`/`setregid`: unprivileged, the real ID may become the real or effective one and
/// the effective ID any of the three; the saved ID follows the new effective ID when the real
/// one is set or the effective one moves away from the real one.
fn set_re(task: &mut Task, ids: Ids, real: u32, effective: u32) -> SyscallResult {
    let [r, e, s, _] = ids.get(&task.creds);
    let privileged = task.creds.has(ids.capability());
    let (mut nr, mut ne, mut ns) = (r, e, s);
    if real != UNCHANGED {
        if real != r && real != e && !privileged {
            return Err(Errno::EPERM);
        }
        nr = real;
    }
    if effective != UNCHANGED {
        if effective != r && effective != e && effective != s && !privileged {
            return Err(Errno::EPERM);
        }
        ne = effective;
    }
    if real != UNCHANGED || (effective != UNCHANGED && effective != r) {
        ns = ne;
    }
    let mut new = task.creds.clone();
    ids.set(&mut new, [nr, ne, ns, ne]);
    ids.commit(task, new);
    Ok(0)
}

/// `setresuid`/`setresgid`: unprivileged, each ID may become any of the current three.
fn set_res(task: &mut Task, ids: Ids, wanted: [u32; 3]) -> SyscallResult {
    let [r, e, s, _] = ids.get(&task.creds);
    if !task.creds.has(ids.capability())
        && wanted
            .iter()
            .any(|&w| w != UNCHANGED && w != r && w != e && w != s)
    {
        return Err(Errno::EPERM);
    }
    let keep = |w: u32, old: u32| if w == UNCHANGED { old } else { w };
    let (nr, ne, ns) = (keep(wanted[0], r), keep(wanted[1], e), keep(wanted[2], s));
    let mut new = task.creds.clone();
    ids.set(&mut new, [nr, ne, ns, ne]);
    ids.commit(task, new);
    Ok(0)
}

/// `getresuid`/`getresgid`: the three IDs, stored one after the other (a bad pointer fails
/// with `EFAULT` after the earlier ones were written, as Linux does).
fn get_res(task: &mut Task, ids: Ids, a: &[u64; 6]) -> SyscallResult {
    let [r, e, s, _] = ids.get(&task.creds);
    let mut mm = task.mm.guard();
    mm.write_obj(a[0], &r)?;
    mm.write_obj(a[1], &e)?;
    mm.write_obj(a[2], &s)?;
    Ok(0)
}

/// `setfsuid`/`setfsgid`: the previous filesystem ID, whether or not the change happened
/// (allowed to the real, effective, saved or current filesystem ID, or with privilege).
fn set_fs(task: &mut Task, ids: Ids, id: u32) -> SyscallResult {
    let [r, e, s, fs] = ids.get(&task.creds);
    let allowed = id == r || id == e || id == s || id == fs || task.creds.has(ids.capability());
    if id != UNCHANGED && id != fs && allowed {
        let mut new = task.creds.clone();
        ids.set(&mut new, [r, e, s, id]);
        if let Ids::User = ids {
            capability::fix_after_setfsuid(&task.creds, &mut new);
        }
        commit(task, new);
    }
    Ok(u64::from(fs))
}

pub fn setuid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_id(task, Ids::User, a[0] as u32)
}

pub fn setgid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_id(task, Ids::Group, a[0] as u32)
}

pub fn setreuid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_re(task, Ids::User, a[0] as u32, a[1] as u32)
}

pub fn setregid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_re(task, Ids::Group, a[0] as u32, a[1] as u32)
}

pub fn setresuid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_res(task, Ids::User, [a[0] as u32, a[1] as u32, a[2] as u32])
}

pub fn setresgid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_res(task, Ids::Group, [a[0] as u32, a[1] as u32, a[2] as u32])
}

pub fn getresuid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get_res(task, Ids::User, a)
}

pub fn getresgid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    get_res(task, Ids::Group, a)
}

pub fn setfsuid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_fs(task, Ids::User, a[0] as u32)
}

pub fn setfsgid(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    set_fs(task, Ids::Group, a[0] as u32)
}

/// `setgroups`: with `CAP_SETGID` only; the list is kept sorted, as Linux keeps it.
pub fn setgroups(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    if !task.creds.has(Cap::Setgid) {
        return Err(Errno::EPERM);
    }
    // A negative size is a huge unsigned one.
    let size = a[0] as u32;
    if size > NGROUPS_MAX {
        return Err(Errno::EINVAL);
    }
    let mut bytes = vec![0u8; size as usize * 4];
    if size > 0 {
        task.mm.guard().read_bytes(a[1], &mut bytes)?;
    }
    let mut groups: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if groups.contains(&UNCHANGED) {
        return Err(Errno::EINVAL);
    }
    groups.sort_unstable();
    let mut new = task.creds.clone();
    new.groups = groups;
    commit(task, new);
    Ok(0)
}

/// `_LINUX_CAPABILITY_VERSION_1` (32-bit sets), `_2` (deprecated) and `_3` (64-bit sets).
const CAP_VERSION_1: u32 = 0x1998_0330;
const CAP_VERSION_2: u32 = 0x2007_1026;
const CAP_VERSION_3: u32 = 0x2008_0522;
/// Check the header's version: how many 32-bit words each set takes, or `EINVAL` after
/// writing the preferred version into the header (the way programs probe it).
fn cap_version(task: &mut Task, header: u64) -> Result<usize, Errno> {
    let version: u32 = task.mm.guard().read_obj(header)?;
    match version {
        CAP_VERSION_1 => Ok(1),
        CAP_VERSION_2 | CAP_VERSION_3 => Ok(2),
        _ => {
            task.mm.guard().write_obj(header, &CAP_VERSION_3)?;
            Err(Errno::EINVAL)
        }
    }
}

pub fn capget(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (header, data) = (a[0], a[1]);
    let words = match cap_version(task, header) {
        // A NULL data pointer only probes the version.
        Err(Errno::EINVAL) | Ok(_) if data == 0 => return Ok(0),
        r => r?,
    };
    let pid: i32 = task.mm.guard().read_obj(header + 4)?;
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    let creds = if pid == 0 || pid == task.tid {
        task.creds.clone()
    } else {
        let handle = task.kernel.tree.guard().task(pid).cloned();
        let handle = handle.ok_or(Errno::ESRCH)?;
        let creds = handle.creds.guard().clone();
        creds
    };
    let sets = creds.caps;
    // `struct __user_cap_data_struct { effective, permitted, inheritable }`, low word first.
    let mut out = Vec::with_capacity(words * 12);
    for word in 0..words {
        for set in [sets.effective, sets.permitted, sets.inheritable] {
            out.extend_from_slice(&((set >> (32 * word)) as u32).to_ne_bytes());
        }
    }
    task.mm.guard().write_bytes(data, &out)?;
    Ok(0)
}

/// `capset`: only the caller's own sets, by Linux's rules (`capability::capset`: `EPERM` for
/// any raise).
pub fn capset(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (header, data) = (a[0], a[1]);
    let words = cap_version(task, header)?;
    let pid: i32 = task.mm.guard().read_obj(header + 4)?;
    if pid != 0 && pid != task.tid {
        return Err(Errno::EPERM);
    }
    let mut raw = vec![0u8; words * 12];
    task.mm.guard().read_bytes(data, &mut raw)?;
    let word = |i: usize| {
        u64::from(u32::from_ne_bytes([
            raw[i * 4],
            raw[i * 4 + 1],
            raw[i * 4 + 2],
            raw[i * 4 + 3],
        ]))
    };
    // `struct __user_cap_data_struct { effective, permitted, inheritable }`, low word first;
    // version 1 has no high word, so the capabilities above 31 are dropped.
    let set = |field: usize| {
        let high = if words == 2 { word(3 + field) } else { 0 };
        (word(field) | high << 32) & ALL_CAPS
    };
    let mut new = task.creds.clone();
    if !capability::capset(&mut new, set(0), set(1), set(2)) {
        return Err(Errno::EPERM);
    }
    commit(task, new);
    Ok(0)
}
