//! Builds Moat's vDSO (vdso/vdso.c) into a small shared object that the kernel embeds and
//! maps into every program (src/vdso.rs). Needs a C compiler (`cc`, or `$CC`), as the
//! test suite does.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("vdso.so");
    for f in ["vdso/vdso.c", "vdso/vdso.h", "vdso/vdso.lds"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .current_dir(dir.join("vdso"))
        .args([
            "-O2",
            "-fPIC",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-builtin",
            "-fcf-protection=none",
            "-shared",
            "-Wall",
            "-Werror",
            "-Wl,-T,vdso.lds",
            "-Wl,--hash-style=both",
            "-Wl,-soname=linux-vdso.so.1",
            "-Wl,--eh-frame-hdr",
            "-Wl,-Bsymbolic",
            "-Wl,--no-undefined",
            "-Wl,--build-id=none",
            "-o",
        ])
        .arg(&out)
        .arg("vdso.c")
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}` for the vDSO: {e}"));
    assert!(status.success(), "building the vDSO with `{cc}` failed");
}
