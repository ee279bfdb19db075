//! The control protocol's messages, typed, with their JSON form by serde
//! derive. The wire format is `docs/operations.md`'s ("Control protocol")
//! and the module doc of [`crate::control`]; field names and values are
//! fixed there, because `hybridd scan`, the tests and the interop harnesses
//! speak it.

use hybrid_ctap::command::CMD_GET_NEXT_ASSERTION;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::ceremony::{Progress, SessionEvent};
use crate::prompt::Prompt;

/// A message from the client.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// `{"scan": "FIDO:/…"}`: start a session with this URI (secret).
    Scan(Zeroizing<String>),
    /// `{"approve": bool, "pin"?: "…"}`: the answer to a prompt.
    Approve {
        /// Approved?
        approve: bool,
        /// The PIN, when approved and asked for (secret).
        pin: Option<Zeroizing<String>>,
    },
    /// `{"ping": true}`: liveness check (`hybridd doctor`).
    Ping,
}

impl std::fmt::Debug for ClientMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientMsg::Scan(_) => f.write_str("Scan(..)"),
            ClientMsg::Approve { approve, pin } => write!(
                f,
                "Approve {{ approve: {approve}, pin: {} }}",
                if pin.is_some() { "<set>" } else { "none" }
            ),
            ClientMsg::Ping => f.write_str("Ping"),
        }
    }
}

/// Any JSON value in, `true` out: `"ping"`'s value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flag;

impl Serialize for Flag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Flag)
    }
}

/// The client message's JSON object: every key optional, exactly one kind
/// present (checked by [`ClientMsg::try_from`]). Fields in alphabetical
/// order, as the protocol writes them. One flat struct rather than an
/// untagged enum, so that the PIN is read straight into its zeroizing
/// string (serde's untagged buffering would leave a copy behind).
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approve: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ping: Option<Flag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scan: Option<Zeroizing<String>>,
}

impl TryFrom<ClientWire> for ClientMsg {
    type Error = ProtocolError;

    fn try_from(w: ClientWire) -> Result<ClientMsg, ProtocolError> {
        let kinds = usize::from(w.scan.is_some())
            + usize::from(w.approve.is_some())
            + usize::from(w.ping.is_some());
        if kinds > 1 {
            return Err(ProtocolError::SeveralKinds);
        }
        if w.pin.is_some() && w.approve.is_none() {
            return Err(ProtocolError::PinWithoutApprove);
        }
        if let Some(uri) = w.scan {
            return Ok(ClientMsg::Scan(uri));
        }
        if let Some(approve) = w.approve {
            return Ok(ClientMsg::Approve {
                approve,
                pin: w.pin,
            });
        }
        if w.ping.is_some() {
            return Ok(ClientMsg::Ping);
        }
        Err(ProtocolError::UnknownMessage)
    }
}

impl ClientMsg {
    /// Parses one line. Unknown fields, wrong types, no kind or several
    /// kinds are errors.
    pub fn parse(line: &str) -> Result<ClientMsg, ProtocolError> {
        let wire: ClientWire = serde_json::from_str(line).map_err(ProtocolError::json)?;
        ClientMsg::try_from(wire)
    }

    /// The JSON line (without `\n`); zeroized on drop (it may hold the PIN
    /// or the QR URI).
    pub fn to_line(&self) -> Zeroizing<String> {
        let wire = match self {
            ClientMsg::Scan(uri) => ClientWire {
                scan: Some(uri.clone()),
                ..ClientWire::default()
            },
            ClientMsg::Approve { approve, pin } => ClientWire {
                approve: Some(*approve),
                pin: pin.clone(),
                ..ClientWire::default()
            },
            ClientMsg::Ping => ClientWire {
                ping: Some(Flag),
                ..ClientWire::default()
            },
        };
        Zeroizing::new(to_json(&wire))
    }
}

/// A progress event (`{"event": "<name>"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The tunnel server opened the tunnel.
    TunnelOpen,
    /// The advert is on air; waiting for the computer.
    Advertising,
    /// The computer's handshake succeeded.
    DesktopConnected,
    /// A CTAP request arrived.
    Request,
    /// An `authenticatorGetNextAssertion` (CTAP 2.1 §6.3): the computer
    /// collects another account of the sign-in already approved.
    NextAccount,
    /// An event name this client does not know (a newer daemon); ignored.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The event a control client sees for a ceremony's progress, if any.
    pub fn of(progress: &SessionEvent) -> Option<Event> {
        match progress {
            SessionEvent::TunnelOpen { .. } => Some(Event::TunnelOpen),
            SessionEvent::AdvertStarted { .. } => Some(Event::Advertising),
            SessionEvent::HandshakeDone { .. } => Some(Event::DesktopConnected),
            SessionEvent::CommandReceived {
                command: CMD_GET_NEXT_ASSERTION,
                ..
            } => Some(Event::NextAccount),
            SessionEvent::CommandReceived { .. } => Some(Event::Request),
            _ => None,
        }
    }
}

