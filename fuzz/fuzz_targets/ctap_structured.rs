#![no_main]
//! Structured requests (derived with `arbitrary`) → `to_frame` → process,
//! as a sequence with clock steps and scripted user answers, so the fuzzer
//! reaches deep states (exclude hits, credProtect, PRF, getNextAssertion
//! expiry) that random bytes rarely form. Approvals are answered from the
//! script, or — after `Hold` — left parked, so that a later request
//! abandons the parked one or a `Resume` answers it (or answers nothing).
use arbitrary::Arbitrary;
use hybrid_ctap::testing::test_authenticator;
use hybrid_ctap::types::{
    CredentialDescriptor, Extensions, Options, PrfInput, PrfSalts, PubKeyCredParam, RpEntity,
    UserEntity,
};
use hybrid_ctap::{
    Approval, GetAssertionRequest, MakeCredentialRequest, RequestContext, Step, UserError,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct FSalts {
    first: Vec<u8>,
    second: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct FExt {
    cred_protect: Option<u8>,
    prf: Option<(Option<FSalts>, Vec<(Option<u8>, FSalts)>)>,
    hmac_secret: bool,
    large_blob_key: Option<bool>,
}

#[derive(Arbitrary, Debug)]
struct FOpts {
    rk: Option<bool>,
    up: Option<bool>,
    uv: Option<bool>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    MakeCredential {
        rp: u8,
        user: u8,
        algs: Vec<i8>,
        exclude: Vec<Option<u8>>,
        ext: FExt,
        opts: FOpts,
        pin: Option<(Vec<u8>, Option<u8>)>,
        ea: Option<u8>,
        none_fmt: bool,
    },
    GetAssertion {
        rp: u8,
        allow: Vec<Option<u8>>,
        ext: FExt,
        opts: FOpts,
    },
    GetNext,
    GetInfo,
    Advance(u16),
    User(u8),
    EndSession,
    /// Toggle: leave the next approvals parked instead of answering them.
    Hold,
    /// Answer whatever is parked (or nothing) with this answer.
    Resume(u8),
}

const RPS: [&str; 3] = ["example.com", "other.example", ".dummy"];

fn salts(s: FSalts) -> PrfSalts {
    PrfSalts {
        first: s.first,
        second: s.second,
    }
}

/// `Some(i)` picks the i-th credential created so far; `None` a bogus ID.
fn id(known: &[Vec<u8>], pick: Option<u8>) -> Vec<u8> {
    match pick {
        Some(i) if !known.is_empty() => known[usize::from(i) % known.len()].clone(),
        _ => vec![0xEE; 32],
    }
}

fn ext(e: FExt, known: &[Vec<u8>]) -> Extensions {
    Extensions {
        cred_protect: e.cred_protect.map(u64::from),
        prf: e.prf.map(|(eval, by)| {
            let mut by: Vec<(Vec<u8>, PrfSalts)> = by
                .into_iter()
                .map(|(k, s)| (id(known, k), salts(s)))
                .collect();
            by.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(&b.0)));
            by.dedup_by(|a, b| a.0 == b.0);
            PrfInput {
                eval: eval.map(salts),
                eval_by_credential: by,
            }
        }),
        hmac_secret: e.hmac_secret,
        large_blob_key: e.large_blob_key,
    }
}

fn answer(n: u8) -> Result<Approval, UserError> {
    match n % 5 {
        0 => Ok(Approval {
            user_present: true,
            user_verified: true,
        }),
        1 => Ok(Approval {
            user_present: true,
            user_verified: false,
        }),
        2 => Err(UserError::Declined),
        3 => Err(UserError::Timeout),
        _ => Err(UserError::Cancelled),
    }
}

/// A reply's bytes are a status byte, then canonical CBOR on success.
fn check_reply(bytes: &[u8]) -> u8 {
    let (&status, body) = bytes.split_first().expect("never empty");
    if status == 0 {
        let v = hybrid_cbor::decode_canonical(body).expect("canonical response");
        assert_eq!(hybrid_cbor::to_canonical_vec(&v), body);
    } else {
        assert!(body.is_empty());
    }
    status
}

