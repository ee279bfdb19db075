//! `hybridd decode 'FIDO:/…'`: print what a QR code says, as JSON.
//!
//! Shows the fields of hybrid-protocol.md §1.3 (hint, timestamp and age,
//! known-domain count, linking support, key 6, the desktop's identity key);
//! with `--derived`, also the tunnel ID and EID key derived from the QR secret
//! (§2.2). The QR secret itself is never printed. Bad input gets a one-line
//! reason naming the rule it broke and exit code 2.

use std::io::Read;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use hybrid_qr::{Key6, QrCode, QrError};
use serde_json::{json, Value};

/// Arguments of `hybridd decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `FIDO:/…` URI, or `-` to read it from standard input.
    pub uri: String,
    /// Also print values derived from the QR secret: the tunnel ID and the
    /// advert (EID) key. Treat the output as secret.
    #[arg(long)]
    pub derived: bool,
    /// Judge the QR's age against this Unix time instead of the clock.
    #[arg(long, value_name = "UNIX_SECS")]
    pub now: Option<u64>,
    /// Maximum QR age in seconds for the freshness verdict.
    #[arg(long, default_value_t = hybrid_qr::Freshness::default().max_age_secs)]
    pub max_age: u64,
}

/// Runs `hybridd decode`.
pub fn run(args: Args) -> ExitCode {
    let uri = if args.uri == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("hybridd decode: cannot read standard input: {e}");
            return ExitCode::from(2);
        }
        s
    } else {
        args.uri.clone()
    };
    let now = args.now.unwrap_or_else(unix_now);
    match decode(uri.trim(), args.derived, now, args.max_age) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hybridd decode: invalid QR code [{}]: {e}", e.rule());
            ExitCode::from(2)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decodes `uri` into the JSON document `hybridd decode` prints.
pub fn decode(
    uri: &str,
    derived: bool,
    now_unix: u64,
    max_age_secs: u64,
) -> Result<Value, QrError> {
    let qr = hybrid_qr::parse(uri)?;
    Ok(describe(&qr, derived, now_unix, max_age_secs))
}

fn describe(qr: &QrCode, derived: bool, now_unix: u64, max_age_secs: u64) -> Value {
    let freshness = hybrid_qr::Freshness {
        max_age_secs,
        ..hybrid_qr::Freshness::default()
    };
    let fresh = match freshness.check(qr, now_unix) {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "reason": e.to_string()}),
    };
    let age = qr.timestamp().map(|ts| now_unix as i128 - i128::from(ts));
    let key6 = match qr.key6() {
        Key6::Absent => Value::Null,
        Key6::Bool(b) => json!(b),
        Key6::Channels(c) => json!(c),
        _ => json!("unrecognised"),
    };
    let mut out = json!({
        "request_type": format!("{:?}", qr.request_type()),
        "hint": qr.request_type().as_hint(),
        "hint_raw": qr.hint(),
        "timestamp": qr.timestamp(),
        "age_secs": age.map(|a| a as i64),
        "fresh": fresh,
        "known_domains": qr.known_domains(),
        "supports_linking": qr.supports_linking(),
        "key6": key6,
        "offers_ble_l2cap": qr.offers_ble_l2cap(),
        "desktop_identity_key": hex::encode(qr.identity_key_compressed()),
    });
    if derived {
        let secret = qr.secret();
        let tunnel_id = hybrid_ble::tunnel_id(secret);
        let eid_key = hybrid_ble::EidKey::from_secret(secret);
        if let Value::Object(map) = &mut out {
            map.insert(
                "derived".into(),
                json!({
                    "tunnel_id": hex::encode_upper(tunnel_id),
                    "eid_key": hex::encode(eid_key.as_bytes()),
                    "desktop_identity_key_uncompressed": hex::encode(qr.peer_identity_uncompressed()),
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The qr_chrome vector (tests/vectors/hybrid-vectors.json).
    const CHROME: &str = "FIDO:/162870791865632382552704231438327900152302540348097243854039966655366469794954476199158014113179232779520163209900691930075274801398564434658077048963842109321447142660";

    #[test]
    fn chrome_qr_fields() {
        let v = decode(CHROME, true, 1666589051 + 30, 600).unwrap();
        assert_eq!(v["hint"], "mc");
        assert_eq!(v["known_domains"], 2);
        assert_eq!(v["supports_linking"], true);
        assert_eq!(v["age_secs"], 30);
        assert_eq!(v["fresh"]["ok"], true);
        assert_eq!(v["key6"], Value::Null);
        assert_eq!(v["offers_ble_l2cap"], false);
        assert_eq!(
            v["derived"]["tunnel_id"],
            "88EA778BEF7FEF7474BBCE36A2EFA282"
        );
    }

    #[test]
    fn stale_is_reported_not_refused() {
        let v = decode(CHROME, false, 1666589051 + 734, 600).unwrap();
        assert_eq!(v["fresh"]["ok"], false);
        assert!(v["fresh"]["reason"].as_str().unwrap().contains("734 s old"));
        assert!(v.get("derived").is_none());
    }

    #[test]
    fn libwebauthn_key6_offers_ble_l2cap() {
        let qr = QrCode::new(
            *hybrid_qr::parse(CHROME).unwrap().identity_key_compressed(),
            [3; 16],
        )
        .unwrap()
        .with_key6(Key6::Channels(vec![0, 1]));
        let v = decode(&qr.to_uri(), false, 0, 600).unwrap();
        assert_eq!(v["key6"], json!([0, 1]));
        assert_eq!(v["offers_ble_l2cap"], true);
    }
}
