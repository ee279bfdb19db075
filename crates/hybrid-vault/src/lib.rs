//! hybrid-vault: hybridd's software credential vault.
//!
//! **Owns** the vault file: one SQLite database (embedded, WAL journal,
//! `synchronous=FULL`) holding the passkeys the device answers
//! makeCredential / getAssertion with. Credential metadata (RP ID, user
//! names, counters, public keys) is stored in clear so it can be searched
//! before the user is asked anything, and authenticated by a per-row
//! HMAC-SHA256 tag under a key derived from the vault key (checked once the
//! vault is unlocked: an edited row is refused); each credential's secrets
//! are sealed with AES-256-GCM under a random 32-byte *vault key* (AAD =
//! credential ID), and the vault key is sealed under a key derived from the
//! user's PIN with Argon2id, bound to the vault's identity and KDF
//! parameters. It also owns the PIN policy, the KDF minimum, the persisted
//! wrong-PIN counter with its delays and lockout, file permissions and
//! schema migrations (including the unlock-time migration of version-1
//! vaults), and the used-QR records a caller commits with a counted PIN
//! attempt (the daemon's QR replay memory: [`UsedQr`], opaque digests, read
//! back at start). See `docs/vault.md`.
//!
//! **Does not own** CTAP semantics (allow lists, credProtect, user presence:
//! `hybrid-ctap`, whose [`hybrid_ctap::store::CredentialStore`] seam
//! [`Vault`] implements), key generation or signing (the CTAP core generates
//! keys and signs with the secrets it is handed), nor any prompt, clock or
//! sleep: the caller passes `now` and waits out the delays it is told.
//!
//! ```no_run
//! use hybrid_vault::{KdfParams, Vault};
//! # fn main() -> Result<(), hybrid_vault::VaultError> {
//! let mut vault = Vault::create("/home/me/.local/share/hybridd/vault.db", "8521", KdfParams::DEFAULT)?;
//! vault.lock();
//! let mut vault = Vault::open("/home/me/.local/share/hybridd/vault.db")?;
//! vault.unlock("8521", std::time::SystemTime::now())?;
//! # Ok(()) }
//! ```

mod error;
mod fsperm;
mod pin;
mod schema;
mod seal;
mod store;
mod used_qr;
mod vault;
mod write_tx;

#[cfg(test)]
mod tests;

pub use error::VaultError;
pub use fsperm::{DIR_MODE, FILE_MODE};
pub use pin::{
    check_policy as check_pin_policy, delay_after, KdfParams, MAX_DELAY, MAX_PIN_BYTES,
    MAX_PIN_FAILURES, MIN_PIN_CHARS,
};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use store::COUNTER_BLOCK;
pub use used_qr::UsedQr;
pub use vault::{DerivedPin, PinAttempt, PinStatus, Vault, DEFAULT_CAPACITY};
