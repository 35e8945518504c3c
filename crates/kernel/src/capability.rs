//! Capabilities (capabilities(7)): every task's five capability sets and securebits, the rules
//! that move them when IDs change (`set*id`), on `execve`, through `capset` and `prctl`, and the
//! check the rest of the kernel asks (`Credentials::has`).
//!
//! Moat follows Linux's model for files without file capabilities: set-user-ID bits and
//! `security.capability` attributes take no effect in the sandbox (as on a `nosuid` mount), so
//! privilege comes only from being root and from what a process keeps across `execve`
//! (inheritable and ambient sets).

use crate::Credentials;

/// The highest capability number Linux knows (`CAP_CHECKPOINT_RESTORE`).
pub const CAP_LAST_CAP: u32 = 40;

/// Every capability Linux knows.
pub const ALL_CAPS: u64 = (1 << (CAP_LAST_CAP + 1)) - 1;

/// A capability, numbered as in `<linux/capability.h>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Cap {
    Chown = 0,
    DacOverride = 1,
    DacReadSearch = 2,
    Fowner = 3,
    Fsetid = 4,
    Kill = 5,
    Setgid = 6,
    Setuid = 7,
    Setpcap = 8,
    LinuxImmutable = 9,
    NetBindService = 10,
    NetAdmin = 12,
    NetRaw = 13,
    IpcLock = 14,
    IpcOwner = 15,
    SysChroot = 18,
    SysPtrace = 19,
    SysAdmin = 21,
    SysNice = 23,
    SysResource = 24,
    SysTime = 25,
    Mknod = 27,
    Setfcap = 31,
    MacOverride = 32,
}

impl Cap {
    /// This capability's bit in a set.
    pub const fn bit(self) -> u64 {
        1 << self as u32
    }
}

/// The names of capabilities 0 to `CAP_LAST_CAP`, by number (OCI specs name them).
pub const NAMES: [&str; CAP_LAST_CAP as usize + 1] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capability a name (`CAP_NET_RAW`, or `NET_RAW`, any case) stands for.
pub fn by_name(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().position(|&n| n == full).map(|i| i as u32)
}

/// What a filesystem UID other than 0 takes out of the effective set (capabilities(7)):
/// CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
/// CAP_LINUX_IMMUTABLE, CAP_MKNOD and CAP_MAC_OVERRIDE.
pub const FS_CAPS: u64 = Cap::Chown.bit()
    | Cap::DacOverride.bit()
    | Cap::DacReadSearch.bit()
    | Cap::Fowner.bit()
    | Cap::Fsetid.bit()
    | Cap::LinuxImmutable.bit()
    | Cap::Mknod.bit()
    | Cap::MacOverride.bit();

/// What the sandbox never grants: `CAP_NET_RAW`, because Moat has no raw sockets (as runsc
/// without `--net-raw`). A program that asks for one gets the `EPERM` its own sets then
/// imply, and tools that fall back without it (ping's ICMP echo sockets) do so.
pub const WITHHELD: u64 = Cap::NetRaw.bit();

/// The securebits (`PR_SET_SECUREBITS`): each flag, and above it the bit that locks it.
pub const SECBIT_NOROOT: u32 = 1 << 0;
pub const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
pub const SECBIT_KEEP_CAPS: u32 = 1 << 4;
pub const SECBIT_KEEP_CAPS_LOCKED: u32 = 1 << 5;
pub const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
/// The four flags Moat knows, and their locks.
pub const SECURE_ALL_BITS: u32 =
    SECBIT_NOROOT | SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS | SECBIT_NO_CAP_AMBIENT_RAISE;
pub const SECURE_ALL_LOCKS: u32 = SECURE_ALL_BITS << 1;

/// A task's capability sets, as bit masks of capability numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSets {
    /// What the task may use now.
    pub effective: u64,
    /// The limit of the effective set, and of what the task can add to its inheritable set.
    pub permitted: u64,
    /// What may pass to the permitted set across `execve`.
    pub inheritable: u64,
    /// The limit of what `execve` can give.
    pub bounding: u64,
    /// What an unprivileged program keeps across `execve` (both permitted and effective).
    pub ambient: u64,
}

