//! hybrid-tunnel-names: the pure names of the hybrid transport's tunnel
//! layer (hybrid-protocol.md §4) — tunnel-server domain IDs and their host
//! names (assigned and hashed, §4.1) and which IDs a desktop accepts in an
//! advert (§3.3 step 5), the `new` / `connect` / `contact` URLs and header
//! names (§4.2), tunnel and routing IDs.
//!
//! **Owns** these rules, written once: `hybrid-ble` checks a decrypted
//! advert's domain with [`domain_id_acceptable`], `hybrid-session` builds
//! the phone's URL with [`TunnelBase`], and `hybrid-tunnel` (the tokio
//! WebSocket client and server) re-exports this crate as
//! `hybrid_tunnel::names`.
//!
//! **Does not own** any IO: no sockets, no tokio, no clock — so the sans-IO
//! protocol crates can use the names without pulling in a runtime. Nor
//! deriving the tunnel ID from the QR secret (`hybrid-ble`'s `derive`).
#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};

/// Errors of the tunnel names.
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
    /// A `ws://` (unencrypted) base URL whose host is not a loopback address.
    #[error(
        "tunnel base URL {0:?} is unencrypted ws:// to a host that is not loopback: \
         use wss://, or opt in to plain ws:// explicitly"
    )]
    PlainToRemote(String),
}

/// Domain IDs below this are assigned (an index into [`ASSIGNED_DOMAINS`],
/// more to come); IDs at or above it name a hashed domain (§4.1).
pub const FIRST_HASHED_DOMAIN: u16 = 256;

/// The WebSocket subprotocol every tunnel connection must negotiate
/// (Chromium `kCableWebSocketProtocol`, §4.2).
pub const SUBPROTOCOL: &str = "fido.cable";
/// Response header on `/cable/new/` carrying the routing ID as hex (§4.2).
pub const HEADER_ROUTING_ID: &str = "X-caBLE-Routing-ID";
/// Request header on `/cable/contact/` carrying the client payload (§4.2).
pub const HEADER_CLIENT_PAYLOAD: &str = "X-caBLE-Client-Payload";
/// Request/response header asking the server to signal the phone's arrival (§4.2).
pub const HEADER_SIGNAL_CONNECTION: &str = "X-caBLE-Signal-Connection";

/// The assigned tunnel-server domains, indexed by domain ID (Chromium
/// `kAssignedDomains`, §4.1): 0 is Google's, 1 is Apple's.
pub const ASSIGNED_DOMAINS: [&str; 2] = ["cable.ua5v.com", "cable.auth.com"];

/// The domain-hash prefix of §4.1 (28 ASCII bytes).
const HASHED_DOMAIN_PREFIX: &[u8] = b"caBLEv2 tunnel server domain";
const BASE32_CHARS: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const TLDS: [&str; 4] = ["com", "org", "net", "info"];

/// Whether a desktop that knows `known_assigned` assigned domains (QR key 2)
/// accepts an advert naming `domain_id` (§3.3 step 5: `id >= 256` or
/// `id < known_assigned`).
pub fn domain_id_acceptable(domain_id: u16, known_assigned: u64) -> bool {
    domain_id >= FIRST_HASHED_DOMAIN || u64::from(domain_id) < known_assigned
}

/// The host name of a tunnel-server domain ID (§4.1): an assigned name for
/// 0 and 1, the hashed name for IDs ≥ 256, an error for 2..=255.
pub fn domain_name(domain_id: u16) -> Result<String, TunnelError> {
    if let Some(name) = ASSIGNED_DOMAINS.get(usize::from(domain_id)) {
        return Ok((*name).to_owned());
    }
    if domain_id < FIRST_HASHED_DOMAIN {
        return Err(TunnelError::UnassignedDomain(domain_id));
    }
    let mut input = Vec::with_capacity(HASHED_DOMAIN_PREFIX.len() + 3);
    input.extend_from_slice(HASHED_DOMAIN_PREFIX);
    input.extend_from_slice(&domain_id.to_le_bytes());
    input.push(0);
    let digest = Sha256::digest(&input);
    let mut first8 = [0u8; 8];
    first8.copy_from_slice(digest.get(..8).unwrap_or(&[0u8; 8]));
    let mut v = u64::from_le_bytes(first8);
    let tld = TLDS.get((v & 3) as usize).copied().unwrap_or("com");
    v >>= 2;
    let mut name = String::from("cable.");
    while v != 0 {
        let c = BASE32_CHARS.get((v & 31) as usize).copied().unwrap_or(b'a');
        name.push(char::from(c));
        v >>= 5;
    }
    name.push('.');
    name.push_str(tld);
    Ok(name)
}

/// A 16-byte tunnel ID (derived from the QR secret, §2.2 purpose 2).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId(pub [u8; 16]);

