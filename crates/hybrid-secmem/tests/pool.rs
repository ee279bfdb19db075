//! The pool of small slots: a dropped value's slot is wiped and reused, the
//! pool keeps to one page when values come and go, and values made and
//! dropped on several threads at once stay intact. The tests count the
//! pool's pages and slots, so they run one at a time (`serial`) in this
//! binary of their own.

#![cfg(target_os = "linux")]

use hybrid_secmem::{pool_stats, LockedBytes};
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds off the other tests of this binary (a failed one's poison is no
/// reason to fail the next).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn address<const N: usize>(k: &LockedBytes<N>) -> usize {
    k.bytes().as_ptr() as usize
}

#[test]
fn a_dropped_slot_is_wiped_and_handed_out_again() {
    let _g = serial();
    let k = LockedBytes::<32>::from_slice(&[0xA5; 32]);
    let at = address(&k);
    assert_eq!(at % 64, 0, "slots are 64-byte aligned");
    assert!(pool_stats().slots_in_use >= 1);
    drop(k);
    // The same slot again (the top of its page's free list), and zero: the
    // pool does not clear a slot when it hands it out, so this is the wipe
    // done when the value above was dropped.
    let z = LockedBytes::<32>::zeroed();
    assert_eq!(address(&z), at);
    assert_eq!(z.bytes(), &[0; 32]);
    drop(z);
    // A value of another size in the same slot: all 64 bytes zero.
    let mut w = LockedBytes::<64>::zeroed();
    assert_eq!(address(&w), at);
    assert_eq!(w.bytes(), &[0; 64]);
    w.bytes_mut().fill(0x5A);
    drop(w);
    let z = LockedBytes::<64>::zeroed();
    assert_eq!(address(&z), at);
    assert_eq!(z.bytes(), &[0; 64]);
    assert_eq!(pool_stats().slots_in_use, 1);
}

#[test]
fn values_made_and_dropped_over_and_over_keep_to_one_page() {
    let _g = serial();
    drop(LockedBytes::<32>::zeroed()); // the pool has its page now
    let before = pool_stats();
    assert_eq!(before.pages, 1, "{before:?}");
    for i in 0..10_000u32 {
        // A request's worth: a key, a key derived from it, a scratch key.
        let a = LockedBytes::<32>::from_slice(&[i as u8; 32]);
        let b = a.clone();
        let c = LockedBytes::<16>::zeroed();
        assert_eq!(b.bytes(), a.bytes());
        assert_eq!(c.bytes(), &[0; 16]);
        assert_eq!(pool_stats().slots_in_use, 3);
    }
    let after = pool_stats();
    assert_eq!(after.pages, 1, "{after:?}");
    assert_eq!(after.pages_mapped, before.pages_mapped, "{after:?}");
    assert_eq!(after.slots_in_use, 0, "{after:?}");
}

#[test]
fn a_full_page_grows_the_pool_and_the_extra_page_goes_once_free() {
    let _g = serial();
    drop(LockedBytes::<32>::zeroed());
    let s = pool_stats();
    let per_page = s.page_bytes / s.slot_bytes;
    assert!(per_page >= 64, "{s:?}");
    let keys: Vec<LockedBytes<32>> = (0..=per_page)
        .map(|i| LockedBytes::from_slice(&[i as u8; 32]))
        .collect();
    let full = pool_stats();
    assert_eq!(
        (full.pages, full.slots_in_use),
        (2, per_page + 1),
        "{full:?}"
    );
    // Each value has a slot of its own.
    let mut at: Vec<usize> = keys.iter().map(address).collect();
    at.sort_unstable();
    at.dedup();
    assert_eq!(at.len(), per_page + 1);
    assert!(at.windows(2).all(|w| w[1] - w[0] >= 64));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k.bytes(), &[i as u8; 32]);
    }
    drop(keys);
    // One free page is kept, the other unmapped.
    let after = pool_stats();
    assert_eq!((after.pages, after.slots_in_use), (1, 0), "{after:?}");
}

#[test]
fn larger_values_get_a_mapping_of_their_own() {
    let _g = serial();
    let before = pool_stats();
    let k = LockedBytes::<65>::from_slice(&[9; 65]);
    let big = LockedBytes::<5000>::zeroed();
    assert_eq!(pool_stats().slots_in_use, before.slots_in_use);
    assert_eq!(k.bytes(), &[9; 65]);
    assert!(big.bytes().iter().all(|&b| b == 0));
    // Page-aligned (4 KiB at least): a mapping, not a slot.
    assert_eq!(address(&k) % 4096, 0);
    assert_eq!(address(&big) % 4096, 0);
}

#[test]
fn values_made_and_dropped_on_several_threads_stay_intact() {
    let _g = serial();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut held: Vec<(LockedBytes<32>, [u8; 32])> = Vec::new();
                for i in 0..3000u32 {
                    let mut pattern = [t; 32];
                    pattern[1..5].copy_from_slice(&i.to_le_bytes());
                    let mut k = LockedBytes::<32>::zeroed();
                    assert_eq!(k.bytes(), &[0; 32], "a slot handed out unwiped");
                    k.bytes_mut().copy_from_slice(&pattern);
                    held.push((k, pattern));
                    // Hold up to 8 at once; drop them in an order that
                    // varies, checking each first.
                    if held.len() > 8 {
                        let (k, p) = held.swap_remove(i as usize % held.len());
                        assert_eq!(k.bytes(), &p);
                        drop(k);
                    }
                    // Some cross to another thread and are dropped there.
                    if i % 7 == 0 {
                        if let Some((k, p)) = held.pop() {
                            let ok = std::thread::spawn(move || k.bytes() == &p).join();
                            assert!(matches!(ok, Ok(true)));
                        }
                    }
                }
                held.iter().all(|(k, p)| k.bytes() == p)
            })
        })
        .collect();
    for t in threads {
        assert!(matches!(t.join(), Ok(true)));
    }
    let after = pool_stats();
    assert_eq!(after.slots_in_use, 0, "{after:?}");
    assert!(after.pages <= 1, "{after:?}");
}
