use super::*;
use std::time::Instant;

const CODE: u64 = 0x40_0000;
const DATA: u64 = 0x50_0000;
const RX: Prot = Prot(Prot::READ.0 | Prot::EXEC.0);
const RW: Prot = Prot(Prot::READ.0 | Prot::WRITE.0);

fn user_regs(rip: u64) -> Regs {
    let mut regs = Regs {
        rip,
        ..Regs::default()
    };
    regs.cs = 0x33;
    regs.ss = 0x2b;
    regs.eflags = 0x202;
    regs
}

/// A page of the memory file holding `bytes` at `at`.
fn page(memory: &MemoryFile, at: u64, bytes: &[u8]) -> u64 {
    let range = memory.allocate(4096).unwrap();
    memory.write(range.offset + at, bytes);
    range.offset
}

fn platform() -> SystrapPlatform {
    SystrapPlatform::new()
}

/// `mov $39, %eax; syscall; mov (%rbx), %rax; ud2` — a system call, then a fault.
#[test]
fn stub_runs_code_and_traps() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().new_address_space(&memory).unwrap();
    let code = page(
        &memory,
        0,
        &[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x48, 0x8b, 0x03, 0x0f, 0x0b],
    );
    aspace.map(CODE, 4096, RX, code).unwrap();
    let mut regs = Regs {
        rbx: 0x1234_0000,
        ..user_regs(CODE)
    };
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    assert_eq!(regs.orig_rax, 39);
    assert_eq!(regs.rip, CODE + 7);
    regs.rax = 77;
    let trap = ctx.switch(&mut regs).unwrap();
    assert_eq!(
        trap,
        Trap::Fault {
            signo: libc::SIGSEGV,
            code: 1,
            addr: 0x1234_0000
        }
    );
    assert_eq!(
        regs.rax, 77,
        "the syscall result must be what the kernel wrote"
    );
    assert!(!ctx.fp_state().unwrap().is_empty());
}

fn read_u64(memory: &MemoryFile, offset: u64) -> u64 {
    let mut buf = [0u8; 8];
    memory.read(offset, &mut buf);
    u64::from_ne_bytes(buf)
}

/// The host's start time of process `pid` (field 22 of its stat), to tell it from a later
/// process with the same pid.
fn start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

fn assert_process_gone(pid: libc::pid_t, started: Option<u64>) {
    assert!(started.is_some());
    assert_ne!(
        start_time(pid),
        started,
        "stub {pid} outlived its last user"
    );
}

