//! Consent through a desktop notification (`org.freedesktop.Notifications`,
//! Desktop Notifications Specification 1.2, on the session bus).
//!
//! [`Notifier::connect`] insists on the `actions` capability: a server that
//! cannot show buttons, or no server at all, is an error naming the fix, and
//! the caller declines. [`Notifier::ask`] subscribes to `ActionInvoked` and
//! `NotificationClosed` *before* calling `Notify` (so no answer can slip by
//! in between), then shows the request with two actions, Approve and Deny
//! (stable keys [`ACTION_APPROVE`], [`ACTION_DENY`]; no `default` action, so
//! a click on the bubble itself never approves), critical urgency, category
//! [`CATEGORY`] and `expire_timeout` = the time left to the deadline.
//! [`PendingConsent::wait`] returns the first of: an action on **our**
//! notification id, sent by the server that showed it (others' signals, and
//! anyone else's, are ignored), its closing (dismissed, expired, closed),
//! or the deadline — after which the notification is closed, since
//! some servers (GNOME Shell) ignore `expire_timeout`. Only
//! [`Consent::Approved`] is an approval.
//!
//! Summary and body are taken **already rendered**: peer strings must go
//! through hybridd's one sanitizer first. [`ServerInfo::body_markup`] says
//! whether the server parses the body as markup (capability `body-markup`),
//! so the caller knows to escape `&`, `<` and `>` there.

use std::collections::HashMap;

use futures_util::StreamExt;
use tokio::time::Instant;
use zbus::zvariant::Value;
use zbus::Connection;

use crate::bus::{name_owner, sent_by, within};
use crate::error::{detail, is_service_missing, DesktopError};

/// The action key of the Approve button (never shown; the label is).
pub const ACTION_APPROVE: &str = "hybridd-approve";
/// The action key of the Deny button.
pub const ACTION_DENY: &str = "hybridd-deny";
/// The notification category: vendor-specific, in the spec's
/// `x-vendor.class.name` form (spec "Categories").
pub const CATEGORY: &str = "x-hybridd.passkey.request";
/// The `desktop-entry` hint: hybridd's desktop file (`dist/hybridd.desktop`).
pub const DESKTOP_ENTRY: &str = "hybridd";
/// The `app_name` shown by servers.
pub const APP_NAME: &str = "hybridd";
/// `urgency` hint value for "critical" (spec "Urgency Levels").
const URGENCY_CRITICAL: u8 = 2;

/// The notification server's bus name (and interface).
const NOTIFICATIONS: &str = "org.freedesktop.Notifications";

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    fn get_capabilities(&self) -> zbus::Result<Vec<String>>;

    fn get_server_information(&self) -> zbus::Result<(String, String, String, String)>;

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;

    fn close_notification(&self, id: u32) -> zbus::Result<()>;

    #[zbus(signal)]
    fn action_invoked(&self, id: u32, action_key: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn notification_closed(&self, id: u32, reason: u32) -> zbus::Result<()>;
}

/// What the notification server said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Product name, e.g. `dunst`, `gnome-shell`.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Server version.
    pub version: String,
    /// The specification version it implements.
    pub spec_version: String,
    /// `GetCapabilities`.
    pub capabilities: Vec<String>,
}

impl ServerInfo {
    /// Whether the server reports capability `cap`.
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }

    /// Whether the body is parsed as markup (`body-markup`): then `&`, `<`
    /// and `>` in it must be escaped as entities by the caller's sanitizer.
    pub fn body_markup(&self) -> bool {
        self.has("body-markup")
    }

    /// Whether Approve/Deny buttons can be shown (`actions`).
    pub fn actions(&self) -> bool {
        self.has("actions")
    }
}

/// A request for consent, already rendered for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentRequest<'a> {
    /// The one-line summary, e.g. "Sign in to example.com?".
    pub summary: &'a str,
    /// The body: account, action, QR age. Escaped for markup by the caller
    /// when [`ServerInfo::body_markup`].
    pub body: &'a str,
    /// The Approve button's label.
    pub approve_label: &'a str,
    /// The Deny button's label.
    pub deny_label: &'a str,
    /// An icon name (freedesktop icon naming) or `""`.
    pub app_icon: &'a str,
}