/// A ceremony's progress, as events on the control socket, in order with
/// the prompts the socket front-end sends on the same channel.
impl Progress for mpsc::UnboundedSender<DaemonMsg> {
    fn event(&self, progress: &SessionEvent) {
        if let Some(e) = Event::of(progress) {
            let _ = self.send(DaemonMsg::Event(e));
        }
    }
}

/// How a session ended, as sent in `{"done": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// A sentence for the person.
    pub message: String,
    /// Success.
    pub ok: bool,
    /// `completed`, or a failure code: `qr_invalid`, `qr_stale`, `qr_replayed`,
    /// `tunnel_unreachable`, `desktop_never_connected`, `handshake_failed`,
    /// `decrypt_failed`, `bad_frame`, `declined`, `timeout`, `cancelled`,
    /// `ctap_error`, `internal`, …
    pub outcome: String,
}

/// The answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Whether a session runs.
    pub busy: bool,
    /// Daemon version.
    pub version: String,
}

/// A message from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonMsg {
    /// Progress.
    Event(Event),
    /// Approval needed.
    Prompt(Prompt),
    /// Information for the person (wrong PIN, no answer in time, …).
    Notice(String),
    /// The session ended.
    Done(Done),
    /// A session is already running.
    Busy(String),
    /// The request was refused.
    Error(String),
    /// Answer to ping.
    Pong(Pong),
}

/// `{"event": …}` messages: the tag first, then the fields.
#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum EventWire {
    Prompt(Prompt),
    Notice {
        message: String,
    },
    #[serde(untagged)]
    Progress(ProgressWire),
}

#[derive(Serialize, Deserialize)]
struct ProgressWire {
    event: Event,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum DaemonWire {
    Done { done: Done },
    Busy { busy: String },
    Error { error: String },
    Pong { pong: Pong },
    Event(EventWire),
}

impl DaemonMsg {
    /// The JSON line (without `\n`).
    pub fn to_line(&self) -> String {
        let wire = match self.clone() {
            DaemonMsg::Event(event) => {
                DaemonWire::Event(EventWire::Progress(ProgressWire { event }))
            }
            DaemonMsg::Prompt(p) => DaemonWire::Event(EventWire::Prompt(p)),
            DaemonMsg::Notice(message) => DaemonWire::Event(EventWire::Notice { message }),
            DaemonMsg::Done(done) => DaemonWire::Done { done },
            DaemonMsg::Busy(busy) => DaemonWire::Busy { busy },
            DaemonMsg::Error(error) => DaemonWire::Error { error },
            DaemonMsg::Pong(pong) => DaemonWire::Pong { pong },
        };
        to_json(&wire)
    }

    /// Parses one line from the daemon.
    pub fn parse(line: &str) -> Result<DaemonMsg, ProtocolError> {
        let wire: DaemonWire = serde_json::from_str(line).map_err(ProtocolError::json)?;
        Ok(match wire {
            DaemonWire::Done { done } => DaemonMsg::Done(done),
            DaemonWire::Busy { busy } => DaemonMsg::Busy(busy),
            DaemonWire::Error { error } => DaemonMsg::Error(error),
            DaemonWire::Pong { pong } => DaemonMsg::Pong(pong),
            DaemonWire::Event(EventWire::Prompt(p)) => DaemonMsg::Prompt(p),
            DaemonWire::Event(EventWire::Notice { message }) => DaemonMsg::Notice(message),
            DaemonWire::Event(EventWire::Progress(p)) => DaemonMsg::Event(p.event),
        })
    }
}

/// Serializes a message type of this module: plain structs with string
/// keys, which `serde_json` cannot fail on.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| String::from("{}"))
}

/// Why a control-protocol line was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not a message: an unknown field or a wrong type.
    #[error("invalid message: {0}")]
    Invalid(serde_json::Error),
    /// None of the known kinds.
    #[error("unknown message: expected \"scan\", \"approve\" or \"ping\"")]
    UnknownMessage,
    /// More than one kind in one object.
    #[error("a message carries exactly one of \"scan\", \"approve\" or \"ping\"")]
    SeveralKinds,
    /// `"pin"` outside an approval.
    #[error("\"pin\" only goes with \"approve\"")]
    PinWithoutApprove,
    /// A line longer than [`crate::control::MAX_LINE`] bytes.
    #[error("line too long")]
    LineTooLong,
    /// A line that is not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// The socket failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    fn json(e: serde_json::Error) -> ProtocolError {
        if e.is_data() {
            ProtocolError::Invalid(e)
        } else {
            ProtocolError::NotJson(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::Action;

    #[test]
    fn client_messages_round_trip() {
        let m = ClientMsg::parse(&ClientMsg::Scan(Zeroizing::new("FIDO:/123".into())).to_line())
            .unwrap();
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
                busy: false
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
}
