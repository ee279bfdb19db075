//! One test per applicable line of conformance-checklist.md, asserting the
//! exact status byte. Names follow the checklist wording.

use hybrid_cbor::Value;

use super::*;
use crate::cbor::{b, i, t};
use crate::command::{
    CMD_GET_ASSERTION as GA, CMD_GET_INFO, CMD_GET_NEXT_ASSERTION, CMD_MAKE_CREDENTIAL as MC,
};
use crate::env::{Approval, Command, UserError};
use crate::types::{CredentialDescriptor, Extensions, PrfInput, PrfSalts};

fn entries(cbor: &[u8]) -> Vec<(Value, Value)> {
    match hybrid_cbor::decode_canonical(cbor).unwrap() {
        Value::Map(m) => m,
        _ => unreachable!(),
    }
}

/// The valid makeCredential CBOR with key `k` removed.
fn mc_without(k: i64) -> Vec<u8> {
    let mut m = entries(&mc(false).to_cbor());
    m.retain(|(key, _)| key != &i(k));
    cbor_map(m)
}

/// The valid request CBOR with key `k` replaced by `v`.
fn with(cbor: &[u8], k: i64, v: Value) -> Vec<u8> {
    let mut m = entries(cbor);
    m.retain(|(key, _)| key != &i(k));
    m.push((i(k), v));
    cbor_map(m)
}

fn status(a: &mut Authenticator<TestEnv>, cmd: u8, cbor: &[u8]) -> u8 {
    send(a, &frame(cmd, cbor))[0]
}

// ---- Message / CBOR layer -------------------------------------------------

#[test]
fn checklist_empty_request_0x03() {
    let mut a = auth();
    assert_eq!(send(&mut a, &[]), vec![0x03]);
}

#[test]
fn checklist_unknown_command_0x01() {
    let mut a = auth();
    for cmd in [0x00u8, 0x03, 0x05, 0x09, 0x10, 0x40, 0x41, 0xFF] {
        assert_eq!(send(&mut a, &[cmd]), vec![0x01], "command {cmd:02x}");
        assert_eq!(send(&mut a, &frame(cmd, &mc(false).to_cbor())), vec![0x01]);
    }
}

#[test]
fn checklist_commands_not_offered_over_hybrid_0x01_never_reset() {
    // clientPIN 0x06, reset 0x07, bioEnrollment 0x09, credMgmt 0x0A,
    // selection 0x0B, largeBlobs 0x0C, config 0x0D, and the pre-2.1 0x40/0x41.
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    for cmd in [0x06u8, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x40, 0x41] {
        assert_eq!(send(&mut a, &[cmd]), vec![0x01]);
        assert_eq!(
            send(&mut a, &frame(cmd, &cbor_map(vec![(i(1), i(1))]))),
            vec![0x01]
        );
    }
    assert!(a.env().store.meta(&cred.id).is_some(), "nothing was reset");
}

fn invalid_cbor_cases() -> Vec<(&'static str, Vec<u8>)> {
    let valid = mc(false).to_cbor();
    let mut trailing = valid.clone();
    trailing.push(0x00);
    vec![
        ("truncated", valid[..valid.len() - 1].to_vec()),
        ("trailing", trailing),
        // {1: [[[[[]]]]]} : depth 5 containers.
        ("nesting > 4", hex::decode("a1018181818180").unwrap()),
        ("non-minimal int", hex::decode("a1180101").unwrap()),
        ("non-minimal length", hex::decode("a101580100").unwrap()),
        ("out-of-order keys", hex::decode("a202010101").unwrap()),
        ("duplicate keys", hex::decode("a201010101").unwrap()),
        ("float", hex::decode("a101f93c00").unwrap()),
        ("unknown simple", hex::decode("a101f0").unwrap()),
        ("indefinite", hex::decode("bf0101ff").unwrap()),
        ("tag", hex::decode("a101c001").unwrap()),
        ("invalid utf-8", hex::decode("a10162c328").unwrap()),
    ]
}

#[test]
fn checklist_invalid_cbor_0x12_make_credential() {
    let mut a = auth();
    for (what, cbor) in invalid_cbor_cases() {
        assert_eq!(status(&mut a, MC, &cbor), 0x12, "{what}");
    }
    assert!(a.env().store.credentials.is_empty());
}

