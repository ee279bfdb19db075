#![no_main]
//! hybridd's peer-text sanitizer (`crates/hybridd/src/peer_text.rs`,
//! included directly: it depends on `std` only, so the fuzz build does not
//! pull in the daemon) on arbitrary text and caps: never panics, never emits
//! a raw control, bidirectional or invisible character, never more than the
//! cap plus the ellipsis, terminal rendering idempotent, markup escaped,
//! JSON escaped.
#[path = "../../crates/hybridd/src/peer_text.rs"]
#[allow(dead_code)]
mod peer_text;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, rest)) = data.split_first() else {
        return;
    };
    let cap = usize::from(cap);
    let text = String::from_utf8_lossy(rest);
    let shown = peer_text::for_terminal(&text, cap);
    assert!(!shown.chars().any(peer_text::is_unsafe), "{text:?} -> {shown:?}");
    assert!(!shown.chars().any(char::is_control), "{text:?} -> {shown:?}");
    assert!(shown.chars().count() <= cap + 1);
    assert_eq!(peer_text::for_terminal(&shown, cap), shown, "not idempotent");
    // JSON output (credentials list --json): nothing unsafe stays raw but
    // the C0 characters serde_json would have escaped already.
    let json = peer_text::json_escape_unsafe(&text);
    assert!(!json.chars().any(|c| c >= ' ' && peer_text::is_unsafe(c)));
    let body = peer_text::for_notification_markup(&text, cap);
    assert!(!body.chars().any(peer_text::is_unsafe));
    assert!(!body.contains(['<', '>', '"', '\'']));
    // Every '&' starts one of the five entities.
    for (i, _) in body.match_indices('&') {
        let tail = &body[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| tail.starts_with(e)),
            "{body:?}"
        );
    }
});
