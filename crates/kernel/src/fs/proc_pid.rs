//! `/proc/PID` and `/proc/PID/task/TID`: live views of the sandbox's processes, generated
//! from the process tree and from each process's memory manager, fd table and filesystem
//! context (which its task handles share with procfs).
//!
//! Directories are listed and looked up when asked; files are rendered at open. A process
//! that has gone makes its files `ESRCH`, as Linux's do.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};

use moat_abi::Errno;

use super::proc::{dyn_dir, dyn_symlink, dyn_symlink_with_mode, file_at, Entries};
use crate::process::{Guard, TaskHandle};
use crate::vfs::InodeRef;
use crate::Kernel;

/// What a process directory needs to know, looked up afresh for each render.
struct View {
    kernel: Arc<Kernel>,
    handle: Arc<TaskHandle>,
    /// The process's tgid (the directory's pid, or its thread's group).
    tgid: i32,
}

fn view(kernel: &Weak<Kernel>, tid: i32) -> Result<View, Errno> {
    let kernel = kernel.upgrade().ok_or(Errno::ESRCH)?;
    let handle = {
        let tree = kernel.tree.guard();
        match tree.task(tid) {
            Some(h) => h.clone(),
            // A process whose leader thread has exited lives on in its other threads.
            None => {
                let node = tree.process(tid).ok_or(Errno::ESRCH)?;
                let t = node.threads.iter().next().ok_or(Errno::ESRCH)?;
                tree.task(*t).ok_or(Errno::ESRCH)?.clone()
            }
        }
    };
    let tgid = handle.group.tgid;
    Ok(View {
        kernel,
        handle,
        tgid,
    })
}

fn nul_joined(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(part);
        out.push(0);
    }
    out
}

/// A process directory (`thread` names a thread of it for `task/TID`).
pub fn process_dir(kernel: &Weak<Kernel>, pid: i32, thread: Option<i32>) -> InodeRef {
    let k = kernel.clone();
    let tid = thread.unwrap_or(pid);
    let owner = view(kernel, tid).map_or((0, 0), |v| {
        let c = v.handle.creds.guard();
        (c.euid, c.egid)
    });
    dyn_dir(owner, move || entries(&k, pid, thread, owner))
}

fn entries(kernel: &Weak<Kernel>, pid: i32, thread: Option<i32>, owner: (u32, u32)) -> Entries {
    let tid = thread.unwrap_or(pid);
    let mut out: Entries = Vec::new();
    let k = kernel.clone();
    let render = move |f: fn(&View) -> Result<Vec<u8>, Errno>| {
        let k = k.clone();
        move || view(&k, tid).and_then(|v| f(&v))
    };
    out.push((b"cmdline".to_vec(), file_at(0o444, owner, render(cmdline))));
    out.push((b"environ".to_vec(), file_at(0o400, owner, render(environ))));
    out.push((b"comm".to_vec(), file_at(0o644, owner, render(comm))));
    out.push((b"status".to_vec(), file_at(0o444, owner, render(status))));
    out.push((b"stat".to_vec(), file_at(0o444, owner, render(stat))));
    out.push((b"statm".to_vec(), file_at(0o444, owner, render(statm))));
    out.push((b"maps".to_vec(), file_at(0o444, owner, render(maps))));
    out.push((b"limits".to_vec(), file_at(0o444, owner, render(limits))));
    out.push((b"mounts".to_vec(), file_at(0o444, owner, render(mounts))));
    let k = kernel.clone();
    out.push((
        b"exe".to_vec(),
        dyn_symlink(owner, move || {
            let v = view(&k, tid)?;
            let tree = v.kernel.tree.guard();
            Ok(tree.process(v.tgid).ok_or(Errno::ESRCH)?.exe.clone())
        }),
    ));
    for (name, root) in [("cwd", false), ("root", true)] {
        let k = kernel.clone();
        out.push((
            name.as_bytes().to_vec(),
            dyn_symlink(owner, move || {
                let v = view(&k, tid)?;
                let fs = v
                    .handle
                    .resources
                    .guard()
                    .as_ref()
                    .ok_or(Errno::ESRCH)?
                    .fs
                    .clone();
                let fs = fs.guard().clone();
                Ok(if root {
                    b"/".to_vec()
                } else {
                    fs.cwd.absolute(&fs.root)
                })
            }),
        ));
    }
    let k = kernel.clone();
    out.push((
        b"fd".to_vec(),
        dyn_dir(owner, move || fd_entries(&k, tid, owner, false)),
    ));
    let k = kernel.clone();
    out.push((
        b"fdinfo".to_vec(),
        dyn_dir(owner, move || fd_entries(&k, tid, owner, true)),
    ));
    if thread.is_none() {
        let k = kernel.clone();
        out.push((
            b"task".to_vec(),
            dyn_dir(owner, move || {
                let Ok(v) = view(&k, pid) else {
                    return Vec::new();
                };
                let threads: Vec<i32> = v
                    .kernel
                    .tree
                    .guard()
                    .process(v.tgid)
                    .map(|n| n.threads.iter().copied().collect())
                    .unwrap_or_default();
                threads
                    .into_iter()
                    .map(|t| (t.to_string().into_bytes(), process_dir(&k, pid, Some(t))))
                    .collect()
            }),
        ));
    }
    out
}

