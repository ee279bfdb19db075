//! Drives libwebauthn's caBLE (hybrid) initiator against a hybridd phone
//! (tests/interop/peers/run.sh; results in docs/interop.md). The relying
//! party is webauthn-rs-core (a different project); each assertion is also
//! checked by hand with p256.
//!
//! Env:
//! * DRIVER_QR_FILE: where each QR (`FIDO:/…`) is written (write, then rename);
//! * DRIVER_SCAN_CMD: shell command run after the QR file is written (the
//!   person scanning it: `hybridd scan - < qr.txt`);
//! * DRIVER_SCENARIO: `uv` (create, then get with an allow list), `rk`
//!   (discoverable create, then get with an empty allow list) or `tls-fail`
//!   (one create that must fail: the tunnel's CA is not trusted);
//! * DRIVER_RUNS: create+get runs (default 1);
//! * DRIVER_RK_BASE: discoverable credentials the RP already has on this
//!   phone (an `rk` get returns all of them; default 0);
//! * DRIVER_WAIT_SCAN: `1` (default) starts each ceremony only after the
//!   previous `hybridd scan` exited, as a person would; `0` does not wait;
//! * DRIVER_TRANSPORTS: `only` | `local` (CloudAssistedOnly |
//!   CloudAssistedOrLocal);
//! * DRIVER_LIMIT_SECS: bound on one ceremony (default 30).
#[cfg(all(feature = "v0_10", not(feature = "v0_11")))]
extern crate libwebauthn_0_10 as libwebauthn;
#[cfg(feature = "v0_11")]
extern crate libwebauthn_0_11 as libwebauthn;
#[cfg(all(feature = "v0_10", feature = "v0_11"))]
compile_error!(
    "pick one libwebauthn release: --no-default-features --features v0_10, or the default v0_11"
);
#[cfg(not(any(feature = "v0_10", feature = "v0_11")))]
compile_error!("pick a libwebauthn release: feature v0_10 or v0_11");

#[path = "../../common/driver.rs"]
mod common;

/// The hybrid initiator's names in each release (0.11 moved it from
/// `transport::cable` to `transport::hybrid`, re-exported from `pxp`).
mod hybrid {
    #[cfg(all(feature = "v0_10", not(feature = "v0_11")))]
    pub use libwebauthn::transport::cable::{
        channel::{CableChannel as HybridChannel, CableUxUpdate as UxUpdate},
        qr_code_device::{
            CableQrCodeDevice as QrDevice, CableTransports as Transports, QrCodeOperationHint,
        },
    };
    #[cfg(feature = "v0_11")]
    pub use libwebauthn::transport::hybrid::{
        channel::{HybridChannel, HybridUxUpdate as UxUpdate},
        qr_code_device::{
            PxpQrCodeDevice as QrDevice, PxpTransports as Transports, QrCodeOperationHint,
        },
    };
}

use std::future::Future;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use common::env;
use hybrid::{HybridChannel, QrCodeOperationHint, QrDevice, Transports, UxUpdate};
use libwebauthn::ops::webauthn::{
    GetAssertionRequest, JsonFormat, MakeCredentialRequest, OriginValidation, RelatedOrigins,
    RequestOrigin, RequestSettings, SystemPublicSuffixList, WebAuthnIDLResponse as _,
};
use libwebauthn::transport::{Channel as _, ChannelSettings, Device as _};
use libwebauthn::webauthn::WebAuthn as _;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::DecodePublicKey as _;
use sha2::Digest as _;
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_proto::{
    AttestationConveyancePreference, PublicKeyCredential, RegisterPublicKeyCredential,
    UserVerificationPolicy,
};

/// Unless DRIVER_WAIT_SCAN=0, the next ceremony starts only after the previous
/// `hybridd scan` has exited (its advert withdrawn), as a person would.
fn wait_scan(h: &mut Option<JoinHandle<()>>) {
    if std::env::var("DRIVER_WAIT_SCAN").as_deref() != Ok("0") {
        if let Some(h) = h.take() {
            let _ = h.join();
        }
    }
}

fn log_updates(mut rx: tokio::sync::broadcast::Receiver<UxUpdate>, tag: String) {
    tokio::spawn(async move {
        while let Ok(u) = rx.recv().await {
            eprintln!("driver: {tag}: ux update {u:?}");
        }
    });
}

/// The desktop's side of the QR: a fresh one per ceremony, shown once the
/// previous scan has ended.
struct Desktop {
    qr_file: String,
    scan_cmd: String,
    transports: Transports,
    prev_scan: Option<JoinHandle<()>>,
}

