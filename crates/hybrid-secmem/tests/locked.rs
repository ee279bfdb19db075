//! Whether the pages are really locked: `VmLck` of this process (its own
//! test binary, one test, so no other test locks or unlocks meanwhile).

#![cfg(target_os = "linux")]

use hybrid_secmem::LockedBytes;

/// `VmLck` of this process in kB.
fn vm_locked_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmLck in /proc/self/status"))
}

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
fn each_value_locks_a_page_of_its_own_until_dropped() {
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
    let page_kb = 4; // the smallest page size Linux has
    let three = vm_locked_kb();
    assert!(
        three >= before + 3 * page_kb,
        "VmLck {three} kB, before {before} kB"
    );
    // Dropping one unlocks only its own page.
    let mut keys = keys;
    let last = keys.pop();
    drop(last);
    let two = vm_locked_kb();
    assert!(
        two >= before + 2 * page_kb && two < three,
        "VmLck {two} kB, three keys {three} kB"
    );
    assert!(keys.iter().all(|k| k.bytes()[1] == k.bytes()[0]));
    drop(keys);
    assert_eq!(vm_locked_kb(), before);
}
