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
    /// `{"scan": "FIDO:/…", "terminal": false}`: a QR from a client without
    /// a terminal to ask on (a `FIDO:/` link opened by `xdg-open`, a pipe):
    /// the daemon asks through the desktop.
    DesktopScan(Zeroizing<String>),
    /// `{"scan": "FIDO:/…", "terminal": false, "detach": true}`: like
    /// [`ClientMsg::DesktopScan`], but the client leaves once the session
    /// is under way (a `FIDO:/` link: `hybridd scan --detach`, so the QR
    /// code stops being readable in the client's `/proc/PID/cmdline`); its
    /// leaving does not cancel the session.
    HandOff(Zeroizing<String>),
    /// `{"unlock": true, "pin"?: "…"}`: open the vault session (`hybridd
    /// unlock`); without a PIN the daemon asks through pinentry.
    Unlock(Option<Zeroizing<String>>),
    /// `{"lock": true}`: end the vault session (`hybridd lock`).
    Lock,
}

/// Who answers a scan's prompt, and whether the session needs its client
/// until the end: the three scan messages of [`ClientMsg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMode {
    /// The client, on its terminal ([`ClientMsg::Scan`]); the session ends
    /// if the client leaves.
    Terminal,
    /// The desktop, a notification ([`ClientMsg::DesktopScan`]); the client
    /// waits for the outcome, and its leaving cancels the session.
    Desktop,
    /// The desktop ([`ClientMsg::HandOff`]); the client may leave once the
    /// session is under way without cancelling it.
    HandOff,
}

impl ClientMsg {
    /// The scan message for `uri` in `mode`.
    pub fn scan(uri: Zeroizing<String>, mode: ScanMode) -> ClientMsg {
        match mode {
            ScanMode::Terminal => ClientMsg::Scan(uri),
            ScanMode::Desktop => ClientMsg::DesktopScan(uri),
            ScanMode::HandOff => ClientMsg::HandOff(uri),
        }
    }
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
            ClientMsg::DesktopScan(_) => f.write_str("DesktopScan(..)"),
            ClientMsg::HandOff(_) => f.write_str("HandOff(..)"),
            ClientMsg::Unlock(pin) => write!(
                f,
                "Unlock {{ pin: {} }}",
                if pin.is_some() { "<set>" } else { "none" }
            ),
            ClientMsg::Lock => f.write_str("Lock"),
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
    detach: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock: Option<Flag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ping: Option<Flag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scan: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    terminal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unlock: Option<Flag>,
}

impl TryFrom<ClientWire> for ClientMsg {
    type Error = ProtocolError;

    fn try_from(w: ClientWire) -> Result<ClientMsg, ProtocolError> {
        let kinds = usize::from(w.scan.is_some())
            + usize::from(w.approve.is_some())
            + usize::from(w.ping.is_some())
            + usize::from(w.unlock.is_some())
            + usize::from(w.lock.is_some());
        if kinds > 1 {
            return Err(ProtocolError::SeveralKinds);
        }
        if w.pin.is_some() && w.approve.is_none() && w.unlock.is_none() {
            return Err(ProtocolError::PinWithoutApprove);
        }
        if w.terminal.is_some() && w.scan.is_none() {
            return Err(ProtocolError::TerminalWithoutScan);
        }
        let detach = w.detach == Some(true);
        if detach && w.terminal != Some(false) {
            return Err(ProtocolError::DetachWithTerminal);
        }
        if let Some(uri) = w.scan {
            return Ok(match (w.terminal, detach) {
                (Some(false), true) => ClientMsg::HandOff(uri),
                (Some(false), false) => ClientMsg::DesktopScan(uri),
                _ => ClientMsg::Scan(uri),
            });
        }
        if w.unlock.is_some() {
            return Ok(ClientMsg::Unlock(w.pin));
        }
        if w.lock.is_some() {
            return Ok(ClientMsg::Lock);
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
            ClientMsg::DesktopScan(uri) => ClientWire {
                scan: Some(uri.clone()),
                terminal: Some(false),
                ..ClientWire::default()
            },
            ClientMsg::HandOff(uri) => ClientWire {
                scan: Some(uri.clone()),
                terminal: Some(false),
                detach: Some(true),
                ..ClientWire::default()
            },
            ClientMsg::Unlock(pin) => ClientWire {
                unlock: Some(Flag),
                pin: pin.clone(),
                ..ClientWire::default()
            },
            ClientMsg::Lock => ClientWire {
                lock: Some(Flag),
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
    /// Whether a vault session is open (`verify = "fingerprint"`; absent
    /// from older daemons: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vault_session: bool,
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
    #[error("unknown message: expected \"scan\", \"approve\", \"ping\", \"unlock\" or \"lock\"")]
    UnknownMessage,
    /// More than one kind in one object.
    #[error(
        "a message carries exactly one of \"scan\", \"approve\", \"ping\", \"unlock\" or \"lock\""
    )]
    SeveralKinds,
    /// `"pin"` outside an approval or an unlock.
    #[error("\"pin\" only goes with \"approve\" or \"unlock\"")]
    PinWithoutApprove,
    /// `"terminal"` outside a scan.
    #[error("\"terminal\" only goes with \"scan\"")]
    TerminalWithoutScan,
    /// `"detach"` without a scan whose `"terminal"` is false: only a
    /// session the daemon asks through the desktop can go on without its
    /// client.
    #[error("\"detach\" only goes with a \"scan\" whose \"terminal\" is false")]
    DetachWithTerminal,
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
mod tests;
