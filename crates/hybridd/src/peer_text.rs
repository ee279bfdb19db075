//! Rendering text a peer chose — rp.id, rp.name, user.name,
//! user.displayName arrive from the desktop unfiltered (CTAP 2.1 §6.1) — so
//! that it cannot rewrite what the person sees: one sanitizer for every
//! front-end (terminal prompt, `hybridd credentials list`, desktop
//! notifications).
//!
//! * [`for_terminal`]: every character that could move the cursor, clear or
//!   recolour the screen, start a new line, reorder the text around it or
//!   hide text is **escaped visibly** — C0 controls (TAB, LF and CR as
//!   `\t`, `\n`, `\r`, the rest and DEL as `\x1b`-style), C1 controls
//!   (including the 8-bit CSI U+009B and NEL U+0085), line and paragraph
//!   separators, bidirectional embeddings, overrides, isolates and marks
//!   (U+202A–202E, U+2066–2069, U+200E/200F, U+061C) and the other invisible
//!   format characters (zero-width spaces and joiners, word joiner and
//!   invisible operators, BOM, soft hyphen, Mongolian vowel separator,
//!   Hangul fillers, interlinear annotation marks, tag characters U+E0000–
//!   E007F) as `\u{202e}`-style. The length is capped in characters of the
//!   output, never splitting an escape, with a visible `…` when cut.
//!   The result is idempotent: rendering it again gives the same text.
//!   Backslashes are not escaped (so it stays idempotent): a peer can write
//!   the six characters `\u{…}`, which only ever shows as that text.
//! * [`for_notification_markup`]: the same, then escaped for a notification
//!   body that the server may parse as markup (Desktop Notifications
//!   Specification 1.2, "Markup": `<b>`, `<i>`, `<u>`, `<a href>`, `<img>`,
//!   XML-style entities): `&`, `<`, `>`, `"` and `'` become entities. Use it
//!   only when the server advertises the `body-markup` capability; otherwise
//!   the plain [`for_terminal`] text is the body.
//!
//! Ordinary names — any script (right-to-left ones too: only the explicit
//! formatting characters are escaped), emoji with variation selectors,
//! punctuation, spaces — pass through unchanged when they fit. One
//! deliberate cost: ZERO WIDTH JOINER (U+200D) is escaped although emoji
//! sequences use it, because it also hides text.
//!
//! Pure functions on `&str`, no dependencies beyond `std`: the fuzz target
//! `fuzz/fuzz_targets/peer_text.rs` includes this file directly.

use std::fmt::Write as _;

/// The marker appended when text was cut.
pub const ELLIPSIS: char = '…';

/// Cap for an RP ID: the longest DNS name (253 characters, RFC 1035 §2.3.4).
pub const MAX_RP_ID_CHARS: usize = 253;

/// Cap for rp.name, user.name and user.displayName: WebAuthn §6.4.1 lets
/// authenticators truncate these to 64 bytes; 64 characters keeps any
/// script readable on one line.
pub const MAX_NAME_CHARS: usize = 64;

/// Whether `c` must not reach a terminal or notification raw: controls,
/// line/paragraph separators, bidirectional formatting and invisible
/// format characters (Unicode general category Cf and the invisible
/// fillers).
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'          // C0 controls (ESC, CR, LF, TAB, BEL, BS, …)
        | '\u{7f}'..='\u{9f}'       // DEL and C1 controls (CSI U+009B, NEL U+0085)
        | '\u{ad}'                  // soft hyphen
        | '\u{34f}'                 // combining grapheme joiner
        | '\u{61c}'                 // ARABIC LETTER MARK (bidi)
        | '\u{115f}' | '\u{1160}'   // Hangul choseong/jungseong fillers
        | '\u{17b4}' | '\u{17b5}'   // Khmer invisible vowels
        | '\u{180b}'..='\u{180f}'   // Mongolian variation selectors, vowel separator
        | '\u{200b}'..='\u{200f}'   // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{2028}' | '\u{2029}'   // line and paragraph separators
        | '\u{202a}'..='\u{202e}'   // bidi embeddings and overrides (RLO U+202E)
        | '\u{2060}'..='\u{206f}'   // word joiner, invisible operators, isolates, deprecated formats
        | '\u{3164}'                // Hangul filler
        | '\u{feff}'                // zero-width no-break space / BOM
        | '\u{ffa0}'                // halfwidth Hangul filler
        | '\u{fff9}'..='\u{fffb}'   // interlinear annotation
        | '\u{1bca0}'..='\u{1bca3}' // shorthand format controls
        | '\u{1d173}'..='\u{1d17a}' // musical symbol format controls
        | '\u{e0000}'..='\u{e007f}' // tag characters (can carry hidden text)
    )
}

