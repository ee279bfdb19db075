#![no_main]
//! The phone's handshake responder on arbitrary msg1 bytes (hybrid-protocol.md
//! §5.3, §5.4): must never panic. Input = one selector byte (even: QR-mode
//! KNpsk0, odd: state-assisted NKpsk0) || msg1. Keys and PSKs are those of the
//! `e2e_qr_transaction` / `e2e_state_assisted_nkpsk0` vectors, so the seeds
//! complete the handshake and the fuzzer explores from a valid message.
use hybrid_noise::{derive_p256_from_secret, Ephemeral, Responder};
use libfuzzer_sys::fuzz_target;

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex"),
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        *o = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, msg1)) = data.split_first() else {
        return;
    };
    let phone_ephemeral = derive_p256_from_secret(b"fuzz phone ephemeral").expect("derive");
    let responder = if selector & 1 == 0 {
        let psk = unhex::<32>("682abf804eb7d838c44aaf4896b6e73813b41af7e026826eaa1334b5813038b3");
        let seed = unhex::<32>("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f");
        let desktop = derive_p256_from_secret(&seed).expect("derive");
        Responder::qr(&psk, &desktop.public_key())
    } else {
        let psk = unhex::<32>("b56203cfeb0164b210f05ba3bdda91a88a36d68db761a15412996bfd66463d5e");
        let seed = unhex::<32>("ebdf515a5c36fccb7846559cf7a689d6c898bf7dfc515760c378a36d0afc98a2");
        let phone = derive_p256_from_secret(&seed).expect("derive");
        Responder::state_assisted(&psk, &phone)
    };
    if let Ok((msg2, mut established)) = responder.respond(msg1, Ephemeral::Fixed(&phone_ephemeral))
    {
        assert_eq!(msg2.len(), 81);
        // A session that came out of a fuzzed msg1 must still be usable.
        let _ = established.crypter_mut().encrypt(msg1);
        let _ = established.crypter_mut().decrypt(msg1);
    }
});
