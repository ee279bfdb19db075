//! Session locks and suspend from systemd-logind (`org.freedesktop.login1`,
//! system bus), as a stream of [`LogindEvent`]s the daemon selects on to
//! drop its vault session.
//!
//! "The session locks" is reported for either signal a desktop produces:
//! `org.freedesktop.login1.Session.Lock` on our session object (sent when
//! something calls `loginctl lock-session`, `LockSession(s)`, or an idle
//! policy locks) and the session's `LockedHint` property turning true
//! (`PropertiesChanged`; GNOME Shell, KDE's screen locker and Phosh set it
//! when their own lock screen comes up, without any `Lock` signal). "The
//! machine is about to suspend" is `Manager.PrepareForSleep(true)`.
//!
//! Which session is ours ([`SessionSelector::Auto`]): `XDG_SESSION_ID`, else
//! `Manager.GetSessionByPID(our pid)`, else the user's display session
//! (`User.Display`) — the last is what a `systemctl --user` service, which
//! belongs to no session, gets. Signals are matched on the session's real
//! object path (never on logind's `/session/auto` alias).

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

use crate::bus::within;
use crate::error::{detail, error_name, is_service_missing, DesktopError};

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait Manager {
    fn get_session(&self, session_id: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "GetSessionByPID")]
    fn get_session_by_pid(&self, pid: u32) -> zbus::Result<OwnedObjectPath>;

    fn get_user(&self, uid: u32) -> zbus::Result<OwnedObjectPath>;

    #[zbus(signal)]
    fn prepare_for_sleep(&self, start: bool) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.Session",
    default_service = "org.freedesktop.login1"
)]
trait Session {
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn locked_hint(&self) -> zbus::Result<bool>;

    #[zbus(signal)]
    fn lock(&self) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.login1.User",
    default_service = "org.freedesktop.login1"
)]
trait User {
    #[zbus(property)]
    fn display(&self) -> zbus::Result<(String, OwnedObjectPath)>;
}

/// Which login session to watch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionSelector {
    /// `XDG_SESSION_ID`, else the session of this process, else the user's
    /// display session.
    #[default]
    Auto,
    /// This session id (as `loginctl list-sessions` shows it).
    Id(String),
}

/// Something that must drop the vault session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogindEvent {
    /// The session was locked (`Session.Lock`, or `LockedHint` became true).
    SessionLocked,
    /// The machine is about to suspend or hibernate (`PrepareForSleep(true)`).
    PrepareForSleep,
}

/// Watches logind for [`LogindEvent`]s. Dropping it stops the watching.
#[derive(Debug)]
pub struct LogindWatcher {
    events: mpsc::Receiver<LogindEvent>,
    task: JoinHandle<()>,
    session_id: String,
    session_path: OwnedObjectPath,
    locked_at_start: bool,
}

impl LogindWatcher {
    /// Finds our session on `conn` (the system bus) and subscribes to its
    /// lock signals and to `PrepareForSleep`, all before `deadline`. Events
    /// that happen after this returns are delivered by [`LogindWatcher::next`].
    pub async fn start(
        conn: &Connection,
        selector: &SessionSelector,
        deadline: Instant,
    ) -> Result<Self, DesktopError> {
        let call_err = |what: &'static str| {
            move |e: zbus::Error| {
                if is_service_missing(&e) {
                    DesktopError::NoLogind { detail: detail(&e) }
                } else {
                    DesktopError::DBus {
                        what,
                        detail: detail(&e),
                    }
                }
            }
        };
        let manager = within(deadline, "connecting to logind", async {
            ManagerProxy::builder(conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })
        .await?
        .map_err(call_err("connecting to logind"))?;
        let session_path = find_session(conn, &manager, selector, deadline).await?;
        let session = within(deadline, "connecting to the logind session", async {
            SessionProxy::builder(conn)
                .path(session_path.clone())?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })
        .await?
        .map_err(call_err("connecting to the logind session"))?;

        // Subscribe first, then read the state: nothing can fall in between.
        let sleep = within(
            deadline,
            "subscribing to PrepareForSleep",
            manager.receive_prepare_for_sleep(),
        )
        .await?
        .map_err(call_err("subscribing to PrepareForSleep"))?;
        let lock = within(
            deadline,
            "subscribing to Session.Lock",
            session.receive_lock(),
        )
        .await?
        .map_err(call_err("subscribing to Session.Lock"))?;
        let props = within(deadline, "subscribing to the session's properties", async {
            zbus::fdo::PropertiesProxy::builder(conn)
                .destination("org.freedesktop.login1")?
                .path(session_path.clone())?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })
        .await?
        .map_err(call_err("subscribing to the session's properties"))?;
        let props = within(
            deadline,
            "subscribing to the session's properties",
            props.receive_properties_changed(),
        )
        .await?
        .map_err(call_err("subscribing to the session's properties"))?;

        let session_id = within(deadline, "reading the session id", session.id())
            .await?
            .map_err(call_err("reading the session id"))?;
        let locked_at_start = within(deadline, "reading LockedHint", session.locked_hint())
            .await?
            .unwrap_or(false);

        let (tx, events) = mpsc::channel(16);
        let task = tokio::spawn(forward(sleep, lock, props, tx));
        tracing::debug!(session = %session_id, path = %session_path.as_str(), "watching logind");
        Ok(LogindWatcher {
            events,
            task,
            session_id,
            session_path,
            locked_at_start,
        })
    }

