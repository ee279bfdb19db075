//! User verification with a fingerprint through fprintd
//! (`net.reactivated.Fprint`, system bus; fprintd's D-Bus API, `Manager`
//! and `Device` interfaces).
//!
//! [`Fprint::default_device`] asks `Manager.GetDefaultDevice`.
//! [`FprintDevice::verify`] claims the device for the calling user
//! (`Claim("")`), then for each attempt calls `VerifyStart("any")` and reads
//! `VerifyStatus(result, done)`: `verify-match` verifies; `verify-no-match`
//! is one failed attempt (then `VerifyStop`, and a new `VerifyStart` while
//! attempts remain); the retry results (`verify-retry-scan`,
//! `verify-swipe-too-short`, `verify-finger-not-centered`,
//! `verify-remove-and-retry`) keep waiting; `verify-disconnected` and
//! `verify-unknown-error` are errors. Whatever happens — match, failures,
//! error, deadline, or the future being dropped — the device is stopped and
//! released (`VerifyStop`, `Release`); fprintd also releases a device whose
//! claimer leaves the bus.
//!
//! The outcome counts failed attempts, so the caller can apply its policy
//! ("failed N times → PIN through pinentry, or decline"). Missing fprintd,
//! no reader and no enrolled finger are distinct [`DesktopError`]s for the
//! caller's fallback.

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

use crate::bus::{name_owner, sent_by, within};
use crate::error::{detail, error_name, is_service_missing, DesktopError};

/// fprintd's bus name.
const FPRINTD: &str = "net.reactivated.Fprint";

// The proxies are crate-visible: `testing` enrolls fingers through them.
#[zbus::proxy(
    interface = "net.reactivated.Fprint.Manager",
    default_service = "net.reactivated.Fprint",
    default_path = "/net/reactivated/Fprint/Manager"
)]
pub(crate) trait Manager {
    fn get_default_device(&self) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "net.reactivated.Fprint.Device",
    default_service = "net.reactivated.Fprint"
)]
pub(crate) trait Device {
    fn claim(&self, username: &str) -> zbus::Result<()>;
    fn release(&self) -> zbus::Result<()>;
    fn verify_start(&self, finger_name: &str) -> zbus::Result<()>;
    fn verify_stop(&self) -> zbus::Result<()>;
    fn list_enrolled_fingers(&self, username: &str) -> zbus::Result<Vec<String>>;
    fn enroll_start(&self, finger_name: &str) -> zbus::Result<()>;
    fn enroll_stop(&self) -> zbus::Result<()>;

    #[zbus(property, name = "num-enroll-stages")]
    fn num_enroll_stages(&self) -> zbus::Result<i32>;

    #[zbus(property, name = "name")]
    fn name(&self) -> zbus::Result<String>;

    #[zbus(property, name = "scan-type")]
    fn scan_type(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn verify_status(&self, result: String, done: bool) -> zbus::Result<()>;

    #[zbus(signal)]
    fn enroll_status(&self, result: String, done: bool) -> zbus::Result<()>;
}

/// How long `VerifyStop` + `Release` may take after the verification ended
/// (also past the deadline: the device must not stay claimed).
const CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// fprintd on a bus.
#[derive(Debug, Clone)]
pub struct Fprint {
    conn: Connection,
}

/// How the reader is used (fprintd's `scan-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanType {
    /// Place the finger on the sensor.
    Press,
    /// Swipe the finger across the sensor.
    Swipe,
}

/// A fingerprint reader fprintd offers.
#[derive(Debug, Clone)]
pub struct FprintDevice {
    proxy: DeviceProxy<'static>,
    name: String,
    scan_type: ScanType,
}

/// The verification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Failed attempts (no match) before [`VerifyOutcome::NoMatch`]; at least 1.
    pub max_attempts: u32,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy { max_attempts: 3 }
    }
}

/// What happens during a verification, for the person's display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyEvent {
    /// The reader waits for a finger (attempt `attempt`, from 1).
    Ready {
        /// The attempt number, from 1.
        attempt: u32,
    },
    /// The finger did not match.
    NoMatch {
        /// The attempt that failed, from 1.
        attempt: u32,
        /// Attempts still allowed.
        left: u32,
    },
    /// The scan was not usable; the reader waits for another.
    Retry {
        /// fprintd's result, e.g. `verify-swipe-too-short`.
        result: String,
    },
}

