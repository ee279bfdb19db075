//! Test vectors for `hybrid-qr` and `hybrid-ble` (hybrid-protocol.md §1–§3).
//! One test per vector name in `tests/vectors/hybrid-vectors.json`; URL and
//! tunnel-name fields are checked in `vectors_tunnel.rs`.
// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hybrid_ble::{
    decrypt, derive, encrypt, psk, split_service_data, tunnel_id, BleError, EidKey, EidPlaintext,
    Purpose,
};
use hybrid_cbor::access::int;
use hybrid_cbor::Value;
use hybrid_qr::{
    digits_decode, digits_encode, parse, DigitsError, Key6, QrCode, QrError, RequestType,
};
use hybrid_tests::{arr, h, s, vector};
use serde_json::Value as Json;

// ---------------------------------------------------------------- digits

#[test]
fn digits_ab_ff() {
    let v = vector("digits_ab_ff");
    assert_eq!(digits_encode(&h(&v, "/bytes_hex")), s(&v, "/digits"));
    assert_eq!(
        digits_decode(s(&v, "/digits")).unwrap(),
        h(&v, "/bytes_hex")
    );
}

#[test]
fn digits_hello_world() {
    let v = vector("digits_hello_world");
    let bytes = h(&v, "/bytes_hex");
    assert_eq!(bytes, s(&v, "/bytes_ascii").as_bytes());
    assert_eq!(digits_encode(&bytes), s(&v, "/digits"));
    assert_eq!(digits_decode(s(&v, "/digits")).unwrap(), bytes);
}

#[test]
fn digits_zero_lengths() {
    let v = vector("digits_zero_lengths");
    for row in v["table"].as_array().unwrap() {
        let n = usize::try_from(row["zero_bytes"].as_u64().unwrap()).unwrap();
        let d = usize::try_from(row["digits_count"].as_u64().unwrap()).unwrap();
        let digits = "0".repeat(d);
        assert_eq!(digits_encode(&vec![0; n]), digits, "{n} zero bytes");
        if n == 0 {
            assert_eq!(digits_decode(&digits), Err(DigitsError::Empty));
        } else {
            assert_eq!(digits_decode(&digits).unwrap(), vec![0; n], "{d} zeros");
        }
    }
}

#[test]
fn digits_invalid_inputs() {
    let v = vector("digits_invalid_inputs");
    for (key, expected) in [
        ("non_digit", DigitsError::NonDigit),
        ("non_digit_sign_prefixed", DigitsError::NonDigit),
        ("invalid_length", DigitsError::InvalidLength),
        ("out_of_range", DigitsError::OutOfRange),
    ] {
        let cases = v[key].as_array().unwrap();
        assert!(!cases.is_empty(), "{key}");
        for c in cases {
            let input = c.as_str().unwrap();
            assert_eq!(digits_decode(input), Err(expected), "{key}: {input:?}");
        }
    }
}

// ---------------------------------------------------------------- QR

/// Checks a real desktop's QR (`qr_chrome`, `qr_safari_ios`).
fn check_real_qr(name: &str) {
    let v = vector(name);
    let url = s(&v, "/url");
    let cbor = h(&v, "/cbor_hex");
    assert_eq!(
        digits_decode(url.strip_prefix("FIDO:/").unwrap()).unwrap(),
        cbor
    );

    let qr = parse(url).unwrap();
    let d = &v["decoded"];
    assert_eq!(
        qr.identity_key_compressed().as_slice(),
        h(&v, "/decoded/0/hex")
    );
    assert_eq!(qr.secret().as_slice(), h(&v, "/decoded/1/hex"));
    assert_eq!(Some(qr.known_domains()), d["2"].as_u64());
    assert_eq!(qr.timestamp(), d["3"].as_u64());
    assert_eq!(qr.supports_linking(), d["4"].as_bool());
    assert_eq!(qr.hint(), d["5"].as_str());
    assert_eq!(qr.request_type(), RequestType::MakeCredential);
    assert_eq!(qr.key6(), &Key6::Absent);
    assert_eq!(
        qr.peer_identity_uncompressed(),
        arr::<65>(&v, "/peer_identity_uncompressed_hex")
    );

    // Derived from the QR secret.
    assert_eq!(
        EidKey::from_secret(qr.secret()).as_bytes(),
        &arr::<64>(&v, "/eid_key_hex")
    );
    assert_eq!(tunnel_id(qr.secret()), arr::<16>(&v, "/tunnel_id_hex"));

    // Re-encoding reproduces the desktop's bytes.
    assert_eq!(qr.to_cbor(), cbor);
    assert_eq!(qr.to_uri(), url);
    let built = QrCode::new(arr(&v, "/decoded/0/hex"), arr(&v, "/decoded/1/hex"))
        .unwrap()
        .with_known_domains(d["2"].as_u64().unwrap())
        .with_timestamp(d["3"].as_u64().unwrap())
        .with_supports_linking(d["4"].as_bool().unwrap())
        .with_request_type(RequestType::MakeCredential);
    assert_eq!(built.to_uri(), url);
    assert_eq!(built, qr);
}

