//! Pseudo-terminals: `/dev/ptmx` makes a pair, `/dev/pts/N` is its terminal end, `/dev/tty`
//! the caller's controlling terminal.
//!
//! A [`Pty`] is two queues and a line discipline. What the master writes is *input*: it goes
//! through the input modes (`ICRNL`...), signal characters (`ISIG`: ^C, ^\, ^Z to the
//! foreground process group), echo (`ECHO`, `ECHOE`, `ECHOCTL`) and, in canonical mode
//! (`ICANON`), line editing (erase, kill, end of file) before the terminal end can read it:
//! a whole line at a time in canonical mode, as soon as bytes come otherwise. What the terminal
//! end writes is *output*, which `OPOST`/`ONLCR` process on its way to the master. Like pipes,
//! the ends never block themselves: an empty read or a full queue is `EAGAIN` and the system
//! call layer sleeps on the pty's wait queue.
//!
//! A terminal belongs to at most one session (its controlling terminal) and names that
//! session's foreground process group; hanging up the master sends `SIGHUP` and `SIGCONT` to
//! it. A background process group that reads its controlling terminal gets `SIGTTIN` (or
//! `EIO` if it ignores or blocks it); one that writes with `TOSTOP` set, or changes the
//! terminal's settings, gets `SIGTTOU` unless it ignores or blocks it ([`job_control`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use moat_abi::{Errno, SigInfo, Stat};

use super::pipe::{POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use super::{FileOps, OpenFile};
use crate::mm::MemoryManager;
use crate::process::Guard;
use crate::vfs::{DirEntry, FileKind, Inode, InodeRef};
use crate::wait::WaitQueue;

/// Device numbers: the pty slaves' major, `/dev/tty` (5:0) and `/dev/ptmx` (5:2).
pub const PTS_MAJOR: u64 = 136;
pub const TTY_DEV: u64 = super::dev::makedev(5, 0);
pub const PTMX_DEV: u64 = super::dev::makedev(5, 2);
/// The device number of the devpts filesystem itself.
const DEVPTS_DEV: u64 = 0x1a;
/// Bytes a direction holds before writers wait (Linux's tty buffers are about this size).
const CAPACITY: usize = 65536;
/// The longest canonical line (Linux's `N_TTY_BUF_SIZE` less one for the newline).
const MAX_CANON: usize = 4095;
/// The most terminals a sandbox may have open (`/proc/sys/kernel/pty/max`).
const MAX_PTYS: usize = 4096;

// termios flags (asm-generic/termbits.h).
const IGNCR: u32 = 0o200;
const ICRNL: u32 = 0o400;
const INLCR: u32 = 0o100;
const IXON: u32 = 0o2000;
const OPOST: u32 = 0o1;
const ONLCR: u32 = 0o4;
const B38400: u32 = 0o17;
const CS8: u32 = 0o60;
const CREAD: u32 = 0o200;
const HUPCL: u32 = 0o2000;
const ISIG: u32 = 0o1;
const ICANON: u32 = 0o2;
const ECHO: u32 = 0o10;
const ECHOE: u32 = 0o20;
const ECHOK: u32 = 0o40;
const ECHONL: u32 = 0o100;
const NOFLSH: u32 = 0o200;
const ECHOCTL: u32 = 0o1000;
const ECHOKE: u32 = 0o4000;
const IEXTEN: u32 = 0o100000;
// c_cc indices.
const VINTR: usize = 0;
const VQUIT: usize = 1;
const VERASE: usize = 2;
const VKILL: usize = 3;
const VEOF: usize = 4;
const VTIME: usize = 5;
const VMIN: usize = 6;
const VSUSP: usize = 10;
const VEOL: usize = 11;
const VEOL2: usize = 16;
const NCCS: usize = 19;

// ioctl requests.
const TCGETS: u32 = 0x5401;
const TCSETS: u32 = 0x5402;
const TCSETSW: u32 = 0x5403;
const TCSETSF: u32 = 0x5404;
const TCSBRK: u32 = 0x5409;
const TCXONC: u32 = 0x540a;
const TCFLSH: u32 = 0x540b;
const TIOCSCTTY: u32 = 0x540e;
const TIOCGPGRP: u32 = 0x540f;
const TIOCSPGRP: u32 = 0x5410;
const TIOCOUTQ: u32 = 0x5411;
const TIOCGWINSZ: u32 = 0x5413;
const TIOCSWINSZ: u32 = 0x5414;
const FIONREAD: u32 = 0x541b;
const TIOCNOTTY: u32 = 0x5422;
const TIOCGSID: u32 = 0x5429;
const TCGETS2: u32 = 0x802c_542a;
const TCSETS2: u32 = 0x402c_542b;
const TCSETSW2: u32 = 0x402c_542c;
const TCSETSF2: u32 = 0x402c_542d;
const TIOCGPTN: u32 = 0x8004_5430;
const TIOCSPTLCK: u32 = 0x4004_5431;
const TIOCGPTLCK: u32 = 0x8004_5439;
const TIOCGPTPEER: u32 = 0x5441;

/// `struct termios2` (`struct termios` is its first 36 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; NCCS],
    pub ispeed: u32,
    pub ospeed: u32,
}

