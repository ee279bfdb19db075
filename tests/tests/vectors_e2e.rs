//! The two whole-transaction vectors, reproduced byte for byte with our own
//! desktop (initiator) and phone (responder): QR → advert → PSK → Noise
//! handshake → traffic keys → post-handshake → request / response / shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hybrid_ble::{decrypt, encrypt, psk, tunnel_id, EidKey, EidPlaintext};
use hybrid_cbor::access::int;
use hybrid_cbor::Value;
use hybrid_noise::{
    derive_p256_from_secret, pairing_signature, verify_pairing_signature, Ephemeral, Frame,
    Initiator, PostHandshakeMessage, Responder,
};
use hybrid_qr::{parse, QrCode, RequestType};
use hybrid_tests::{arr, h, s, vector};
use hybrid_tunnel::names::base64url_nopad;
use hybrid_tunnel::{RoutingId, TunnelBase, TunnelId};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;

fn secret_key(bytes: &[u8]) -> SecretKey {
    SecretKey::from_slice(bytes).unwrap()
}

#[test]
fn e2e_qr_transaction() {
    let v = vector("e2e_qr_transaction");
    let i = |k: &str| format!("/inputs/{k}");
    let o = |k: &str| format!("/outputs/{k}");

    // Desktop: identity key from the seed (§2.3), QR (§1).
    let desktop_identity = derive_p256_from_secret(&h(&v, &i("qr_seed"))).unwrap();
    let compressed: [u8; 33] = desktop_identity
        .public_key()
        .to_encoded_point(true)
        .as_bytes()
        .try_into()
        .unwrap();
    assert_eq!(
        compressed,
        arr::<33>(&v, &o("desktop_identity_public_compressed"))
    );
    let qr = QrCode::new(compressed, arr(&v, &i("qr_secret")))
        .unwrap()
        .with_known_domains(2)
        .with_timestamp(1_700_000_000)
        .with_supports_linking(true)
        .with_request_type(RequestType::MakeCredential);
    assert_eq!(qr.to_uri(), s(&v, &o("qr_url")));

    // Phone: parse the QR, derive tunnel id and EID key (§10 steps 1–2).
    let phone_qr = parse(s(&v, &o("qr_url"))).unwrap();
    assert_eq!(
        phone_qr.peer_identity_uncompressed(),
        arr::<65>(&v, &o("desktop_identity_public_uncompressed"))
    );
    let tid = TunnelId(tunnel_id(phone_qr.secret()));
    assert_eq!(tid.0, arr::<16>(&v, &o("tunnel_id")));
    assert_eq!(
        TunnelBase::Domain(0).new_url(&tid).unwrap(),
        s(&v, &o("new_tunnel_url"))
    );
    let eid_key = EidKey::from_secret(phone_qr.secret());
    assert_eq!(eid_key.as_bytes(), &arr::<64>(&v, &o("eid_key")));

    // Phone: advert (§3), PSK (§10 step 5).
    let routing = RoutingId(arr(&v, &i("routing_id")));
    let plain = EidPlaintext::new(arr(&v, &i("ble_nonce")), routing.0, 0);
    assert_eq!(plain.as_bytes(), &arr::<16>(&v, &o("eid_plaintext")));
    let advert = encrypt(&eid_key, &plain);
    assert_eq!(advert, arr::<20>(&v, &o("advert")));
    let phone_psk = psk(phone_qr.secret(), &plain);
    assert_eq!(phone_psk.as_bytes(), &arr::<32>(&v, &o("psk")));

    // Desktop: decrypt the advert, derive the same PSK and connect URL.
    let desk_plain = decrypt(&EidKey::from_secret(qr.secret()), &advert).unwrap();
    desk_plain.check_domain(qr.known_domains()).unwrap();
    let desk_psk = psk(qr.secret(), &desk_plain);
    let desk_routing = RoutingId(desk_plain.routing_id());
    assert_eq!(
        TunnelBase::Domain(desk_plain.domain_id())
            .connect_url(&desk_routing, &TunnelId(tunnel_id(qr.secret())))
            .unwrap(),
        s(&v, &o("connect_url"))
    );

    // Noise KNpsk0 (§5.3) with the vector's fixed ephemerals.
    let d_eph = secret_key(&h(&v, &i("desktop_ephemeral_private")));
    let p_eph = secret_key(&h(&v, &i("phone_ephemeral_private")));
    let (awaiting, msg1) = Initiator::qr(desk_psk.as_bytes(), &desktop_identity)
        .start(Ephemeral::Fixed(&d_eph))
        .unwrap();
    assert_eq!(msg1, h(&v, &o("handshake_msg1")));
    let (msg2, phone_est) =
        Responder::qr(phone_psk.as_bytes(), &phone_qr.peer_public_key().unwrap())
            .respond(&msg1, Ephemeral::Fixed(&p_eph))
            .unwrap();
    assert_eq!(msg2, h(&v, &o("handshake_msg2")));
    let desk_est = awaiting.finish(&msg2).unwrap();
    assert_eq!(
        phone_est.handshake_hash(),
        &arr::<32>(&v, &o("handshake_hash"))
    );
    assert_eq!(desk_est.handshake_hash(), phone_est.handshake_hash());
    let handshake_hash = *phone_est.handshake_hash();
    let (mut phone, _) = phone_est.into_parts();
    let (mut desk, _) = desk_est.into_parts();
    let (p_read, p_write) = phone.keys_for_test();
    assert_eq!(p_read, arr::<32>(&v, &o("traffic_key_k1_initiator_write")));
    assert_eq!(p_write, arr::<32>(&v, &o("traffic_key_k2_responder_write")));

    // Post-handshake message (§6.2), phone seq 0.
    let post = PostHandshakeMessage::ctap(h(&v, &o("getinfo_cbor"))).encode();
    assert_eq!(post, h(&v, &o("post_handshake_plaintext")));
    let ct = phone.encrypt(&post).unwrap();
    assert_eq!(ct, h(&v, &o("post_handshake_ciphertext")));
    let (decoded, _) = PostHandshakeMessage::decode(&desk.decrypt(&ct).unwrap()).unwrap();
    assert_eq!(decoded.require_ctap().unwrap(), h(&v, &o("getinfo_cbor")));

    // Request (desktop seq 0), response (phone seq 1), shutdown (desktop seq 1).
    let req_plain = h(&v, &o("request_plaintext"));
    let req_ct = desk.encrypt(&req_plain).unwrap();
    assert_eq!(req_ct, h(&v, &o("request_ciphertext")));
    let got = phone.decrypt(&req_ct).unwrap();
    match Frame::parse(&got).unwrap() {
        Frame::Ctap(body) => assert_eq!(body, req_plain[1..].to_vec()),
        other => panic!("expected a CTAP frame, got {other:?}"),
    }
    let resp = Frame::Ctap(vec![0x2e]).encode();
    assert_eq!(resp, h(&v, &o("response_plaintext")));
    let resp_ct = phone.encrypt(&resp).unwrap();
    assert_eq!(resp_ct, h(&v, &o("response_ciphertext")));
    assert_eq!(desk.decrypt(&resp_ct).unwrap(), resp);
    let shut_ct = desk.encrypt(&Frame::Shutdown.encode()).unwrap();
    assert_eq!(shut_ct, h(&v, &o("shutdown_ciphertext")));
    assert!(matches!(
        Frame::parse(&phone.decrypt(&shut_ct).unwrap()).unwrap(),
        Frame::Shutdown
    ));

    // Linking signature (§9.2 key 6) over the handshake hash.
    let phone_identity = derive_p256_from_secret(&h(&v, &i("phone_identity_seed"))).unwrap();
    {
        assert_eq!(
            phone_identity
                .public_key()
                .to_encoded_point(false)
                .as_bytes(),
            h(&v, &o("phone_identity_public")).as_slice()
        );
    }
    let sig = pairing_signature(
        &phone_identity,
        &phone_qr.peer_public_key().unwrap(),
        &handshake_hash,
    );
    assert_eq!(sig, arr::<32>(&v, &o("pairing_signature")));
    verify_pairing_signature(
        &desktop_identity,
        &phone_identity.public_key(),
        &handshake_hash,
        &sig,
    )
    .unwrap();
}

