//! read, write, readv, writev, pread64, pwrite64.

use std::sync::Arc;

use moat_abi::{Errno, Iovec};

use super::{int, SyscallResult};
use crate::fs::OpenFile;
use crate::process::Guard;
use crate::task::Task;

/// Linux caps a single transfer at `MAX_RW_COUNT` (INT_MAX rounded down to a page).
const MAX_RW_COUNT: u64 = 0x7fff_f000;
/// Largest chunk the kernel stages through its own buffer at once.
const CHUNK: u64 = 1 << 20;
/// The page size pipes fill in.
const PAGE_SIZE: usize = 4096;
/// `IOV_MAX`.
const IOV_MAX: i32 = 1024;

fn readable_file(task: &Task, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    let file = task.files.guard().get(int(fd))?;
    if !file.readable() {
        return Err(Errno::EBADF);
    }
    Ok(file)
}

fn writable_file(task: &Task, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    let file = task.files.guard().get(int(fd))?;
    if !file.writable() {
        return Err(Errno::EBADF);
    }
    Ok(file)
}

/// The task's staging buffer, at least `len` bytes long. Reused across calls: a fresh 1 MiB
/// allocation per read costs an mmap, 256 page faults and an munmap on the host, more than the
/// copy itself. Only the part a call fills is ever copied out. Hand it back with [`restore`].
fn staging(task: &mut Task, len: usize) -> Vec<u8> {
    let mut buf = std::mem::take(&mut task.io_buffer);
    if buf.len() < len {
        buf.resize(len, 0);
    }
    buf
}

fn restore(task: &mut Task, buf: Vec<u8>) {
    task.io_buffer = buf;
}

/// A blocking read or write of a donated host stream (a terminal, a pipe) would block on the
/// host, where no signal can interrupt it: wait for the host fd to be ready here instead,
/// interruptibly, looking again every 10 ms (host readiness cannot wake a task).
fn wait_for_host(task: &mut Task, file: &OpenFile, events: u32) -> Result<(), Errno> {
    if file.nonblocking() || file.ops().seekable() {
        return Ok(());
    }
    let Some(fd) = file.ops().host_fd() else {
        return Ok(());
    };
    let flags = rustix::event::PollFlags::from_bits_truncate(events as u16)
        | rustix::event::PollFlags::ERR
        | rustix::event::PollFlags::HUP;
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(fd, flags)];
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // Let the read or write itself report the error.
            Err(_) => return Ok(()),
        }
        let slice = std::time::Instant::now() + std::time::Duration::from_millis(10);
        match task.block_on(&[], Some(slice), |_| Ok(None::<()>)) {
            Err(Errno::ETIMEDOUT) => {}
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
}

/// Read from a stream, sleeping while it has nothing to give unless the description is
/// `O_NONBLOCK` (files that never wait just return what they have).
pub(crate) fn read_stream(
    task: &mut Task,
    file: &OpenFile,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    use crate::fs::pipe::POLLIN;
    if file.ops().as_socket().is_some() {
        return super::socket::read_socket(task, file, buf);
    }
    crate::fs::pty::job_control(task, file, crate::fs::pty::Access::Read)?;
    wait_for_host(task, file, POLLIN)?;
    loop {
        match file.read(buf) {
            Err(Errno::EAGAIN) if !file.nonblocking() && file.ops().wait_queue().is_some() => {
                wait_readable(task, file)?;
            }
            r => return r,
        }
    }
}

/// Sleep until a stream in the kernel has something to read (or its end, or an error).
fn wait_readable(task: &mut Task, file: &OpenFile) -> Result<(), Errno> {
    use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN};
    let Some(queue) = file.ops().wait_queue() else {
        return Ok(());
    };
    task.block_on(&[queue], None, |_| {
        Ok((file.ops().poll(file) & (POLLIN | POLLHUP | POLLERR) != 0).then_some(()))
    })
}