/// `fd/N` symlinks to what each fd names; `fdinfo/N` files with its position and flags.
fn fd_entries(kernel: &Weak<Kernel>, tid: i32, owner: (u32, u32), info: bool) -> Entries {
    let Ok(v) = view(kernel, tid) else {
        return Vec::new();
    };
    let Some((files, fs)) = v
        .handle
        .resources
        .guard()
        .as_ref()
        .map(|r| (r.files.clone(), r.fs.clone()))
    else {
        return Vec::new();
    };
    let root = fs.guard().root.clone();
    let table = files.guard().clone();
    let mut out = Vec::new();
    for fd in 0..=table.highest().unwrap_or(0) as i32 {
        let Ok(file) = table.get(fd) else {
            continue;
        };
        let name = fd.to_string().into_bytes();
        if info {
            let cloexec = table.cloexec(fd).unwrap_or(false);
            let mut flags = file.flags();
            if cloexec {
                flags |= libc::O_CLOEXEC as u32;
            }
            let pos = file.position();
            let text = format!(
                "pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t0\nino:\t{}\n",
                file.stat().map_or(0, |s| s.st_ino)
            );
            out.push((
                name,
                file_at(0o444, owner, move || Ok(text.clone().into_bytes())),
            ));
        } else {
            let target = match file.path() {
                Some(p) => p.absolute(&root),
                None => match file.stat() {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFIFO => {
                        format!("pipe:[{}]", st.st_ino).into_bytes()
                    }
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => {
                        format!("socket:[{}]", st.st_ino).into_bytes()
                    }
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFCHR => {
                        char_device_name(st.st_rdev)
                            .map_or_else(
                                || format!("host:[{}]", st.st_ino),
                                |n| format!("/dev/{n}"),
                            )
                            .into_bytes()
                    }
                    // A file Moat has no name for inside the sandbox (a host file given as
                    // stdio, say).
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                        format!("host:[{}]", st.st_ino).into_bytes()
                    }
                    Ok(st) => format!("anon_inode:[{}]", st.st_ino).into_bytes(),
                    Err(_) => b"anon_inode:[unknown]".to_vec(),
                },
            };
            // The link's permission bits are the fd's access mode, as on Linux.
            let perm = match file.flags() & libc::O_ACCMODE as u32 {
                m if m == libc::O_RDONLY as u32 => 0o500,
                m if m == libc::O_WRONLY as u32 => 0o300,
                _ => 0o700,
            };
            out.push((
                name,
                dyn_symlink_with_mode(perm, owner, move || Ok(target.clone())),
            ));
        }
    }
    out
}

/// The `/dev` name of the character devices every sandbox has (a host's `/dev/null` given
/// as stdio shows as the sandbox's).
fn char_device_name(rdev: u64) -> Option<&'static str> {
    let (major, minor) = (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    );
    Some(match (major, minor) {
        (1, 3) => "null",
        (1, 5) => "zero",
        (1, 7) => "full",
        (1, 8) => "random",
        (1, 9) => "urandom",
        (5, 0) => "tty",
        (5, 2) => "ptmx",
        _ => return None,
    })
}

fn cmdline(v: &View) -> Result<Vec<u8>, Errno> {
    let tree = v.kernel.tree.guard();
    Ok(nul_joined(&tree.process(v.tgid).ok_or(Errno::ESRCH)?.argv))
}

fn environ(v: &View) -> Result<Vec<u8>, Errno> {
    let tree = v.kernel.tree.guard();
    Ok(nul_joined(&tree.process(v.tgid).ok_or(Errno::ESRCH)?.envp))
}

fn comm(v: &View) -> Result<Vec<u8>, Errno> {
    let mut name = v.handle.name.guard().clone();
    name.push(b'\n');
    Ok(name)
}

/// Facts about the process from the tree.
struct Facts {
    ppid: i32,
    pgid: i32,
    sid: i32,
    threads: usize,
    zombie: bool,
}

fn facts(v: &View) -> Result<Facts, Errno> {
    let tree = v.kernel.tree.guard();
    let n = tree.process(v.tgid).ok_or(Errno::ESRCH)?;
    Ok(Facts {
        ppid: n.parent,
        pgid: n.pgid,
        sid: n.sid,
        threads: n.threads.len(),
        zombie: n.zombie.is_some(),
    })
}

