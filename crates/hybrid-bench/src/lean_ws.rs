//! The pairs phase's own WebSocket client: just what one pair needs — the
//! upgrade (`fido.cable`), one close frame, reading each leg to its end —
//! with one allocation per connection (the request) and no per-frame
//! machinery.
//!
//! Why not tungstenite here (perf of the generator, pairs phase,
//! docs/performance.md "Tunnel: follow-up 5"): on a 2-core machine the
//! generator and the server share the CPU, so pairs per second measure
//! both; the generator spent ≈ 1.8× the server's CPU per pair, a third of
//! it in tungstenite's client handshake (the `http` crate's request and
//! header maps, base64 and a random key) rather than in the kernel. The
//! cheaper the generator, the more the rate says about the server. The
//! memory and relay phases keep tungstenite; `--pair-client tungstenite`
//! brings it back here for comparison.
//!
//! What is still checked on every connection: status 101, the
//! `Sec-WebSocket-Accept` for our key (RFC 6455 §4.1), the subprotocol, the
//! routing id on `new` (hybrid-protocol.md §4.2), nothing sent before the
//! close, and a close frame before the end of each leg.

use std::net::{Ipv4Addr, SocketAddr};

use hybrid_tunnel::names::{HEADER_ROUTING_ID, SUBPROTOCOL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sample nonce of RFC 6455 §1.3, on every connection. A load
/// generator needs no unpredictable key (it guards against caches and
/// cross-protocol tricks, not against the server), and the server's answer
/// is still checked against it.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` a server must answer [`KEY`] with (RFC 6455 §1.3).
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Bound on a response head.
const HEAD_MAX: usize = 1024;
/// Bound on what a leg may send after its answer (its close frame: at most
/// 2 + 125 bytes).
const TAIL_MAX: usize = 4096;
/// A masked close frame without a body (RFC 6455 §5.5.1), fixed mask.
const CLOSE: [u8; 6] = [0x88, 0x80, 0x5a, 0x13, 0xc4, 0x7e];

/// One upgraded connection, `fido.cable`, from `src` to `addr` at `path`;
/// returns it and the routing id header, if any.
pub(crate) async fn open(
    addr: SocketAddr,
    src: Ipv4Addr,
    path: &str,
) -> Result<(TcpStream, Option<String>), String> {
    let mut tcp = crate::tunnel::connect_from(addr, src).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {:?}", e.kind()))?;
    let mut buf = [0u8; HEAD_MAX];
    let mut filled = 0;
    let head_len = loop {
        let Some(room) = buf.get_mut(filled..).filter(|r| !r.is_empty()) else {
            return Err("response head too long".into());
        };
        let n = tcp
            .read(room)
            .await
            .map_err(|e| format!("read: {:?}", e.kind()))?;
        if n == 0 {
            return Err("eof in the response head".into());
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf.get(..filled).unwrap_or(&[])) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                let routing = check(&response)?;
                break (len, routing);
            }
            Err(e) => return Err(format!("response: {e}")),
        }
    };
    let (len, routing) = head_len;
    if len != filled {
        return Err("data before the first message".into());
    }
    Ok((tcp, routing))
}

/// Status 101 with our accept key and subprotocol; the routing id if sent.
fn check(r: &httparse::Response<'_, '_>) -> Result<Option<String>, String> {
    match r.code {
        Some(101) => {}
        Some(c) => return Err(format!("http {c}")),
        None => return Err("no status".into()),
    }
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if header("sec-websocket-accept") != Some(ACCEPT) {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    if header("sec-websocket-protocol") != Some(SUBPROTOCOL.as_bytes()) {
        return Err("subprotocol not accepted".into());
    }
    Ok(header(HEADER_ROUTING_ID)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned))
}

/// Sends a close frame, then reads to the end ([`read_to_close`]).
pub(crate) async fn close(tcp: &mut TcpStream) -> Result<(), String> {
    tcp.write_all(&CLOSE)
        .await
        .map_err(|e| format!("close: {:?}", e.kind()))?;
    read_to_close(tcp).await
}

/// Reads to the end of the stream, which must bring a close frame first.
pub(crate) async fn read_to_close(tcp: &mut TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 256];
    let mut first = None;
    let mut total = 0usize;
    loop {
        let n = tcp
            .read(&mut buf)
            .await
            .map_err(|e| format!("read to eof: {:?}", e.kind()))?;
        if n == 0 {
            break;
        }
        first = first.or(buf.first().copied());
        total += n;
        if total > TAIL_MAX {
            return Err("too much data before the end".into());
        }
    }
    match first {
        // FIN + opcode 8, unmasked (a server's frame).
        Some(0x88) => Ok(()),
        Some(_) => Err("data instead of a close frame".into()),
        None => Err("eof without a close frame".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_key() {
        let derived = tokio_tungstenite::tungstenite::handshake::derive_accept_key(KEY.as_bytes());
        assert_eq!(derived.as_bytes(), ACCEPT);
    }
}
