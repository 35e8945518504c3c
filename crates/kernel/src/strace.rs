//! strace-style tracing of system calls (`moat do --strace`).

use std::fmt::Write as _;

use moat_abi::Errno;

use crate::mm::MemoryManager;

/// How to print one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Signed decimal (fds, counts that may be -1).
    Int,
    /// Unsigned decimal (sizes).
    Uint,
    /// Hexadecimal (flags, masks).
    Hex,
    /// A pointer (`NULL` or hex).
    Ptr,
    /// A NUL-terminated string.
    Str,
    /// A buffer the application passes in; its length is the next argument.
    InBuf,
    /// A buffer the kernel fills; its length is the return value.
    OutBuf,
}

const SHOWN_BYTES: usize = 32;

fn quote(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from("\"");
    for &b in bytes.iter().take(SHOWN_BYTES) {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    if truncated || bytes.len() > SHOWN_BYTES {
        s.push_str("...");
    }
    s
}

fn buffer(mm: &mut MemoryManager, addr: u64, len: u64) -> String {
    let n = len.min(SHOWN_BYTES as u64) as usize;
    let mut buf = vec![0u8; n];
    match mm.read_bytes(addr, &mut buf) {
        Ok(()) => quote(&buf, len > n as u64),
        Err(_) => format!("{addr:#x}"),
    }
}

/// Calls whose result is an address, printed in hex.
fn returns_address(name: &str) -> bool {
    matches!(name, "brk" | "mmap" | "mremap")
}

/// Format one finished system call.
pub fn format(
    mm: &mut MemoryManager,
    tid: i32,
    name: &str,
    kinds: &[Arg],
    args: &[u64; 6],
    result: Result<u64, Errno>,
) -> String {
    let mut line = format!("[{tid}] {name}(");
    for (i, kind) in kinds.iter().enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        let a = args[i];
        let text = match kind {
            Arg::Int => (a as i64 as i32).to_string(),
            Arg::Uint => a.to_string(),
            Arg::Hex => format!("{a:#x}"),
            Arg::Ptr if a == 0 => "NULL".to_string(),
            Arg::Ptr => format!("{a:#x}"),
            Arg::Str => match mm.read_cstring(a, 256) {
                Ok(s) => quote(&s, false),
                Err(_) => format!("{a:#x}"),
            },
            Arg::InBuf => buffer(mm, a, args.get(i + 1).copied().unwrap_or(0)),
            Arg::OutBuf => match result {
                Ok(n) => buffer(mm, a, n),
                Err(_) => format!("{a:#x}"),
            },
        };
        line.push_str(&text);
    }
    line.push_str(") = ");
    match result {
        Ok(v) if v > 0xffff_ffff || (returns_address(name) && v != 0) => {
            let _ = write!(line, "{v:#x}");
        }
        Ok(v) => {
            let _ = write!(line, "{v}");
        }
        Err(e) => {
            let text = std::io::Error::from_raw_os_error(e.0).to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            let _ = write!(line, "-1 {e} ({text})");
        }
    }
    line
}
