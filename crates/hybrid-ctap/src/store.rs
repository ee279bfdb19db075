//! The credential store seam: what the authenticator needs from durable storage.
//!
//! The CTAP core never touches files. It asks a [`CredentialStore`] for
//! credential *metadata* (enough to apply the allow/exclude lists, credProtect
//! and discoverability rules before the user is asked anything) and for a
//! credential's *secrets* only after the user approved and verified — which is
//! when a PIN-locked store (the `hybrid-vault` crate) can decrypt them.
//! Models: OpenSK's `Env`/`persistent_store`, passkey-rs's `CredentialStore`.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// COSE algorithm identifier for ES256 (ECDSA P-256 with SHA-256), RFC 9053.
pub const COSE_ES256: i64 = -7;
/// COSE algorithm identifier for EdDSA (here always Ed25519), RFC 9053.
pub const COSE_EDDSA: i64 = -8;

/// Everything about a credential except its secrets. Stored in clear by the
/// vault (it is needed before the user unlocks anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialMeta {
    /// Credential ID as given to the relying party (random, 16..=64 bytes).
    pub id: Vec<u8>,
    /// The RP ID this credential is scoped to.
    pub rp_id: String,
    /// The RP's display name at creation, if any.
    pub rp_name: Option<String>,
    /// The user handle (may be empty only for non-discoverable credentials).
    pub user_id: Vec<u8>,
    /// `user.name` at creation.
    pub user_name: Option<String>,
    /// `user.displayName` at creation.
    pub user_display_name: Option<String>,
    /// COSE algorithm of the credential key ([`COSE_ES256`] or [`COSE_EDDSA`]).
    pub algorithm: i64,
    /// The credential public key as a COSE_Key (canonical CBOR).
    pub public_key_cose: Vec<u8>,
    /// Discoverable ("resident") credential.
    pub discoverable: bool,
    /// credProtect level 1..=3 (CTAP 2.1 §12.1); 1 when not requested.
    pub cred_protect: u8,
    /// Signature counter after the last use (starts at 0).
    pub sign_count: u32,
    /// Creation time, Unix seconds.
    pub created_unix: u64,
    /// Last successful assertion, Unix seconds.
    pub last_used_unix: Option<u64>,
}

/// A credential's secret material. Zeroized on drop; never logged.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CredentialSecrets {
    /// ES256: the 32-byte big-endian P-256 scalar; EdDSA: the 32-byte Ed25519 seed.
    pub private_key: Zeroizing<Vec<u8>>,
    /// Per-credential PRF / hmac-secret key ("CredRandomWithUV", CTAP 2.1 §12.5).
    pub prf_secret: [u8; 32],
    /// Optional credBlob (CTAP 2.1 §12.2), at most `maxCredBlobLength` bytes.
    pub cred_blob: Option<Vec<u8>>,
    /// Optional largeBlobKey (CTAP 2.1 §12.3), 32 bytes.
    pub large_blob_key: Option<[u8; 32]>,
}

impl core::fmt::Debug for CredentialSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CredentialSecrets { .. }")
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many credentials as it can (→ `CTAP2_ERR_KEY_STORE_FULL`).
    #[error("credential store is full")]
    Full,
    /// Secrets were asked for while the store is locked (no successful user verification).
    #[error("credential store is locked")]
    Locked,
    /// No credential with that ID.
    #[error("no such credential")]
    NotFound,
    /// Anything else (IO, corruption); the message is safe to log.
    #[error("credential store failure: {0}")]
    Backend(String),
}

/// Durable credential storage as the authenticator sees it.
///
/// Implementations must make [`CredentialStore::insert`] and
/// [`CredentialStore::next_sign_count`] durable before they return (the CTAP
/// response leaves only afterwards), and must never let a counter go backwards.
pub trait CredentialStore {
    /// Credentials for `rp_id`. With `ids = Some(list)` only those whose ID is in
    /// the list (allow/exclude list lookups; any list length); with `None`, the
    /// discoverable credentials of the RP (empty-allowList getAssertion).
    /// Ordered newest first.
    fn find(&self, rp_id: &str, ids: Option<&[Vec<u8>]>)
        -> Result<Vec<CredentialMeta>, StoreError>;

    /// Stores a new credential (durably). A discoverable credential for the
    /// same RP and the same non-empty user handle replaces the older one
    /// (CTAP 2.1 §6.1.2 step 17).
    fn insert(
        &mut self,
        meta: &CredentialMeta,
        secrets: &CredentialSecrets,
    ) -> Result<(), StoreError>;

    /// The secrets of one credential; `Err(Locked)` until the user verified.
    fn secrets(&self, id: &[u8]) -> Result<CredentialSecrets, StoreError>;

    /// Increments the credential's signature counter durably and returns the
    /// new value (also records the last-used time `now_unix`).
    fn next_sign_count(&mut self, id: &[u8], now_unix: u64) -> Result<u32, StoreError>;
}
