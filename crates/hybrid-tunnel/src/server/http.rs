//! The HTTP side of the tunnel server: reading a bounded request head,
//! routing (§4.2 paths), the upgrade checks and the hand-written answers.

use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::names::{HEADER_ROUTING_ID, SUBPROTOCOL};
use crate::stream::MaybeTls;
use crate::{RoutingId, TunnelId};

use super::metrics::Reject;
use super::{Inner, MAX_HEADERS, MAX_REQUEST_HEAD};

/// The parts of a request head the server looks at.
#[derive(Debug, Default)]
pub(super) struct RequestHead {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
}

impl RequestHead {
    pub(super) fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether `fido.cable` is among the offered subprotocols (§4.2).
    /// Subprotocol names are case-sensitive (RFC 6455 §4.1).
    pub(super) fn offers_subprotocol(&self) -> bool {
        self.header("Sec-WebSocket-Protocol")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == SUBPROTOCOL)
    }
}

/// Parses a complete request head; `Ok(None)` when more bytes are needed.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let head = RequestHead {
                method: req.method.unwrap_or("").to_owned(),
                path: req.path.unwrap_or("").to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Reject::HeadTooLarge),
        Err(_) => Err(Reject::BadRequest),
    }
}

/// Reads a request head (at most [`MAX_REQUEST_HEAD`] bytes); returns it and
/// any bytes read past it.
pub(super) async fn read_head(
    stream: &mut MaybeTls,
) -> Result<(RequestHead, Vec<u8>), Option<Reject>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_REQUEST_HEAD.saturating_sub(buf.len());
        if room == 0 {
            return Err(Some(Reject::HeadTooLarge));
        }
        let want = room.min(chunk.len());
        let n = stream
            .read(chunk.get_mut(..want).unwrap_or(&mut []))
            .await
            .map_err(|_| None)?;
        if n == 0 {
            // The client went away before sending a whole head; nothing to answer.
            return Err(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if let Some((head, len)) = parse_head(&buf).map_err(Some)? {
            let rest = buf.get(len..).map(<[u8]>::to_vec).unwrap_or_default();
            return Ok((head, rest));
        }
    }
}

/// The client address a trusted reverse proxy appended to
/// `X-Forwarded-For`: the last entry of the last such header (earlier ones
/// came from the client and prove nothing). `None` when absent or not an
/// IP address.
pub(super) fn forwarded_for(head: &RequestHead) -> Option<IpAddr> {
    let last = head.header("X-Forwarded-For").last()?;
    let entry = last.rsplit(',').next()?.trim();
    // A bracketed IPv6 address, possibly with a port, or a bare address.
    let bare = entry
        .strip_prefix('[')
        .and_then(|v6| v6.split(']').next())
        .unwrap_or(entry);
    bare.parse().ok()
}

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Healthz,
    Metrics,
    New(TunnelId),
    Connect(RoutingId, TunnelId),
    Refuse(Reject),
}

/// Routes a request path (query string ignored).
pub(super) fn route(path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or("");
    match path {
        "/healthz" => return Route::Healthz,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/cable/new/") {
        return match TunnelId::from_hex(id) {
            Ok(id) => Route::New(id),
            Err(_) => Route::Refuse(Reject::BadTunnelId),
        };
    }
    if let Some(rest) = path.strip_prefix("/cable/connect/") {
        let Some((routing, tunnel)) = rest.split_once('/') else {
            return Route::Refuse(Reject::NotFound);
        };
        let Ok(routing) = routing_id_from_path(routing) else {
            return Route::Refuse(Reject::WrongRoutingId);
        };
        return match TunnelId::from_hex(tunnel) {
            Ok(id) => Route::Connect(routing, id),
            Err(_) => Route::Refuse(Reject::BadTunnelId),
        };
    }
    Route::Refuse(Reject::NotFound)
}

/// Exactly 6 hex characters (no whitespace in a path).
pub(super) fn routing_id_from_path(s: &str) -> Result<RoutingId, crate::TunnelError> {
    if s.len() != 6 {
        return Err(crate::TunnelError::BadRoutingId);
    }
    RoutingId::from_header(s)
}

/// Checks what every tunnel request needs: a WebSocket upgrade offering
/// `fido.cable` (§4.2), and the configured `Origin` host if any.
pub(super) fn check_upgrade(
    head: &RequestHead,
    origin_host: Option<&str>,
) -> Result<String, Reject> {
    let key = head.header("Sec-WebSocket-Key").next();
    let version_ok = head
        .header("Sec-WebSocket-Version")
        .any(|v| v.trim() == "13");
    let (Some(key), true, true, true) = (
        key,
        version_ok,
        head.has_token("Upgrade", "websocket"),
        head.has_token("Connection", "upgrade"),
    ) else {
        return Err(Reject::NotWebSocket);
    };
    if !head.offers_subprotocol() {
        return Err(Reject::NoSubprotocol);
    }
    if let Some(want) = origin_host {
        let ok = head
            .header("Origin")
            .next()
            .is_some_and(|o| origin_host_matches(o, want));
        if !ok {
            return Err(Reject::Origin);
        }
    }
    Ok(derive_accept_key(key.trim().as_bytes()))
}