impl CapSets {
    /// The sets a process starts with when it is made with these real and effective UIDs: root
    /// holds every capability, other users none; the bounding set is full.
    pub fn for_ids(uid: u32, euid: u32) -> Self {
        let permitted = if uid == 0 || euid == 0 { ALL_CAPS } else { 0 };
        CapSets {
            effective: if euid == 0 { permitted } else { 0 },
            permitted,
            inheritable: 0,
            bounding: ALL_CAPS,
            ambient: 0,
        }
    }
}

impl CapSets {
    /// Take out what the sandbox withholds ([`WITHHELD`]) from every set.
    pub fn withhold(&mut self) {
        for set in [
            &mut self.effective,
            &mut self.permitted,
            &mut self.inheritable,
            &mut self.bounding,
            &mut self.ambient,
        ] {
            *set &= !WITHHELD;
        }
    }
}

impl Default for CapSets {
    /// Root's: every capability.
    fn default() -> Self {
        CapSets::for_ids(0, 0)
    }
}

impl Credentials {
    /// Credentials of a new process running as `uid`/`gid` with these supplementary groups,
    /// and the capabilities Linux gives such a process.
    pub fn for_user(uid: u32, gid: u32, groups: Vec<u32>) -> Self {
        Credentials {
            uid,
            euid: uid,
            suid: uid,
            gid,
            egid: gid,
            sgid: gid,
            fsuid: uid,
            fsgid: gid,
            groups,
            caps: CapSets::for_ids(uid, uid),
            securebits: 0,
        }
    }

    /// Whether these credentials hold `cap` in their effective set.
    pub fn has(&self, cap: Cap) -> bool {
        self.caps.effective & cap.bit() != 0
    }

    fn secure(&self, bit: u32) -> bool {
        self.securebits & bit != 0
    }
}

/// After a change of real, effective or saved user IDs (`setuid` and friends), Linux's fix-up
/// of the capability sets unless `SECBIT_NO_SETUID_FIXUP`: leaving root altogether clears the
/// permitted and effective sets (the permitted one survives with `SECBIT_KEEP_CAPS`) and the
/// ambient set; the effective UID leaving 0 clears the effective set, and reaching 0 fills it
/// from the permitted one.
pub fn fix_after_setuid(old: &Credentials, new: &mut Credentials) {
    if old.secure(SECBIT_NO_SETUID_FIXUP) {
        return;
    }
    let was_root = old.uid == 0 || old.euid == 0 || old.suid == 0;
    let is_root = new.uid == 0 || new.euid == 0 || new.suid == 0;
    if was_root && !is_root {
        if !old.secure(SECBIT_KEEP_CAPS) {
            new.caps.permitted = 0;
            new.caps.effective = 0;
        }
        new.caps.ambient = 0;
    }
    if old.euid == 0 && new.euid != 0 {
        new.caps.effective = 0;
    }
    if old.euid != 0 && new.euid == 0 {
        new.caps.effective = new.caps.permitted;
    }
}

/// After `setfsuid`: the filesystem capabilities leave the effective set with a filesystem UID
/// of 0, and come back (from the permitted set) with it.
pub fn fix_after_setfsuid(old: &Credentials, new: &mut Credentials) {
    if old.secure(SECBIT_NO_SETUID_FIXUP) {
        return;
    }
    if old.fsuid == 0 && new.fsuid != 0 {
        new.caps.effective &= !FS_CAPS;
    }
    if old.fsuid != 0 && new.fsuid == 0 {
        new.caps.effective |= new.caps.permitted & FS_CAPS;
    }
}

