//! Happy paths and feature behaviour, verified with the RP-side verifier.

use sha2::{Digest, Sha256};

use super::*;
use crate::command::{CMD_GET_INFO, CMD_GET_NEXT_ASSERTION};
use crate::env::{Approval, Command};
use crate::get_info::GetInfoResponse;
use crate::response::{AuthenticatorData, FLAG_AT, FLAG_ED, FLAG_UP, FLAG_UV};
use crate::types::{Extensions, PrfInput, PrfSalts};
use crate::{GetAssertionResponse, MakeCredentialResponse, DEFAULT_AAGUID};

#[test]
fn get_info_is_the_hybrid_phone_shape() {
    let mut a = auth();
    let resp = send(&mut a, &[CMD_GET_INFO]);
    assert_eq!(resp[0], 0);
    let info = GetInfoResponse::from_cbor(&resp[1..]).unwrap();
    assert_eq!(info.versions, ["FIDO_2_0", "FIDO_2_1"]);
    assert_eq!(info.extensions, ["credProtect", "prf"]);
    assert_eq!(info.aaguid, DEFAULT_AAGUID);
    assert_eq!(
        info.options,
        vec![
            ("rk".to_string(), true),
            ("up".to_string(), true),
            ("uv".to_string(), true)
        ]
    );
    assert_eq!(info.max_msg_size, Some(16384));
    assert_eq!(info.transports, ["cable", "hybrid", "internal"]);
    assert_eq!(info.algorithms, vec![es256(), eddsa()]);
    // Exact bytes (canonical order: 1,2,3,4,5,9,10; "rk" < "up" < "uv").
    let expected = "a7\
        0182684649444f5f325f30684649444f5f325f31\
        02826b6372656450726f7465637463707266\
        0350dda76cf2ddfc435b83db2d0dec8c9ef3\
        04a362726bf5627570f5627576f5\
        05194000\
        0983656361626c656668796272696468696e7465726e616c\
        0a82a263616c672664747970656a7075626c69632d6b6579a263616c672764747970656a7075626c69632d6b6579";
    assert_eq!(hex::encode(&resp[1..]), expected);
    assert_eq!(a.get_info().to_cbor(), resp[1..].to_vec());
}

#[test]
fn get_info_chromium_phone_vector_parses_by_7_1_rules() {
    // tests/vectors/hybrid-vectors.json "getinfo_chromium_phone".getinfo_hex
    let v = hex::decode(
        "a50182684649444f5f325f30684649444f5f325f3102816370726603500000000000000000000000000000000004a262726bf5627576f50983656361626c656668796272696468696e7465726e616c",
    )
    .unwrap();
    let info = GetInfoResponse::from_cbor(&v).unwrap();
    assert_eq!(info.extensions, ["prf"]);
    assert_eq!(info.aaguid, [0; 16]);
    assert_eq!(info.to_cbor(), v);
}

