//! Proptest round trips: every request type's `to_cbor` → parse, and every
//! response encode → parse; all encodings are canonical.

use proptest::collection::vec as pvec;
use proptest::option::of;
use proptest::prelude::*;

use super::*;
use crate::get_info::GetInfoResponse;
use crate::response::{AttestedCredential, AuthenticatorData};
use crate::types::{CredentialDescriptor, Extensions, Options, PrfInput, PrfSalts, RpEntity};
use crate::{GetAssertionResponse, MakeCredentialResponse};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    pvec(any::<u8>(), 0..max)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

/// Exactly `n` bytes (clientDataHash, PRF salts: lengths CTAP fixes).
fn exactly(n: usize) -> impl Strategy<Value = Vec<u8>> {
    pvec(any::<u8>(), n..=n)
}

fn salts() -> impl Strategy<Value = PrfSalts> {
    (exactly(32), of(exactly(32))).prop_map(|(first, second)| PrfSalts { first, second })
}

fn prf() -> impl Strategy<Value = PrfInput> {
    (of(salts()), pvec((bytes(40), salts()), 0..4)).prop_map(|(eval, mut by)| {
        // Map keys are unique and, for equality after parsing, in canonical order.
        by.sort_by(|a, b| {
            hybrid_cbor::canonical_key_cmp(
                &hybrid_cbor::to_canonical_vec(&hybrid_cbor::Value::Bytes(a.0.clone())),
                &hybrid_cbor::to_canonical_vec(&hybrid_cbor::Value::Bytes(b.0.clone())),
            )
        });
        by.dedup_by(|a, b| a.0 == b.0);
        PrfInput {
            eval,
            eval_by_credential: by,
        }
    })
}

fn extensions() -> impl Strategy<Value = Extensions> {
    (of(0u64..10), of(prf()), any::<bool>(), of(any::<bool>())).prop_map(
        |(cred_protect, prf, hmac_secret, large_blob_key)| Extensions {
            cred_protect,
            prf,
            hmac_secret,
            large_blob_key,
        },
    )
}

fn options() -> impl Strategy<Value = Options> {
    (of(any::<bool>()), of(any::<bool>()), of(any::<bool>())).prop_map(|(rk, up, uv)| Options {
        rk,
        up,
        uv,
    })
}

fn descriptors() -> impl Strategy<Value = Vec<CredentialDescriptor>> {
    pvec(bytes(70).prop_map(|id| CredentialDescriptor { id }), 0..5)
}

fn user_entity() -> impl Strategy<Value = UserEntity> {
    (bytes(65), of(text()), of(text())).prop_map(|(id, name, display_name)| UserEntity {
        id,
        name,
        display_name,
    })
}

prop_compose! {
    fn make_credential()(
        cdh in exactly(32), rp_id in text(), rp_name in of(text()), user in user_entity(),
        params in pvec((any::<i64>(), prop_oneof![Just(PUBLIC_KEY.to_string()), text()]), 0..4),
        exclude in descriptors(), ext in extensions(), opts in options(),
        pin in of(bytes(40)), proto in of(any::<u64>()), ea in of(any::<u64>()),
        fmts in of(pvec(text(), 0..3)),
    ) -> MakeCredentialRequest {
        MakeCredentialRequest {
            client_data_hash: cdh,
            rp: RpEntity { id: rp_id, name: rp_name },
            user,
            pub_key_cred_params: params.into_iter().map(|(alg, cred_type)| PubKeyCredParam { alg, cred_type }).collect(),
            exclude_list: exclude,
            extensions: ext,
            options: opts,
            pin_uv_auth_param: pin,
            pin_uv_auth_protocol: proto,
            enterprise_attestation: ea,
            attestation_formats_preference: fmts,
        }
    }
}

prop_compose! {
    fn get_assertion()(
        rp_id in text(), cdh in exactly(32), allow in descriptors(), ext in extensions(), opts in options(),
        pin in of(bytes(40)), proto in of(any::<u64>()),
    ) -> GetAssertionRequest {
        GetAssertionRequest {
            rp_id, client_data_hash: cdh, allow_list: allow, extensions: ext, options: opts,
            pin_uv_auth_param: pin, pin_uv_auth_protocol: proto,
        }
    }
}

