//! The seams between the CTAP core and the world (OpenSK's `Env` idea):
//! credential storage ([`CredentialStore`]), time ([`Clock`]) and
//! randomness (`rand_core::CryptoRngCore`).
//!
//! The user is not a seam the core calls: a request that needs the user
//! yields [`crate::Step::NeedsUser`] with an [`ApprovalRequest`], and the
//! caller answers with an [`Approval`] or a [`UserError`] through
//! [`crate::Authenticator::resume`] — asynchronously, with its own
//! deadline.

use rand_core::CryptoRngCore;

use crate::store::CredentialStore;

/// Which operation the user is asked to approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Create a credential (authenticatorMakeCredential).
    MakeCredential,
    /// Sign in (authenticatorGetAssertion).
    GetAssertion,
    /// A makeCredential hit the excludeList: CTAP 2.1 §6.1.2 step 12 asks for
    /// user presence before answering `CTAP2_ERR_CREDENTIAL_EXCLUDED`, so a
    /// desktop cannot probe for credentials silently.
    ExcludedCredential,
    /// A zero-length `pinUvAuthParam` (CTAP 2.1 §6.1.2 step 1): the platform
    /// only wants a touch to pick an authenticator.
    PresenceOnly,
}

/// What the user is shown. Always describes the command actually received,
/// never the QR hint (conformance checklist, hybrid layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The operation.
    pub command: Command,
    /// The RP ID the operation is for.
    pub rp_id: String,
    /// The RP's display name, if the request or the credential has one.
    pub rp_name: Option<String>,
    /// The account name to show, if known.
    pub user_name: Option<String>,
    /// The account display name to show, if known.
    pub user_display_name: Option<String>,
    /// Whether the operation fails unless the user is verified.
    pub uv_required: bool,
    /// Age of the QR code that started this session, from [`RequestContext`].
    pub qr_age_secs: Option<u64>,
}

/// The user's answer to an [`ApprovalRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    /// The user confirmed presence (consent).
    pub user_present: bool,
    /// The user was verified (PIN, biometric); sets the UV flag.
    pub user_verified: bool,
}

/// Why the user did not approve (the caller's answer to an
/// [`ApprovalRequest`] it could not get an [`Approval`] for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// Explicitly declined → `CTAP2_ERR_OPERATION_DENIED` 0x27.
    #[error("user declined")]
    Declined,
    /// No answer in time → `CTAP2_ERR_USER_ACTION_TIMEOUT` 0x2F.
    #[error("user did not answer in time")]
    Timeout,
    /// The session was cancelled → `CTAP2_ERR_KEEPALIVE_CANCEL` 0x2D.
    #[error("cancelled")]
    Cancelled,
}

/// Time, supplied by the caller (the core reads no clock itself).
pub trait Clock {
    /// Monotonic milliseconds (getNextAssertion's 30 s window, CTAP 2.1 §6.3).
    fn monotonic_ms(&self) -> u64;
    /// Wall-clock Unix seconds (credential creation / last-use times).
    fn unix_secs(&self) -> u64;
}

/// Per-request facts the daemon knows and the core does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Age of the QR code of this session, shown in the approval prompt.
    pub qr_age_secs: Option<u64>,
    /// The QR's request-type hint (`"mc"`/`"ga"`), informational only.
    pub hint: Option<String>,
}

/// Everything the authenticator needs from outside.
pub trait Env {
    /// The credential store.
    type Store: CredentialStore;
    /// The clock.
    type Clock: Clock;
    /// The random number generator.
    type Rng: CryptoRngCore;
    /// The credential store.
    fn store(&mut self) -> &mut Self::Store;
    /// The clock.
    fn clock(&self) -> &Self::Clock;
    /// The random number generator: credential IDs, PRF secrets, EdDSA
    /// keys. ES256 credential keys and ECDSA nonces come from
    /// AWS-LC's own DRBG (`crypto`), which generates a key with one
    /// fixed-base multiplication where loading one drawn from here costs two.
    fn rng(&mut self) -> &mut Self::Rng;
}

/// An [`Env`] made of its parts — the one environment struct: the daemon
/// and the demo use it with the vault, the system clock and the OS RNG;
/// tests, fuzzing and benches with the `testing` feature's doubles.
///
/// `user` is not a seam of the core (the core yields approval requests
/// instead of calling anyone): it is whatever the caller keeps beside the
/// environment to answer them — the tests' scripted user, or `()`.
#[derive(Debug, Clone, Default)]
pub struct EnvParts<S, C, R, U = ()> {
    /// The credential store.
    pub store: S,
    /// The clock.
    pub clock: C,
    /// The random number generator.
    pub rng: R,
    /// What answers the approvals, if the caller keeps it here.
    pub user: U,
}

impl<S: CredentialStore, C: Clock, R: CryptoRngCore, U> Env for EnvParts<S, C, R, U> {
    type Store = S;
    type Clock = C;
    type Rng = R;
    fn store(&mut self) -> &mut S {
        &mut self.store
    }
    fn clock(&self) -> &C {
        &self.clock
    }
    fn rng(&mut self) -> &mut R {
        &mut self.rng
    }
}