#[test]
fn checklist_invalid_cbor_0x12_get_assertion() {
    let mut a = auth();
    register(&mut a, &mc(true));
    for (what, cbor) in invalid_cbor_cases() {
        assert_eq!(status(&mut a, GA, &cbor), 0x12, "{what}");
    }
}

#[test]
fn checklist_invalid_cbor_0x12_prf_missing_first() {
    let mut a = auth();
    register(&mut a, &mc(true));
    let prf = Value::Map(vec![(
        t("eval"),
        Value::Map(vec![(t("second"), b(&[1; 32]))]),
    )]);
    let cbor = with(&ga(&[]).to_cbor(), 4, Value::Map(vec![(t("prf"), prf)]));
    assert_eq!(status(&mut a, GA, &cbor), 0x12);
}

#[test]
fn checklist_known_parameter_wrong_type_0x11() {
    let mut a = auth();
    let base = mc(false).to_cbor();
    for (k, v) in [
        (1, t("not bytes")),
        (2, t("rp")),
        (2, Value::Map(vec![(t("id"), b(b"x"))])),
        (3, Value::Map(vec![(t("id"), t("text id"))])),
        (
            3,
            Value::Map(vec![(t("displayName"), i(1)), (t("id"), b(b"u"))]),
        ),
        (4, Value::Map(vec![])),
        (4, Value::Array(vec![i(-7)])),
        (
            4,
            Value::Array(vec![Value::Map(vec![
                (t("alg"), t("ES256")),
                (t("type"), t("public-key")),
            ])]),
        ),
        (5, Value::Map(vec![])),
        (
            5,
            Value::Array(vec![Value::Map(vec![
                (t("id"), t("x")),
                (t("type"), t("public-key")),
            ])]),
        ),
        (6, Value::Array(vec![])),
        (6, Value::Map(vec![(t("credProtect"), t("high"))])),
        (6, Value::Map(vec![(t("prf"), Value::Bool(true))])),
        (7, Value::Array(vec![])),
        (7, Value::Map(vec![(t("rk"), i(1))])),
        (8, t("param")),
        (9, t("2")),
        (10, t("ea")),
        (11, Value::Array(vec![i(1)])),
    ] {
        assert_eq!(
            status(&mut a, MC, &with(&base, k, v.clone())),
            0x11,
            "key {k} = {v:?}"
        );
    }
    let base = ga(&[]).to_cbor();
    for (k, v) in [
        (1, b(b"example.com")),
        (2, t("cdh")),
        (3, Value::Map(vec![])),
        (5, Value::Map(vec![(t("up"), t("yes"))])),
        (
            4,
            Value::Map(vec![(
                t("prf"),
                Value::Map(vec![(
                    t("evalByCredential"),
                    Value::Map(vec![(t("id"), Value::Map(vec![(t("first"), b(&[0; 32]))]))]),
                )]),
            )]),
        ),
        (
            4,
            Value::Map(vec![(
                t("prf"),
                Value::Map(vec![(t("eval"), Value::Map(vec![(t("first"), t("salt"))]))]),
            )]),
        ),
    ] {
        assert_eq!(
            status(&mut a, GA, &with(&base, k, v.clone())),
            0x11,
            "key {k} = {v:?}"
        );
    }
}

#[test]
fn checklist_top_level_not_a_map_0x11() {
    let mut a = auth();
    assert_eq!(status(&mut a, MC, &hex::decode("80").unwrap()), 0x11);
    assert_eq!(status(&mut a, GA, &hex::decode("01").unwrap()), 0x11);
}

#[test]
fn checklist_getinfo_with_payload_rejected_0x03() {
    // Chromium treats a getInfo payload as a protocol error; we answer
    // CTAP1_ERR_INVALID_LENGTH.
    let mut a = auth();
    assert_eq!(send(&mut a, &[CMD_GET_INFO, 0xa0]), vec![0x03]);
    assert_eq!(send(&mut a, &[CMD_GET_INFO])[0], 0x00);
}