impl Default for Termios {
    /// Linux's `tty_std_termios`.
    fn default() -> Termios {
        let mut cc = [0u8; NCCS];
        cc[..17].copy_from_slice(
            b"\x03\x1c\x7f\x15\x04\x00\x01\x00\x11\x13\x1a\x00\x12\x0f\x17\x16\x00",
        );
        Termios {
            iflag: ICRNL | IXON,
            oflag: OPOST | ONLCR,
            cflag: B38400 | CS8 | CREAD | HUPCL,
            lflag: ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN,
            line: 0,
            cc,
            ispeed: 38400,
            ospeed: 38400,
        }
    }
}

impl Termios {
    fn to_bytes(self, len: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(44);
        for v in [self.iflag, self.oflag, self.cflag, self.lflag] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(self.line);
        b.extend_from_slice(&self.cc);
        b.extend_from_slice(&self.ispeed.to_le_bytes());
        b.extend_from_slice(&self.ospeed.to_le_bytes());
        b.truncate(len);
        b
    }

    /// From 36 bytes (`termios`, speeds kept) or 44 (`termios2`).
    fn from_bytes(b: &[u8], old: &Termios) -> Termios {
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let mut cc = [0u8; NCCS];
        cc.copy_from_slice(&b[17..36]);
        let (ispeed, ospeed) = if b.len() >= 44 {
            (word(36), word(40))
        } else {
            (old.ispeed, old.ospeed)
        };
        Termios {
            iflag: word(0),
            oflag: word(4),
            cflag: word(8),
            lflag: word(12),
            line: b[16],
            cc,
            ispeed,
            ospeed,
        }
    }

    fn lflag(&self, f: u32) -> bool {
        self.lflag & f != 0
    }
}

struct State {
    termios: Termios,
    winsize: [u16; 4],
    /// Input the terminal end may read (complete lines in canonical mode).
    input: VecDeque<u8>,
    /// The canonical line being edited.
    line: Vec<u8>,
    /// End-of-file marks in `input`: a read stops there (and returns 0 if it is first).
    eofs: VecDeque<usize>,
    /// Bytes read from `input` since it started (to place the marks).
    consumed: usize,
    /// Output waiting for the master.
    output: VecDeque<u8>,
    locked: bool,
    masters: usize,
    slaves: usize,
    /// The session this is the controlling terminal of, and its foreground group.
    session: Option<i32>,
    foreground: i32,
}

/// One pseudo-terminal.
pub struct Pty {
    index: u32,
    state: Mutex<State>,
    queue: WaitQueue,
    table: Weak<PtyTable>,
}

impl Pty {
    /// Send `signo` to the foreground process group.
    fn signal_foreground(&self, signo: i32) {
        let pgrp = self.state.guard().foreground;
        if pgrp <= 0 {
            return;
        }
        if let Some(kernel) = self.table.upgrade().and_then(|t| t.kernel.get()?.upgrade()) {
            let tree = kernel.tree.guard();
            for pid in tree.group_members(pgrp) {
                let info = SigInfo::from_process(signo, moat_abi::SI_KERNEL, 0, 0);
                crate::signal::send_to_process_locked(&tree, pid, info);
            }
        }
    }

