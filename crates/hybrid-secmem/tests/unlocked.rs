//! A pool page whose `mlock` is refused: its values say they are not
//! locked (also values made after locking is allowed again, while that
//! page still has room), the page is not kept once free, and the next page
//! is locked. Locking is refused by lowering `RLIMIT_MEMLOCK` to 0 and, when
//! the test runs as root, dropping `CAP_IPC_LOCK` (which overrides the
//! limit) from this thread's effective set. Its own binary, one test: the
//! limit is the whole process's.

#![cfg(target_os = "linux")]
// Two system calls the `libc` crate has no safe form of.
#![allow(unsafe_code)]

mod common;

use common::vm_locked_kb;
use hybrid_secmem::{pool_stats, LockedBytes};

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;
const CAP_IPC_LOCK: u32 = 14;

/// Sets whether this thread may lock beyond the limit (`CAP_IPC_LOCK` in
/// its effective set; only if permitted); whether the call worked.
fn cap_ipc_lock(on: bool) -> bool {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0, // this thread
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a version-3 header and the two data structs
    // that version writes, both live and writable for the call.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return false;
    }
    if on {
        data[0].effective |= data[0].permitted & (1 << CAP_IPC_LOCK);
    } else {
        data[0].effective &= !(1 << CAP_IPC_LOCK);
    }
    // SAFETY: capset(2) with the same header and data, read for the call;
    // it changes only this thread's capabilities.
    unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0 }
}

/// Sets the soft `RLIMIT_MEMLOCK` (`None`: the hard limit); the old one.
fn memlock_soft(soft: Option<libc::rlim_t>) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a live `rlimit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft.unwrap_or(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim), 0);
        old
    }
}

#[test]
fn a_pool_page_left_unlocked_says_so_and_is_not_kept() {
    let before = vm_locked_kb();
    let old = memlock_soft(Some(0));
    let capped = cap_ipc_lock(false);
    // A value of its own, to see that locking is refused here now.
    if LockedBytes::<4096>::zeroed().is_locked() {
        memlock_soft(Some(old));
        eprintln!("mlock still allowed (capset worked: {capped}): not testing");
        return;
    }
    let first = LockedBytes::<32>::from_slice(&[1; 32]);
    assert!(!first.is_locked());
    let s = pool_stats();
    assert_eq!((s.pages, s.locked_pages), (1, 0), "{s:?}");
    assert_eq!(vm_locked_kb(), before);
    // Locking allowed again: the unlocked page still has room, and a value
    // there says it is not locked.
    memlock_soft(Some(old));
    cap_ipc_lock(true);
    let second = LockedBytes::<32>::from_slice(&[2; 32]);
    assert!(!second.is_locked());
    assert_eq!(pool_stats().pages, 1);
    assert_eq!((first.bytes(), second.bytes()), (&[1; 32], &[2; 32]));
    // Free, the unlocked page is unmapped, and the next one is locked.
    drop((first, second));
    assert_eq!(pool_stats().pages, 0, "{:?}", pool_stats());
    let third = LockedBytes::<32>::zeroed();
    assert!(third.is_locked());
    let s = pool_stats();
    assert_eq!(
        (s.pages, s.locked_pages, s.pages_mapped),
        (1, 1, 2),
        "{s:?}"
    );
    assert_eq!(vm_locked_kb(), before + s.page_bytes as u64 / 1024);
}