fn thread_exists(pid: libc::pid_t, tid: libc::pid_t) -> bool {
    std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

fn tasks(pid: libc::pid_t) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// `addq $1, (%rbx); mov $39, %eax; syscall` at offset 0, `mov (%rdx), %rsi;
/// mov $186, %eax; syscall` at offset 0x20.
const COUNTER: &[u8] = &[0x48, 0x83, 0x03, 0x01, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
const READER: &[u8] = &[0x48, 0x8b, 0x32, 0xb8, 186, 0, 0, 0, 0x0f, 0x05];

fn count(ctx: &mut dyn Context, counter: u64, rounds: u64) {
    for _ in 0..rounds {
        let mut regs = user_regs(CODE);
        regs.rbx = counter;
        assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
        assert_eq!(regs.orig_rax, 39);
        assert_eq!(regs.rip, CODE + COUNTER.len() as u64);
        assert_eq!(regs.rbx, counter);
    }
}

/// Every general register goes into application code as the kernel wrote it and comes back
/// as the code left it; the flags the application may set survive.
#[test]
fn registers_round_trip() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    // `syscall` (rcx and r11 are the host's: return address and flags), then `inc` of every
    // other register, then `syscall` again.
    let mut code = vec![0x0f, 0x05];
    for inc in [
        [0x48, 0xff, 0xc0], // rax
        [0x48, 0xff, 0xc2], // rdx
        [0x48, 0xff, 0xc3], // rbx
        [0x48, 0xff, 0xc4], // rsp
        [0x48, 0xff, 0xc5], // rbp
        [0x48, 0xff, 0xc6], // rsi
        [0x48, 0xff, 0xc7], // rdi
        [0x49, 0xff, 0xc0], // r8
        [0x49, 0xff, 0xc1],
        [0x49, 0xff, 0xc2],
        [0x49, 0xff, 0xc4],
        [0x49, 0xff, 0xc5],
        [0x49, 0xff, 0xc6],
        [0x49, 0xff, 0xc7], // r15
    ] {
        code.extend_from_slice(&inc);
    }
    code.extend_from_slice(&[0x0f, 0x05]);
    aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
    let mut regs = user_regs(CODE);
    let values: [u64; 14] = std::array::from_fn(|i| 0x1111_0000_0000 * (i as u64 + 1) + 7);
    [
        regs.rax, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi, regs.r8, regs.r9,
        regs.r10, regs.r12, regs.r13, regs.r14, regs.r15,
    ] = values;
    regs.rax = 39;
    regs.fs_base = 0x7000_1000;
    regs.gs_base = 0x7000_2000;
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    assert_eq!(regs.orig_rax, 39);
    assert_eq!((regs.rip, regs.rcx), (CODE + 2, CODE + 2));
    assert_eq!((regs.fs_base, regs.gs_base), (0x7000_1000, 0x7000_2000));
    assert_eq!((regs.cs, regs.ss), (0x33, 0x2b));
    regs.rax = 5;
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    let got = [
        regs.rax, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi, regs.r8, regs.r9,
        regs.r10, regs.r12, regs.r13, regs.r14, regs.r15,
    ];
    let mut want = values;
    want[0] = 5;
    for w in &mut want {
        *w += 1;
    }
    assert_eq!(got, want);
    // A bad FS base is refused before anything runs.
    regs.fs_base = 1 << 47;
    assert!(ctx.switch(&mut regs).is_err());
}

/// The FP state the kernel sets is what the code sees, and what it leaves is what the kernel
/// reads; state the host would refuse is refused.
#[test]
fn fp_state_round_trip() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    // `movq %xmm0, %rax; mov $39, %ecx... ` simpler: `movq %xmm0, %rbx; syscall;
    // movq %rdx, %xmm1; syscall`.
    let code = [
        0x66, 0x48, 0x0f, 0x7e, 0xc3, // movq %xmm0, %rbx
        0x0f, 0x05, // syscall
        0x66, 0x48, 0x0f, 0x6e, 0xca, // movq %rdx, %xmm1
        0x0f, 0x05,
    ];
    aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
    let mut fp = ctx.fp_state().unwrap();
    assert!(fp.len() > 576, "an XSAVE area: {}", fp.len());
    let xcr0 = u64::from_ne_bytes(fp[464..472].try_into().unwrap());
    assert_eq!(xcr0 & 3, 3, "XCR0 in the ptrace layout");
    // XMM0 is at 160 in the legacy area; mark SSE state in use in XSTATE_BV.
    fp[160..168].copy_from_slice(&0x5eed_5eed_u64.to_ne_bytes());
    fp[512] |= 2;
    ctx.set_fp_state(&fp).unwrap();
    let mut regs = user_regs(CODE);
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    assert_eq!(regs.rbx, 0x5eed_5eed);
    regs.rdx = 0xfeed_f00d;
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    let fp = ctx.fp_state().unwrap();
    assert_eq!(
        u64::from_ne_bytes(fp[176..184].try_into().unwrap()),
        0xfeed_f00d
    );

    let mut bad = fp.clone();
    bad[24..28].copy_from_slice(&0xffff_ffffu32.to_ne_bytes());
    assert!(matches!(
        ctx.set_fp_state(&bad),
        Err(PlatformError::InvalidFpState(_))
    ));
    let mut bad = fp.clone();
    bad[512..520].copy_from_slice(&(1u64 << 62).to_ne_bytes());
    assert!(matches!(
        ctx.set_fp_state(&bad),
        Err(PlatformError::InvalidFpState(_))
    ));
    let mut bad = fp.clone();
    bad[520] = 1;
    assert!(matches!(
        ctx.set_fp_state(&bad),
        Err(PlatformError::InvalidFpState(_))
    ));
    assert!(ctx.set_fp_state(&fp[..100]).is_err());
    ctx.set_fp_state(&fp).unwrap();
}