    /// Output processing (`OPOST`, `ONLCR`) of `data` into the master's queue.
    fn put_output(s: &mut State, data: &[u8]) {
        let post = s.termios.oflag & OPOST != 0;
        for &c in data {
            if post && c == b'\n' && s.termios.oflag & ONLCR != 0 {
                s.output.push_back(b'\r');
            }
            s.output.push_back(c);
        }
    }

    fn echo(s: &mut State, c: u8) {
        if !s.termios.lflag(ECHO) {
            if c == b'\n' && s.termios.lflag(ECHONL) && s.termios.lflag(ICANON) {
                Self::put_output(s, b"\n");
            }
            return;
        }
        if s.termios.lflag(ECHOCTL) && (c < 0x20 && c != b'\n' && c != b'\t' || c == 0x7f) {
            Self::put_output(s, &[b'^', c ^ 0x40]);
        } else {
            Self::put_output(s, &[c]);
        }
    }

    /// The input side of the line discipline: returns the signals to send.
    fn put_input(s: &mut State, data: &[u8]) -> Vec<i32> {
        let mut signals = Vec::new();
        for &raw in data {
            let t = s.termios;
            let mut c = raw;
            if c == b'\r' {
                if t.iflag & IGNCR != 0 {
                    continue;
                }
                if t.iflag & ICRNL != 0 {
                    c = b'\n';
                }
            } else if c == b'\n' && t.iflag & INLCR != 0 {
                c = b'\r';
            }
            if t.lflag(ISIG) {
                let sig = if c == t.cc[VINTR] && c != 0 {
                    Some(libc::SIGINT)
                } else if c == t.cc[VQUIT] && c != 0 {
                    Some(libc::SIGQUIT)
                } else if c == t.cc[VSUSP] && c != 0 {
                    Some(libc::SIGTSTP)
                } else {
                    None
                };
                if let Some(sig) = sig {
                    if !t.lflag(NOFLSH) {
                        s.input.clear();
                        s.line.clear();
                        s.eofs.clear();
                        s.consumed = 0;
                    }
                    Self::echo(s, c);
                    signals.push(sig);
                    continue;
                }
            }
            if !t.lflag(ICANON) {
                if s.input.len() < CAPACITY {
                    s.input.push_back(c);
                }
                Self::echo(s, c);
                continue;
            }
            if c == t.cc[VERASE] && c != 0 {
                if s.line.pop().is_some() && t.lflag(ECHO) && t.lflag(ECHOE) {
                    Self::put_output(s, b"\x08 \x08");
                }
                continue;
            }
            if c == t.cc[VKILL] && c != 0 {
                let n = s.line.len();
                s.line.clear();
                if t.lflag(ECHO) && t.lflag(ECHOK) {
                    for _ in 0..n {
                        Self::put_output(s, b"\x08 \x08");
                    }
                }
                continue;
            }
            if c == t.cc[VEOF] && c != 0 {
                // The line so far becomes readable, without the EOF character.
                let line = std::mem::take(&mut s.line);
                s.input.extend(line);
                let mark = s.consumed + s.input.len();
                s.eofs.push_back(mark);
                continue;
            }
            let ends = c == b'\n' || (c == t.cc[VEOL] && c != 0) || (c == t.cc[VEOL2] && c != 0);
            if s.line.len() < MAX_CANON || ends {
                s.line.push(c);
            }
            Self::echo(s, c);
            if ends {
                let line = std::mem::take(&mut s.line);
                s.input.extend(line);
            }
        }
        signals
    }
}

/// The sandbox's terminals, by index.
#[derive(Default)]
pub struct PtyTable {
    ptys: Mutex<Vec<Weak<Pty>>>,
    kernel: OnceLock<Weak<crate::Kernel>>,
}

