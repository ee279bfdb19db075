//! The lengths CTAP fixes (issue 16), in the checklist's style: exact status
//! byte, nothing stored, nobody asked. The conformance checklist names no
//! code for them; `CTAP1_ERR_INVALID_LENGTH` (0x03, "invalid message or item
//! length", CTAP 2.1 §8.2 status codes) is the one CTAP 2.1 uses for a
//! wrong-length item, as for hmac-secret salts (§12.5: `saltEnc` of one or
//! two 32-byte salts) and as OpenSK answers oversized items.
//!
//! * `clientDataHash`: exactly 32 bytes (SHA-256 of the client data,
//!   WebAuthn §5.8.1; Chromium's parser refuses any other length,
//!   `kClientDataHashLength`).
//! * PRF salts (`first`, `second`, in `eval` and `evalByCredential`):
//!   exactly 32 bytes (hybrid-protocol.md §7.4: SHA-256 outputs, the
//!   hmac-secret evaluation input, §12.5).
//! * `user.id`: at most 64 bytes (WebAuthn §5.4.3 `user.id`, CTAP 2.1 §6.1
//!   `user`); empty stays allowed (non-discoverable).

use hybrid_cbor::Value;

use super::*;
use crate::cbor::{b, i, t};
use crate::command::{CMD_GET_ASSERTION as GA, CMD_MAKE_CREDENTIAL as MC};
use crate::types::{PrfInput, PrfSalts};

const INVALID_LENGTH: u8 = 0x03;

/// The request CBOR with key `k` replaced by `v`.
fn with(cbor: &[u8], k: i64, v: Value) -> Vec<u8> {
    let mut m = match hybrid_cbor::decode_canonical(cbor).unwrap() {
        Value::Map(m) => m,
        _ => unreachable!(),
    };
    m.retain(|(key, _)| key != &i(k));
    m.push((i(k), v));
    cbor_map(m)
}

/// Whether the person was asked anything.
fn asked(a: &Authenticator<TestEnv>) -> bool {
    !a.env().user.shown.is_empty()
}

const WRONG: [usize; 5] = [0, 1, 31, 33, 64];

#[test]
fn lengths_client_data_hash_not_32_bytes_0x03_make_credential() {
    for n in WRONG {
        let mut a = auth();
        let cbor = with(&mc(true).to_cbor(), 1, b(&vec![0x42; n]));
        assert_eq!(
            send(&mut a, &frame(MC, &cbor)),
            vec![INVALID_LENGTH],
            "{n} bytes"
        );
        assert!(a.env().store.credentials.is_empty(), "{n} bytes: stored");
        assert!(!asked(&a), "{n} bytes: the person was asked");
    }
    let mut a = auth();
    assert_eq!(send(&mut a, &mc(true).to_frame())[0], 0, "32 bytes");
}

#[test]
fn lengths_client_data_hash_not_32_bytes_0x03_get_assertion() {
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    let shown = a.env().user.shown.len();
    for n in WRONG {
        let cbor = with(&ga(&[cred.id.clone()]).to_cbor(), 2, b(&vec![0x42; n]));
        assert_eq!(
            send(&mut a, &frame(GA, &cbor)),
            vec![INVALID_LENGTH],
            "{n} bytes"
        );
    }
    assert_eq!(a.env().user.shown.len(), shown, "the person was asked");
    assert_eq!(a.env().store.credentials[0].0.sign_count, 0);
    assert_eq!(send(&mut a, &ga(&[cred.id]).to_frame())[0], 0, "32 bytes");
}

fn prf_ext(eval: Option<PrfSalts>, by: Vec<(Vec<u8>, PrfSalts)>) -> Value {
    let p = PrfInput {
        eval,
        eval_by_credential: by,
    };
    Value::Map(vec![(t("prf"), p.to_value())])
}

fn salts(first: usize, second: Option<usize>) -> PrfSalts {
    PrfSalts {
        first: vec![1; first],
        second: second.map(|n| vec![2; n]),
    }
}

#[test]
fn lengths_prf_salt_not_32_bytes_0x03() {
    // makeCredential `prf.eval`.
    for (first, second) in [
        (16, None),
        (33, None),
        (0, None),
        (32, Some(31)),
        (32, Some(64)),
    ] {
        let mut a = auth();
        let ext = prf_ext(Some(salts(first, second)), vec![]);
        let cbor = with(&mc(true).to_cbor(), 6, ext);
        assert_eq!(
            send(&mut a, &frame(MC, &cbor)),
            vec![INVALID_LENGTH],
            "makeCredential first {first}, second {second:?}"
        );
        assert!(a.env().store.credentials.is_empty());
        assert!(!asked(&a));
    }
    // getAssertion `prf.eval` and `prf.evalByCredential`.
    let mut a = auth();
    let cred = register(&mut a, &mc(true));
    let shown = a.env().user.shown.len();
    let base = ga(&[]).to_cbor();
    for ext in [
        prf_ext(Some(salts(31, None)), vec![]),
        prf_ext(Some(salts(32, Some(33))), vec![]),
        prf_ext(None, vec![(cred.id.clone(), salts(0, None))]),
        prf_ext(
            Some(salts(32, None)),
            vec![(vec![9; 16], salts(32, Some(1)))],
        ),
    ] {
        assert_eq!(
            send(&mut a, &frame(GA, &with(&base, 4, ext.clone()))),
            vec![INVALID_LENGTH],
            "{ext:?}"
        );
    }
    assert_eq!(a.env().user.shown.len(), shown, "the person was asked");
    // 32-byte salts work.
    let ok = prf_ext(Some(salts(32, Some(32))), vec![(cred.id, salts(32, None))]);
    assert_eq!(send(&mut a, &frame(GA, &with(&base, 4, ok)))[0], 0);
}

#[test]
fn lengths_user_id_over_64_bytes_0x03() {
    for n in [65usize, 100, 4096] {
        let mut a = auth();
        let mut req = mc(true);
        req.user.id = vec![7; n];
        assert_eq!(
            send(&mut a, &req.to_frame()),
            vec![INVALID_LENGTH],
            "{n} bytes"
        );
        assert!(a.env().store.credentials.is_empty());
        assert!(!asked(&a));
    }
    for n in [0usize, 1, 64] {
        let mut a = auth();
        let mut req = mc(n > 0);
        req.user.id = vec![7; n];
        assert_eq!(send(&mut a, &req.to_frame())[0], 0, "{n} bytes");
    }
}
