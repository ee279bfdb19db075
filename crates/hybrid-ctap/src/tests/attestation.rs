//! The RP verifier's attestation policy (WebAuthn §8.2): `packed` with an
//! `x5c` certificate is refused by default and accepted, signature checked,
//! only under [`AttestationPolicy::Certificate`].
//!
//! `data/attestation-{cert,key}.der`: a throwaway self-signed P-256
//! certificate and its PKCS#8 key, made for these tests with
//! `openssl ecparam -name prime256v1 -genkey` / `openssl req -x509`.

use hybrid_cbor::Value;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;

use super::*;
use crate::error::{Error, VerifyError};
use crate::rp::AttestationPolicy;
use crate::MakeCredentialResponse;

const CERT: &[u8] = include_bytes!("data/attestation-cert.der");
const KEY: &[u8] = include_bytes!("data/attestation-key.der");

/// A genuine makeCredential response re-signed as basic attestation:
/// `attStmt = {alg: -7, sig: <by the certificate's key>, x5c: [cert]}`.
fn with_certificate(resp: &[u8], cert: &[u8], sign_with: &[u8]) -> Vec<u8> {
    let mut r = MakeCredentialResponse::from_cbor(&resp[1..]).unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(sign_with).unwrap();
    let mut msg = r.auth_data.clone();
    msg.extend_from_slice(&CDH);
    let sig: p256::ecdsa::Signature = key.sign(&msg);
    r.fmt = "packed".into();
    r.att_stmt = hybrid_cbor::canonicalize(Value::Map(vec![
        (Value::Text("alg".into()), Value::Integer((-7).into())),
        (
            Value::Text("sig".into()),
            Value::Bytes(sig.to_der().as_bytes().to_vec()),
        ),
        (
            Value::Text("x5c".into()),
            Value::Array(vec![Value::Bytes(cert.to_vec())]),
        ),
    ]));
    let mut out = vec![0];
    out.extend_from_slice(&r.to_cbor());
    out
}

fn certified_response() -> Vec<u8> {
    let mut a = auth();
    let resp = send(&mut a, &mc(false).to_frame());
    with_certificate(&resp, CERT, KEY)
}

#[test]
fn x5c_refused_by_default() {
    let resp = certified_response();
    assert!(matches!(
        rp().verify_registration(&CDH, &resp, true),
        Err(Error::Verify(VerifyError::AttestationFormat))
    ));
}

#[test]
fn x5c_accepted_and_checked_when_the_rp_allows_certificates() {
    let rp = rp().with_attestation(AttestationPolicy::Certificate);
    let resp = certified_response();
    let (cred, r) = rp.verify_registration(&CDH, &resp, true).unwrap();
    assert_eq!(r.fmt, "packed");
    assert_eq!(cred.algorithm, -7);

    // Signed by another key than the certificate's: refused.
    let mut a = auth();
    let genuine = send(&mut a, &mc(false).to_frame());
    let other = p256::SecretKey::from_slice(&[7; 32]).unwrap();
    let other = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).unwrap();
    let forged = with_certificate(&genuine, CERT, other.as_bytes());
    assert!(matches!(
        rp.verify_registration(&CDH, &forged, true),
        Err(Error::Verify(VerifyError::Signature))
    ));

    // A certificate that is not DER: refused, no panic.
    let garbage = with_certificate(&genuine, &CERT[..40], KEY);
    assert!(rp.verify_registration(&CDH, &garbage, true).is_err());

    // Self attestation still verifies under the wider policy.
    rp.verify_registration(&CDH, &genuine, true).unwrap();
}
