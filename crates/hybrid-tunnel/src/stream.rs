//! The byte stream under a tunnel WebSocket: plain TCP (`ws://`) or TLS
//! over TCP (`wss://`, rustls), client or server side. Private plumbing
//! shared by [`crate::client`] and [`crate::server`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One of the transports a tunnel WebSocket runs over.
#[derive(Debug)]
pub enum MaybeTls {
    /// Plain TCP (`ws://`, e.g. loopback or behind a TLS-terminating proxy).
    Plain(TcpStream),
    /// TLS as a client (`wss://`).
    #[cfg(feature = "client")]
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS as a server (the self-hosted server with a certificate).
    #[cfg(feature = "server")]
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "client")]
            Self::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "server")]
            Self::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "client")]
            Self::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "server")]
            Self::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "client")]
            Self::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "server")]
            Self::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "client")]
            Self::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "server")]
            Self::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The rustls crypto provider every TLS config in this crate uses: *ring*,
/// installed explicitly (never the process default, never aws-lc-rs).
pub fn ring_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
