//! The one error type of the desktop side.

use std::time::Duration;

/// Where in a transaction the desktop was when something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Waiting for an advert that decrypts under this QR (§3.3).
    Advert,
    /// Opening `/cable/connect/` (§4.2).
    Tunnel,
    /// Waiting for msg2 (§5.3).
    Handshake,
    /// Waiting for the post-handshake message (§6.2).
    PostHandshake,
    /// Waiting for a CTAP reply (§6.3).
    Reply,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Advert => "waiting for an advert",
            Stage::Tunnel => "opening the tunnel",
            Stage::Handshake => "waiting for the handshake response",
            Stage::PostHandshake => "waiting for the post-handshake message",
            Stage::Reply => "waiting for a CTAP reply",
        })
    }
}

/// Why a desktop-side step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Building the QR code failed.
    #[error("could not build the QR code: {0}")]
    Qr(#[from] hybrid_qr::QrError),
    /// Rendering the QR code for the terminal failed.
    #[error("could not render the QR code: {0}")]
    QrRender(String),
    /// The identity key could not be derived (probability 2^-256).
    #[error("identity key: {0}")]
    Key(hybrid_noise::Error),
    /// A candidate advert was not 40 hex characters / 20 bytes.
    #[error("advert is not 20 bytes of hex")]
    AdvertFormat,
    /// The advert source ended (file unreadable, reader at EOF, channel
    /// closed) before a matching advert arrived.
    #[error("the advert source ended before an advert for this QR code arrived ({0})")]
    AdvertSourceEnded(String),
    /// A domain ID the resolver does not map (or 2..=255, §4.1).
    #[error("tunnel domain {0} cannot be resolved: {1}")]
    Resolve(u16, hybrid_tunnel::TunnelError),
    /// The tunnel could not be opened or failed.
    #[error("tunnel: {0}")]
    Tunnel(#[from] hybrid_tunnel::client::ClientError),
    /// The handshake, the Crypter or the post-handshake message failed
    /// (desktop mirror rules, §5.3/§5.5/§6.2).
    #[error("noise: {0}")]
    Noise(#[from] hybrid_noise::Error),
    /// The post-handshake message was malformed (§6.2).
    #[error("post-handshake message: {0}")]
    PostHandshake(#[from] hybrid_noise::PostHandshakeError),
    /// A frame from the phone broke §6.3.
    #[error("frame from the phone: {0}")]
    Frame(#[from] hybrid_noise::FrameError),
    /// The phone sent a frame the desktop did not expect (e.g. a shutdown,
    /// or JSON in reply to CTAP; §6.3).
    #[error("unexpected {0} frame from the phone")]
    UnexpectedFrame(&'static str),
    /// getInfo, a CTAP status or the RP verification failed.
    #[error("ctap: {0}")]
    Ctap(#[from] hybrid_ctap::Error),
    /// The phone (or the tunnel server) closed the tunnel.
    #[error("the tunnel closed while {0}")]
    Closed(Stage),
    /// A step took too long.
    #[error("timed out after {1:?} {0}")]
    Timeout(Stage, Duration),
}
