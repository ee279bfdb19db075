//! `hybridd run`: the daemon.
//!
//! Opens the vault (it must exist), prepares the radio (BlueZ, file or
//! stdout), binds the control socket and serves `hybridd scan` clients, one
//! session at a time, until SIGINT/SIGTERM (which cancels a running session
//! and removes the socket). After every session, successful or not, it is
//! ready for the next. See `docs/operations.md`.
//!
//! [`run_ceremony`] is the one session, shared with `hybridd scan
//! --standalone`: QR check (before any network use, hybrid-protocol.md
//! §1.4 and the checklist's freshness and replay rules — a QR whose secret
//! already reached a handshake in this daemon is refused as `qr_replayed`,
//! see `crate::replay`), then the phone session (`crate::phone`), then the
//! outcome as a [`Done`].

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hybrid_ble::Advertiser;
use hybrid_ctap::UserError;
use hybrid_session::{FailReason, Outcome};
use hybrid_tunnel::client::ClientOptions;
use hybrid_vault::{Vault, VaultError};
use tokio::sync::{mpsc, watch, Mutex};
use zeroize::Zeroizing;

use crate::approval::{Approver, AutoApprover, DaemonAuthenticator, SharedVault};
use crate::config::{self, ApprovalMode, Config, Overrides, RadioBackend};
use crate::control::{self, DaemonMsg, Done, Runner, SessionRequest};
use crate::phone::{run_phone_session, PhoneOptions, SessionConfig, SessionEvent, SessionReport};
use crate::replay::{QrDigest, ReplaySet};

/// Arguments of `hybridd run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Settings overriding the config file.
    #[command(flatten)]
    pub overrides: Overrides,
}

