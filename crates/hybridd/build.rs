//! Lays out the daemon's hot code together (docs/performance.md, "Phone:
//! what the idle resident memory is").
//!
//! Most of `hybridd run`'s resident memory is the binary's own code pages,
//! and the kernel maps the 64 KiB around every code page it faults in
//! (fault-around), so resident code follows how widely the functions the
//! daemon runs are spread over the 11 MiB `.text`, not how much of it runs
//! (about 1 MiB). `hot-symbols.txt` lists those functions (made by
//! `crates/hybrid-bench/hot-symbols.sh` from a callgrind run of the phone
//! benchmark); LLD's `--symbol-ordering-file` places them first in `.text`.
//! A name the build no longer has (another compiler or dependency version)
//! is skipped silently: the layout only gets worse, never wrong.
//!
//! Only for the `hybridd` binary, and only where the linker is LLD: the
//! default for x86_64-unknown-linux-gnu since Rust 1.90 (GNU ld has no such
//! option). `HYBRIDD_SYMBOL_ORDER=0` turns it off (another linker).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=HYBRIDD_SYMBOL_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let off = std::env::var("HYBRIDD_SYMBOL_ORDER").is_ok_and(|v| v == "0");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let file = Path::new(&dir).join("hot-symbols.txt");
    if off || target != "x86_64-unknown-linux-gnu" || !file.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=hybridd=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    println!("cargo:rustc-link-arg-bin=hybridd=-Wl,--no-warn-symbol-ordering");
}