impl PtyTable {
    /// Where signals go (set once the kernel exists).
    pub fn set_kernel(&self, kernel: Weak<crate::Kernel>) {
        let _ = self.kernel.set(kernel);
    }

    /// `open("/dev/ptmx")`: a new terminal, locked, its master end.
    pub fn open_master(self: &Arc<Self>) -> Result<Box<dyn FileOps>, Errno> {
        let mut ptys = self.ptys.guard();
        let index = match ptys.iter().position(|w| w.strong_count() == 0) {
            Some(i) => i,
            None if ptys.len() < MAX_PTYS => {
                ptys.push(Weak::new());
                ptys.len() - 1
            }
            None => return Err(Errno::ENOSPC),
        };
        let pty = Arc::new(Pty {
            index: index as u32,
            state: Mutex::new(State {
                termios: Termios::default(),
                winsize: [0; 4],
                input: VecDeque::new(),
                line: Vec::new(),
                eofs: VecDeque::new(),
                consumed: 0,
                output: VecDeque::new(),
                locked: true,
                masters: 1,
                slaves: 0,
                session: None,
                foreground: 0,
            }),
            queue: WaitQueue::default(),
            table: Arc::downgrade(self),
        });
        ptys[index] = Arc::downgrade(&pty);
        Ok(Box::new(PtyMaster { pty }))
    }

    fn get(&self, index: usize) -> Option<Arc<Pty>> {
        self.ptys.guard().get(index)?.upgrade()
    }

    /// The controlling terminal of session `sid`, opened as its terminal end (`/dev/tty`).
    pub fn open_controlling(&self, sid: i32) -> Result<Box<dyn FileOps>, Errno> {
        let ptys: Vec<Arc<Pty>> = self.ptys.guard().iter().filter_map(Weak::upgrade).collect();
        let pty = ptys
            .into_iter()
            .find(|p| p.state.guard().session == Some(sid))
            .ok_or(Errno::ENXIO)?;
        PtySlave::open(pty)
    }

    /// Make a freshly opened terminal end the controlling terminal of `(sid, pgid)` if the
    /// caller leads its session and the session has none (Linux does so on open without
    /// `O_NOCTTY`).
    pub fn maybe_acquire(&self, ops: &dyn FileOps, tgid: i32, sid: i32, pgid: i32) {
        let Some(slave) = ops.as_any().downcast_ref::<PtySlave>() else {
            return;
        };
        if tgid != sid || self.session_has_terminal(sid) {
            return;
        }
        let mut s = slave.pty.state.guard();
        if s.session.is_none() {
            s.session = Some(sid);
            s.foreground = pgid;
        }
    }

    fn session_has_terminal(&self, sid: i32) -> bool {
        self.ptys
            .guard()
            .iter()
            .filter_map(Weak::upgrade)
            .any(|p| p.state.guard().session == Some(sid))
    }
}

/// The master end (`/dev/ptmx`).
pub struct PtyMaster {
    pty: Arc<Pty>,
}

/// The terminal end (`/dev/pts/N`, `/dev/tty`).
pub struct PtySlave {
    pty: Arc<Pty>,
}

impl PtySlave {
    fn open(pty: Arc<Pty>) -> Result<Box<dyn FileOps>, Errno> {
        {
            let mut s = pty.state.guard();
            if s.locked || s.masters == 0 {
                return Err(Errno::EIO);
            }
            s.slaves += 1;
        }
        Ok(Box::new(PtySlave { pty }))
    }
}

impl Drop for PtyMaster {
    fn drop(&mut self) {
        let hangup = {
            let mut s = self.pty.state.guard();
            s.masters -= 1;
            s.session.is_some() && s.masters == 0
        };
        if hangup {
            self.pty.signal_foreground(libc::SIGHUP);
            self.pty.signal_foreground(libc::SIGCONT);
        }
        self.pty.queue.notify();
    }
}

impl Drop for PtySlave {
    fn drop(&mut self) {
        self.pty.state.guard().slaves -= 1;
        self.pty.queue.notify();
    }
}

