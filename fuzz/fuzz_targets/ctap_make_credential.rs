#![no_main]
//! Raw bytes as the CBOR parameters of authenticatorMakeCredential (and the
//! typed parser directly): never panics; a parsed request re-encodes to
//! something that parses to the same request.
use hybrid_ctap::testing::test_authenticator;
use hybrid_ctap::{MakeCredentialRequest, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = MakeCredentialRequest::from_cbor(data) {
        let again =
            MakeCredentialRequest::from_cbor(&req.to_cbor()).expect("re-encoded request parses");
        assert_eq!(again, req);
    }
    let mut a = test_authenticator(2);
    let mut frame = vec![0x01];
    frame.extend_from_slice(data);
    let resp = a.process_scripted(&frame, &RequestContext::default());
    assert!(!resp.is_empty());
});