impl<'a> ConsentRequest<'a> {
    /// Summary and body with the labels "Approve" and "Deny".
    pub fn new(summary: &'a str, body: &'a str) -> Self {
        ConsentRequest {
            summary,
            body,
            approve_label: "Approve",
            deny_label: "Deny",
            app_icon: "dialog-password",
        }
    }
}

/// How a consent notification ended. Only [`Consent::Approved`] approves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// The person chose Approve.
    Approved,
    /// The person chose Deny.
    Denied,
    /// The person dismissed the notification (`NotificationClosed` reason 2).
    Dismissed,
    /// The server let it expire (reason 1).
    Expired,
    /// It was closed by a `CloseNotification` call or for an undefined
    /// reason (reasons 3 and 4), or the server vanished.
    Closed,
    /// The deadline passed first; we closed it.
    TimedOut,
}

impl Consent {
    /// True only for [`Consent::Approved`].
    pub fn is_approved(self) -> bool {
        self == Consent::Approved
    }
}

/// `NotificationClosed` reasons (spec "org.freedesktop.Notifications.NotificationClosed").
fn closed_reason(reason: u32) -> Consent {
    match reason {
        1 => Consent::Expired,
        2 => Consent::Dismissed,
        _ => Consent::Closed,
    }
}

/// A failed call to the server: "no server" when nobody owns the name.
fn server_error(what: &'static str) -> impl Fn(zbus::Error) -> DesktopError + Copy {
    move |e| {
        if is_service_missing(&e) {
            DesktopError::NoNotificationServer { detail: detail(&e) }
        } else {
            DesktopError::DBus {
                what,
                detail: detail(&e),
            }
        }
    }
}

/// How long closing a notification may take once the answer is known.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The session bus's notification server, checked to support actions.
#[derive(Debug, Clone)]
pub struct Notifier {
    proxy: NotificationsProxy<'static>,
    server: ServerInfo,
}

impl Notifier {
    /// Finds the server on `conn` (the session bus) and checks that it can
    /// show actions; both calls must finish before `deadline`.
    pub async fn connect(conn: &Connection, deadline: Instant) -> Result<Self, DesktopError> {
        let proxy = within(deadline, "connecting to the notification server", async {
            NotificationsProxy::builder(conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })
        .await?
        .map_err(|e| DesktopError::DBus {
            what: "connecting to the notification server",
            detail: detail(&e),
        })?;
        let missing = server_error("asking the notification server");
        let capabilities = within(
            deadline,
            "GetCapabilities on the notification server",
            proxy.get_capabilities(),
        )
        .await?
        .map_err(missing)?;
        let (name, vendor, version, spec_version) = within(
            deadline,
            "GetServerInformation on the notification server",
            proxy.get_server_information(),
        )
        .await?
        .map_err(missing)?;
        let server = ServerInfo {
            name,
            vendor,
            version,
            spec_version,
            capabilities,
        };
        if !server.actions() {
            return Err(DesktopError::NotificationsWithoutActions {
                server: format!("{} {}", server.name, server.version),
            });
        }
        tracing::debug!(server = %server.name, version = %server.version, "notification server");
        Ok(Notifier { proxy, server })
    }

    /// What the server reported at [`Notifier::connect`].
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// Shows `request` until `deadline` and returns the pending answer.
    /// The signals are subscribed to before the notification exists.
    pub async fn ask(
        &self,
        request: &ConsentRequest<'_>,
        deadline: Instant,
    ) -> Result<PendingConsent, DesktopError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DesktopError::Timeout {
                what: "showing the notification",
            });
        }
        let subscribe_err = |e: zbus::Error| DesktopError::DBus {
            what: "subscribing to notification signals",
            detail: detail(&e),
        };
        let actions = within(
            deadline,
            "subscribing to notification signals",
            self.proxy.receive_action_invoked(),
        )
        .await?
        .map_err(subscribe_err)?;
        let closed = within(
            deadline,
            "subscribing to notification signals",
            self.proxy.receive_notification_closed(),
        )
        .await?
        .map_err(subscribe_err)?;

        // Whose signals count: the server's unique name, now (a server that
        // restarts mid-request can no longer answer it).
        let server = within(
            deadline,
            "finding the notification server",
            name_owner(self.proxy.inner().connection(), NOTIFICATIONS),
        )
        .await?
        .map_err(server_error("finding the notification server"))?;

        let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
        hints.insert("urgency", Value::U8(URGENCY_CRITICAL));
        hints.insert("category", Value::from(CATEGORY));
        hints.insert("desktop-entry", Value::from(DESKTOP_ENTRY));
        let expire_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        let buttons = [
            ACTION_APPROVE,
            request.approve_label,
            ACTION_DENY,
            request.deny_label,
        ];
        let id = within(
            deadline,
            "Notify on the notification server",
            self.proxy.notify(
                APP_NAME,
                0,
                request.app_icon,
                request.summary,
                request.body,
                &buttons,
                hints,
                expire_ms,
            ),
        )
        .await?
        .map_err(server_error("Notify"))?;
        tracing::debug!(id, "consent notification shown");
        Ok(PendingConsent {
            id,
            server,
            proxy: self.proxy.clone(),
            actions,
            closed,
            deadline,
            open: true,
        })
    }
}

