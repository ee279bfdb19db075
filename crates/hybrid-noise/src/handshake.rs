//! The two hybrid Noise handshakes (§5), as typestates over `snow`.
//!
//! * QR mode: `Noise_KNpsk0_P256_AESGCM_SHA256`, prologue `01`, the
//!   initiator's (desktop's) static key is known in advance from the QR (§5.3).
//! * State-assisted mode: `Noise_NKpsk0_P256_AESGCM_SHA256`, prologue `00`,
//!   the responder's (phone's) identity key is known in advance (§5.4).
//!
//! The phone is always the responder: [`Responder::respond`] consumes msg1 and
//! yields msg2 and an [`Established`] session. The desktop side
//! ([`Initiator`] → [`InitiatorAwaitingResponse`]) exists for tests, the demo
//! and benchmarks.
//!
//! Peer input is checked *before* it reaches `snow`: msg1 must hold at least 65
//! bytes and its first 65 bytes must be an uncompressed point on P-256; msg2
//! must be exactly 81 bytes with a valid point. snow's P-256 backend then only
//! ever sees valid points. The local ephemeral key is always generated here
//! (from the caller's `CryptoRngCore`, or fixed for vector tests) and handed
//! to snow as a ready-made scalar: snow's own P-256 `generate` path unwraps on
//! an out-of-range scalar, and injecting the RNG keeps tests deterministic.

use std::fmt;

use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::crypter::Crypter;
use crate::dh;
use crate::error::{Error, HandshakeFailure};
use crate::keys::{parse_uncompressed_point, uncompressed, P256_UNCOMPRESSED_LEN};

/// AES-GCM tag length (§5.2).
const TAG_LEN: usize = 16;
/// Length of both handshake messages when well-formed: point || tag (§5.3).
pub const HANDSHAKE_MESSAGE_LEN: usize = P256_UNCOMPRESSED_LEN + TAG_LEN;
/// Length of the Noise PSK (§2.2 purpose 3).
pub const PSK_LEN: usize = 32;
/// Length of the handshake hash (SHA-256).
pub const HANDSHAKE_HASH_LEN: usize = 32;

/// Which hybrid handshake (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeKind {
    /// QR-initiated: KNpsk0, prologue `01`.
    Qr,
    /// State-assisted (linked): NKpsk0, prologue `00`.
    StateAssisted,
}

impl HandshakeKind {
    /// The Noise protocol name (§5.1).
    pub const fn protocol_name(self) -> &'static str {
        match self {
            HandshakeKind::Qr => "Noise_KNpsk0_P256_AESGCM_SHA256",
            HandshakeKind::StateAssisted => "Noise_NKpsk0_P256_AESGCM_SHA256",
        }
    }

    /// The one-byte prologue (§5.1).
    pub const fn prologue(self) -> &'static [u8] {
        match self {
            HandshakeKind::Qr => &[0x01],
            HandshakeKind::StateAssisted => &[0x00],
        }
    }
}

/// Where the local ephemeral key comes from.
pub enum Ephemeral<'a> {
    /// A fresh key from a cryptographic RNG. The only choice for real sessions.
    Random(&'a mut dyn CryptoRngCore),
    /// A caller-chosen key, **for test vectors only**: reusing an ephemeral
    /// key destroys the handshake's forward secrecy.
    Fixed(&'a SecretKey),
}

impl fmt::Debug for Ephemeral<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ephemeral::Random(_) => f.write_str("Ephemeral::Random"),
            Ephemeral::Fixed(_) => f.write_str("Ephemeral::Fixed(<redacted>)"),
        }
    }
}

impl Ephemeral<'_> {
    fn scalar_bytes(self) -> Zeroizing<[u8; 32]> {
        let key = match self {
            Ephemeral::Random(mut rng) => SecretKey::random(&mut rng),
            Ephemeral::Fixed(k) => k.clone(),
        };
        let mut out = Zeroizing::new([0u8; 32]);
        *out = key.to_bytes().into();
        out
    }
}

