//! Fingerprint verification through the real fprintd with libfprint's
//! virtual device, on a private system bus with a polkit stand-in.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use hybrid_desktop::testing::{
    or_skip, private_bus, Fprintd, FprintdOptions, PolkitAllowAll, PrivateBus, VIRTUAL_DEVICE_NAME,
};
use hybrid_desktop::{
    bus_at, DesktopError, Fprint, FprintDevice, VerifyEvent, VerifyOutcome, VerifyPolicy,
};
use zbus::Connection;

use super::{bounded, deadline};

const FINGER: &str = "right-index-finger";
/// The print id of the enrolled finger, and of another one.
const ENROLLED: &str = "alice-right-index";
const STRANGER: &str = "mallory-thumb";

struct Rig {
    address: String,
    _bus: PrivateBus,
    polkit: PolkitAllowAll,
    fprintd: Arc<Fprintd>,
    conn: Connection,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failing test shows what fprintd and the driver did.
            let log = std::fs::read_to_string(self.fprintd.log()).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    !l.is_empty()
                        && !l.contains("temperature")
                        && !l.contains("to call method 'Claim'")
                })
                .collect();
            eprintln!(
                "--- fprintd log (tail)\n{}",
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}

impl Rig {
    async fn device(&self) -> FprintDevice {
        Fprint::new(self.conn.clone())
            .default_device(deadline(10))
            .await
            .unwrap()
    }

    /// One verification whose person does `touches`, one per attempt.
    async fn verify(
        &self,
        device: &FprintDevice,
        max_attempts: u32,
        secs: u64,
        touches: Vec<Touch>,
    ) -> (Result<VerifyOutcome, DesktopError>, Vec<VerifyEvent>) {
        let (mut cb, events) = person(&self.fprintd, touches);
        let r = device
            .verify(VerifyPolicy { max_attempts }, deadline(secs), &mut cb)
            .await;
        let events = events.lock().unwrap().clone();
        (r, events)
    }
}

async fn rig(test: &str, options: FprintdOptions, enroll: bool) -> Option<Rig> {
    let bus = or_skip(test, private_bus())?;
    let polkit = PolkitAllowAll::start(bus.address()).await.unwrap();
    let fprintd = Arc::new(or_skip(test, Fprintd::start(bus.address(), options).await)?);
    let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
    if enroll {
        fprintd.enroll(&conn, FINGER, ENROLLED).await.unwrap();
    }
    Some(Rig {
        address: bus.address().to_owned(),
        _bus: bus,
        polkit,
        fprintd,
        conn,
    })
}

/// A progress callback that records every event and, each time the reader
/// waits for a finger, runs the next of `touches` on the virtual device.
fn person(
    fprintd: &Arc<Fprintd>,
    touches: Vec<Touch>,
) -> (impl FnMut(VerifyEvent) + Send, Arc<Mutex<Vec<VerifyEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let fprintd = fprintd.clone();
    let mut touches = touches.into_iter();
    let callback = move |e: VerifyEvent| {
        if let VerifyEvent::Ready { .. } = e {
            for step in touches.next().unwrap_or_default() {
                match step {
                    Step::Scan(id) => fprintd.scan(id).unwrap(),
                    Step::Retry => fprintd.retry().unwrap(),
                    Step::Error => fprintd.error().unwrap(),
                }
            }
        }
        seen.lock().unwrap().push(e);
    };
    (callback, events)
}

#[derive(Clone, Copy)]
enum Step {
    Scan(&'static str),
    Retry,
    Error,
}

type Touch = Vec<Step>;

/// Runs `body` on a rig (fprintd with the virtual device, a finger
/// enrolled when `enroll`), or skips.
macro_rules! with_rig {
    ($test:ident, $options:expr, $enroll:expr, |$r:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let name = stringify!($test);
            bounded(name, async {
                let Some($r) = rig(name, $options, $enroll).await else {
                    return;
                };
                $body
            })
            .await;
        }
    };
}

