//! `hybridd`: be the phone in FIDO's hybrid transport (CTAP 2.2 §11.5,
//! formerly caBLE v2) on a Linux device.
//!
//! This crate owns the command line, the daemon and the wiring of the
//! protocol crates (`hybrid-qr`, `hybrid-ble`, `hybrid-tunnel`,
//! `hybrid-noise`, `hybrid-ctap`, `hybrid-session`, `hybrid-vault`). It owns
//! no protocol rule itself: each lives in the crate named in
//! `docs/architecture.md`. Files by role:
//!
//! * [`ceremony`]: the one ceremony core — QR parsed once, freshness and
//!   replay checked, the sans-IO session driven over the tunnel and the
//!   radio, one typed [`ceremony::Report`];
//! * [`approval`]: the person behind the ceremony — the approval flow
//!   (consent, then verification by PIN, wrong-PIN back-off) and its
//!   front-ends behind one trait ([`approval::Approver`]: terminal, control
//!   socket, automatic);
//! * [`prompt`]: what the person is shown, rendered once;
//! * [`vault`]: the vault adapter — the daemon's CTAP environment, run in
//!   place behind an async mutex, with the PIN's key derivation on a thread
//!   of its own; [`vault_session`]: what opens and ends
//!   the vault session of fingerprint verification;
//! * [`control`]: the control protocol (typed messages), its server and its
//!   client;
//! * [`config`], [`replay`], [`error`] and the subcommands in [`cmd`].
//!
//! The library half exists so the end-to-end tests in `tests/` and the demo
//! can drive the same code the binary runs.
#![forbid(unsafe_code)]

pub mod approval;
pub mod ceremony;
pub mod cmd;
pub mod config;
pub mod control;
pub mod error;
pub mod peer_text;
pub mod private_file;
pub mod prompt;
pub mod replay;
pub mod vault;
pub mod vault_session;

pub use error::Error;

/// A boxed, sendable future: what the async seams (front-ends, the CTAP
/// authenticator, the data channel) return, so they stay object-safe
/// without extra crates.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
