//! Futex wait queues, keyed by address space and address (private futexes and private memory)
//! or by memory-file offset (shared memory, so processes sharing pages share the futex).
//!
//! A waiter checks the futex word and enqueues itself under the table lock, so a waker that
//! changes the word and then calls `wake` can never miss it (the futex contract). Waiters sleep
//! on their task's [`Waker`], so a signal interrupts a futex wait like any other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::process::Guard;
use crate::task::Task;
use crate::wait::Waker;

/// Identifies a futex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FutexKey {
    /// An address in one address space (identified by its memory manager).
    Private(usize, u64),
    /// A memory-file offset: the same word for every process that maps the page.
    Shared(u64),
}

/// One waiting task.
pub struct Waiter {
    pub bitset: u32,
    waker: Arc<Waker>,
    woken: AtomicBool,
}

impl Waiter {
    pub fn woken(&self) -> bool {
        self.woken.load(Ordering::SeqCst)
    }
}

/// A task waiting for a priority-inheritance futex (`FUTEX_LOCK_PI`).
pub struct PiWaiter {
    tid: u32,
    waker: Arc<Waker>,
    /// The lock's holder gave it to this waiter (`FUTEX_UNLOCK_PI`): its tid is in the word.
    handed: AtomicBool,
    /// Woken without the lock (its holder died): try again.
    woken: AtomicBool,
}

impl PiWaiter {
    pub fn handed(&self) -> bool {
        self.handed.load(Ordering::SeqCst)
    }

    pub fn woken(&self) -> bool {
        self.woken.load(Ordering::SeqCst)
    }
}

/// What a `FUTEX_LOCK_PI` attempt found.
pub enum PiAttempt {
    /// The word was free and now names the caller.
    Acquired,
    /// Held by this thread: wait in the queue.
    Wait(u32),
}

/// All futex waiters of a sandbox.
#[derive(Default)]
pub struct FutexTable {
    queues: Mutex<HashMap<FutexKey, Vec<Arc<Waiter>>>>,
    /// Waiters of PI futexes, first come first served (there are no priorities to order by:
    /// the host schedules every thread alike).
    pi_queues: Mutex<HashMap<FutexKey, std::collections::VecDeque<Arc<PiWaiter>>>>,
}

impl FutexTable {
    /// Enqueue a waiter if `still_expected()` holds (checked under the table lock).
    pub fn enqueue(
        &self,
        key: FutexKey,
        bitset: u32,
        waker: &Arc<Waker>,
        still_expected: impl FnOnce() -> bool,
    ) -> Option<Arc<Waiter>> {
        let mut queues = self.queues.guard();
        if !still_expected() {
            return None;
        }
        let waiter = Arc::new(Waiter {
            bitset,
            waker: waker.clone(),
            woken: AtomicBool::new(false),
        });
        queues.entry(key).or_default().push(waiter.clone());
        Some(waiter)
    }

    /// Take a waiter off its queue (timeout, signal); `true` if it had been woken meanwhile.
    pub fn dequeue(&self, key: FutexKey, waiter: &Arc<Waiter>) -> bool {
        let mut queues = self.queues.guard();
        for q in queues.values_mut() {
            q.retain(|w| !Arc::ptr_eq(w, waiter));
        }
        queues.retain(|_, q| !q.is_empty());
        let _ = key;
        waiter.woken()
    }

    /// Wake up to `count` waiters whose bitset intersects `bitset`; returns how many.
    pub fn wake(&self, key: FutexKey, bitset: u32, count: usize) -> usize {
        let mut queues = self.queues.guard();
        Self::wake_locked(&mut queues, key, bitset, count)
    }

    fn wake_locked(
        queues: &mut HashMap<FutexKey, Vec<Arc<Waiter>>>,
        key: FutexKey,
        bitset: u32,
        count: usize,
    ) -> usize {
        let Some(q) = queues.get_mut(&key) else {
            return 0;
        };
        let mut n = 0;
        q.retain(|w| {
            if n < count && w.bitset & bitset != 0 {
                w.woken.store(true, Ordering::SeqCst);
                w.waker.wake();
                n += 1;
                false
            } else {
                true
            }
        });
        if q.is_empty() {
            queues.remove(&key);
        }
        n
    }

