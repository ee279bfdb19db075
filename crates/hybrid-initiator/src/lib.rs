//! hybrid-initiator: the *desktop* side of the hybrid transport (CTAP 2.2
//! §11.5, caBLE v2), for end-to-end tests, benchmarks and `hybridd demo`.
//!
//! **Owns** the desktop's half of a QR-initiated transaction
//! (`hybrid-protocol.md` §0, steps 2–6 seen from the desktop):
//!
//! * a fresh identity key and QR secret per [`Desktop`], the `FIDO:/` URI and
//!   its terminal rendering ([`Desktop::qr_uri`], [`Desktop::qr_terminal`]);
//! * watching for adverts ([`AdvertSource`]: a file-radio file, lines on a
//!   reader, a channel) and accepting only one that decrypts under this QR's
//!   EID key with a known domain (§3.3) — an advert for another QR never
//!   leads to a connection;
//! * mapping the advert's domain ID to a tunnel base ([`Resolver`], so a
//!   real ID can point at a loopback server), connecting (`/cable/connect/`,
//!   §4.2) and running the initiator `KNpsk0` handshake (§5.3);
//! * the post-handshake message and getInfo (§6.2), CTAP requests in `01`
//!   frames and the `00` shutdown (§6.3), with relying-party verification
//!   through [`hybrid_ctap::rp`];
//! * low-level hooks for fault injection (raw msg1, corrupted frames,
//!   unknown message types) and per-phase timings ([`Timeline`]).
//!
//! **Does not own** any protocol rule: QR encoding is `hybrid-qr`, advert
//! crypto `hybrid-ble`, Noise and framing `hybrid-noise`, the WebSocket
//! `hybrid-tunnel`, CTAP encoding and RP checks `hybrid-ctap`. It is a test
//! and demo tool, not a WebAuthn client for real use: it has no UI, no
//! origin checks and no BLE scanner.
//!
//! Secrets (identity key, QR secret, PSK, traffic keys) are zeroized on drop
//! by their owning types and never logged; tracing fields carry only phase
//! names, sizes and timings.
#![forbid(unsafe_code)]

mod advert;
mod desktop;
mod error;
mod resolver;
mod session;
mod timeline;

pub use advert::{AdvertSource, MatchedAdvert};
pub use desktop::Desktop;
pub use error::{Error, Stage};
pub use hybrid_ctap::rp::{AttestationPolicy, RegisteredCredential, RelyingParty};
pub use resolver::Resolver;
pub use session::{Channel, Connection, UserVerification, DEFAULT_IO_TIMEOUT};
pub use timeline::{Phase, Timeline};
