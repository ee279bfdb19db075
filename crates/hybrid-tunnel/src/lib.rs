//! The tunnel layer of the hybrid transport (hybrid-protocol.md §4).
//!
//! Owns: tunnel-server domain IDs and their host names (assigned and hashed,
//! §4.1), the `new` / `connect` / `contact` URLs and header names (§4.2), and
//! routing/tunnel IDs — all pure, in [`names`]. The WebSocket client and the
//! self-hostable tunnel server (tokio) live in modules behind cargo features:
//!
//! * `client` (default): [`client::connect_new`] (phone, `/cable/new/`) and
//!   [`client::connect_desktop`] (desktop, `/cable/connect/`) over `ws://` or
//!   `wss://` (rustls with the *ring* provider, webpki roots + an optional extra CA);
//! * `server` (default): [`server::TunnelServer`], a self-hostable tunnel
//!   server compatible with Chromium's and webauthn-rs's clients (§4.2).
//!
//! Does not own: deriving the tunnel ID from the QR secret (`hybrid-ble`'s
//! `derive`), the Noise handshake or anything carried inside the tunnel.
#![forbid(unsafe_code)]

pub mod names;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(feature = "client", feature = "server"))]
mod stream;

pub use names::{RoutingId, TunnelBase, TunnelId};

/// Errors of the tunnel layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// Domain IDs 2..=255 are assigned-but-unknown and every desktop rejects them (§4.1).
    #[error("tunnel domain id {0} is invalid: ids 2..=255 are unassigned (use 0, 1 or >= 256)")]
    UnassignedDomain(u16),
    /// A routing ID that is not 3 bytes of hex (§4.2).
    #[error("routing id is not exactly 3 bytes of hex")]
    BadRoutingId,
    /// A tunnel ID that is not 16 bytes of hex (§4.2).
    #[error("tunnel id is not exactly 16 bytes (32 hex characters)")]
    BadTunnelId,
    /// A base URL that is not `ws://` or `wss://`.
    #[error("tunnel base URL {0:?} must start with ws:// or wss://")]
    BadBaseUrl(String),
}