impl TunnelId {
    /// Upper-case hex, as Chromium writes it in URLs (`base::HexEncode`).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// Parses 32 hex characters, either case.
    pub fn from_hex(s: &str) -> Result<Self, TunnelError> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| TunnelError::BadTunnelId)?;
        Ok(Self(out))
    }
}

impl core::fmt::Debug for TunnelId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TunnelId({})", self.to_hex())
    }
}

/// The 3-byte routing ID a tunnel server assigns (§4.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingId(pub [u8; 3]);

impl RoutingId {
    /// Upper-case hex (6 characters).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// Parses the `X-caBLE-Routing-ID` header value: hex of exactly 3 bytes,
    /// either case, surrounding whitespace ignored.
    pub fn from_header(value: &str) -> Result<Self, TunnelError> {
        let mut out = [0u8; 3];
        hex::decode_to_slice(value.trim(), &mut out).map_err(|_| TunnelError::BadRoutingId)?;
        Ok(Self(out))
    }
}

impl core::fmt::Debug for RoutingId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RoutingId({})", self.to_hex())
    }
}

/// Where tunnel connections go: a domain ID's derived host over `wss://`, or
/// an explicit base URL (`ws://127.0.0.1:PORT`, `wss://tunnel.example`) for
/// self-hosted servers and tests, which keeps the advertised domain ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelBase {
    /// `wss://<domain_name(id)>`.
    Domain(u16),
    /// An explicit base URL without a trailing slash; `domain_id` is what the
    /// advert announces (0, 1 or ≥ 256).
    Url {
        /// The base URL, e.g. `ws://127.0.0.1:8080`.
        base: String,
        /// The domain ID to put in the advert.
        domain_id: u16,
    },
}

impl TunnelBase {
    /// Validates and builds a base-URL override: `wss://` to any host, or
    /// unencrypted `ws://` only to a loopback address (`127.0.0.0/8`,
    /// `[::1]`, `localhost`) — the tunnel carries only Noise-encrypted
    /// traffic, but a plain connection elsewhere exposes who talks to whom
    /// and lets anyone on the path cut or stall ceremonies (issue 16). Use
    /// [`TunnelBase::url_allowing_plain`] to opt in to plain `ws://` anywhere.
    pub fn url(base: &str, domain_id: u16) -> Result<Self, TunnelError> {
        let built = Self::url_allowing_plain(base, domain_id)?;
        if let Self::Url { base, .. } = &built {
            if let Some(rest) = base.strip_prefix("ws://") {
                if !is_loopback_authority(rest) {
                    return Err(TunnelError::PlainToRemote(base.clone()));
                }
            }
        }
        Ok(built)
    }

    /// [`TunnelBase::url`] without the loopback rule for `ws://`: the
    /// caller's explicit opt-in to unencrypted tunnels to other hosts.
    pub fn url_allowing_plain(base: &str, domain_id: u16) -> Result<Self, TunnelError> {
        if usize::from(domain_id) >= ASSIGNED_DOMAINS.len() && domain_id < FIRST_HASHED_DOMAIN {
            return Err(TunnelError::UnassignedDomain(domain_id));
        }
        let base = base.trim_end_matches('/');
        if !(base.starts_with("ws://") || base.starts_with("wss://")) {
            return Err(TunnelError::BadBaseUrl(base.to_owned()));
        }
        Ok(Self::Url {
            base: base.to_owned(),
            domain_id,
        })
    }
}

/// Whether the authority (and any path) after `ws://` names a loopback
/// host: an IPv4 address in 127.0.0.0/8, `[::1]`, or `localhost`
/// (RFC 6761 §6.3). A user-info part (`a@b`) is never loopback.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        }
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl TunnelBase {
    /// The domain ID the advert announces.
    pub fn domain_id(&self) -> u16 {
        match self {
            Self::Domain(id) => *id,
            Self::Url { domain_id, .. } => *domain_id,
        }
    }

    /// The `scheme://host[:port]` prefix.
    pub fn base_url(&self) -> Result<String, TunnelError> {
        match self {
            Self::Domain(id) => Ok(format!("wss://{}", domain_name(*id)?)),
            Self::Url { base, .. } => Ok(base.clone()),
        }
    }

    /// The phone's URL in QR mode: `/cable/new/<TUNNEL ID>` (§4.2).
    pub fn new_url(&self, tunnel_id: &TunnelId) -> Result<String, TunnelError> {
        Ok(format!(
            "{}/cable/new/{}",
            self.base_url()?,
            tunnel_id.to_hex()
        ))
    }

    /// The desktop's URL: `/cable/connect/<ROUTING ID>/<TUNNEL ID>` (§4.2).
    pub fn connect_url(
        &self,
        routing_id: &RoutingId,
        tunnel_id: &TunnelId,
    ) -> Result<String, TunnelError> {
        Ok(format!(
            "{}/cable/connect/{}/{}",
            self.base_url()?,
            routing_id.to_hex(),
            tunnel_id.to_hex()
        ))
    }

    /// The desktop's state-assisted URL: `/cable/contact/<base64url(contact id)>` (§4.2, §9.3).
    pub fn contact_url(&self, contact_id: &[u8]) -> Result<String, TunnelError> {
        Ok(format!(
            "{}/cable/contact/{}",
            self.base_url()?,
            base64url_nopad(contact_id)
        ))
    }

    /// The `Origin` header value Chromium sends: `wss://<host>` (§4.2).
    pub fn origin(&self) -> Result<String, TunnelError> {
        self.base_url()
    }
}

