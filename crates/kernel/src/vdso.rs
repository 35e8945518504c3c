//! Moat's vDSO: `clock_gettime`, `gettimeofday` and `time` served in the application's own
//! address space, so the most frequent system calls of many programs never trap.
//!
//! The code (vdso/vdso.c, built by build.rs) computes the time from the CPU's time-stamp
//! counter and a line the kernel publishes in a data page (the "vvar" page) under a sequence
//! lock: `ns = base + (tsc - tsc_base) * mult / 2^32`. A clock thread re-measures the TSC
//! against the host's `CLOCK_MONOTONIC` every [`PERIOD`] and steers the line's slope so it
//! meets the host clock (plus a small lead) one period later, keeping it continuous: the time
//! never goes backwards, and it stays within a microsecond or two of the host's. The kernel
//! answers the same clocks from the same line when they come as system calls, so the vDSO
//! and the system call never disagree.
//!
//! One copy of the data page and the image lives in the memory file; every address space
//! maps them shared and read-only (`[vvar]`, `[vdso]`), and `AT_SYSINFO_EHDR` tells the C
//! library where.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_abi::Timespec;
use moat_memory::{FileRange, MemoryFile};
use moat_platform::Prot;
use rustix::time::ClockId;

use crate::mm::{MappedFile, MemoryManager, PageSource, Placement};
use crate::process::Guard;

/// The vDSO image built from vdso/vdso.c.
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

const PAGE: u64 = 4096;
/// How often the clock thread re-measures the TSC.
pub const PERIOD: Duration = Duration::from_millis(100);
/// How far ahead of the host's clock the line aims: more than its error, so that a program
/// that sleeps until an absolute time reads at least that time when it wakes.
const LEAD_NS: u64 = 2_000;
/// The most the steering may change the slope from the measured rate (parts per million).
const MAX_STEER_PPM: u64 = 500;
/// The device number `/proc/PID/maps` shows for the vDSO's mappings (none, as on Linux).
const VDSO_DEV: u64 = 0;

/// Offsets in the data page (vdso/vdso.h, `struct moat_vvar`).
const SEQ: u64 = 0;
const READY: u64 = 4;
const TSC_BASE: u64 = 8;

/// The clocks the line serves.
#[derive(Clone, Copy)]
pub enum LineClock {
    Monotonic,
    Realtime,
    Boottime,
}

