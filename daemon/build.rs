//! Links brummerd's code in the order of `layout.ld`: the functions a daemon runs side by
//! side, ahead of the rest. The kernel maps code in chunks around each fault (64 KiB, or a
//! whole large page-cache folio), so scattered code made nearly all of the 5 MB resident;
//! `bench/layout.py` explains and regenerates the file (docs/performance.md, "Memory").
//!
//! `BRUMMER_LAYOUT=profile` links with `layout-profile.ld` instead (one function per page,
//! for `bench/layout.py`); `BRUMMER_LAYOUT=off` leaves the order to the linker (for a linker
//! without linker-script support, such as mold). Only release builds are affected: the
//! order is meaningless without optimisation and the patterns slow a debug link.

fn main() {
    println!("cargo:rerun-if-env-changed=BRUMMER_LAYOUT");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let script = match std::env::var("BRUMMER_LAYOUT").as_deref() {
        Ok("off") => return,
        Ok("profile") => "layout-profile.ld",
        _ => "layout.ld",
    };
    if os != "linux" || profile != "release" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed={script}");
    // Two arguments (`-T`, path) rather than `-Wl,-T,path`, which would split a path
    // holding a comma.
    println!("cargo:rustc-link-arg-bin=brummerd=-T");
    println!("cargo:rustc-link-arg-bin=brummerd={dir}/{script}");
}