fn state_letter(v: &View, f: &Facts) -> (char, &'static str) {
    if f.zombie {
        ('Z', "zombie")
    } else if matches!(
        *v.handle.group.job.guard(),
        crate::process::JobState::Stopped(_)
    ) {
        ('T', "stopped")
    } else if v.handle.in_app.load(std::sync::atomic::Ordering::Relaxed) {
        ('R', "running")
    } else {
        ('S', "sleeping")
    }
}

/// Virtual size and resident size (pages the memory file backs), in bytes.
fn memory_sizes(v: &View) -> (u64, u64) {
    let Some(mm) = v.handle.resources.guard().as_ref().map(|r| r.mm.clone()) else {
        return (0, 0);
    };
    let mm = mm.guard();
    (mm.total_size(), mm.resident_size())
}

fn status(v: &View) -> Result<Vec<u8>, Errno> {
    let f = facts(v)?;
    let c = v.handle.creds.guard().clone();
    let name = String::from_utf8_lossy(&v.handle.name.guard()).into_owned();
    let umask = v
        .handle
        .resources
        .guard()
        .as_ref()
        .map_or(0o022, |r| r.fs.guard().umask);
    let (letter, word) = state_letter(v, &f);
    let (vsize, rss) = memory_sizes(v);
    let sig = v.handle.signals.guard();
    let shared = v.handle.group.signals.guard();
    let (ignored, caught) =
        shared
            .actions
            .iter()
            .enumerate()
            .fold((0u64, 0u64), |(i, c), (n, a)| match a.handler {
                0 => (i, c),
                1 => (i | 1 << n, c),
                _ => (i, c | 1 << n),
            });
    let mut s = String::new();
    let _ = writeln!(s, "Name:\t{name}");
    let _ = writeln!(s, "Umask:\t{umask:04o}");
    let _ = writeln!(s, "State:\t{letter} ({word})");
    let _ = writeln!(
        s,
        "Tgid:\t{}\nNgid:\t0\nPid:\t{}\nPPid:\t{}\nTracerPid:\t0",
        v.tgid,
        v.handle.tid(),
        f.ppid
    );
    let _ = writeln!(s, "Uid:\t{}\t{}\t{}\t{}", c.uid, c.euid, c.suid, c.fsuid);
    let _ = writeln!(s, "Gid:\t{}\t{}\t{}\t{}", c.gid, c.egid, c.sgid, c.fsgid);
    let _ = writeln!(s, "FDSize:\t64");
    let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
    let _ = writeln!(s, "Groups:\t{}", groups.join(" "));
    let _ = writeln!(
        s,
        "NSpid:\t{}\nNSpgid:\t{}\nNSsid:\t{}",
        v.handle.tid(),
        f.pgid,
        f.sid
    );
    let _ = writeln!(
        s,
        "VmSize:\t{:8} kB\nVmRSS:\t{:8} kB",
        vsize / 1024,
        rss / 1024
    );
    let _ = writeln!(s, "Threads:\t{}", f.threads);
    let _ = writeln!(s, "SigQ:\t0/63484");
    let _ = writeln!(
        s,
        "SigPnd:\t{:016x}\nShdPnd:\t{:016x}",
        sig.pending.set, shared.pending.set
    );
    let _ = writeln!(
        s,
        "SigBlk:\t{:016x}\nSigIgn:\t{ignored:016x}\nSigCgt:\t{caught:016x}",
        sig.mask
    );
    let caps = c.caps;
    let _ = writeln!(
        s,
        "CapInh:\t{:016x}\nCapPrm:\t{:016x}\nCapEff:\t{:016x}\nCapBnd:\t{:016x}\nCapAmb:\t{:016x}",
        caps.inheritable, caps.permitted, caps.effective, caps.bounding, caps.ambient
    );
    let _ = writeln!(
        s,
        "NoNewPrivs:\t{}",
        u8::from(
            v.handle
                .no_new_privs
                .load(std::sync::atomic::Ordering::Relaxed)
        )
    );
    let _ = writeln!(s, "Seccomp:\t0");
    let affinity = v.handle.sched.guard().affinity.clone();
    let allowed = if affinity.is_empty() {
        &v.kernel.cpu_mask
    } else {
        &affinity
    };
    let cpus = super::proc::cpu_list(&cpu_indices(allowed));
    let _ = writeln!(s, "Cpus_allowed_list:\t{cpus}");
    Ok(s.into_bytes())
}

fn cpu_indices(mask: &[u8]) -> Vec<usize> {
    (0..mask.len() * 8)
        .filter(|&i| mask[i / 8] & (1 << (i % 8)) != 0)
        .collect()
}