/// Write to a stream: a blocking description waits for room until everything is written
/// (a signal then ends it with what was written so far); `EPIPE` also raises `SIGPIPE`.
pub(crate) fn write_stream(task: &mut Task, file: &OpenFile, data: &[u8]) -> Result<usize, Errno> {
    use crate::fs::pipe::{POLLERR, POLLOUT};
    if file.ops().as_socket().is_some() {
        return super::socket::write_socket(task, file, data);
    }
    crate::fs::pty::job_control(task, file, crate::fs::pty::Access::Write)?;
    wait_for_host(task, file, POLLOUT)?;
    let mut done = 0;
    loop {
        match file.write(&data[done..]) {
            Ok(n) => {
                done += n;
                if done == data.len() || file.ops().wait_queue().is_none() || file.nonblocking() {
                    return Ok(done);
                }
            }
            Err(Errno::EAGAIN) if !file.nonblocking() && file.ops().wait_queue().is_some() => {}
            Err(Errno::EAGAIN) if done > 0 => return Ok(done),
            Err(Errno::EPIPE) => {
                let info = moat_abi::SigInfo::from_process(
                    libc::SIGPIPE,
                    moat_abi::SI_USER,
                    task.tgid,
                    task.creds.uid,
                );
                crate::signal::send_to_thread_locked(&task.kernel.tree.guard(), task.tid, info);
                return Err(Errno::EPIPE);
            }
            Err(e) => return Err(e),
        }
        let Some(queue) = file.ops().wait_queue() else {
            return Ok(done);
        };
        let waited = task.block_on(&[queue], None, |_| {
            Ok((file.ops().poll(file) & (POLLOUT | POLLERR) != 0).then_some(()))
        });
        if let Err(e) = waited {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
    }
}

/// Read into one application buffer: the destination is checked before the file is touched,
/// so a bad pointer never consumes input. (Linux finds a bad buffer only when it copies, so at
/// end of file it returns 0 where Moat returns `EFAULT`; losing input is the worse surprise.)
fn read_into(
    task: &mut Task,
    file: &OpenFile,
    addr: u64,
    len: u64,
    offset: Option<u64>,
) -> SyscallResult {
    let len = len.min(MAX_RW_COUNT).min(CHUNK);
    // Files that can (tmpfs, the gofer's files) read straight into application memory, with
    // the memory manager locked so the pages stay the application's meanwhile.
    if file.ops().seekable() && !file.ops().is_directory() {
        let direct = task
            .mm
            .guard()
            .with_write_pieces(addr, len as usize, |memory, pieces| {
                file.read_to_memory(memory, pieces, offset)
            })?;
        if let Some(r) = direct {
            return r.map(|n| n as u64);
        }
    }
    task.mm.guard().check_access(addr, len, true)?;
    let mut buf = staging(task, len as usize);
    let read = match offset {
        None => read_stream(task, file, &mut buf[..len as usize]),
        Some(o) => file.read_at(&mut buf[..len as usize], o),
    };
    let result = read.and_then(|n| {
        task.mm
            .guard()
            .write_bytes(addr, &buf[..n])
            .map(|()| n as u64)
    });
    restore(task, buf);
    result
}

/// Write from one application buffer, in chunks; a fault after some bytes were written
/// returns the count written, as Linux does.
fn write_from(
    task: &mut Task,
    file: &OpenFile,
    addr: u64,
    len: u64,
    offset: Option<u64>,
) -> SyscallResult {
    let len = len.min(MAX_RW_COUNT);
    // Files that can (tmpfs, the gofer's files) are written straight from application
    // memory, a chunk at a time with the memory manager locked.
    if file.ops().seekable() && !file.ops().is_directory() {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            let at = offset.map(|o| o + done);
            let direct =
                task.mm
                    .guard()
                    .with_read_pieces(addr + done, n as usize, |memory, pieces| {
                        file.write_from_memory(memory, pieces, at)
                    });
            match direct {
                Ok(Some(Ok(w))) => {
                    done += w as u64;
                    if (w as u64) < n {
                        return Ok(done);
                    }
                }
                Ok(Some(Err(e))) | Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
                Ok(None) => break,
            }
        }
        if done == len {
            return Ok(done);
        }
        if done > 0 {
            return Ok(done);
        }
    }
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK);
        let mut buf = staging(task, n as usize);
        let chunk = &mut buf[..n as usize];
        let copied = task.mm.guard().read_bytes(addr + done, chunk);
        if let Err(e) = copied {
            restore(task, buf);
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        let result = match offset {
            None => write_stream(task, file, chunk),
            Some(o) => file.write_at(chunk, o + done),
        };
        restore(task, buf);
        let written = match result {
            Ok(w) => w as u64,
            Err(e) if done > 0 && e != Errno::EFAULT => return Ok(done),
            Err(e) => return Err(e),
        };
        done += written;
        if written < n {
            break;
        }
    }
    Ok(done)
}

