//! hybrid-trim: gives heap memory that the program has freed back to the
//! kernel, for servers whose load comes in bursts.
//!
//! **Why**: glibc's allocator keeps freed small blocks in its arenas and
//! returns pages to the kernel only from the top of a heap, so after a burst
//! of ten thousand tunnels, all closed, the tunnel server still held 130 MB
//! (15× its idle size) although almost nothing was allocated any more.
//! `malloc_trim(0)` (glibc ≥ 2.8) releases every free page of every arena;
//! called once on the closed server it brought the resident size back to
//! idle + 10 % (docs/performance.md has the measurement). An allocator
//! swap (mimalloc) was measured too and kept 5.6× idle.
//!
//! **Owns** that one call, behind a safe function, so every other crate
//! keeps `#![forbid(unsafe_code)]`. **Does not own** the policy of when to
//! call it (the tunnel server decides: after its open connections fall far
//! below their peak).
//!
//! On anything but Linux with glibc the function does nothing.

/// Asks the allocator to return free memory to the kernel. Returns whether
/// any was returned. Takes the allocator's locks while it walks the heap (a
/// few milliseconds for a heap of a hundred megabytes): call it from a
/// blocking thread, after load has dropped, not per request.
pub fn release_free_memory() -> bool {
    imp::release()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    #[allow(unsafe_code)]
    pub(super) fn release() -> bool {
        // SAFETY: malloc_trim(3) takes no pointer and only walks the
        // allocator's own state under the allocator's own locks; glibc
        // documents it as MT-Safe. Pad 0 keeps no extra slack at the top.
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn release() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn releases_after_a_burst() {
        // Many small blocks, freed out of order, leave free pages behind.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 2000]).collect();
        let keep: Vec<Vec<u8>> = blocks.into_iter().step_by(1000).collect();
        let released = super::release_free_memory();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "glibc had free pages to return");
        }
        drop(keep);
    }
}