const ONE_TOUCH: fn(&'static str) -> Vec<Touch> = |id| vec![vec![Step::Scan(id)]];

with_rig!(
    fprintd_enrolled_finger_verifies,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        assert_eq!(device.name(), VIRTUAL_DEVICE_NAME);
        assert_eq!(
            device.enrolled_fingers(deadline(10)).await.unwrap(),
            vec![FINGER.to_owned()]
        );
        let (outcome, events) = r.verify(&device, 3, 30, ONE_TOUCH(ENROLLED)).await;
        let outcome = outcome.unwrap();
        assert_eq!(outcome, VerifyOutcome::Verified { failed: 0 });
        assert!(outcome.is_verified());
        assert_eq!(events, vec![VerifyEvent::Ready { attempt: 1 }]);
        // fprintd really asked polkit, for each step.
        let asked = r.polkit.asked();
        for action in [
            "net.reactivated.fprint.device.verify",
            "net.reactivated.fprint.device.enroll",
        ] {
            assert!(asked.iter().any(|a| a == action), "{action}: {asked:?}");
        }
        // The device was released: it can be verified again at once.
        let (again, _) = r.verify(&device, 3, 30, ONE_TOUCH(ENROLLED)).await;
        assert_eq!(again.unwrap(), VerifyOutcome::Verified { failed: 0 });
    }
);

with_rig!(
    fprintd_wrong_finger_fails_after_the_retry_policy,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        let touches = vec![vec![Step::Scan(STRANGER)], vec![Step::Scan(STRANGER)]];
        let (outcome, events) = r.verify(&device, 2, 30, touches).await;
        let outcome = outcome.unwrap();
        assert_eq!(outcome, VerifyOutcome::NoMatch { attempts: 2 });
        assert!(!outcome.is_verified());
        assert_eq!(
            events,
            vec![
                VerifyEvent::Ready { attempt: 1 },
                VerifyEvent::NoMatch {
                    attempt: 1,
                    left: 1
                },
                VerifyEvent::Ready { attempt: 2 },
            ]
        );
    }
);

with_rig!(
    fprintd_unusable_scan_then_wrong_then_right_finger_verifies,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        // An unusable scan first (fprintd restarts by itself), then a
        // stranger, then the enrolled finger.
        let touches = vec![
            vec![Step::Retry, Step::Scan(STRANGER)],
            vec![Step::Scan(ENROLLED)],
        ];
        let (outcome, events) = r.verify(&device, 3, 30, touches).await;
        assert_eq!(outcome.unwrap(), VerifyOutcome::Verified { failed: 1 });
        assert_eq!(
            events,
            vec![
                VerifyEvent::Ready { attempt: 1 },
                VerifyEvent::Retry {
                    result: "verify-retry-scan".to_owned()
                },
                VerifyEvent::NoMatch {
                    attempt: 1,
                    left: 2
                },
                VerifyEvent::Ready { attempt: 2 },
            ]
        );
    }
);

with_rig!(
    fprintd_deadline_stops_and_releases_the_reader,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        // Nobody touches the reader (the virtual device waits for a command).
        let (outcome, _) = r.verify(&device, 3, 2, vec![vec![]]).await;
        assert_eq!(outcome.unwrap(), VerifyOutcome::TimedOut { failed: 0 });
        // Stopped and released: a new verification claims it at once.
        let (again, _) = r.verify(&device, 3, 30, ONE_TOUCH(ENROLLED)).await;
        assert_eq!(again.unwrap(), VerifyOutcome::Verified { failed: 0 });
    }
);

