#![no_main]
//! Raw bytes as the CBOR parameters of authenticatorGetAssertion, against a
//! store holding one discoverable and one non-discoverable credential;
//! never panics; parsed requests round-trip.
use hybrid_ctap::testing::test_authenticator;
use hybrid_ctap::{GetAssertionRequest, RelyingParty, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = GetAssertionRequest::from_cbor(data) {
        let again =
            GetAssertionRequest::from_cbor(&req.to_cbor()).expect("re-encoded request parses");
        assert_eq!(again, req);
    }
    let mut a = test_authenticator(3);
    let ctx = RequestContext::default();
    let rp = RelyingParty::new("example.com", "Example");
    for (n, rk) in [(1u8, true), (2, false)] {
        let user = hybrid_ctap::types::UserEntity {
            id: vec![n],
            name: None,
            display_name: None,
        };
        let created = a.process_scripted(
            &rp.make_credential_request([0; 32], user, rk).to_frame(),
            &ctx,
        );
        assert_eq!(created.first(), Some(&0));
    }
    let mut frame = vec![0x02];
    frame.extend_from_slice(data);
    let resp = a.process_scripted(&frame, &ctx);
    assert!(!resp.is_empty());
    if resp.first() == Some(&0) {
        let body = resp.get(1..).unwrap_or_default();
        hybrid_ctap::GetAssertionResponse::from_cbor(body).expect("our own response parses");
    }
});
