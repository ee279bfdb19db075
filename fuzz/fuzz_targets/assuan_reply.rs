#![no_main]
//! What a pinentry sends back (`hybrid_desktop::assuan::Receiver`), in
//! arbitrary chunks: never panic, never buffer past the line limit or keep
//! more data than the cap; a reply that completes is well-formed.
use hybrid_desktop::assuan::{Receiver, Reply, MAX_DATA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size the bytes arrive in.
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let mut r = Receiver::new();
    for piece in bytes.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let spare = r.spare();
            if spare.is_empty() {
                // Full without a line end: the receiver must refuse it.
                assert!(r.next_reply().is_err());
                return;
            }
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            r.filled(n);
            rest = &rest[n..];
            loop {
                match r.next_reply() {
                    Ok(Some(reply)) => {
                        assert!(r.take_data().len() <= MAX_DATA);
                        if let Reply::Err { message, .. } = reply {
                            assert!(message.bytes().all(|b| (0x20..0x7f).contains(&b)));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
});