/// A copy of an address space (`fork`) runs on another host thread with every mapping
/// the original had, and the two are independent afterwards.
#[test]
fn forked_copy_keeps_the_mappings() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    aspace
        .map(
            CODE,
            4096,
            RX,
            page(&memory, 0, &[0xb8, 39, 0, 0, 0, 0x0f, 0x05]),
        )
        .unwrap();
    let seed = aspace
        .fork()
        .unwrap()
        .expect("systrap copies address spaces");
    let child = std::thread::spawn(move || {
        let (mut copy, mut copy_ctx) = seed.attach().unwrap();
        let mut regs = user_regs(CODE);
        assert_eq!(
            copy_ctx.switch(&mut regs).unwrap(),
            Trap::Syscall,
            "code inherited"
        );
        // Unmapping in the copy leaves the original alone.
        copy.unmap(CODE, 4096).unwrap();
        let mut regs = user_regs(CODE);
        assert!(matches!(
            copy_ctx.switch(&mut regs).unwrap(),
            Trap::Fault {
                signo: libc::SIGSEGV,
                ..
            }
        ));
    });
    child.join().unwrap();
    let mut regs = user_regs(CODE);
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    // A copy that nobody attaches is killed and reaped.
    let seed = aspace.fork().unwrap().unwrap();
    drop(seed);
    assert_eq!(ctx.switch(&mut user_regs(CODE)).unwrap(), Trap::Syscall);
}

