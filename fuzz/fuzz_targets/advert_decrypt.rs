#![no_main]
//! Advert decryption and EID-plaintext parsing on arbitrary bytes: never
//! panic; whatever decrypts must re-encrypt to the same advert; the CTAP 2.3
//! suffix parser and builder agree.
use hybrid_ble::{
    decrypt, encrypt, parse_ble_psm, service_data_with_psm, split_service_data, EidKey,
    EidPlaintext,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed key (the all-zero QR secret of the `advert_zero_secret` vector).
    let key = EidKey::from_secret(&[0u8; 16]);
    if let Ok(p) = decrypt(&key, data) {
        assert_eq!(&encrypt(&key, &p)[..], data);
    }
    if let Ok((advert, suffix)) = split_service_data(data) {
        let _ = decrypt(&key, advert);
        // The CTAP 2.3 suffix as a desktop reads it (hybrid-ble-l2cap.md §2):
        // a PSM it finds must rebuild into a suffix that says the same.
        if let Ok(Some(psm)) = parse_ble_psm(suffix) {
            if psm != 0 {
                let again = service_data_with_psm(advert, psm).expect("nonzero PSM");
                let (_, s2) = split_service_data(&again).expect("24+ bytes");
                assert_eq!(parse_ble_psm(s2), Ok(Some(psm)));
            }
        }
    }
    // The first 8 bytes choose QR key 2; the rest is parsed as a plaintext.
    if let Some((known, rest)) = data.split_first_chunk::<8>() {
        let known_domains = u64::from_le_bytes(*known);
        if let Ok(p) = EidPlaintext::parse(rest, known_domains) {
            assert_eq!(&p.as_bytes()[..], rest);
            assert!(p.check_domain(known_domains).is_ok());
        }
    }
    let _ = EidPlaintext::parse(data, 2);
});