pub fn read(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = readable_file(task, a[0])?;
    if a[2] == 0 {
        return Ok(0);
    }
    read_into(task, &file, a[1], a[2], None)
}

pub fn write(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = writable_file(task, a[0])?;
    if a[2] == 0 {
        return Ok(0);
    }
    write_from(task, &file, a[1], a[2], None)
}

/// The file for `pread64`/`pwrite64`, with Linux's order of checks: a negative offset
/// (`EINVAL`, even before the fd), a closed fd (`EBADF`), a stream (`ESPIPE`), and only then
/// the access mode (`EBADF`).
fn positioned(task: &Task, fd: u64, offset: u64, write: bool) -> Result<Arc<OpenFile>, Errno> {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let file = task.files.guard().get(int(fd))?;
    if !file.ops().seekable() {
        return Err(Errno::ESPIPE);
    }
    if (write && !file.writable()) || (!write && !file.readable()) {
        return Err(Errno::EBADF);
    }
    Ok(file)
}

pub fn pread64(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = positioned(task, a[0], a[3], false)?;
    if a[2] == 0 {
        return Ok(0);
    }
    read_into(task, &file, a[1], a[2], Some(a[3]))
}

pub fn pwrite64(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = positioned(task, a[0], a[3], true)?;
    if a[2] == 0 {
        return Ok(0);
    }
    write_from(task, &file, a[1], a[2], Some(a[3]))
}

/// Copy in and validate an iovec array: `EINVAL` for a bad count or a total past `SSIZE_MAX`.
pub(crate) fn iovecs(task: &mut Task, addr: u64, count: u64) -> Result<Vec<Iovec>, Errno> {
    let count = int(count);
    if !(0..=IOV_MAX).contains(&count) {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::with_capacity(count as usize);
    let mut total: u64 = 0;
    for i in 0..count as u64 {
        let iov: Iovec = task.mm.guard().read_obj(addr + i * 16)?;
        total = total
            .checked_add(iov.len)
            .filter(|&t| i64::try_from(t).is_ok())
            .ok_or(Errno::EINVAL)?;
        v.push(iov);
    }
    Ok(v)
}

pub fn readv(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = readable_file(task, a[0])?;
    read_vector(task, &file, a[1], a[2], None)
}

/// Read into the buffers of an iovec array: one read from the file (at `offset`, or at the
/// file's position), scattered (readv is atomic per file read).
fn read_vector(
    task: &mut Task,
    file: &OpenFile,
    iov: u64,
    count: u64,
    offset: Option<u64>,
) -> SyscallResult {
    let iovs = iovecs(task, iov, count)?;
    let total: u64 = iovs
        .iter()
        .map(|v| v.len)
        .sum::<u64>()
        .min(MAX_RW_COUNT)
        .min(CHUNK);
    for v in &iovs {
        task.mm
            .guard()
            .check_access(v.base, v.len.min(total), true)?;
    }
    if total == 0 {
        return Ok(0);
    }
    let mut buf = vec![0u8; total as usize];
    let n = match offset {
        None => read_stream(task, file, &mut buf)?,
        Some(o) => file.read_at(&mut buf, o)?,
    };
    let mut done = 0usize;
    for v in &iovs {
        if done >= n {
            break;
        }
        let k = (v.len as usize).min(n - done);
        task.mm.guard().write_bytes(v.base, &buf[done..done + k])?;
        done += k;
    }
    Ok(n as u64)
}

pub fn writev(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = writable_file(task, a[0])?;
    write_vector(task, &file, a[1], a[2], None)
}

/// Write the buffers of an iovec array, gathered, at `offset` or at the file's position.
fn write_vector(
    task: &mut Task,
    file: &OpenFile,
    iov: u64,
    count: u64,
    offset: Option<u64>,
) -> SyscallResult {
    let iovs = iovecs(task, iov, count)?;
    // Gather into one buffer so the write reaches the file in one piece (pipes keep writes
    // up to PIPE_BUF atomic).
    let mut buf = Vec::new();
    for v in &iovs {
        let len = v.len.min(MAX_RW_COUNT - buf.len() as u64);
        let start = buf.len();
        buf.resize(start + len as usize, 0);
        if let Err(e) = task.mm.guard().read_bytes(v.base, &mut buf[start..]) {
            // A pipe takes data a page at a time and drops the page a fault interrupts, so
            // only whole pages gathered before the fault are written.
            let is_pipe = file
                .stat()
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO);
            let keep = if is_pipe {
                start - start % PAGE_SIZE
            } else {
                start
            };
            if keep == 0 {
                return Err(e);
            }
            buf.truncate(keep);
            break;
        }
        if buf.len() as u64 >= MAX_RW_COUNT {
            break;
        }
    }
    if buf.is_empty() {
        return Ok(0);
    }
    if let Some(o) = offset {
        return file.write_at(&buf, o).map(|n| n as u64);
    }
    let mut done = 0;
    while done < buf.len() {
        match write_stream(task, file, &buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        }
        if file.ops().wait_queue().is_some() {
            break;
        }
    }
    Ok(done as u64)
}