/// A consent notification on screen, waiting for its answer. Dropping it
/// unanswered closes the notification (in the background).
pub struct PendingConsent {
    id: u32,
    server: zbus::names::OwnedUniqueName,
    proxy: NotificationsProxy<'static>,
    actions: ActionInvokedStream,
    closed: NotificationClosedStream,
    deadline: Instant,
    open: bool,
}

impl std::fmt::Debug for PendingConsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConsent")
            .field("id", &self.id)
            .field("deadline", &self.deadline)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl PendingConsent {
    /// The server's id of the notification.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The deadline given to [`Notifier::ask`].
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waits for the answer, at the latest until the deadline given to
    /// [`Notifier::ask`]. An answer other than Approve, or none, is not
    /// an approval.
    pub async fn wait(mut self) -> Consent {
        let id = self.id;
        let answer = loop {
            tokio::select! {
                biased;
                a = self.actions.next() => match a {
                    Some(signal) if !sent_by(signal.message(), &self.server) => {}
                    Some(signal) => match signal.args() {
                        Ok(args) if args.id == id => match args.action_key.as_str() {
                            ACTION_APPROVE => break Consent::Approved,
                            ACTION_DENY => break Consent::Denied,
                            other => {
                                // Another key for our id (a server that invents a
                                // "default" action on click): not an answer.
                                tracing::debug!(id, key = other, "ignoring unknown action key");
                            }
                        },
                        _ => {} // someone else's notification, or a malformed signal
                    },
                    None => break Consent::Closed,
                },
                c = self.closed.next() => match c {
                    Some(signal) if !sent_by(signal.message(), &self.server) => {}
                    Some(signal) => match signal.args() {
                        Ok(args) if args.id == id => {
                            self.open = false;
                            break closed_reason(args.reason);
                        }
                        _ => {}
                    },
                    None => break Consent::Closed,
                },
                () = tokio::time::sleep_until(self.deadline) => break Consent::TimedOut,
            }
        };
        tracing::debug!(id, ?answer, "consent notification answered");
        self.close().await;
        answer
    }

    /// Closes the notification now (the ceremony ended some other way).
    pub async fn cancel(mut self) {
        self.close().await;
    }

    async fn close(&mut self) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        // Best effort: the server may have removed it already.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.proxy.close_notification(self.id)).await;
    }
}

impl Drop for PendingConsent {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let proxy = self.proxy.clone();
            let id = self.id;
            rt.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, proxy.close_notification(id)).await;
            });
        }
    }
}
