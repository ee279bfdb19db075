//! hybrid-session: one phone-side hybrid transaction (CTAP 2.2 §11.5,
//! caBLE v2, QR mode) as a deterministic, sans-IO state machine, in the
//! style of `quinn-proto`.
//!
//! **Owns** the session policy of `hybrid-protocol.md` §0, §5.3 "Failure
//! handling", §6 and the §10 checklist: the order of the steps (open the
//! tunnel → advertise → handshake → post-handshake message → CTAP request(s)
//! → close), every wait (tunnel open, desktop's msg1, idle before a request,
//! the user's approval, grace after the reply), what ends the session and how ([`Outcome`],
//! [`FailReason`]), the one-command rule (§8.3) and the getNextAssertion
//! follow-ups a discoverable getAssertion announces (CTAP 2.1 §6.3), and that the phone never
//! sends a shutdown frame nor a linking map. Keys (QR secret, EID key, PSK,
//! Crypter) live only inside the session and are dropped — zeroized — when
//! it finishes.
//!
//! **Does not own** any IO, clock or task: inputs are method calls carrying
//! an [`std::time::Instant`] (`on_tunnel_open`, `on_message`,
//! `on_user_needed`, `on_ctap_response`, `on_tunnel_closed`,
//! `handle_timeout`, `cancel`, …),
//! outputs are [`Action`]s pulled with [`PhoneSession::poll_action`] and a
//! deadline from [`PhoneSession::poll_timeout`]. The bytes come from the
//! protocol crates: QR parsing and freshness (`hybrid-qr`, done by the
//! caller), derivation/advert/PSK (`hybrid-ble`), Noise, Crypter and framing
//! (`hybrid-noise`), tunnel names (`hybrid-tunnel-names`). CTAP semantics belong to
//! `hybrid-ctap`; the tokio driver is `hybridd::ceremony`. No panic is
//! reachable from peer input; after `Finished` every input is ignored.
#![forbid(unsafe_code)]

mod config;
mod outcome;
mod session;

pub use config::{
    SessionConfig, DEFAULT_APPROVAL_TIMEOUT, DEFAULT_COMMAND_TIMEOUT, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_WAIT_FOR_DESKTOP,
};
pub use outcome::{FailReason, Outcome};
pub use session::{Action, DataPath, Phases, PhoneSession};

#[cfg(test)]
mod tests;
