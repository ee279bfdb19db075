//! Drives webauthn-authenticator-rs's caBLE initiator against a hybridd phone
//! over the initiator's normal tunnel path (`connect_cable_authenticator`,
//! without `cable-override-tunnel`): the initiator derives
//! `wss://cable.ua5v.com` from the advert's tunnel server id 0 and checks TLS
//! with native-tls/OpenSSL (tests/interop/peers/run.sh; results in
//! docs/interop.md). The relying party is webauthn-rs-core.
//!
//! Env:
//! * DRIVER_QR_FILE: where each QR (`FIDO:/…`) is written (write, then rename);
//! * DRIVER_SCAN_CMD: shell command run after the QR file is written (the
//!   person scanning it: `hybridd scan - < qr.txt`);
//! * DRIVER_SCENARIO: `uv` (create, then get with an allow list), `rk`
//!   (discoverable; this initiator cannot express it, see docs/interop.md)
//!   or `tls-fail` (one create that must fail: the tunnel's CA is not
//!   trusted);
//! * DRIVER_RUNS: create+get runs (default 1);
//! * DRIVER_ATTESTATION: `none` (default) | `direct`;
//! * DRIVER_CONNECT_TIMEOUT_SECS: limit for finding the phone (default 60).
// Byte fields are `Base64UrlSafeData` in 0.5 and `Vec<u8>` in 0.6; the
// `.into()`s serve both.
#![allow(clippy::useless_conversion)]

#[cfg(all(feature = "v0_5", not(feature = "v0_6")))]
extern crate wa_authenticator_0_5 as webauthn_authenticator_rs;
#[cfg(feature = "v0_6")]
extern crate wa_authenticator_0_6 as webauthn_authenticator_rs;
#[cfg(all(feature = "v0_5", not(feature = "v0_6")))]
extern crate wa_core_0_5 as webauthn_rs_core;
#[cfg(feature = "v0_6")]
extern crate wa_core_0_6 as webauthn_rs_core;
#[cfg(all(feature = "v0_5", not(feature = "v0_6")))]
extern crate wa_proto_0_5 as webauthn_rs_proto;
#[cfg(feature = "v0_6")]
extern crate wa_proto_0_6 as webauthn_rs_proto;
#[cfg(all(feature = "v0_5", feature = "v0_6"))]
compile_error!(
    "pick one webauthn-rs release: --no-default-features --features v0_5, or the default v0_6"
);
#[cfg(not(any(feature = "v0_5", feature = "v0_6")))]
compile_error!("pick a webauthn-rs release: feature v0_5 or v0_6");

#[path = "../../common/driver.rs"]
mod common;

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use webauthn_authenticator_rs::cable::connect_cable_authenticator;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::prelude::Url;
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_authenticator_rs::AuthenticatorBackend;
use webauthn_rs_core::proto::{Credential, ParsedAttestationData};
use webauthn_rs_core::WebauthnCore;

use common::env;
use webauthn_rs_proto::{
    AttestationConveyancePreference, RegisterPublicKeyCredential, UserVerificationPolicy,
};

#[derive(Debug)]
struct Ui {
    qr_file: String,
    scan_cmd: String,
    scans: Mutex<Vec<JoinHandle<()>>>,
}

