//! PIN policy, the Argon2id key derivation and the wrong-PIN schedule.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::seal::KEY_LEN;

/// Wrong PINs in a row after which the vault refuses every attempt.
pub const MAX_PIN_FAILURES: u32 = 8;
/// Shortest PIN, in Unicode scalar values (CTAP's minimum PIN length).
pub const MIN_PIN_CHARS: usize = 4;
/// Longest PIN, in UTF-8 bytes (CTAP's limit).
pub const MAX_PIN_BYTES: usize = 63;
/// Length of the Argon2 salt stored in the vault.
pub const SALT_LEN: usize = 16;

/// Checks the PIN policy: 4..=63 bytes of UTF-8 (guaranteed by `&str`), at
/// least [`MIN_PIN_CHARS`] characters, no NUL (CTAP pads PINs with zeros).
pub fn check_policy(pin: &str) -> Result<(), VaultError> {
    if pin.len() > MAX_PIN_BYTES {
        return Err(VaultError::PinPolicy("a PIN is at most 63 bytes of UTF-8"));
    }
    if pin.chars().count() < MIN_PIN_CHARS {
        return Err(VaultError::PinPolicy("a PIN has at least 4 characters"));
    }
    if pin.contains('\0') {
        return Err(VaultError::PinPolicy(
            "a PIN cannot contain a NUL character",
        ));
    }
    Ok(())
}

/// The delay imposed after the `failures`-th wrong PIN in a row:
/// 1 s, 2 s, 4 s, … 64 s (the 8th failure locks the vault instead).
pub fn delay_after(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6))
}

/// The longest delay [`delay_after`] can impose (used to repair a clock that
/// jumped backwards).
pub const MAX_DELAY: Duration = Duration::from_secs(64);

/// Argon2id cost parameters for deriving the key that seals the vault key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB (Argon2 `m`).
    pub m_cost_kib: u32,
    /// Passes (Argon2 `t`).
    pub t_cost: u32,
    /// Lanes (Argon2 `p`).
    pub p_cost: u32,
}

impl KdfParams {
    /// The default: m = 64 MiB, t = 3, p = 1 (a few hundred ms on a laptop).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// Argon2's minimum cost. Offers no protection against guessing:
    /// for tests and benchmarks only. A vault created with parameters below
    /// [`KdfParams::MINIMUM`] is recorded as *made for tests* (see
    /// [`crate::Vault::create`]).
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };

    /// The documented minimum for a vault holding real credentials:
    /// m = 19 MiB, t = 2, p = 1, the smallest Argon2id configuration the
    /// OWASP Password Storage Cheat Sheet recommends. A vault whose stored
    /// parameters are below it (smaller `m` or smaller `t`) is refused unless
    /// it records — authenticated with its sealed key — that it was made for
    /// tests (`docs/vault.md`, "KDF parameters").
    pub const MINIMUM: KdfParams = KdfParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// Upper bounds accepted when reading a vault (a tampered file must not
    /// make us allocate terabytes).
    const MAX_M_KIB: u32 = 4 * 1024 * 1024;
    const MAX_T: u32 = 64;
    const MAX_P: u32 = 16;

    /// Whether these parameters are below [`KdfParams::MINIMUM`] (less memory
    /// or fewer passes): acceptable only for a vault made for tests.
    pub fn is_below_minimum(self) -> bool {
        self.m_cost_kib < Self::MINIMUM.m_cost_kib || self.t_cost < Self::MINIMUM.t_cost
    }

    /// Each cost the larger of `self`'s and `other`'s: what a re-seal uses so
    /// that it never weakens a vault made with stronger parameters.
    pub fn at_least(self, other: KdfParams) -> KdfParams {
        KdfParams {
            m_cost_kib: self.m_cost_kib.max(other.m_cost_kib),
            t_cost: self.t_cost.max(other.t_cost),
            p_cost: self.p_cost.max(other.p_cost),
        }
    }

    pub(crate) fn validate(self) -> Result<argon2::Params, VaultError> {
        if self.m_cost_kib > Self::MAX_M_KIB
            || self.t_cost > Self::MAX_T
            || self.p_cost > Self::MAX_P
        {
            return Err(VaultError::Kdf(format!(
                "parameters out of range (m ≤ {} KiB, t ≤ {}, p ≤ {})",
                Self::MAX_M_KIB,
                Self::MAX_T,
                Self::MAX_P
            )));
        }
        argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| VaultError::Kdf(e.to_string()))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Derives the key-encryption key from the PIN with Argon2id.
pub(crate) fn derive_kek(
    pin: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.validate()?,
    );
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(pin.as_bytes(), salt, out.as_mut())
        .map_err(|e| VaultError::Kdf(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("1234").is_ok());
        assert!(check_policy("123").is_err());
        assert!(check_policy("ééé").is_err()); // 6 bytes, 3 chars
        assert!(check_policy("éééé").is_ok());
        assert!(check_policy(&"a".repeat(63)).is_ok());
        assert!(check_policy(&"a".repeat(64)).is_err());
        assert!(check_policy("12\u{0}45").is_err());
    }

    #[test]
    fn delays_grow_and_cap() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(1), Duration::from_secs(1));
        assert_eq!(delay_after(2), Duration::from_secs(2));
        assert_eq!(delay_after(7), Duration::from_secs(64));
        assert_eq!(delay_after(100), MAX_DELAY);
    }

    #[test]
    fn kdf_is_deterministic_and_salted() {
        let p = KdfParams::INSECURE_FOR_TESTS;
        let a = derive_kek("1234", &[1; 16], p).unwrap();
        let b = derive_kek("1234", &[1; 16], p).unwrap();
        let c = derive_kek("1234", &[2; 16], p).unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, *c);
        assert!(KdfParams {
            m_cost_kib: u32::MAX,
            ..p
        }
        .validate()
        .is_err());
    }

    #[test]
    fn minimum_and_upgrade() {
        assert!(KdfParams::INSECURE_FOR_TESTS.is_below_minimum());
        assert!(!KdfParams::MINIMUM.is_below_minimum());
        assert!(!KdfParams::DEFAULT.is_below_minimum());
        let low_t = KdfParams {
            t_cost: 1,
            ..KdfParams::DEFAULT
        };
        assert!(low_t.is_below_minimum());
        assert_eq!(
            KdfParams::MINIMUM.at_least(KdfParams::DEFAULT),
            KdfParams::DEFAULT
        );
        let strong = KdfParams {
            m_cost_kib: 256 * 1024,
            t_cost: 1,
            p_cost: 4,
        };
        assert_eq!(
            strong.at_least(KdfParams::DEFAULT),
            KdfParams {
                m_cost_kib: 256 * 1024,
                t_cost: 3,
                p_cost: 4
            }
        );
    }
}