    /// The next event; `None` once logind's signals can no longer arrive
    /// (the bus connection closed). Cancel-safe: use it in `select!`.
    pub async fn next(&mut self) -> Option<LogindEvent> {
        self.events.recv().await
    }

    /// The watched session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The watched session's object path.
    pub fn session_path(&self) -> &str {
        self.session_path.as_str()
    }

    /// Whether the session was already locked (`LockedHint`) when watching began.
    pub fn locked_at_start(&self) -> bool {
        self.locked_at_start
    }
}

impl Drop for LogindWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    mut sleep: PrepareForSleepStream,
    mut lock: LockStream,
    mut props: zbus::fdo::PropertiesChangedStream,
    tx: mpsc::Sender<LogindEvent>,
) {
    loop {
        let event = tokio::select! {
            s = sleep.next() => match s {
                Some(signal) => match signal.args() {
                    Ok(args) if args.start => LogindEvent::PrepareForSleep,
                    _ => continue, // resume (false), or malformed
                },
                None => return,
            },
            l = lock.next() => match l {
                Some(_) => LogindEvent::SessionLocked,
                None => return,
            },
            p = props.next() => match p {
                Some(signal) => {
                    let Ok(args) = signal.args() else { continue };
                    if args.interface_name.as_str() != "org.freedesktop.login1.Session" {
                        continue;
                    }
                    let locked = args
                        .changed_properties
                        .get("LockedHint")
                        .and_then(|v| bool::try_from(v).ok());
                    if locked != Some(true) {
                        continue;
                    }
                    LogindEvent::SessionLocked
                }
                None => return,
            },
        };
        tracing::info!(?event, "logind");
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

async fn find_session(
    conn: &Connection,
    manager: &ManagerProxy<'static>,
    selector: &SessionSelector,
    deadline: Instant,
) -> Result<OwnedObjectPath, DesktopError> {
    let mut tried = Vec::new();
    let by_id = |id: String| async move {
        within(deadline, "GetSession on logind", manager.get_session(&id)).await
    };
    let env_id;
    let id = match selector {
        SessionSelector::Id(id) => Some(id.clone()),
        SessionSelector::Auto => {
            env_id = std::env::var("XDG_SESSION_ID")
                .ok()
                .filter(|s| !s.is_empty());
            env_id.clone()
        }
    };
    if let Some(id) = id {
        match by_id(id.clone()).await? {
            Ok(p) => return Ok(p),
            Err(e) if is_service_missing(&e) => {
                return Err(DesktopError::NoLogind { detail: detail(&e) })
            }
            Err(e) if matches!(selector, SessionSelector::Id(_)) => {
                return Err(DesktopError::NoLoginSession {
                    detail: format!("session {id}: {}", detail(&e)),
                })
            }
            Err(e) => tried.push(format!("XDG_SESSION_ID={id}: {}", detail(&e))),
        }
    }
    match within(
        deadline,
        "GetSessionByPID on logind",
        manager.get_session_by_pid(std::process::id()),
    )
    .await?
    {
        Ok(p) => return Ok(p),
        Err(e) if is_service_missing(&e) => {
            return Err(DesktopError::NoLogind { detail: detail(&e) })
        }
        Err(e) => tried.push(format!("this process: {}", short(&e))),
    }
    let uid = rustix::process::getuid().as_raw();
    let user_path = match within(deadline, "GetUser on logind", manager.get_user(uid)).await? {
        Ok(p) => p,
        Err(e) => {
            tried.push(format!("user {uid}: {}", short(&e)));
            return Err(DesktopError::NoLoginSession {
                detail: tried.join("; "),
            });
        }
    };
    let user = within(deadline, "reading the user's display session", async {
        UserProxy::builder(conn)
            .path(user_path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
    })
    .await?
    .map_err(|e| DesktopError::DBus {
        what: "reading the user's display session",
        detail: detail(&e),
    })?;
    match within(
        deadline,
        "reading the user's display session",
        user.display(),
    )
    .await?
    {
        Ok((id, path)) if !id.is_empty() && path.as_str() != "/" => Ok(path),
        Ok(_) => {
            tried.push(format!("user {uid}: no display session"));
            Err(DesktopError::NoLoginSession {
                detail: tried.join("; "),
            })
        }
        Err(e) => {
            tried.push(format!("user {uid}: {}", short(&e)));
            Err(DesktopError::NoLoginSession {
                detail: tried.join("; "),
            })
        }
    }
}

fn short(e: &zbus::Error) -> String {
    error_name(e).unwrap_or_else(|| e.to_string())
}
