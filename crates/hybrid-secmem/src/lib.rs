//! hybrid-secmem: a few bytes of key material in pages that are locked in
//! RAM, left out of core dumps, hold nothing but such values, and are wiped
//! before the bytes are reused or given back.
//!
//! **Why**: the vault key of a *vault session* (`verify = "fingerprint"`,
//! docs/threat-model.md) stays in the daemon's memory for up to
//! `vault_session_idle_secs`. Zeroizing on drop keeps it from lingering
//! after the session ends; while the session is open, the key must not be
//! written to swap (`mlock(2)`) nor into a core dump (`MADV_DONTDUMP`,
//! `madvise(2)`; the daemon is also non-dumpable as a whole). A value
//! inside a `Vec` or a struct moves and shares pages with everything else,
//! so it cannot be locked on its own: [`LockedBytes`] lives in anonymous
//! private mappings (`mmap(2)`) that hold only values of this type, so no
//! other data's pages are ever locked or unlocked by it.
//!
//! **The pool** (small values, `N` ≤ 64 bytes — every key in the tree is
//! 32): a value takes a 64-byte slot of a *pool page*, a page mapped,
//! `mlock`ed and `MADV_DONTDUMP`ed once and then reused, so making and
//! dropping a key costs no system call. Until this pool each value mapped a
//! page of its own and unmapped it on drop: the phone daemon makes about
//! three per request (vault key, metadata key, the PIN-derived key), and a
//! `perf` profile of the phone benchmark put mmap + mlock + madvise +
//! munmap, with their page faults and TLB work, at ≈ 3.7 % of the daemon's
//! CPU (`strace`: 179 mmap, 156 mlock, 158 madvise, 160 munmap over 52
//! ceremonies). With the pool the same run makes 24 mmap, 1 mlock, 3
//! madvise and 4 munmap: the pool page once, the rest not this crate's
//! (thread stacks, the allocator, `MADV_WIPEONFORK` for the random
//! generator). A dropped value's slot is wiped (zeroized) before it goes
//! back on its page's free list, so a free slot is always all zero and
//! `zeroed()` hands it out as it is. A page that becomes entirely free is
//! kept mapped and locked if it is the only such page (one spare, so the
//! daemon's steady state maps nothing), and unmapped otherwise; an unlocked
//! page (its `mlock` was refused) is never kept once free, so the next page
//! tries the lock again. At most 8 pool pages exist (32 KiB with 4 KiB
//! pages, 512 slots); beyond that, and for larger values, a value gets a
//! mapping of its own as before, and if the kernel refuses the mapping, a
//! heap box. The pool is one `std::sync::Mutex`, taken once per value made
//! and once per value dropped; values move freely between threads.
//!
//! **Owns** those four system calls behind a safe type, so every other crate
//! keeps `#![forbid(unsafe_code)]`. **Does not own** what is secret or when
//! it is made (hybrid-vault's key types), nor the policy when locking is
//! refused: [`LockedBytes::is_locked`] says whether it held for that value
//! (for a pooled value: for its page), and the caller decides whether to
//! warn.
//!
//! **Limits**: locking counts against `RLIMIT_MEMLOCK` (8 MiB by default on
//! current kernels and systemd; one page for up to 64 pooled values, and
//! one page per larger value). When the mapping or the lock is refused the
//! bytes are still kept and wiped, on the heap or unlocked, and `is_locked`
//! is `false`. Once a small value has been made, the pool's spare page
//! stays locked (all zero) for the process's life, so the process's
//! `VmLck` no longer drops to zero when the last key goes. Copies the
//! compiler makes on the stack while a key is built or used (a cipher's key
//! schedule, for instance) are outside this type. Linux only; elsewhere the
//! bytes live in a zeroized heap box.

use zeroize::Zeroize;

/// `N` bytes in locked, never-dumped memory (a pool slot for `N` ≤ 64, a
/// page of their own above), zero-filled at first, wiped on drop. Never
/// printed.
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
        // Wiped before the memory goes back (`imp::Mem`'s drop puts the
        // slot back in the pool, or unmaps the value's own mapping).
        self.bytes_mut().zeroize();
    }
}