/// The `ioctl`s both ends answer.
fn common_ioctl(pty: &Pty, mm: &mut MemoryManager, request: u32, arg: u64) -> Result<u64, Errno> {
    match request {
        TCGETS | TCGETS2 => {
            let len = if request == TCGETS { 36 } else { 44 };
            let t = pty.state.guard().termios;
            mm.write_bytes(arg, &t.to_bytes(len))?;
        }
        TCSETS | TCSETSW | TCSETSF | TCSETS2 | TCSETSW2 | TCSETSF2 => {
            let len = if matches!(request, TCSETS | TCSETSW | TCSETSF) {
                36
            } else {
                44
            };
            let mut b = vec![0u8; len];
            mm.read_bytes(arg, &mut b)?;
            let mut s = pty.state.guard();
            let new = Termios::from_bytes(&b, &s.termios);
            if matches!(request, TCSETSF | TCSETSF2) {
                s.input.clear();
                s.eofs.clear();
                s.consumed = 0;
            }
            // Leaving canonical mode makes the line being edited readable.
            if s.termios.lflag(ICANON) && !new.lflag(ICANON) {
                let line = std::mem::take(&mut s.line);
                s.input.extend(line);
            }
            s.termios = new;
            drop(s);
            pty.queue.notify();
        }
        TIOCGWINSZ => {
            let w = pty.state.guard().winsize;
            let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            mm.write_bytes(arg, &bytes)?;
        }
        TIOCSWINSZ => {
            let mut b = [0u8; 8];
            mm.read_bytes(arg, &mut b)?;
            let w = [0, 2, 4, 6].map(|i| u16::from_le_bytes([b[i], b[i + 1]]));
            let changed = {
                let mut s = pty.state.guard();
                let changed = s.winsize != w;
                s.winsize = w;
                changed
            };
            if changed {
                pty.signal_foreground(libc::SIGWINCH);
            }
        }
        TCSBRK | TCXONC => {}
        TCFLSH => {
            let mut s = pty.state.guard();
            match arg {
                0 => {
                    s.input.clear();
                    s.eofs.clear();
                    s.consumed = 0;
                }
                1 => s.output.clear(),
                2 => {
                    s.input.clear();
                    s.eofs.clear();
                    s.consumed = 0;
                    s.output.clear();
                }
                _ => return Err(Errno::EINVAL),
            }
            drop(s);
            pty.queue.notify();
        }
        _ => return Err(Errno::ENOTTY),
    }
    Ok(0)
}

fn tty_stat(rdev: u64, ino: u64) -> Stat {
    Stat {
        st_dev: DEVPTS_DEV,
        st_ino: ino,
        st_nlink: 1,
        st_mode: libc::S_IFCHR | 0o620,
        st_rdev: rdev,
        st_blksize: 1024,
        ..Stat::default()
    }
}

impl FileOps for PtyMaster {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let mut s = self.pty.state.guard();
        if s.output.is_empty() {
            // Every terminal end closed: the master reads EIO, as on Linux.
            return Err(if s.slaves == 0 && !s.locked {
                Errno::EIO
            } else {
                Errno::EAGAIN
            });
        }
        let n = buf.len().min(s.output.len());
        for (d, b) in buf.iter_mut().zip(s.output.drain(..n)) {
            *d = b;
        }
        drop(s);
        self.pty.queue.notify();
        Ok(n)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let (n, signals) = {
            let mut s = self.pty.state.guard();
            let room = CAPACITY.saturating_sub(s.input.len() + s.line.len());
            if room == 0 && !buf.is_empty() {
                return Err(Errno::EAGAIN);
            }
            let n = buf.len().min(room.max(1));
            let signals = Pty::put_input(&mut s, &buf[..n]);
            (n, signals)
        };
        self.pty.queue.notify();
        for sig in signals {
            self.pty.signal_foreground(sig);
        }
        Ok(n)
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        match request {
            TIOCGPTN => mm.write_obj(arg, &self.pty.index)?,
            TIOCSPTLCK => {
                let lock: i32 = mm.read_obj(arg)?;
                self.pty.state.guard().locked = lock != 0;
            }
            TIOCGPTLCK => {
                let locked = i32::from(self.pty.state.guard().locked);
                mm.write_obj(arg, &locked)?;
            }
            FIONREAD => {
                let n = self.pty.state.guard().output.len() as i32;
                mm.write_obj(arg, &n)?;
            }
            TIOCGPTPEER => return Err(Errno::ENOSYS),
            _ => return common_ioctl(&self.pty, mm, request, arg),
        }
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let mut st = tty_stat(PTMX_DEV, 2);
        st.st_mode = libc::S_IFCHR | 0o666;
        Ok(st)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let s = self.pty.state.guard();
        let mut r = 0;
        if !s.output.is_empty() {
            r |= POLLIN | POLLRDNORM;
        }
        if s.input.len() + s.line.len() < CAPACITY {
            r |= POLLOUT | POLLWRNORM;
        }
        if s.slaves == 0 && !s.locked {
            r |= POLLHUP;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pty.queue)
    }
}

