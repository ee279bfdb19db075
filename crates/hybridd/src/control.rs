//! The control socket: how `hybridd scan` hands a QR code to the running
//! daemon and answers its approval prompt (`docs/operations.md`,
//! "Control protocol").
//!
//! A Unix stream socket (directory 0700, socket 0600) speaking JSON lines:
//! one JSON object per `\n`-terminated line, each way. Only a peer with the
//! daemon's own uid (SO_PEERCRED) is served. One session at a time: a scan
//! while one runs is answered `{"busy": …}` at once.
//!
//! ```text
//! client → {"scan": "FIDO:/…"}                 start a session
//! client → {"ping": true}                      daemon → {"pong": {"version": …, "busy": bool}}
//! daemon → {"event": "tunnel_open"}            progress events (also "advertising",
//!                                              "desktop_connected", "request",
//!                                              "next_account": a getNextAssertion)
//! daemon → {"event": "prompt", "action": "sign in", "rp_id": …, "user_name": …,
//!           "needs_pin": true, "qr_age_secs": 4, "notice": null, …}
//! client → {"approve": true, "pin": "…"} | {"approve": false}
//! daemon → {"event": "notice", "message": "wrong PIN: …"}
//! daemon → {"done": {"ok": bool, "outcome": "completed" | <code>, "message": "…"}}
//! daemon → {"busy": "a session is already running"} | {"error": "…"}
//! ```
//!
//! The QR URI and the PIN travel only over this socket; neither is logged.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use crate::approval::{Answer, Approver, Prompt};

/// The answer to a scan made while a session runs.
pub const BUSY_MESSAGE: &str = "a session is already running";
/// Longest accepted line from a client (a QR URI is well under 1 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// A message from the client.
pub enum ClientMsg {
    /// Start a session with this `FIDO:/` URI.
    Scan(Zeroizing<String>),
    /// Answer to a prompt.
    Approve {
        /// Approved?
        approve: bool,
        /// The PIN, when approved and asked for.
        pin: Option<Zeroizing<String>>,
    },
    /// Liveness check (`hybridd doctor`).
    Ping,
}

impl std::fmt::Debug for ClientMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientMsg::Scan(_) => f.write_str("Scan(..)"),
            ClientMsg::Approve { approve, pin } => {
                write!(
                    f,
                    "Approve {{ approve: {approve}, pin: {} }}",
                    if pin.is_some() { "<set>" } else { "none" }
                )
            }
            ClientMsg::Ping => f.write_str("Ping"),
        }
    }
}

impl ClientMsg {
    /// Parses one line. Unknown or missing fields are errors.
    pub fn parse(line: &str) -> Result<ClientMsg, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(mut m) = v else {
            return Err("expected a JSON object".into());
        };
        if let Some(uri) = m.remove("scan") {
            let Value::String(uri) = uri else {
                return Err("\"scan\" must be a string".into());
            };
            only_keys(&m, &[])?;
            return Ok(ClientMsg::Scan(Zeroizing::new(uri)));
        }
        if let Some(a) = m.remove("approve") {
            let Value::Bool(approve) = a else {
                return Err("\"approve\" must be true or false".into());
            };
            let pin = match m.remove("pin") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(Zeroizing::new(p)),
                Some(_) => return Err("\"pin\" must be a string".into()),
            };
            only_keys(&m, &[])?;
            return Ok(ClientMsg::Approve { approve, pin });
        }
        if m.remove("ping").is_some() {
            only_keys(&m, &[])?;
            return Ok(ClientMsg::Ping);
        }
        Err("unknown message: expected \"scan\", \"approve\" or \"ping\"".into())
    }

    /// The JSON line (without `\n`).
    pub fn to_line(&self) -> String {
        match self {
            ClientMsg::Scan(uri) => json!({ "scan": uri.as_str() }).to_string(),
            ClientMsg::Approve { approve, pin } => match pin {
                Some(p) => json!({ "approve": approve, "pin": p.as_str() }).to_string(),
                None => json!({ "approve": approve }).to_string(),
            },
            ClientMsg::Ping => json!({ "ping": true }).to_string(),
        }
    }
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unexpected field {k:?}")),
        None => Ok(()),
    }
}

/// How a session ended, as sent in `{"done": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Success.
    pub ok: bool,
    /// `completed`, or a failure code: `qr_invalid`, `qr_stale`, `qr_replayed`,
    /// `tunnel_unreachable`, `desktop_never_connected`, `handshake_failed`,
    /// `decrypt_failed`, `bad_frame`, `declined`, `timeout`, `cancelled`, …
    pub outcome: String,
    /// A sentence for the person.
    pub message: String,
}