    /// `FUTEX_CMP_REQUEUE`/`FUTEX_REQUEUE`: if `check()` holds (under the lock), wake up to
    /// `wake` waiters of `from` and move up to `requeue` others to `to`. Returns the number
    /// woken plus moved, or `None` if the check failed.
    pub fn requeue(
        &self,
        from: FutexKey,
        to: FutexKey,
        wake: usize,
        requeue: usize,
        check: impl FnOnce() -> bool,
    ) -> Option<usize> {
        let mut queues = self.queues.guard();
        if !check() {
            return None;
        }
        let woken = Self::wake_locked(&mut queues, from, u32::MAX, wake);
        let mut moved = Vec::new();
        if let Some(q) = queues.get_mut(&from) {
            let n = requeue.min(q.len());
            moved.extend(q.drain(..n));
            if q.is_empty() {
                queues.remove(&from);
            }
        }
        let count = moved.len();
        if count > 0 {
            queues.entry(to).or_default().extend(moved);
        }
        Some(woken + count)
    }

    /// Wake waiters of two futexes under one lock (`FUTEX_WAKE_OP`), after `op()` (which
    /// returns whether the second futex's waiters are to be woken).
    pub fn wake_op(
        &self,
        first: FutexKey,
        n1: usize,
        second: FutexKey,
        n2: usize,
        op: impl FnOnce() -> Result<bool, moat_abi::Errno>,
    ) -> Result<usize, moat_abi::Errno> {
        let mut queues = self.queues.guard();
        let wake_second = op()?;
        let mut n = Self::wake_locked(&mut queues, first, u32::MAX, n1);
        if wake_second {
            n += Self::wake_locked(&mut queues, second, u32::MAX, n2);
        }
        Ok(n)
    }
}

impl FutexTable {
    /// `FUTEX_LOCK_PI`: under the PI lock, `attempt(has_waiters)` updates the word; if the
    /// lock is held by another thread, the caller is queued and its waiter returned.
    pub fn pi_lock(
        &self,
        key: FutexKey,
        tid: u32,
        waker: &Arc<Waker>,
        attempt: impl FnOnce(bool) -> Result<PiAttempt, moat_abi::Errno>,
    ) -> Result<Option<(Arc<PiWaiter>, u32)>, moat_abi::Errno> {
        let mut queues = self.pi_queues.guard();
        let has_waiters = queues.get(&key).is_some_and(|q| !q.is_empty());
        match attempt(has_waiters)? {
            PiAttempt::Acquired => Ok(None),
            PiAttempt::Wait(owner) => {
                let waiter = Arc::new(PiWaiter {
                    tid,
                    waker: waker.clone(),
                    handed: AtomicBool::new(false),
                    woken: AtomicBool::new(false),
                });
                queues.entry(key).or_default().push_back(waiter.clone());
                Ok(Some((waiter, owner)))
            }
        }
    }

    /// Take a PI waiter off its queue (timeout, signal, retry); `true` if the lock had been
    /// handed to it meanwhile (it then holds it).
    pub fn pi_dequeue(&self, key: FutexKey, waiter: &Arc<PiWaiter>) -> bool {
        let mut queues = self.pi_queues.guard();
        if let Some(q) = queues.get_mut(&key) {
            q.retain(|w| !Arc::ptr_eq(w, waiter));
            if q.is_empty() {
                queues.remove(&key);
            }
        }
        waiter.handed()
    }

