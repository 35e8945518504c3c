//! Advisory file locks: `flock` locks and record locks (`fcntl` POSIX and OFD locks), in one
//! sandbox-wide table keyed by file.
//!
//! As on Linux, `flock` locks belong to an open file description and conflict only with other
//! `flock` locks; record locks cover byte ranges and belong either to a process (POSIX locks:
//! a process never conflicts with itself, and closing any of its fds of the file drops them) or
//! to an open file description (OFD locks); the two kinds of record lock conflict with each
//! other. A description's locks go when its last reference closes.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use moat_abi::Errno;

/// Who holds a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// An open file description (flock and OFD locks), by [`super::OpenFile::id`].
    Description(u64),
    /// A process (POSIX record locks), by pid.
    Process(i32),
}

/// Which lock family: families never conflict with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Flock,
    Record,
}

/// A held lock over `[start, end]` (inclusive; `u64::MAX` means "to the end, however far").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub owner: Owner,
    pub family: Family,
    pub write: bool,
    pub start: u64,
    pub end: u64,
}

impl Lock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// File identity (`st_dev`, `st_ino`) → the locks on it.
type Table = HashMap<(u64, u64), Vec<Lock>>;

static LOCKS: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

fn table() -> MutexGuard<'static, Table> {
    LOCKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first lock of another owner that `wanted` conflicts with.
pub fn conflict(file: (u64, u64), wanted: &Lock) -> Option<Lock> {
    table().get(&file)?.iter().copied().find(|held| {
        held.family == wanted.family
            && held.owner != wanted.owner
            && (held.write || wanted.write)
            && held.overlaps(wanted.start, wanted.end)
    })
}

/// Take `lock` (or, with `unlock`, drop the owner's locks in its range): `EAGAIN` if another
/// owner holds a conflicting lock. The owner's own locks in the range are replaced, splitting
/// any that stick out of it.
pub fn set(file: (u64, u64), lock: Lock, unlock: bool) -> Result<(), Errno> {
    if !unlock && conflict(file, &lock).is_some() {
        return Err(Errno::EAGAIN);
    }
    let mut table = table();
    let locks = table.entry(file).or_default();
    let mut kept = Vec::with_capacity(locks.len() + 2);
    for held in locks.drain(..) {
        if held.owner != lock.owner
            || held.family != lock.family
            || !held.overlaps(lock.start, lock.end)
        {
            kept.push(held);
            continue;
        }
        if held.start < lock.start {
            kept.push(Lock {
                end: lock.start - 1,
                ..held
            });
        }
        if held.end > lock.end {
            kept.push(Lock {
                start: lock.end + 1,
                ..held
            });
        }
    }
    if !unlock {
        kept.push(lock);
    }
    *locks = kept;
    if locks.is_empty() {
        table.remove(&file);
    }
    Ok(())
}

/// Whether any lock is held at all: `close` skips its bookkeeping (and the stat it needs)
/// when none is, which is nearly always.
pub fn any() -> bool {
    !table().is_empty()
}

/// Drop every lock `owner` holds (a description closing), or only those on `file`.
pub fn release(owner: Owner, file: Option<(u64, u64)>) {
    let mut table = table();
    if table.is_empty() {
        return;
    }
    table.retain(|id, locks| {
        if file.is_none_or(|f| f == *id) {
            locks.retain(|l| l.owner != owner);
        }
        !locks.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owners far from the ids real open files get: other tests run in parallel, and their
    /// files release their own ids' locks when dropped.
    fn lock(owner: u64, write: bool, start: u64, end: u64) -> Lock {
        Lock {
            owner: Owner::Description(u64::MAX - owner),
            family: Family::Record,
            write,
            start,
            end,
        }
    }

    #[test]
    fn ranges_conflict_split_and_release() {
        let file = (u64::MAX, 1);
        set(file, lock(1, true, 10, 19), false).unwrap();
        assert_eq!(set(file, lock(2, false, 15, 30), false), Err(Errno::EAGAIN));
        set(file, lock(2, false, 20, 30), false).unwrap();
        // Owner 1 unlocks the middle of its range: two pieces stay.
        set(file, lock(1, false, 12, 14), true).unwrap();
        assert!(conflict(file, &lock(3, false, 12, 14)).is_none());
        assert_eq!(
            conflict(file, &lock(3, false, 16, 16)).map(|l| (l.start, l.end)),
            Some((15, 19))
        );
        // Readers share.
        assert!(conflict(file, &lock(3, false, 25, 25)).is_none());
        release(Owner::Description(u64::MAX - 1), None);
        release(Owner::Description(u64::MAX - 2), None);
        assert_eq!(conflict(file, &lock(3, true, 0, u64::MAX)), None);
    }
}