#[test]
fn checklist_request_larger_than_max_msg_size_0x39() {
    let mut a = auth();
    let max = a.config().max_msg_size;
    let mut req = mc(false);
    req.user.display_name = Some("x".repeat(max));
    assert!(req.to_frame().len() > max);
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x39]);
    // The limit itself is accepted.
    let mut req = mc(false);
    let pad = max - req.to_frame().len();
    req.user.display_name = Some("x".repeat(pad.saturating_sub(8)));
    let f = req.to_frame();
    assert!(f.len() <= max);
    assert_eq!(send(&mut a, &f)[0], 0x00);
}

// ---- makeCredential -------------------------------------------------------

#[test]
fn checklist_mc_missing_client_data_hash_0x14() {
    assert_eq!(status(&mut auth(), MC, &mc_without(1)), 0x14);
}

#[test]
fn checklist_mc_missing_rp_0x14() {
    assert_eq!(status(&mut auth(), MC, &mc_without(2)), 0x14);
    let no_id = with(
        &mc(false).to_cbor(),
        2,
        Value::Map(vec![(t("name"), t("x"))]),
    );
    assert_eq!(status(&mut auth(), MC, &no_id), 0x14);
}

#[test]
fn checklist_mc_missing_user_0x14() {
    assert_eq!(status(&mut auth(), MC, &mc_without(3)), 0x14);
    let no_id = with(
        &mc(false).to_cbor(),
        3,
        Value::Map(vec![(t("name"), t("x"))]),
    );
    assert_eq!(status(&mut auth(), MC, &no_id), 0x14);
}

#[test]
fn checklist_mc_missing_pub_key_cred_params_0x14() {
    assert_eq!(status(&mut auth(), MC, &mc_without(4)), 0x14);
    let no_alg = with(
        &mc(false).to_cbor(),
        4,
        Value::Array(vec![Value::Map(vec![(t("type"), t("public-key"))])]),
    );
    assert_eq!(status(&mut auth(), MC, &no_alg), 0x14);
}

#[test]
fn checklist_mc_empty_parameters_0x14() {
    // No CBOR at all after the command byte: every required member is missing.
    let mut a = auth();
    assert_eq!(send(&mut a, &[MC]), vec![0x14]);
    assert_eq!(send(&mut a, &[GA]), vec![0x14]);
    assert_eq!(send(&mut a, &[MC, 0xa0]), vec![0x14]);
}

#[test]
fn checklist_mc_no_supported_algorithm_0x26() {
    let mut a = auth();
    for params in [
        vec![PubKeyCredParam {
            alg: -257,
            cred_type: PUBLIC_KEY.into(),
        }],
        vec![PubKeyCredParam {
            alg: -7,
            cred_type: "unknown-type".into(),
        }],
        vec![],
    ] {
        let mut req = mc(false);
        req.pub_key_cred_params = params;
        assert_eq!(send(&mut a, &req.to_frame()), vec![0x26]);
    }
    // A huge algorithm number is just unsupported.
    let big = with(
        &mc(false).to_cbor(),
        4,
        Value::Array(vec![Value::Map(vec![
            (t("alg"), Value::Integer(u64::MAX.into())),
            (t("type"), t("public-key")),
        ])]),
    );
    assert_eq!(status(&mut a, MC, &big), 0x26);
    assert!(a.env().store.credentials.is_empty());
}

#[test]
fn checklist_mc_up_false_0x2c() {
    let mut req = mc(false);
    req.options.up = Some(false);
    let mut a = auth();
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x2C]);
    assert!(a.env().user.shown.is_empty());
}

#[test]
fn checklist_mc_rk_true_supported() {
    // We support rk, so the "without rk support → 0x2B" line does not apply.
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    assert!(a.env().store.meta(&cred.id).unwrap().discoverable);
}

#[test]
fn checklist_mc_uv_true_valid_with_builtin_uv() {
    let mut a = auth();
    let mut req = mc(false);
    req.options.uv = Some(true);
    register(&mut a, &req);
    // UV requested but the user only confirmed presence → denied.
    a.env_mut().user.then(Ok(Approval {
        user_present: true,
        user_verified: false,
    }));
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x27]);
}

