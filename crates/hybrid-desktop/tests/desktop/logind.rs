//! Session locks and suspend, from a fake `org.freedesktop.login1` on a
//! private bus.

use hybrid_desktop::testing::{or_skip, private_bus, FakeLogind, FakeLogindOptions, PrivateBus};
use hybrid_desktop::{bus_at, DesktopError, LogindEvent, LogindWatcher, SessionSelector};
use zbus::Connection;

use super::{bounded, deadline};

async fn rig(
    test: &str,
    options: FakeLogindOptions,
) -> Option<(PrivateBus, FakeLogind, Connection)> {
    let bus = or_skip(test, private_bus())?;
    let fake = FakeLogind::start(bus.address(), options).await.unwrap();
    let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
    Some((bus, fake, conn))
}

async fn next(w: &mut LogindWatcher) -> LogindEvent {
    tokio::time::timeout(std::time::Duration::from_secs(20), w.next())
        .await
        .expect("no logind event within 20 s")
        .expect("the watcher ended")
}

fn ours() -> SessionSelector {
    SessionSelector::Id(FakeLogindOptions::default().session_id)
}

/// A test with the fake logind (default options) and a watcher on our
/// session, or a skip.
macro_rules! with_watcher {
    ($test:ident, |$fake:ident, $conn:ident, $w:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let name = stringify!($test);
            bounded(name, async {
                let Some((_bus, $fake, $conn)) = rig(name, FakeLogindOptions::default()).await
                else {
                    return;
                };
                #[allow(unused_mut)]
                let mut $w = LogindWatcher::start(&$conn, &ours(), deadline(10))
                    .await
                    .unwrap();
                $body
            })
            .await;
        }
    };
}

with_watcher!(logind_lock_signal_is_reported, |fake, _conn, w| {
    assert_eq!(w.session_id(), "2");
    assert_eq!(w.session_path(), "/org/freedesktop/login1/session/_32");
    assert!(!w.locked_at_start());
    fake.lock().await.unwrap();
    assert_eq!(next(&mut w).await, LogindEvent::SessionLocked);
});

with_watcher!(
    logind_locked_hint_is_reported_and_unlock_is_not,
    |fake, conn, w| {
        fake.set_locked_hint(true).await.unwrap();
        assert_eq!(next(&mut w).await, LogindEvent::SessionLocked);
        // Unlocking reports nothing: the next event is the suspend below.
        fake.set_locked_hint(false).await.unwrap();
        fake.unlock().await.unwrap();
        fake.prepare_for_sleep(true).await.unwrap();
        assert_eq!(next(&mut w).await, LogindEvent::PrepareForSleep);
        // A watcher started while locked says so.
        fake.set_locked_hint(true).await.unwrap();
        let w2 = LogindWatcher::start(&conn, &ours(), deadline(10))
            .await
            .unwrap();
        assert!(w2.locked_at_start());
    }
);

with_watcher!(
    logind_prepare_for_sleep_is_reported_and_resume_is_not,
    |fake, _conn, w| {
        fake.prepare_for_sleep(false).await.unwrap();
        fake.prepare_for_sleep(true).await.unwrap();
        assert_eq!(next(&mut w).await, LogindEvent::PrepareForSleep);
        fake.prepare_for_sleep(false).await.unwrap();
        fake.lock().await.unwrap();
        assert_eq!(next(&mut w).await, LogindEvent::SessionLocked);
    }
);

with_watcher!(logind_other_sessions_lock_is_ignored, |fake, _conn, w| {
    fake.lock_other_session().await.unwrap();
    fake.prepare_for_sleep(true).await.unwrap();
    assert_eq!(next(&mut w).await, LogindEvent::PrepareForSleep);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logind_session_is_found_by_pid_then_by_display() {
    let test = "logind_session_is_found_by_pid_then_by_display";
    bounded(test, async {
        // This process is in the session (a terminal login).
        let by_pid = FakeLogindOptions {
            session_pids: vec![std::process::id()],
            user_display: false,
            ..FakeLogindOptions::default()
        };
        let Some((_bus, fake, conn)) = rig(test, by_pid).await else {
            return;
        };
        let mut w = LogindWatcher::start(&conn, &SessionSelector::Auto, deadline(10))
            .await
            .unwrap();
        assert_eq!(w.session_path(), fake.session_path());
        fake.lock().await.unwrap();
        assert_eq!(next(&mut w).await, LogindEvent::SessionLocked);

        // A user service: in no session, but the user has a display session.
        let Some((_bus, fake, conn)) = rig(test, FakeLogindOptions::default()).await else {
            return;
        };
        let mut w = LogindWatcher::start(&conn, &SessionSelector::Auto, deadline(10))
            .await
            .unwrap();
        assert_eq!(w.session_path(), fake.session_path());
        fake.set_locked_hint(true).await.unwrap();
        assert_eq!(next(&mut w).await, LogindEvent::SessionLocked);

        // Neither: a typed error naming the fix.
        let nothing = FakeLogindOptions {
            user_display: false,
            ..FakeLogindOptions::default()
        };
        let Some((_bus, _fake, conn)) = rig(test, nothing).await else {
            return;
        };
        let err = LogindWatcher::start(&conn, &SessionSelector::Auto, deadline(10))
            .await
            .unwrap_err();
        assert!(matches!(err, DesktopError::NoLoginSession { .. }), "{err:?}");
        let err = LogindWatcher::start(&conn, &SessionSelector::Id("nope".into()), deadline(10))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DesktopError::NoLoginSession { ref detail } if detail.contains("NoSuchSession")),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logind_missing_is_a_typed_error() {
    let test = "logind_missing_is_a_typed_error";
    bounded(test, async {
        let Some(bus) = or_skip(test, private_bus()) else {
            return;
        };
        let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
        let err = LogindWatcher::start(&conn, &SessionSelector::Auto, deadline(10))
            .await
            .unwrap_err();
        assert!(matches!(err, DesktopError::NoLogind { .. }), "{err:?}");
    })
    .await;
}