/// A message from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonMsg {
    /// A progress event (`tunnel_open`, `advertising`, `desktop_connected`, `request`).
    Event(String),
    /// Approval needed.
    Prompt(Value),
    /// Information for the person (wrong PIN, …).
    Notice(String),
    /// The session ended.
    Done(Done),
    /// A session is already running.
    Busy(String),
    /// The request was refused.
    Error(String),
    /// Answer to ping.
    Pong {
        /// Daemon version.
        version: String,
        /// Whether a session runs.
        busy: bool,
    },
}

impl DaemonMsg {
    /// Builds the prompt message from an approval [`Prompt`].
    pub fn prompt(p: &Prompt) -> DaemonMsg {
        let r = &p.request;
        DaemonMsg::Prompt(json!({
            "action": p.action(),
            "rp_id": r.rp_id,
            "rp_name": r.rp_name,
            "user_name": r.user_name,
            "user_display_name": r.user_display_name,
            "uv_required": r.uv_required,
            "qr_age_secs": r.qr_age_secs,
            "needs_pin": p.needs_pin,
            "notice": p.notice,
        }))
    }

    /// The JSON line (without `\n`).
    pub fn to_line(&self) -> String {
        match self {
            DaemonMsg::Event(e) => json!({ "event": e }).to_string(),
            DaemonMsg::Prompt(v) => {
                let mut m = match v {
                    Value::Object(m) => m.clone(),
                    _ => Map::new(),
                };
                m.insert("event".into(), Value::String("prompt".into()));
                Value::Object(m).to_string()
            }
            DaemonMsg::Notice(s) => json!({ "event": "notice", "message": s }).to_string(),
            DaemonMsg::Done(d) => {
                json!({ "done": { "ok": d.ok, "outcome": d.outcome, "message": d.message } })
                    .to_string()
            }
            DaemonMsg::Busy(s) => json!({ "busy": s }).to_string(),
            DaemonMsg::Error(s) => json!({ "error": s }).to_string(),
            DaemonMsg::Pong { version, busy } => {
                json!({ "pong": { "version": version, "busy": busy } }).to_string()
            }
        }
    }

    /// Parses one line from the daemon.
    pub fn parse(line: &str) -> Result<DaemonMsg, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(d) = v.get("done") {
            return Ok(DaemonMsg::Done(Done {
                ok: d.get("ok").and_then(Value::as_bool).unwrap_or(false),
                outcome: s(d.get("outcome")),
                message: s(d.get("message")),
            }));
        }
        if let Some(b) = v.get("busy") {
            return Ok(DaemonMsg::Busy(s(Some(b))));
        }
        if let Some(e) = v.get("error") {
            return Ok(DaemonMsg::Error(s(Some(e))));
        }
        if let Some(p) = v.get("pong") {
            return Ok(DaemonMsg::Pong {
                version: s(p.get("version")),
                busy: p.get("busy").and_then(Value::as_bool).unwrap_or(false),
            });
        }
        match v.get("event").and_then(Value::as_str) {
            Some("prompt") => {
                let mut v = v;
                if let Value::Object(m) = &mut v {
                    m.remove("event");
                }
                Ok(DaemonMsg::Prompt(v))
            }
            Some("notice") => Ok(DaemonMsg::Notice(s(v.get("message")))),
            Some(e) => Ok(DaemonMsg::Event(e.to_owned())),
            None => Err("unknown daemon message".into()),
        }
    }
}

/// An approval answer passed from the connection to the session.
pub type ClientAnswer = Answer;

/// What the connection hands the session runner.
pub struct SessionRequest {
    /// The QR URI (secret: never log it).
    pub uri: Zeroizing<String>,
    /// Events and prompts for the client.
    pub events: mpsc::UnboundedSender<DaemonMsg>,
    /// The approver talking to this client.
    pub approver: SocketApprover,
    /// Becomes `true` when the session must stop (client gone, shutdown).
    pub cancel: watch::Receiver<bool>,
}

impl std::fmt::Debug for SessionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionRequest { .. }")
    }
}

/// The session runner the daemon plugs in.
pub type Runner =
    Arc<dyn Fn(SessionRequest) -> Pin<Box<dyn Future<Output = Done> + Send>> + Send + Sync>;

/// Asks the connected `hybridd scan` client (prompt out over the socket,
/// answer back through a channel).
pub struct SocketApprover {
    events: mpsc::UnboundedSender<DaemonMsg>,
    answers: std_mpsc::Receiver<ClientAnswer>,
}

impl std::fmt::Debug for SocketApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SocketApprover { .. }")
    }
}

