//! Unit tests of [`super`] (a file of their own: protocol.rs stays under 600 lines).
use super::*;
use crate::prompt::Action;

#[test]
fn client_messages_round_trip() {
    let m =
        ClientMsg::parse(&ClientMsg::Scan(Zeroizing::new("FIDO:/123".into())).to_line()).unwrap();
    assert!(matches!(m, ClientMsg::Scan(ref u) if u.as_str() == "FIDO:/123"));
    let m = ClientMsg::parse(r#"{"approve": true, "pin": "1234"}"#).unwrap();
    assert!(
        matches!(m, ClientMsg::Approve { approve: true, pin: Some(ref p) } if p.as_str() == "1234")
    );
    let m = ClientMsg::parse(r#"{"approve": false}"#).unwrap();
    assert!(matches!(
        m,
        ClientMsg::Approve {
            approve: false,
            pin: None
        }
    ));
    assert!(matches!(
        ClientMsg::parse(r#"{"approve": true, "pin": null}"#).unwrap(),
        ClientMsg::Approve { pin: None, .. }
    ));
    assert!(matches!(
        ClientMsg::parse(r#"{"ping": true}"#).unwrap(),
        ClientMsg::Ping
    ));
    assert!(ClientMsg::parse(r#"{"scan": 5}"#).is_err());
    assert!(ClientMsg::parse(r#"{"scan": "x", "extra": 1}"#).is_err());
    assert!(ClientMsg::parse(r#"{"scan": "x", "ping": true}"#).is_err());
    assert!(ClientMsg::parse(r#"{"pin": "1"}"#).is_err());
    assert!(ClientMsg::parse(r#"{"hello": 1}"#).is_err());
    assert!(matches!(
        ClientMsg::parse("{}"),
        Err(ProtocolError::UnknownMessage)
    ));
    assert!(matches!(
        ClientMsg::parse("not json"),
        Err(ProtocolError::NotJson(_))
    ));
    // The PIN never shows in Debug.
    let dbg = format!(
        "{:?}",
        ClientMsg::parse(r#"{"approve": true, "pin": "8521"}"#).unwrap()
    );
    assert!(!dbg.contains("8521"));
}

#[test]
fn client_lines_are_the_documented_ones() {
    let l = |m: ClientMsg| m.to_line().to_string();
    assert_eq!(
        l(ClientMsg::Scan(Zeroizing::new("FIDO:/1".into()))),
        r#"{"scan":"FIDO:/1"}"#
    );
    assert_eq!(
        l(ClientMsg::Approve {
            approve: true,
            pin: Some(Zeroizing::new("12".into()))
        }),
        r#"{"approve":true,"pin":"12"}"#
    );
    assert_eq!(
        l(ClientMsg::Approve {
            approve: false,
            pin: None
        }),
        r#"{"approve":false}"#
    );
    assert_eq!(l(ClientMsg::Ping), r#"{"ping":true}"#);
    assert_eq!(
        l(ClientMsg::DesktopScan(Zeroizing::new("FIDO:/1".into()))),
        r#"{"scan":"FIDO:/1","terminal":false}"#
    );
    assert_eq!(
        l(ClientMsg::Unlock(Some(Zeroizing::new("12".into())))),
        r#"{"pin":"12","unlock":true}"#
    );
    assert_eq!(l(ClientMsg::Unlock(None)), r#"{"unlock":true}"#);
    assert_eq!(l(ClientMsg::Lock), r#"{"lock":true}"#);
}

#[test]
fn desktop_scan_hand_off_unlock_and_lock_parse_and_round_trip() {
    for m in [
        ClientMsg::DesktopScan(Zeroizing::new("FIDO:/1".into())),
        ClientMsg::HandOff(Zeroizing::new("FIDO:/1".into())),
        ClientMsg::Unlock(Some(Zeroizing::new("12".into()))),
        ClientMsg::Unlock(None),
        ClientMsg::Lock,
    ] {
        assert_eq!(ClientMsg::parse(&m.to_line()).unwrap(), m);
    }
    // A terminal client's scan is the plain one.
    assert_eq!(
        ClientMsg::parse(r#"{"scan": "x", "terminal": true}"#).unwrap(),
        ClientMsg::Scan(Zeroizing::new("x".into()))
    );
    assert!(matches!(
        ClientMsg::parse(r#"{"terminal": false}"#),
        Err(ProtocolError::TerminalWithoutScan)
    ));
    // Only a desktop-asked scan may go on without its client.
    assert_eq!(
        ClientMsg::HandOff(Zeroizing::new("FIDO:/1".into()))
            .to_line()
            .as_str(),
        r#"{"detach":true,"scan":"FIDO:/1","terminal":false}"#
    );
    for bad in [
        r#"{"scan": "x", "detach": true}"#,
        r#"{"scan": "x", "terminal": true, "detach": true}"#,
        r#"{"ping": true, "detach": true}"#,
    ] {
        assert!(
            matches!(
                ClientMsg::parse(bad),
                Err(ProtocolError::DetachWithTerminal)
            ),
            "{bad}"
        );
    }
    assert_eq!(
        ClientMsg::parse(r#"{"scan": "x", "terminal": false, "detach": false}"#).unwrap(),
        ClientMsg::DesktopScan(Zeroizing::new("x".into()))
    );
    assert!(matches!(
        ClientMsg::parse(r#"{"lock": true, "unlock": true}"#),
        Err(ProtocolError::SeveralKinds)
    ));
    assert!(matches!(
        ClientMsg::parse(r#"{"lock": true, "pin": "1"}"#),
        Err(ProtocolError::PinWithoutApprove)
    ));
    let dbg = format!(
        "{:?}",
        ClientMsg::Unlock(Some(Zeroizing::new("8521".into())))
    );
    assert!(!dbg.contains("8521"));
}

fn prompt() -> Prompt {
    Prompt {
        action: Action::SignIn,
        needs_pin: true,
        notice: None,
        qr_age_secs: Some(4),
        rp_id: "example.com".into(),
        rp_name: None,
        user_display_name: Some("Alice".into()),
        user_name: Some("alice".into()),
        uv_required: false,
    }
}

#[test]
fn daemon_messages_round_trip() {
    let msgs = [
        DaemonMsg::Event(Event::TunnelOpen),
        DaemonMsg::Event(Event::NextAccount),
        DaemonMsg::Notice("wrong PIN".into()),
        DaemonMsg::Done(Done {
            ok: false,
            outcome: "declined".into(),
            message: "you declined".into(),
        }),
        DaemonMsg::Busy("a session is already running".into()),
        DaemonMsg::Error("x".into()),
        DaemonMsg::Pong(Pong {
            version: "1".into(),
            busy: true,
            vault_session: false,
        }),
        DaemonMsg::Pong(Pong {
            version: "1".into(),
            busy: false,
            vault_session: true,
        }),
        DaemonMsg::Prompt(prompt()),
    ];
    for m in msgs {
        let line = m.to_line();
        assert_eq!(DaemonMsg::parse(&line).unwrap(), m, "{line}");
    }
    assert_eq!(
        DaemonMsg::Event(Event::TunnelOpen).to_line(),
        r#"{"event":"tunnel_open"}"#
    );
    assert_eq!(
        DaemonMsg::Event(Event::DesktopConnected).to_line(),
        r#"{"event":"desktop_connected"}"#
    );
    assert_eq!(
        DaemonMsg::Busy("a session is already running".into()).to_line(),
        r#"{"busy":"a session is already running"}"#
    );
    assert_eq!(
        DaemonMsg::Done(Done {
            ok: true,
            outcome: "completed".into(),
            message: "signed in".into()
        })
        .to_line(),
        r#"{"done":{"message":"signed in","ok":true,"outcome":"completed"}}"#
    );
    assert_eq!(
        DaemonMsg::Notice("no answer in time".into()).to_line(),
        r#"{"event":"notice","message":"no answer in time"}"#
    );
    assert_eq!(
        DaemonMsg::Pong(Pong {
            version: "0.1.0".into(),
            busy: false,
            vault_session: false,
        })
        .to_line(),
        r#"{"pong":{"busy":false,"version":"0.1.0"}}"#
    );
}

#[test]
fn prompt_line_has_every_documented_field() {
    let v: serde_json::Value =
        serde_json::from_str(&DaemonMsg::Prompt(prompt()).to_line()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "action",
            "event",
            "needs_pin",
            "notice",
            "qr_age_secs",
            "rp_id",
            "rp_name",
            "user_display_name",
            "user_name",
            "uv_required"
        ]
    );
    assert_eq!(v["event"], "prompt");
    assert_eq!(v["action"], "sign in");
    assert!(v["rp_name"].is_null() && v["notice"].is_null());
    assert_eq!(v["qr_age_secs"], 4);
}

#[test]
fn get_next_assertion_has_its_own_event_name() {
    let at = std::time::Instant::now();
    let name = |command| Event::of(&SessionEvent::CommandReceived { command, at });
    assert_eq!(name(0x02), Some(Event::Request));
    assert_eq!(name(0x01), Some(Event::Request));
    assert_eq!(name(0x08), Some(Event::NextAccount));
    assert_eq!(
        Event::of(&SessionEvent::HandshakeDone { at }),
        Some(Event::DesktopConnected)
    );
}

#[test]
fn unknown_events_are_tolerated() {
    assert_eq!(
        DaemonMsg::parse(r#"{"event":"something_new"}"#).unwrap(),
        DaemonMsg::Event(Event::Unknown)
    );
    assert!(DaemonMsg::parse(r#"{"hello":1}"#).is_err());
}
