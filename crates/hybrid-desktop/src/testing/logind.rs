//! A fake `org.freedesktop.login1` for the logind watcher's tests.
//!
//! It has the objects, names and signatures of systemd-logind's D-Bus API
//! (org.freedesktop.login1(5)) that the watcher uses: the manager at
//! `/org/freedesktop/login1` (`GetSession`, `GetSessionByPID`, `GetUser`,
//! signal `PrepareForSleep(b)`), two sessions (ours and another user's,
//! whose object paths are escaped as logind escapes them: `_3` + hex for a
//! leading digit) with property `LockedHint` and signals `Lock`/`Unlock`,
//! and the user object with property `Display`.

use std::collections::HashSet;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::HarnessError;

const MANAGER_PATH: &str = "/org/freedesktop/login1";

/// Which session ids and processes the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLogindOptions {
    /// Our session's id.
    pub session_id: String,
    /// Processes `GetSessionByPID` places in our session.
    pub session_pids: Vec<u32>,
    /// Whether `User.Display` names our session (a graphical login).
    pub user_display: bool,
    /// The uid whose user object exists.
    pub uid: u32,
}

impl Default for FakeLogindOptions {
    fn default() -> Self {
        FakeLogindOptions {
            session_id: "2".to_owned(),
            session_pids: Vec::new(),
            user_display: true,
            uid: rustix::process::getuid().as_raw(),
        }
    }
}

/// logind's object-path escaping of a label (`bus_label_escape`): `[A-Za-z0-9]`
/// stay, except a leading digit; everything else is `_` + two hex digits.
fn escape_label(s: &str) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn session_path(id: &str) -> String {
    format!("{MANAGER_PATH}/session/{}", escape_label(id))
}

fn user_path(uid: u32) -> String {
    format!("{MANAGER_PATH}/user/_{uid}")
}

fn path(p: &str) -> zbus::fdo::Result<OwnedObjectPath> {
    OwnedObjectPath::try_from(p.to_owned()).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
}

/// logind's error replies (names as systemd-logind sends them).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.login1")]
enum LoginError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchSession(String),
    #[zbus(name = "NoSessionForPID")]
    NoSessionForPid(String),
    NoSuchUser(String),
}

impl From<zbus::fdo::Error> for LoginError {
    fn from(e: zbus::fdo::Error) -> Self {
        LoginError::ZBus(e.into())
    }
}

