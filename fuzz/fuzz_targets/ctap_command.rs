#![no_main]
//! Raw bytes (command byte || CBOR) into `Authenticator::process` with one
//! discoverable credential stored: never panics, always answers, and every
//! success response is canonical CBOR.
use hybrid_ctap::testing::test_authenticator;
use hybrid_ctap::{RelyingParty, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = test_authenticator(1);
    let rp = RelyingParty::new("example.com", "Example");
    let user = hybrid_ctap::types::UserEntity {
        id: vec![1, 2, 3],
        name: Some("a".into()),
        display_name: None,
    };
    let ctx = RequestContext::default();
    let created = a.process_scripted(
        &rp.make_credential_request([0; 32], user, true).to_frame(),
        &ctx,
    );
    assert_eq!(created.first(), Some(&0));
    let resp = a.process_scripted(data, &ctx);
    let (&status, body) = resp.split_first().expect("a response is never empty");
    if status == 0 {
        let v = hybrid_cbor::decode_canonical(body).expect("canonical response");
        assert_eq!(hybrid_cbor::to_canonical_vec(&v), body);
    } else {
        assert!(body.is_empty());
    }
    // A follow-up getNextAssertion must also be answered without panicking.
    assert!(!a.process_scripted(&[0x08], &ctx).is_empty());
});
