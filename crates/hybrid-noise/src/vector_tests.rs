//! Both handshakes and the transport against the researcher's end-to-end
//! vectors `e2e_qr_transaction` and `e2e_state_assisted_nkpsk0`.

use p256::SecretKey;
use serde_json::Value;

use crate::keys::{parse_uncompressed_point, uncompressed};
use crate::*;

fn vector(name: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/hybrid-vectors.json"
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()
        .clone()
}

fn h(v: &Value, ptr: &str) -> Vec<u8> {
    hex::decode(v.pointer(ptr).and_then(Value::as_str).unwrap()).unwrap()
}

fn a32(v: &Value, ptr: &str) -> [u8; 32] {
    h(v, ptr).try_into().unwrap()
}

fn sk(bytes: &[u8]) -> SecretKey {
    SecretKey::from_slice(bytes).unwrap()
}

#[test]
fn e2e_qr_transaction_both_roles() {
    let v = vector("e2e_qr_transaction");
    let psk = a32(&v, "/outputs/psk");
    let desktop_id = derive_p256_from_secret(&h(&v, "/inputs/qr_seed")).unwrap();
    assert_eq!(
        uncompressed(&desktop_id.public_key()).to_vec(),
        h(&v, "/outputs/desktop_identity_public_uncompressed")
    );
    let de = sk(&h(&v, "/inputs/desktop_ephemeral_private"));
    let pe = sk(&h(&v, "/inputs/phone_ephemeral_private"));

    let (awaiting, msg1) = Initiator::qr(&psk, &desktop_id)
        .start(Ephemeral::Fixed(&de))
        .unwrap();
    assert_eq!(msg1, h(&v, "/outputs/handshake_msg1"));

    let (msg2, phone) = Responder::qr(&psk, &desktop_id.public_key())
        .respond(&msg1, Ephemeral::Fixed(&pe))
        .unwrap();
    assert_eq!(msg2, h(&v, "/outputs/handshake_msg2"));
    let desktop = awaiting.finish(&msg2).unwrap();

    let hash = h(&v, "/outputs/handshake_hash");
    assert_eq!(phone.handshake_hash().to_vec(), hash);
    assert_eq!(desktop.handshake_hash().to_vec(), hash);
    let k1 = a32(&v, "/outputs/traffic_key_k1_initiator_write");
    let k2 = a32(&v, "/outputs/traffic_key_k2_responder_write");
    let (mut phone_c, phone_hash) = phone.into_parts();
    let (mut desk_c, _) = desktop.into_parts();
    assert_eq!(phone_c.keys_for_test(), (k1, k2));
    assert_eq!(desk_c.keys_for_test(), (k2, k1));

    // Transport: post-handshake (phone seq 0), request (desktop seq 0),
    // response (phone seq 1), shutdown (desktop seq 1).
    let ph = h(&v, "/outputs/post_handshake_plaintext");
    assert_eq!(crypter::pad(&ph), h(&v, "/outputs/post_handshake_padded"));
    let ct = phone_c.encrypt(&ph).unwrap();
    assert_eq!(ct, h(&v, "/outputs/post_handshake_ciphertext"));
    assert_eq!(desk_c.decrypt(&ct).unwrap(), ph);

    let req = h(&v, "/outputs/request_plaintext");
    let ct = desk_c.encrypt(&req).unwrap();
    assert_eq!(ct, h(&v, "/outputs/request_ciphertext"));
    assert_eq!(phone_c.decrypt(&ct).unwrap(), req);

    let resp = h(&v, "/outputs/response_plaintext");
    let ct = phone_c.encrypt(&resp).unwrap();
    assert_eq!(ct, h(&v, "/outputs/response_ciphertext"));
    assert_eq!(desk_c.decrypt(&ct).unwrap(), resp);

    let ct = desk_c.encrypt(&[0x00]).unwrap();
    assert_eq!(ct, h(&v, "/outputs/shutdown_ciphertext"));
    assert_eq!(phone_c.decrypt(&ct).unwrap(), vec![0x00]);

    // Pairing signature with phone identity = derive(32 zero bytes).
    let phone_id = derive_p256_from_secret(&h(&v, "/inputs/phone_identity_seed")).unwrap();
    assert_eq!(
        uncompressed(&phone_id.public_key()).to_vec(),
        h(&v, "/outputs/phone_identity_public")
    );
    let sig = linking::pairing_signature(&phone_id, &desktop_id.public_key(), &phone_hash);
    assert_eq!(sig.to_vec(), h(&v, "/outputs/pairing_signature"));
    linking::verify_pairing_signature(&desktop_id, &phone_id.public_key(), &phone_hash, &sig)
        .unwrap();
}

#[test]
fn e2e_state_assisted_nkpsk0_both_roles() {
    let v = vector("e2e_state_assisted_nkpsk0");
    let psk = a32(&v, "/outputs/psk");
    let phone_id = sk(&h(&v, "/outputs/identity_private"));
    let phone_pub = parse_uncompressed_point(&h(&v, "/outputs/identity_public")).unwrap();
    assert_eq!(phone_id.public_key(), phone_pub);
    let de = sk(&h(&v, "/inputs/desktop_ephemeral_private"));
    let pe = sk(&h(&v, "/inputs/phone_ephemeral_private"));

    let (awaiting, msg1) = Initiator::state_assisted(&psk, &phone_pub)
        .start(Ephemeral::Fixed(&de))
        .unwrap();
    assert_eq!(msg1, h(&v, "/outputs/handshake_msg1"));
    let (msg2, phone) = Responder::state_assisted(&psk, &phone_id)
        .respond(&msg1, Ephemeral::Fixed(&pe))
        .unwrap();
    assert_eq!(msg2, h(&v, "/outputs/handshake_msg2"));
    let desktop = awaiting.finish(&msg2).unwrap();
    let hash = h(&v, "/outputs/handshake_hash");
    assert_eq!(phone.handshake_hash().to_vec(), hash);
    assert_eq!(desktop.handshake_hash().to_vec(), hash);
    let k1 = a32(&v, "/outputs/traffic_key_k1_initiator_write");
    let k2 = a32(&v, "/outputs/traffic_key_k2_responder_write");
    assert_eq!(phone.into_parts().0.keys_for_test(), (k1, k2));
    assert_eq!(desktop.into_parts().0.keys_for_test(), (k2, k1));
}

#[test]
fn ec_key_derive_rows() {
    let v = vector("ec_key_derive_from_secret_p256");
    for row in v["table"].as_array().unwrap() {
        let k = derive_p256_from_secret(&h(row, "/secret_hex")).unwrap();
        assert_eq!(k.to_bytes().to_vec(), h(row, "/private_key_hex"));
        assert_eq!(
            uncompressed(&k.public_key()).to_vec(),
            h(row, "/public_key_uncompressed_hex")
        );
    }
}