#[test]
fn checklist_mc_unknown_options_and_extensions_ignored() {
    let mut a = auth();
    let base = mc(false).to_cbor();
    let cbor = with(
        &base,
        7,
        Value::Map(vec![(t("zz"), i(5)), (t("plat"), Value::Bool(true))]),
    );
    let cbor = with(
        &cbor,
        6,
        Value::Map(vec![
            (t("unknownExt"), t("?")),
            (t("minPinLength"), Value::Bool(true)),
        ]),
    );
    let cbor = with(&cbor, 99, t("unknown member"));
    let resp = send(&mut a, &frame(MC, &cbor));
    assert_eq!(resp[0], 0);
    // No extension output for anything not understood.
    let (_, r) = rp().verify_registration(&CDH, &resp, false).unwrap();
    let ad = crate::AuthenticatorData::parse(&r.auth_data).unwrap();
    assert!(ad.extensions.is_none());
    assert!(r.unsigned_extension_outputs.is_none());
}

#[test]
fn checklist_mc_exclude_list_match_up_then_0x19() {
    let mut a = auth();
    let cred = register(&mut a, &mc(false));
    let mut req = mc(true);
    req.exclude_list = vec![
        CredentialDescriptor { id: vec![9; 32] },
        CredentialDescriptor {
            id: cred.id.clone(),
        },
    ];
    let before = a.env().store.credentials.len();
    a.env_mut().user.shown.clear();
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x19]);
    assert_eq!(a.env().store.credentials.len(), before, "never stored");
    assert_eq!(a.env().user.shown.len(), 1);
    assert_eq!(a.env().user.shown[0].command, Command::ExcludedCredential);
    // Declining the presence check → 0x27, still nothing stored.
    a.env_mut().user.then(Err(UserError::Declined));
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x27]);
    assert_eq!(a.env().store.credentials.len(), before);
}

#[test]
fn checklist_mc_exclude_list_other_rp_or_unknown_id_not_excluded() {
    let mut a = auth();
    let cred = register(&mut a, &mc(false));
    let mut req = mc(false);
    req.rp.id = "other.example".into();
    req.exclude_list = vec![CredentialDescriptor {
        id: cred.id.clone(),
    }];
    assert_eq!(send(&mut a, &req.to_frame())[0], 0x00);
}

#[test]
fn checklist_mc_zero_length_pin_uv_auth_param_up_then_0x35() {
    let mut a = auth();
    let mut req = mc(false);
    req.pin_uv_auth_param = Some(vec![]);
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x35]);
    assert_eq!(a.env().user.shown.len(), 1);
    assert_eq!(a.env().user.shown[0].command, Command::PresenceOnly);
    assert!(a.env().store.credentials.is_empty());
    // Same rule for getAssertion (§6.2.2 step 1).
    let mut g = ga(&[]);
    g.pin_uv_auth_param = Some(vec![]);
    assert_eq!(send(&mut a, &g.to_frame()), vec![0x35]);
    // The presence check can be declined.
    a.env_mut().user.then(Err(UserError::Timeout));
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x2F]);
}

#[test]
fn checklist_mc_pin_uv_auth_param_without_protocol_0x14() {
    let mut req = mc(false);
    req.pin_uv_auth_param = Some(vec![1; 16]);
    assert_eq!(send(&mut auth(), &req.to_frame()), vec![0x14]);
    let mut g = ga(&[]);
    g.pin_uv_auth_param = Some(vec![1; 16]);
    assert_eq!(send(&mut auth(), &g.to_frame()), vec![0x14]);
}

#[test]
fn checklist_mc_unsupported_pin_uv_auth_protocol_0x02() {
    // No pinUvAuthProtocol is supported (no clientPIN over hybrid), so any
    // protocol number is unsupported; this also covers the "wrong
    // pinUvAuthParam → 0x33" and "PUAT_REQUIRED" lines, which cannot arise.
    for proto in [1u64, 2, 3, 0xFFFF] {
        let mut req = mc(false);
        req.pin_uv_auth_param = Some(vec![1; 16]);
        req.pin_uv_auth_protocol = Some(proto);
        assert_eq!(send(&mut auth(), &req.to_frame()), vec![0x02]);
        let mut g = ga(&[]);
        g.pin_uv_auth_param = Some(vec![1; 32]);
        g.pin_uv_auth_protocol = Some(proto);
        assert_eq!(send(&mut auth(), &g.to_frame()), vec![0x02]);
    }
}