impl Desktop {
    /// One ceremony: a fresh QR for `hint`, shown once the previous scan has
    /// ended, the channel (which connects lazily, inside `op`), then `op` on
    /// it within `limit`. Returns `op`'s answer, the time from the QR to the
    /// answer and the time opening the channel took.
    async fn ceremony<T, E: std::fmt::Debug, Fut: Future<Output = Result<T, E>>>(
        &mut self,
        hint: QrCodeOperationHint,
        tag: String,
        limit: Duration,
        what: &str,
        op: impl FnOnce(HybridChannel) -> Fut,
    ) -> Result<(T, Duration, Duration), String> {
        let mut device = QrDevice::new_transient(hint, self.transports).unwrap();
        wait_scan(&mut self.prev_scan);
        let t0 = Instant::now();
        self.prev_scan =
            common::show_qr(&self.qr_file, &self.scan_cmd, &device.qr_code.to_string());
        let channel = device
            .channel(ChannelSettings::default())
            .await
            .map_err(|e| format!("channel: {e:?}"))?;
        let t_conn = t0.elapsed();
        log_updates(channel.get_ux_update_receiver(), tag);
        match tokio::time::timeout(limit, op(channel)).await {
            Err(_) => Err(format!("timeout after {limit:?}")),
            Ok(Err(e)) => Err(format!("{what}: {e:?}")),
            Ok(Ok(v)) => Ok((v, t0.elapsed(), t_conn)),
        }
    }
}

fn b64(v: &serde_json::Value, path: &[&str]) -> Vec<u8> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    B64.decode(cur.as_str().unwrap_or_else(|| panic!("missing {path:?}")))
        .expect("base64url")
}