/// How a verification ended. Only [`VerifyOutcome::Verified`] verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// A finger matched, after `failed` non-matching attempts.
    Verified {
        /// Non-matching attempts before the match.
        failed: u32,
    },
    /// `attempts` fingers in a row did not match (the policy's limit).
    NoMatch {
        /// Failed attempts.
        attempts: u32,
    },
    /// The deadline passed first.
    TimedOut {
        /// Failed attempts before it.
        failed: u32,
    },
}

impl VerifyOutcome {
    /// True only for [`VerifyOutcome::Verified`].
    pub fn is_verified(self) -> bool {
        matches!(self, VerifyOutcome::Verified { .. })
    }
}

fn call_error(what: &'static str, e: zbus::Error) -> DesktopError {
    if is_service_missing(&e) {
        return DesktopError::NoFprintd { detail: detail(&e) };
    }
    let d = detail(&e);
    match error_name(&e).as_deref() {
        Some("net.reactivated.Fprint.Error.NoSuchDevice") => DesktopError::NoFingerprintReader,
        Some("net.reactivated.Fprint.Error.NoEnrolledPrints") => DesktopError::NoEnrolledFinger,
        Some("net.reactivated.Fprint.Error.AlreadyInUse") => {
            DesktopError::FingerprintBusy { detail: d }
        }
        Some(
            "net.reactivated.Fprint.Error.PermissionDenied"
            | "org.freedesktop.DBus.Error.AccessDenied",
        ) => DesktopError::FingerprintDenied { detail: d },
        Some(n) if n.starts_with("net.reactivated.Fprint.Error.") => {
            DesktopError::FingerprintFailed { detail: d }
        }
        _ => DesktopError::DBus { what, detail: d },
    }
}

impl Fprint {
    /// fprintd on `conn` (the system bus).
    pub fn new(conn: Connection) -> Self {
        Fprint { conn }
    }

    /// The default reader (`Manager.GetDefaultDevice`), its name and scan type.
    pub async fn default_device(&self, deadline: Instant) -> Result<FprintDevice, DesktopError> {
        let manager = within(deadline, "connecting to fprintd", async {
            ManagerProxy::builder(&self.conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })
        .await?
        .map_err(|e| call_error("connecting to fprintd", e))?;
        let path = within(deadline, "GetDefaultDevice", manager.get_default_device())
            .await?
            .map_err(|e| call_error("GetDefaultDevice", e))?;
        let proxy = within(deadline, "connecting to the fingerprint reader", async {
            DeviceProxy::builder(&self.conn)
                .path(path)?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })
        .await?
        .map_err(|e| call_error("connecting to the fingerprint reader", e))?;
        let name = within(deadline, "reading the reader's name", proxy.name())
            .await?
            .map_err(|e| call_error("reading the reader's name", e))?;
        let scan_type = match within(deadline, "reading the scan type", proxy.scan_type())
            .await?
            .map_err(|e| call_error("reading the scan type", e))?
            .as_str()
        {
            "swipe" => ScanType::Swipe,
            _ => ScanType::Press,
        };
        Ok(FprintDevice {
            proxy,
            name,
            scan_type,
        })
    }
}

impl FprintDevice {
    /// The reader's object path (`/net/reactivated/Fprint/Device/N`).
    pub fn path(&self) -> &str {
        self.proxy.inner().path().as_str()
    }

    /// The reader's name, e.g. "Synaptics Sensors".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Press or swipe.
    pub fn scan_type(&self) -> ScanType {
        self.scan_type
    }

    /// The fingers enrolled for the calling user (`ListEnrolledFingers("")`);
    /// none is [`DesktopError::NoEnrolledFinger`].
    pub async fn enrolled_fingers(&self, deadline: Instant) -> Result<Vec<String>, DesktopError> {
        let fingers = within(
            deadline,
            "ListEnrolledFingers",
            self.proxy.list_enrolled_fingers(""),
        )
        .await?
        .map_err(|e| call_error("ListEnrolledFingers", e))?;
        if fingers.is_empty() {
            return Err(DesktopError::NoEnrolledFinger);
        }
        Ok(fingers)
    }