/// A finished handshake: the transport [`Crypter`] and the handshake hash
/// (channel binding for the linking signature, §9.2).
pub struct Established {
    crypter: Crypter,
    handshake_hash: [u8; HANDSHAKE_HASH_LEN],
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("crypter", &self.crypter)
            .field("handshake_hash", &"<redacted>")
            .finish()
    }
}

impl Established {
    /// The final Noise `h` (§5.2 "Handshake hash").
    pub fn handshake_hash(&self) -> &[u8; HANDSHAKE_HASH_LEN] {
        &self.handshake_hash
    }

    /// The transport cipher for this session.
    pub fn crypter_mut(&mut self) -> &mut Crypter {
        &mut self.crypter
    }

    /// Splits into the transport cipher and the handshake hash.
    pub fn into_parts(self) -> (Crypter, [u8; HANDSHAKE_HASH_LEN]) {
        (self.crypter, self.handshake_hash)
    }
}

/// The static key material of one side.
enum LocalStatic {
    /// We know the peer's static public key (KN responder, NK initiator).
    RemotePublic(PublicKey),
    /// We hold our own static private key (KN initiator, NK responder).
    LocalSecret(SecretKey),
}

/// Everything needed to build a snow handshake state.
struct Setup {
    kind: HandshakeKind,
    psk: Zeroizing<[u8; PSK_LEN]>,
    key: LocalStatic,
}

impl Setup {
    fn build(
        &self,
        initiator: bool,
        ephemeral: Ephemeral<'_>,
    ) -> Result<snow::HandshakeState, Error> {
        let params: snow::params::NoiseParams =
            self.kind.protocol_name().parse().map_err(Error::Setup)?;
        let e = ephemeral.scalar_bytes();
        // P-256 through AWS-LC (crate::dh), for both roles.
        let builder = snow::Builder::with_resolver(params, Box::new(dh::Resolver))
            .prologue(self.kind.prologue())
            .map_err(Error::Setup)?
            .psk(0, &self.psk)
            .map_err(Error::Setup)?
            .fixed_ephemeral_key_for_testing_only(e.as_ref());
        let remote;
        let local;
        let builder = match &self.key {
            LocalStatic::RemotePublic(pk) => {
                remote = uncompressed(pk);
                builder.remote_public_key(&remote).map_err(Error::Setup)?
            }
            LocalStatic::LocalSecret(sk) => {
                local = Zeroizing::new(<[u8; 32]>::from(sk.to_bytes()));
                builder
                    .local_private_key(local.as_ref())
                    .map_err(Error::Setup)?
            }
        };
        if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(Error::Setup)
    }
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup")
            .field("kind", &self.kind)
            .field("psk", &"<redacted>")
            .field("static_key", &"<redacted>")
            .finish()
    }
}

fn read_failure(e: snow::Error) -> HandshakeFailure {
    match e {
        snow::Error::Decrypt => HandshakeFailure::AeadFailed,
        other => HandshakeFailure::Noise(other),
    }
}

fn finish_split(hs: &mut snow::HandshakeState, initiator: bool) -> Result<Established, Error> {
    let hash: [u8; HANDSHAKE_HASH_LEN] = hs
        .get_handshake_hash()
        .try_into()
        .map_err(|_| Error::Setup(snow::Error::Input))?;
    let (k1, k2) = hs.dangerously_get_raw_split();
    let (k1, k2) = (Zeroizing::new(k1), Zeroizing::new(k2));
    // §5.2 Split: initiator write = k1, read = k2; responder read = k1, write = k2.
    let crypter = if initiator {
        Crypter::new(&k2, &k1)
    } else {
        Crypter::new(&k1, &k2)
    };
    Ok(Established {
        crypter,
        handshake_hash: hash,
    })
}

/// The phone's side of a handshake, waiting for msg1.
#[derive(Debug)]
pub struct Responder(Setup);

impl Responder {
    /// QR mode (KNpsk0, §5.3): `psk` from the advert plaintext,
    /// `desktop_identity` = QR key 0.
    pub fn qr(psk: &[u8; PSK_LEN], desktop_identity: &PublicKey) -> Self {
        Responder(Setup {
            kind: HandshakeKind::Qr,
            psk: Zeroizing::new(*psk),
            key: LocalStatic::RemotePublic(*desktop_identity),
        })
    }

