//! The desktop / relying-party side: build requests and verify responses as
//! an RP would (WebAuthn §7.1 "Registering a new credential" steps for
//! rpIdHash, flags, attestation; §7.2 "Verifying an authentication
//! assertion" for signature and counter). Used by the test initiator, the
//! demo and end-to-end tests; never by the phone path.

use hybrid_cbor::access::get_int_key;
use hybrid_cbor::Value;

use crate::cbor;
use crate::command::{GetAssertionRequest, MakeCredentialRequest};
use crate::crypto::sha256;
use crate::error::{Error, VerifyError};
use crate::response::{
    split_response, AuthenticatorData, GetAssertionResponse, MakeCredentialResponse, FLAG_UP,
    FLAG_UV,
};
use crate::store::{COSE_EDDSA, COSE_ES256};
use crate::types::{
    CredentialDescriptor, Options, PubKeyCredParam, RpEntity, UserEntity, PUBLIC_KEY,
};

/// A credential as the RP keeps it after registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredCredential {
    /// Credential ID.
    pub id: Vec<u8>,
    /// COSE algorithm.
    pub algorithm: i64,
    /// COSE_Key bytes.
    pub public_key_cose: Vec<u8>,
    /// Last seen signature counter.
    pub sign_count: u32,
    /// AAGUID from the attested credential data.
    pub aaguid: [u8; 16],
}

/// Which `packed` attestation statements a [`RelyingParty`] accepts
/// (WebAuthn §8.2 "Packed Attestation Statement Format"; `none`, §8.7, is
/// always accepted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttestationPolicy {
    /// Self attestation only (no `x5c`: signed by the new credential's own
    /// key) — what hybridd's phone sends; a certificate is refused.
    #[default]
    SelfOnly,
    /// Also basic / AttCA attestation with an `x5c` chain (§8.2 verification
    /// procedure, `x5c` present): `alg` must be ES256 and the signature over
    /// `authData || clientDataHash` must verify with the P-256 key of the
    /// first certificate. The chain is not evaluated against trust anchors
    /// (an RP's attestation policy supplies those; a test RP has none). For
    /// driving other authenticators, e.g. webauthn-rs's `SoftToken`.
    Certificate,
}

/// A relying party for one RP ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// The RP ID.
    pub rp_id: String,
    /// The RP's display name.
    pub rp_name: String,
    /// Which attestation statements [`RelyingParty::verify_registration`]
    /// accepts.
    pub attestation: AttestationPolicy,
}

fn bad(what: &'static str) -> Error {
    Error::Verify(VerifyError::Malformed(what))
}

impl RelyingParty {
    /// An RP.
    pub fn new(rp_id: &str, rp_name: &str) -> Self {
        RelyingParty {
            rp_id: rp_id.to_owned(),
            rp_name: rp_name.to_owned(),
            attestation: AttestationPolicy::SelfOnly,
        }
    }

    /// The same RP accepting the attestation statements of `policy`.
    pub fn with_attestation(mut self, policy: AttestationPolicy) -> Self {
        self.attestation = policy;
        self
    }

    /// A makeCredential request as Chrome sends it over hybrid
    /// (hybrid-protocol.md §7.2): ES256 then EdDSA, `rk` when discoverable.
    pub fn make_credential_request(
        &self,
        client_data_hash: [u8; 32],
        user: UserEntity,
        discoverable: bool,
    ) -> MakeCredentialRequest {
        let mut req = MakeCredentialRequest::new(
            client_data_hash.to_vec(),
            RpEntity {
                id: self.rp_id.clone(),
                name: Some(self.rp_name.clone()),
            },
            user,
            vec![
                PubKeyCredParam {
                    alg: COSE_ES256,
                    cred_type: PUBLIC_KEY.to_owned(),
                },
                PubKeyCredParam {
                    alg: COSE_EDDSA,
                    cred_type: PUBLIC_KEY.to_owned(),
                },
            ],
        );
        if discoverable {
            req.options = Options {
                rk: Some(true),
                up: None,
                uv: Some(true),
            };
        } else {
            req.options = Options {
                rk: None,
                up: None,
                uv: Some(true),
            };
        }
        req
    }

