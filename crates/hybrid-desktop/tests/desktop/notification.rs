//! Consent through a real notification server: dunst under Xvfb on a
//! private session bus, its actions invoked with `dunstctl`.

use std::collections::HashMap;

use hybrid_desktop::notify::{ACTION_APPROVE, ACTION_DENY, CATEGORY};
use hybrid_desktop::testing::{or_skip, private_bus, Dunst, DunstOptions, PrivateBus, Xvfb};
use hybrid_desktop::{bus_at, Consent, ConsentRequest, DesktopError, Notifier, PendingConsent};

use super::{bounded, deadline};

struct Desk {
    address: String,
    conn: zbus::Connection,
    _bus: PrivateBus,
    _x: Xvfb,
    dunst: Dunst,
    notifier: Notifier,
}

impl Desk {
    /// Shows the standard request until `secs` from now.
    async fn ask(&self, secs: u64) -> PendingConsent {
        self.notifier
            .ask(&ConsentRequest::new(SUMMARY, BODY), deadline(secs))
            .await
            .unwrap()
    }
}

async fn desk(test: &str, options: DunstOptions) -> Option<Desk> {
    let bus = or_skip(test, private_bus())?;
    let x = or_skip(test, Xvfb::start())?;
    let dunst = or_skip(
        test,
        Dunst::start(bus.address(), x.display(), options).await,
    )?;
    let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
    let notifier = Notifier::connect(&conn, deadline(10)).await.unwrap();
    Some(Desk {
        address: bus.address().to_owned(),
        conn,
        _bus: bus,
        _x: x,
        dunst,
        notifier,
    })
}

/// A test on dunst configured with `options`, or a skip.
macro_rules! with_dunst {
    ($test:ident, $options:expr, |$d:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let name = stringify!($test);
            bounded(name, async {
                let Some($d) = desk(name, $options).await else {
                    return;
                };
                $body
            })
            .await;
        }
    };
}

const SUMMARY: &str = "Sign in to example.com?";
const BODY: &str = "account: alice\nQR code scanned 4 s after it was shown";

with_dunst!(
    notification_dunst_approve_is_an_approval,
    DunstOptions::default(),
    |d| {
        let server = d.notifier.server();
        assert_eq!(server.name, "dunst");
        assert!(server.actions());
        assert!(!server.body_markup(), "dunst without markup = full");

        let p = d.ask(300).await;
        let id = p.id();
        d.dunst.wait_displayed(1).await.unwrap();
        d.dunst.invoke(id, ACTION_APPROVE).unwrap();
        let consent = p.wait().await;
        assert_eq!(consent, Consent::Approved);
        assert!(consent.is_approved());

        // What dunst offered: both labels, on our notification, with our keys.
        let menu = d.dunst.last_menu();
        for (label, key) in [("Approve", ACTION_APPROVE), ("Deny", ACTION_DENY)] {
            let line = format!("#{label} ({SUMMARY}) [{id},{key}]");
            assert!(menu.contains(&line), "{line} not in {menu}");
        }
        // Answered, it was closed; dunst's history shows the hints it got.
        d.dunst.wait_displayed(0).await.unwrap();
        let history: serde_json::Value = serde_json::from_str(&d.dunst.history().unwrap()).unwrap();
        let entry = &history["data"][0][0];
        assert_eq!(entry["appname"]["data"], "hybridd");
        assert_eq!(entry["category"]["data"], CATEGORY);
        assert_eq!(entry["summary"]["data"], SUMMARY);
        assert_eq!(entry["body"]["data"], BODY);
        // expire_timeout was the time left to the deadline (300 s), in µs.
        let timeout_us = entry["timeout"]["data"].as_i64().unwrap();
        assert!(
            (60_000_000..=300_000_000).contains(&timeout_us),
            "timeout {timeout_us} µs"
        );
    }
);

with_dunst!(
    notification_dunst_deny_is_not_an_approval,
    DunstOptions::default(),
    |d| {
        let p = d.ask(300).await;
        d.dunst.wait_displayed(1).await.unwrap();
        d.dunst.invoke(p.id(), ACTION_DENY).unwrap();
        let consent = p.wait().await;
        assert_eq!(consent, Consent::Denied);
        assert!(!consent.is_approved());
        d.dunst.wait_displayed(0).await.unwrap();
    }
);

with_dunst!(
    notification_dunst_dismissed_is_not_an_approval,
    DunstOptions::default(),
    |d| {
        let p = d.ask(300).await;
        d.dunst.wait_displayed(1).await.unwrap();
        d.dunst.dismiss().unwrap();
        assert_eq!(p.wait().await, Consent::Dismissed);
    }
);