    /// Verifies the calling user's fingerprint under `policy` before
    /// `deadline`, telling `progress` what happens. `progress` sees
    /// [`VerifyEvent::Ready`] before each attempt's `VerifyStart` is sent
    /// (so "touch the reader" is on screen first); keep it quick.
    ///
    /// The reader is driven by a task of its own, so that no call to
    /// fprintd is ever abandoned half-way: if this future is dropped, the
    /// task finishes the call in flight, then stops the verification and
    /// releases the reader (fprintd mishandles a `Release` that overtakes
    /// a `VerifyStart` still being authorized, and keeps the reader claimed).
    pub async fn verify(
        &self,
        policy: VerifyPolicy,
        deadline: Instant,
        progress: &mut (dyn FnMut(VerifyEvent) + Send),
    ) -> Result<VerifyOutcome, DesktopError> {
        let (events_tx, mut events) = mpsc::channel(8);
        let (_cancel, cancelled) = oneshot::channel::<()>();
        let task = tokio::spawn(drive(
            self.proxy.clone(),
            policy.max_attempts.max(1),
            deadline,
            events_tx,
            cancelled,
        ));
        while let Some((e, shown)) = events.recv().await {
            progress(e);
            if let Some(shown) = shown {
                let _ = shown.send(());
            }
        }
        match task.await {
            Ok(r) => r,
            Err(e) => Err(DesktopError::FingerprintFailed {
                detail: format!("the verification task ended: {e}"),
            }),
        }
    }
}

/// A progress event for the caller, with what to signal once it was shown.
type Event = (VerifyEvent, Option<oneshot::Sender<()>>);

/// Drops the signals already received (without waiting for more).
fn drain(status: &mut VerifyStatusStream) {
    use futures_util::FutureExt;
    while let Some(Some(stale)) = status.next().now_or_never() {
        tracing::debug!(result = ?stale.args().map(|a| a.result.clone()).ok(), "dropping a stale VerifyStatus");
    }
}

/// Waits for `fut` until the deadline or the caller's going away (`None`).
async fn until<T>(
    fut: impl std::future::Future<Output = T>,
    deadline: Instant,
    cancelled: &mut oneshot::Receiver<()>,
) -> Option<T> {
    tokio::select! {
        v = fut => Some(v),
        () = tokio::time::sleep_until(deadline) => None,
        _ = cancelled => None,
    }
}

/// The verification, owning the reader from `Claim` to `Release`.
async fn drive(
    proxy: DeviceProxy<'static>,
    max: u32,
    deadline: Instant,
    events: mpsc::Sender<Event>,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<VerifyOutcome, DesktopError> {
    // Subscribe before anything can be reported.
    let mut status = within(
        deadline,
        "subscribing to VerifyStatus",
        proxy.receive_verify_status(),
    )
    .await?
    .map_err(|e| call_error("subscribing to VerifyStatus", e))?;
    // Only fprintd's own VerifyStatus counts: another local user can send
    // a "verify-match" of the same shape on the system bus.
    let fprintd = within(
        deadline,
        "finding fprintd",
        name_owner(proxy.inner().connection(), FPRINTD),
    )
    .await?
    .map_err(|e| call_error("finding fprintd", e))?;
    // Calls are never abandoned once sent; they get the time left plus the
    // cleanup allowance, then the deadline is checked.
    let call_limit = deadline + CLEANUP_TIMEOUT;
    within(call_limit, "Claim", proxy.claim(""))
        .await?
        .map_err(|e| call_error("Claim", e))?;
    let mut claim = Claim {
        proxy,
        verifying: false,
        claimed: true,
    };
    // fprintd sends the Claim reply after every signal of the previous
    // claimer's verification (a cancelled one ends with "verify-no-match"):
    // those are already queued, and are not ours.
    drain(&mut status);
    let result = attempts(
        &mut claim,
        &mut status,
        &fprintd,
        max,
        deadline,
        &events,
        &mut cancelled,
    )
    .await;
    claim.release().await;
    result
}

async fn attempts(
    claim: &mut Claim,
    status: &mut VerifyStatusStream,
    fprintd: &zbus::names::OwnedUniqueName,
    max: u32,
    deadline: Instant,
    events: &mpsc::Sender<Event>,
    cancelled: &mut oneshot::Receiver<()>,
) -> Result<VerifyOutcome, DesktopError> {
    let call_limit = deadline + CLEANUP_TIMEOUT;
    let mut failed = 0u32;
    // Past the deadline, or nobody listens any more (then the outcome is
    // dropped): either way the reader is stopped and released by the caller.
    let stopped = |failed: u32| Ok(VerifyOutcome::TimedOut { failed });
    loop {
        let attempt = failed + 1;
        // Whatever the last attempt's VerifyStop left behind is not about this one.
        drain(status);
        // The person is told before the reader starts: the progress
        // callback has returned when VerifyStart is sent.
        let (shown, told) = oneshot::channel();
        if events
            .send((VerifyEvent::Ready { attempt }, Some(shown)))
            .await
            .is_err()
        {
            return stopped(failed);
        }
        if !matches!(until(told, deadline, cancelled).await, Some(Ok(()))) {
            return stopped(failed);
        }
        within(call_limit, "VerifyStart", claim.proxy.verify_start("any"))
            .await?
            .map_err(|e| call_error("VerifyStart", e))?;
        claim.verifying = true;
        let matched = loop {
            let Some(signal) = until(status.next(), deadline, cancelled).await else {
                return stopped(failed);
            };
            let Some(signal) = signal else {
                return Err(DesktopError::FingerprintFailed {
                    detail: "fprintd left the bus during the verification".to_owned(),
                });
            };
            if !sent_by(signal.message(), fprintd) {
                tracing::warn!("ignoring a VerifyStatus signal not sent by fprintd");
                continue;
            }
            let Ok(args) = signal.args() else { continue };
            match args.result.as_str() {
                "verify-match" => break true,
                "verify-no-match" => break false,
                "verify-retry-scan"
                | "verify-swipe-too-short"
                | "verify-finger-not-centered"
                | "verify-remove-and-retry" => {
                    let retry = VerifyEvent::Retry {
                        result: args.result.clone(),
                    };
                    if events.send((retry, None)).await.is_err() {
                        return stopped(failed);
                    }
                    if args.done {
                        // The operation ended on a retry result: start it again.
                        claim.stop().await;
                        within(call_limit, "VerifyStart", claim.proxy.verify_start("any"))
                            .await?
                            .map_err(|e| call_error("VerifyStart", e))?;
                        claim.verifying = true;
                    }
                }
                "verify-disconnected" => return Err(DesktopError::FingerprintDisconnected),
                other => {
                    if args.done {
                        return Err(DesktopError::FingerprintFailed {
                            detail: other.to_owned(),
                        });
                    }
                    tracing::debug!(result = other, "unknown VerifyStatus, still waiting");
                }
            }
        };
        claim.stop().await;
        if matched {
            return Ok(VerifyOutcome::Verified { failed });
        }
        failed += 1;
        tracing::info!(attempt, "fingerprint did not match");
        if failed >= max {
            return Ok(VerifyOutcome::NoMatch { attempts: failed });
        }
        let no_match = VerifyEvent::NoMatch {
            attempt,
            left: max - failed,
        };
        if events.send((no_match, None)).await.is_err() {
            return stopped(failed);
        }
    }
}

/// A claimed device: stopped and released on [`Claim::release`], or in the
/// background when dropped (a cancelled verification).
struct Claim {
    proxy: DeviceProxy<'static>,
    verifying: bool,
    claimed: bool,
}

impl Claim {
    async fn stop(&mut self) {
        if std::mem::replace(&mut self.verifying, false) {
            let _ = tokio::time::timeout(CLEANUP_TIMEOUT, self.proxy.verify_stop()).await;
        }
    }

    async fn release(&mut self) {
        self.stop().await;
        if std::mem::replace(&mut self.claimed, false) {
            match tokio::time::timeout(CLEANUP_TIMEOUT, self.proxy.release()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %detail(&e), "fprintd Release failed"),
                Err(_) => tracing::warn!("fprintd Release timed out"),
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.claimed {
            return;
        }
        let proxy = self.proxy.clone();
        let verifying = self.verifying;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if verifying {
                    let _ = tokio::time::timeout(CLEANUP_TIMEOUT, proxy.verify_stop()).await;
                }
                let _ = tokio::time::timeout(CLEANUP_TIMEOUT, proxy.release()).await;
            });
        }
    }
}
