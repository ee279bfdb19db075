//! The control socket's server: bind (directory 0700, socket 0600, stale
//! socket replaced), accept, check the peer's uid, and serve one session at
//! a time — relaying its messages to the client and the client's approvals
//! to the session's [`SocketApprover`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use crate::approval::{Answer, SocketApprover};
use crate::control::client::private_dir_problem;
use crate::control::lines::{write_line, write_lines, LineReader};
use crate::control::protocol::{ClientMsg, DaemonMsg, Done, Pong, ScanMode};
use crate::control::{
    ProtocolError, BUSY_MESSAGE, MAX_CONNECTIONS, MAX_LINE, TOO_MANY_CONNECTIONS,
};
use crate::BoxFuture;

/// After an overlong line: at most this much more of it is read (and
/// dropped) before the refusal is sent and the connection closed …
const SKIP_LIMIT: usize = 1 << 20;
/// … within this time.
const SKIP_TIME: Duration = Duration::from_secs(1);

/// What the connection hands the session runner.
pub struct SessionRequest {
    /// The QR URI (secret: never log it).
    pub uri: Zeroizing<String>,
    /// Messages for the client, in order: progress, prompts, notices.
    pub events: mpsc::UnboundedSender<DaemonMsg>,
    /// The front-end talking to this client.
    pub approver: SocketApprover,
    /// Becomes `true` when the session must stop (client gone, shutdown).
    pub cancel: watch::Receiver<bool>,
    /// Whether the client can ask on a terminal (`false`: `{"terminal":
    /// false}`, the daemon asks through the desktop).
    pub terminal: bool,
}

impl std::fmt::Debug for SessionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionRequest { .. }")
    }
}

/// The session runner the daemon plugs in.
pub type Runner = Arc<dyn Fn(SessionRequest) -> BoxFuture<'static, Done> + Send + Sync>;

/// The vault session's controls the daemon plugs in (`hybridd unlock`,
/// `hybridd lock`, and its state in `pong`).
pub trait VaultSessions: Send + Sync {
    /// Opens the vault session with `pin` (or one asked through pinentry).
    fn unlock(&self, pin: Option<Zeroizing<String>>) -> BoxFuture<'_, Done>;
    /// Ends the vault session.
    fn lock(&self) -> BoxFuture<'_, Done>;
    /// Whether a vault session is open.
    fn is_open(&self) -> BoxFuture<'_, bool>;
}

/// The answer to `unlock`/`lock` from a daemon without vault sessions.
fn no_sessions() -> DaemonMsg {
    DaemonMsg::Error(
        "this daemon keeps no vault session: set verify = \"fingerprint\" in config.toml".into(),
    )
}

/// Whether a peer with `peer_uid` may use the daemon of `our_uid`: only the same user.
pub fn peer_allowed(peer_uid: u32, our_uid: u32) -> bool {
    peer_uid == our_uid
}

