//! hybrid-secmem: a few bytes of key material in pages of their own that
//! are locked in RAM, left out of core dumps and wiped before they are
//! given back.
//!
//! **Why**: the vault key of a *vault session* (`verify = "fingerprint"`,
//! docs/threat-model.md) stays in the daemon's memory for up to
//! `vault_session_idle_secs`. Zeroizing on drop keeps it from lingering
//! after the session ends; while the session is open, the key must not be
//! written to swap (`mlock(2)`) nor into a core dump (`MADV_DONTDUMP`,
//! `madvise(2)`; the daemon is also non-dumpable as a whole). A value
//! inside a `Vec` or a struct moves and shares pages with everything else,
//! so it cannot be locked on its own: [`LockedBytes`] gets an anonymous
//! private mapping of its own (`mmap(2)`) and unmaps it on drop, which also
//! ends the lock, so no other data's pages are ever locked or unlocked by it.
//!
//! **Owns** those four system calls behind a safe type, so every other crate
//! keeps `#![forbid(unsafe_code)]`. **Does not own** what is secret or when
//! it is made (hybrid-vault's key types), nor the policy when locking is
//! refused: [`LockedBytes::is_locked`] says whether it held, and the caller
//! decides whether to warn.
//!
//! **Limits**: locking counts against `RLIMIT_MEMLOCK` (8 MiB by default on
//! current kernels and systemd; one page per value here). When the mapping
//! or the lock is refused the bytes are still kept and wiped, on the heap or
//! unlocked, and `is_locked` is `false`. Copies the compiler makes on the
//! stack while a key is built or used (a cipher's key schedule, for
//! instance) are outside this type. Linux only; elsewhere the bytes live in
//! a zeroized heap box.

use zeroize::Zeroize;

/// `N` bytes in a locked, never-dumped page of their own, zero-filled at
/// first, wiped on drop. Never printed.
pub struct LockedBytes<const N: usize> {
    mem: imp::Mem<N>,
}

impl<const N: usize> LockedBytes<N> {
    /// `N` zero bytes in fresh locked memory (see the crate's limits for
    /// when it is not locked).
    pub fn zeroed() -> Self {
        Self {
            mem: imp::Mem::new(),
        }
    }

    /// A locked copy of `bytes`. The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8; N]) -> Self {
        let mut s = Self::zeroed();
        s.bytes_mut().copy_from_slice(bytes);
        s
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8; N] {
        self.mem.bytes()
    }

    /// The bytes, to fill in place (so no unlocked copy is needed).
    pub fn bytes_mut(&mut self) -> &mut [u8; N] {
        self.mem.bytes_mut()
    }

    /// Whether the bytes are in memory that the kernel keeps resident
    /// (`mlock` held) and leaves out of core dumps.
    pub fn is_locked(&self) -> bool {
        self.mem.is_locked()
    }
}

impl<const N: usize> Clone for LockedBytes<N> {
    fn clone(&self) -> Self {
        Self::from_slice(self.bytes())
    }
}

impl<const N: usize> Drop for LockedBytes<N> {
    fn drop(&mut self) {
        // Wiped before the memory goes back (`imp::Mem`'s drop unmaps it).
        self.bytes_mut().zeroize();
    }
}

