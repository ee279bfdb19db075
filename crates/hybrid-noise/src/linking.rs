//! The linking map (§9.2, Chromium `Pairing::Parse`) and its pairing
//! signature.
//!
//! A phone must not send a linking map unless linking is fully implemented
//! (§6.3 "clarified", conformance checklist); this module exists so that the
//! desktop side of our tests can validate one and so the daemon can build one
//! later.

use std::fmt;

use hmac::{Hmac, Mac};
use hybrid_cbor::access::{get_int_key, int};
use hybrid_cbor::Value;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::LinkingError;
use crate::keys::{ecdh_x, parse_uncompressed_point, uncompressed, P256_UNCOMPRESSED_LEN};

/// Length of a pairing ID (`kPairingIDSize`).
pub const PAIRING_ID_LEN: usize = 8;
/// Length of the paired secret.
pub const PAIRED_SECRET_LEN: usize = 32;
/// Length of the pairing signature (HMAC-SHA256).
pub const SIGNATURE_LEN: usize = 32;

/// Map keys (§9.2 table).
const KEY_CONTACT_ID: i64 = 1;
const KEY_PAIRING_ID: i64 = 2;
const KEY_PAIRED_SECRET: i64 = 3;
const KEY_IDENTITY: i64 = 4;
const KEY_NAME: i64 = 5;
const KEY_SIGNATURE: i64 = 6;
const KEY_PLAY_SERVICES: i64 = 999;

/// A linking map: what a phone gives a desktop so it can start a
/// state-assisted transaction later (§9.2).
#[derive(Clone, PartialEq, Eq)]
pub struct LinkingMap {
    /// Key 1: contact ID, opaque to the desktop (Android: FCM token bytes).
    pub contact_id: Vec<u8>,
    /// Key 2: pairing ID ("link ID"), 8 bytes.
    pub pairing_id: [u8; PAIRING_ID_LEN],
    /// Key 3: paired secret ("link secret"), 32 bytes. Zeroized on drop.
    pub paired_secret: Zeroizing<[u8; PAIRED_SECRET_LEN]>,
    /// Key 4: the phone's identity public key (65-byte uncompressed on the wire).
    pub identity_public: PublicKey,
    /// Key 5: the authenticator's display name.
    pub name: String,
    /// Key 6: HMAC-SHA256(ECDH X, handshake hash), see [`pairing_signature`].
    pub signature: [u8; SIGNATURE_LEN],
    /// Key 999: `Some(true)` when produced by Play Services.
    pub play_services: Option<bool>,
}

impl fmt::Debug for LinkingMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkingMap")
            .field("contact_id_len", &self.contact_id.len())
            .field("pairing_id", &"<redacted>")
            .field("paired_secret", &"<redacted>")
            .field("identity_public", &self.identity_public)
            .field("name", &self.name)
            .field("signature", &"<redacted>")
            .field("play_services", &self.play_services)
            .finish()
    }
}

fn bytes_of(entries: &[(Value, Value)], key: i64) -> Result<&[u8], LinkingError> {
    match get_int_key(entries, key) {
        None => Err(LinkingError::MissingKey(key)),
        Some(Value::Bytes(b)) => Ok(b),
        Some(_) => Err(LinkingError::WrongType(key)),
    }
}

fn fixed<const N: usize>(entries: &[(Value, Value)], key: i64) -> Result<[u8; N], LinkingError> {
    let b = bytes_of(entries, key)?;
    b.try_into().map_err(|_| LinkingError::WrongLength {
        key,
        len: b.len(),
        expected: N,
    })
}

impl LinkingMap {
    /// The map as a CBOR value (canonical once encoded).
    pub fn to_value(&self) -> Value {
        let mut entries = vec![
            (int(KEY_CONTACT_ID), Value::Bytes(self.contact_id.clone())),
            (int(KEY_PAIRING_ID), Value::Bytes(self.pairing_id.to_vec())),
            (
                int(KEY_PAIRED_SECRET),
                Value::Bytes(self.paired_secret.to_vec()),
            ),
            (
                int(KEY_IDENTITY),
                Value::Bytes(uncompressed(&self.identity_public).to_vec()),
            ),
            (int(KEY_NAME), Value::Text(self.name.clone())),
            (int(KEY_SIGNATURE), Value::Bytes(self.signature.to_vec())),
        ];
        if let Some(b) = self.play_services {
            entries.push((int(KEY_PLAY_SERVICES), Value::Bool(b)));
        }
        hybrid_cbor::canonicalize(Value::Map(entries))
    }