#[test]
fn checklist_mc_enterprise_attestation_0x02() {
    for ea in [1u64, 2, 7] {
        let mut req = mc(false);
        req.enterprise_attestation = Some(ea);
        let mut a = auth();
        assert_eq!(send(&mut a, &req.to_frame()), vec![0x02]);
        assert!(a.env().user.shown.is_empty());
    }
}

#[test]
fn checklist_mc_user_declines_0x27_timeout_0x2f_cancel_0x2d() {
    for (answer, code) in [
        (Err(UserError::Declined), 0x27),
        (Err(UserError::Timeout), 0x2F),
        (Err(UserError::Cancelled), 0x2D),
        (
            Ok(Approval {
                user_present: false,
                user_verified: false,
            }),
            0x27,
        ),
    ] {
        let mut a = auth();
        a.env_mut().user.then(answer);
        assert_eq!(send(&mut a, &mc(true).to_frame()), vec![code]);
        assert!(a.env().store.credentials.is_empty());
        // Same for getAssertion.
        let mut a = auth();
        register(&mut a, &mc(true));
        a.env_mut().user.then(answer);
        assert_eq!(send(&mut a, &ga(&[]).to_frame()), vec![code]);
    }
}

#[test]
fn checklist_mc_vault_full_0x28() {
    let mut a = auth();
    a.env_mut().store.capacity = Some(1);
    register(&mut a, &mc(false));
    assert_eq!(send(&mut a, &mc(false).to_frame()), vec![0x28]);
    // A store backend failure is CTAP1_ERR_OTHER, never a panic.
    a.env_mut().store.broken = true;
    assert_eq!(send(&mut a, &mc(false).to_frame()), vec![0x7F]);
}

#[test]
fn checklist_mc_invalid_utf8_in_display_name_0x12() {
    let mut a = auth();
    let good = mc(false).to_cbor();
    // Replace the display name text "alice D" with bytes that are not UTF-8.
    let needle = b"alice D";
    let pos = good
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap();
    let mut bad = good.clone();
    bad[pos] = 0xC3;
    bad[pos + 1] = 0x28;
    assert_eq!(status(&mut a, MC, &bad), 0x12);
}

#[test]
fn checklist_mc_non_ascii_names_accepted_and_returned() {
    let mut a = auth();
    let mut req = mc(true);
    req.user = UserEntity {
        id: vec![7; 64],
        name: Some("jöhn.dœ@例え.jp".into()),
        display_name: Some("Jöhn 🦀 Dœ".into()),
    };
    req.rp.name = Some("Exämple ✓".into());
    register(&mut a, &req);
    let resp = send(&mut a, &ga(&[]).to_frame());
    let r = crate::GetAssertionResponse::from_cbor(&resp[1..]).unwrap();
    assert_eq!(r.user.unwrap(), req.user);
    assert_eq!(
        a.env().user.shown.last().unwrap().rp_name.as_deref(),
        Some("Exämple ✓")
    );
}

#[test]
fn checklist_mc_many_credentials() {
    let mut a = auth();
    let mut ids = Vec::new();
    for n in 0..50u8 {
        let mut req = mc(n % 2 == 0);
        req.user.id = vec![n; 8];
        ids.push(register(&mut a, &req).id);
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50, "credential IDs never collide");
    // A 50-entry allowList in one request (Chrome sends the whole list).
    let resp = send(&mut a, &ga(&ids).to_frame());
    assert_eq!(resp[0], 0);
}

#[test]
fn checklist_mc_two_credentials_same_user_id_replaces_discoverable() {
    // Same RP and user handle: the newer discoverable credential replaces the
    // older one (CTAP 2.1 §6.1.2 step 17; the store contract).
    let mut a = auth();
    let first = register(&mut a, &mc(true));
    let second = register(&mut a, &mc(true));
    assert_ne!(first.id, second.id);
    assert!(a.env().store.meta(&first.id).is_none());
    // Duplicate IDs in a list are harmless.
    let resp = send(
        &mut a,
        &ga(&[second.id.clone(), second.id.clone()]).to_frame(),
    );
    assert_eq!(resp[0], 0);
}