/// Two host threads run two stub threads of one address space at the same time; the
/// second maps memory through its own stub thread, then ends while the first goes on.
#[test]
fn threads_share_an_address_space() {
    const ROUNDS: u64 = 2000;
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    let pid = aspace.stub.pid();
    let started = start_time(pid);
    let mut code = COUNTER.to_vec();
    code.resize(0x20, 0x90);
    code.extend_from_slice(READER);
    aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
    let data = page(&memory, 0, &[]);
    aspace.map(DATA, 4096, RW, data).unwrap();

    let t0 = Instant::now();
    let seed = aspace.new_seed().unwrap();
    let cloned = t0.elapsed();
    let tid = seed.channel.as_ref().unwrap().thread.tid;
    assert!(thread_exists(pid, tid));

    let aspace = Arc::new(Mutex::new(aspace));
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let second = std::thread::spawn({
        let (aspace, barrier, memory) = (aspace.clone(), barrier.clone(), memory.clone());
        move || {
            let t1 = Instant::now();
            let mut ctx = Box::new(seed).attach().unwrap();
            let attached = t1.elapsed();
            barrier.wait();
            count(&mut *ctx, DATA + 8, ROUNDS);
            barrier.wait();
            let other = page(&memory, 0, &0x5eed_u64.to_ne_bytes());
            aspace
                .lock()
                .unwrap()
                .map(DATA + 0x1000, 4096, RW, other)
                .unwrap();
            let mut regs = user_regs(CODE + 0x20);
            regs.rdx = DATA + 0x1000;
            assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
            assert_eq!((regs.orig_rax, regs.rsi), (186, 0x5eed));
            regs = user_regs(CODE + 0x20);
            regs.rdx = DATA;
            assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
            assert_eq!(regs.rsi, ROUNDS);
            assert!(ctx.cpu_time().unwrap() > Duration::ZERO);
            drop(ctx);
            let err = aspace.lock().unwrap().unmap(DATA, 4096).unwrap_err();
            assert!(matches!(err, PlatformError::NotAttached), "{err}");
            attached
        }
    });
    barrier.wait();
    count(&mut ctx, DATA, ROUNDS);
    barrier.wait();
    let attached = second.join().unwrap();
    eprintln!("new_thread took {cloned:?}, attach {attached:?}");

    assert_eq!(read_u64(&memory, data), ROUNDS);
    assert_eq!(read_u64(&memory, data + 8), ROUNDS);
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_exists(pid, tid) {
        assert!(
            Instant::now() < deadline,
            "the second stub thread must be gone"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Its slot is free again: the next thread gets it.
    assert_eq!(aspace.lock().unwrap().stub.slots().free, vec![1]);
    aspace.lock().unwrap().unmap(DATA + 0x1000, 4096).unwrap();
    count(&mut ctx, DATA, 1);
    assert_eq!(read_u64(&memory, data), ROUNDS + 1);
    assert!(aspace.lock().unwrap().cpu_time().unwrap() >= ctx.cpu_time().unwrap());

    drop(ctx);
    drop(aspace);
    assert_process_gone(pid, started);
}

/// The host thread that created the address space ends (its task exited) while a thread
/// attached elsewhere goes on: the stub lives on.
#[test]
fn first_thread_and_its_host_thread_end_first() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (aspace, seed, pid) = std::thread::spawn({
        let memory = memory.clone();
        move || {
            let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
            aspace
                .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
                .unwrap();
            aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
            count(&mut ctx, DATA, 1);
            let seed = aspace.new_seed().unwrap();
            let pid = aspace.stub.pid();
            drop(ctx);
            (aspace, seed, pid)
        }
    })
    .join()
    .unwrap();
    let started = start_time(pid);
    let mut aspace = aspace;
    let mut ctx = Box::new(seed).attach().unwrap();
    aspace
        .map(DATA + 0x1000, 4096, RW, page(&memory, 0, &[]))
        .unwrap();
    count(&mut *ctx, DATA + 0x1000, 3);
    count(&mut *ctx, DATA, 1);
    drop(aspace);
    count(&mut *ctx, DATA, 1);
    drop(ctx);
    assert_process_gone(pid, started);
}

/// The stub is killed from outside while two host threads drive it: their contexts fail
/// and are dropped without hanging, in either order, and nothing is left.
#[test]
fn killed_stub_is_cleaned_up() {
    for leader_first in [false, true] {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
        aspace
            .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
            .unwrap();
        aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
        let pid = aspace.stub.pid();
        let started = start_time(pid);
        let seed = aspace.new_seed().unwrap();
        let (attached_tx, attached_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let second = std::thread::spawn(move || {
            let mut ctx = Box::new(seed).attach().unwrap();
            count(&mut *ctx, DATA + 8, 1);
            attached_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            assert!(ctx.switch(&mut user_regs(CODE)).is_err());
        });
        attached_rx.recv().unwrap();
        // SAFETY: killing our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let t = Instant::now();
        if leader_first {
            drop(ctx);
            go_tx.send(()).unwrap();
            second.join().unwrap();
        } else {
            go_tx.send(()).unwrap();
            second.join().unwrap();
            assert!(ctx.switch(&mut user_regs(CODE)).is_err());
            drop(ctx);
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        drop(aspace);
        assert_process_gone(pid, started);
    }
}

/// A seed dropped without being attached ends its thread; the thread waits for its first
/// switch with every signal blocked but none, and the slot is reused.
#[test]
fn unattached_seed_ends_its_thread() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    aspace
        .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
        .unwrap();
    aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
    let pid = aspace.stub.pid();
    let seed = aspace.new_seed().unwrap();
    assert_eq!(tasks(pid), 2);
    drop(seed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tasks(pid) != 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    count(&mut ctx, DATA, 2);
    let seed = aspace.new_seed().unwrap();
    assert_eq!(seed.channel.as_ref().unwrap().index, 1, "slot 1 reused");
}

/// A thread spinning in application code is kicked out by another host thread;
/// interrupting it while stopped or after its end is harmless.
#[test]
fn interrupter_stops_a_spinning_thread() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().new_address_space(&memory).unwrap();
    // `jmp .` at CODE, `mov $39, %eax; syscall` at CODE + 0x10.
    let mut code = vec![0xeb, 0xfe];
    code.resize(0x10, 0x90);
    code.extend_from_slice(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05]);
    aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
    let interrupter = ctx.interrupter();
    let cpu_before = ctx.cpu_time().unwrap();

    let mut round_trips = Vec::new();
    for _ in 0..5 {
        let sent = Arc::new(Mutex::new(None));
        let kicker = std::thread::spawn({
            let (interrupter, sent) = (interrupter.clone(), sent.clone());
            move || {
                std::thread::sleep(Duration::from_millis(20));
                *sent.lock().unwrap() = Some(Instant::now());
                interrupter.interrupt();
            }
        });
        let mut regs = user_regs(CODE);
        assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Interrupted);
        let back = Instant::now();
        kicker.join().unwrap();
        assert_eq!(regs.rip, CODE, "still in the loop");
        round_trips.push(back - sent.lock().unwrap().unwrap());
    }
    eprintln!("interrupt round trips: {round_trips:?}");
    assert!(ctx.cpu_time().unwrap() > cpu_before);

    // Interrupted while stopped: at most one spurious interrupt, then on as usual.
    interrupter.interrupt();
    interrupter.interrupt();
    let mut spurious = 0;
    let mut regs = user_regs(CODE + 0x10);
    loop {
        match ctx.switch(&mut regs).unwrap() {
            Trap::Interrupted => spurious += 1,
            Trap::Syscall => break,
            trap @ Trap::Fault { .. } => panic!("{trap:?}"),
        }
    }
    assert!(spurious <= 1);
    assert_eq!(regs.orig_rax, 39);

    drop(ctx);
    interrupter.interrupt();
    drop(aspace);
    interrupter.interrupt();
}