    /// Canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        hybrid_cbor::to_canonical_vec(&self.to_value())
    }

    /// Parses a CBOR value with Chromium's `Pairing::Parse` checks: keys 1–6
    /// present; 1, 2, 3, 4, 6 byte strings and 5 a text string; lengths 2: 8,
    /// 3: 32, 4: 65 (and a point on P-256), 6: 32; 999, if present, a bool.
    /// Unknown keys are ignored. The signature is *not* verified here: see
    /// [`LinkingMap::verify`].
    pub fn from_value(value: &Value) -> Result<Self, LinkingError> {
        let Value::Map(entries) = value else {
            return Err(LinkingError::NotMap);
        };
        let contact_id = bytes_of(entries, KEY_CONTACT_ID)?.to_vec();
        let pairing_id = fixed::<PAIRING_ID_LEN>(entries, KEY_PAIRING_ID)?;
        let paired_secret = Zeroizing::new(fixed::<PAIRED_SECRET_LEN>(entries, KEY_PAIRED_SECRET)?);
        let identity = fixed::<P256_UNCOMPRESSED_LEN>(entries, KEY_IDENTITY)?;
        let identity_public =
            parse_uncompressed_point(&identity).ok_or(LinkingError::InvalidPublicKey)?;
        let name = match get_int_key(entries, KEY_NAME) {
            None => return Err(LinkingError::MissingKey(KEY_NAME)),
            Some(Value::Text(t)) => t.clone(),
            Some(_) => return Err(LinkingError::WrongType(KEY_NAME)),
        };
        let signature = fixed::<SIGNATURE_LEN>(entries, KEY_SIGNATURE)?;
        let play_services = match get_int_key(entries, KEY_PLAY_SERVICES) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(LinkingError::WrongType(KEY_PLAY_SERVICES)),
        };
        Ok(LinkingMap {
            contact_id,
            pairing_id,
            paired_secret,
            identity_public,
            name,
            signature,
            play_services,
        })
    }

    /// Decodes canonical CBOR bytes and applies [`LinkingMap::from_value`].
    pub fn decode(bytes: &[u8]) -> Result<Self, LinkingError> {
        let value = hybrid_cbor::decode_canonical(bytes).map_err(|_| LinkingError::NotMap)?;
        Self::from_value(&value)
    }

    /// Desktop side: checks key 6 against the desktop's QR identity key and
    /// the handshake hash (constant-time).
    pub fn verify(
        &self,
        desktop_identity: &SecretKey,
        handshake_hash: &[u8; 32],
    ) -> Result<(), LinkingError> {
        verify_pairing_signature(
            desktop_identity,
            &self.identity_public,
            handshake_hash,
            &self.signature,
        )
    }
}

fn hmac_x(x: &[u8; 32], handshake_hash: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    // HMAC accepts keys of any length; new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(x) else {
        return [0u8; SIGNATURE_LEN];
    };
    mac.update(handshake_hash);
    mac.finalize().into_bytes().into()
}

/// Phone side: `HMAC-SHA256(key = ECDH(phone_identity, desktop_identity).X,
/// msg = handshake hash)` (§9.2 key 6).
pub fn pairing_signature(
    phone_identity: &SecretKey,
    desktop_identity: &PublicKey,
    handshake_hash: &[u8; 32],
) -> [u8; SIGNATURE_LEN] {
    let x = ecdh_x(phone_identity, desktop_identity);
    hmac_x(&x, handshake_hash)
}