/// `preadv2`/`pwritev2` flags (`RWF_*`).
const RWF_HIPRI: u64 = 0x1;
const RWF_DSYNC: u64 = 0x2;
const RWF_SYNC: u64 = 0x4;
const RWF_NOWAIT: u64 = 0x8;
const RWF_APPEND: u64 = 0x10;
const RWF_NOAPPEND: u64 = 0x20;

pub fn preadv(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    // x86-64 passes the whole offset in the low word.
    let file = positioned(task, a[0], a[3], false)?;
    read_vector(task, &file, a[1], a[2], Some(a[3]))
}

pub fn pwritev(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let file = positioned(task, a[0], a[3], true)?;
    write_vector(task, &file, a[1], a[2], Some(a[3]))
}

/// The flags `preadv2`/`pwritev2` accept: `RWF_NOWAIT` is refused as by a Linux filesystem
/// that cannot promise not to block (`EOPNOTSUPP`), the others are honoured or are hints.
fn rwf_flags(flags: u64, write: bool) -> Result<u64, Errno> {
    let known = RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND | RWF_NOAPPEND;
    if flags & !known != 0 || flags & RWF_NOWAIT != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if !write && flags & (RWF_APPEND | RWF_NOAPPEND) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if flags & RWF_APPEND != 0 && flags & RWF_NOAPPEND != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(flags)
}

/// `preadv2`: offset -1 reads at (and advances) the file's position, as `readv`.
pub fn preadv2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    rwf_flags(a[5], false)?;
    if a[3] as i64 == -1 {
        let file = readable_file(task, a[0])?;
        return read_vector(task, &file, a[1], a[2], None);
    }
    preadv(task, a)
}

/// `pwritev2`: offset -1 writes at the file's position; `RWF_APPEND` at its end whatever the
/// offset; `RWF_DSYNC`/`RWF_SYNC` make the data durable before returning.
pub fn pwritev2(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = rwf_flags(a[5], true)?;
    let file = if a[3] as i64 == -1 || flags & RWF_APPEND != 0 {
        writable_file(task, a[0])?
    } else {
        positioned(task, a[0], a[3], true)?
    };
    let offset = if flags & RWF_APPEND != 0 && file.ops().seekable() {
        Some(file.stat()?.st_size.max(0) as u64)
    } else if a[3] as i64 == -1 || flags & RWF_APPEND != 0 {
        None
    } else {
        Some(a[3])
    };
    let n = write_vector(task, &file, a[1], a[2], offset)?;
    if flags & (RWF_DSYNC | RWF_SYNC) != 0 && n > 0 {
        file.ops().sync()?;
    }
    Ok(n)
}