/// What every session of the daemon shares.
pub struct Daemon {
    /// Effective configuration.
    pub config: Config,
    /// The vault.
    pub vault: SharedVault,
    /// The radio, used by one session at a time.
    pub radio: Mutex<Box<dyn Advertiser>>,
    /// The QRs that reached a handshake (replay policy, `crate::replay`).
    pub replay: std::sync::Mutex<ReplaySet>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Opens the vault named in the config with a clear error when there is none.
pub fn open_vault(path: &Path) -> Result<SharedVault, String> {
    match Vault::open(path) {
        Ok(v) => Ok(SharedVault::new(v)),
        Err(VaultError::NoVault(p)) => Err(format!(
            "no vault: run `hybridd vault init` (looked for {})",
            p.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Builds the configured radio. BlueZ is checked once here, so a daemon
/// without a usable adapter fails at start with the fix.
pub async fn make_radio(cfg: &Config) -> Result<Box<dyn Advertiser>, String> {
    match cfg.radio {
        RadioBackend::File => {
            let path = cfg
                .advert_file
                .clone()
                .ok_or_else(|| "radio = \"file\" needs advert_file".to_owned())?;
            Ok(Box::new(hybrid_ble::FileRadio::to_file(path)))
        }
        RadioBackend::Stdout => Ok(Box::new(hybrid_ble::FileRadio::to_stdout())),
        RadioBackend::Bluez => {
            let bc = hybrid_bluez::BluezConfig {
                adapter: cfg.adapter.clone(),
                ..hybrid_bluez::BluezConfig::default()
            };
            match hybrid_bluez::BluezAdvertiser::system(bc).await {
                Ok(a) => Ok(Box::new(a)),
                Err(e) => Err(format!(
                    "Bluetooth: {} — fix: {} (or set radio = \"file\")",
                    e.summary(),
                    e.fix()
                )),
            }
        }
    }
}

/// The approver for `approval = "auto"`, with the start-up warning.
pub fn auto_approver(cfg: &Config) -> Result<Option<AutoApprover>, String> {
    if cfg.approval != ApprovalMode::Auto {
        return Ok(None);
    }
    let path = cfg
        .pin_file
        .as_deref()
        .ok_or_else(|| "approval = \"auto\" needs pin_file".to_owned())?;
    let a = AutoApprover::from_file(path)?;
    tracing::warn!(
        "automatic approval is enabled: any desktop that scans a QR code handed to this daemon \
         gets a passkey created or a sign-in approved, with user verification, without anyone \
         being asked — for tests only"
    );
    Ok(Some(a))
}

/// The QR freshness policy of `cfg` (conformance checklist "QR freshness").
fn freshness(cfg: &Config) -> hybrid_qr::Freshness {
    hybrid_qr::Freshness {
        max_age_secs: cfg.max_qr_age_secs,
        ..hybrid_qr::Freshness::default()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The replay-policy key of a QR that parses and is fresh: the digest of
/// its secret and the Unix second after which it would be stale anyway.
/// `None` for a QR the phone session refuses as `qr_invalid` / `qr_stale`.
fn replay_key(cfg: &Config, uri: &str, now_unix: u64) -> Option<(QrDigest, Option<u64>)> {
    let qr = hybrid_qr::parse(uri.trim()).ok()?;
    freshness(cfg).check(&qr, now_unix).ok()?;
    let stale_after = qr
        .timestamp()
        .map(|t| t.saturating_add(cfg.max_qr_age_secs));
    Some((QrDigest::of_secret(qr.secret()), stale_after))
}

fn lock_replay(replay: &std::sync::Mutex<ReplaySet>) -> std::sync::MutexGuard<'_, ReplaySet> {
    replay.lock().unwrap_or_else(|p| p.into_inner())
}

/// One phone session: replay check, authenticator, phone session (which
/// checks the QR before any network use), outcome; the vault is locked
/// afterwards.
///
/// Replay policy (conformance checklist "QR replay", `crate::replay`): a
/// QR whose secret is in `replay` is refused as `qr_replayed` before any
/// network use; a QR whose session got as far as the desktop's handshake
/// message (successful or not) is added to `replay` when the session ends.
/// Sessions run one at a time (the control socket's slot), so recording at
/// the end leaves no window for a second session with the same QR.
#[allow(clippy::too_many_arguments)]
pub async fn run_ceremony(
    cfg: &Config,
    vault: &SharedVault,
    radio: &mut dyn Advertiser,
    replay: &std::sync::Mutex<ReplaySet>,
    uri: Zeroizing<String>,
    approver: Box<dyn Approver>,
    events: mpsc::UnboundedSender<DaemonMsg>,
    cancel: watch::Receiver<bool>,
) -> Done {
    let key = replay_key(cfg, &uri, now_unix());
    if let Some((digest, _)) = &key {
        if lock_replay(replay).contains(digest, now_unix()) {
            let r = FailReason::QrReplayed;
            tracing::info!(outcome = r.code(), "phone session refused: {r}");
            return Done {
                ok: false,
                outcome: r.code().to_owned(),
                message: r.to_string(),
            };
        }
    }
    let auth = DaemonAuthenticator::new(
        vault.clone(),
        approver,
        cfg.aaguid,
        cfg.approval_timeout,
        cfg.pin_attempts,
    );
    let (done, reached_handshake) = drive(cfg, radio, &uri, auth, events, cancel).await;
    vault.lock_vault();
    if reached_handshake {
        if let Some((digest, stale_after)) = key {
            lock_replay(replay).insert(digest, stale_after, now_unix());
        }
    }
    done
}

/// Runs `hybridd run`.
pub fn run(args: Args) -> ExitCode {
    crate::cmd::init_logging();
    let cfg = match config::load(&args.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hybridd run: {e}");
            return ExitCode::from(2);
        }
    };
    let vault = match open_vault(&cfg.vault) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("hybridd run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let auto = match auto_approver(&cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hybridd run: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hybridd run: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let radio = match make_radio(&cfg).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("hybridd run: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match control::bind(&cfg.socket) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("hybridd run: control socket {}: {e}", cfg.socket.display());
                return ExitCode::FAILURE;
            }
        };
        let socket = cfg.socket.clone();
        tracing::info!(
            socket = %socket.display(),
            vault = %cfg.vault.display(),
            radio = ?cfg.radio,
            tunnel = %cfg.tunnel.base_url().unwrap_or_default(),
            "hybridd ready"
        );
        let daemon = Arc::new(Daemon {
            config: cfg,
            vault,
            radio: Mutex::new(radio),
            replay: std::sync::Mutex::new(ReplaySet::default()),
        });
        let runner: Runner = Arc::new(move |req: SessionRequest| {
            let daemon = daemon.clone();
            let auto = auto.clone();
            Box::pin(async move {
                let approver: Box<dyn Approver> = match auto {
                    Some(a) => Box::new(a),
                    None => Box::new(req.approver),
                };
                let mut radio = daemon.radio.lock().await;
                run_ceremony(
                    &daemon.config,
                    &daemon.vault,
                    radio.as_mut(),
                    &daemon.replay,
                    req.uri,
                    approver,
                    req.events,
                    req.cancel,
                )
                .await
            })
        });
        let server = control::Server::new(listener, socket, runner);
        let (sd_tx, sd_rx) = watch::channel(false);
        let serving = tokio::spawn(server.run(sd_rx));
        crate::cmd::terminate_signal().await;
        let _ = sd_tx.send(true);
        let _ = serving.await;
        tracing::info!("hybridd stopped");
        ExitCode::SUCCESS
    })
}

/// The event name a control client sees for a session event.
pub fn event_name(e: &SessionEvent) -> Option<&'static str> {
    match e {
        SessionEvent::TunnelOpen { .. } => Some("tunnel_open"),
        SessionEvent::AdvertStarted { .. } => Some("advertising"),
        SessionEvent::HandshakeDone { .. } => Some("desktop_connected"),
        // authenticatorGetNextAssertion (CTAP 2.1 §6.3): the computer
        // collects another account of the sign-in already approved.
        SessionEvent::CommandReceived {
            command: hybrid_ctap::command::CMD_GET_NEXT_ASSERTION,
            ..
        } => Some("next_account"),
        SessionEvent::CommandReceived { .. } => Some("request"),
        _ => None,
    }
}

/// Maps a session report (and why the approval failed, if it did) to the
/// `done` message: the session's failure code, else `declined` / `timeout`
/// / `cancelled`, else `ctap_error` for another CTAP status, else success.
pub fn done_from_report(report: &SessionReport, user_error: Option<UserError>) -> Done {
    if let Outcome::Failed(r) = &report.outcome {
        return Done {
            ok: false,
            outcome: r.code().to_owned(),
            message: r.to_string(),
        };
    }
    if report.succeeded() {
        let what = match report.commands.last() {
            Some(0x01) => "passkey created",
            Some(0x02) | Some(0x08) => "signed in",
            _ => "request answered",
        };
        return Done {
            ok: true,
            outcome: "completed".into(),
            message: what.into(),
        };
    }
    let (outcome, message) = match user_error {
        Some(UserError::Declined) => (
            "declined",
            "the request was declined (by you, or after too many wrong PINs)".to_owned(),
        ),
        Some(UserError::Timeout) => ("timeout", "no approval in time".to_owned()),
        Some(_) => ("cancelled", "the approval was cancelled".to_owned()),
        None if report.declined() => ("declined", "the request was declined".to_owned()),
        None if report.user_timed_out() => ("timeout", "no approval in time".to_owned()),
        None => match report.last_status {
            Some(b) => (
                "ctap_error",
                match hybrid_ctap::Ctap2Status::from_byte(b) {
                    Some(st) => format!("the authenticator answered {st:?} (0x{b:02X})"),
                    None => format!("the authenticator answered status 0x{b:02X}"),
                },
            ),
            None => ("ctap_error", "no request was answered".to_owned()),
        },
    };
    Done {
        ok: false,
        outcome: outcome.into(),
        message,
    }
}

/// Runs the phone session (`crate::phone`) with `auth` and maps its
/// report; also says whether a desktop message (msg1) arrived.
async fn drive(
    cfg: &Config,
    radio: &mut dyn Advertiser,
    uri: &str,
    auth: DaemonAuthenticator,
    events: mpsc::UnboundedSender<DaemonMsg>,
    cancel: watch::Receiver<bool>,
) -> (Done, bool) {
    let opts = PhoneOptions {
        session: SessionConfig {
            tunnel: cfg.tunnel.clone(),
            wait_for_desktop: cfg.wait_for_desktop,
            ..SessionConfig::default()
        },
        client: ClientOptions {
            extra_ca_file: cfg.extra_ca_file.clone(),
            ..ClientOptions::default()
        },
        freshness: freshness(cfg),
    };
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(e) = ev_rx.recv().await {
            if let Some(name) = event_name(&e) {
                let _ = events.send(DaemonMsg::Event(name.to_owned()));
            }
        }
    });
    let (report, mut auth) =
        run_phone_session(uri, &opts, radio, auth, Some(ev_tx), Some(cancel)).await;
    let _ = forward.await;
    let user_error = auth.take_user_error();
    (
        done_from_report(&report, user_error),
        report.phases.desktop_message.is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn get_next_assertion_has_its_own_event_name() {
        let at = Instant::now();
        let name = |command| event_name(&SessionEvent::CommandReceived { command, at });
        assert_eq!(name(0x02), Some("request"));
        assert_eq!(name(0x01), Some("request"));
        assert_eq!(name(0x08), Some("next_account"));
    }
}
