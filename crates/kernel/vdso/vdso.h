/* The data page Moat's kernel keeps current for its vDSO, one page below the vDSO's ELF
 * header. Its layout is mirrored by `VvarPage` in crates/kernel/src/vdso.rs. */
#ifndef MOAT_VDSO_H
#define MOAT_VDSO_H
#include <stdint.h>

struct moat_vvar {
    /* A sequence lock: odd while the kernel rewrites what follows. */
    uint32_t seq;
    /* 0 until the kernel has measured the TSC: every call then goes to the kernel. */
    uint32_t ready;
    /* The clocks are a line through (tsc_base, *_ns) with slope mult / 2^32 ns per tick. */
    uint64_t tsc_base;
    uint64_t mult;
    uint64_t monotonic_ns;
    uint64_t realtime_ns;
    uint64_t boottime_ns;
};

#endif