impl UiCallback for Ui {
    fn request_pin(&self) -> Option<String> {
        eprintln!("driver: initiator asked for a PIN (unexpected); refusing");
        None
    }
    fn request_touch(&self) {}
    fn processing(&self) {}
    fn fingerprint_enrollment_feedback(&self, _: u32, _: Option<EnrollSampleStatus>) {}
    fn cable_qr_code(&self, request_type: CableRequestType, url: String) {
        eprintln!("driver: QR for {request_type:?}: {url}");
        if let Some(h) = common::show_qr(&self.qr_file, &self.scan_cmd, &url) {
            self.scans.lock().unwrap().push(h);
        }
    }
    fn dismiss_qr_code(&self) {
        eprintln!("driver: advert matched, QR dismissed");
    }
    fn cable_status_update(&self, state: CableState) {
        eprintln!("driver: cable state {state:?}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn att_kind(d: &ParsedAttestationData) -> &'static str {
    match d {
        ParsedAttestationData::Basic(_) => "Basic",
        ParsedAttestationData::Self_ => "Self",
        ParsedAttestationData::AttCa(_) => "AttCa",
        ParsedAttestationData::AnonCa(_) => "AnonCa",
        ParsedAttestationData::ECDAA => "ECDAA",
        ParsedAttestationData::None => "None",
        ParsedAttestationData::Uncertain => "Uncertain",
    }
}

/// Flips one byte in the middle of the packed attStmt `sig` byte string
/// (CBOR text "sig" followed by a one-byte-length byte string header 0x58).
fn tamper_att_sig(r: &RegisterPublicKeyCredential) -> Option<RegisterPublicKeyCredential> {
    let mut ao: Vec<u8> = r.response.attestation_object.clone().into();
    let pat = [0x63u8, b's', b'i', b'g', 0x58];
    let pos = ao.windows(pat.len()).position(|w| w == pat)?;
    let len = *ao.get(pos + 5)? as usize;
    let idx = pos + 6 + len / 2;
    *ao.get_mut(idx)? ^= 0x01;
    let mut bad = r.clone();
    bad.response.attestation_object = ao.into();
    Some(bad)
}

struct Ctx<'a> {
    wan: WebauthnCore,
    origin: Url,
    ui: &'a Ui,
    timeout: Duration,
}

impl Ctx<'_> {
    /// One ceremony: connect through caBLE for `kind` (the QR goes to the
    /// person through `Ui`), then run `op` on the authenticator. Returns its
    /// result and the time from the call to the answer.
    async fn ceremony<T>(
        &self,
        kind: CableRequestType,
        what: &str,
        op: impl FnOnce(&mut dyn AuthenticatorBackend) -> Result<T, WebauthnCError>,
    ) -> Result<(T, u128), String> {
        let t0 = Instant::now();
        let mut auth =
            tokio::time::timeout(self.timeout, connect_cable_authenticator(kind, self.ui))
                .await
                .map_err(|_| format!("connect timed out after {:?}", self.timeout))?
                .map_err(|e| format!("connect: {e:?}"))?;
        let r = tokio::task::block_in_place(|| op(&mut auth));
        drop(auth);
        let ms = t0.elapsed().as_millis();
        r.map(|r| (r, ms)).map_err(|e| format!("{what}: {e:?}"))
    }

    /// create; returns the verified credential and the ceremony time.
    async fn create(
        &self,
        run: usize,
        rk: bool,
        att: AttestationConveyancePreference,
    ) -> Result<(Credential, u128), String> {
        let mut user_id = [0u8; 16];
        user_id[..8].copy_from_slice(&(run as u64).to_le_bytes());
        user_id[8..].copy_from_slice(&(std::process::id() as u64).to_le_bytes());
        let name = format!("peer-normal-{run}");
        let builder = self
            .wan
            .new_challenge_register_builder(&user_id, &name, &name)
            .unwrap()
            .attestation(att)
            .require_resident_key(rk)
            .user_verification_policy(UserVerificationPolicy::Required);
        let (chal, reg_state) = self.wan.generate_challenge_register(builder).unwrap();
        eprintln!(
            "driver: creation options: attestation={:?} authenticatorSelection={:?}",
            chal.public_key.attestation, chal.public_key.authenticator_selection
        );
        let origin = self.origin.clone();
        let (r, ms) = self
            .ceremony(CableRequestType::MakeCredential, "perform_register", |a| {
                a.perform_register(origin, chal.public_key, 60_000)
            })
            .await?;
        // Negative control: a tampered packed attestation signature must be rejected.
        let tamper = match tamper_att_sig(&r) {
            Some(bad) => match self.wan.register_credential(&bad, &reg_state, None) {
                Err(e) => format!("rejected({e:?})"),
                Ok(_) => return Err("tampered attestation signature was ACCEPTED".into()),
            },
            None => "n/a(no packed sig)".into(),
        };
        let cred = self
            .wan
            .register_credential(&r, &reg_state, None)
            .map_err(|e| format!("register_credential: {e:?}"))?;
        println!(
            "RUN {run} create: OK fmt={:?} attestation={} tampered_att_sig={} cred_id={} alg={:?} uv={} be={} bs={} total_ms={ms}",
            cred.attestation_format,
            att_kind(&cred.attestation.data),
            tamper,
            hex(cred.cred_id.as_ref()),
            cred.cred.type_,
            cred.user_verified,
            cred.backup_eligible,
            cred.backup_state,
        );
        if !cred.user_verified {
            return Err("UV flag not set".into());
        }
        Ok((cred, ms))
    }