impl<const N: usize> core::fmt::Debug for LockedBytes<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LockedBytes<{N}>(.., locked: {})", self.is_locked())
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use core::ptr::NonNull;

    /// Where the bytes are: an anonymous mapping owned by this value, or —
    /// if the kernel refused the mapping — a heap box.
    pub(super) enum Mem<const N: usize> {
        Mapped { ptr: NonNull<[u8; N]>, locked: bool },
        Heap(Box<[u8; N]>),
    }

    // SAFETY: `Mapped` owns its mapping exclusively, like a `Box<[u8; N]>`
    // owns its allocation: nothing else holds the pointer, the memory is
    // reached only through `&self` / `&mut self`, and it is plain bytes
    // with no thread affinity. So moving it to, or sharing `&` of it with,
    // another thread is as sound as for `Box<[u8; N]>`.
    unsafe impl<const N: usize> Send for Mem<N> {}
    // SAFETY: as for `Send` above: `&Mem` gives only `&[u8; N]`.
    unsafe impl<const N: usize> Sync for Mem<N> {}

    impl<const N: usize> Mem<N> {
        pub(super) fn new() -> Self {
            // A zero-length mapping is an error (EINVAL); nothing to hide.
            if N == 0 {
                return Mem::Heap(Box::new([0u8; N]));
            }
            // SAFETY: a fresh private anonymous mapping at an address of
            // the kernel's choosing (`addr` null, no MAP_FIXED), so no
            // existing memory is touched; the result is checked below.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    N,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Mem::Heap(Box::new([0u8; N]));
            }
            let Some(ptr) = NonNull::new(p.cast::<[u8; N]>()) else {
                return Mem::Heap(Box::new([0u8; N]));
            };
            // SAFETY: `p..p+N` is the mapping made above, owned by us;
            // mlock and madvise change only how the kernel treats those
            // pages (the mapping is whole pages, N rounded up, and no
            // other data lives in them).
            let locked = unsafe {
                let locked = libc::mlock(p, N) == 0;
                // Best effort: a failure leaves the page dumpable, and the
                // daemon is non-dumpable anyway.
                let _ = libc::madvise(p, N, libc::MADV_DONTDUMP);
                locked
            };
            Mem::Mapped { ptr, locked }
        }

        pub(super) fn bytes(&self) -> &[u8; N] {
            match self {
                // SAFETY: the mapping is N readable, writable bytes,
                // zero-filled by the kernel (so initialised), aligned to a
                // page (≥ the alignment 1 of `[u8; N]`), alive as long as
                // `self`, and written only through `&mut self`.
                Mem::Mapped { ptr, .. } => unsafe { ptr.as_ref() },
                Mem::Heap(b) => b,
            }
        }

        pub(super) fn bytes_mut(&mut self) -> &mut [u8; N] {
            match self {
                // SAFETY: as in `bytes`; `&mut self` makes this the only
                // reference.
                Mem::Mapped { ptr, .. } => unsafe { ptr.as_mut() },
                Mem::Heap(b) => b,
            }
        }

        pub(super) fn is_locked(&self) -> bool {
            matches!(self, Mem::Mapped { locked: true, .. })
        }
    }

    impl<const N: usize> Drop for Mem<N> {
        fn drop(&mut self) {
            if let Mem::Mapped { ptr, .. } = self {
                // SAFETY: the mapping made in `new`, of the same length,
                // unmapped once (this is its owner's drop) and never used
                // after. Unmapping also ends the lock.
                let _ = unsafe { libc::munmap(ptr.as_ptr().cast(), N) };
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) struct Mem<const N: usize>(Box<[u8; N]>);

    impl<const N: usize> Mem<N> {
        pub(super) fn new() -> Self {
            Mem(Box::new([0u8; N]))
        }
        pub(super) fn bytes(&self) -> &[u8; N] {
            &self.0
        }
        pub(super) fn bytes_mut(&mut self) -> &mut [u8; N] {
            &mut self.0
        }
        pub(super) fn is_locked(&self) -> bool {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_copies_and_clones_its_bytes() {
        let k = LockedBytes::<32>::from_slice(&[7; 32]);
        assert_eq!(k.bytes(), &[7; 32]);
        let mut c = k.clone();
        c.bytes_mut()[0] = 1;
        assert_eq!(k.bytes()[0], 7);
        assert_eq!(c.bytes()[0], 1);
        assert_eq!(LockedBytes::<16>::zeroed().bytes(), &[0; 16]);
    }

    #[test]
    fn never_prints_its_bytes() {
        let k = LockedBytes::<4>::from_slice(b"\xAA\xBB\xCC\xDD");
        let s = format!("{k:?}");
        assert!(s.starts_with("LockedBytes<4>(.., locked: "), "{s}");
        assert!(!s.to_lowercase().contains("aa"), "{s}");
    }

    #[test]
    fn zero_length_is_fine() {
        let k = LockedBytes::<0>::zeroed();
        assert_eq!(k.bytes().len(), 0);
    }

    #[test]
    fn moves_between_threads() {
        let k = LockedBytes::<32>::from_slice(&[3; 32]);
        let got = std::thread::spawn(move || *k.bytes()).join().ok();
        assert_eq!(got, Some([3; 32]));
    }
}
