//! Shared helpers for the loopback tests (127.0.0.1 only).
#![allow(dead_code, missing_docs)]
// Test helpers: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use hybrid_tunnel::client::ClientOptions;
use hybrid_tunnel::server::{ServerConfig, ServerHandle, TunnelServer};
use hybrid_tunnel::{TunnelBase, TunnelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn loopback_config() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

pub async fn start(config: ServerConfig) -> ServerHandle {
    TunnelServer::bind(config).await.unwrap().spawn()
}

pub fn base(server: &ServerHandle) -> TunnelBase {
    TunnelBase::url(&server.base_url(), 0).unwrap()
}

pub fn tid(n: u8) -> TunnelId {
    TunnelId([n; 16])
}

/// `tid(n)` as the hex a URL carries.
pub fn hex_id(n: u8) -> String {
    tid(n).to_hex()
}

pub fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

/// Sends a raw HTTP/1.1 request and returns the whole response text (the
/// server closes after non-upgrade answers; for 101 answers, returns the head).
pub async fn raw_http(server: &ServerHandle, request: &str) -> String {
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

pub async fn get(server: &ServerHandle, path: &str) -> String {
    raw_http(
        server,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    )
    .await
}

pub fn upgrade_request(path: &str, subprotocol: Option<&str>) -> String {
    let proto = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{proto}\r\n"
    )
}

/// Reads a metric's value from /metrics text (exact series name with labels).
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A raw tokio-tungstenite client with the fido.cable subprotocol, for
/// sending what our own client never sends (text frames).
pub async fn raw_ws(url: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "fido.cable".parse().unwrap());
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let tcp = TcpStream::connect(host).await.unwrap();
    tokio_tungstenite::client_async(req, tcp).await.unwrap().0
}

/// Bounded wait used by every test step.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test step timed out")
}

/// A TCP connection to the server from the loopback address `src`
/// (127.0.0.0/8 is all local, so any of it is a distinct source).
pub async fn tcp_from(server: &ServerHandle, src: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((src, 0))).unwrap();
    socket.connect(server.local_addr()).await.unwrap()
}

/// [`raw_http`] from the loopback address `src`.
pub async fn raw_http_from(server: &ServerHandle, src: [u8; 4], request: &str) -> String {
    let mut s = tcp_from(server, src).await;
    s.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut s).await
}

/// Reads a response: to EOF, or to the end of a 101 head.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.starts_with(b"HTTP/1.1 101") && out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