fn opts(o: FOpts) -> Options {
    Options {
        rk: o.rk,
        up: o.up,
        uv: o.uv,
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut a = test_authenticator(4);
    let ctx = RequestContext {
        qr_age_secs: Some(1),
        hint: None,
    };
    let mut known: Vec<Vec<u8>> = Vec::new();
    let mut hold = false;
    for op in ops.into_iter().take(32) {
        let frame = match op {
            Op::MakeCredential {
                rp,
                user,
                algs,
                exclude,
                ext: e,
                opts: o,
                pin,
                ea,
                none_fmt,
            } => {
                let rp_id = RPS[usize::from(rp) % RPS.len()];
                let mut req = MakeCredentialRequest::new(
                    vec![rp; 32],
                    RpEntity {
                        id: rp_id.into(),
                        name: Some("RP".into()),
                    },
                    UserEntity {
                        id: vec![user],
                        name: Some("u".into()),
                        display_name: None,
                    },
                    algs.into_iter()
                        .map(|alg| PubKeyCredParam {
                            alg: i64::from(alg),
                            cred_type: "public-key".into(),
                        })
                        .collect(),
                );
                req.exclude_list = exclude
                    .into_iter()
                    .map(|p| CredentialDescriptor { id: id(&known, p) })
                    .collect();
                req.extensions = ext(e, &known);
                req.options = opts(o);
                if let Some((param, proto)) = pin {
                    req.pin_uv_auth_param = Some(param);
                    req.pin_uv_auth_protocol = proto.map(u64::from);
                }
                req.enterprise_attestation = ea.map(u64::from);
                if none_fmt {
                    req.attestation_formats_preference = Some(vec!["none".into()]);
                }
                req.to_frame()
            }
            Op::GetAssertion {
                rp,
                allow,
                ext: e,
                opts: o,
            } => {
                let mut req =
                    GetAssertionRequest::new(RPS[usize::from(rp) % RPS.len()].into(), vec![rp; 32]);
                req.allow_list = allow
                    .into_iter()
                    .map(|p| CredentialDescriptor { id: id(&known, p) })
                    .collect();
                req.extensions = ext(e, &known);
                req.options = opts(o);
                req.to_frame()
            }
            Op::GetNext => vec![0x08],
            Op::GetInfo => vec![0x04],
            Op::Advance(ms) => {
                a.env_mut().clock.advance_ms(u64::from(ms) * 10);
                continue;
            }
            Op::User(n) => {
                a.env_mut().user.then(answer(n));
                continue;
            }
            Op::EndSession => {
                a.end_session();
                assert!(!a.is_waiting_for_user());
                continue;
            }
            Op::Hold => {
                hold = !hold;
                continue;
            }
            Op::Resume(n) => {
                let parked = a.is_waiting_for_user();
                match a.resume(answer(n)) {
                    Step::Reply(r) => {
                        let status = check_reply(&r.bytes);
                        assert!(parked || status == 0x30, "resume without a request");
                    }
                    Step::NeedsUser(_) => assert!(parked && a.is_waiting_for_user()),
                }
                continue;
            }
        };
        let before = a.env().store.credentials.len();
        let status = if hold {
            match a.process(&frame, &ctx) {
                Step::Reply(r) => check_reply(&r.bytes),
                Step::NeedsUser(_) => {
                    assert!(a.is_waiting_for_user());
                    assert_eq!(
                        a.env().store.credentials.len(),
                        before,
                        "nothing before consent"
                    );
                    continue;
                }
            }
        } else {
            check_reply(&a.process_scripted(&frame, &ctx))
        };
        // Remember new credentials; ".dummy" is never stored.
        for (m, _) in &a.env().store.credentials {
            assert_ne!(m.rp_id, ".dummy");
            if !known.contains(&m.id) {
                known.push(m.id.clone());
            }
        }
        if frame.first() == Some(&0x01) && status != 0 {
            assert!(
                a.env().store.credentials.len() <= before,
                "a failed makeCredential stores nothing"
            );
        }
    }
});
