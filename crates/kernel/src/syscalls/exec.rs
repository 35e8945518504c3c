//! execve, execveat: replace the process's program.
//!
//! Everything that can fail is done first — reading the arguments, resolving the file,
//! following `#!` interpreters, loading the ELF image into a fresh address space — so that a
//! failed exec returns an errno to an unchanged caller. Then the point of no return: the
//! other threads are killed, the new address space replaces the old one, close-on-exec fds
//! are closed and handled signals are reset to their defaults.

use std::sync::{Arc, Mutex};

use moat_abi::{Errno, Regs};

use super::{int, SyscallResult};
use crate::loader::{self, ExecRequest};
use crate::mm::MemoryManager;
use crate::process::Guard;
use crate::signal::{SIG_DFL, SIG_IGN};
use crate::task::{Task, USER_CS, USER_DS};
use crate::vfs::{permitted, FileKind, MAY_EXEC};

/// `MAX_ARG_STRLEN` and the total Linux allows (a quarter of the default 8 MiB stack).
const MAX_ARG_STRLEN: usize = 32 * 4096;
const MAX_ARGS_TOTAL: usize = 2 << 20;
/// How many `#!` interpreters may chain (Linux allows 4 levels).
pub(crate) const MAX_INTERP_DEPTH: usize = 4;

/// Read a NULL-terminated array of strings (argv or envp); a null array is empty.
fn read_strings(task: &Task, addr: u64, total: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    for i in 0.. {
        let ptr: u64 = task.mm.guard().read_obj(addr + i * 8)?;
        if ptr == 0 {
            break;
        }
        let s = task
            .mm
            .guard()
            .read_cstring(ptr, MAX_ARG_STRLEN)
            .map_err(|e| {
                if e == Errno::ENAMETOOLONG {
                    Errno::E2BIG
                } else {
                    e
                }
            })?;
        *total += s.len() + 1 + 8;
        if *total > MAX_ARGS_TOTAL {
            return Err(Errno::E2BIG);
        }
        out.push(s);
    }
    Ok(out)
}

/// Read the file a path names for exec: it must be a regular file the caller may execute.
/// Returns the file for the loader and its absolute path with every symlink resolved (what
/// `/proc/PID/exe` shows, and what ld.so's `$ORIGIN` is computed from).
fn read_program(
    task: &Task,
    dirfd: i32,
    path: &[u8],
    follow: bool,
) -> Result<(loader::ExecFile, Vec<u8>), Errno> {
    let target = if path.is_empty() {
        let file = task.files.guard().get(dirfd)?;
        file.path().cloned().ok_or(Errno::EACCES)?
    } else {
        let start = task.start_dir(dirfd)?;
        task.resolver().path(&start, path, follow)?
    };
    let real = target.absolute(&task.fs.guard().root);
    let st = target.inode().stat()?;
    if target.inode().kind() == FileKind::Directory
        || st.st_mode & libc::S_IFMT != libc::S_IFREG
        || !permitted(&st, &task.creds, MAY_EXEC)
    {
        return Err(Errno::EACCES);
    }
    if crate::fs::open_for_writing(target.inode().id()) {
        return Err(Errno::ETXTBSY);
    }
    let root = task.fs.guard().root.clone();
    Ok((crate::open_executable(target, &root, &st)?, real))
}

/// A `#!` line: the interpreter and its optional single argument.
pub(crate) fn shebang(image: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let rest = image.strip_prefix(b"#!")?;
    // Linux reads at most 256 bytes of the line (BINPRM_BUF_SIZE).
    let line = &rest[..rest.len().min(254)];
    let line = line.split(|&b| b == b'\n').next().unwrap_or(line);
    let line: &[u8] = {
        let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
        let end = line.iter().rposition(|&b| b != b' ' && b != b'\t')? + 1;
        &line[start..end]
    };
    let split = line.iter().position(|&b| b == b' ' || b == b'\t');
    match split {
        None => Some((line.to_vec(), None)),
        Some(i) => {
            let arg = &line[i..];
            let s = arg
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(0);
            Some((line[..i].to_vec(), Some(arg[s..].to_vec())))
        }
    }
}

