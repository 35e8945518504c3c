//! A process's file descriptor table.

use std::sync::Arc;

use moat_abi::Errno;

use super::OpenFile;

#[derive(Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

/// Fd number -> open file, with the close-on-exec flag per fd.
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
}

impl FdTable {
    pub fn get(&self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .map(|s| s.file.clone())
            .ok_or(Errno::EBADF)
    }

    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.slots
            .get(i)
            .and_then(Option::as_ref)
            .map(|s| s.cloexec)
            .ok_or(Errno::EBADF)
    }

    pub fn set_cloexec(&mut self, fd: i32, cloexec: bool) -> Result<(), Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        let slot = self
            .slots
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        slot.cloexec = cloexec;
        Ok(())
    }

    /// Install at the lowest free fd `>= min`, below `limit` (`RLIMIT_NOFILE`): `EMFILE` if none.
    pub fn install(
        &mut self,
        file: Arc<OpenFile>,
        cloexec: bool,
        min: i32,
        limit: u64,
    ) -> Result<i32, Errno> {
        let min = usize::try_from(min).map_err(|_| Errno::EINVAL)?;
        let limit = usize::try_from(limit.min(i32::MAX as u64)).unwrap_or(usize::MAX);
        let free = (min..limit)
            .find(|&i| self.slots.get(i).is_none_or(Option::is_none))
            .ok_or(Errno::EMFILE)?;
        self.put(free, Slot { file, cloexec });
        Ok(free as i32)
    }

    /// Install at exactly `fd`, replacing (and returning) what was there.
    pub fn install_at(
        &mut self,
        fd: i32,
        file: Arc<OpenFile>,
        cloexec: bool,
    ) -> Result<Option<Arc<OpenFile>>, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        let old = self.slots.get_mut(i).and_then(Option::take).map(|s| s.file);
        self.put(i, Slot { file, cloexec });
        Ok(old)
    }

    fn put(&mut self, i: usize, slot: Slot) {
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(slot);
    }

    /// exec: close every fd marked close-on-exec.
    pub fn close_on_exec(&mut self) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.cloexec) {
                *slot = None;
            }
        }
    }

    /// The highest open fd, if any.
    pub fn highest(&self) -> Option<u32> {
        self.slots
            .iter()
            .rposition(Option::is_some)
            .map(|i| i as u32)
    }

    /// Remove `fd`, returning its file.
    pub fn remove(&mut self, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.slots
            .get_mut(i)
            .and_then(Option::take)
            .map(|s| s.file)
            .ok_or(Errno::EBADF)
    }
}