impl SocketApprover {
    /// An approver over these channels.
    pub fn new(
        events: mpsc::UnboundedSender<DaemonMsg>,
        answers: std_mpsc::Receiver<ClientAnswer>,
    ) -> Self {
        SocketApprover { events, answers }
    }
}

impl Approver for SocketApprover {
    fn ask(&mut self, prompt: &Prompt, within: Duration) -> Result<Answer, hybrid_ctap::UserError> {
        while self.answers.try_recv().is_ok() {} // stale answers
        if self.events.send(DaemonMsg::prompt(prompt)).is_err() {
            return Err(hybrid_ctap::UserError::Cancelled);
        }
        match self.answers.recv_timeout(within) {
            Ok(a) => Ok(a),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                let _ = self
                    .events
                    .send(DaemonMsg::Notice("no answer in time".into()));
                Err(hybrid_ctap::UserError::Timeout)
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(hybrid_ctap::UserError::Cancelled),
        }
    }

    fn notify(&mut self, message: &str) {
        let _ = self.events.send(DaemonMsg::Notice(message.to_owned()));
    }
}

/// Whether a peer with `peer_uid` may use the daemon of `our_uid`: only the same user.
pub fn peer_allowed(peer_uid: u32, our_uid: u32) -> bool {
    peer_uid == our_uid
}