impl PtyMaster {
    /// `TIOCGPTPEER`: open the terminal end directly.
    pub fn open_peer(&self) -> Result<Box<dyn FileOps>, Errno> {
        PtySlave::open(self.pty.clone())
    }
}

impl FileOps for PtySlave {
    fn read(&self, _file: &OpenFile, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let mut s = self.pty.state.guard();
        let canonical = s.termios.lflag(ICANON);
        // An end-of-file mark at the front: this read returns 0 and takes it.
        if s.eofs.front() == Some(&s.consumed) {
            s.eofs.pop_front();
            return Ok(0);
        }
        if s.input.is_empty() {
            if s.masters == 0 {
                return Ok(0);
            }
            if !canonical && s.termios.cc[VMIN] == 0 && s.termios.cc[VTIME] == 0 {
                return Ok(0);
            }
            return Err(Errno::EAGAIN);
        }
        let mut n = buf.len().min(s.input.len());
        if canonical {
            // One line at a time: up to and including its end, or to an EOF mark.
            let limit = s.eofs.front().map_or(usize::MAX, |m| m - s.consumed);
            let t = s.termios;
            let end = s.input.iter().position(|&c| {
                c == b'\n' || (c == t.cc[VEOL] && c != 0) || (c == t.cc[VEOL2] && c != 0)
            });
            if let Some(e) = end {
                n = n.min(e + 1);
            }
            n = n.min(limit);
        }
        for (d, b) in buf.iter_mut().zip(s.input.drain(..n)) {
            *d = b;
        }
        s.consumed += n;
        if s.eofs.front() == Some(&s.consumed) && canonical && n > 0 {
            // The EOF that ended this line is used up by it.
            s.eofs.pop_front();
        }
        if s.input.is_empty() && s.eofs.is_empty() {
            s.consumed = 0;
        }
        drop(s);
        self.pty.queue.notify();
        Ok(n)
    }

    fn write(&self, _file: &OpenFile, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let mut s = self.pty.state.guard();
        if s.masters == 0 {
            return Err(Errno::EIO);
        }
        let room = CAPACITY.saturating_sub(s.output.len());
        if room == 0 && !buf.is_empty() {
            return Err(Errno::EAGAIN);
        }
        let n = buf.len().min(room.max(1));
        Pty::put_output(&mut s, &buf[..n]);
        drop(s);
        self.pty.queue.notify();
        Ok(n)
    }