/// Creates the socket's directory (0700, refusing one others can access or
/// that someone else owns) and binds the socket (0600), replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if let Some(problem) = private_dir_problem(&meta, crate::config::current_uid()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "socket directory {} {problem}; it must be a directory owned by you with \
                 mode 0700 (fix: chmod 700 {0})",
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
    sessions: Option<Arc<dyn VaultSessions>>,
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
            sessions: None,
            slot: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Serves `unlock` and `lock` with `sessions`.
    pub fn with_vault_sessions(mut self, sessions: Arc<dyn VaultSessions>) -> Self {
        self.sessions = Some(sessions);
        self
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
                        // Finished connections free their place first.
                        while conns.try_join_next().is_some() {}
                        if conns.len() >= MAX_CONNECTIONS {
                            refuse_busy(&stream);
                            continue;
                        }
                        let conn = Connection {
                            runner: self.runner.clone(),
                            sessions: self.sessions.clone(),
                            slot: self.slot.clone(),
                            shutdown: shutdown.clone(),
                        };
                        conns.spawn(conn.serve(stream, our_uid));
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

/// One client connection.
struct Connection {
    runner: Runner,
    sessions: Option<Arc<dyn VaultSessions>>,
    slot: Arc<tokio::sync::Mutex<()>>,
    shutdown: watch::Receiver<bool>,
}

type Lines = LineReader<OwnedReadHalf>;

fn pong(busy: bool, vault_session: bool) -> DaemonMsg {
    DaemonMsg::Pong(Pong {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        busy,
        vault_session,
    })
}

impl Connection {
    /// Serves one connection until it ends, then closes it. The write half
    /// is not shut down on its own first (tokio's default when it drops):
    /// `close` alone tells the client the same, and the `shutdown` cost a
    /// system call and a wake-up of the client per ceremony
    /// (docs/performance.md, "Phone: fourteenth round").
    async fn serve(self, stream: UnixStream, our_uid: u32) {
        let (rd, mut wr) = stream.into_split();
        self.serve_on(rd, &mut wr, our_uid).await;
        wr.forget();
    }

    async fn serve_on(mut self, rd: OwnedReadHalf, wr: &mut OwnedWriteHalf, our_uid: u32) {
        match wr.as_ref().peer_cred().map(|c| c.uid()) {
            Ok(uid) if peer_allowed(uid, our_uid) => {}
            Ok(uid) => {
                tracing::warn!(
                    peer_uid = uid,
                    "refused control connection from another user"
                );
                let refusal = DaemonMsg::Error("permission denied: not the daemon's user".into());
                let _ = send(wr, &refusal).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the control peer's credentials");
                return;
            }
        }
        let mut lines = LineReader::new(rd, MAX_LINE);
        loop {
            let line = tokio::select! {
                _ = self.shutdown.changed() => return,
                l = lines.next_line() => l,
            };
            let msg = match line {
                Ok(Some(l)) => ClientMsg::parse(&l),
                Ok(None) => return,
                Err(e) => {
                    if matches!(e, ProtocolError::LineTooLong) {
                        // Read past the rest of the line (bounded, nothing
                        // kept) so the client sees the refusal rather than
                        // a reset, then close.
                        let skip = lines.skip_line(SKIP_LIMIT);
                        let _ = tokio::time::timeout(SKIP_TIME, skip).await;
                    }
                    let _ = send(wr, &DaemonMsg::Error(e.to_string())).await;
                    return;
                }
            };
            let (reply, last) = match msg {
                Err(e) => (DaemonMsg::Error(e.to_string()), false),
                Ok(ClientMsg::Ping) => {
                    let open = match &self.sessions {
                        Some(s) => s.is_open().await,
                        None => false,
                    };
                    (pong(self.slot.try_lock().is_err(), open), false)
                }
                Ok(ClientMsg::Unlock(pin)) => match &self.sessions {
                    Some(s) => (DaemonMsg::Done(s.unlock(pin).await), false),
                    None => (no_sessions(), false),
                },
                Ok(ClientMsg::Lock) => match &self.sessions {
                    Some(s) => (DaemonMsg::Done(s.lock().await), false),
                    None => (no_sessions(), false),
                },
                Ok(ClientMsg::Approve { .. }) => {
                    (DaemonMsg::Error("no prompt is pending".into()), false)
                }
                Ok(ClientMsg::Scan(uri)) => {
                    self.scan(uri, ScanMode::Terminal, &mut lines, wr).await
                }
                Ok(ClientMsg::DesktopScan(uri)) => {
                    self.scan(uri, ScanMode::Desktop, &mut lines, wr).await
                }
                Ok(ClientMsg::HandOff(uri)) => {
                    self.scan(uri, ScanMode::HandOff, &mut lines, wr).await
                }
            };
            if send(wr, &reply).await.is_err() || last {
                return;
            }
        }
    }
}

impl Connection {
    /// The reply to a scan: how its session ended, or busy when another
    /// session holds the slot; and whether the connection ends with it.
    ///
    /// A session's `done` is the connection's last line: the daemon closes
    /// it at once instead of waiting for the client to (every client leaves
    /// after `done`, and waiting cost the daemon a wake-up per ceremony;
    /// docs/performance.md, "Phone: thirteenth round"). After `busy` the
    /// client may ask again on the same connection.
    async fn scan(
        &mut self,
        uri: Zeroizing<String>,
        mode: ScanMode,
        lines: &mut Lines,
        wr: &mut OwnedWriteHalf,
    ) -> (DaemonMsg, bool) {
        match self.session(uri, mode, lines, wr).await {
            Some(done) => (DaemonMsg::Done(done), true),
            None => (DaemonMsg::Busy(BUSY_MESSAGE.into()), false),
        }
    }

    /// Runs one session for `uri`, relaying its messages and the client's
    /// answers; returns how it ended, or `None` when another session holds
    /// the slot.
    async fn session(
        &mut self,
        uri: Zeroizing<String>,
        mode: ScanMode,
        lines: &mut Lines,
        wr: &mut OwnedWriteHalf,
    ) -> Option<Done> {
        let terminal = mode == ScanMode::Terminal;
        let detached = mode == ScanMode::HandOff;
        let guard = self.slot.clone().try_lock_owned().ok()?;
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let (ans_tx, ans_rx) = mpsc::unbounded_channel();
        // Dropped when the client leaves, so a pending prompt ends at once.
        let mut ans_tx = Some(ans_tx);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let req = SessionRequest {
            uri,
            events: ev_tx.clone(),
            approver: SocketApprover::new(ev_tx, ans_rx),
            cancel: cancel_rx,
            terminal,
        };
        // The ceremony logs its own start and end at info ("phone session
        // started", "phone session ended" or "phone session refused", with
        // the outcome): one line at each end of a ceremony in the journal.
        // Which connection asked, and how it ended here, are for debugging.
        tracing::debug!(
            terminal,
            detached,
            "session requested over the control socket"
        );
        let mut session = tokio::spawn((self.runner)(req));
        let mut gone = false;
        let cancel = |ans_tx: &mut Option<mpsc::UnboundedSender<Answer>>| {
            *ans_tx = None;
            let _ = cancel_tx.send(true);
        };
        // A detached client's leaving ends nothing: the desktop asks.
        let client_left = |ans_tx: &mut Option<mpsc::UnboundedSender<Answer>>| {
            if detached {
                // Nobody can answer over this connection any more.
                *ans_tx = None;
                tracing::info!("the client handed the session over and left");
            } else {
                tracing::info!("control client went away; cancelling the session");
                cancel(ans_tx);
            }
        };
        let done = loop {
            tokio::select! {
                r = &mut session => break r.unwrap_or_else(|e| {
                    // The ceremony never got to log this one itself.
                    tracing::warn!("the session task failed: {e}");
                    Done {
                        ok: false,
                        outcome: "internal".into(),
                        message: "the session task failed".into(),
                    }
                }),
                Some(ev) = ev_rx.recv() => {
                    if !gone && send_queued(wr, ev, &mut ev_rx).await.is_err() {
                        gone = true;
                        client_left(&mut ans_tx);
                    }
                }
                l = lines.next_line(), if !gone => {
                    let reply = match l.map(|l| l.map(|l| ClientMsg::parse(&l))) {
                        Ok(Some(Ok(ClientMsg::Approve { approve, pin }))) => {
                            let answer = if approve { Answer::Approve(pin) } else { Answer::Decline };
                            if let Some(tx) = &ans_tx {
                                let _ = tx.send(answer);
                            }
                            None
                        }
                        Ok(Some(Ok(
                            ClientMsg::Scan(_) | ClientMsg::DesktopScan(_) | ClientMsg::HandOff(_),
                        ))) => {
                            Some(DaemonMsg::Busy(BUSY_MESSAGE.into()))
                        }
                        Ok(Some(Ok(ClientMsg::Ping))) => Some(pong(true, false)),
                        Ok(Some(Ok(ClientMsg::Unlock(_) | ClientMsg::Lock))) => Some(DaemonMsg::Error(
                            "unlock and lock go on a connection of their own".into(),
                        )),
                        Ok(Some(Err(e))) => Some(DaemonMsg::Error(e.to_string())),
                        Ok(None) | Err(_) => {
                            gone = true;
                            client_left(&mut ans_tx);
                            None
                        }
                    };
                    if let Some(reply) = reply {
                        let _ = send(wr, &reply).await;
                    }
                }
                _ = self.shutdown.changed() => cancel(&mut ans_tx),
            }
        };
        if let Ok(ev) = ev_rx.try_recv() {
            let _ = send_queued(wr, ev, &mut ev_rx).await;
        }
        drop(guard);
        tracing::debug!(outcome = %done.outcome, "session ended");
        Some(done)
    }
}

/// Answers a connection over [`MAX_CONNECTIONS`] without waiting for it
/// (one short line into an empty socket buffer) and drops it.
fn refuse_busy(stream: &UnixStream) {
    tracing::warn!(
        limit = MAX_CONNECTIONS,
        "refused a control connection: too many open"
    );
    let line = DaemonMsg::Error(TOO_MANY_CONNECTIONS.into()).to_line();
    let _ = stream.try_write(format!("{}\n", line.as_str()).as_bytes());
}

async fn send(wr: &mut OwnedWriteHalf, msg: &DaemonMsg) -> std::io::Result<()> {
    write_line(wr, &msg.to_line()).await
}

/// Sends `first` and every message already queued behind it in one write:
/// the driver often has two ready at once (the tunnel open and the advert
/// started, `docs/performance.md`, "Phone: sixth round"). Order is kept.
async fn send_queued(
    wr: &mut OwnedWriteHalf,
    first: DaemonMsg,
    queued: &mut mpsc::UnboundedReceiver<DaemonMsg>,
) -> std::io::Result<()> {
    let mut lines = vec![first.to_line()];
    while let Ok(next) = queued.try_recv() {
        lines.push(next.to_line());
    }
    write_lines(wr, &lines).await
}

#[cfg(test)]
mod tests;
