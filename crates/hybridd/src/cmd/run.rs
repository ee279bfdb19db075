//! `hybridd run`: the daemon.
//!
//! Opens the vault (it must exist) on its worker thread, prepares the radio
//! (BlueZ, file or stdout), binds the control socket and serves `hybridd
//! scan` clients, one session at a time, until SIGINT/SIGTERM (which
//! cancels a running session and removes the socket). After every session,
//! successful or not, it is ready for the next. See `docs/operations.md`.
//!
//! [`Daemon::ceremony`] is the one session, shared with `hybridd scan
//! --standalone`: the ceremony core ([`crate::ceremony`]) with the vault
//! worker as authenticator and PIN verifier, and the session's front-end
//! (or automatic approval): the `hybridd scan` client's terminal, or the
//! desktop ([`FrontEnd::Desktop`]: a notification, then pinentry or a
//! fingerprint per `verify`). With `verify = "fingerprint"` the daemon
//! keeps a vault session ([`crate::vault_session`]).

use std::process::ExitCode;
use std::sync::Arc;

use hybrid_ble::Advertiser;
use hybrid_tunnel::client::ClientOptions;
use hybrid_vault::{Vault, VaultError};
use tokio::sync::{watch, Mutex};

use crate::approval::{
    Approvals, Approver, AutoApprover, FingerprintVerification, NotificationApprover,
    PinentryVerification, Verification,
};
use crate::ceremony::{
    BluezL2cap, CancelSignal, Ceremony, CeremonyOptions, L2capRadio, Progress, Report,
};
use crate::config::{self, ApprovalMode, Config, Overrides, RadioBackend, VerifyMode};
use crate::control::{self, DaemonMsg, Runner, SessionRequest};
use crate::error::Error;
use crate::replay::ReplaySet;
use crate::vault::VaultWorker;

/// Arguments of `hybridd run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Settings overriding the config file.
    #[command(flatten)]
    pub overrides: Overrides,
}

/// What the daemon's sessions share, one session at a time.
struct Shared {
    radio: Box<dyn Advertiser>,
    replay: ReplaySet,
}

/// Who asks the person for one ceremony.
pub enum FrontEnd {
    /// A terminal: the `hybridd scan` client's, or this process's
    /// (`--standalone`). Under `approval = "notification"` the desktop asks
    /// instead.
    Terminal(Box<dyn Approver>),
    /// The desktop (the request came without a terminal): a notification,
    /// its failures also sent to a waiting client on `events`.
    Desktop(Option<tokio::sync::mpsc::UnboundedSender<DaemonMsg>>),
}

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrontEnd::Terminal(_) => "Terminal",
            FrontEnd::Desktop(_) => "Desktop",
        })
    }
}