    /// State-assisted mode (NKpsk0, §5.4) with the phone's identity key.
    pub fn state_assisted(psk: &[u8; PSK_LEN], phone_identity: &SecretKey) -> Self {
        Responder(Setup {
            kind: HandshakeKind::StateAssisted,
            psk: Zeroizing::new(*psk),
            key: LocalStatic::LocalSecret(phone_identity.clone()),
        })
    }

    /// Which handshake this is.
    pub fn kind(&self) -> HandshakeKind {
        self.0.kind
    }

    /// Processes msg1 and returns msg2 (81 bytes) and the established session.
    ///
    /// Every error is `Error::HandshakeFailed` for peer input; per §5.3 the
    /// caller then sends nothing, closes the tunnel and does not retry.
    pub fn respond(
        self,
        msg1: &[u8],
        ephemeral: Ephemeral<'_>,
    ) -> Result<(Vec<u8>, Established), Error> {
        let point = msg1
            .get(..P256_UNCOMPRESSED_LEN)
            .ok_or(HandshakeFailure::MessageTooShort { len: msg1.len() })?;
        parse_uncompressed_point(point).ok_or(HandshakeFailure::InvalidPoint)?;
        let mut hs = self.0.build(false, ephemeral)?;
        let mut payload = Zeroizing::new(vec![0u8; msg1.len()]);
        let n = hs.read_message(msg1, &mut payload).map_err(read_failure)?;
        if n != 0 {
            return Err(HandshakeFailure::NonEmptyPayload { len: n }.into());
        }
        let mut msg2 = vec![0u8; HANDSHAKE_MESSAGE_LEN];
        let written = hs
            .write_message(&[], &mut msg2)
            .map_err(HandshakeFailure::Noise)?;
        msg2.truncate(written);
        let established = finish_split(&mut hs, false)?;
        Ok((msg2, established))
    }
}

/// The desktop's side of a handshake before msg1 is sent.
#[derive(Debug)]
pub struct Initiator(Setup);

impl Initiator {
    /// QR mode (KNpsk0): the desktop holds the identity key whose public half
    /// is QR key 0.
    pub fn qr(psk: &[u8; PSK_LEN], desktop_identity: &SecretKey) -> Self {
        Initiator(Setup {
            kind: HandshakeKind::Qr,
            psk: Zeroizing::new(*psk),
            key: LocalStatic::LocalSecret(desktop_identity.clone()),
        })
    }

    /// State-assisted mode (NKpsk0): the desktop knows the phone's identity
    /// public key from linking.
    pub fn state_assisted(psk: &[u8; PSK_LEN], phone_identity: &PublicKey) -> Self {
        Initiator(Setup {
            kind: HandshakeKind::StateAssisted,
            psk: Zeroizing::new(*psk),
            key: LocalStatic::RemotePublic(*phone_identity),
        })
    }

    /// Builds msg1 (81 bytes).
    pub fn start(
        self,
        ephemeral: Ephemeral<'_>,
    ) -> Result<(InitiatorAwaitingResponse, Vec<u8>), Error> {
        let mut hs = self.0.build(true, ephemeral)?;
        let mut msg1 = vec![0u8; HANDSHAKE_MESSAGE_LEN];
        let written = hs.write_message(&[], &mut msg1).map_err(Error::Setup)?;
        msg1.truncate(written);
        Ok((InitiatorAwaitingResponse { hs }, msg1))
    }
}

/// The desktop's side after msg1, waiting for msg2.
pub struct InitiatorAwaitingResponse {
    hs: snow::HandshakeState,
}

impl fmt::Debug for InitiatorAwaitingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InitiatorAwaitingResponse(<redacted>)")
    }
}