/// Where slot `index` starts in the stub.
fn slot(index: u64) -> u64 {
    STUB_AREA_BASE + index * STUB_SLOT_SIZE
}

/// `movabs $value, %rax; mov %rax, (addr)` as bytes.
fn store(addr: u64, value: u64) -> Vec<u8> {
    let mut code = vec![0x48, 0xb8];
    code.extend_from_slice(&value.to_ne_bytes());
    code.extend_from_slice(&[0x48, 0xa3]); // movabs %rax, moffs64
    code.extend_from_slice(&addr.to_ne_bytes());
    code
}

/// Application code that scribbles on its slot and fakes a trap: the kernel refuses what it
/// reads (an error, not a panic) and the sandbox goes on without that process.
#[test]
fn forged_traps_are_errors() {
    let forge = |what: &[(u64, u64)], state: u32| {
        let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
        let mut code = Vec::new();
        for &(at, v) in what {
            code.extend_from_slice(&store(slot(0) + at, v));
        }
        // movl $state, (slot + H_STATE) via rax, then `jmp .`
        code.extend_from_slice(&store(slot(0) + H_STATE, u64::from(state)));
        code.extend_from_slice(&[0xeb, 0xfe]);
        aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
        let pid = aspace.stub.pid();
        let started = start_time(pid);
        let r = ctx.switch(&mut user_regs(CODE));
        drop(ctx);
        drop(aspace);
        assert_process_gone(pid, started);
        r
    };
    // A frame outside the slot's stack.
    for uc in [
        0,
        slot(0),
        slot(0) + STUB_SLOT_SIZE - 8,
        slot(1) + STACK_OFF,
        u64::MAX,
    ] {
        let r = forge(&[(H_UC, uc)], ST_TRAP);
        assert!(
            matches!(r, Err(PlatformError::Protocol { .. })),
            "{uc:#x}: {r:?}"
        );
    }
    // A frame in the stack: garbage registers are only registers.
    let r = forge(
        &[(H_UC, slot(0) + STACK_OFF), (H_SIGNO, 31 | (1 << 32))],
        ST_TRAP,
    );
    assert!(matches!(r, Ok(Trap::Syscall)), "{r:?}");
    // A command result nobody asked for.
    let r = forge(&[], ST_DONE);
    assert!(matches!(r, Err(PlatformError::Protocol { .. })), "{r:?}");
    // An FP area outside the slot.
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    let uc = slot(0) + STACK_OFF;
    let mut code = store(uc + UC_FPREGS, 0x40_0000);
    code.extend_from_slice(&store(slot(0) + H_UC, uc));
    code.extend_from_slice(&store(slot(0) + H_SIGNO, 31 | (1 << 32)));
    code.extend_from_slice(&store(slot(0) + H_STATE, u64::from(ST_TRAP)));
    code.extend_from_slice(&[0xeb, 0xfe]);
    aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
    assert_eq!(ctx.switch(&mut user_regs(CODE)).unwrap(), Trap::Syscall);
    assert!(matches!(
        ctx.fp_state(),
        Err(PlatformError::Protocol { .. })
    ));
    assert!(matches!(
        ctx.set_fp_state(&[0; 1024]),
        Err(PlatformError::Protocol { .. })
    ));
}