/// The daemon: configuration, the vault worker, automatic approval if
/// configured, and the radio and replay set its sessions take turns with.
pub struct Daemon {
    config: Config,
    vault: VaultWorker,
    auto: Option<AutoApprover>,
    l2cap: Option<Box<dyn L2capRadio>>,
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Opens the vault named in the config with a clear error when there is none.
pub fn open_vault(path: &std::path::Path) -> Result<Vault, Error> {
    Vault::open(path).map_err(|e| match e {
        VaultError::NoVault(p) => Error::NoVault(p),
        e => Error::Vault(e),
    })
}

/// Builds the configured radio. BlueZ is checked once here, so a daemon
/// without a usable adapter fails at start with the fix.
pub async fn make_radio(cfg: &Config) -> Result<Box<dyn Advertiser>, Error> {
    match (cfg.radio, &cfg.advert_file) {
        (RadioBackend::File, Some(path)) => Ok(Box::new(hybrid_ble::FileRadio::to_file(path))),
        (RadioBackend::File, None) => {
            Err(config::ConfigError::Invalid("radio = \"file\" needs advert_file".into()).into())
        }
        (RadioBackend::Stdout, _) => Ok(Box::new(hybrid_ble::FileRadio::to_stdout())),
        (RadioBackend::Bluez, _) => {
            let bc = hybrid_bluez::BluezConfig {
                adapter: cfg.adapter.clone(),
                ..hybrid_bluez::BluezConfig::default()
            };
            Ok(Box::new(hybrid_bluez::BluezAdvertiser::system(bc).await?))
        }
    }
}

/// CTAP 2.3's BLE L2CAP listener for the BlueZ radio (on the same adapter);
/// none for the file and stdout radios. `HYBRIDD_TEST_L2CAP_REFUSE=1`
/// (tests only) advertises the PSM with the listener closed, so desktops'
/// connects fail and they fall back to the tunnel.
pub async fn make_l2cap(cfg: &Config) -> Option<Box<dyn L2capRadio>> {
    if cfg.radio != RadioBackend::Bluez {
        return None;
    }
    match BluezL2cap::system(cfg.adapter.clone()).await {
        Ok(l) if std::env::var("HYBRIDD_TEST_L2CAP_REFUSE").is_ok_and(|v| v == "1") => {
            tracing::warn!(
                "HYBRIDD_TEST_L2CAP_REFUSE=1: L2CAP connects will be refused (tests only)"
            );
            Some(Box::new(l.refusing_connections()))
        }
        Ok(l) => Some(Box::new(l)),
        Err(e) => {
            tracing::warn!("no BLE L2CAP channel, the tunnel only: {e}");
            None
        }
    }
}

/// The approver for `approval = "auto"`, with the start-up warning.
pub fn auto_approver(cfg: &Config) -> Result<Option<AutoApprover>, Error> {
    if cfg.approval != ApprovalMode::Auto {
        return Ok(None);
    }
    let path = cfg
        .pin_file
        .as_deref()
        .ok_or_else(|| config::ConfigError::Invalid("approval = \"auto\" needs pin_file".into()))?;
    let a = AutoApprover::from_file(path)?;
    tracing::warn!(
        "automatic approval is enabled: any desktop that scans a QR code handed to this daemon \
         gets a passkey created or a sign-in approved, with user verification, without anyone \
         being asked — for tests only"
    );
    Ok(Some(a))
}

impl Daemon {
    /// Opens the vault and starts its worker, reads the PIN file of
    /// automatic approval, builds the radio.
    pub async fn open(config: Config) -> Result<Daemon, Error> {
        let vault = open_vault(&config.vault)?;
        // QR replay entries the vault committed with PIN attempts: the
        // file below may have lost its last unsynced lines to a power loss.
        let used_qrs = vault.used_qrs()?;
        let auto = auto_approver(&config)?;
        let vault = if config.verify == VerifyMode::Fingerprint {
            crate::vault_session::harden_process();
            VaultWorker::spawn_with_sessions(vault, config.aaguid, config.vault_session_idle)?
        } else {
            VaultWorker::spawn(vault, config.aaguid)?
        };
        let radio = make_radio(&config).await?;
        let l2cap = make_l2cap(&config).await;
        // The replay memory lives beside the vault (the daemon's state
        // directory, 0700, writable under the systemd unit).
        let replay_file = config
            .vault
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(crate::replay::FILE_NAME);
        let mut replay = ReplaySet::persistent(&replay_file, crate::replay::DEFAULT_CAPACITY)?;
        replay.recover(&used_qrs, crate::ceremony::unix_now());
        vault.carry_replay(replay.undurable()).await;
        Ok(Daemon {
            vault,
            auto,
            l2cap,
            shared: Mutex::new(Shared { radio, replay }),
            config,
        })
    }