#[test]
fn get_info_parser_rejects_what_chrome_rejects() {
    let ok = GetInfoResponse::for_phone([0; 16], 1024);
    let mut dup = ok.clone();
    dup.versions.push("FIDO_2_0".into());
    let mut u2f = ok.clone();
    u2f.versions = vec!["U2F_V2".into(), "FIDO_2_2".into()];
    let mut pin = ok.clone();
    pin.options.push(("clientPin".into(), true));
    let mut blob = ok.clone();
    blob.extensions.push("credBlob".into());
    for bad in [dup, u2f, pin, blob] {
        assert!(
            GetInfoResponse::from_cbor(&bad.to_cbor()).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn make_credential_then_get_assertion_es256() {
    let mut a = auth();
    let req = mc(false);
    let resp = send(&mut a, &req.to_frame());
    let (mut cred, r) = rp().verify_registration(&CDH, &resp, true).unwrap();
    assert_eq!(r.fmt, "packed");
    assert_eq!(cred.algorithm, -7);
    assert_eq!(cred.aaguid, DEFAULT_AAGUID);
    assert_eq!(cred.id.len(), 32);
    assert_eq!(cred.sign_count, 0);
    let ad = AuthenticatorData::parse(&r.auth_data).unwrap();
    assert_eq!(ad.flags, FLAG_UP | FLAG_UV | FLAG_AT);
    assert!(r.unsigned_extension_outputs.is_none());
    // The COSE key is exactly {1:2,3:-7,-1:1,-2:x,-3:y}.
    let att = ad.attested.unwrap();
    assert!(hex::encode(&att.public_key_cose).starts_with("a5010203262001215820"));
    let meta = a.env().store.meta(&cred.id).unwrap().clone();
    assert!(!meta.discoverable);
    assert_eq!(meta.created_unix, a.env().clock.unix);

    let mut creds = vec![cred.clone()];
    for n in 1..=3u32 {
        let cdh = [n as u8; 32];
        let g = rp().get_assertion_request(cdh, &[vec![5; 32], cred.id.clone()]);
        let resp = send(&mut a, &g.to_frame());
        let (idx, r) = rp()
            .verify_assertion(&mut creds, &cdh, &resp, true)
            .unwrap();
        assert_eq!(idx, 0);
        assert!(r.user.is_none(), "no user for allowList lookups");
        assert!(r.number_of_credentials.is_none());
        assert_eq!(creds[0].sign_count, n);
        let ad = AuthenticatorData::parse(&r.auth_data).unwrap();
        assert_eq!(ad.flags, FLAG_UP | FLAG_UV);
    }
    // A replayed (old) response fails the counter check.
    cred.sign_count = 10;
    let g = ga(&[cred.id.clone()]);
    let resp = send(&mut a, &g.to_frame());
    let err = rp()
        .verify_assertion(&mut [cred], &CDH, &resp, true)
        .unwrap_err();
    assert!(matches!(
        err,
        crate::Error::Verify(crate::VerifyError::Counter { .. })
    ));
    // Another RP ID does not verify.
    let resp = send(&mut a, &ga(&[creds[0].id.clone()]).to_frame());
    assert!(RelyingParty::new("other.example", "x")
        .verify_assertion(&mut creds, &CDH, &resp, true)
        .is_err());
}

#[test]
fn make_credential_ed25519_first_supported_in_rp_order() {
    let mut a = auth();
    let mut req = mc(true);
    req.pub_key_cred_params = vec![
        PubKeyCredParam {
            alg: -257,
            cred_type: PUBLIC_KEY.into(),
        },
        PubKeyCredParam {
            alg: -7,
            cred_type: "x".into(),
        },
        eddsa(),
        es256(),
    ];
    let cred = register(&mut a, &req);
    assert_eq!(cred.algorithm, -8);
    assert_eq!(
        hex::encode(&cred.public_key_cose[..10]),
        "a4010103272006215820"
    );
    let resp = send(&mut a, &ga(&[]).to_frame());
    let r = GetAssertionResponse::from_cbor(&resp[1..]).unwrap();
    assert_eq!(r.signature.len(), 64, "raw Ed25519 signature");
    rp().verify_assertion(&mut [cred], &CDH, &resp, true)
        .unwrap();
}

#[test]
fn attestation_none_when_preferred() {
    let mut a = auth();
    for (pref, fmt) in [
        (vec!["none", "packed"], "none"),
        (vec!["tpm", "none"], "none"),
        (vec!["packed", "none"], "packed"),
        (vec!["tpm"], "packed"),
        (vec![], "packed"),
    ] {
        let mut req = mc(false);
        req.attestation_formats_preference = Some(pref.iter().map(|s| s.to_string()).collect());
        let resp = send(&mut a, &req.to_frame());
        let (_, r) = rp().verify_registration(&CDH, &resp, true).unwrap();
        assert_eq!(r.fmt, fmt);
        if fmt == "none" {
            assert_eq!(hybrid_cbor::to_canonical_vec(&r.att_stmt), vec![0xa0]);
        }
    }
}

#[test]
fn discoverable_get_assertion_with_empty_allow_list() {
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    a.env_mut().user.shown.clear();
    let resp = send(&mut a, &ga(&[]).to_frame());
    let (_, r) = rp()
        .verify_assertion(&mut [cred.clone()], &CDH, &resp, true)
        .unwrap();
    assert_eq!(r.credential.id, cred.id);
    assert_eq!(r.user.unwrap(), user(b"user-1", "alice"));
    assert!(r.number_of_credentials.is_none());
    // The one account was named in the prompt and approved: userSelected
    // (0x06: true), so Chromium shows no account chooser of its own.
    assert!(r.user_selected);
    assert!(hex::encode(&resp[1..]).ends_with("06f5"));
    // Credential descriptor is exactly {"id": .., "type": "public-key"}.
    let body = hex::encode(&resp[1..]);
    assert!(body.starts_with(&format!(
        "a501a26269645820{}64747970656a7075626c69632d6b6579",
        hex::encode(&cred.id)
    )));
    let shown = &a.env().user.shown[0];
    assert_eq!(shown.command, Command::GetAssertion);
    assert_eq!(shown.rp_id, RP_ID);
    assert_eq!(shown.user_name.as_deref(), Some("alice"));
    assert_eq!(shown.qr_age_secs, Some(3));
}

#[test]
fn two_credentials_and_get_next_assertion() {
    let mut a = auth();
    let c1 = register(&mut a, &mc(true));
    let mut second = mc(true);
    second.user = user(b"user-2", "bob");
    let c2 = register(&mut a, &second);
    let mut third = mc(false); // non-discoverable: not part of discovery
    third.user = user(b"user-3", "carol");
    register(&mut a, &third);
    let mut creds = vec![c1.clone(), c2.clone()];
    let resp = send(&mut a, &ga(&[]).to_frame());
    let (idx, r) = rp()
        .verify_assertion(&mut creds, &CDH, &resp, true)
        .unwrap();
    assert_eq!(idx, 1, "newest first");
    assert_eq!(r.number_of_credentials, Some(2));
    assert!(
        !r.user_selected,
        "the prompt named only one of two accounts"
    );
    assert_eq!(r.user.unwrap().name.as_deref(), Some("bob"));
    a.env_mut().clock.advance_ms(10_000);
    let resp = send(&mut a, &[CMD_GET_NEXT_ASSERTION]);
    let (idx, r) = rp()
        .verify_assertion(&mut creds, &CDH, &resp, true)
        .unwrap();
    assert_eq!(idx, 0);
    assert!(r.number_of_credentials.is_none());
    assert_eq!(r.user.unwrap().id, b"user-1");
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION]), vec![0x30]);
    // Only one prompt for the whole sequence.
    assert_eq!(
        a.env()
            .user
            .shown
            .iter()
            .filter(|s| s.command == Command::GetAssertion)
            .count(),
        1
    );
}