/// Desktop side: recomputes the signature with the desktop's private key and
/// the phone's public key (ECDH is symmetric) and compares in constant time.
pub fn verify_pairing_signature(
    desktop_identity: &SecretKey,
    phone_identity: &PublicKey,
    handshake_hash: &[u8; 32],
    signature: &[u8],
) -> Result<(), LinkingError> {
    let x = ecdh_x(desktop_identity, phone_identity);
    let expected = hmac_x(&x, handshake_hash);
    if bool::from(expected.as_slice().ct_eq(signature)) {
        Ok(())
    } else {
        Err(LinkingError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derive_p256_from_secret;
    use proptest::prelude::*;

    fn sample() -> LinkingMap {
        LinkingMap {
            contact_id: b"contact".to_vec(),
            pairing_id: [1; 8],
            paired_secret: Zeroizing::new([2; 32]),
            identity_public: derive_p256_from_secret(b"phone").unwrap().public_key(),
            name: "hybridd".into(),
            signature: [3; 32],
            play_services: Some(true),
        }
    }

    fn with(key: i64, v: Value) -> Value {
        let Value::Map(mut entries) = sample().to_value() else {
            unreachable!()
        };
        entries.retain(|(k, _)| *k != int(key));
        entries.push((int(key), v));
        Value::Map(entries)
    }

    fn without(key: i64) -> Value {
        let Value::Map(mut entries) = sample().to_value() else {
            unreachable!()
        };
        entries.retain(|(k, _)| *k != int(key));
        Value::Map(entries)
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(LinkingMap::decode(&m.encode()).unwrap(), m);
        let dbg = format!("{m:?}");
        assert!(!dbg.contains("2, 2, 2"), "{dbg}");
    }

    #[test]
    fn field_checks() {
        use LinkingError as E;
        let p = |v: Value| LinkingMap::from_value(&v);
        assert_eq!(p(Value::Array(vec![])), Err(E::NotMap));
        assert_eq!(LinkingMap::decode(&[0xff]), Err(E::NotMap));
        for k in 1..=6 {
            assert_eq!(p(without(k)), Err(E::MissingKey(k)));
        }
        for k in [1, 2, 3, 4, 6] {
            assert_eq!(p(with(k, Value::Text("x".into()))), Err(E::WrongType(k)));
        }
        assert_eq!(p(with(5, Value::Bytes(vec![]))), Err(E::WrongType(5)));
        assert_eq!(p(with(999, int(1))), Err(E::WrongType(999)));
        for (k, n) in [(2, 8), (3, 32), (4, 65), (6, 32)] {
            assert_eq!(
                p(with(k, Value::Bytes(vec![4; n + 1]))),
                Err(E::WrongLength {
                    key: k,
                    len: n + 1,
                    expected: n
                })
            );
        }
        assert_eq!(
            p(with(4, Value::Bytes(vec![4; 65]))),
            Err(E::InvalidPublicKey)
        );
        assert_eq!(p(without(999)).unwrap().play_services, None);
        assert!(p(with(7, int(0))).is_ok());
    }

    #[test]
    fn signature_verifies_only_for_the_right_inputs() {
        let phone = derive_p256_from_secret(b"phone").unwrap();
        let desktop = derive_p256_from_secret(b"desktop").unwrap();
        let hash = [9u8; 32];
        let sig = pairing_signature(&phone, &desktop.public_key(), &hash);
        assert!(verify_pairing_signature(&desktop, &phone.public_key(), &hash, &sig).is_ok());
        let mut bad = sig;
        bad[0] ^= 1;
        assert_eq!(
            verify_pairing_signature(&desktop, &phone.public_key(), &hash, &bad),
            Err(LinkingError::BadSignature)
        );
        assert_eq!(
            verify_pairing_signature(&desktop, &phone.public_key(), &[8u8; 32], &sig),
            Err(LinkingError::BadSignature)
        );
        assert_eq!(
            verify_pairing_signature(&desktop, &phone.public_key(), &hash, &sig[..31]),
            Err(LinkingError::BadSignature)
        );
        let mut m = sample();
        m.identity_public = phone.public_key();
        m.signature = sig;
        assert!(m.verify(&desktop, &hash).is_ok());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            contact in proptest::collection::vec(any::<u8>(), 0..200),
            pairing_id in any::<[u8; 8]>(),
            secret in any::<[u8; 32]>(),
            name in ".{0,40}",
            signature in any::<[u8; 32]>(),
            play in proptest::option::of(any::<bool>()),
            seed in any::<[u8; 4]>(),
        ) {
            let m = LinkingMap {
                contact_id: contact,
                pairing_id,
                paired_secret: Zeroizing::new(secret),
                identity_public: derive_p256_from_secret(&seed).unwrap().public_key(),
                name,
                signature,
                play_services: play,
            };
            prop_assert_eq!(LinkingMap::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = LinkingMap::decode(&bytes);
        }
    }
}