    fn ioctl(
        &self,
        _file: &OpenFile,
        mm: &mut MemoryManager,
        request: u32,
        arg: u64,
    ) -> Result<u64, Errno> {
        match request {
            TIOCGPTN => return Err(Errno::ENOTTY),
            FIONREAD => {
                let n = self.pty.state.guard().input.len() as i32;
                mm.write_obj(arg, &n)?;
            }
            TIOCOUTQ => {
                let n = self.pty.state.guard().output.len() as i32;
                mm.write_obj(arg, &n)?;
            }
            _ => return common_ioctl(&self.pty, mm, request, arg),
        }
        Ok(0)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let index = u64::from(self.pty.index);
        Ok(tty_stat(super::dev::makedev(PTS_MAJOR, index), index + 3))
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, _file: &OpenFile) -> u32 {
        let s = self.pty.state.guard();
        let mut r = 0;
        let eof_ready = s.eofs.front().is_some();
        // Input holds only complete lines in canonical mode, so any of it is readable.
        let line_ready = !s.input.is_empty();
        if line_ready || eof_ready {
            r |= POLLIN | POLLRDNORM;
        }
        if s.output.len() < CAPACITY {
            r |= POLLOUT | POLLWRNORM;
        }
        if s.masters == 0 {
            r |= POLLHUP | POLLIN | POLLRDNORM | POLLERR;
        }
        r
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.pty.queue)
    }
}

/// The terminal calls that need the caller's process: the controlling terminal and the
/// foreground group (`TIOCSCTTY`, `TIOCNOTTY`, `TIOCGPGRP`, `TIOCSPGRP`, `TIOCGSID`).
/// `None` when `file` is no terminal end or the request is another one.
pub fn session_ioctl(
    file: &OpenFile,
    request: u32,
    arg_value: u64,
    caller: (i32, i32, i32),
    tree_has_pgrp_in_session: impl Fn(i32, i32) -> bool,
) -> Option<Result<Option<i32>, Errno>> {
    let pty = match (file.ops_as::<PtySlave>(), file.ops_as::<PtyMaster>()) {
        (Some(s), _) => &s.pty,
        (None, Some(m)) => &m.pty,
        _ => return None,
    };
    let (tgid, sid, pgid) = caller;
    let mut s = pty.state.guard();
    Some(match request {
        TIOCSCTTY => {
            if s.session == Some(sid) {
                Ok(None)
            } else if tgid != sid || (s.session.is_some() && arg_value != 1) {
                // Only a session leader; another session's terminal only by force.
                Err(Errno::EPERM)
            } else {
                drop(s);
                let has = pty
                    .table
                    .upgrade()
                    .is_some_and(|t| t.session_has_terminal(sid));
                if has {
                    return Some(Err(Errno::EPERM));
                }
                let mut s = pty.state.guard();
                s.session = Some(sid);
                s.foreground = pgid;
                Ok(None)
            }
        }
        TIOCNOTTY => {
            if s.session == Some(sid) {
                if tgid == sid {
                    s.session = None;
                    s.foreground = 0;
                }
                Ok(None)
            } else {
                Err(Errno::ENOTTY)
            }
        }
        TIOCGPGRP => {
            if s.session == Some(sid) {
                Ok(Some(s.foreground))
            } else {
                Err(Errno::ENOTTY)
            }
        }
        TIOCGSID => match s.session {
            Some(owner) if owner == sid => Ok(Some(owner)),
            _ => Err(Errno::ENOTTY),
        },
        TIOCSPGRP => {
            let want = arg_value as i32;
            if s.session != Some(sid) {
                Err(Errno::ENOTTY)
            } else if want < 0 {
                Err(Errno::EINVAL)
            } else if !tree_has_pgrp_in_session(want, sid) {
                Err(Errno::EPERM)
            } else {
                s.foreground = want;
                Ok(None)
            }
        }
        _ => return None,
    })
}

const TOSTOP: u32 = 0o400;

/// What a terminal access is, for job control.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Changing the terminal's settings (`tcsetattr`, `TIOCSPGRP`...).
    Configure,
}