/// Application code that jumps into the stub's page to make a system call of its own
/// gains nothing: a call the filter does not allow kills the stub process.
#[test]
fn a_jump_into_the_stub_is_killed() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    // Find a `syscall` instruction in the stub's page (as an attacker would: it is readable).
    let text = &stub_code()[..];
    let at = text.windows(2).position(|w| w == [0x0f, 0x05]).unwrap() as u64;
    // `mov $39, %eax; movabs $target, %rcx; jmp *%rcx`
    let mut code = vec![0xb8, 39, 0, 0, 0, 0x48, 0xb9];
    code.extend_from_slice(&(STUB_BASE + at).to_ne_bytes());
    code.extend_from_slice(&[0xff, 0xe1]);
    aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
    let pid = aspace.stub.pid();
    let err = ctx.switch(&mut user_regs(CODE)).unwrap_err();
    assert!(
        matches!(&err, PlatformError::StubDied { pid: p, how } if *p == pid && how.contains("SIGSYS")),
        "{err}"
    );
}

/// The stub's code as it is copied into every stub.
fn stub_code() -> Vec<u8> {
    let len = stub::code_len() as usize;
    // SAFETY: the stub's code is `len` bytes of our own text, readable.
    unsafe { std::slice::from_raw_parts(stub::entry() as *const u8, len).to_vec() }
}

/// How long a round trip takes (`cargo test -p moat-platform --release round_trip -- --ignored
/// --nocapture`), with the wait counters.
#[test]
#[ignore = "a measurement"]
fn round_trip() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    // `mov $39, %eax; syscall; jmp CODE`
    aspace
        .map(
            CODE,
            4096,
            RX,
            page(&memory, 0, &[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]),
        )
        .unwrap();
    let mut regs = user_regs(CODE);
    for _ in 0..3 {
        let before = stats();
        let n = 100_000;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
        }
        let ns = t.elapsed().as_nanos() / n;
        let after = stats();
        eprintln!(
            "{ns} ns per round trip; kernel spins {} sleeps {}",
            after.kernel_spins - before.kernel_spins,
            after.kernel_sleeps - before.kernel_sleeps
        );
    }
    drop(ctx);
    eprintln!("{:?}", stats());
}