    /// get; `discoverable` sends an empty allowCredentials.
    async fn get(&self, run: usize, cred: &Credential, discoverable: bool) -> Result<u128, String> {
        let allow = if discoverable {
            vec![]
        } else {
            vec![cred.clone()]
        };
        let (chal, mut auth_state) = self
            .wan
            .new_challenge_authenticate_builder(allow, Some(UserVerificationPolicy::Required))
            .and_then(|b| self.wan.generate_challenge_authenticate(b))
            .unwrap();
        eprintln!(
            "driver: request options: allowCredentials={} userVerification={:?}",
            chal.public_key.allow_credentials.len(),
            chal.public_key.user_verification
        );
        let origin = self.origin.clone();
        let (r, ms) = self
            .ceremony(CableRequestType::GetAssertion, "perform_auth", |a| {
                a.perform_auth(origin, chal.public_key, 60_000)
            })
            .await?;
        let user_handle = r.response.user_handle.as_ref().map(|u| hex(u.as_ref()));
        if discoverable {
            // What webauthn-rs's start/finish_discoverable_authentication do:
            // identify the credential from the response, then allow exactly it.
            if r.raw_id.as_slice() != cred.cred_id.as_slice() {
                return Err(format!(
                    "discoverable get returned another credential {}",
                    hex(r.raw_id.as_ref())
                ));
            }
            auth_state.set_allowed_credentials(vec![cred.clone()]);
        }
        let mut bad = r.clone();
        bad.response.signature = common::flip_middle(bad.response.signature.as_ref()).into();
        let tampered_rejected = self.wan.authenticate_credential(&bad, &auth_state).is_err();
        let res = self
            .wan
            .authenticate_credential(&r, &auth_state)
            .map_err(|e| format!("authenticate_credential: {e:?}"))?;
        if !tampered_rejected {
            return Err("tampered signature was ACCEPTED".into());
        }
        println!(
            "RUN {run} get{}: OK sig_verified=true tampered_rejected=true uv={} counter={} user_handle={:?} total_ms={ms}",
            if discoverable { "(empty allowCredentials)" } else { "" },
            res.user_verified(),
            res.counter(),
            user_handle,
        );
        if !res.user_verified() {
            return Err("UV flag not set".into());
        }
        Ok(ms)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    common::init_tracing();

    let ui = Ui {
        qr_file: env("DRIVER_QR_FILE", "qr.txt"),
        scan_cmd: env("DRIVER_SCAN_CMD", ""),
        scans: Mutex::new(Vec::new()),
    };
    let runs: usize = env("DRIVER_RUNS", "1").parse().unwrap();
    let scenario = env("DRIVER_SCENARIO", "uv");
    let att = match env("DRIVER_ATTESTATION", "none").as_str() {
        "direct" => AttestationConveyancePreference::Direct,
        _ => AttestationConveyancePreference::None,
    };
    let origin = Url::parse("https://localhost:8080").unwrap();
    let ctx = Ctx {
        wan: WebauthnCore::new_unsafe_experts_only(
            "hybridd interop",
            "localhost",
            vec![origin.clone()],
            Duration::from_secs(60),
            None,
            None,
        ),
        origin,
        ui: &ui,
        timeout: Duration::from_secs(env("DRIVER_CONNECT_TIMEOUT_SECS", "60").parse().unwrap()),
    };
    eprintln!(
        "driver: SSL_CERT_FILE={:?}",
        std::env::var("SSL_CERT_FILE").ok()
    );

    let mut ok = 0;
    let (mut tc, mut tg) = (Vec::new(), Vec::new());
    match scenario.as_str() {
        "tls-fail" => {
            // Expect the wss:// connect to fail on the tunnel's certificate
            // (CA not trusted) — not on anything else: webauthn-rs reports
            // it as "connect: Internal" and logs the cause.
            match ctx.create(1, false, att.clone()).await {
                Ok(_) => println!("TLS-NEGATIVE: FAIL ceremony succeeded without a trusted CA"),
                Err(e) => match common::tls_certificate_failure() {
                    Some(cause) if e.starts_with("connect:") => {
                        println!("TLS-NEGATIVE: OK initiator failed: {e}; cause: {cause}");
                        ok = runs;
                    }
                    _ => println!(
                        "TLS-NEGATIVE: FAIL the initiator failed, but not on the tunnel's \
                         certificate: {e}"
                    ),
                },
            }
        }
        "uv" | "rk" => {
            let rk = scenario == "rk";
            for run in 1..=runs {
                let cred = match ctx.create(run, rk, att.clone()).await {
                    Ok((c, ms)) => {
                        tc.push(ms);
                        c
                    }
                    Err(e) => {
                        println!("RUN {run} create: FAIL {e}");
                        continue;
                    }
                };
                match ctx.get(run, &cred, rk).await {
                    Ok(ms) => {
                        tg.push(ms);
                        ok += 1;
                    }
                    Err(e) => println!(
                        "RUN {run} get{}: FAIL {e}",
                        if rk { "(empty allowCredentials)" } else { "" }
                    ),
                }
            }
        }
        s => panic!("unknown DRIVER_SCENARIO {s}"),
    }
    common::print_times("create", &mut tc);
    common::print_times("get", &mut tg);
    println!("DRIVER RESULT: scenario={scenario} attestation={att:?} {ok}/{runs} verified");
    // Let each `hybridd scan` finish so its outcome is in the log.
    let hs: Vec<_> = ui.scans.lock().unwrap().drain(..).collect();
    for h in hs {
        let _ = h.join();
    }
    std::process::exit(if ok == runs { 0 } else { 1 });
}
