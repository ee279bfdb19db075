//! Test vectors for the transport cipher, framing, post-handshake message and
//! identity-key derivation (hybrid-protocol.md §2.3, §5.5, §6.2–§6.4).
//! One test per vector name in `tests/vectors/hybrid-vectors.json`.
// Test helpers outside `#[test]` fns may unwrap too: a panic is a failure.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hybrid_cbor::access::{get_int_key, get_text_key, int};
use hybrid_cbor::Value;
use hybrid_noise::crypter::{self, legacy_nonce, nonce, LEGACY_AAD};
use hybrid_noise::keys::uncompressed;
use hybrid_noise::post_handshake::{
    decode_padded_rev0, encode_padded_rev0, padded_update, CHROMIUM_UPDATE_FRAME_LEN,
};
use hybrid_noise::{
    derive_p256_from_secret, Crypter, Frame, FrameError, PostHandshakeMessage, Revision,
};
use hybrid_tests::{arr, h, vector};
use serde_json::Value as Json;

#[test]
fn crypter_new_construction() {
    let v = vector("crypter_new_construction");
    let write_key: [u8; 32] = arr(&v, "/write_key_hex");
    let read_key: [u8; 32] = arr(&v, "/read_key_hex");
    let plaintext = h(&v, "/plaintext_frame_hex");
    let seq = u32::try_from(v["sequence"].as_u64().unwrap()).unwrap();
    assert_eq!(seq, 0);
    assert_eq!(nonce(seq).to_vec(), h(&v, "/nonce_hex"));
    assert_eq!(h(&v, "/aad_hex"), Vec::<u8>::new());
    assert_eq!(crypter::pad(&plaintext), h(&v, "/padded_plaintext_hex"));

    // The desktop's side: writes with write_key.
    let mut sender = Crypter::new(&read_key, &write_key);
    let ct = sender.encrypt(&plaintext).unwrap();
    assert_eq!(ct, h(&v, "/ciphertext_hex"));
    assert_eq!(sender.write_seq(), 1);

    // The phone's side: the same key is its read key.
    let mut receiver = Crypter::new(&write_key, &read_key);
    let got = receiver.decrypt(&ct).unwrap();
    assert_eq!(got, plaintext);
    assert_eq!(receiver.read_seq(), 1);
    // Replaying the same ciphertext fails: the counter moved on.
    assert!(receiver.decrypt(&ct).is_err());

    // And it is a CTAP makeCredential frame.
    match Frame::parse(&got).unwrap() {
        Frame::Ctap(p) => assert_eq!(p.first(), Some(&0x01)),
        other => panic!("unexpected frame {other:?}"),
    }
}

#[test]
fn crypter_old_construction_params() {
    let v = vector("crypter_old_construction_params");
    assert_eq!(v["nonce_layout"], "LE32(seq) || 00*8");
    assert_eq!(LEGACY_AAD.to_vec(), h(&v, "/aad_hex"));
    assert_eq!(legacy_nonce(0), [0; 12]);
    assert_eq!(legacy_nonce(1), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        legacy_nonce(0x0a0b_0c0d),
        [0x0d, 0x0c, 0x0b, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_ne!(legacy_nonce(1), nonce(1));

    // §5.5: the upstream new-construction ciphertext is not what the old
    // construction gives for the same key and padded plaintext.
    let newv = vector("crypter_new_construction");
    let key: [u8; 32] = arr(&newv, "/write_key_hex");
    let old = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))
        .encrypt(
            &Nonce::from(legacy_nonce(0)),
            Payload {
                msg: &h(&newv, "/padded_plaintext_hex"),
                aad: &LEGACY_AAD,
            },
        )
        .unwrap();
    assert_ne!(old, h(&newv, "/ciphertext_hex"));
}

#[test]
fn framing_examples() {
    let v = vector("framing_examples");
    let shutdown = h(&v, "/shutdown_plaintext_hex");
    assert_eq!(Frame::parse(&shutdown), Ok(Frame::Shutdown));
    assert_eq!(Frame::Shutdown.encode(), shutdown);

    // Framing-only example: type 2, but the payload is CBOR 1 + 3 stray bytes,
    // which Chromium's phone rejects (vector "check").
    let update = h(&v, "/update_plaintext_hex");
    assert_eq!(update.first(), Some(&2));
    assert_eq!(
        Frame::parse(&update),
        Err(FrameError::UpdateNotCbor(hybrid_cbor::Error::TrailingBytes))
    );

    let minimal = h(&v, "/valid_minimal_update_plaintext_hex");
    assert_eq!(
        Frame::parse(&minimal),
        Ok(Frame::Update(Value::Map(vec![])))
    );
    assert_eq!(
        Frame::parse_from_phone(&minimal),
        Ok(Frame::Update(Value::Map(vec![])))
    );
    assert_eq!(Frame::Update(Value::Map(vec![])).encode(), minimal);

    let mc = h(&v, "/make_credential_request_frame_hex");
    let frame = Frame::parse(&mc).unwrap();
    let Frame::Ctap(payload) = &frame else {
        panic!("not a CTAP frame: {frame:?}")
    };
    assert_eq!(payload.first(), Some(&0x01), "authenticatorMakeCredential");
    assert_eq!(payload.get(1..), mc.get(2..));
    assert_eq!(frame.encode(), mc);

    // Chromium's padding-only update (§6.4).
    let pad = padded_update(None).encode();
    let len = usize::try_from(
        v["chromium_padding_only_update_plaintext_len"]
            .as_u64()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pad.len(), len);
    assert_eq!(len, CHROMIUM_UPDATE_FRAME_LEN);
    let head = h(&v, "/chromium_padding_only_update_plaintext_head_hex");
    assert_eq!(&pad[..head.len()], head.as_slice());
    assert!(pad[6..].iter().all(|&b| b == 0));
    let mut c = Crypter::new(&[0; 32], &[1; 32]);
    let ct_len = usize::try_from(
        v["chromium_padding_only_update_ciphertext_len"]
            .as_u64()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c.encrypt(&pad).unwrap().len(), ct_len);
    let Frame::Update(Value::Map(entries)) = Frame::parse_from_phone(&pad).unwrap() else {
        panic!("padding update is not a map")
    };
    assert_eq!(get_int_key(&entries, 0), Some(&Value::Bytes(vec![0; 492])));
}