/// What a thread costs (`cargo test -p moat-platform --release thread_cost -- --ignored
/// --nocapture`): start, attach on another host thread, one round trip, end.
#[test]
#[ignore = "a measurement"]
fn thread_cost() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    aspace
        .map(CODE, 4096, RX, page(&memory, 0, COUNTER))
        .unwrap();
    aspace.map(DATA, 4096, RW, page(&memory, 0, &[])).unwrap();
    count(&mut ctx, DATA, 1);
    let (mut seeding, mut attaching, mut first, mut ending) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let n = 300u32;
    for _ in 0..n {
        let t = Instant::now();
        let seed = aspace.new_seed().unwrap();
        seeding += t.elapsed();
        let (a, f, e) = std::thread::spawn(move || {
            let t = Instant::now();
            let mut ctx = Box::new(seed).attach().unwrap();
            let a = t.elapsed();
            let t = Instant::now();
            count(&mut *ctx, DATA + 8, 1);
            let f = t.elapsed();
            let t = Instant::now();
            drop(ctx);
            (a, f, t.elapsed())
        })
        .join()
        .unwrap();
        attaching += a;
        first += f;
        ending += e;
    }
    eprintln!(
        "per thread: new_thread {:?}, attach {:?}, first round trip {:?}, end {:?}",
        seeding / n,
        attaching / n,
        first / n,
        ending / n
    );
}

/// Every way the platform can be tuned traps and returns the same: with or without the
/// `rdfsbase` family (older hosts), with seccomp alone or Syscall User Dispatch in front,
/// pinned or free.
#[test]
fn every_tuning_works() {
    let base = Tuning::from_env();
    for fsgsbase in [false, base.fsgsbase] {
        for dispatch in [false, base.dispatch] {
            for pinning in [Pinning::Always, Pinning::Never, Pinning::Adaptive] {
                let tuning = Tuning {
                    fsgsbase,
                    dispatch,
                    pinning,
                    max_spin: if pinning == Pinning::Always {
                        0
                    } else {
                        base.max_spin
                    },
                    ..base
                };
                let what = format!("fsgsbase {fsgsbase}, dispatch {dispatch}, {pinning:?}");
                let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
                let (mut aspace, mut ctx) = SystrapPlatform { tuning }.spawn(&memory).unwrap();
                // `mov %fs:8, %rax; mov $39, %ecx... `: `mov %fs:8, %rbx; mov $39, %eax;
                // syscall; ud2`
                let code = [
                    0x64, 0x48, 0x8b, 0x1c, 0x25, 8, 0, 0, 0, // mov %fs:8, %rbx
                    0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x0f, 0x0b,
                ];
                aspace.map(CODE, 4096, RX, page(&memory, 0, &code)).unwrap();
                let data = page(&memory, 8, &0xabcd_u64.to_ne_bytes());
                aspace.map(DATA, 4096, RW, data).unwrap();
                for round in 0..200 {
                    let mut regs = user_regs(CODE);
                    regs.fs_base = DATA;
                    regs.gs_base = 0x1234_5000 + round;
                    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall, "{what}");
                    assert_eq!((regs.orig_rax, regs.rbx), (39, 0xabcd), "{what}");
                    assert_eq!((regs.fs_base, regs.gs_base), (DATA, 0x1234_5000 + round));
                    assert!(matches!(
                        ctx.switch(&mut regs).unwrap(),
                        Trap::Fault {
                            signo: libc::SIGILL,
                            ..
                        }
                    ));
                }
                let seed = aspace.fork().unwrap().unwrap();
                let child = std::thread::spawn(move || {
                    let (_copy, mut ctx) = seed.attach().unwrap();
                    let mut regs = user_regs(CODE);
                    regs.fs_base = DATA;
                    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
                    regs.rbx
                });
                assert_eq!(child.join().unwrap(), 0xabcd, "{what}");
            }
        }
    }
}