/// Job control: a process of a background group of the session whose controlling terminal
/// `file` is may not read it (`SIGTTIN` to its group, or `EIO` when that signal is ignored or
/// blocked), nor write it with `TOSTOP` set or configure it (`SIGTTOU`, unless ignored or
/// blocked). `Err(ERESTARTSYS)` after a signal was sent: the call restarts once it is handled.
pub fn job_control(task: &crate::task::Task, file: &OpenFile, access: Access) -> Result<(), Errno> {
    let Some(slave) = file.ops_as::<PtySlave>() else {
        return Ok(());
    };
    let (_, sid, pgid) = crate::syscalls::open::session_of(task);
    let (session, foreground, tostop) = {
        let s = slave.pty.state.guard();
        (s.session, s.foreground, s.termios.lflag & TOSTOP != 0)
    };
    if session != Some(sid) || foreground == pgid || foreground <= 0 {
        return Ok(());
    }
    let signo = match access {
        Access::Read => libc::SIGTTIN,
        Access::Write if !tostop => return Ok(()),
        Access::Write | Access::Configure => libc::SIGTTOU,
    };
    let bit = 1u64 << (signo - 1);
    let blocked = task.handle.signals.guard().mask & bit != 0;
    let ignored = task.handle.group.signals.guard().actions[(signo - 1) as usize].handler
        == crate::signal::SIG_IGN;
    if blocked || ignored {
        return if access == Access::Read {
            Err(Errno::EIO)
        } else {
            Ok(())
        };
    }
    let tree = task.kernel.tree.guard();
    for pid in tree.group_members(pgid) {
        let info = SigInfo::from_process(signo, moat_abi::SI_KERNEL, 0, 0);
        crate::signal::send_to_process_locked(&tree, pid, info);
    }
    Err(Errno::ERESTARTSYS)
}

/// Open the terminal end a master names (`TIOCGPTPEER`).
pub fn open_peer(file: &OpenFile) -> Option<Result<Box<dyn FileOps>, Errno>> {
    file.ops_as::<PtyMaster>().map(PtyMaster::open_peer)
}

/// The devpts filesystem (`/dev/pts`): `ptmx`, and `N` for every terminal whose master is
/// open.
pub struct PtsDir {
    table: Arc<PtyTable>,
}

impl PtsDir {
    pub fn root(table: Arc<PtyTable>) -> InodeRef {
        Arc::new(PtsDir { table })
    }
}

/// `/dev/pts/N`.
struct PtsNode {
    pty: Arc<Pty>,
}

/// `/dev/pts/ptmx`.
struct PtmxNode {
    table: Arc<PtyTable>,
}

impl Inode for PtsDir {
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            st_dev: DEVPTS_DEV,
            st_ino: 1,
            st_nlink: 2,
            st_mode: libc::S_IFDIR | 0o755,
            st_blksize: 1024,
            ..Stat::default()
        })
    }

    fn lookup(&self, name: &[u8]) -> Result<InodeRef, Errno> {
        if name == b"ptmx" {
            return Ok(Arc::new(PtmxNode {
                table: self.table.clone(),
            }));
        }
        let index: usize = std::str::from_utf8(name)
            .ok()
            .filter(|s| !s.starts_with('0') || *s == "0")
            .and_then(|s| s.parse().ok())
            .ok_or(Errno::ENOENT)?;
        let pty = self.table.get(index).ok_or(Errno::ENOENT)?;
        if pty.state.guard().masters == 0 {
            return Err(Errno::ENOENT);
        }
        Ok(Arc::new(PtsNode { pty }))
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut out = vec![DirEntry {
            name: b"ptmx".to_vec(),
            ino: 2,
            kind: FileKind::CharDevice,
        }];
        let ptys: Vec<Arc<Pty>> = self
            .table
            .ptys
            .guard()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for p in ptys {
            out.push(DirEntry {
                name: p.index.to_string().into_bytes(),
                ino: u64::from(p.index) + 3,
                kind: FileKind::CharDevice,
            });
        }
        Ok(out)
    }

    fn open(&self, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        Ok(Box::new(super::dir::DirFile))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Inode for PtsNode {
    fn stat(&self) -> Result<Stat, Errno> {
        let index = u64::from(self.pty.index);
        Ok(tty_stat(super::dev::makedev(PTS_MAJOR, index), index + 3))
    }

    fn open(&self, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        PtySlave::open(self.pty.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Inode for PtmxNode {
    fn stat(&self) -> Result<Stat, Errno> {
        let mut st = tty_stat(PTMX_DEV, 2);
        st.st_mode = libc::S_IFCHR | 0o666;
        Ok(st)
    }

    fn open(&self, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        self.table.open_master()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}