fn stat(v: &View) -> Result<Vec<u8>, Errno> {
    let f = facts(v)?;
    let name = String::from_utf8_lossy(&v.handle.name.guard()).into_owned();
    let (letter, _) = state_letter(v, &f);
    let (vsize, rss) = memory_sizes(v);
    let (utime, cutime) = {
        let tree = v.kernel.tree.guard();
        let n = tree.process(v.tgid).ok_or(Errno::ESRCH)?;
        (
            crate::exit::duration_ticks(n.cpu_exited),
            crate::exit::duration_ticks(n.cpu_children),
        )
    };
    // Fields 1-52 of proc_pid_stat(5); what Moat does not track is 0.
    let mut s = format!(
        "{} ({name}) {letter} {} {} {} 0 -1 4194304 0 0 0 0 {utime} 0 {cutime} 0 20 0 {} 0 0 {vsize} {} ",
        v.handle.tid(),
        f.ppid,
        f.pgid,
        f.sid,
        f.threads,
        rss / 4096
    );
    s.push_str("18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    Ok(s.into_bytes())
}

fn statm(v: &View) -> Result<Vec<u8>, Errno> {
    let (vsize, rss) = memory_sizes(v);
    Ok(format!("{} {} 0 0 0 0 0\n", vsize / 4096, rss / 4096).into_bytes())
}

fn maps(v: &View) -> Result<Vec<u8>, Errno> {
    let mm = v
        .handle
        .resources
        .guard()
        .as_ref()
        .ok_or(Errno::ESRCH)?
        .mm
        .clone();
    let mm = mm.guard();
    let mut s = String::new();
    for (start, vma) in mm.vmas() {
        let p = vma.prot;
        let file_name = mm
            .name_at(start)
            .map(|n| String::from_utf8_lossy(n).into_owned());
        // The kernel's own mappings (`[vdso]`, `[vvar]`) show as private and fileless, as
        // Linux's special mappings do, however Moat backs them.
        let special = file_name.as_deref().is_some_and(|n| n.starts_with('['));
        let perms = format!(
            "{}{}{}{}",
            if p.readable() { 'r' } else { '-' },
            if p.writable() { 'w' } else { '-' },
            if p.executable() { 'x' } else { '-' },
            if vma.kind.is_shared() && !special {
                's'
            } else {
                'p'
            }
        );
        let (offset, dev, ino, name) = match vma.kind {
            _ if special => (0, 0, 0, file_name.clone().unwrap_or_default()),
            crate::mm::VmaKind::File { dev, ino, base, .. }
            | crate::mm::VmaKind::SharedFile { dev, ino, base, .. } => (
                base.wrapping_add(start),
                dev,
                ino,
                file_name.clone().unwrap_or_default(),
            ),
            crate::mm::VmaKind::Heap => (0, 0, 0, "[heap]".to_string()),
            crate::mm::VmaKind::Stack => (0, 0, 0, "[stack]".to_string()),
            crate::mm::VmaKind::Anonymous { .. } | crate::mm::VmaKind::PastEof => {
                (0, 0, 0, file_name.clone().unwrap_or_default())
            }
        };
        let line = format!(
            "{start:08x}-{:08x} {perms} {offset:08x} {:02x}:{:02x} {ino}",
            vma.end,
            (dev >> 8) & 0xfff,
            dev & 0xff
        );
        if name.is_empty() {
            let _ = writeln!(s, "{line}");
        } else {
            let _ = writeln!(s, "{line:<73}{name}");
        }
    }
    Ok(s.into_bytes())
}

fn limits(v: &View) -> Result<Vec<u8>, Errno> {
    const NAMES: [(&str, &str); 16] = [
        ("Max cpu time", "seconds"),
        ("Max file size", "bytes"),
        ("Max data size", "bytes"),
        ("Max stack size", "bytes"),
        ("Max core file size", "bytes"),
        ("Max resident set", "bytes"),
        ("Max processes", "processes"),
        ("Max open files", "files"),
        ("Max locked memory", "bytes"),
        ("Max address space", "bytes"),
        ("Max file locks", "locks"),
        ("Max pending signals", "signals"),
        ("Max msgqueue size", "bytes"),
        ("Max nice priority", ""),
        ("Max realtime priority", ""),
        ("Max realtime timeout", "us"),
    ];
    let limits = *v.handle.group.limits.guard();
    let show = |x: u64| {
        if x == u64::MAX {
            "unlimited".to_string()
        } else {
            x.to_string()
        }
    };
    let mut s = format!(
        "{:<26}{:<21}{:<21}{:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for (i, (name, unit)) in NAMES.iter().enumerate() {
        let _ = writeln!(
            s,
            "{name:<26}{:<21}{:<21}{unit:<10}",
            show(limits[i].cur),
            show(limits[i].max)
        );
    }
    Ok(s.into_bytes())
}

fn mounts(_v: &View) -> Result<Vec<u8>, Errno> {
    Ok(super::proc::MOUNTS.as_bytes().to_vec())
}