#[test]
fn qr_chrome() {
    check_real_qr("qr_chrome");
}

#[test]
fn qr_safari_ios() {
    check_real_qr("qr_safari_ios");
}

#[test]
fn qr_invalid_urls() {
    let v = vector("qr_invalid_urls");
    for c in v["cases"].as_array().unwrap() {
        let url = c["url"].as_str().unwrap();
        let category = c["error"].as_str().unwrap();
        let err = parse(url).unwrap_err();
        let ok = if category.contains("empty payload") {
            err == QrError::Digits(DigitsError::Empty)
        } else if category.starts_with("InvalidCableUrl") {
            err == QrError::Prefix
        } else if category.contains("ContainsNonDigitChars") {
            err == QrError::Digits(DigitsError::NonDigit)
        } else if category.contains("InvalidLength") {
            err == QrError::Digits(DigitsError::InvalidLength)
        } else if category.contains("OutOfRange") {
            err == QrError::Digits(DigitsError::OutOfRange)
        } else if category.starts_with("Cbor") {
            err == QrError::NotAMap
        } else {
            panic!("unknown category {category}")
        };
        assert!(ok, "{url:?}: expected {category}, got {err:?}");
    }
}

#[test]
fn qr_known_chromium() {
    let v = vector("qr_known_chromium");
    let point = arr::<33>(&v, "/compressed_point_hex");
    let secret = arr::<16>(&v, "/qr_secret_hex");

    // The basic QR, both prefixes.
    let basic = parse(s(&v, "/basic_qr_url")).unwrap();
    assert_eq!(basic.identity_key_compressed(), &point);
    assert_eq!(basic.secret(), &secret);
    assert_eq!(
        basic.peer_identity_uncompressed(),
        arr::<65>(&v, "/uncompressed_point_hex")
    );
    assert_eq!(
        parse(s(&v, "/basic_qr_url_lowercase_prefix")).unwrap(),
        basic
    );
    let built = QrCode::new(point, secret).unwrap();
    assert_eq!(built.to_cbor(), h(&v, "/basic_qr_cbor_hex"));
    assert_eq!(built.to_uri(), s(&v, "/basic_qr_url"));
    assert_eq!(
        QrCode::new(arr(&v, "/invalid_point_hex"), secret).unwrap_err(),
        QrError::IdentityKeyNotOnCurve
    );

    for c in v["cases"].as_array().unwrap() {
        let what = c["extra_keys"].as_str().unwrap();
        let url = c["url"].as_str().unwrap();
        let cbor = hex::decode(c["cbor_hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            digits_decode(url.strip_prefix("FIDO:/").unwrap()).unwrap(),
            cbor,
            "{what}"
        );
        let parsed = parse(url);
        if c["valid"].as_bool().unwrap() {
            let qr = parsed.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                Some(qr.known_domains()),
                c["num_known_domains"].as_u64(),
                "{what}"
            );
            assert_eq!(
                qr.supports_linking(),
                c["supports_linking"].as_bool(),
                "{what}"
            );
            let rt = match c["request_type"].as_str().unwrap() {
                "ga" => RequestType::GetAssertion,
                "mc" => RequestType::MakeCredential,
                other => panic!("unexpected request type {other}"),
            };
            assert_eq!(qr.request_type(), rt, "{what}");
            assert_eq!(qr.secret(), &secret);
            // Encoding reproduces the bytes (unknown keys are not kept).
            if !what.starts_with("1000") {
                assert_eq!(qr.to_uri(), url, "{what}");
            }
        } else {
            let err = parsed.unwrap_err();
            let expected = match what {
                w if w.starts_with("key0 = invalid point") => QrError::IdentityKeyNotOnCurve,
                w if w.starts_with("key0 = 42") => QrError::MissingOrNotBytes { key: 0 },
                "2: \"foo\"" => QrError::WrongType {
                    key: 2,
                    expected: "an integer",
                },
                "4: \"foo\"" => QrError::WrongType {
                    key: 4,
                    expected: "a bool",
                },
                "5: 42" => QrError::WrongType {
                    key: 5,
                    expected: "a text string",
                },
                other => panic!("no expected error for invalid case {other}"),
            };
            assert_eq!(err, expected, "{what}");
        }
    }
}

