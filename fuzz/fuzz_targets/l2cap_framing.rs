#![no_main]
//! The CTAP 2.3 BLE L2CAP channel framing (hybrid-ble-l2cap.md §4) on
//! arbitrary bytes: the desktop's stream, cut into SDUs of fuzzer-chosen
//! sizes, with fuzzer-chosen "did not decrypt, extend" answers. Never panic;
//! every message is 1..=limit bytes; the buffer stays bounded; errors are
//! final. Then a round trip: the messages found, re-encoded in the sniffed
//! variant and decoded again in other chunks, come back the same.
use hybrid_ble::{L2capDecoder, L2capFraming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b, c, d], stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let chunk = usize::from(a % 97) + 1;
    let max_len = if b & 1 == 0 { 512 } else { hybrid_ble::MAX_L2CAP_MESSAGE_LEN };
    let extend_mask = u16::from_le_bytes([c, d]);
    let mut dec = L2capDecoder::with_max_message_len(max_len);
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut n = 0u32;
    'outer: for piece in stream.chunks(chunk) {
        if dec.push(piece).is_err() {
            assert!(dec.next_message().is_err(), "errors are final");
            break;
        }
        loop {
            match dec.next_message() {
                Ok(Some(m)) => {
                    assert!(!m.is_empty() && m.len() <= max_len);
                    n += 1;
                    if extend_mask & (1 << (n % 16)) != 0 {
                        if dec.extend_candidate().is_err() {
                            // Only a CRLF decoder extends, and only so often.
                            if dec.framing() == Some(L2capFraming::Crlf) {
                                break 'outer;
                            }
                            found.push(m);
                        }
                    } else {
                        found.push(m);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(dec.next_message().is_err(), "errors are final");
                    break 'outer;
                }
            }
        }
        assert!(dec.buffered() <= dec.buffer_limit());
    }
    let _ = dec.finish();

    // Round trip of what was found, in the variant the stream spoke. In the
    // CRLF variant a message containing 0D 0A needs extending: the test
    // plays the decrypting side by comparing with what it sent.
    let (Some(framing), Some(first)) = (dec.framing(), found.first()) else {
        return;
    };
    if L2capFraming::sniff(first[0]) != Ok(framing) && framing == L2capFraming::Crlf {
        return; // the first message must start with 04 to sniff as CRLF
    }
    let wire: Vec<u8> = found
        .iter()
        .flat_map(|m| framing.encode(m).expect("found messages are encodable"))
        .collect();
    let mut again = L2capDecoder::with_max_message_len(max_len);
    let mut back: Vec<Vec<u8>> = Vec::new();
    for piece in wire.chunks(chunk.max(3) - 2) {
        again.push(piece).expect("bounded by construction");
        while let Some(m) = again.next_message().expect("valid wire") {
            if framing == L2capFraming::Crlf && found.get(back.len()) != Some(&m) {
                if again.extend_candidate().is_err() {
                    return; // too many 0D 0A in one message: bounded by design
                }
                continue;
            }
            back.push(m);
        }
    }
    assert_eq!(back, found);
    again.finish().expect("whole messages");
});