/// `scheme://host[:port]` → compares `host` case-insensitively.
pub(super) fn origin_host_matches(origin: &str, want: &str) -> bool {
    let Some((_, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let authority = authority.trim_end_matches('/');
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case(want.trim_start_matches('[').trim_end_matches(']'))
}

pub(super) fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete, bodiless response for a refusal answered without reading the
/// request (at accept).
pub(super) fn fixed_response(r: Reject) -> String {
    let status = r.status();
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        status_text(status)
    )
}

/// Writes a plain (non-upgrade) response and closes our sending side.
pub(super) async fn respond(stream: &mut MaybeTls, status: u16, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status_text(status),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

pub(super) async fn refuse(inner: &Inner, stream: &mut MaybeTls, r: Reject) {
    inner.metrics.reject(r);
    let status = r.status();
    let body = format!("{} {}\n", status_text(status), r.label());
    respond(stream, status, "text/plain; charset=utf-8", &body).await;
}

/// Writes the 101 answer: `fido.cable` selected, plus the routing id on `new` (§4.2).
pub(super) async fn switch_protocols(
    stream: &mut MaybeTls,
    accept: &str,
    routing_id: Option<RoutingId>,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
    );
    if let Some(id) = routing_id {
        head.push_str(&format!("{HEADER_ROUTING_ID}: {}\r\n", id.to_hex()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let t = "ab".repeat(16);
        assert_eq!(
            route(&format!("/cable/new/{t}")),
            Route::New(TunnelId([0xab; 16]))
        );
        assert_eq!(
            route(&format!("/cable/new/{}", t.to_uppercase())),
            Route::New(TunnelId([0xab; 16]))
        );
        assert_eq!(route("/cable/new/abcd"), Route::Refuse(Reject::BadTunnelId));
        assert_eq!(
            route(&format!("/cable/connect/0A0B0c/{t}?x=1")),
            Route::Connect(RoutingId([10, 11, 12]), TunnelId([0xab; 16]))
        );
        assert_eq!(
            route(&format!("/cable/connect/0A0B/{t}")),
            Route::Refuse(Reject::WrongRoutingId)
        );
        assert_eq!(
            route(&format!("/cable/connect/%200A0B0C/{t}")),
            Route::Refuse(Reject::WrongRoutingId)
        );
        assert_eq!(
            route("/cable/connect/0A0B0C"),
            Route::Refuse(Reject::NotFound)
        );
        assert_eq!(route("/cable/contact/abc"), Route::Refuse(Reject::NotFound));
        assert_eq!(route("/"), Route::Refuse(Reject::NotFound));
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/metrics?x"), Route::Metrics);
    }

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        }
    }

    const WS: [(&str, &str); 4] = [
        ("Upgrade", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn upgrade_checks() {
        let mut h = WS.to_vec();
        assert_eq!(check_upgrade(&head(&h), None), Err(Reject::NoSubprotocol));
        h.push(("Sec-WebSocket-Protocol", "chat, fido.cable"));
        // RFC 6455 §1.3 example key.
        assert_eq!(
            check_upgrade(&head(&h), None).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(
            check_upgrade(&head(&h), Some("example.com")),
            Err(Reject::Origin)
        );
        h.push(("Origin", "wss://Example.com:443"));
        assert!(check_upgrade(&head(&h), Some("example.com")).is_ok());
        assert_eq!(
            check_upgrade(&head(&h), Some("other.com")),
            Err(Reject::Origin)
        );
        let no_key: Vec<_> = h
            .iter()
            .filter(|(n, _)| *n != "Sec-WebSocket-Key")
            .copied()
            .collect();
        assert_eq!(
            check_upgrade(&head(&no_key), None),
            Err(Reject::NotWebSocket)
        );
        let upper = [WS.as_slice(), &[("Sec-WebSocket-Protocol", "FIDO.CABLE")]].concat();
        assert_eq!(
            check_upgrade(&head(&upper), None),
            Err(Reject::NoSubprotocol)
        );
    }

    #[test]
    fn forwarded_for_takes_the_proxys_entry() {
        let h = |v: &[&str]| {
            head(
                &v.iter()
                    .map(|v| ("X-Forwarded-For", *v))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(forwarded_for(&h(&[])), None);
        assert_eq!(
            forwarded_for(&h(&["10.9.9.9, 192.0.2.7"])),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            forwarded_for(&h(&["203.0.113.1", " 2001:db8::5 "])),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(
            forwarded_for(&h(&["[2001:db8::6]:443"])),
            Some("2001:db8::6".parse().unwrap())
        );
        assert_eq!(forwarded_for(&h(&["192.0.2.1, unknown"])), None);
        assert!(fixed_response(Reject::TooManyFromSource).starts_with("HTTP/1.1 429 "));
    }

    #[test]
    fn origin_hosts() {
        assert!(origin_host_matches("wss://cable.example", "cable.example"));
        assert!(origin_host_matches("https://[::1]:8443", "::1"));
        assert!(!origin_host_matches("cable.example", "cable.example"));
        assert!(!origin_host_matches("null", "cable.example"));
    }

    #[test]
    fn head_parsing() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        ));
        let (h, len) = parse_head(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), len),
            ("GET", "/healthz", 34)
        );
        assert!(matches!(
            parse_head(b"\x00\x01garbage\r\n\r\n"),
            Err(Reject::BadRequest)
        ));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_head(req.as_bytes()),
            Err(Reject::HeadTooLarge)
        ));
    }
}