#[test]
fn e2e_state_assisted_nkpsk0() {
    let v = vector("e2e_state_assisted_nkpsk0");
    let i = |k: &str| format!("/inputs/{k}");
    let o = |k: &str| format!("/outputs/{k}");

    // Phone long-term secrets (§9.1).
    let root = h(&v, &i("root_secret"));
    let contact = h(&v, &i("contact_id"));
    let pairing = h(&v, &i("pairing_id"));
    let paired = hybrid_ble::paired_secret(&root, Some(&contact), &pairing);
    assert_eq!(*paired, arr::<32>(&v, &o("paired_secret")));
    let seed = hybrid_ble::identity_key_seed(&root);
    assert_eq!(*seed, arr::<32>(&v, &o("identity_key_seed")));
    let identity = derive_p256_from_secret(seed.as_slice()).unwrap();
    assert_eq!(identity.to_bytes().to_vec(), h(&v, &o("identity_private")));
    {
        assert_eq!(
            identity.public_key().to_encoded_point(false).as_bytes(),
            h(&v, &o("identity_public")).as_slice()
        );
    }

    // Desktop's contact request (§9.3): client payload and contact URL.
    let client_nonce: [u8; 16] = arr(&v, &i("client_nonce"));
    let payload = hybrid_cbor::to_canonical_vec(&Value::Map(vec![
        (int(1), Value::Bytes(pairing.clone())),
        (int(2), Value::Bytes(client_nonce.to_vec())),
        (int(3), Value::Text("ga".into())),
    ]));
    assert_eq!(payload, h(&v, &o("client_payload_cbor")));
    assert_eq!(
        hex::encode_upper(&payload),
        s(&v, &o("client_payload_header_value"))
    );
    assert_eq!(
        format!("/cable/contact/{}", base64url_nopad(&contact)),
        s(&v, &o("contact_url_path"))
    );

    // Advert and PSK under the paired secret.
    let eid_key = EidKey::from_paired(paired.as_slice(), &client_nonce);
    assert_eq!(eid_key.as_bytes(), &arr::<64>(&v, &o("eid_key")));
    let plain = EidPlaintext::parse(&h(&v, &i("eid_plaintext")), 2).unwrap();
    let advert = encrypt(&eid_key, &plain);
    assert_eq!(advert, arr::<20>(&v, &o("advert")));
    let k = psk(paired.as_slice(), &decrypt(&eid_key, &advert).unwrap());
    assert_eq!(k.as_bytes(), &arr::<32>(&v, &o("psk")));

    // Noise NKpsk0 (§5.4).
    let d_eph = secret_key(&h(&v, &i("desktop_ephemeral_private")));
    let p_eph = secret_key(&h(&v, &i("phone_ephemeral_private")));
    let (awaiting, msg1) = Initiator::state_assisted(k.as_bytes(), &identity.public_key())
        .start(Ephemeral::Fixed(&d_eph))
        .unwrap();
    assert_eq!(msg1, h(&v, &o("handshake_msg1")));
    let (msg2, phone_est) = Responder::state_assisted(k.as_bytes(), &identity)
        .respond(&msg1, Ephemeral::Fixed(&p_eph))
        .unwrap();
    assert_eq!(msg2, h(&v, &o("handshake_msg2")));
    let desk_est = awaiting.finish(&msg2).unwrap();
    assert_eq!(
        phone_est.handshake_hash(),
        &arr::<32>(&v, &o("handshake_hash"))
    );
    assert_eq!(desk_est.handshake_hash(), phone_est.handshake_hash());
    let (phone, _) = phone_est.into_parts();
    let (desk, _) = desk_est.into_parts();
    let (p_read, p_write) = phone.keys_for_test();
    assert_eq!(p_read, arr::<32>(&v, &o("traffic_key_k1_initiator_write")));
    assert_eq!(p_write, arr::<32>(&v, &o("traffic_key_k2_responder_write")));
    let (d_read, d_write) = desk.keys_for_test();
    assert_eq!((d_read, d_write), (p_write, p_read));
}
