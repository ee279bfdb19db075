//! Whether the pages are really locked: `VmLck` of this process (its own
//! test binary, one test, so no other test locks or unlocks meanwhile).

#![cfg(target_os = "linux")]

mod common;

use common::vm_locked_kb;
use hybrid_secmem::{pool_stats, LockedBytes};

/// The soft `RLIMIT_MEMLOCK` in bytes (`None`: unlimited).
fn memlock_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .unwrap_or_else(|| panic!("no locked-memory limit in /proc/self/limits"));
    let soft = line.split_whitespace().nth(3).unwrap_or("unlimited");
    soft.parse().ok()
}

#[test]
fn small_values_share_a_locked_pool_page_larger_ones_lock_their_own() {
    if memlock_limit().is_some_and(|l| l < 64 * 1024) {
        // Old kernels' 64 KiB default leaves too little for a clear count;
        // the type still works, unlocked.
        eprintln!("RLIMIT_MEMLOCK below 64 KiB: not counting locked pages");
        return;
    }
    let before = vm_locked_kb();
    let keys: Vec<LockedBytes<32>> = (0..3u8)
        .map(|i| LockedBytes::from_slice(&[i; 32]))
        .collect();
    assert!(keys.iter().all(LockedBytes::is_locked), "{keys:?}");
    // The three share the pool's one page.
    let page_kb = pool_stats().page_bytes as u64 / 1024;
    assert!(page_kb >= 4, "{:?}", pool_stats());
    let with_keys = vm_locked_kb();
    assert_eq!(with_keys, before + page_kb, "VmLck, before {before} kB");
    // Dropped (and wiped), the page stays locked as the pool's spare, and
    // the next keys use it again.
    assert!(keys.iter().all(|k| k.bytes()[1] == k.bytes()[0]));
    drop(keys);
    assert_eq!(vm_locked_kb(), with_keys);
    let again: Vec<LockedBytes<32>> = (0..3u8)
        .map(|i| LockedBytes::from_slice(&[i; 32]))
        .collect();
    assert!(again.iter().all(LockedBytes::is_locked));
    assert_eq!(vm_locked_kb(), with_keys);
    assert_eq!(pool_stats().pages_mapped, 1, "{:?}", pool_stats());
    // A value above a slot's size locks a page of its own until dropped.
    let big = LockedBytes::<4096>::zeroed();
    assert!(big.is_locked());
    let with_big = vm_locked_kb();
    assert!(with_big >= with_keys + 4, "VmLck {with_big} kB");
    drop(big);
    assert_eq!(vm_locked_kb(), with_keys);
}