    /// A getAssertion request; an empty `allow` means discoverable.
    pub fn get_assertion_request(
        &self,
        client_data_hash: [u8; 32],
        allow: &[Vec<u8>],
    ) -> GetAssertionRequest {
        let mut req = GetAssertionRequest::new(self.rp_id.clone(), client_data_hash.to_vec());
        req.allow_list = allow
            .iter()
            .map(|id| CredentialDescriptor { id: id.clone() })
            .collect();
        req.options.uv = Some(true);
        req
    }

    fn check_flags(&self, ad: &AuthenticatorData, require_uv: bool) -> Result<(), Error> {
        if ad.rp_id_hash != sha256(self.rp_id.as_bytes()) {
            return Err(VerifyError::RpIdHash.into());
        }
        if ad.flags & FLAG_UP == 0 {
            return Err(VerifyError::UserPresence.into());
        }
        if require_uv && ad.flags & FLAG_UV == 0 {
            return Err(VerifyError::UserVerification.into());
        }
        Ok(())
    }

    /// Verifies a makeCredential response frame (`status || CBOR`): rpIdHash,
    /// UP (and UV if required), attested credential data, and the
    /// attestation — `packed` self-attestation (signature by the new
    /// credential key, `alg` matching, no `x5c`), `packed` with a
    /// certificate if [`RelyingParty::attestation`] allows it
    /// ([`AttestationPolicy::Certificate`]), or `none` (`{}`).
    pub fn verify_registration(
        &self,
        client_data_hash: &[u8],
        response: &[u8],
        require_uv: bool,
    ) -> Result<(RegisteredCredential, MakeCredentialResponse), Error> {
        let resp = MakeCredentialResponse::from_cbor(split_response(response)?)?;
        let ad = AuthenticatorData::parse(&resp.auth_data)?;
        self.check_flags(&ad, require_uv)?;
        let att = ad.attested.ok_or(bad("no attested credential data"))?;
        let key = CoseKey::parse(&att.public_key_cose)?;
        let Value::Map(stmt) = &resp.att_stmt else {
            return Err(bad("attStmt"));
        };
        match resp.fmt.as_str() {
            "none" => {
                if !stmt.is_empty() {
                    return Err(VerifyError::AttestationFormat.into());
                }
            }
            "packed" => {
                let get = |k: &str| hybrid_cbor::access::get_text_key(stmt, k);
                let alg = cbor::int(get("alg").cloned().ok_or(bad("attStmt.alg"))?, "alg")?;
                let sig = cbor::bytes(get("sig").cloned().ok_or(bad("attStmt.sig"))?, "sig")?;
                let mut msg = resp.auth_data.clone();
                msg.extend_from_slice(client_data_hash);
                match (get("x5c"), self.attestation) {
                    (None, _) => {
                        if alg != key.alg {
                            return Err(VerifyError::UnsupportedKey.into());
                        }
                        key.verify(&msg, &sig)?;
                    }
                    (Some(x5c), AttestationPolicy::Certificate) => {
                        let Value::Array(chain) = x5c else {
                            return Err(bad("attStmt.x5c"));
                        };
                        let first = chain.first().cloned().ok_or(bad("attStmt.x5c"))?;
                        let cert = CoseKey::from_certificate(&cbor::bytes(first, "x5c")?)?;
                        if alg != cert.alg {
                            return Err(VerifyError::UnsupportedKey.into());
                        }
                        cert.verify(&msg, &sig)?;
                    }
                    (Some(_), AttestationPolicy::SelfOnly) => {
                        return Err(VerifyError::AttestationFormat.into());
                    }
                }
            }
            _ => return Err(VerifyError::AttestationFormat.into()),
        }
        let cred = RegisteredCredential {
            id: att.credential_id,
            algorithm: key.alg,
            public_key_cose: att.public_key_cose,
            sign_count: ad.sign_count,
            aaguid: att.aaguid,
        };
        Ok((cred, resp))
    }