#[test]
fn checklist_mc_large_blob_key_false_0x2c() {
    let mut req = mc(true);
    req.extensions.large_blob_key = Some(false);
    assert_eq!(send(&mut auth(), &req.to_frame()), vec![0x2C]);
}

#[test]
fn checklist_mc_cred_protect_out_of_range_0x2c() {
    for level in [0u64, 4, 255] {
        let mut req = mc(true);
        req.extensions.cred_protect = Some(level);
        assert_eq!(send(&mut auth(), &req.to_frame()), vec![0x2C]);
    }
}

#[test]
fn checklist_mc_dummy_rp_refused_0x27_never_stored() {
    // Chrome's touch-collecting dummy request (hybrid-protocol.md §7.2).
    let mut a = auth();
    let mut req = MakeCredentialRequest::new(
        vec![0; 32],
        crate::types::RpEntity {
            id: ".dummy".into(),
            name: Some(".dummy".into()),
        },
        UserEntity {
            id: vec![1],
            name: Some("dummy".into()),
            display_name: Some("dummy".into()),
        },
        vec![es256()],
    );
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x27]);
    req.options.rk = Some(true);
    assert_eq!(send(&mut a, &req.to_frame()), vec![0x27]);
    assert!(a.env().store.credentials.is_empty());
    assert!(a.env().user.shown.is_empty(), "no prompt for .dummy");
}

// ---- getAssertion / getNextAssertion -------------------------------------

#[test]
fn checklist_ga_missing_rp_id_0x14() {
    let mut m = entries(&ga(&[]).to_cbor());
    m.retain(|(k, _)| k != &i(1));
    assert_eq!(status(&mut auth(), GA, &cbor_map(m)), 0x14);
}

#[test]
fn checklist_ga_missing_client_data_hash_0x14() {
    let mut m = entries(&ga(&[]).to_cbor());
    m.retain(|(k, _)| k != &i(2));
    assert_eq!(status(&mut auth(), GA, &cbor_map(m)), 0x14);
}

#[test]
fn checklist_ga_rk_option_0x2c() {
    let mut a = auth();
    register(&mut a, &mc(true));
    for rk in [true, false] {
        let mut g = ga(&[]);
        g.options.rk = Some(rk);
        assert_eq!(send(&mut a, &g.to_frame()), vec![0x2C]);
    }
}

#[test]
fn checklist_ga_hmac_secret_with_up_false_0x2b() {
    let mut a = auth();
    register(&mut a, &mc(true));
    let mut g = ga(&[]);
    g.options.up = Some(false);
    g.extensions.hmac_secret = true;
    assert_eq!(send(&mut a, &g.to_frame()), vec![0x2B]);
}

#[test]
fn checklist_ga_large_blob_key_false_0x2c() {
    let mut a = auth();
    register(&mut a, &mc(true));
    let mut g = ga(&[]);
    g.extensions.large_blob_key = Some(false);
    assert_eq!(send(&mut a, &g.to_frame()), vec![0x2C]);
}

#[test]
fn checklist_ga_no_credentials_0x2e_empty_allow_list() {
    let mut a = auth();
    assert_eq!(send(&mut a, &ga(&[]).to_frame()), vec![0x2E]);
    // A non-discoverable credential is not found without an allowList.
    register(&mut a, &mc(false));
    assert_eq!(send(&mut a, &ga(&[]).to_frame()), vec![0x2E]);
    assert!(a
        .env()
        .user
        .shown
        .iter()
        .all(|r| r.command != Command::GetAssertion));
}

#[test]
fn checklist_ga_no_credentials_0x2e_unknown_allow_list() {
    let mut a = auth();
    register(&mut a, &mc(true));
    assert_eq!(
        send(&mut a, &ga(&[vec![1; 32], vec![2; 16]]).to_frame()),
        vec![0x2E]
    );
    // Descriptors of another type are skipped: an allowList with only those
    // behaves as empty, i.e. discovery.
    let allow = Value::Array(vec![Value::Map(vec![
        (t("id"), b(&[1; 32])),
        (t("type"), t("other")),
    ])]);
    let cbor = with(&ga(&[]).to_cbor(), 3, allow);
    assert_eq!(status(&mut a, GA, &cbor), 0x00);
}