#[test]
fn qr_key6_transports_array() {
    let v = vector("qr_key6_transports_array");
    let channels: Vec<u64> = v["key6_value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(channels, [0, 1]);
    let k = vector("qr_known_chromium");
    let (point, secret) = (
        arr::<33>(&k, "/compressed_point_hex"),
        arr::<16>(&k, "/qr_secret_hex"),
    );

    // Encoded by us: key 6 is the vector's CBOR array.
    let qr = QrCode::new(point, secret)
        .unwrap()
        .with_key6(Key6::Channels(channels.clone()));
    let cbor = qr.to_cbor();
    let key6_cbor = h(&v, "/key6_cbor_hex");
    assert!(cbor.ends_with(&[&[0x06][..], &key6_cbor].concat()));
    let back = parse(&qr.to_uri()).unwrap();
    assert_eq!(back.key6(), &Key6::Channels(vec![0, 1]));
    assert!(back.key6().offers_ble_l2cap());

    // Built independently as a CBOR map with the array spliced in.
    let mut map = hybrid_cbor::decode_canonical(&h(&k, "/basic_qr_cbor_hex")).unwrap();
    let Value::Map(entries) = &mut map else {
        panic!("not a map")
    };
    entries.push((int(6), hybrid_cbor::decode_canonical(&key6_cbor).unwrap()));
    let url = format!(
        "FIDO:/{}",
        digits_encode(&hybrid_cbor::to_canonical_vec(&map))
    );
    assert_eq!(parse(&url).unwrap().key6(), &Key6::Channels(vec![0, 1]));

    // The CTAP 2.2-era boolean form is accepted too.
    for b in [true, false] {
        let qr = QrCode::new(point, secret).unwrap().with_key6(Key6::Bool(b));
        let back = parse(&qr.to_uri()).unwrap();
        assert_eq!(back.key6(), &Key6::Bool(b));
        assert!(!back.key6().offers_ble_l2cap());
    }
    // An array without channel 1 is like no key 6.
    let qr = QrCode::new(point, secret)
        .unwrap()
        .with_key6(Key6::Channels(vec![0]));
    assert!(!parse(&qr.to_uri()).unwrap().key6().offers_ble_l2cap());
}

// ---------------------------------------------------------------- derive

fn check_derive(name: &str) {
    let v = vector(name);
    let purpose = match v["purpose"].as_u64().unwrap() {
        1 => Purpose::EidKey,
        p => panic!("unexpected purpose {p}"),
    };
    let len = usize::try_from(v["length"].as_u64().unwrap()).unwrap();
    let out = derive(&h(&v, "/secret_hex"), &h(&v, "/salt_hex"), purpose, len).unwrap();
    assert_eq!(hex::encode(&*out), s(&v, "/output_hex"));
    // HKDF prefix property (§2.1).
    let short = derive(&h(&v, "/secret_hex"), &h(&v, "/salt_hex"), purpose, 16).unwrap();
    assert_eq!(short[..], out[..16]);
}

#[test]
fn derive_eidkey_nosalt() {
    check_derive("derive_eidkey_nosalt");
    let v = vector("derive_eidkey_nosalt");
    assert_eq!(
        EidKey::from_secret(&h(&v, "/secret_hex")).as_bytes(),
        &arr::<64>(&v, "/output_hex")
    );
}

#[test]
fn derive_eidkey_salt() {
    check_derive("derive_eidkey_salt");
}

// ---------------------------------------------------------------- EID / adverts

#[test]
fn eid_from_bytes() {
    let v = vector("eid_from_bytes");
    let bytes = arr::<16>(&v, "/eid_plaintext_hex");
    let id = u16::try_from(v["tunnel_server_id"].as_u64().unwrap()).unwrap();
    let p = EidPlaintext::parse(&bytes, 2).unwrap();
    assert_eq!(p.nonce(), arr::<10>(&v, "/nonce_hex"));
    assert_eq!(p.routing_id(), arr::<3>(&v, "/routing_id_hex"));
    assert_eq!(p.domain_id(), id);
    assert_eq!(
        EidPlaintext::new(p.nonce(), p.routing_id(), id).as_bytes(),
        &bytes
    );

    assert_eq!(v["invalid_variants"].as_array().unwrap().len(), 3);
    // byte 15 := 0 → domain 255, an unknown assigned ID.
    let mut b = bytes;
    b[15] = 0;
    assert_eq!(
        EidPlaintext::parse(&b, 2).unwrap_err(),
        BleError::UnknownDomain {
            id: 255,
            known_domains: 2
        }
    );
    // byte 0 := 1 → reserved byte.
    let mut b = bytes;
    b[0] = 1;
    assert_eq!(
        EidPlaintext::parse(&b, 2).unwrap_err(),
        BleError::ReservedByte { value: 1 }
    );
    // length != 16.
    for len in [15, 17] {
        let mut b = bytes.to_vec();
        b.resize(len, 0);
        assert_eq!(
            EidPlaintext::parse(&b, 2).unwrap_err(),
            BleError::PlaintextLength { len }
        );
    }
}

#[test]
fn advert_decrypt_known() {
    let v = vector("advert_decrypt_known");
    let secret = h(&v, "/qr_secret_hex");
    let key = EidKey::from_secret(&secret);
    assert_eq!(key.as_bytes(), &arr::<64>(&v, "/eid_key_hex"));
    assert_eq!(tunnel_id(&secret), arr::<16>(&v, "/tunnel_id_hex"));

    let advert = arr::<20>(&v, "/advert_hex");
    let p = decrypt(&key, &advert).unwrap();
    assert_eq!(p.as_bytes(), &arr::<16>(&v, "/expected_eid_plaintext_hex"));
    assert_eq!(p.nonce(), arr::<10>(&v, "/expected_nonce_hex"));
    assert_eq!(p.routing_id(), arr::<3>(&v, "/expected_routing_id_hex"));
    assert_eq!(
        u64::from(p.domain_id()),
        v["expected_tunnel_server_id"].as_u64().unwrap()
    );
    assert!(p.check_domain(1).is_ok());
    assert_eq!(encrypt(&key, &p), advert);
    assert_eq!(psk(&secret, &p).as_bytes(), &arr::<32>(&v, "/psk_hex"));
    // Under another QR's key the tag does not match.
    assert_eq!(
        decrypt(&EidKey::from_secret(&[0; 16]), &advert).unwrap_err(),
        BleError::TagMismatch
    );
}

#[test]
fn advert_zero_secret() {
    let v = vector("advert_zero_secret");
    let secret = h(&v, "/qr_secret_hex");
    let key = EidKey::from_secret(&secret);
    assert_eq!(key.as_bytes(), &arr::<64>(&v, "/eid_key_hex"));
    assert_eq!(tunnel_id(&secret), arr::<16>(&v, "/tunnel_id_hex"));

    let id = u16::try_from(v["tunnel_server_id"].as_u64().unwrap()).unwrap();
    let p = EidPlaintext::new(arr(&v, "/nonce_hex"), arr(&v, "/routing_id_hex"), id);
    assert_eq!(p.as_bytes(), &arr::<16>(&v, "/eid_plaintext_hex"));
    let advert = encrypt(&key, &p);
    assert_eq!(advert, arr::<20>(&v, "/advert_hex"));
    let back = decrypt(&key, &advert).unwrap();
    assert_eq!(back, p);
    assert!(
        back.check_domain(0).is_ok(),
        "hashed domain is always known"
    );
    assert_eq!(psk(&secret, &p).as_bytes(), &arr::<32>(&v, "/psk_hex"));
}

#[test]
fn advert_with_ctap23_suffix() {
    let v = vector("advert_with_ctap23_suffix");
    let data = h(&v, "/service_data_hex");
    let (advert, suffix) = split_service_data(&data).unwrap();
    assert_eq!(advert, &arr::<20>(&v, "/advert_hex"));
    assert_eq!(suffix, h(&v, "/suffix_hex"));
    let decoded = hybrid_cbor::decode_canonical(suffix).unwrap();
    let expected: Vec<(Value, Value)> = v["suffix_decoded"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (int(k.parse().unwrap()), int(x.as_i64().unwrap())))
        .collect();
    assert_eq!(decoded, Value::Map(expected));
    // A desktop that wants exactly 20 bytes refuses the whole service data.
    let any_key = EidKey::from_secret(&[0; 16]);
    assert_eq!(
        decrypt(&any_key, &data).unwrap_err(),
        BleError::AdvertLength { len: 24 }
    );
}

// ---------------------------------------------------------------- end-to-end vectors (QR and BLE parts)

/// `e2e_qr_transaction`: the QR, advert and PSK steps (the Noise and framing
/// fields belong to the noise tests).
#[test]
fn e2e_qr_transaction_qr_and_advert() {
    let v = vector("e2e_qr_transaction");
    let i = |k: &str| format!("/inputs/{k}");
    let o = |k: &str| format!("/outputs/{k}");
    let qr = QrCode::new(
        arr(&v, &o("desktop_identity_public_compressed")),
        arr(&v, &i("qr_secret")),
    )
    .unwrap()
    .with_known_domains(2)
    .with_timestamp(1_700_000_000)
    .with_supports_linking(true)
    .with_request_type(RequestType::MakeCredential);
    assert_eq!(qr.to_cbor(), h(&v, &o("qr_cbor")));
    assert_eq!(qr.to_uri(), s(&v, &o("qr_url")));
    let parsed = parse(s(&v, &o("qr_url"))).unwrap();
    assert_eq!(parsed, qr);
    assert_eq!(
        parsed.peer_identity_uncompressed(),
        arr::<65>(&v, &o("desktop_identity_public_uncompressed"))
    );

    let key = EidKey::from_secret(parsed.secret());
    assert_eq!(key.as_bytes(), &arr::<64>(&v, &o("eid_key")));
    assert_eq!(tunnel_id(parsed.secret()), arr::<16>(&v, &o("tunnel_id")));
    let domain = u16::try_from(
        v.pointer(&i("tunnel_server_domain"))
            .and_then(Json::as_u64)
            .unwrap(),
    )
    .unwrap();
    let p = EidPlaintext::new(arr(&v, &i("ble_nonce")), arr(&v, &i("routing_id")), domain);
    assert_eq!(p.as_bytes(), &arr::<16>(&v, &o("eid_plaintext")));
    assert_eq!(encrypt(&key, &p), arr::<20>(&v, &o("advert")));
    assert_eq!(decrypt(&key, &arr::<20>(&v, &o("advert"))).unwrap(), p);
    assert_eq!(
        psk(parsed.secret(), &p).as_bytes(),
        &arr::<32>(&v, &o("psk"))
    );
}

/// `e2e_state_assisted_nkpsk0`: the §9.1 derivations, advert and PSK.
#[test]
fn e2e_state_assisted_nkpsk0_derivations() {
    let v = vector("e2e_state_assisted_nkpsk0");
    let root = h(&v, "/inputs/root_secret");
    let contact = h(&v, "/inputs/contact_id");
    let pairing = h(&v, "/inputs/pairing_id");
    let per_contact = derive(&root, &contact, Purpose::PerContactIdSecret, 32).unwrap();
    assert_eq!(
        hex::encode(&*per_contact),
        s(&v, "/outputs/per_contact_id_secret")
    );
    let paired = hybrid_ble::paired_secret(&root, Some(&contact), &pairing);
    assert_eq!(*paired, arr::<32>(&v, "/outputs/paired_secret"));
    assert_eq!(
        *hybrid_ble::identity_key_seed(&root),
        arr::<32>(&v, "/outputs/identity_key_seed")
    );

    let key = EidKey::from_paired(paired.as_slice(), &arr(&v, "/inputs/client_nonce"));
    assert_eq!(key.as_bytes(), &arr::<64>(&v, "/outputs/eid_key"));
    let p = EidPlaintext::parse(&h(&v, "/inputs/eid_plaintext"), 2).unwrap();
    assert_eq!(encrypt(&key, &p), arr::<20>(&v, "/outputs/advert"));
    assert_eq!(
        psk(paired.as_slice(), &p).as_bytes(),
        &arr::<32>(&v, "/outputs/psk")
    );
}
