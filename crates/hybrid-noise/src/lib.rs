//! hybrid-noise: the cryptographic session layer of the hybrid transport
//! (`hybrid-protocol.md` §5, §6, §9.2), phone (responder) side first.
//!
//! Owns:
//! * the two Noise handshakes over P-256 — QR-mode `KNpsk0` and state-assisted
//!   `NKpsk0` — for the responder (the phone) and the initiator (our test
//!   desktop, demo and benchmarks) ([`handshake`], built on `snow`);
//! * the transport cipher "Crypter" with its 32-byte padding and sequence cap
//!   ([`crypter`], §5.5);
//! * revision-1 message-type framing ([`frame`], §6.3);
//! * the post-handshake message, its revision-0 padded form and Chromium's
//!   padding-only update ([`post_handshake`], §6.2, §6.4);
//! * the linking map and its pairing signature ([`linking`], §9.2);
//! * P-256 identity keys derived from a seed ([`keys`], §2.3).
//!
//! Does not own: the PSK and advert (`hybrid-ble`), the QR (`hybrid-qr`), the
//! WebSocket (`hybrid-tunnel`), CTAP semantics of the bytes it carries
//! (`hybrid-ctap`), or any session policy (timeouts, what to do on failure —
//! `hybridd`). It is sans-IO: no sockets, no clocks; randomness through a
//! caller-supplied `rand_core::CryptoRngCore`, except a handshake ephemeral
//! the caller asks AWS-LC to generate ([`Ephemeral::Fresh`], what the phone
//! does: one fixed-base multiplication instead of two). No panic is
//! reachable from peer input.
#![forbid(unsafe_code)]

pub mod crypter;
mod dh;
mod error;
pub mod frame;
pub mod handshake;
pub mod keys;
pub mod linking;
pub mod post_handshake;

pub use crypter::Crypter;
pub use error::{
    DecryptFailure, Error, FrameError, HandshakeFailure, LinkingError, PostHandshakeError,
};
pub use frame::{Frame, MessageType};
pub use handshake::{
    Ephemeral, Established, HandshakeKind, Initiator, InitiatorAwaitingResponse, Responder,
};
pub use keys::derive_p256_from_secret;
pub use linking::{pairing_signature, verify_pairing_signature, LinkingMap};
pub use post_handshake::{PostHandshakeMessage, Revision};

#[cfg(test)]
mod vector_tests;