/// Map a `[moat]` area by hand with one patched site at `CODE` (what the kernel does in
/// `mm/patch.rs`), followed by `tail`.
fn map_patched_site(aspace: &mut SystrapAddressSpace, memory: &MemoryFile, nr: u32, tail: &[u8]) {
    use super::patch;
    let tramp = patch::trampoline_address(0);
    aspace
        .map(
            patch::AREA_BASE,
            4096,
            RX,
            page(memory, 0, &tramp.to_le_bytes()),
        )
        .unwrap();
    let entry = patch::entry_address().to_le_bytes();
    aspace
        .map(patch::ENTRY_SLOT, 4096, RX, page(memory, 0, &entry))
        .unwrap();
    let t = patch::trampoline(nr, CODE + patch::SITE_LEN);
    aspace
        .map(patch::TRAMPOLINES, 4096, RX, page(memory, 0, &t))
        .unwrap();
    let mut code = patch::patched_site(0).to_vec();
    code.extend_from_slice(tail);
    aspace.map(CODE, 4096, RX, page(memory, 0, &code)).unwrap();
}

/// A patched site traps without a signal: the kernel sees the call's number, the return
/// address after the site (also in %rcx), every other register as the application left it,
/// and what it writes back is what the application gets; the FP state is saved on demand.
#[test]
fn patched_site_traps_without_a_signal() {
    if !platform().tuning.patch {
        eprintln!("SKIP: patching is off on this host");
        return;
    }
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    // The site, then `mov %rax, %rbx; ud2`.
    map_patched_site(&mut aspace, &memory, 39, &[0x48, 0x89, 0xc3, 0x0f, 0x0b]);
    let mut regs = user_regs(CODE);
    (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9) = (1, 2, 3, 4, 5, 6);
    (regs.r12, regs.r15, regs.rbp, regs.rsp) = (12, 15, 0xbb, 0x1234_5000);
    regs.eflags = 0x203; // CF set
    let before = stats().patched;
    assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
    assert!(
        stats().patched > before,
        "the trap did not come through the patched path"
    );
    assert_eq!(regs.orig_rax, 39);
    assert_eq!(regs.rip, CODE + 7);
    assert_eq!(regs.rcx, CODE + 7);
    assert_eq!(regs.eflags & 0xff, 0x03);
    assert_eq!(regs.r11, regs.eflags);
    assert_eq!(
        (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9),
        (1, 2, 3, 4, 5, 6)
    );
    assert_eq!(
        (regs.r12, regs.r15, regs.rbp, regs.rsp),
        (12, 15, 0xbb, 0x1234_5000)
    );
    assert_eq!(regs.gs_base, 0, "the slot's GS base is shown as 0");
    // The FP state, saved on demand in a signal frame's layout, and written back.
    let mut fp = ctx.fp_state().unwrap();
    assert!(fp.len() >= 512);
    fp[24..28].copy_from_slice(&0x1f80u32.to_ne_bytes());
    ctx.set_fp_state(&fp).unwrap();
    regs.rax = 77;
    match ctx.switch(&mut regs).unwrap() {
        Trap::Fault { signo, .. } => assert_eq!(signo, libc::SIGILL),
        t => panic!("{t:?}"),
    }
    assert_eq!(regs.rbx, 77, "the result did not reach the application");
    assert_eq!(regs.rip, CODE + 10);
}

/// How long a round trip through a patched site takes (`cargo test -p moat-platform --release
/// patched_round_trip -- --ignored --nocapture`), against `round_trip`'s signal.
#[test]
#[ignore = "a measurement"]
fn patched_round_trip() {
    let memory = Arc::new(MemoryFile::new(1 << 24).unwrap());
    let (mut aspace, mut ctx) = platform().spawn(&memory).unwrap();
    // The site, then `jmp CODE`.
    map_patched_site(&mut aspace, &memory, 39, &[0xeb, 0xf7]);
    let mut regs = user_regs(CODE);
    for _ in 0..3 {
        let before = stats();
        let n = 100_000;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(ctx.switch(&mut regs).unwrap(), Trap::Syscall);
        }
        let ns = t.elapsed().as_nanos() / n;
        let after = stats();
        eprintln!(
            "{ns} ns per patched round trip; kernel spins {} sleeps {}, patched {}",
            after.kernel_spins - before.kernel_spins,
            after.kernel_sleeps - before.kernel_sleeps,
            after.patched - before.patched
        );
    }
}
