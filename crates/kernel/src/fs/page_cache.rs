//! The page cache of a host file the sandbox cannot change (the gofer-served root under the
//! overlay, read-only volumes): the file's bytes in memory-file pages, read from the host
//! once and mapped copy-on-write by every private mapping of the file and by the loader.
//!
//! Without it each `mmap` of a library, and each `execve`, copied the file into fresh pages:
//! every process paid for its own copy of libc, and a fork+exec of a dynamic program spent
//! most of its time copying. With it, a program's code is read from the host the first time
//! any process of the sandbox maps it; later mappings only map the pages (DESIGN.md §4:
//! application memory is the memory file).
//!
//! Pages are read in runs that are contiguous in the memory file, so that a mapping of them
//! is one host mapping: a small file (up to [`WHOLE_FILE`]) at once, a larger one in aligned
//! chunks of [`CHUNK`] as they are first needed. The cache lives as long as the inode (the
//! dentry cache decides); pages a mapping still holds keep their own reference. Changes the
//! host makes to the file while the sandbox runs are not seen, as for the file's attributes.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use moat_abi::Errno;
use moat_gofer::GoferClient;
use moat_memory::{FileRange, MemoryFile};

use crate::mm::{PageSource, PAGE};
use crate::process::Guard;

/// Files up to this size are read whole at their first use.
const WHOLE_FILE: u64 = 16 << 20;
/// Larger files are read in aligned chunks of this many bytes.
const CHUNK: u64 = 2 << 20;

/// A read-only host file's pages.
pub struct HostPageCache {
    memory: Arc<MemoryFile>,
    /// The file's size when the cache was made.
    size: u64,
    state: Mutex<State>,
}

struct State {
    /// A host fd of the file while pages are still to be read (dropped once all are in). It
    /// is opened with the cache: a mapping may outlive the inode, whose gofer fid goes with it.
    fd: Option<OwnedFd>,
    /// Page index -> memory-file offset (each holds the cache's reference).
    pages: BTreeMap<u64, u64>,
}

impl HostPageCache {
    /// The cache of the file `fid` names, of `size` bytes.
    pub fn new(
        memory: Arc<MemoryFile>,
        client: &GoferClient,
        fid: u64,
        size: u64,
    ) -> Result<Self, Errno> {
        let fd = client.open(fid, libc::O_RDONLY as u32).map_err(Errno)?;
        Ok(HostPageCache {
            memory,
            size,
            state: Mutex::new(State {
                fd: Some(fd),
                pages: BTreeMap::new(),
            }),
        })
    }

    fn file_pages(&self) -> u64 {
        self.size.div_ceil(PAGE)
    }

    /// Read the missing pages of `[first, end)` (page indices inside the file), and as many
    /// around them as make a good run; with the sandbox's memory nearly full, only those.
    fn fill(&self, state: &mut State, first: u64, end: u64) -> Result<(), Errno> {
        match self.fill_range(state, first, end, true) {
            Err(Errno::ENOMEM) => self.fill_range(state, first, end, false),
            r => r,
        }
    }

    fn fill_range(
        &self,
        state: &mut State,
        first: u64,
        end: u64,
        widen: bool,
    ) -> Result<(), Errno> {
        let (first, end) = if !widen {
            (first, end)
        } else if self.size <= WHOLE_FILE {
            (0, self.file_pages())
        } else {
            let chunk = CHUNK / PAGE;
            (
                first / chunk * chunk,
                end.div_ceil(chunk)
                    .saturating_mul(chunk)
                    .min(self.file_pages()),
            )
        };
        let mut index = first;
        while index < end {
            if state.pages.contains_key(&index) {
                index += 1;
                continue;
            }
            let run_end = state
                .pages
                .range(index..end)
                .next()
                .map_or(end, |(&i, _)| i);
            self.read_run(state, index, run_end)?;
            index = run_end;
        }
        if state.pages.len() as u64 == self.file_pages() {
            state.fd = None;
        }
        Ok(())
    }

    /// Read pages `[first, end)` into one new run of the memory file.
    fn read_run(&self, state: &mut State, first: u64, end: u64) -> Result<(), Errno> {
        let Some(fd) = state.fd.as_ref() else {
            return Err(Errno::EIO);
        };
        let len = (end - first) * PAGE;
        let run = self.memory.allocate(len).map_err(|_| Errno::ENOMEM)?;
        let mut done = 0u64;
        while done < len {
            // A short read means the host file shrank: the rest reads as zeros, as a page
            // past a file's end does.
            match self.memory.read_from_fd(
                fd.as_fd(),
                first * PAGE + done,
                run.offset + done,
                (len - done) as usize,
            ) {
                Ok(0) => break,
                Ok(n) => done += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.memory.free(run);
                    return Err(Errno(e.raw_os_error().unwrap_or(libc::EIO)));
                }
            }
        }
        for (i, index) in (first..end).enumerate() {
            state.pages.insert(index, run.offset + i as u64 * PAGE);
        }
        Ok(())
    }
}

impl PageSource for HostPageCache {
    fn share_pages(&self, first: u64, count: u64) -> Result<Vec<Option<u64>>, Errno> {
        let mut state = self.state.guard();
        let end = first.saturating_add(count);
        let inside_end = end.min(self.file_pages());
        if first < inside_end
            && state.pages.range(first..inside_end).count() as u64 != inside_end - first
        {
            self.fill(&mut state, first, inside_end)?;
        }
        let out: Vec<Option<u64>> = (first..end)
            .map(|index| state.pages.get(&index).copied())
            .collect();
        share_runs(&self.memory, &out);
        Ok(out)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<Result<usize, Errno>> {
        if offset >= self.size {
            return Some(Ok(0));
        }
        let len = (buf.len() as u64).min(self.size - offset);
        let (first, end) = (offset / PAGE, (offset + len).div_ceil(PAGE));
        let mut state = self.state.guard();
        if state.pages.range(first..end).count() as u64 != end - first {
            if let Err(e) = self.fill(&mut state, first, end) {
                return Some(Err(e));
            }
        }
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let Some(&page) = state.pages.get(&(pos / PAGE)) else {
                return Some(Err(Errno::EIO));
            };
            let n = (PAGE - pos % PAGE).min(len - done);
            self.memory.read(
                page + pos % PAGE,
                &mut buf[done as usize..(done + n) as usize],
            );
            done += n;
        }
        Some(Ok(len as usize))
    }
}

/// Give each of `pages` one more reference, a run of pages contiguous in the memory file at
/// a time (one update of the file's reference counts per run, not per page).
pub fn share_runs(memory: &MemoryFile, pages: &[Option<u64>]) {
    for (_, offset, n) in crate::mm::contiguous_runs(pages) {
        memory.share(FileRange {
            offset,
            len: n as u64 * PAGE,
        });
    }
}

impl Drop for HostPageCache {
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &offset in state.pages.values() {
            self.memory.free(FileRange { offset, len: PAGE });
        }
    }
}