/// The published line, as the kernel keeps it.
#[derive(Clone, Copy, Default)]
struct Line {
    tsc_base: u64,
    /// Nanoseconds per tick, times 2^32.
    mult: u64,
    monotonic_ns: u64,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC` and `CLOCK_BOOTTIME - CLOCK_MONOTONIC` as last
    /// measured.
    realtime_offset: i128,
    boottime_offset: i128,
}

impl Line {
    fn monotonic_at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_base);
        self.monotonic_ns + ((u128::from(delta) * u128::from(self.mult)) >> 32) as u64
    }
}

/// The clock thread's calibration.
#[derive(Default)]
struct Calibration {
    /// The first measurement: the long baseline the TSC rate is measured over.
    first: Option<Sample>,
    line: Option<Line>,
}

#[derive(Clone, Copy)]
struct Sample {
    tsc: u64,
    monotonic_ns: u64,
    realtime_offset: i128,
    boottime_offset: i128,
}

fn ns(t: rustix::time::Timespec) -> i128 {
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

/// Read the TSC and the host's clocks together: the TSC is taken on both sides of the
/// monotonic clock and the tightest of a few tries wins.
fn sample() -> Sample {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..5 {
        let t0 = moat_platform::read_tsc();
        let mono = ns(rustix::time::clock_gettime(ClockId::Monotonic));
        let t1 = moat_platform::read_tsc();
        let real = ns(rustix::time::clock_gettime(ClockId::Realtime));
        let boot = ns(rustix::time::clock_gettime(ClockId::Boottime));
        let width = t1.wrapping_sub(t0);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((
                width,
                Sample {
                    tsc: t0 + width / 2,
                    monotonic_ns: mono as u64,
                    realtime_offset: real - mono,
                    boottime_offset: boot - mono,
                },
            ));
        }
    }
    best.map(|(_, s)| s).expect("five tries")
}

/// The vDSO of a sandbox: its pages in the memory file and the line it publishes.
pub struct Vdso {
    memory: Arc<MemoryFile>,
    /// The data page, then the image's pages; this reference is the vDSO's own.
    pages: FileRange,
    calibration: Mutex<Calibration>,
    /// The line as published, for the kernel's own answers.
    published: Mutex<Option<Line>>,
    /// Set when the sandbox ends: the clock thread leaves.
    stop: (Mutex<bool>, std::sync::Condvar),
}

impl Vdso {
    pub fn new(memory: Arc<MemoryFile>) -> Result<Vdso, moat_memory::MemoryError> {
        let image_len = (IMAGE.len() as u64).div_ceil(PAGE) * PAGE;
        let pages = memory.allocate(PAGE + image_len)?;
        memory.write(pages.offset + PAGE, IMAGE);
        Ok(Vdso {
            memory,
            pages,
            calibration: Mutex::new(Calibration::default()),
            published: Mutex::new(None),
            stop: (Mutex::new(false), std::sync::Condvar::new()),
        })
    }

    /// Map the data page and the image into `mm`; returns the image's address (for
    /// `AT_SYSINFO_EHDR`).
    pub fn map_into(self: &Arc<Self>, mm: &mut MemoryManager) -> Result<u64, moat_abi::Errno> {
        let total = self.pages.len;
        let base = mm.find_space(total).ok_or(moat_abi::Errno::ENOMEM)?;
        let page_offsets = |first: u64, n: u64| -> Vec<Option<u64>> {
            (0..n).map(|i| Some(first + i * PAGE)).collect()
        };
        // Each mapping holds its own reference to its pages.
        let vvar = FileRange {
            offset: self.pages.offset,
            len: PAGE,
        };
        let image = FileRange {
            offset: self.pages.offset + PAGE,
            len: total - PAGE,
        };
        let source: Arc<dyn PageSource> = self.clone();
        let file = |ino: u64| MappedFile {
            dev: VDSO_DEV,
            ino,
            offset: 0,
            pages: source.clone(),
        };
        self.memory.share(vvar);
        mm.map_shared_file(
            Placement::Fixed(base),
            PAGE,
            Prot::READ,
            &file(1),
            &page_offsets(vvar.offset, 1),
        )?;
        self.memory.share(image);
        mm.map_shared_file(
            Placement::Fixed(base + PAGE),
            image.len,
            Prot(Prot::READ.0 | Prot::EXEC.0),
            &file(2),
            &page_offsets(image.offset, image.len / PAGE),
        )?;
        mm.name_range(base, base + PAGE, b"[vvar]");
        mm.name_range(base + PAGE, base + total, b"[vdso]");
        Ok(base + PAGE)
    }

    /// Measure the TSC against the host's clock and publish a steered line (the clock
    /// thread calls this every [`PERIOD`]; the first call only takes the baseline).
    pub fn update(&self) {
        let s = sample();
        let mut cal = self.calibration.guard();
        let Some(first) = cal.first else {
            cal.first = Some(s);
            return;
        };
        let ticks = s.tsc.saturating_sub(first.tsc);
        let nanos = s.monotonic_ns.saturating_sub(first.monotonic_ns);
        if ticks == 0 || nanos == 0 {
            return;
        }
        // The TSC's rate over the whole baseline, in ns per tick times 2^32.
        let rate = ((u128::from(nanos) << 32) / u128::from(ticks)) as u64;
        let now_tsc = moat_platform::read_tsc();
        let period_ns = PERIOD.as_nanos() as u64;
        let period_ticks = ((u128::from(period_ns) << 32) / u128::from(rate.max(1))) as u64;
        let host_now = s.monotonic_ns
            + ((u128::from(now_tsc.saturating_sub(s.tsc)) * u128::from(rate)) >> 32) as u64;
        let line = match cal.line {
            // The first line starts at the host's time (plus the lead), at the measured rate.
            None => Line {
                tsc_base: now_tsc,
                mult: rate,
                monotonic_ns: host_now + LEAD_NS,
                realtime_offset: s.realtime_offset,
                boottime_offset: s.boottime_offset,
            },
            // Later lines continue the current one and aim to meet the host's clock (plus
            // the lead) one period from now, within bounds on the slope.
            Some(old) => {
                let here = old.monotonic_at(now_tsc);
                let target = host_now + period_ns + LEAD_NS;
                let wanted = if target > here {
                    ((u128::from(target - here) << 32) / u128::from(period_ticks.max(1))) as u64
                } else {
                    0
                };
                let bound = rate / 1_000_000 * MAX_STEER_PPM;
                Line {
                    tsc_base: now_tsc,
                    mult: wanted.clamp(rate - bound, rate + bound),
                    monotonic_ns: here,
                    realtime_offset: s.realtime_offset,
                    boottime_offset: s.boottime_offset,
                }
            }
        };
        cal.line = Some(line);
        self.publish(&line);
    }

    /// Write `line` into the data page under the sequence lock.
    fn publish(&self, line: &Line) {
        let at = self.pages.offset;
        let shifted = |offset: i128| (i128::from(line.monotonic_ns) + offset).max(0) as u64;
        let mut fields = Vec::with_capacity(40);
        for v in [
            line.tsc_base,
            line.mult,
            line.monotonic_ns,
            shifted(line.realtime_offset),
            shifted(line.boottime_offset),
        ] {
            fields.extend_from_slice(&v.to_le_bytes());
        }
        // The read-modify-writes of the sequence word are full barriers: readers see it odd
        // before any field changes and even only after all have.
        let mut published = self.published.guard();
        self.memory
            .atomic_update_u32(at + SEQ, |s| s.wrapping_add(1) | 1);
        self.memory.write(at + TSC_BASE, &fields);
        self.memory.atomic_update_u32(at + READY, |_| 1);
        self.memory
            .atomic_update_u32(at + SEQ, |s| s.wrapping_add(1));
        *published = Some(*line);
    }

    /// The time on `clock` by the published line, as the vDSO computes it; `None` until the
    /// first line.
    pub fn now(&self, clock: LineClock) -> Option<Timespec> {
        let line = (*self.published.guard())?;
        let mono = line.monotonic_at(moat_platform::read_tsc());
        let ns = match clock {
            LineClock::Monotonic => i128::from(mono),
            LineClock::Realtime => i128::from(mono) + line.realtime_offset,
            LineClock::Boottime => i128::from(mono) + line.boottime_offset,
        }
        .max(0);
        Some(Timespec {
            tv_sec: (ns / 1_000_000_000) as i64,
            tv_nsec: (ns % 1_000_000_000) as i64,
        })
    }

    /// Start the clock thread, which runs until [`Vdso::stop_clock`].
    pub fn start_clock(self: &Arc<Self>) {
        let vdso = self.clone();
        let spawned = std::thread::Builder::new()
            .name("moat-clock".into())
            .spawn(move || {
                // A short first interval so that the vDSO is ready early in the sandbox's life.
                let mut wait = Duration::from_millis(20);
                loop {
                    vdso.update();
                    if vdso.sleep(wait) {
                        return;
                    }
                    wait = PERIOD;
                }
            });
        if let Err(e) = spawned {
            // Without the thread the vDSO is never ready: every call goes to the kernel.
            tracing::warn!("cannot start the vDSO clock thread: {e}");
        }
    }

    /// Sleep for `d`; `true` if the clock is to stop.
    fn sleep(&self, d: Duration) -> bool {
        let (lock, cond) = &self.stop;
        let stopped = lock.guard();
        let (stopped, _) = cond
            .wait_timeout_while(stopped, d, |s| !*s)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *stopped
    }

    /// End the clock thread (the sandbox is over).
    pub fn stop_clock(&self) {
        *self.stop.0.guard() = true;
        self.stop.1.notify_all();
    }
}

/// The vDSO's mappings never grow: nothing to supply after mmap time.
impl PageSource for Vdso {
    fn share_pages(&self, _first: u64, count: u64) -> Result<Vec<Option<u64>>, moat_abi::Errno> {
        Ok(vec![None; count as usize])
    }
}

impl Drop for Vdso {
    fn drop(&mut self) {
        self.memory.free(self.pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::Elf;

    #[test]
    fn the_image_is_a_vdso_a_c_library_accepts() {
        let elf = Elf::parse(IMAGE).expect("the vDSO parses");
        assert_eq!(elf.header.e_type, goblin::elf::header::ET_DYN);
        // Laid out in memory as in the file, with nothing to relocate.
        for ph in &elf.program_headers {
            if ph.p_type == goblin::elf::program_header::PT_LOAD {
                assert_eq!(ph.p_vaddr, ph.p_offset);
            }
        }
        assert!(elf.dynrelas.is_empty() && elf.dynrels.is_empty() && elf.pltrelocs.is_empty());
        let names: Vec<&str> = elf
            .dynsyms
            .iter()
            .filter_map(|s| elf.dynstrtab.get_at(s.st_name))
            .collect();
        for f in [
            "__vdso_clock_gettime",
            "__vdso_gettimeofday",
            "__vdso_time",
            "__vdso_getcpu",
        ] {
            assert!(names.contains(&f), "{f} missing from {names:?}");
        }
        assert!(names.contains(&"LINUX_2.6"));
    }
}