fn assert_canonical(bytes: &[u8]) {
    let v = hybrid_cbor::decode_canonical(bytes).unwrap();
    assert_eq!(hybrid_cbor::to_canonical_vec(&v), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn make_credential_request_round_trip(req in make_credential()) {
        let cbor = req.to_cbor();
        assert_canonical(&cbor);
        prop_assert_eq!(MakeCredentialRequest::from_cbor(&cbor).unwrap(), req);
    }

    #[test]
    fn get_assertion_request_round_trip(req in get_assertion()) {
        let cbor = req.to_cbor();
        assert_canonical(&cbor);
        prop_assert_eq!(GetAssertionRequest::from_cbor(&cbor).unwrap(), req);
    }

    #[test]
    fn make_credential_request_processing_never_panics(req in make_credential()) {
        let mut a = auth();
        let resp = send(&mut a, &req.to_frame());
        prop_assert!(!resp.is_empty());
    }

    #[test]
    fn get_assertion_request_processing_never_panics(req in get_assertion(), rk in any::<bool>()) {
        let mut a = auth();
        let mut m = mc(rk);
        m.rp.id = req.rp_id.clone();
        send(&mut a, &m.to_frame());
        let resp = send(&mut a, &req.to_frame());
        prop_assert!(!resp.is_empty());
    }

    #[test]
    fn authenticator_data_round_trip(
        hash in any::<[u8; 32]>(), flags in any::<u8>(), count in any::<u32>(),
        att in of((any::<[u8; 16]>(), bytes(70), any::<bool>())), cp in of(1i64..4),
    ) {
        let attested = att.map(|(aaguid, credential_id, ed)| AttestedCredential {
            aaguid, credential_id,
            public_key_cose: if ed { crate::crypto::cose_ed25519(&[9; 32]) } else { crate::crypto::cose_es256(&[1; 32], &[2; 32]) },
        });
        let extensions = cp.map(|n| hybrid_cbor::Value::Map(vec![(crate::cbor::t("credProtect"), crate::cbor::i(n))]));
        let ad = AuthenticatorData { rp_id_hash: hash, flags, sign_count: count, attested, extensions };
        let parsed = AuthenticatorData::parse(&ad.to_bytes()).unwrap();
        prop_assert_eq!(parsed.to_bytes(), ad.to_bytes());
        prop_assert_eq!(parsed.attested, ad.attested);
        prop_assert_eq!(parsed.extensions, ad.extensions);
    }

    #[test]
    fn get_assertion_response_round_trip(
        id in bytes(70), ad in bytes(60), sig in bytes(72), user in of(user_entity()), n in of(any::<u64>()), prf in any::<bool>(), sel in any::<bool>(),
    ) {
        let r = GetAssertionResponse {
            credential: CredentialDescriptor { id },
            auth_data: ad, signature: sig, user, number_of_credentials: n, user_selected: sel,
            unsigned_extension_outputs: prf.then(|| hybrid_cbor::Value::Map(vec![(crate::cbor::t("prf"), hybrid_cbor::Value::Map(vec![]))])),
        };
        let cbor = r.to_cbor();
        assert_canonical(&cbor);
        prop_assert_eq!(GetAssertionResponse::from_cbor(&cbor).unwrap(), r);
    }

    #[test]
    fn make_credential_response_round_trip(ad in bytes(200), none in any::<bool>(), sig in bytes(72), prf in any::<bool>()) {
        let att_stmt = if none { hybrid_cbor::Value::Map(vec![]) } else {
            hybrid_cbor::Value::Map(vec![(crate::cbor::t("alg"), crate::cbor::i(-7)), (crate::cbor::t("sig"), crate::cbor::b(&sig))])
        };
        let r = MakeCredentialResponse {
            fmt: if none { "none".into() } else { "packed".into() }, auth_data: ad, att_stmt,
            unsigned_extension_outputs: prf.then(|| hybrid_cbor::Value::Map(vec![(crate::cbor::t("prf"), hybrid_cbor::Value::Map(vec![(crate::cbor::t("enabled"), hybrid_cbor::Value::Bool(true))]))])),
        };
        let cbor = r.to_cbor();
        assert_canonical(&cbor);
        prop_assert_eq!(MakeCredentialResponse::from_cbor(&cbor).unwrap(), r);
    }

    #[test]
    fn get_info_round_trip(aaguid in any::<[u8; 16]>(), max in any::<u64>()) {
        let info = GetInfoResponse::for_phone(aaguid, max);
        let cbor = info.to_cbor();
        assert_canonical(&cbor);
        prop_assert_eq!(GetInfoResponse::from_cbor(&cbor).unwrap(), info);
    }

    #[test]
    fn arbitrary_bytes_never_panic(cmd in any::<u8>(), body in bytes(300)) {
        let mut a = auth();
        send(&mut a, &mc(true).to_frame());
        let resp = send(&mut a, &frame(cmd, &body));
        prop_assert!(!resp.is_empty());
    }
}