/// Converts the vectors' JSON rendering of a getInfo map to CBOR.
fn json_to_cbor(j: &Json) -> Value {
    match j {
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(json_to_cbor).collect()),
        Json::Object(o) if o.len() == 1 && o.contains_key("hex") => {
            Value::Bytes(hex::decode(o["hex"].as_str().unwrap()).unwrap())
        }
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| {
                    let key = match k.parse::<i64>() {
                        Ok(i) => int(i),
                        Err(_) => Value::Text(k.clone()),
                    };
                    (key, json_to_cbor(v))
                })
                .collect(),
        ),
        other => panic!("unexpected JSON {other}"),
    }
}

fn check_posthandshake(name: &str) {
    let v = vector(name);
    let plaintext = h(&v, "/plaintext_hex");
    let (msg, rev) = PostHandshakeMessage::decode(&plaintext).unwrap();
    assert_eq!(rev, Revision::Rev1);
    // No key 3: the desktop assumes ["ctap"].
    assert_eq!(msg.features, vec!["ctap".to_owned()]);
    assert!(msg.linking.is_none());
    let get_info = msg.require_ctap().unwrap();
    assert_eq!(get_info, h(&v, "/getinfo_hex").as_slice());

    let decoded = hybrid_cbor::decode_canonical(get_info).unwrap();
    let expected = hybrid_cbor::canonicalize(json_to_cbor(&v["getinfo_decoded"]));
    assert_eq!(decoded, expected);
    let Value::Map(entries) = &decoded else {
        panic!("getInfo is not a map")
    };
    let Some(Value::Map(options)) = get_int_key(entries, 4) else {
        panic!("no options")
    };
    assert_eq!(get_text_key(options, "uv"), Some(&Value::Bool(true)));
}

#[test]
fn posthandshake_android_chrome() {
    check_posthandshake("posthandshake_android_chrome");
}

#[test]
fn posthandshake_ios16() {
    check_posthandshake("posthandshake_ios16");
}

#[test]
fn getinfo_chromium_phone() {
    let v = vector("getinfo_chromium_phone");
    let get_info = h(&v, "/getinfo_hex");
    let msg = PostHandshakeMessage::ctap(get_info.clone());
    let encoded = msg.encode();
    assert_eq!(encoded, h(&v, "/post_handshake_plaintext_hex"));
    let (back, rev) = PostHandshakeMessage::decode(&encoded).unwrap();
    assert_eq!(rev, Revision::Rev1);
    assert_eq!(back, msg);
    assert_eq!(back.require_ctap().unwrap(), get_info.as_slice());
}

#[test]
fn padded_cbor_map_rev0() {
    let v = vector("padded_cbor_map_rev0");
    let len = |p: &str| usize::try_from(v[p].as_u64().unwrap()).unwrap();

    let empty = encode_padded_rev0(&[0xa0]);
    assert_eq!(empty.len(), len("empty_map_padded_len"));
    let head = h(&v, "/empty_map_padded_head_hex");
    let tail = h(&v, "/empty_map_padded_tail_hex");
    assert_eq!(&empty[..head.len()], head.as_slice());
    assert_eq!(&empty[empty.len() - tail.len()..], tail.as_slice());
    assert_eq!(decode_padded_rev0(&empty), Ok(Value::Map(vec![])));

    let blob_map = Value::Map(vec![(int(1), Value::Bytes(vec![0x55; 512]))]);
    let blob = encode_padded_rev0(&hybrid_cbor::to_canonical_vec(&blob_map));
    assert_eq!(blob.len(), len("map_with_512_byte_blob_padded_len"));
    assert_eq!(decode_padded_rev0(&blob), Ok(blob_map));

    // A padded post-handshake message is recognised as revision 0.
    let msg = PostHandshakeMessage::ctap(vec![0xa0]);
    let padded = encode_padded_rev0(&msg.encode());
    assert_eq!(
        PostHandshakeMessage::decode(&padded).unwrap(),
        (msg, Revision::Rev0)
    );
}

#[test]
fn ec_key_derive_from_secret_p256() {
    let v = vector("ec_key_derive_from_secret_p256");
    let rows = v["table"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let key = derive_p256_from_secret(&h(row, "/secret_hex")).unwrap();
        assert_eq!(key.to_bytes().to_vec(), h(row, "/private_key_hex"));
        assert_eq!(
            uncompressed(&key.public_key()).to_vec(),
            h(row, "/public_key_uncompressed_hex")
        );
    }
}