fn salt(x: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"WebAuthn PRF\0");
    h.update(x.as_bytes());
    h.finalize().to_vec()
}

#[test]
fn prf_worked_example_from_7_4() {
    let (s1, s2) = (salt("hello"), salt("world"));
    assert_eq!(
        hex::encode(&s1),
        "0548f3025671e73beab092b1ac870ddd33a0d925e193eca79ba8358919b73cdc"
    );
    assert_eq!(
        hex::encode(&s2),
        "2977d3146f6767ffc8eb8008534eb64a0b8d45ba5cf333a506c4850972576408"
    );
    let mut a = auth();
    let mut req = mc(true);
    req.extensions.prf = Some(PrfInput::default());
    let resp = send(&mut a, &req.to_frame());
    let (cred, r) = rp().verify_registration(&CDH, &resp, true).unwrap();
    // {"prf": {"enabled": true}} in key 6, nothing in authData.
    assert_eq!(
        hex::encode(hybrid_cbor::to_canonical_vec(
            r.unsigned_extension_outputs.as_ref().unwrap()
        )),
        "a163707266a167656e61626c6564f5"
    );
    assert!(AuthenticatorData::parse(&r.auth_data)
        .unwrap()
        .extensions
        .is_none());
    a.env_mut().store.credentials[0].1.prf_secret = [0x11; 32];

    let mut g = ga(&[]);
    g.extensions.prf = Some(PrfInput {
        eval: Some(PrfSalts {
            first: s1.clone(),
            second: Some(s2.clone()),
        }),
        eval_by_credential: vec![],
    });
    // The request's key 4 is exactly the §7.4 bytes.
    let key4 = format!(
        "a163707266a1646576616c a2656669727374 5820{} 667365636f6e64 5820{}",
        hex::encode(&s1),
        hex::encode(&s2)
    )
    .replace(' ', "");
    assert!(hex::encode(g.to_cbor()).contains(&format!("04{key4}")));
    let resp = send(&mut a, &g.to_frame());
    let (_, r) = rp()
        .verify_assertion(&mut [cred.clone()], &CDH, &resp, true)
        .unwrap();
    let r1 = "31e55a6ff35d6df3e586aaf42e85dc24c63450ce5e4b5f4c14b8f831a6b1b28b";
    let r2 = "fa33125471d2868b7b1e2c37714ff437fff5580e547349c8376480a0a210f242";
    let key8 = format!("a163707266a167726573756c7473a26566697273745820{r1}667365636f6e645820{r2}");
    assert_eq!(
        hex::encode(hybrid_cbor::to_canonical_vec(
            r.unsigned_extension_outputs.as_ref().unwrap()
        )),
        key8
    );
    assert!(hex::encode(&resp[1..]).contains(&format!("08{key8}")));
    let ad = AuthenticatorData::parse(&r.auth_data).unwrap();
    assert!(
        ad.extensions.is_none() && ad.flags & FLAG_ED == 0,
        "never prf in authData"
    );

    // evalByCredential wins for the matching credential; "second" absent → absent.
    g.extensions.prf = Some(PrfInput {
        eval: Some(PrfSalts {
            first: s2.clone(),
            second: None,
        }),
        eval_by_credential: vec![
            (
                vec![0; 32],
                PrfSalts {
                    first: s2.clone(),
                    second: None,
                },
            ),
            (
                cred.id.clone(),
                PrfSalts {
                    first: s1.clone(),
                    second: None,
                },
            ),
        ],
    });
    let resp = send(&mut a, &g.to_frame());
    let r = GetAssertionResponse::from_cbor(&resp[1..]).unwrap();
    assert_eq!(
        hex::encode(hybrid_cbor::to_canonical_vec(
            r.unsigned_extension_outputs.as_ref().unwrap()
        )),
        format!("a163707266a167726573756c7473a16566697273745820{r1}")
    );
    // prf without eval → no output at all.
    g.extensions.prf = Some(PrfInput::default());
    let resp = send(&mut a, &g.to_frame());
    assert!(GetAssertionResponse::from_cbor(&resp[1..])
        .unwrap()
        .unsigned_extension_outputs
        .is_none());
}

