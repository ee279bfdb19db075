//! Unit and conformance tests (one test per conformance-checklist line,
//! named after it; happy paths; proptest round trips).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cloned_ref_to_slice_refs
)]

mod attestation;
mod checklist;
mod flows;
mod lengths;
mod roundtrip;
mod steps;

use hybrid_cbor::Value;

use crate::command::{GetAssertionRequest, MakeCredentialRequest};
use crate::env::RequestContext;
use crate::rp::{RegisteredCredential, RelyingParty};
use crate::store::{COSE_EDDSA, COSE_ES256};
use crate::testing::{test_authenticator, TestEnv};
use crate::types::{PubKeyCredParam, UserEntity, PUBLIC_KEY};
use crate::Authenticator;

pub(crate) const RP_ID: &str = "example.com";
pub(crate) const CDH: [u8; 32] = [0x42; 32];

pub(crate) fn auth() -> Authenticator<TestEnv> {
    test_authenticator(7)
}

pub(crate) fn ctx() -> RequestContext {
    RequestContext {
        qr_age_secs: Some(3),
        hint: Some("mc".into()),
    }
}

pub(crate) fn rp() -> RelyingParty {
    RelyingParty::new(RP_ID, "Example")
}

pub(crate) fn user(id: &[u8], name: &str) -> UserEntity {
    UserEntity {
        id: id.to_vec(),
        name: Some(name.into()),
        display_name: Some(format!("{name} D")),
    }
}

pub(crate) fn mc(rk: bool) -> MakeCredentialRequest {
    rp().make_credential_request(CDH, user(b"user-1", "alice"), rk)
}

pub(crate) fn ga(allow: &[Vec<u8>]) -> GetAssertionRequest {
    rp().get_assertion_request(CDH, allow)
}

pub(crate) fn es256() -> PubKeyCredParam {
    PubKeyCredParam {
        alg: COSE_ES256,
        cred_type: PUBLIC_KEY.into(),
    }
}

pub(crate) fn eddsa() -> PubKeyCredParam {
    PubKeyCredParam {
        alg: COSE_EDDSA,
        cred_type: PUBLIC_KEY.into(),
    }
}

/// Sends a frame; asserts every success response is canonical CBOR.
pub(crate) fn send(a: &mut Authenticator<TestEnv>, frame: &[u8]) -> Vec<u8> {
    let resp = a.process_scripted(frame, &ctx());
    assert!(!resp.is_empty());
    if resp[0] == 0 {
        let body = &resp[1..];
        let v = hybrid_cbor::decode_canonical(body).expect("response must be canonical CBOR");
        assert_eq!(hybrid_cbor::to_canonical_vec(&v), body);
    } else {
        assert_eq!(resp.len(), 1, "errors are a single status byte");
    }
    resp
}

pub(crate) fn frame(cmd: u8, cbor: &[u8]) -> Vec<u8> {
    let mut f = vec![cmd];
    f.extend_from_slice(cbor);
    f
}

/// Encodes a map with arbitrary entries canonically.
pub(crate) fn cbor_map(entries: Vec<(Value, Value)>) -> Vec<u8> {
    hybrid_cbor::to_canonical_vec(&Value::Map(entries))
}

/// makeCredential through the RP verifier.
pub(crate) fn register(
    a: &mut Authenticator<TestEnv>,
    req: &MakeCredentialRequest,
) -> RegisteredCredential {
    let resp = send(a, &req.to_frame());
    assert_eq!(resp[0], 0, "makeCredential failed: {:02x}", resp[0]);
    rp().verify_registration(&req.client_data_hash, &resp, true)
        .unwrap()
        .0
}