/// Creates the socket's directory (0700, refusing one others can access or
/// that someone else owns) and binds the socket (0600), replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = std::fs::metadata(dir)?;
    if meta.uid() != crate::config::current_uid() || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "socket directory {} must be owned by you with mode 0700 (fix: chmod 700 {0})",
                dir.display()
            ),
        ));
    }
    if path.exists() {
        // A daemon still answering there? Then refuse; else it is stale.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another hybridd is already listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The control server: accepts connections until `shutdown` turns true.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    runner: Runner,
    slot: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server on a bound listener.
    pub fn new(listener: UnixListener, path: PathBuf, runner: Runner) -> Self {
        Server {
            listener,
            path,
            runner,
            slot: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Serves until `shutdown` becomes true; cancels a running session,
    /// waits for it (bounded), and removes the socket file.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let our_uid = crate::config::current_uid();
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let runner = self.runner.clone();
                        let slot = self.slot.clone();
                        let sd = shutdown.clone();
                        conns.spawn(async move { connection(stream, our_uid, runner, slot, sd).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        conns.abort_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connection(
    stream: UnixStream,
    our_uid: u32,
    runner: Runner,
    slot: Arc<tokio::sync::Mutex<()>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (rd, mut wr) = stream.into_split();
    let peer = wr.as_ref().peer_cred().map(|c| c.uid());
    match peer {
        Ok(uid) if peer_allowed(uid, our_uid) => {}
        Ok(uid) => {
            tracing::warn!(
                peer_uid = uid,
                "refused control connection from another user"
            );
            let _ = send(
                &mut wr,
                &DaemonMsg::Error("permission denied: not the daemon's user".into()),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the control peer's credentials");
            return;
        }
    }
    let mut lines = BufReader::new(rd).lines();
    loop {
        let line = tokio::select! {
            _ = shutdown.changed() => return,
            l = lines.next_line() => l,
        };
        let line = match line {
            Ok(Some(l)) => Zeroizing::new(l),
            _ => return,
        };
        if line.len() > MAX_LINE {
            let _ = send(&mut wr, &DaemonMsg::Error("line too long".into())).await;
            return;
        }
        let msg = match ClientMsg::parse(&line) {
            Ok(m) => m,
            Err(e) => {
                let _ = send(&mut wr, &DaemonMsg::Error(e)).await;
                continue;
            }
        };
        match msg {
            ClientMsg::Ping => {
                let busy = slot.try_lock().is_err();
                let pong = DaemonMsg::Pong {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    busy,
                };
                if send(&mut wr, &pong).await.is_err() {
                    return;
                }
            }
            ClientMsg::Approve { .. } => {
                let _ = send(&mut wr, &DaemonMsg::Error("no prompt is pending".into())).await;
            }
            ClientMsg::Scan(uri) => {
                let Ok(guard) = slot.clone().try_lock_owned() else {
                    let _ = send(&mut wr, &DaemonMsg::Busy(BUSY_MESSAGE.into())).await;
                    continue;
                };
                let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
                let (ans_tx, ans_rx) = std_mpsc::channel();
                // Dropped when the client leaves, so a pending prompt ends at once.
                let mut ans_tx = Some(ans_tx);
                let (cancel_tx, cancel_rx) = watch::channel(false);
                let req = SessionRequest {
                    uri,
                    events: ev_tx.clone(),
                    approver: SocketApprover::new(ev_tx, ans_rx),
                    cancel: cancel_rx,
                };
                tracing::info!("session requested over the control socket");
                let mut session = tokio::spawn((runner)(req));
                let mut client_gone = false;
                let done = loop {
                    tokio::select! {
                        r = &mut session => break r.unwrap_or_else(|_| Done {
                            ok: false,
                            outcome: "internal".into(),
                            message: "the session task failed".into(),
                        }),
                        Some(ev) = ev_rx.recv() => {
                            if send(&mut wr, &ev).await.is_err() {
                                client_gone = true;
                                let _ = cancel_tx.send(true);
                            }
                        }
                        l = lines.next_line(), if !client_gone => match l {
                            Ok(Some(l)) => match ClientMsg::parse(&Zeroizing::new(l)) {
                                Ok(ClientMsg::Approve { approve, pin }) => {
                                    let a = if approve { Answer::Approve(pin) } else { Answer::Decline };
                                    if let Some(tx) = &ans_tx {
                                        let _ = tx.send(a);
                                    }
                                }
                                Ok(ClientMsg::Scan(_)) => {
                                    let _ = send(&mut wr, &DaemonMsg::Busy(BUSY_MESSAGE.into())).await;
                                }
                                Ok(ClientMsg::Ping) => {
                                    let _ = send(&mut wr, &DaemonMsg::Pong { version: env!("CARGO_PKG_VERSION").to_owned(), busy: true }).await;
                                }
                                Err(e) => { let _ = send(&mut wr, &DaemonMsg::Error(e)).await; }
                            },
                            _ => {
                                tracing::info!("control client went away; cancelling the session");
                                client_gone = true;
                                ans_tx = None;
                                let _ = cancel_tx.send(true);
                            }
                        },
                        _ = shutdown.changed() => {
                            ans_tx = None;
                            let _ = cancel_tx.send(true);
                        }
                    }
                };
                while let Ok(ev) = ev_rx.try_recv() {
                    let _ = send(&mut wr, &ev).await;
                }
                drop(guard);
                tracing::info!(outcome = %done.outcome, "session ended");
                let _ = send(&mut wr, &DaemonMsg::Done(done)).await;
                if client_gone {
                    return;
                }
            }
        }
    }
}

async fn send(wr: &mut tokio::net::unix::OwnedWriteHalf, msg: &DaemonMsg) -> std::io::Result<()> {
    let mut line = msg.to_line();
    line.push('\n');
    wr.write_all(line.as_bytes()).await?;
    wr.flush().await
}

/// A client connection (`hybridd scan`, `hybridd doctor`).
pub struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client { .. }")
    }
}

impl Client {
    /// Connects to the daemon's socket.
    pub async fn connect(path: &Path) -> std::io::Result<Client> {
        let s = UnixStream::connect(path).await?;
        let (rd, wr) = s.into_split();
        Ok(Client {
            lines: BufReader::new(rd).lines(),
            wr,
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> std::io::Result<()> {
        let mut line = Zeroizing::new(msg.to_line());
        line.push('\n');
        self.wr.write_all(line.as_bytes()).await?;
        self.wr.flush().await
    }

    /// Receives one message; `Ok(None)` at end of stream.
    pub async fn recv(&mut self) -> std::io::Result<Option<DaemonMsg>> {
        match self.lines.next_line().await? {
            None => Ok(None),
            Some(l) => DaemonMsg::parse(&l)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ClientMsg::parse(r#"{"ping": true}"#).unwrap(),
            ClientMsg::Ping
        ));
        assert!(ClientMsg::parse(r#"{"scan": 5}"#).is_err());
        assert!(ClientMsg::parse(r#"{"scan": "x", "extra": 1}"#).is_err());
        assert!(ClientMsg::parse(r#"{"hello": 1}"#).is_err());
        assert!(ClientMsg::parse("not json").is_err());
        // The PIN never shows in Debug.
        let dbg = format!(
            "{:?}",
            ClientMsg::parse(r#"{"approve": true, "pin": "8521"}"#).unwrap()
        );
        assert!(!dbg.contains("8521"));
    }

    #[test]
    fn daemon_messages_round_trip() {
        let msgs = [
            DaemonMsg::Event("tunnel_open".into()),
            DaemonMsg::Notice("wrong PIN".into()),
            DaemonMsg::Done(Done {
                ok: false,
                outcome: "declined".into(),
                message: "you declined".into(),
            }),
            DaemonMsg::Busy(BUSY_MESSAGE.into()),
            DaemonMsg::Error("x".into()),
            DaemonMsg::Pong {
                version: "1".into(),
                busy: true,
            },
            DaemonMsg::Prompt(
                json!({"action": "sign in", "rp_id": "example.com", "needs_pin": true}),
            ),
        ];
        for m in msgs {
            let line = m.to_line();
            assert_eq!(DaemonMsg::parse(&line).unwrap(), m, "{line}");
        }
        assert_eq!(
            DaemonMsg::Event("tunnel_open".into()).to_line(),
            r#"{"event":"tunnel_open"}"#
        );
        assert_eq!(
            DaemonMsg::Busy(BUSY_MESSAGE.into()).to_line(),
            r#"{"busy":"a session is already running"}"#
        );
    }

    #[test]
    fn only_the_same_uid_is_served() {
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(0, 1000));
        assert!(!peer_allowed(1001, 1000));
    }

    fn test_runner(hold: Arc<tokio::sync::Notify>) -> Runner {
        Arc::new(move |mut req: SessionRequest| {
            let hold = hold.clone();
            Box::pin(async move {
                let _ = req.events.send(DaemonMsg::Event("tunnel_open".into()));
                let uri = req.uri.to_string();
                let prompt = Prompt {
                    request: hybrid_ctap::ApprovalRequest {
                        command: hybrid_ctap::Command::GetAssertion,
                        rp_id: "example.com".into(),
                        rp_name: None,
                        user_name: None,
                        user_display_name: None,
                        uv_required: false,
                        qr_age_secs: None,
                    },
                    needs_pin: true,
                    notice: None,
                };
                let answer = tokio::task::spawn_blocking(move || {
                    req.approver.ask(&prompt, Duration::from_secs(5))
                })
                .await
                .unwrap();
                tokio::select! {
                    _ = hold.notified() => {}
                    _ = req.cancel.changed() => {}
                }
                Done {
                    ok: matches!(answer, Ok(Answer::Approve(Some(ref p))) if p.as_str() == "1234"),
                    outcome: "completed".into(),
                    message: uri,
                }
            }) as Pin<Box<dyn Future<Output = Done> + Send>>
        })
    }

    #[tokio::test]
    async fn scan_prompt_busy_done_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("control.sock");
        let listener = bind(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let hold = Arc::new(tokio::sync::Notify::new());
        let server = Server::new(listener, path.clone(), test_runner(hold.clone()));
        let (sd_tx, sd_rx) = watch::channel(false);
        let task = tokio::spawn(server.run(sd_rx));

        let mut a = Client::connect(&path).await.unwrap();
        a.send(&ClientMsg::Scan(Zeroizing::new("FIDO:/1".into())))
            .await
            .unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Some(DaemonMsg::Event("tunnel_open".into()))
        );
        let Some(DaemonMsg::Prompt(p)) = a.recv().await.unwrap() else {
            panic!("no prompt")
        };
        assert_eq!(p["action"], "sign in");

        // A second client while the first session runs: busy at once.
        let mut b = Client::connect(&path).await.unwrap();
        b.send(&ClientMsg::Scan(Zeroizing::new("FIDO:/2".into())))
            .await
            .unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Some(DaemonMsg::Busy(BUSY_MESSAGE.into()))
        );
        b.send(&ClientMsg::Ping).await.unwrap();
        assert!(matches!(
            b.recv().await.unwrap(),
            Some(DaemonMsg::Pong { busy: true, .. })
        ));

        a.send(&ClientMsg::Approve {
            approve: true,
            pin: Some(Zeroizing::new("1234".into())),
        })
        .await
        .unwrap();
        hold.notify_one();
        let Some(DaemonMsg::Done(d)) = a.recv().await.unwrap() else {
            panic!("no done")
        };
        assert!(d.ok);
        assert_eq!(d.message, "FIDO:/1");

        // Ready for the next one.
        b.send(&ClientMsg::Scan(Zeroizing::new("FIDO:/3".into())))
            .await
            .unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Some(DaemonMsg::Event("tunnel_open".into()))
        );
        // Client b disappears mid-session: the session is cancelled, the slot freed.
        drop(b);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = Client::connect(&path).await.unwrap();
        c.send(&ClientMsg::Ping).await.unwrap();
        let mut busy = true;
        for _ in 0..50 {
            if let Some(DaemonMsg::Pong { busy: b, .. }) = c.recv().await.unwrap() {
                busy = b;
            }
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.send(&ClientMsg::Ping).await.unwrap();
        }
        assert!(!busy, "slot not freed after the client left");

        sd_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(!path.exists(), "socket removed at shutdown");
    }
}