#[test]
fn prf_eval_at_make_credential_returns_results() {
    let mut a = auth();
    let mut req = mc(true);
    req.extensions.prf = Some(PrfInput {
        eval: Some(PrfSalts {
            first: salt("a"),
            second: Some(salt("b")),
        }),
        eval_by_credential: vec![],
    });
    let resp = send(&mut a, &req.to_frame());
    let r = MakeCredentialResponse::from_cbor(&resp[1..]).unwrap();
    let key = a.env().store.credentials[0].1.prf_secret;
    let expected = crate::crypto::prf_evaluate(&key, &salt("a"));
    let enc = hex::encode(hybrid_cbor::to_canonical_vec(
        r.unsigned_extension_outputs.as_ref().unwrap(),
    ));
    assert!(enc.starts_with("a163707266a267656e61626c6564f567726573756c7473a2"));
    assert!(enc.contains(&hex::encode(expected)));
}

#[test]
fn cred_protect_levels() {
    for level in 1..=3u64 {
        let mut a = auth();
        let mut req = mc(true);
        req.extensions.cred_protect = Some(level);
        let resp = send(&mut a, &req.to_frame());
        let (cred, r) = rp().verify_registration(&CDH, &resp, true).unwrap();
        let ad = AuthenticatorData::parse(&r.auth_data).unwrap();
        assert_ne!(ad.flags & FLAG_ED, 0);
        let ext = hybrid_cbor::to_canonical_vec(ad.extensions.as_ref().unwrap());
        assert_eq!(
            hex::encode(ext),
            format!("a16b6372656450726f74656374{level:02x}")
        );
        assert_eq!(
            a.env().store.meta(&cred.id).unwrap().cred_protect,
            level as u8
        );
        // With UV every level is usable, with or without allowList.
        assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
        assert_eq!(send(&mut a, &ga(&[cred.id.clone()]).to_frame())[0], 0);
    }
    // No credProtect requested → level 1 and no ED flag.
    let mut a = auth();
    let resp = send(&mut a, &mc(true).to_frame());
    let (_, r) = rp().verify_registration(&CDH, &resp, true).unwrap();
    assert_eq!(
        AuthenticatorData::parse(&r.auth_data).unwrap().flags & FLAG_ED,
        0
    );
}

#[test]
fn cred_protect_level1_without_uv_still_works() {
    let mut a = auth();
    register(&mut a, &mc(true));
    a.env_mut().user.default_answer = Ok(Approval {
        user_present: true,
        user_verified: false,
    });
    let mut g = ga(&[]);
    g.options.uv = None;
    let resp = send(&mut a, &g.to_frame());
    let r = GetAssertionResponse::from_cbor(&resp[1..]).unwrap();
    let ad = AuthenticatorData::parse(&r.auth_data).unwrap();
    assert_eq!(ad.flags, FLAG_UP);
    // Without UV, no name/displayName.
    assert_eq!(
        r.user.unwrap(),
        UserEntity {
            id: b"user-1".to_vec(),
            name: None,
            display_name: None
        }
    );
}

#[test]
fn up_false_get_assertion_still_asks_user_and_clears_up_flag() {
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    a.env_mut().user.shown.clear();
    let mut g = ga(&[cred.id.clone()]);
    g.options.up = Some(false);
    let resp = send(&mut a, &g.to_frame());
    let r = GetAssertionResponse::from_cbor(&resp[1..]).unwrap();
    assert_eq!(
        AuthenticatorData::parse(&r.auth_data).unwrap().flags,
        FLAG_UV
    );
    assert_eq!(a.env().user.shown.len(), 1, "never signs without consent");
}