/// The visible escape of an unsafe character.
fn escape(c: char, out: &mut String) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\u{0}'..='\u{1f}' | '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// `text` made safe for a terminal line: unsafe characters escaped
/// visibly, at most `max_chars` characters of output (escapes are never
/// split) followed by [`ELLIPSIS`] when cut. Never contains a raw unsafe
/// character; never longer than `max_chars + 1` characters.
pub fn for_terminal(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(4 * max_chars + 4));
    let mut chars = 0usize;
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        if is_unsafe(c) {
            escape(c, &mut piece);
        } else {
            piece.push(c);
        }
        let n = piece.chars().count();
        if chars + n > max_chars {
            out.push(ELLIPSIS);
            return out;
        }
        out.push_str(&piece);
        chars += n;
    }
    out
}

/// Escapes the characters that notification body markup gives meaning to
/// (`&`, `<`, `>`, `"`, `'`) as XML entities. Not idempotent (by design:
/// `&amp;` must show as typed).
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` for a notification body that may be parsed as markup:
/// [`for_terminal`] (so the cap counts what is displayed), then
/// [`escape_markup`].
pub fn for_notification_markup(text: &str, max_chars: usize) -> String {
    escape_markup(&for_terminal(text, max_chars))
}

/// Serialized JSON with every [`is_unsafe`] character written as a JSON
/// `\uXXXX` escape (a UTF-16 surrogate pair above U+FFFF; RFC 8259 §7):
/// the same JSON value, exact for machines, but nothing a terminal would
/// act on when a person prints it. The input must come from `serde_json`,
/// which escapes every C0 control inside strings: a raw C0 character is
/// then structural whitespace (pretty printing's line breaks) and is kept.
/// Outside strings JSON text is ASCII, so only string contents change.
pub fn json_escape_unsafe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe(c) && c >= ' ' {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An RP ID for display ([`for_terminal`], capped at [`MAX_RP_ID_CHARS`]).
pub fn rp_id(text: &str) -> String {
    for_terminal(text, MAX_RP_ID_CHARS)
}

/// rp.name, user.name or user.displayName for display ([`for_terminal`],
/// capped at [`MAX_NAME_CHARS`]).
pub fn name(text: &str) -> String {
    for_terminal(text, MAX_NAME_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The attack from issue 16: clears the screen, returns to column 0 and
    /// forges an approval line, then reverses what follows.
    const ATTACK: &str = "mallory\u{1b}[2J\rApprove: bank.example\nok\u{202e}evil";

    /// Characters that must never come out raw, defined independently of
    /// [`is_unsafe`]: Rust's `char::is_control` (general category Cc: C0,
    /// DEL, C1) plus the bidirectional formatting characters, the line and
    /// paragraph separators and the zero-width characters.
    fn forbidden(c: char) -> bool {
        c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
            || [
                '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{61c}',
            ]
            .contains(&c)
            || ['\u{2028}', '\u{2029}', '\u{feff}', '\u{2060}'].contains(&c)
    }

    /// Any characters at all (`any::<String>()` would avoid controls).
    fn any_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..64).prop_map(|v| v.into_iter().collect())
    }

    #[test]
    fn peer_text_issue_attack_string_is_escaped_visibly() {
        let shown = name(ATTACK);
        assert_eq!(
            shown,
            "mallory\\x1b[2J\\rApprove: bank.example\\nok\\u{202e}evil"
        );
        assert!(!shown.chars().any(forbidden));
        assert!(!shown.contains('\n') && !shown.contains('\r'));
        // In a notification body the same text, markup-escaped.
        let body = for_notification_markup(&format!("<b>{ATTACK}</b> & 'x'"), 200);
        assert_eq!(
            body,
            "&lt;b&gt;mallory\\x1b[2J\\rApprove: bank.example\\nok\\u{202e}evil&lt;/b&gt; &amp; &apos;x&apos;"
        );
    }

    #[test]
    fn peer_text_controls_and_bidi_escaped() {
        for (input, shown) in [
            ("a\tb", "a\\tb"),
            ("\u{0}\u{7}\u{8}\u{7f}", "\\x00\\x07\\x08\\x7f"),
            ("\u{9b}31m red", "\\u{9b}31m red"),
            ("line\u{85}next", "line\\u{85}next"),
            ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}x\u{2067}y\u{2068}z\u{2069}",
                "\\u{2066}x\\u{2067}y\\u{2068}z\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("pay\u{200b}pal", "pay\\u{200b}pal"),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("soft\u{ad}hyphen", "soft\\u{ad}hyphen"),
            ("tag\u{e0041}\u{e0042}", "tag\\u{e0041}\\u{e0042}"),
            ("\u{3164}", "\\u{3164}"),
        ] {
            assert_eq!(for_terminal(input, 100), shown, "{input:?}");
        }
    }

    #[test]
    fn peer_text_ordinary_names_unchanged() {
        for s in [
            "alice@example.com",
            "Ünïcödé Nàme",
            "山田 太郎",
            "Дмитрий",
            "محمد", // right-to-left script itself is fine: only controls are escaped
            "😀 ❤\u{fe0f}",
            "O'Brien & Sons <Ltd>",
            "back\\slash",
            "",
        ] {
            assert_eq!(for_terminal(s, MAX_NAME_CHARS), s);
        }
        assert_eq!(rp_id("bank.example"), "bank.example");
    }

    #[test]
    fn peer_text_json_keeps_the_value_and_escapes_unsafe_chars() {
        let value = serde_json::json!({ "n": format!("{ATTACK}\u{85}\u{7f}\u{e0041}") });
        for raw in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&[&value, &value]).unwrap(),
        ] {
            assert!(raw.chars().any(|c| c >= ' ' && is_unsafe(c)), "{raw}");
            let out = json_escape_unsafe(&raw);
            assert!(!out.chars().any(|c| c != '\n' && is_unsafe(c)), "{out}");
            assert!(
                out.contains("\\u202e") && out.contains("\\udb40\\udc41"),
                "{out}"
            );
            let back: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                back,
                serde_json::from_str::<serde_json::Value>(&raw).unwrap()
            );
        }
    }

    #[test]
    fn peer_text_capped_with_visible_ellipsis_never_splitting_an_escape() {
        assert_eq!(for_terminal("abcdef", 3), "abc…");
        assert_eq!(for_terminal("abc", 3), "abc");
        assert_eq!(for_terminal("", 0), "");
        assert_eq!(for_terminal("a", 0), "…");
        // "ab" + "\u{202e}" (8 chars) does not fit in 5: cut before it.
        assert_eq!(for_terminal("ab\u{202e}cd", 5), "ab…");
        assert_eq!(for_terminal("ab\u{202e}cd", 10), "ab\\u{202e}…");
        assert_eq!(for_terminal("ab\u{202e}cd", 11), "ab\\u{202e}c…");
        let long = "x".repeat(10_000);
        assert_eq!(name(&long).chars().count(), MAX_NAME_CHARS + 1);
        assert_eq!(rp_id(&long).chars().count(), MAX_RP_ID_CHARS + 1);
        // The cap counts displayed characters, not markup entities.
        assert_eq!(for_notification_markup("<<<<", 2), "&lt;&lt;…");
    }

    #[test]
    fn peer_text_unsafe_set_covers_every_control() {
        for c in (0u32..=0x10ffff).filter_map(char::from_u32) {
            if forbidden(c) {
                assert!(is_unsafe(c), "{:x}", u32::from(c));
            }
        }
    }

    proptest! {
        #[test]
        fn peer_text_never_emits_a_raw_control_or_bidi_char(s in any_text(), cap in 0usize..80) {
            let t = for_terminal(&s, cap);
            prop_assert!(!t.chars().any(forbidden), "{:?} -> {:?}", s, t);
            prop_assert!(!t.chars().any(is_unsafe));
            prop_assert!(t.chars().count() <= cap + 1);
            let m = for_notification_markup(&s, cap);
            prop_assert!(!m.chars().any(is_unsafe));
            prop_assert!(!m.contains('<') && !m.contains('>') && !m.contains('"') && !m.contains('\''));
        }

        #[test]
        fn peer_text_terminal_rendering_is_idempotent(s in any_text(), cap in 0usize..80) {
            let once = for_terminal(&s, cap);
            prop_assert_eq!(for_terminal(&once, cap), once);
        }

        #[test]
        fn peer_text_mixed_unsafe_inputs(parts in proptest::collection::vec(
            prop_oneof![
                Just("\u{1b}[2J".to_string()), Just("\r".to_string()), Just("\n".to_string()),
                Just("\u{202e}".to_string()), Just("\u{2066}".to_string()), Just("\u{9b}".to_string()),
                Just("Approve: bank.example".to_string()), "[a-z]{0,8}",
            ], 0..12), cap in 1usize..120) {
            let s: String = parts.concat();
            let t = for_terminal(&s, cap);
            prop_assert!(!t.chars().any(forbidden));
            prop_assert!(t.chars().count() <= cap + 1);
        }
    }
}