with_dunst!(
    notification_dunst_expiry_is_not_an_approval,
    DunstOptions::default(),
    |d| {
        // dunst honours expire_timeout (= the 2 s to the deadline): it expires
        // the notification, or our deadline closes it, whichever comes first.
        // Neither approves.
        let consent = d.ask(2).await.wait().await;
        assert!(
            matches!(consent, Consent::Expired | Consent::TimedOut),
            "{consent:?}"
        );
        assert!(!consent.is_approved());
        d.dunst.wait_displayed(0).await.unwrap();
    }
);

// A dunst rule that ignores expire_timeout, as GNOME Shell does.
with_dunst!(
    notification_dunst_deadline_closes_a_notification_the_server_keeps,
    DunstOptions {
        never_expire: true,
        ..DunstOptions::default()
    },
    |d| {
        let p = d.ask(2).await;
        d.dunst.wait_displayed(1).await.unwrap();
        assert_eq!(p.wait().await, Consent::TimedOut);
        // We closed it: nobody can answer a request that is over.
        d.dunst.wait_displayed(0).await.unwrap();
    }
);

with_dunst!(
    notification_dunst_answers_to_other_notifications_are_ignored,
    DunstOptions::default(),
    |d| {
        // Two requests on the same connection with the same action keys:
        // every ActionInvoked reaches both waits.
        let ours = d.ask(300).await;
        let request = ConsentRequest::new("Create a passkey for other.example?", "account: bob");
        let other = d.notifier.ask(&request, deadline(300)).await.unwrap();
        let (ours_id, other_id) = (ours.id(), other.id());
        assert_ne!(ours_id, other_id);
        let ours = tokio::spawn(ours.wait());
        d.dunst.wait_displayed(2).await.unwrap();
        d.dunst.invoke(other_id, ACTION_APPROVE).unwrap();
        assert_eq!(other.wait().await, Consent::Approved);
        d.dunst.wait_displayed(1).await.unwrap();
        // Our wait saw the other's approval first; it must not count.
        d.dunst.invoke(ours_id, ACTION_DENY).unwrap();
        assert_eq!(ours.await.unwrap(), Consent::Denied);
    }
);

with_dunst!(
    notification_dunst_forged_signal_from_another_client_is_ignored,
    DunstOptions::default(),
    |d| {
        let p = d.ask(300).await;
        let id = p.id();
        let ours = tokio::spawn(p.wait());
        d.dunst.wait_displayed(1).await.unwrap();
        // Another client on the bus sends an "Approve" for our id, as if it
        // were the notification server: broadcast, and addressed to us
        // (which the bus delivers whatever our match rules say).
        let forger = bus_at(&d.address, deadline(10)).await.unwrap();
        let us = d.conn.unique_name().unwrap().to_owned();
        for destination in [None, Some(us.as_str())] {
            forger
                .emit_signal(
                    destination,
                    "/org/freedesktop/Notifications",
                    "org.freedesktop.Notifications",
                    "ActionInvoked",
                    &(id, ACTION_APPROVE),
                )
                .await
                .unwrap();
        }
        // Only the server's own signals count: the real answer decides.
        d.dunst.invoke(id, ACTION_DENY).unwrap();
        assert_eq!(ours.await.unwrap(), Consent::Denied);
    }
);

with_dunst!(
    notification_dunst_with_markup_reports_body_markup,
    DunstOptions {
        markup: true,
        ..DunstOptions::default()
    },
    |d| {
        let server = d.notifier.server();
        assert!(server.body_markup(), "{:?}", server.capabilities);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_server_missing_is_a_typed_error() {
    let test = "notification_server_missing_is_a_typed_error";
    bounded(test, async {
        let Some(bus) = or_skip(test, private_bus()) else {
            return;
        };
        let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
        let err = Notifier::connect(&conn, deadline(10)).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::NoNotificationServer { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("notification daemon that supports actions")
                && text.contains("dunst")
                && text.contains("mako"),
            "{text}"
        );
    })
    .await;
}

/// A notification server that cannot show actions (as notify-osd could not).
struct NoActions;

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl NoActions {
    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_owned()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "plain-bubbles".to_owned(),
            "test".to_owned(),
            "1.0".to_owned(),
            "1.2".to_owned(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        _summary: String,
        _body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        panic!("Notify must not be called on a server without actions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_server_without_actions_is_refused() {
    let test = "notification_server_without_actions_is_refused";
    bounded(test, async {
        let Some(bus) = or_skip(test, private_bus()) else {
            return;
        };
        let _server = zbus::connection::Builder::address(bus.address())
            .unwrap()
            .serve_at("/org/freedesktop/Notifications", NoActions)
            .unwrap()
            .name("org.freedesktop.Notifications")
            .unwrap()
            .build()
            .await
            .unwrap();
        let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
        let err = Notifier::connect(&conn, deadline(10)).await.unwrap_err();
        assert_eq!(
            err,
            DesktopError::NotificationsWithoutActions {
                server: "plain-bubbles 1.0".to_owned()
            }
        );
        assert!(err.to_string().contains("supports actions"), "{err}");
    })
    .await;
}