#[test]
fn checklist_ga_no_credentials_0x2e_wrong_rp() {
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    let mut g = ga(&[cred.id.clone()]);
    g.rp_id = "evil.example".into();
    assert_eq!(send(&mut a, &g.to_frame()), vec![0x2E]);
    g.allow_list.clear();
    assert_eq!(send(&mut a, &g.to_frame()), vec![0x2E]);
}

#[test]
fn checklist_ga_no_credentials_0x2e_cred_protect_filtered() {
    // Level 3 without UV, level 2 discovery without UV: filtered → 0x2E.
    for level in [2u64, 3] {
        let mut a = auth();
        let mut req = mc(true);
        req.options.uv = None;
        req.extensions.cred_protect = Some(level);
        let cred = register(&mut a, &req);
        a.env_mut().user.default_answer = Ok(Approval {
            user_present: true,
            user_verified: false,
        });
        let mut g = ga(&[]);
        g.options.uv = None;
        assert_eq!(
            send(&mut a, &g.to_frame()),
            vec![0x2E],
            "level {level} discovery"
        );
        g.allow_list = vec![CredentialDescriptor {
            id: cred.id.clone(),
        }];
        let expect = if level == 3 { 0x2E } else { 0x00 };
        assert_eq!(
            send(&mut a, &g.to_frame())[0],
            expect,
            "level {level} allowList"
        );
    }
}

#[test]
fn checklist_get_next_assertion_nothing_pending_0x30() {
    let mut a = auth();
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION]), vec![0x30]);
    // After a single-credential getAssertion there is nothing pending either.
    register(&mut a, &mc(true));
    assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION]), vec![0x30]);
}

fn two_discoverable(a: &mut Authenticator<TestEnv>) {
    register(a, &mc(true));
    let mut second = mc(true);
    second.user = user(b"user-2", "bob");
    register(a, &second);
}

#[test]
fn checklist_get_next_assertion_after_30s_0x30() {
    let mut a = auth();
    two_discoverable(&mut a);
    assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
    a.env_mut().clock.advance_ms(30_001);
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION]), vec![0x30]);
    // Exactly at 30 s it is still allowed.
    assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
    a.env_mut().clock.advance_ms(30_000);
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION])[0], 0);
}

#[test]
fn checklist_get_next_assertion_on_another_channel_0x30() {
    // One Authenticator serves one hybrid session at a time; the daemon
    // calls end_session between sessions, and any other command in between
    // also discards the state (CTAP 2.1 §6.3).
    let mut a = auth();
    two_discoverable(&mut a);
    assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
    a.end_session();
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION]), vec![0x30]);
    assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
    assert_eq!(send(&mut a, &[CMD_GET_INFO])[0], 0);
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION]), vec![0x30]);
    // A payload on getNextAssertion is a length error.
    assert_eq!(send(&mut a, &ga(&[]).to_frame())[0], 0);
    assert_eq!(send(&mut a, &[CMD_GET_NEXT_ASSERTION, 0xa0]), vec![0x03]);
}

#[test]
fn checklist_ga_empty_user_id_omitted() {
    let mut a = auth();
    let mut req = mc(true);
    req.user.id = Vec::new();
    register(&mut a, &req);
    let resp = send(&mut a, &ga(&[]).to_frame());
    assert_eq!(resp[0], 0);
    let r = crate::GetAssertionResponse::from_cbor(&resp[1..]).unwrap();
    assert!(r.user.is_none());
    let m = entries(&resp[1..]);
    assert!(m.iter().all(|(k, _)| k != &i(4)));
}

#[test]
fn checklist_ga_prf_eval_by_credential_key_not_bytes_0x11_and_extensions_not_map() {
    let mut a = auth();
    register(&mut a, &mc(true));
    let mut g = ga(&[]);
    g.extensions = Extensions {
        prf: Some(PrfInput {
            eval: Some(PrfSalts {
                first: vec![1; 32],
                second: None,
            }),
            eval_by_credential: vec![],
        }),
        ..Extensions::default()
    };
    assert_eq!(send(&mut a, &g.to_frame())[0], 0);
    let cbor = with(&ga(&[]).to_cbor(), 4, Value::Array(vec![]));
    assert_eq!(status(&mut a, GA, &cbor), 0x11);
}