with_rig!(
    fprintd_dropped_verification_releases_the_reader,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        // fprintd says when the reader waits for a finger (the virtual
        // device waits for a command): then the verification is under way.
        let props = zbus::fdo::PropertiesProxy::builder(&r.conn)
            .destination("net.reactivated.Fprint")
            .unwrap()
            .path(device.path().to_owned())
            .unwrap()
            .build()
            .await
            .unwrap();
        let mut changes = props.receive_properties_changed().await.unwrap();
        let d2 = device.clone();
        let task = tokio::spawn(async move {
            d2.verify(VerifyPolicy::default(), deadline(600), &mut |_| {})
                .await
        });
        loop {
            let c = changes.next().await.unwrap();
            let args = c.args().unwrap();
            let needed = args.changed_properties().get("finger-needed");
            if needed.and_then(|v| bool::try_from(v).ok()) == Some(true) {
                break;
            }
        }
        // The ceremony ends some other way: the verification is dropped.
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        // The release lands in the background, within a bound; until it
        // does, a claim is refused as busy.
        let give_up = deadline(20);
        loop {
            match r.verify(&device, 3, 30, ONE_TOUCH(ENROLLED)).await.0 {
                Ok(o) => {
                    assert_eq!(o, VerifyOutcome::Verified { failed: 0 });
                    break;
                }
                Err(DesktopError::FingerprintBusy { .. })
                    if tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
);

with_rig!(
    fprintd_forged_verify_status_from_another_client_is_ignored,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        // Another local user's program on the system bus sends "verify-match"
        // for our reader, broadcast and addressed to us, before the real scan
        // (a stranger's finger) is reported.
        let forger = bus_at(&r.address, deadline(10)).await.unwrap();
        let us = r.conn.unique_name().unwrap().to_string();
        let path = device.path().to_owned();
        let fprintd = r.fprintd.clone();
        let rt = tokio::runtime::Handle::current();
        let mut cb = move |e: VerifyEvent| {
            if let VerifyEvent::Ready { .. } = e {
                tokio::task::block_in_place(|| {
                    rt.block_on(async {
                        for destination in [None, Some(us.as_str())] {
                            forger
                                .emit_signal(
                                    destination,
                                    path.as_str(),
                                    "net.reactivated.Fprint.Device",
                                    "VerifyStatus",
                                    &("verify-match", true),
                                )
                                .await
                                .unwrap();
                        }
                    })
                });
                fprintd.scan(STRANGER).unwrap();
            }
        };
        let outcome = device
            .verify(VerifyPolicy { max_attempts: 1 }, deadline(30), &mut cb)
            .await
            .unwrap();
        assert_eq!(outcome, VerifyOutcome::NoMatch { attempts: 1 });
    }
);

with_rig!(
    fprintd_driver_error_is_an_error,
    FprintdOptions::default(),
    true,
    |r| {
        let device = r.device().await;
        let (outcome, _) = r.verify(&device, 3, 30, vec![vec![Step::Error]]).await;
        assert_eq!(
            outcome.unwrap_err(),
            DesktopError::FingerprintFailed {
                detail: "verify-unknown-error".to_owned()
            }
        );
    }
);

with_rig!(
    fprintd_without_enrolled_finger_is_a_typed_error,
    FprintdOptions::default(),
    false,
    |r| {
        let device = r.device().await;
        assert_eq!(
            device.enrolled_fingers(deadline(10)).await.unwrap_err(),
            DesktopError::NoEnrolledFinger
        );
        for _ in 0..2 {
            // Twice: the failed verification released the reader.
            let err = r.verify(&device, 3, 30, vec![]).await.0.unwrap_err();
            assert_eq!(err, DesktopError::NoEnrolledFinger);
            assert!(err.to_string().contains("fprintd-enroll"), "{err}");
        }
    }
);

with_rig!(
    fprintd_without_reader_is_a_typed_error,
    FprintdOptions {
        virtual_device: false
    },
    false,
    |r| {
        let err = Fprint::new(r.conn.clone())
            .default_device(deadline(10))
            .await
            .unwrap_err();
        assert_eq!(err, DesktopError::NoFingerprintReader);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fprintd_not_running_is_a_typed_error() {
    let test = "fprintd_not_running_is_a_typed_error";
    bounded(test, async {
        let Some(bus) = or_skip(test, private_bus()) else {
            return;
        };
        let conn = bus_at(bus.address(), deadline(10)).await.unwrap();
        let err = Fprint::new(conn)
            .default_device(deadline(10))
            .await
            .unwrap_err();
        assert!(matches!(err, DesktopError::NoFprintd { .. }), "{err:?}");
        assert!(err.to_string().contains("apt install fprintd"), "{err}");
    })
    .await;
}
