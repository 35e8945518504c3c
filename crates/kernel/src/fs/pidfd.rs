//! pidfd: a file that names a process (pidfd_open(2)). It is readable (`POLLIN`) once the
//! process has exited, and `pidfd_send_signal` and `waitid(P_PIDFD)` act on that process,
//! whatever pid it had: a pidfd never names a process that reused the number.

use std::sync::Arc;

use moat_abi::{Errno, Stat};

use super::pipe::{POLLIN, POLLRDNORM};
use super::{FileOps, OpenFile};
use crate::process::ThreadGroup;
use crate::wait::WaitQueue;

pub struct PidFd {
    pub group: Arc<ThreadGroup>,
}

impl FileOps for PidFd {
    fn read(
        &self,
        _file: &OpenFile,
        _buf: &mut [u8],
        _offset: Option<u64>,
    ) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn write(&self, _file: &OpenFile, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(super::anon_inode_stat())
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        if self.group.dead.load(std::sync::atomic::Ordering::SeqCst) {
            POLLIN | POLLRDNORM
        } else {
            0
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.group.exited)
    }
}