#[test]
fn locked_store_after_approval_is_denied() {
    let mut a = auth();
    register(&mut a, &mc(true));
    a.env_mut().store.locked = true;
    assert_eq!(send(&mut a, &ga(&[]).to_frame()), vec![0x27]);
}

#[test]
fn make_credential_vector_from_webauthn_rs_framing() {
    // framing_examples.make_credential_request_frame_hex minus the 01 (CTAP) type byte.
    let f = hex::decode("01a5015820687134968222ec17202e42505f8ed2b16ae22f16bb05b88c25db9e602645f14102a262696469746573742e63746170646e616d6569746573742e6374617003a362696458202b6689bb18f4169f069fbcdf50cb6ea3c60a861b9a7b63946983e0b577b78c70646e616d6571746573746374617040637461702e636f6d6b646973706c61794e616d65695465737420437461700483a263616c672664747970656a7075626c69632d6b6579a263616c6739010064747970656a7075626c69632d6b6579a263616c67382464747970656a7075626c69632d6b657907a162726bf5").unwrap();
    let req = MakeCredentialRequest::from_cbor(&f[1..]).unwrap();
    assert_eq!(req.rp.id, "test.ctap");
    assert_eq!(req.options.rk, Some(true));
    assert_eq!(req.to_cbor(), f[1..].to_vec());
    let mut a = auth();
    let resp = send(&mut a, &f);
    let rp = RelyingParty::new("test.ctap", "test.ctap");
    let (cred, _) = rp
        .verify_registration(&req.client_data_hash, &resp, true)
        .unwrap();
    assert_eq!(cred.algorithm, -7);
}

#[test]
fn process_never_panics_on_prefixes_of_valid_requests() {
    let mut a = auth();
    let mut g = ga(&[vec![1; 32]]);
    g.extensions = Extensions {
        cred_protect: None,
        prf: Some(PrfInput {
            eval: Some(PrfSalts {
                first: vec![1; 32],
                second: Some(vec![2; 32]),
            }),
            eval_by_credential: vec![(
                vec![1; 32],
                PrfSalts {
                    first: vec![3; 32],
                    second: None,
                },
            )],
        }),
        hmac_secret: true,
        large_blob_key: Some(true),
    };
    for f in [mc(true).to_frame(), g.to_frame()] {
        for n in 0..f.len() {
            let resp = a.process_scripted(&f[..n], &ctx());
            assert!(!resp.is_empty());
        }
    }
}

/// Regenerates the fuzz seed corpora (`fuzz/corpus/ctap_*/seed-*`):
/// `cargo test -p hybrid-ctap write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let mut mc_prf = mc(true);
    mc_prf.extensions = Extensions {
        cred_protect: Some(2),
        prf: Some(PrfInput::default()),
        hmac_secret: false,
        large_blob_key: None,
    };
    let mut mc_excl = mc(false);
    mc_excl.exclude_list = vec![crate::types::CredentialDescriptor { id: vec![1; 32] }];
    mc_excl.attestation_formats_preference = Some(vec!["none".into()]);
    let mut ga_prf = ga(&[]);
    ga_prf.extensions.prf = Some(PrfInput {
        eval: Some(PrfSalts {
            first: salt("hello"),
            second: Some(salt("world")),
        }),
        eval_by_credential: vec![(
            vec![1; 32],
            PrfSalts {
                first: salt("x"),
                second: None,
            },
        )],
    });
    let ga_allow = ga(&[vec![1; 32], vec![2; 16]]);
    let mcs = [
        ("mc-rk", mc(true)),
        ("mc-prf-credprotect", mc_prf),
        ("mc-exclude-none", mc_excl),
    ];
    let gas = [
        ("ga-discovery", ga(&[])),
        ("ga-prf", ga_prf),
        ("ga-allowlist", ga_allow),
    ];
    for (name, r) in &mcs {
        write("ctap_make_credential", name, &r.to_cbor());
        write("ctap_command", name, &r.to_frame());
    }
    for (name, r) in &gas {
        write("ctap_get_assertion", name, &r.to_cbor());
        write("ctap_command", name, &r.to_frame());
    }
    write("ctap_command", "getinfo", &[CMD_GET_INFO]);
    write("ctap_command", "getnext", &[CMD_GET_NEXT_ASSERTION]);
    for (n, bytes) in [[0u8; 64], [1u8; 64], [0x55; 64]].iter().enumerate() {
        write("ctap_structured", &format!("bytes-{n}"), bytes);
    }
}