    /// The ceremony options of the configuration.
    pub fn options(&self) -> CeremonyOptions {
        let cfg = &self.config;
        let mut session = hybrid_session::SessionConfig::new(cfg.tunnel.clone(), Vec::new());
        session.wait_for_desktop = cfg.wait_for_desktop;
        session.approval_timeout = cfg.approval_timeout;
        CeremonyOptions {
            session,
            client: ClientOptions {
                extra_ca_file: cfg.extra_ca_file.clone(),
                ..ClientOptions::default()
            },
            freshness: hybrid_qr::Freshness {
                max_age_secs: cfg.max_qr_age_secs,
                ..hybrid_qr::Freshness::default()
            },
            allow_qr_without_timestamp: cfg.allow_qr_without_timestamp,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The vault worker.
    pub fn vault(&self) -> &VaultWorker {
        &self.vault
    }

    /// The configured pinentry, with the approval timeout per request.
    pub fn pinentry(&self) -> PinentryVerification {
        PinentryVerification::new(&self.config.pinentry, self.config.approval_timeout)
    }

    /// The approvals of one ceremony: who gives consent (automatic
    /// approval, the terminal, or the desktop's notification) and, when
    /// consent comes without a PIN, who verifies (`verify`).
    pub fn approvals(&self, front_end: FrontEnd) -> Approvals<VaultWorker> {
        let cfg = &self.config;
        let (consent, desktop): (Box<dyn Approver>, bool) = match (&self.auto, front_end) {
            (Some(a), _) => (Box::new(a.clone()), false),
            (None, FrontEnd::Desktop(events)) => (
                Box::new(NotificationApprover::new(cfg.approval_timeout, events)),
                true,
            ),
            (None, FrontEnd::Terminal(_)) if cfg.approval == ApprovalMode::Notification => (
                Box::new(NotificationApprover::new(cfg.approval_timeout, None)),
                true,
            ),
            (None, FrontEnd::Terminal(t)) => (t, false),
        };
        let verification: Option<Box<dyn Verification>> = match cfg.verify {
            // Automatic approval brings its PIN file's PIN.
            _ if self.auto.is_some() => None,
            // The terminal asks for the PIN with the consent.
            VerifyMode::Pin if !desktop => None,
            VerifyMode::Pin | VerifyMode::Pinentry => Some(Box::new(self.pinentry())),
            VerifyMode::Fingerprint => Some(Box::new(FingerprintVerification::new(
                self.vault.clone(),
                self.pinentry(),
                cfg.fingerprint_fallback,
                cfg.fingerprint_attempts,
                cfg.approval_timeout,
            ))),
        };
        Approvals::new(consent, self.vault.clone(), cfg.pin_attempts)
            .with_verification(verification)
    }

    /// One ceremony for `uri`, asking through `front_end` (unless approval
    /// is automatic); waits for a running one to end first. The vault is
    /// locked afterwards (unless a vault session keeps it open).
    pub async fn ceremony(
        &self,
        uri: &str,
        front_end: FrontEnd,
        progress: &dyn Progress,
        cancel: CancelSignal,
    ) -> Report {
        let mut user = self.approvals(front_end);
        let mut authenticator = self.vault.clone();
        let mut shared = self.shared.lock().await;
        let Shared { radio, replay } = &mut *shared;
        Ceremony {
            radio: radio.as_mut(),
            authenticator: &mut authenticator,
            user: &mut user,
            replay,
            progress,
            cancel: Some(cancel),
            l2cap: self.l2cap.as_deref(),
        }
        .run(uri, &self.options())
        .await
    }
}

/// Runs `hybridd run`.
pub fn run(args: Args) -> ExitCode {
    crate::cmd::init_logging();
    crate::cmd::exit("run", daemon(&args))
}

fn daemon(args: &Args) -> Result<ExitCode, Error> {
    let cfg = config::load(&args.overrides)?;
    crate::cmd::daemon_runtime()?.block_on(async move {
        let socket = cfg.socket_path()?.to_owned();
        let daemon = Daemon::open(cfg).await?;
        let listener = control::bind(&socket).map_err(|source| Error::ControlSocket {
            path: socket.clone(),
            source,
        })?;
        tracing::info!(
            socket = %socket.display(),
            vault = %daemon.config.vault.display(),
            radio = ?daemon.config.radio,
            tunnel = %daemon.config.tunnel.base_url().unwrap_or_default(),
            "hybridd ready"
        );
        let (sd_tx, sd_rx) = watch::channel(false);
        let guard = match daemon.config.verify {
            VerifyMode::Fingerprint => Some(
                crate::vault_session::start_guard(
                    daemon.vault.clone(),
                    daemon.config.vault_session_idle,
                    sd_rx.clone(),
                )
                .await,
            ),
            _ => None,
        };
        let daemon = Arc::new(daemon);
        let for_sessions = daemon.clone();
        let runner: Runner = Arc::new(move |req: SessionRequest| {
            let daemon = daemon.clone();
            Box::pin(async move {
                let front_end = if req.terminal {
                    FrontEnd::Terminal(Box::new(req.approver))
                } else {
                    FrontEnd::Desktop(Some(req.events.clone()))
                };
                let report = daemon
                    .ceremony(&req.uri, front_end, &req.events, req.cancel)
                    .await;
                report.done()
            })
        });
        let mut server = control::Server::new(listener, socket, runner);
        if guard.is_some() {
            server = server.with_vault_sessions(for_sessions);
        }
        let serving = tokio::spawn(server.run(sd_rx));
        crate::cmd::terminate_signal().await;
        let _ = sd_tx.send(true);
        let _ = serving.await;
        if let Some(guard) = guard {
            let _ = guard.await;
        }
        tracing::info!("hybridd stopped");
        Ok(ExitCode::SUCCESS)
    })
}