/// Independent check of an assertion: ES256 over authData || SHA-256(clientDataJSON).
fn check_assertion_by_hand(spki: &[u8], j: &serde_json::Value) -> Result<u8, String> {
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(|e| e.to_string())?;
    let auth_data = b64(j, &["response", "authenticatorData"]);
    let cdj = b64(j, &["response", "clientDataJSON"]);
    let sig = b64(j, &["response", "signature"]);
    let mut msg = auth_data.clone();
    msg.extend_from_slice(&sha2::Sha256::digest(&cdj));
    let sig = p256::ecdsa::Signature::from_der(&sig).map_err(|e| e.to_string())?;
    key.verify(&msg, &sig)
        .map_err(|e| format!("signature: {e}"))?;
    let mut bad = msg.clone();
    bad[40] ^= 1;
    if key.verify(&bad, &sig).is_ok() {
        return Err("tampered message verified".into());
    }
    Ok(auth_data[32])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    common::init_tracing();

    let runs: usize = env("DRIVER_RUNS", "1").parse().unwrap();
    let scenario = env("DRIVER_SCENARIO", "uv");
    let discoverable = match scenario.as_str() {
        "uv" | "tls-fail" => false,
        "rk" => true,
        s => panic!("unknown DRIVER_SCENARIO {s}"),
    };
    let rk_base: usize = env("DRIVER_RK_BASE", "0").parse().unwrap();
    let transports = match env("DRIVER_TRANSPORTS", "only").as_str() {
        "local" => Transports::CloudAssistedOrLocal,
        _ => Transports::CloudAssistedOnly,
    };

    let origin_url = url::Url::parse("https://example.org").unwrap();
    let origin: RequestOrigin = "https://example.org".try_into().unwrap();
    let psl = SystemPublicSuffixList::auto().expect("public suffix list");
    let settings = RequestSettings {
        origin: OriginValidation::Validate {
            public_suffix_list: &psl,
            related_origins: RelatedOrigins::Disabled,
        },
    };
    let wan = WebauthnCore::new_unsafe_experts_only(
        "hybridd interop",
        "example.org",
        vec![origin_url],
        Duration::from_secs(120),
        None,
        None,
    );

    let mut pass = 0;
    let mut desktop = Desktop {
        qr_file: env("DRIVER_QR_FILE", "qr.txt"),
        scan_cmd: env("DRIVER_SCAN_CMD", ""),
        transports,
        prev_scan: None,
    };
    // Per ceremony, from the QR to the answer; the ble-vm (TCG) needs more.
    let limit = Duration::from_secs(env("DRIVER_LIMIT_SECS", "30").parse().unwrap());
    if scenario == "tls-fail" {
        let builder = wan
            .new_challenge_register_builder(&[0x7f; 16], "lwa-tls-fail", "lwa-tls-fail")
            .unwrap()
            .user_verification_policy(UserVerificationPolicy::Required);
        let (chal, _) = wan.generate_challenge_register(builder).unwrap();
        let opts = serde_json::to_string(&chal.public_key).unwrap();
        let request = MakeCredentialRequest::prepare(&origin, &opts, &settings)
            .await
            .expect("prepare");
        tls_fail(&mut desktop, limit, &request).await;
        return;
    }
    let mut times_create: Vec<u128> = Vec::new();
    let mut times_get: Vec<u128> = Vec::new();
    'runs: for run in 1..=runs {
        let mut user_id = [0u8; 16];
        user_id[..8].copy_from_slice(&(run as u64).to_le_bytes());
        user_id[8..].copy_from_slice(&(std::process::id() as u64).to_le_bytes());
        let name = format!("lwa-run-{run}");

        // ---------------- create ----------------
        let builder = wan
            .new_challenge_register_builder(&user_id, &name, &name)
            .unwrap()
            .attestation(AttestationConveyancePreference::None)
            .user_verification_policy(UserVerificationPolicy::Required)
            .require_resident_key(discoverable);
        let (chal, reg_state) = wan.generate_challenge_register(builder).unwrap();
        let opts = serde_json::to_string(&chal.public_key).unwrap();
        let request = match MakeCredentialRequest::prepare(&origin, &opts, &settings).await {
            Ok(r) => r,
            Err(e) => {
                println!("RUN {run} create: FAIL prepare: {e:?} options={opts}");
                continue;
            }
        };
        let (resp, t_create, t_conn) = match desktop
            .ceremony(
                QrCodeOperationHint::MakeCredential,
                format!("run {run} create"),
                limit,
                "make_credential",
                |mut ch| {
                    let request = &request;
                    async move { ch.webauthn_make_credential(request).await }
                },
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                println!("RUN {run} create: FAIL {e}");
                continue;
            }
        };
        let rjson = resp.to_json_string(&request, JsonFormat::Minified).unwrap();
        eprintln!("driver: run {run} registration JSON: {rjson}");
        let rval: serde_json::Value = serde_json::from_str(&rjson).unwrap();
        let spki = b64(&rval, &["response", "publicKey"]);
        let reg: RegisterPublicKeyCredential = match serde_json::from_str(&rjson) {
            Ok(r) => r,
            Err(e) => {
                println!("RUN {run} create: FAIL parse as webauthn-rs JSON: {e}");
                continue;
            }
        };
        let cred = match wan.register_credential(&reg, &reg_state, None) {
            Ok(c) => c,
            Err(e) => {
                println!("RUN {run} create: FAIL register_credential: {e:?}");
                continue;
            }
        };
        times_create.push(t_create.as_millis());
        println!(
            "RUN {run} create: OK cred_id={} alg={:?} uv={} be={} bs={} fmt={} rk={:?} total_ms={} channel_ms={}",
            B64.encode(cred.cred_id.as_slice()),
            cred.cred.type_,
            cred.user_verified,
            cred.backup_eligible,
            cred.backup_state,
            resp.format,
            rval["clientExtensionResults"]["credProps"]["rk"],
            t_create.as_millis(),
            t_conn.as_millis()
        );
        if !cred.user_verified {
            println!("RUN {run} create: FAIL UV flag not set");
            continue;
        }

        // ---------------- get ----------------
        let allow = if discoverable {
            vec![]
        } else {
            vec![cred.clone()]
        };
        let (chal, mut auth_state) = wan
            .new_challenge_authenticate_builder(allow, Some(UserVerificationPolicy::Required))
            .and_then(|b| wan.generate_challenge_authenticate(b))
            .unwrap();
        if discoverable {
            auth_state.set_allowed_credentials(vec![cred.clone()]);
        }
        let opts = serde_json::to_string(&chal.public_key).unwrap();
        let request = match GetAssertionRequest::prepare(&origin, &opts, &settings).await {
            Ok(r) => r,
            Err(e) => {
                println!("RUN {run} get: FAIL prepare: {e:?} options={opts}");
                continue;
            }
        };
        let (resp, t_get, t_conn) = match desktop
            .ceremony(
                QrCodeOperationHint::GetAssertionRequest,
                format!("run {run} get"),
                limit,
                "get_assertion",
                |mut ch| {
                    let request = &request;
                    async move { ch.webauthn_get_assertion(request).await }
                },
            )
            .await
        {
            Ok(v) => v,
            Err(e) => {
                println!("RUN {run} get: FAIL {e}");
                continue;
            }
        };
        // A discoverable get returns every discoverable credential of the
        // RP (numberOfCredentials + getNextAssertion); pick this run's.
        let want_id = B64.encode(cred.cred_id.as_slice());
        let jsons: Vec<String> = resp
            .assertions
            .iter()
            .map(|a| a.to_json_string(&request, JsonFormat::Minified).unwrap())
            .collect();
        let ids: Vec<String> = jsons
            .iter()
            .map(|j| {
                serde_json::from_str::<serde_json::Value>(j).unwrap()["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        let expected = if discoverable { rk_base + run } else { 1 };
        println!(
            "RUN {run} get: {} assertions (expected {expected}), distinct ids {}",
            jsons.len(),
            ids.iter().collect::<std::collections::HashSet<_>>().len()
        );
        if jsons.len() != expected {
            println!(
                "RUN {run} get: FAIL {} assertions, expected {expected}",
                jsons.len()
            );
            continue;
        }
        let Some(pos) = ids.iter().position(|i| *i == want_id) else {
            println!("RUN {run} get: FAIL this run's credential not among {ids:?}");
            continue;
        };
        let ajson = jsons[pos].clone();
        eprintln!("driver: run {run} assertion JSON: {ajson}");
        let aval: serde_json::Value = serde_json::from_str(&ajson).unwrap();

        // 1. By hand with p256.
        let flags = match check_assertion_by_hand(&spki, &aval) {
            Ok(f) => f,
            Err(e) => {
                println!("RUN {run} get: FAIL p256 check: {e}");
                continue 'runs;
            }
        };
        let up = flags & 0x01 != 0;
        let uv = flags & 0x04 != 0;
        if discoverable {
            let uh = b64(&aval, &["response", "userHandle"]);
            if uh != user_id {
                println!("RUN {run} get: FAIL user handle {uh:?} != {user_id:?}");
                continue;
            }
        }
        // 2. With webauthn-rs-core, plus a tampered copy.
        let pkc: PublicKeyCredential = match serde_json::from_str(&ajson) {
            Ok(p) => p,
            Err(e) => {
                println!("RUN {run} get: FAIL parse as webauthn-rs JSON: {e}");
                continue;
            }
        };
        let mut bad = pkc.clone();
        bad.response.signature = common::flip_middle(bad.response.signature.as_ref()).into();
        let tampered_rejected = wan.authenticate_credential(&bad, &auth_state).is_err();
        match wan.authenticate_credential(&pkc, &auth_state) {
            Ok(res) if tampered_rejected && up && uv && res.user_verified() => {
                times_get.push(t_get.as_millis());
                pass += 1;
                println!(
                    "RUN {run} get: OK p256_verified=true rp_verified=true tampered_rejected=true up={up} uv={uv} counter={} user_selected={:?} total_ms={} channel_ms={}",
                    res.counter(),
                    resp.assertions[0].user_selected,
                    t_get.as_millis(),
                    t_conn.as_millis()
                );
            }
            Ok(res) => println!(
                "RUN {run} get: FAIL tampered_rejected={tampered_rejected} up={up} uv={uv} res={res:?}"
            ),
            Err(e) => println!("RUN {run} get: FAIL authenticate_credential: {e:?}"),
        }
    }
    common::print_times("create", &mut times_create);
    common::print_times("get", &mut times_get);
    println!("DRIVER RESULT: scenario={scenario} {pass}/{runs} create+get runs verified");
    wait_scan(&mut desktop.prev_scan);
    if pass != runs {
        std::process::exit(1);
    }
}

/// Negative path: the tunnel server's certificate is not trusted, so the
/// ceremony must fail once the initiator has seen the advert and tried the
/// tunnel (libwebauthn connects lazily, inside the first operation); it must
/// not hang. Exits 0 when it failed with an error within `limit`.
async fn tls_fail(desktop: &mut Desktop, limit: Duration, request: &MakeCredentialRequest) {
    let t0 = Instant::now();
    let outcome = desktop
        .ceremony(
            QrCodeOperationHint::MakeCredential,
            "tls-fail".into(),
            limit,
            "make_credential",
            |mut ch| async move { ch.webauthn_make_credential(request).await },
        )
        .await
        .map(|_| ());
    let ms = t0.elapsed().as_millis();
    let ok = match outcome {
        Ok(()) => {
            println!("TLS-NEGATIVE: FAIL a credential was made without a trusted CA ({ms} ms)");
            false
        }
        Err(e) if e.starts_with("timeout") => {
            println!("TLS-NEGATIVE: FAIL no answer: {e}");
            false
        }
        // The failure must be the tunnel's certificate (logged by
        // libwebauthn/pxp), not any other error.
        Err(e) => match common::tls_certificate_failure() {
            Some(cause) => {
                println!("TLS-NEGATIVE: OK initiator failed after {ms} ms: {e}; cause: {cause}");
                true
            }
            None => {
                println!(
                    "TLS-NEGATIVE: FAIL the initiator failed after {ms} ms, but not on the \
                     tunnel's certificate: {e}"
                );
                false
            }
        },
    };
    // The phone waits out its own window; let `hybridd scan` end first.
    wait_scan(&mut desktop.prev_scan);
    println!("DRIVER RESULT: scenario=tls-fail {}/1", u8::from(ok));
    std::process::exit(if ok { 0 } else { 1 });
}
