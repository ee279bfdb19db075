#![no_main]
//! Transport decryption, un-padding and revision-1 frame parsing on arbitrary
//! bytes (hybrid-protocol.md §5.5, §6.3). The read key is the phone's read key
//! (k1) of the `e2e_qr_transaction` vector, so its request ciphertext seeds the
//! AEAD path; the same bytes are also un-padded and parsed directly, so the
//! fuzzer reaches the frame parser without forging tags.
use hybrid_noise::crypter::unpad;
use hybrid_noise::{Crypter, Frame};
use libfuzzer_sys::fuzz_target;

const READ_KEY: [u8; 32] = [
    0xa7, 0xc6, 0xba, 0x02, 0x19, 0x70, 0xe5, 0x27, 0x9a, 0x03, 0x32, 0xbb, 0x39, 0x7a, 0x6c, 0x26,
    0x0a, 0x95, 0xaf, 0xd6, 0x6e, 0xdc, 0x48, 0x55, 0xb1, 0x8b, 0x77, 0xd0, 0x79, 0x2f, 0x87, 0x91,
];

fn check(plaintext: &[u8]) {
    if let Ok(frame) = Frame::parse(plaintext) {
        // Everything the parser accepts is in canonical form: it re-encodes
        // to the same bytes.
        assert_eq!(frame.encode(), plaintext);
    }
    let _ = Frame::parse_from_phone(plaintext);
}

fuzz_target!(|data: &[u8]| {
    let mut crypter = Crypter::new(&READ_KEY, &[0u8; 32]);
    if let Ok(plaintext) = crypter.decrypt(data) {
        check(&plaintext);
    }
    if let Ok(plaintext) = unpad(data) {
        check(plaintext);
    }
    check(data);
});