struct Manager {
    sessions: HashSet<String>,
    session_id: String,
    pids: Vec<u32>,
    uid: u32,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Manager {
    fn get_session(&self, session_id: String) -> Result<OwnedObjectPath, LoginError> {
        if self.sessions.contains(&session_id) {
            Ok(path(&session_path(&session_id))?)
        } else {
            Err(LoginError::NoSuchSession(format!(
                "No session '{session_id}' known"
            )))
        }
    }

    #[zbus(name = "GetSessionByPID")]
    fn get_session_by_pid(&self, pid: u32) -> Result<OwnedObjectPath, LoginError> {
        if self.pids.contains(&pid) {
            Ok(path(&session_path(&self.session_id))?)
        } else {
            Err(LoginError::NoSessionForPid(format!(
                "PID {pid} does not belong to any known session"
            )))
        }
    }

    fn get_user(&self, uid: u32) -> Result<OwnedObjectPath, LoginError> {
        if uid == self.uid {
            Ok(path(&user_path(uid))?)
        } else {
            Err(LoginError::NoSuchUser(format!(
                "User ID {uid} is not logged in"
            )))
        }
    }

    #[zbus(signal)]
    async fn prepare_for_sleep(emitter: &SignalEmitter<'_>, start: bool) -> zbus::Result<()>;
}

struct Session {
    id: String,
    locked_hint: bool,
}

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl Session {
    #[zbus(property)]
    fn id(&self) -> String {
        self.id.clone()
    }

    #[zbus(property)]
    fn locked_hint(&self) -> bool {
        self.locked_hint
    }

    #[zbus(signal)]
    async fn lock(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn unlock(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;
}

struct User {
    display: Option<(String, String)>,
}

#[zbus::interface(name = "org.freedesktop.login1.User")]
impl User {
    #[zbus(property)]
    fn display(&self) -> zbus::fdo::Result<(String, OwnedObjectPath)> {
        match &self.display {
            Some((id, p)) => Ok((id.clone(), path(p)?)),
            None => Ok((String::new(), path("/")?)),
        }
    }
}

/// The fake logind, serving on a private bus until dropped.
#[derive(Debug)]
pub struct FakeLogind {
    conn: zbus::Connection,
    session: String,
    other: String,
}

/// The id of the fake's second session, which belongs to someone else.
pub const OTHER_SESSION_ID: &str = "c7";

impl FakeLogind {
    /// Serves the fake on `bus_address`.
    pub async fn start(
        bus_address: &str,
        options: FakeLogindOptions,
    ) -> Result<Self, HarnessError> {
        let fail = |e: zbus::Error| HarnessError::Failed(format!("fake logind: {e}"));
        let ours = session_path(&options.session_id);
        let other = session_path(OTHER_SESSION_ID);
        let manager = Manager {
            sessions: [options.session_id.clone(), OTHER_SESSION_ID.to_owned()]
                .into_iter()
                .collect(),
            session_id: options.session_id.clone(),
            pids: options.session_pids.clone(),
            uid: options.uid,
        };
        let user = User {
            display: options
                .user_display
                .then(|| (options.session_id.clone(), ours.clone())),
        };
        let conn = zbus::connection::Builder::address(bus_address)
            .map_err(fail)?
            .serve_at(MANAGER_PATH, manager)
            .map_err(fail)?
            .serve_at(
                ours.as_str(),
                Session {
                    id: options.session_id.clone(),
                    locked_hint: false,
                },
            )
            .map_err(fail)?
            .serve_at(
                other.as_str(),
                Session {
                    id: OTHER_SESSION_ID.to_owned(),
                    locked_hint: false,
                },
            )
            .map_err(fail)?
            .serve_at(user_path(options.uid).as_str(), user)
            .map_err(fail)?
            .name("org.freedesktop.login1")
            .map_err(fail)?
            .build()
            .await
            .map_err(fail)?;
        Ok(FakeLogind {
            conn,
            session: ours,
            other,
        })
    }

    /// Our session's object path.
    pub fn session_path(&self) -> &str {
        &self.session
    }

    async fn emitter(&self, p: &str) -> Result<SignalEmitter<'static>, HarnessError> {
        let op =
            ObjectPath::try_from(p.to_owned()).map_err(|e| HarnessError::Failed(e.to_string()))?;
        SignalEmitter::new(&self.conn, op).map_err(|e| HarnessError::Failed(e.to_string()))
    }

    /// Emits `Session.Lock` on our session (what `loginctl lock-session` does).
    pub async fn lock(&self) -> Result<(), HarnessError> {
        let e = self.emitter(&self.session).await?;
        Session::lock(&e)
            .await
            .map_err(|e| HarnessError::Failed(e.to_string()))
    }

    /// Emits `Session.Lock` on the other session.
    pub async fn lock_other_session(&self) -> Result<(), HarnessError> {
        let e = self.emitter(&self.other).await?;
        Session::lock(&e)
            .await
            .map_err(|e| HarnessError::Failed(e.to_string()))
    }

    /// Emits `Session.Unlock` on our session.
    pub async fn unlock(&self) -> Result<(), HarnessError> {
        let e = self.emitter(&self.session).await?;
        Session::unlock(&e)
            .await
            .map_err(|e| HarnessError::Failed(e.to_string()))
    }

    /// Sets our session's `LockedHint` (a desktop's lock screen coming up
    /// or going away), with its `PropertiesChanged`.
    pub async fn set_locked_hint(&self, locked: bool) -> Result<(), HarnessError> {
        let fail = |e: zbus::Error| HarnessError::Failed(format!("LockedHint: {e}"));
        let iface = self
            .conn
            .object_server()
            .interface::<_, Session>(self.session.as_str())
            .await
            .map_err(fail)?;
        iface.get_mut().await.locked_hint = locked;
        let session = iface.get().await;
        let sent = session.locked_hint_changed(iface.signal_emitter()).await;
        drop(session);
        sent.map_err(fail)
    }

    /// Emits `Manager.PrepareForSleep(start)`.
    pub async fn prepare_for_sleep(&self, start: bool) -> Result<(), HarnessError> {
        let e = self.emitter(MANAGER_PATH).await?;
        Manager::prepare_for_sleep(&e, start)
            .await
            .map_err(|e| HarnessError::Failed(e.to_string()))
    }
}