/// The capability sets across `execve` of a file without file capabilities or set-ID bits
/// (capabilities(7), "Transformation of capabilities during execve()"): root (unless
/// `SECBIT_NOROOT`) gets its bounding and inheritable sets as permitted, and effective if the
/// effective UID is 0; everyone keeps the ambient set. With `no_new_privs` nothing is gained.
/// `SECBIT_KEEP_CAPS` is cleared.
pub fn on_exec(creds: &mut Credentials, no_new_privs: bool) {
    let old = creds.caps;
    let caps = &mut creds.caps;
    let root = !creds.securebits & SECBIT_NOROOT != 0;
    let mut permitted = 0;
    let mut effective = false;
    if root && (creds.uid == 0 || creds.euid == 0) {
        permitted = old.bounding | old.inheritable;
        effective = creds.euid == 0;
    }
    permitted |= caps.ambient;
    if no_new_privs {
        permitted &= old.permitted;
    }
    caps.permitted = permitted;
    caps.effective = if effective { permitted } else { caps.ambient };
    creds.securebits &= !SECBIT_KEEP_CAPS;
}

/// `capset`'s rules (capset(2)): the inheritable set may gain only what is permitted (or, with
/// `CAP_SETPCAP`, what is in the bounding set), never beyond the bounding set; the permitted set
/// may only shrink; the effective set must stay within the permitted one. The ambient set keeps
/// only what is still both permitted and inheritable.
pub fn capset(creds: &mut Credentials, effective: u64, permitted: u64, inheritable: u64) -> bool {
    let old = creds.caps;
    let inheritable_limit = if creds.has(Cap::Setpcap) {
        old.inheritable | old.bounding
    } else {
        old.inheritable | old.permitted
    };
    if inheritable & !inheritable_limit != 0
        || inheritable & !(old.inheritable | old.bounding) != 0
        || permitted & !old.permitted != 0
        || effective & !permitted != 0
    {
        return false;
    }
    creds.caps = CapSets {
        effective,
        permitted,
        inheritable,
        bounding: old.bounding,
        ambient: old.ambient & permitted & inheritable,
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_numbers() {
        assert_eq!(by_name("CAP_NET_RAW"), Some(Cap::NetRaw as u32));
        assert_eq!(
            by_name("net_bind_service"),
            Some(Cap::NetBindService as u32)
        );
        assert_eq!(by_name("CAP_MAC_OVERRIDE"), Some(Cap::MacOverride as u32));
        assert_eq!(by_name("CAP_CHECKPOINT_RESTORE"), Some(CAP_LAST_CAP));
        assert_eq!(by_name("CAP_NOPE"), None);
    }

    #[test]
    fn root_dropping_to_a_user_loses_everything_unless_keepcaps() {
        let root = Credentials::for_user(0, 0, vec![]);
        let mut user = root.clone();
        (user.uid, user.euid, user.suid, user.fsuid) = (1000, 1000, 1000, 1000);
        fix_after_setuid(&root, &mut user);
        assert_eq!((user.caps.permitted, user.caps.effective), (0, 0));

        let mut keep = root.clone();
        keep.securebits = SECBIT_KEEP_CAPS;
        let mut user = keep.clone();
        (user.uid, user.euid, user.suid) = (1000, 1000, 1000);
        fix_after_setuid(&keep, &mut user);
        assert_eq!((user.caps.permitted, user.caps.effective), (ALL_CAPS, 0));
    }

    #[test]
    fn exec_as_root_regains_the_bounding_set_but_not_past_no_new_privs() {
        let mut root = Credentials::for_user(0, 0, vec![]);
        assert!(capset(&mut root, 0, Cap::NetRaw.bit(), 0));
        let mut plain = root.clone();
        on_exec(&mut plain, false);
        assert_eq!(plain.caps.effective, ALL_CAPS);
        on_exec(&mut root, true);
        assert_eq!(root.caps.effective, Cap::NetRaw.bit());
    }

    #[test]
    fn capset_refuses_raises() {
        let mut user = Credentials::for_user(1000, 1000, vec![]);
        assert!(!capset(&mut user, 0, Cap::Kill.bit(), 0));
        let mut root = Credentials::for_user(0, 0, vec![]);
        assert!(capset(&mut root, 0, Cap::Kill.bit(), 0));
        assert!(!capset(&mut root, Cap::Kill.bit(), Cap::Kill.bit() | 1, 0));
    }
}