    /// Verifies a getAssertion / getNextAssertion response frame against the
    /// registered credentials: the credential is one of them, rpIdHash, UP
    /// (and UV if required), no attested data, signature over
    /// `authData || clientDataHash`, and a counter that increased (unless
    /// both are 0). Updates the stored counter; returns the index used.
    pub fn verify_assertion(
        &self,
        credentials: &mut [RegisteredCredential],
        client_data_hash: &[u8],
        response: &[u8],
        require_uv: bool,
    ) -> Result<(usize, GetAssertionResponse), Error> {
        let resp = GetAssertionResponse::from_cbor(split_response(response)?)?;
        let (index, cred) = credentials
            .iter_mut()
            .enumerate()
            .find(|(_, c)| c.id == resp.credential.id)
            .ok_or(VerifyError::UnexpectedCredential)?;
        let ad = AuthenticatorData::parse(&resp.auth_data)?;
        self.check_flags(&ad, require_uv)?;
        if ad.attested.is_some() {
            return Err(bad("attested credential data in an assertion"));
        }
        let key = CoseKey::parse(&cred.public_key_cose)?;
        let mut msg = resp.auth_data.clone();
        msg.extend_from_slice(client_data_hash);
        key.verify(&msg, &resp.signature)?;
        if (ad.sign_count != 0 || cred.sign_count != 0) && ad.sign_count <= cred.sign_count {
            return Err(VerifyError::Counter {
                stored: cred.sign_count,
                received: ad.sign_count,
            }
            .into());
        }
        cred.sign_count = ad.sign_count;
        Ok((index, resp))
    }
}

/// A parsed COSE public key (ES256 or Ed25519).
struct CoseKey {
    alg: i64,
    key: VerifyKey,
}

enum VerifyKey {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl CoseKey {
    fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let Value::Map(m) = hybrid_cbor::decode_canonical(bytes)? else {
            return Err(bad("COSE key"));
        };
        let int = |k: i64| {
            get_int_key(&m, k)
                .cloned()
                .ok_or(bad("COSE key member"))
                .and_then(|v| cbor::int(v, "COSE"))
        };
        let bytes32 = |k: i64| -> Result<[u8; 32], Error> {
            let v = get_int_key(&m, k).cloned().ok_or(bad("COSE key member"))?;
            cbor::bytes(v, "COSE")?
                .try_into()
                .map_err(|_| bad("COSE coordinate length"))
        };
        match (int(1)?, int(3)?, int(-1)?) {
            (2, COSE_ES256, 1) => {
                let (x, y) = (bytes32(-2)?, bytes32(-3)?);
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                let vk = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map_err(|_| VerifyError::UnsupportedKey)?;
                Ok(CoseKey {
                    alg: COSE_ES256,
                    key: VerifyKey::P256(vk),
                })
            }
            (1, COSE_EDDSA, 6) => {
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes32(-2)?)
                    .map_err(|_| VerifyError::UnsupportedKey)?;
                Ok(CoseKey {
                    alg: COSE_EDDSA,
                    key: VerifyKey::Ed25519(vk),
                })
            }
            _ => Err(VerifyError::UnsupportedKey.into()),
        }
    }

    /// The P-256 key of a DER X.509 certificate (an `x5c` attestation
    /// certificate; ES256 is the only attestation algorithm accepted).
    fn from_certificate(der: &[u8]) -> Result<Self, Error> {
        use p256::pkcs8::DecodePublicKey;
        use x509_cert::der::{Decode, Encode};
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|_| bad("attestation certificate"))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|_| bad("attestation certificate key"))?;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
            .map_err(|_| VerifyError::UnsupportedKey)?;
        Ok(CoseKey {
            alg: COSE_ES256,
            key: VerifyKey::P256(vk),
        })
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), Error> {
        use p256::ecdsa::signature::Verifier;
        let ok = match &self.key {
            VerifyKey::P256(vk) => {
                p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
            }
            VerifyKey::Ed25519(vk) => <[u8; 64]>::try_from(sig).is_ok_and(|s| {
                vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&s))
                    .is_ok()
            }),
        };
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Signature.into())
        }
    }
}