pub fn execve(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    do_execve(task, libc::AT_FDCWD, a[0], a[1], a[2], 0)
}

pub fn execveat(task: &mut Task, a: &[u64; 6]) -> SyscallResult {
    let flags = int(a[4]);
    if flags & !(libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    do_execve(task, int(a[0]), a[1], a[2], a[3], flags)
}

fn do_execve(
    task: &mut Task,
    dirfd: i32,
    path_addr: u64,
    argv_addr: u64,
    envp_addr: u64,
    flags: i32,
) -> SyscallResult {
    let path = task
        .mm
        .guard()
        .read_cstring(path_addr, libc::PATH_MAX as usize)?;
    if path.is_empty() && flags & libc::AT_EMPTY_PATH == 0 {
        return Err(Errno::ENOENT);
    }
    let mut total = 0;
    let mut argv = read_strings(task, argv_addr, &mut total)?;
    let envp = read_strings(task, envp_addr, &mut total)?;
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let (mut image, mut real_path) = read_program(task, dirfd, &path, follow).map_err(|e| {
        if e == Errno::ELOOP && !follow {
            Errno::ELOOP
        } else {
            e
        }
    })?;
    // The name the program is known by (AT_EXECFN, /proc/PID/exe).
    let mut filename = if path.is_empty() {
        let file = task.files.guard().get(dirfd)?;
        file.path()
            .map(|p| p.absolute(&task.fs.guard().root))
            .unwrap_or_default()
    } else {
        path.clone()
    };
    // `#!` scripts: the interpreter runs with the script as its argument.
    for depth in 0.. {
        let Some((interp, arg)) = shebang(&image.head) else {
            break;
        };
        if depth >= MAX_INTERP_DEPTH {
            return Err(Errno::ELOOP);
        }
        let mut new_argv = vec![interp.clone()];
        new_argv.extend(arg);
        new_argv.push(filename.clone());
        new_argv.extend(argv.into_iter().skip(1));
        argv = new_argv;
        (image, real_path) = read_program(task, libc::AT_FDCWD, &interp, true)?;
        filename = interp;
    }
    if !image.head.starts_with(b"\x7fELF") {
        return Err(Errno::ENOEXEC);
    }

    // Load into a fresh address space; a failure leaves the caller as it was.
    let kernel = task.kernel.clone();
    let copied = task.mm.guard().empty_copy()?;
    let (aspace, context) = match copied {
        Some(fresh) => fresh,
        None => kernel
            .platform
            .new_address_space(&kernel.memory)
            .map_err(|_| Errno::ENOMEM)?,
    };
    let mut mm = MemoryManager::new(kernel.memory.clone(), aspace);
    mm.limit_as = task.limit(libc::RLIMIT_AS);
    mm.limit_data = task.limit(libc::RLIMIT_DATA);
    let mut aux = kernel.aux.clone();
    aux.uid = task.creds.uid;
    aux.euid = task.creds.euid;
    aux.gid = task.creds.gid;
    aux.egid = task.creds.egid;
    let req = ExecRequest {
        image: &image,
        filename: &filename,
        path: &real_path,
        argv: &argv,
        envp: &envp,
        aux: &aux,
        stack_size: task.limit(libc::RLIMIT_STACK),
        vdso: Some(&kernel.vdso),
    };
    let fs = task.fs.guard().clone();
    let creds = task.creds.clone();
    let mut read_interp = |name: &[u8]| {
        crate::read_executable(&fs, &creds, name)
            .map_err(|_| loader::LoadError::Dynamic(String::from_utf8_lossy(name).into_owned()))
    };
    let loaded = loader::load(&mut mm, &req, &mut read_interp, &mut crate::random_u64)
        .map_err(|e| e.errno())?;

    // The point of no return.
    kill_other_threads(task);
    if task.tid != task.tgid {
        // The thread that execs becomes the process's main thread, with its pid as tid.
        let mut tree = kernel.tree.guard();
        tree.tasks.remove(&task.tid);
        tree.tasks.insert(task.tgid, task.handle.clone());
        if let Some(node) = tree.process_mut(task.tgid) {
            node.threads.remove(&task.tid);
            node.threads.insert(task.tgid);
        }
        task.handle.set_tid(task.tgid);
        task.tid = task.tgid;
        crate::process::set_current(task.tgid, task.tid);
    }
    if task.clear_child_tid != 0 {
        let addr = std::mem::take(&mut task.clear_child_tid);
        if task.mm.guard().write_obj(addr, &0u32).is_ok() {
            kernel
                .futexes
                .wake(crate::futex::key_for(task, addr), u32::MAX, 1);
        }
    }
    task.robust_list = (0, 0);
    task.mm = Arc::new(Mutex::new(mm));
    task.context = context;
    *task.handle.interrupter.guard() = Some(task.context.interrupter());
    if let Some(done) = task.vfork_done.take() {
        done.complete();
    }
    // A shared fd table is unshared, then close-on-exec fds go.
    let table = task.files.guard().clone();
    task.files = Arc::new(Mutex::new(table));
    task.files.guard().close_on_exec();
    task.publish_resources();
    {
        let mut sig = task.handle.group.signals.guard();
        for act in &mut sig.actions {
            if act.handler != SIG_IGN {
                *act = moat_abi::SigAction {
                    handler: SIG_DFL,
                    ..moat_abi::SigAction::default()
                };
            }
        }
    }
    task.altstack = crate::task::AltStack::default();
    // No program is set-user-ID to Moat: exec makes the saved and filesystem IDs the
    // effective ones (credentials(7)), and moves the capability sets as for a file without
    // file capabilities.
    task.creds.suid = task.creds.euid;
    task.creds.fsuid = task.creds.euid;
    task.creds.sgid = task.creds.egid;
    task.creds.fsgid = task.creds.egid;
    let no_new_privs = task
        .handle
        .no_new_privs
        .load(std::sync::atomic::Ordering::Relaxed);
    crate::capability::on_exec(&mut task.creds, no_new_privs);
    *task.handle.creds.guard() = task.creds.clone();
    *task.handle.name.guard() = crate::task::comm_of(&filename);
    {
        let mut tree = kernel.tree.guard();
        if let Some(node) = tree.process_mut(task.tgid) {
            node.exe.clone_from(&real_path);
            node.execed = true;
            node.argv = argv;
            node.envp = envp;
        }
    }
    task.regs = Regs {
        rip: loaded.entry,
        rsp: loaded.stack_pointer,
        cs: USER_CS,
        ss: USER_DS,
        eflags: 0x202,
        ..Regs::default()
    };
    Ok(0)
}

/// exec ends every other thread of the process before the new program runs.
fn kill_other_threads(task: &mut Task) {
    let kernel = task.kernel.clone();
    let others: Vec<_> = {
        let tree = kernel.tree.guard();
        tree.process(task.tgid)
            .map(|n| {
                n.threads
                    .iter()
                    .filter(|&&t| t != task.tid)
                    .filter_map(|t| tree.task(*t).cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    if others.is_empty() {
        return;
    }
    for t in &others {
        t.killed.store(true, std::sync::atomic::Ordering::SeqCst);
        t.notify();
    }
    // Wait until they have left the tree.
    let waker = task.handle.waker.clone();
    loop {
        let left = {
            let tree = kernel.tree.guard();
            tree.process(task.tgid)
                .is_none_or(|n| n.threads.iter().all(|&t| t == task.tid))
        };
        if left {
            break;
        }
        waker.sleep(Some(
            std::time::Instant::now() + std::time::Duration::from_millis(1),
        ));
    }
}
