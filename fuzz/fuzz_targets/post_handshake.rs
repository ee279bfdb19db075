#![no_main]
//! The desktop-side decoders of what a phone sends first (hybrid-protocol.md
//! §6.2, §9.2): the post-handshake message (revision 1 and the revision-0
//! padded form), the linking map, and the padded-map decoder alone. Whatever
//! decodes must survive an encode → decode round trip unchanged.
use hybrid_noise::post_handshake::decode_padded_rev0;
use hybrid_noise::{LinkingMap, PostHandshakeMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((msg, _revision)) = PostHandshakeMessage::decode(data) {
        let (again, _) = PostHandshakeMessage::decode(&msg.encode()).expect("re-decode");
        assert_eq!(again.get_info, msg.get_info);
        assert_eq!(again.linking, msg.linking);
        let mut features = msg.features.clone();
        features.sort();
        assert_eq!(again.features, features);
        let _ = msg.require_ctap();
    }
    if let Ok(link) = LinkingMap::decode(data) {
        assert_eq!(LinkingMap::decode(&link.encode()).expect("re-decode"), link);
    }
    let _ = decode_padded_rev0(data);
});