impl InitiatorAwaitingResponse {
    /// Processes msg2: exactly 81 bytes (newest Chromium), a valid point, an
    /// AEAD that opens to an empty payload (§5.3, desktop mirror rules).
    pub fn finish(mut self, msg2: &[u8]) -> Result<Established, Error> {
        if msg2.len() != HANDSHAKE_MESSAGE_LEN {
            return Err(HandshakeFailure::WrongResponseLength { len: msg2.len() }.into());
        }
        let point = msg2
            .get(..P256_UNCOMPRESSED_LEN)
            .ok_or(HandshakeFailure::WrongResponseLength { len: msg2.len() })?;
        parse_uncompressed_point(point).ok_or(HandshakeFailure::InvalidPoint)?;
        let mut payload = Zeroizing::new(vec![0u8; msg2.len()]);
        let n = self
            .hs
            .read_message(msg2, &mut payload)
            .map_err(read_failure)?;
        if n != 0 {
            return Err(HandshakeFailure::NonEmptyPayload { len: n }.into());
        }
        finish_split(&mut self.hs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derive_p256_from_secret;

    const PSK: [u8; 32] = [7; 32];

    fn keys() -> (SecretKey, SecretKey, SecretKey, SecretKey) {
        let k = |s: &[u8]| derive_p256_from_secret(s).unwrap();
        (k(b"desktop"), k(b"phone"), k(b"de"), k(b"pe"))
    }

    fn qr_msg1(psk: &[u8; 32]) -> (InitiatorAwaitingResponse, Vec<u8>) {
        let (desktop, _, de, _) = keys();
        Initiator::qr(psk, &desktop)
            .start(Ephemeral::Fixed(&de))
            .unwrap()
    }

    fn respond_qr(msg1: &[u8]) -> Result<(Vec<u8>, Established), Error> {
        let (desktop, _, _, pe) = keys();
        Responder::qr(&PSK, &desktop.public_key()).respond(msg1, Ephemeral::Fixed(&pe))
    }

    fn failure(r: Result<impl fmt::Debug, Error>) -> HandshakeFailure {
        match r {
            Err(Error::HandshakeFailed(f)) => f,
            other => panic!("expected HandshakeFailed, got {other:?}"),
        }
    }

    #[test]
    fn random_ephemerals_agree() {
        let (desktop, phone, _, _) = keys();
        let mut rng = rand_core::OsRng;
        for kind in [HandshakeKind::Qr, HandshakeKind::StateAssisted] {
            let (init, resp) = match kind {
                HandshakeKind::Qr => (
                    Initiator::qr(&PSK, &desktop),
                    Responder::qr(&PSK, &desktop.public_key()),
                ),
                HandshakeKind::StateAssisted => (
                    Initiator::state_assisted(&PSK, &phone.public_key()),
                    Responder::state_assisted(&PSK, &phone),
                ),
            };
            assert_eq!(resp.kind(), kind);
            let (awaiting, msg1) = init.start(Ephemeral::Random(&mut rng)).unwrap();
            assert_eq!(msg1.len(), HANDSHAKE_MESSAGE_LEN);
            let (msg2, p) = resp.respond(&msg1, Ephemeral::Random(&mut rng)).unwrap();
            assert_eq!(msg2.len(), HANDSHAKE_MESSAGE_LEN);
            let d = awaiting.finish(&msg2).unwrap();
            assert_eq!(p.handshake_hash(), d.handshake_hash());
            let (mut pc, _) = p.into_parts();
            let (mut dc, _) = d.into_parts();
            assert_eq!(dc.decrypt(&pc.encrypt(b"hi").unwrap()).unwrap(), b"hi");
            assert_eq!(pc.decrypt(&dc.encrypt(b"yo").unwrap()).unwrap(), b"yo");
        }
    }

    #[test]
    fn short_msg1() {
        let (_, msg1) = qr_msg1(&PSK);
        for n in [0, 1, 64] {
            assert!(matches!(
                failure(respond_qr(&msg1[..n])),
                HandshakeFailure::MessageTooShort { len } if len == n
            ));
        }
        // 65..80 bytes: a point but no complete tag.
        for n in [65, 80] {
            assert!(matches!(
                failure(respond_qr(&msg1[..n])),
                HandshakeFailure::AeadFailed
            ));
        }
    }

    #[test]
    fn off_curve_and_compressed_points() {
        let (_, msg1) = qr_msg1(&PSK);
        let mut bad = msg1.clone();
        bad[64] ^= 1;
        assert!(matches!(
            failure(respond_qr(&bad)),
            HandshakeFailure::InvalidPoint
        ));
        let mut bad = msg1.clone();
        bad[0] = 0x02;
        assert!(matches!(
            failure(respond_qr(&bad)),
            HandshakeFailure::InvalidPoint
        ));
        assert!(matches!(
            failure(respond_qr(&[0u8; 81])),
            HandshakeFailure::InvalidPoint
        ));
        // Also for the state-assisted responder, which does a DH on msg1.
        let (_, phone, _, pe) = keys();
        let mut bad = msg1.clone();
        bad[1] ^= 0x80;
        assert!(matches!(
            failure(Responder::state_assisted(&PSK, &phone).respond(&bad, Ephemeral::Fixed(&pe))),
            HandshakeFailure::InvalidPoint
        ));
    }

    #[test]
    fn bad_tag_and_wrong_psk() {
        let (_, msg1) = qr_msg1(&PSK);
        let mut bad = msg1.clone();
        bad[80] ^= 1;
        assert!(matches!(
            failure(respond_qr(&bad)),
            HandshakeFailure::AeadFailed
        ));
        let (_, other) = qr_msg1(&[8; 32]);
        assert!(matches!(
            failure(respond_qr(&other)),
            HandshakeFailure::AeadFailed
        ));
        // Trailing garbage makes the tag check fail too.
        let mut long = msg1.clone();
        long.push(0);
        assert!(matches!(
            failure(respond_qr(&long)),
            HandshakeFailure::AeadFailed
        ));
    }

    #[test]
    fn non_empty_payload() {
        // Build a msg1 with a payload using snow directly.
        let (desktop, _, de, _) = keys();
        let de_bytes: [u8; 32] = de.to_bytes().into();
        let sk_bytes: [u8; 32] = desktop.to_bytes().into();
        let mut hs = snow::Builder::new(HandshakeKind::Qr.protocol_name().parse().unwrap())
            .prologue(&[1])
            .unwrap()
            .psk(0, &PSK)
            .unwrap()
            .local_private_key(&sk_bytes)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&de_bytes)
            .build_initiator()
            .unwrap();
        let mut msg1 = vec![0u8; 200];
        let n = hs.write_message(b"abc", &mut msg1).unwrap();
        msg1.truncate(n);
        assert!(matches!(
            failure(respond_qr(&msg1)),
            HandshakeFailure::NonEmptyPayload { len: 3 }
        ));
    }

    #[test]
    fn oversized_msg1_is_an_error_not_a_panic() {
        let (_, msg1) = qr_msg1(&PSK);
        let mut huge = msg1.clone();
        huge.resize(70_000, 0);
        assert!(respond_qr(&huge).is_err());
    }

    #[test]
    fn msg2_rules() {
        let (_, msg1) = qr_msg1(&PSK);
        let (msg2, _) = respond_qr(&msg1).unwrap();
        for n in [0, 65, 80, 82] {
            let (awaiting, _) = qr_msg1(&PSK);
            let mut m = msg2.clone();
            m.resize(n, 0);
            assert!(matches!(
                failure(awaiting.finish(&m)),
                HandshakeFailure::WrongResponseLength { len } if len == n
            ));
        }
        let (awaiting, _) = qr_msg1(&PSK);
        let mut bad = msg2.clone();
        bad[64] ^= 1;
        assert!(matches!(
            failure(awaiting.finish(&bad)),
            HandshakeFailure::InvalidPoint
        ));
        let (awaiting, _) = qr_msg1(&PSK);
        let mut bad = msg2.clone();
        bad[70] ^= 1;
        assert!(matches!(
            failure(awaiting.finish(&bad)),
            HandshakeFailure::AeadFailed
        ));
        let (awaiting, _) = qr_msg1(&PSK);
        assert!(awaiting.finish(&msg2).is_ok());
    }

    #[test]
    fn debug_output_is_redacted() {
        let (desktop, _, _, _) = keys();
        let r = Responder::qr(&[0xab; 32], &desktop.public_key());
        let s = format!("{r:?}");
        assert!(s.contains("redacted") && !s.contains("171"), "{s}");
        let (a, _) = qr_msg1(&PSK);
        assert_eq!(format!("{a:?}"), "InitiatorAwaitingResponse(<redacted>)");
    }
}