    /// `FUTEX_UNLOCK_PI`: `release(next)` updates the word, giving the lock to `next` (the
    /// first waiter's tid and whether others wait behind it) or freeing it; on success that
    /// waiter is woken holding the lock.
    pub fn pi_unlock(
        &self,
        key: FutexKey,
        release: impl FnOnce(Option<(u32, bool)>) -> Result<(), moat_abi::Errno>,
    ) -> Result<(), moat_abi::Errno> {
        let mut queues = self.pi_queues.guard();
        let next = queues
            .get(&key)
            .and_then(|q| q.front().map(|w| (w.tid, q.len() > 1)));
        release(next)?;
        if next.is_some() {
            if let Some(q) = queues.get_mut(&key) {
                if let Some(w) = q.pop_front() {
                    w.handed.store(true, Ordering::SeqCst);
                    w.waker.wake();
                }
                if q.is_empty() {
                    queues.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// The holder of a PI futex died (robust list): wake its first waiter to take it over.
    pub fn pi_wake_one(&self, key: FutexKey) {
        let queues = self.pi_queues.guard();
        if let Some(w) = queues.get(&key).and_then(|q| q.front()) {
            w.woken.store(true, Ordering::SeqCst);
            w.waker.wake();
        }
    }
}

/// The key of a private futex (or of a shared one in private memory) at `addr` of `task`.
pub fn key_for(task: &Task, addr: u64) -> FutexKey {
    FutexKey::Private(Arc::as_ptr(&task.mm) as usize, addr)
}

/// The key of a futex without `FUTEX_PRIVATE_FLAG`: in shared memory it is the page's
/// memory-file offset, so processes sharing the page share the futex.
pub fn shared_key_for(task: &Task, addr: u64) -> FutexKey {
    match task.mm.guard().shared_offset(addr) {
        Some(offset) => FutexKey::Shared(offset),
        None => key_for(task, addr),
    }
}

/// Futex word bits of robust and PI futexes: `FUTEX_OWNER_DIED`, `FUTEX_WAITERS`, the tid.
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// At most this many entries are walked (Linux's `ROBUST_LIST_LIMIT`): the list is the
/// application's and may be corrupt or circular.
const ROBUST_LIST_LIMIT: usize = 2048;

/// At thread exit, mark the robust futexes the thread still holds as owner-died and wake one
/// waiter of each, so a waiter learns its lock holder is gone.
pub fn release_robust_list(task: &mut Task) {
    let (head, len) = task.robust_list;
    if head == 0 || len != moat_abi::ROBUST_LIST_HEAD_SIZE {
        return;
    }
    let read = |task: &Task, addr: u64| task.mm.guard().read_obj::<u64>(addr).ok();
    let Some(mut entry) = read(task, head) else {
        return;
    };
    let Some(offset) = read(task, head + 8) else {
        return;
    };
    let pending = read(task, head + 16).unwrap_or(0);
    let handle_entry = |task: &Task, entry: u64| {
        let word = entry.wrapping_add(offset);
        let mut mm = task.mm.guard();
        let Ok(value) = mm.read_obj::<u32>(word) else {
            return;
        };
        if value & FUTEX_TID_MASK != task.tid as u32 {
            return;
        }
        let new = (value & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        if mm.write_obj(word, &new).is_ok() && value & FUTEX_WAITERS != 0 {
            drop(mm);
            // A process-shared mutex's waiters are keyed by the page, a private one's by the
            // address (the same key in private memory).
            let (private, shared) = (key_for(task, word), shared_key_for(task, word));
            let keys = if shared == private {
                vec![private]
            } else {
                vec![private, shared]
            };
            for key in keys {
                task.kernel.futexes.wake(key, u32::MAX, 1);
                task.kernel.futexes.pi_wake_one(key);
            }
        }
    };
    let mut walked = 0;
    while entry != head && entry != 0 && walked < ROBUST_LIST_LIMIT {
        let next = read(task, entry);
        if entry != pending {
            handle_entry(task, entry & !1);
        }
        match next {
            Some(n) => entry = n,
            None => break,
        }
        walked += 1;
    }
    if pending != 0 {
        handle_entry(task, pending & !1);
    }
}