/// Move up to `count` bytes from `read` to `write` (each given a buffer and the position
/// relative to the start) through the staging buffer, in chunks. Returns the bytes written
/// and the bytes of the last chunk read but not written. An error after some progress ends
/// the copy short, as Linux's splice-based copies do.
fn transfer(
    task: &mut Task,
    count: u64,
    mut read: impl FnMut(&mut [u8], u64) -> Result<usize, Errno>,
    mut write: impl FnMut(&[u8], u64) -> Result<usize, Errno>,
) -> Result<(u64, u64), Errno> {
    let mut buf = staging(task, CHUNK.min(count) as usize);
    let result = (|| {
        let mut done = 0u64;
        while done < count {
            let want = ((count - done) as usize).min(buf.len());
            let n = match read(&mut buf[..want], done) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            let mut written = 0;
            while written < n {
                match write(&buf[written..n], done + written as u64) {
                    Ok(0) => break,
                    Ok(w) => written += w,
                    Err(_) if done + written as u64 > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            done += written as u64;
            if written < n {
                return Ok((done, (n - written) as u64));
            }
        }
        Ok((done, 0))
    })();
    restore(task, buf);
    result
}

/// `sendfile`: copy from one file to another inside the kernel, from `*offset` (left
/// unchanged in the file) or from the input file's own position. Checks in Linux's order.
pub fn sendfile(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (out_fd, in_fd, offset_addr, count) = (a[0], a[1], a[2], a[3].min(MAX_RW_COUNT));
    let explicit = if offset_addr == 0 {
        None
    } else {
        Some(task.mm.guard().read_obj::<i64>(offset_addr)?)
    };
    let input = readable_file(task, in_fd)?;
    if explicit.is_some() && !input.ops().seekable() {
        return Err(Errno::ESPIPE);
    }
    let start = match explicit {
        Some(pos) if pos < 0 => return Err(Errno::EINVAL),
        Some(pos) => Some(pos as u64),
        None => None,
    };
    let output = writable_file(task, out_fd)?;
    if output.flags() & libc::O_APPEND as u32 != 0 {
        return Err(Errno::EINVAL);
    }
    if input.ops().is_directory() {
        return Err(Errno::EISDIR);
    }
    // A blocking stream input (a pipe, the terminal) waits for data first, interruptibly.
    if start.is_none() && !input.ops().seekable() && !input.nonblocking() {
        wait_for_host(task, &input, crate::fs::pipe::POLLIN)?;
        wait_readable(task, &input)?;
    }
    wait_for_host(task, &output, crate::fs::pipe::POLLOUT)?;
    let mut buf = staging(task, CHUNK.min(count) as usize);
    let result = send_chunks(task, &input, &output, start, count, &mut buf);
    restore(task, buf);
    let (done, unwritten) = result?;
    // What was read but not written goes back to the input's position.
    if unwritten > 0 && start.is_none() && input.ops().seekable() {
        let _ = input.seek(-(unwritten as i64), libc::SEEK_CUR);
    }
    if let Some(pos) = start {
        task.mm.guard().write_obj(offset_addr, &(pos + done))?;
    }
    Ok(done)
}

/// `sendfile`'s copy, chunk by chunk through `buf`: a blocking stream output (a socket, a
/// pipe) waits for room, interruptibly, as Linux's splice does; `EPIPE` raises `SIGPIPE`.
/// Returns the bytes written and those of the last chunk read but not written.
fn send_chunks(
    task: &mut Task,
    input: &OpenFile,
    output: &OpenFile,
    start: Option<u64>,
    count: u64,
    buf: &mut [u8],
) -> Result<(u64, u64), Errno> {
    use crate::fs::pipe::{POLLERR, POLLOUT};
    let waits = !output.nonblocking() && output.ops().wait_queue().is_some();
    let mut done = 0u64;
    while done < count {
        let want = ((count - done) as usize).min(buf.len());
        let n = match match start {
            Some(pos) => input.read_at(&mut buf[..want], pos + done),
            None => input.read(&mut buf[..want]),
        } {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            let progress = done + written as u64 > 0;
            match output.write(&buf[written..n]) {
                Ok(0) => break,
                Ok(w) => written += w,
                Err(Errno::EAGAIN) if waits => {
                    let Some(queue) = output.ops().wait_queue() else {
                        break;
                    };
                    let waited = task.block_on(&[queue], None, |_| {
                        Ok((output.ops().poll(output) & (POLLOUT | POLLERR) != 0).then_some(()))
                    });
                    if let Err(e) = waited {
                        if progress {
                            break;
                        }
                        return Err(e);
                    }
                }
                Err(e) => {
                    if e == Errno::EPIPE {
                        super::socket::raise_sigpipe(task);
                    }
                    if progress {
                        break;
                    }
                    return Err(e);
                }
            }
        }
        done += written as u64;
        if written < n {
            return Ok((done, (n - written) as u64));
        }
    }
    Ok((done, 0))
}

/// `splice` flags: `SPLICE_F_MOVE`, `SPLICE_F_NONBLOCK`, `SPLICE_F_MORE`, `SPLICE_F_GIFT`.
const SPLICE_F_NONBLOCK: u32 = 0x2;
const SPLICE_F_ALL: u32 = 0xf;

/// `splice`: move up to `len` bytes between a pipe and another file, or between two pipes,
/// in Linux's order of checks. Moat copies through the kernel (no pages change hands); bytes
/// the output refuses stay in the pipe. `SPLICE_F_NONBLOCK` makes the pipe side not wait;
/// the other side waits as its own `O_NONBLOCK` says.
pub fn splice(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use crate::fs::pipe::PipeEnd;
    let (off_in_addr, off_out_addr) = (a[1], a[3]);
    let len = a[4].min(MAX_RW_COUNT);
    let flags = a[5] as u32;
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let input = task.files.guard().get(int(a[0]))?;
    let output = task.files.guard().get(int(a[2]))?;
    if !input.readable() || !output.writable() {
        return Err(Errno::EBADF);
    }
    /// An explicit offset: the file must be seekable (`ESPIPE`), the offset not negative.
    fn offset(task: &Task, addr: u64, file: &OpenFile) -> Result<Option<u64>, Errno> {
        if addr == 0 {
            return Ok(None);
        }
        if !file.ops().seekable() {
            return Err(Errno::ESPIPE);
        }
        let v: i64 = task.mm.guard().read_obj(addr)?;
        u64::try_from(v).map(Some).map_err(|_| Errno::EINVAL)
    }
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    match (input.ops_as::<PipeEnd>(), output.ops_as::<PipeEnd>()) {
        (None, None) => Err(Errno::EINVAL),
        (Some(from), Some(to)) => {
            if off_in_addr != 0 || off_out_addr != 0 {
                return Err(Errno::ESPIPE);
            }
            if from.same_pipe(to) {
                return Err(Errno::EINVAL);
            }
            splice_from_pipe(task, &input, from, &output, None, len, nonblock)
        }
        (Some(from), None) => {
            if off_in_addr != 0 {
                return Err(Errno::ESPIPE);
            }
            let pos = offset(task, off_out_addr, &output)?;
            if output.flags() & libc::O_APPEND as u32 != 0 {
                return Err(Errno::EINVAL);
            }
            let n = splice_from_pipe(task, &input, from, &output, pos, len, nonblock)?;
            if let Some(pos) = pos {
                task.mm.guard().write_obj(off_out_addr, &(pos + n))?;
            }
            Ok(n)
        }
        (None, Some(to)) => {
            if off_out_addr != 0 {
                return Err(Errno::ESPIPE);
            }
            let pos = offset(task, off_in_addr, &input)?;
            let n = splice_to_pipe(task, &input, pos, &output, to, len, nonblock)?;
            if let Some(pos) = pos {
                task.mm.guard().write_obj(off_in_addr, &(pos + n))?;
            }
            Ok(n)
        }
    }
}

/// `tee`: copy up to `len` bytes from one pipe to another without taking them from the first,
/// in Linux's order of checks. Waits for data in the input and for room in the output unless
/// `SPLICE_F_NONBLOCK` (`EAGAIN`); returns 0 once the input has no writer left and is empty.
pub fn tee(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    use crate::fs::pipe::{PipeEnd, POLLERR, POLLHUP, POLLIN, POLLOUT};
    let flags = a[3] as u32;
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let len = a[2].min(MAX_RW_COUNT);
    if len == 0 {
        return Ok(0);
    }
    let input = task.files.guard().get(int(a[0]))?;
    let output = task.files.guard().get(int(a[1]))?;
    if !input.readable() || !output.writable() {
        return Err(Errno::EBADF);
    }
    let (Some(from), Some(to)) = (input.ops_as::<PipeEnd>(), output.ops_as::<PipeEnd>()) else {
        return Err(Errno::EINVAL);
    };
    if from.same_pipe(to) {
        return Err(Errno::EINVAL);
    }
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    let mut buf = vec![0u8; len.min(CHUNK) as usize];
    loop {
        let n = match from.peek(&mut buf) {
            Ok(0) => return Ok(0),
            Ok(n) => n,
            Err(Errno::EAGAIN) if !nonblock => {
                wait_for_events(task, &input, POLLIN | POLLHUP | POLLERR)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let room = match to.room() {
            Ok(r) => r,
            Err(e) => {
                if e == Errno::EPIPE {
                    super::socket::raise_sigpipe(task);
                }
                return Err(e);
            }
        };
        if room == 0 {
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            wait_for_events(task, &output, POLLOUT | POLLERR)?;
            continue;
        }
        // No more than the room: the write cannot block or split.
        return output.write(&buf[..n.min(room)]).map(|w| w as u64);
    }
}

/// Wait until `file` (in the kernel) polls one of `events`, interruptibly.
fn wait_for_events(task: &mut Task, file: &OpenFile, events: u32) -> Result<(), Errno> {
    let Some(queue) = file.ops().wait_queue() else {
        return Ok(());
    };
    task.block_on(&[queue], None, |_| {
        Ok((file.ops().poll(file) & events != 0).then_some(()))
    })
}

/// `splice` out of a pipe: what the pipe holds (waiting for some unless non-blocking), written
/// to `output` (at `pos` if given) as far as it takes it.
fn splice_from_pipe(
    task: &mut Task,
    input: &OpenFile,
    from: &crate::fs::pipe::PipeEnd,
    output: &OpenFile,
    pos: Option<u64>,
    len: u64,
    nonblock: bool,
) -> SyscallResult {
    use crate::fs::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT};
    let mut buf = staging(task, CHUNK.min(len) as usize);
    let result = (|| {
        let want = (len as usize).min(buf.len());
        let n = loop {
            match from.peek(&mut buf[..want]) {
                Err(Errno::EAGAIN) if !nonblock && !input.nonblocking() => {
                    wait_for_events(task, input, POLLIN | POLLHUP | POLLERR)?;
                }
                r => break r?,
            }
        };
        let waits = !output.nonblocking() && output.ops().wait_queue().is_some();
        let mut written = 0;
        while written < n {
            let r = match pos {
                Some(at) => output.write_at(&buf[written..n], at + written as u64),
                None => output.write(&buf[written..n]),
            };
            match r {
                Ok(0) => break,
                Ok(w) => written += w,
                Err(Errno::EAGAIN) if waits => {
                    if let Err(e) = wait_for_events(task, output, POLLOUT | POLLERR) {
                        if written > 0 {
                            break;
                        }
                        return Err(e);
                    }
                }
                Err(e) => {
                    if e == Errno::EPIPE {
                        super::socket::raise_sigpipe(task);
                    }
                    if written > 0 {
                        break;
                    }
                    return Err(e);
                }
            }
        }
        from.consume(input, written);
        Ok(written as u64)
    })();
    restore(task, buf);
    result
}

/// `splice` into a pipe: as much of `input` (from `pos` if given) as the pipe has room for,
/// waiting for room unless non-blocking, and for input as the input's own flags say.
fn splice_to_pipe(
    task: &mut Task,
    input: &OpenFile,
    pos: Option<u64>,
    output: &OpenFile,
    to: &crate::fs::pipe::PipeEnd,
    len: u64,
    nonblock: bool,
) -> SyscallResult {
    use crate::fs::pipe::{POLLERR, POLLOUT};
    let room = loop {
        match to.room() {
            Ok(0) if !nonblock && !output.nonblocking() => {
                wait_for_events(task, output, POLLOUT | POLLERR)?;
            }
            Ok(0) => return Err(Errno::EAGAIN),
            Ok(room) => break room,
            Err(e) => {
                if e == Errno::EPIPE {
                    super::socket::raise_sigpipe(task);
                }
                return Err(e);
            }
        }
    };
    let want = (len as usize).min(room).min(CHUNK as usize);
    let mut buf = staging(task, want);
    let result = (|| {
        let n = match pos {
            Some(at) => input.read_at(&mut buf[..want], at)?,
            None if input.ops().seekable() => input.read(&mut buf[..want])?,
            None => read_stream(task, input, &mut buf[..want])?,
        };
        let mut written = 0;
        while written < n {
            match output.write(&buf[written..n]) {
                Ok(w) => written += w,
                // Another writer took the room meanwhile: wait for more.
                Err(Errno::EAGAIN) => {
                    if let Err(e) = wait_for_events(task, output, POLLOUT | POLLERR) {
                        if written > 0 {
                            break;
                        }
                        return Err(e);
                    }
                }
                Err(_) if written > 0 => break,
                Err(e) => return Err(e),
            }
        }
        // A seekable input read too much if the pipe took less: give it back.
        if written < n && pos.is_none() && input.ops().seekable() {
            let _ = input.seek(-((n - written) as i64), libc::SEEK_CUR);
        }
        Ok(written as u64)
    })();
    restore(task, buf);
    result
}

/// `copy_file_range`: copy between two regular files of the same filesystem, from and to
/// `*off_in`/`*off_out` (left in the files otherwise), in Linux's order of checks.
pub fn copy_file_range(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let (fd_in, off_in_addr, fd_out, off_out_addr, len) = (a[0], a[1], a[2], a[3], a[4]);
    if a[5] != 0 {
        return Err(Errno::EINVAL);
    }
    let input = task.files.guard().get(int(fd_in))?;
    let output = task.files.guard().get(int(fd_out))?;
    let read_offset = |task: &mut Task, addr: u64| -> Result<Option<i64>, Errno> {
        if addr == 0 {
            Ok(None)
        } else {
            task.mm.guard().read_obj::<i64>(addr).map(Some)
        }
    };
    let off_in = read_offset(task, off_in_addr)?;
    let off_out = read_offset(task, off_out_addr)?;
    let (st_in, st_out) = (input.stat()?, output.stat()?);
    for st in [&st_in, &st_out] {
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => return Err(Errno::EISDIR),
            libc::S_IFREG => {}
            _ => return Err(Errno::EINVAL),
        }
    }
    if input.is_path_only()
        || output.is_path_only()
        || !input.readable()
        || !output.writable()
        || output.flags() & libc::O_APPEND as u32 != 0
    {
        return Err(Errno::EBADF);
    }
    // Since Linux 5.19 a copy between different filesystems is refused.
    if st_in.st_dev != st_out.st_dev {
        return Err(Errno::EXDEV);
    }
    let pos_in = match off_in {
        Some(o) => o,
        None => input.seek(0, libc::SEEK_CUR)? as i64,
    };
    let pos_out = match off_out {
        Some(o) => o,
        None => output.seek(0, libc::SEEK_CUR)? as i64,
    };
    // A negative position wraps as an unsigned one would: Linux says EOVERFLOW.
    if pos_in < 0 || pos_out < 0 {
        return Err(Errno::EOVERFLOW);
    }
    let len = len.min(MAX_RW_COUNT);
    let count = len.min(u64::try_from(st_in.st_size - pos_in.min(st_in.st_size)).unwrap_or(0));
    let (pos_in, pos_out) = (pos_in as u64, pos_out as u64);
    if st_in.st_ino == st_out.st_ino && pos_in < pos_out + len && pos_out < pos_in + len {
        return Err(Errno::EINVAL);
    }
    let (done, _) = transfer(
        task,
        count,
        |buf, at| input.read_at(buf, pos_in + at),
        |buf, at| output.write_at(buf, pos_out + at),
    )?;
    match off_in {
        Some(_) => task.mm.guard().write_obj(off_in_addr, &(pos_in + done))?,
        None => {
            input.seek((pos_in + done) as i64, libc::SEEK_SET)?;
        }
    }
    match off_out {
        Some(_) => task.mm.guard().write_obj(off_out_addr, &(pos_out + done))?,
        None => {
            output.seek((pos_out + done) as i64, libc::SEEK_SET)?;
        }
    }
    Ok(done)
}
