//! The tunnel layer of the hybrid transport (hybrid-protocol.md §4).
//!
//! Owns the tunnel layer's IO: the WebSocket client and the self-hostable
//! tunnel server (tokio), in modules behind cargo features. The pure names
//! — tunnel-server domain IDs and their host names (§4.1), the `new` /
//! `connect` / `contact` URLs and header names (§4.2), routing/tunnel IDs —
//! live in the `hybrid-tunnel-names` crate, re-exported here as [`names`],
//! so the sans-IO crates use them without tokio:
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

pub use hybrid_tunnel_names as names;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(feature = "client", feature = "server"))]
mod stream;

pub use names::{RoutingId, TunnelBase, TunnelError, TunnelId};