/// The pool's state, for tests (not an API: may change without notice).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Pool pages mapped now.
    pub pages: usize,
    /// Of those, the pages whose `mlock` held.
    pub locked_pages: usize,
    /// Pool pages mapped since the process started (each one mmap, mlock
    /// and madvise).
    pub pages_mapped: u64,
    /// Slots handed out and not yet given back.
    pub slots_in_use: usize,
    /// The size of a pool page (0 before the first).
    pub page_bytes: usize,
    /// The size of a slot: values up to this many bytes are pooled (0
    /// where there is no pool).
    pub slot_bytes: usize,
}

/// The pool's state now, for tests.
#[doc(hidden)]
pub fn pool_stats() -> PoolStats {
    #[cfg(target_os = "linux")]
    {
        imp::pool::stats()
    }
    #[cfg(not(target_os = "linux"))]
    {
        PoolStats::default()
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
    use zeroize::Zeroize;

    /// Where the bytes are: a slot of a shared pool page (`N` ≤
    /// [`pool::SLOT`]), an anonymous mapping owned by this value, or — if
    /// the kernel refused the mapping — a heap box.
    pub(super) enum Mem<const N: usize> {
        Pooled { ptr: NonNull<[u8; N]>, locked: bool },
        Mapped { ptr: NonNull<[u8; N]>, locked: bool },
        Heap(Box<[u8; N]>),
    }

    // SAFETY: `Pooled` and `Mapped` own their bytes exclusively, like a
    // `Box<[u8; N]>` owns its allocation: the pool hands a slot to exactly
    // one value (taken off its free list under the pool's mutex, put back
    // only by that value's drop), a `Mapped` value's mapping is its own,
    // the memory is reached only through `&self` / `&mut self`, and it is
    // plain bytes with no thread affinity. So moving it to, or sharing `&`
    // of it with, another thread is as sound as for `Box<[u8; N]>`.
    unsafe impl<const N: usize> Send for Mem<N> {}
    // SAFETY: as for `Send` above: `&Mem` gives only `&[u8; N]`.
    unsafe impl<const N: usize> Sync for Mem<N> {}

    impl<const N: usize> Mem<N> {
        pub(super) fn new() -> Self {
            // A zero-length mapping is an error (EINVAL); nothing to hide.
            if N == 0 {
                return Mem::Heap(Box::new([0u8; N]));
            }
            if N <= pool::SLOT {
                if let Some((slot, locked)) = pool::take() {
                    // A slot is SLOT ≥ N bytes, all zero while free. Its
                    // owner reaches only the first N and wipes them on
                    // drop, so the whole slot is zero again once free.
                    return Mem::Pooled {
                        ptr: slot.cast(),
                        locked,
                    };
                }
            }
            match map_locked(N) {
                Some((ptr, locked)) => Mem::Mapped {
                    ptr: ptr.cast(),
                    locked,
                },
                None => Mem::Heap(Box::new([0u8; N])),
            }
        }

        pub(super) fn bytes(&self) -> &[u8; N] {
            match self {
                // SAFETY: a pool slot or an own mapping: N readable,
                // writable bytes (a slot is SLOT ≥ N bytes inside a
                // mapped pool page), initialised (zero-filled by the
                // kernel, and a pool slot is wiped before it is free
                // again), aligned to SLOT or a page (≥ the alignment 1
                // of `[u8; N]`), alive as long as `self` (the slot is
                // given back, the mapping unmapped, only in `drop`), and
                // reached by no one else (see `Send` above), so written
                // only through `&mut self`.
                Mem::Pooled { ptr, .. } | Mem::Mapped { ptr, .. } => unsafe { ptr.as_ref() },
                Mem::Heap(b) => b,
            }
        }

        pub(super) fn bytes_mut(&mut self) -> &mut [u8; N] {
            match self {
                // SAFETY: as in `bytes`; `&mut self` makes this the only
                // reference.
                Mem::Pooled { ptr, .. } | Mem::Mapped { ptr, .. } => unsafe { ptr.as_mut() },
                Mem::Heap(b) => b,
            }
        }

        pub(super) fn is_locked(&self) -> bool {
            matches!(
                self,
                Mem::Pooled { locked: true, .. } | Mem::Mapped { locked: true, .. }
            )
        }
    }

    impl<const N: usize> Drop for Mem<N> {
        fn drop(&mut self) {
            match self {
                Mem::Pooled { ptr, .. } => {
                    // The pool's invariant: a free slot is all zero (the
                    // next `zeroed()` relies on it). `LockedBytes` wipes
                    // too; this keeps the invariant local to the pool.
                    // SAFETY: as in `bytes_mut`: our slot, only reference.
                    unsafe { ptr.as_mut() }.zeroize();
                    pool::give_back(ptr.cast());
                }
                Mem::Mapped { ptr, .. } => {
                    // SAFETY: the mapping made in `new`, of the same
                    // length, unmapped once (this is its owner's drop) and
                    // never used after. Unmapping also ends the lock.
                    unsafe { unmap(ptr.cast(), N) };
                }
                Mem::Heap(_) => {}
            }
        }
    }

    /// A fresh private anonymous mapping of `len` > 0 bytes, locked
    /// (`mlock`) and left out of core dumps (`MADV_DONTDUMP`) as far as the
    /// kernel allows: its address and whether the lock held. `None` if the
    /// kernel refused the mapping.
    fn map_locked(len: usize) -> Option<(NonNull<u8>, bool)> {
        // SAFETY: a fresh private anonymous mapping at an address of the
        // kernel's choosing (`addr` null, no MAP_FIXED), so no existing
        // memory is touched; the result is checked below.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let ptr = NonNull::new(p.cast::<u8>())?;
        // SAFETY: `p..p+len` is the mapping made above, owned by the
        // caller; mlock and madvise change only how the kernel treats
        // those pages (the mapping is whole pages, `len` rounded up, and
        // no other data lives in them).
        let locked = unsafe {
            let locked = libc::mlock(p, len) == 0;
            // Best effort: a failure leaves the page dumpable, and the
            // daemon is non-dumpable anyway.
            let _ = libc::madvise(p, len, libc::MADV_DONTDUMP);
            locked
        };
        Some((ptr, locked))
    }

    /// Gives back a mapping made by [`map_locked`] (which ends its lock).
    ///
    /// # Safety
    ///
    /// `ptr`, `len` are a mapping returned by `map_locked(len)`, not yet
    /// unmapped, which nothing reads or writes any more.
    unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
        // SAFETY: the caller's contract.
        let _ = unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    }

    /// The pool of small slots: see the crate documentation.
    pub(super) mod pool {
        use core::ptr::NonNull;
        use std::sync::Mutex;

        /// The size (and alignment) of a slot: values of up to this many
        /// bytes are pooled. 64 fits every key in the tree (32 bytes), is a
        /// cache line (two threads' keys never share one), and gives 64
        /// slots per 4 KiB page.
        pub(crate) const SLOT: usize = 64;
        /// At most this many pool pages (32 KiB of locked memory with
        /// 4 KiB pages, 512 slots): beyond, values get a mapping of their
        /// own as before.
        const MAX_PAGES: usize = 8;
        /// Fully free, locked pages kept mapped for the next values; a page
        /// that empties beyond these, or that is not locked, is unmapped.
        const SPARE_PAGES: usize = 1;

        /// One pool page: one page-sized mapping of its own.
        struct Page {
            base: NonNull<u8>,
            /// Whether its `mlock` held: true of every slot in it.
            locked: bool,
            /// The indices of its free slots (each all zero), a stack.
            free: Vec<u32>,
        }

        struct Pool {
            /// The system page size (0 until the first page is mapped).
            page: usize,
            pages: Vec<Page>,
            /// Pool pages mapped so far (tests: reuse).
            mapped: u64,
        }

        // SAFETY: the pool holds the pages' addresses only to hand out
        // slots and to lock/unmap whole pages; it never reads or writes the
        // bytes, which belong to each slot's one owner. The addresses have
        // no thread affinity, and every access to the pool is under
        // `POOL`'s mutex.
        unsafe impl Send for Pool {}

        static POOL: Mutex<Pool> = Mutex::new(Pool {
            page: 0,
            pages: Vec::new(),
            mapped: 0,
        });

        impl Pool {
            fn slots_per_page(&self) -> usize {
                self.page / SLOT
            }

            /// Maps, locks and adds one page; its index.
            fn grow(&mut self) -> Option<usize> {
                if self.pages.len() >= MAX_PAGES {
                    return None;
                }
                if self.page == 0 {
                    // SAFETY: sysconf only reads a system value.
                    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
                    self.page = usize::try_from(page)
                        .ok()
                        .filter(|&p| p >= SLOT)
                        .unwrap_or(4096);
                }
                let (base, locked) = super::map_locked(self.page)?;
                let slots = u32::try_from(self.slots_per_page()).unwrap_or(u32::MAX);
                self.pages.push(Page {
                    base,
                    locked,
                    // Popped from the end: slot 0 first.
                    free: (0..slots).rev().collect(),
                });
                self.mapped += 1;
                Some(self.pages.len() - 1)
            }
        }

        /// A free slot (`SLOT` zero bytes, aligned to `SLOT`), now the
        /// caller's alone, and whether its page is locked; `None` when the
        /// pool is full or its page could not be mapped.
        pub(crate) fn take() -> Option<(NonNull<u8>, bool)> {
            // Poisoned only by a panic inside (none is expected): then the
            // pool is left alone and values get mappings of their own.
            let mut pool = POOL.lock().ok()?;
            // A locked page first; then an unlocked one with room (locking
            // was refused recently: a new page would most likely be
            // refused too, at four system calls a value); then a new page.
            let i = match pool
                .pages
                .iter()
                .position(|p| p.locked && !p.free.is_empty())
            {
                Some(i) => i,
                None => match pool.pages.iter().position(|p| !p.free.is_empty()) {
                    Some(i) => i,
                    None => pool.grow()?,
                },
            };
            let page = pool.pages.get_mut(i)?;
            let slot = usize::try_from(page.free.pop()?).ok()?;
            // In bounds: slot < page size / SLOT.
            let ptr = NonNull::new(page.base.as_ptr().wrapping_add(slot * SLOT))?;
            Some((ptr, page.locked))
        }

        /// Puts back a slot from [`take`], which its owner has wiped and
        /// no longer uses. Unmaps its page if that page is now free and not
        /// kept (see `SPARE_PAGES`).
        pub(crate) fn give_back(slot: NonNull<u8>) {
            let Ok(mut pool) = POOL.lock() else {
                // Left out of the free list: wiped, never handed out again.
                return;
            };
            let page_len = pool.page;
            let per_page = pool.slots_per_page();
            let at = slot.as_ptr() as usize;
            let Some(i) = pool.pages.iter().position(|p| {
                let base = p.base.as_ptr() as usize;
                base <= at && at < base + page_len
            }) else {
                debug_assert!(false, "a slot outside the pool");
                return;
            };
            let spare = pool
                .pages
                .iter()
                .filter(|p| p.locked && p.free.len() == per_page)
                .count();
            let Some(page) = pool.pages.get_mut(i) else {
                return;
            };
            let index = (at - page.base.as_ptr() as usize) / SLOT;
            let Ok(index) = u32::try_from(index) else {
                return;
            };
            debug_assert!(!page.free.contains(&index), "a slot given back twice");
            page.free.push(index);
            let keep = page.free.len() < per_page || (page.locked && spare < SPARE_PAGES);
            if keep {
                return;
            }
            let gone = pool.pages.swap_remove(i);
            drop(pool);
            // SAFETY: a page mapped by `grow` with `map_locked(page_len)`,
            // now out of the pool, with every slot free (no owner left), so
            // nothing reads or writes it any more.
            unsafe { super::unmap(gone.base, page_len) };
        }

        /// See [`crate::PoolStats`].
        pub(crate) fn stats() -> crate::PoolStats {
            let Ok(pool) = POOL.lock() else {
                return crate::PoolStats::default();
            };
            let per_page = pool.slots_per_page();
            crate::PoolStats {
                pages: pool.pages.len(),
                locked_pages: pool.pages.iter().filter(|p| p.locked).count(),
                pages_mapped: pool.mapped,
                slots_in_use: pool.pages.iter().map(|p| per_page - p.free.len()).sum(),
                page_bytes: pool.page,
                slot_bytes: SLOT,
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