/// Unpadded base64url (RFC 4648 §5), for contact IDs.
pub fn base64url_nopad(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(char::from(A.get(idx).copied().unwrap_or(b'A')));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_and_invalid_ids() {
        assert_eq!(domain_name(0).unwrap(), "cable.ua5v.com");
        assert_eq!(domain_name(1).unwrap(), "cable.auth.com");
        for id in [2u16, 100, 255] {
            assert!(matches!(domain_name(id), Err(TunnelError::UnassignedDomain(x)) if x == id));
        }
        assert_eq!(domain_name(266).unwrap(), "cable.wufkweyy3uaxb.com");
    }

    #[test]
    fn acceptability_follows_known_count() {
        assert!(domain_id_acceptable(0, 1));
        assert!(!domain_id_acceptable(0, 0));
        assert!(!domain_id_acceptable(1, 1));
        assert!(domain_id_acceptable(1, 2));
        assert!(!domain_id_acceptable(2, 2));
        assert!(!domain_id_acceptable(255, 2));
        assert!(domain_id_acceptable(255, 256));
        assert!(domain_id_acceptable(255, u64::MAX));
        assert!(domain_id_acceptable(256, 0));
        assert!(domain_id_acceptable(u16::MAX, 0));
    }

    #[test]
    fn routing_id_header() {
        assert_eq!(RoutingId::from_header("2A0000").unwrap().0, [0x2a, 0, 0]);
        assert_eq!(RoutingId::from_header("2a0000").unwrap().0, [0x2a, 0, 0]);
        assert!(RoutingId::from_header("2A00").is_err());
        assert!(RoutingId::from_header("2A000000").is_err());
        assert!(RoutingId::from_header("zz0000").is_err());
        assert!(RoutingId::from_header("").is_err());
    }

    #[test]
    fn base_url_override_keeps_valid_domain() {
        let b = TunnelBase::url("ws://127.0.0.1:8080/", 0).unwrap();
        let t = TunnelId([0xab; 16]);
        assert_eq!(
            b.new_url(&t).unwrap(),
            format!("ws://127.0.0.1:8080/cable/new/{}", "AB".repeat(16))
        );
        assert!(TunnelBase::url("ws://127.0.0.1", 7).is_err());
        assert!(TunnelBase::url("http://x", 0).is_err());
        assert_eq!(TunnelBase::url("wss://x", 300).unwrap().domain_id(), 300);
    }

    /// Issue 16: unencrypted `ws://` only to loopback unless opted in.
    #[test]
    fn ws_tunnel_url_only_for_loopback_unless_opted_in() {
        for ok in [
            "ws://127.0.0.1:8080",
            "ws://127.8.9.10",
            "ws://localhost:1/",
            "ws://LOCALHOST",
            "ws://[::1]:8080",
            "wss://tunnel.example",
            "wss://203.0.113.5:443",
        ] {
            assert!(TunnelBase::url(ok, 0).is_ok(), "{ok}");
        }
        for remote in [
            "ws://tunnel.example",
            "ws://203.0.113.5:8080",
            "ws://0.0.0.0:8080",
            "ws://[::]:8080",
            "ws://[::ffff:127.0.0.1]:80",
            "ws://127.0.0.1.evil.example",
            "ws://localhost.evil.example",
            "ws://127.0.0.1@evil.example",
            "ws://[::1",
            "ws://:8080",
        ] {
            let e = TunnelBase::url(remote, 0).unwrap_err();
            assert!(matches!(e, TunnelError::PlainToRemote(_)), "{remote}: {e}");
            assert!(e.to_string().contains("wss://"), "{e}");
        }
        assert!(TunnelBase::url("ws://", 0).is_err());
        let opted = TunnelBase::url_allowing_plain("ws://tunnel.example:80/", 0).unwrap();
        assert_eq!(opted.base_url().unwrap(), "ws://tunnel.example:80");
    }

    #[test]
    fn contact_url_base64url() {
        let b = TunnelBase::Domain(0);
        assert_eq!(
            b.contact_url(b"example-contact-id").unwrap(),
            "wss://cable.ua5v.com/cable/contact/ZXhhbXBsZS1jb250YWN0LWlk"
        );
        assert_eq!(base64url_nopad(b""), "");
        assert_eq!(base64url_nopad(b"f"), "Zg");
        assert_eq!(base64url_nopad(b"fo"), "Zm8");
        assert_eq!(base64url_nopad(b"\xff\xfe"), "__4");
    }
}
