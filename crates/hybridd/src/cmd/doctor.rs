//! `hybridd doctor`: is this machine ready to be the phone?
//!
//! Four checks, each printed as one `ok` / `FAIL` line with the fix:
//! 1. Bluetooth (with `radio = "bluez"`): system bus, bluetoothd, adapter,
//!    powered, LE advertising (`hybrid_bluez::check`);
//! 2. the tunnel server (unless `--offline`): DNS, TCP, TLS and the
//!    WebSocket upgrade of a `/cable/new/` to a random tunnel ID, closed at
//!    once (hybrid-protocol.md §4.2);
//! 3. the vault: exists, private permissions, opens, credential count, PIN
//!    attempts left;
//! 4. the control socket: is a daemon answering?
//!
//! Exit status 0 only when every check passes.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hybrid_tunnel::client::{connect_new, ClientOptions};
use hybrid_tunnel::TunnelId;
use rand_core::{OsRng, RngCore};

use crate::config::{self, Config, Overrides, RadioBackend};
use crate::control::{Client, ClientMsg, DaemonMsg, Pong};

/// Arguments of `hybridd doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip the tunnel server check (no network use).
    #[arg(long)]
    pub offline: bool,
    /// Config file.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Vault file.
    #[arg(long, value_name = "PATH")]
    pub vault: Option<PathBuf>,
    /// Control socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Tunnel server base URL to check instead of the configured one.
    #[arg(long, value_name = "URL")]
    pub tunnel_url: Option<String>,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name (`bluetooth`, `tunnel`, `vault`, `daemon`).
    pub name: &'static str,
    /// Passed?
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// The one line printed.
    pub fn line(&self) -> String {
        match &self.fix {
            None => format!("ok   {}: {}", self.name, self.detail),
            Some(f) => format!("FAIL {}: {} — fix: {}", self.name, self.detail, f),
        }
    }
}

/// Runs `hybridd doctor`.
pub fn run(args: Args) -> ExitCode {
    let o = Overrides {
        config: args.config.clone(),
        vault: args.vault.clone(),
        socket: args.socket.clone(),
        tunnel_url: args.tunnel_url.clone(),
        ..Overrides::default()
    };
    let cfg = match config::load(&o) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL config: {e} — fix: correct the file (see docs/operations.md)");
            return ExitCode::FAILURE;
        }
    };
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hybridd doctor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checks = rt.block_on(async {
        vec![
            bluetooth(&cfg).await,
            tunnel(&cfg, args.offline).await,
            vault(&cfg),
            daemon(&cfg).await,
        ]
    });
    let mut all = true;
    for c in &checks {
        println!("{}", c.line());
        all &= c.ok;
    }
    if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn bluetooth(cfg: &Config) -> Check {
    match cfg.radio {
        RadioBackend::File => {
            return Check::pass(
                "bluetooth",
                format!(
                    "not used (file radio → {})",
                    cfg.advert_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ),
            )
        }
        RadioBackend::Stdout => return Check::pass("bluetooth", "not used (stdout radio)"),
        RadioBackend::Bluez => {}
    }
    let adapter = cfg.adapter.as_deref();
    match tokio::time::timeout(Duration::from_secs(15), hybrid_bluez::check_system(adapter)).await {
        Ok(Ok(info)) => Check::pass(
            "bluetooth",
            format!(
                "using adapter {} ({}{}), powered, LE advertising available",
                info.name,
                info.address.as_deref().unwrap_or("no address"),
                if adapter.is_some() {
                    ", as configured"
                } else {
                    ", the first powered one; set adapter = \"hciN\" to choose"
                }
            ),
        ),
        Ok(Err(e)) => Check::fail("bluetooth", e.summary(), e.fix()),
        Err(_) => Check::fail(
            "bluetooth",
            "bluetoothd did not answer within 15 s",
            "sudo systemctl restart bluetooth",
        ),
    }
}

async fn tunnel(cfg: &Config, offline: bool) -> Check {
    let base = cfg.tunnel.base_url().unwrap_or_default();
    if offline {
        return Check::pass("tunnel", format!("{base} not checked (--offline)"));
    }
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let opts = ClientOptions {
        extra_ca_file: cfg.extra_ca_file.clone(),
        ..ClientOptions::default()
    };
    match connect_new(&cfg.tunnel, &TunnelId(id), &opts).await {
        Ok((t, routing)) => {
            let _ = t.close().await;
            let steps = if base.starts_with("wss://") {
                "DNS, TLS, WebSocket upgrade"
            } else {
                "DNS, WebSocket upgrade; plain ws://"
            };
            Check::pass(
                "tunnel",
                format!("{base} reachable ({steps}; routing id {})", routing.to_hex()),
            )
        }
        Err(e) => Check::fail(
            "tunnel",
            format!("{base}: {e}"),
            "check the network, tunnel_url / domain_id, and extra_ca_file for a self-hosted wss:// server",
        ),
    }
}

fn vault(cfg: &Config) -> Check {
    let path = &cfg.vault;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => {
            return Check::fail(
                "vault",
                format!("no vault at {}", path.display()),
                "run `hybridd vault init`",
            )
        }
    };
    if meta.mode() & 0o077 != 0 {
        return Check::fail(
            "vault",
            format!(
                "{} is accessible by other users (mode {:03o})",
                path.display(),
                meta.mode() & 0o777
            ),
            format!("chmod 600 {}", path.display()),
        );
    }
    match hybrid_vault::Vault::open(path) {
        Err(e) => Check::fail(
            "vault",
            e.to_string(),
            "see docs/vault.md (restore from backup or re-create)",
        ),
        Ok(v) => {
            let count = v
                .count()
                .map(|c| c.to_string())
                .unwrap_or_else(|_| "?".into());
            match v.pin_status() {
                Ok(s) if s.retries_left == 0 => Check::fail(
                    "vault",
                    format!("{} is locked after too many wrong PINs", path.display()),
                    "restore the vault from a backup, or destroy it and create a new one",
                ),
                Ok(s) => Check::pass(
                    "vault",
                    format!(
                        "{} opens, {count} passkey(s), {} PIN attempt(s) left",
                        path.display(),
                        s.retries_left
                    ),
                ),
                Err(e) => Check::fail("vault", e.to_string(), "see docs/vault.md"),
            }
        }
    }
}

async fn daemon(cfg: &Config) -> Check {
    let fix = "start it: `systemctl --user start hybridd` (or `hybridd run`)";
    let path = match cfg.socket_path() {
        Ok(p) => p,
        Err(e) => return Check::fail("daemon", e.to_string(), "set XDG_RUNTIME_DIR or `socket`"),
    };
    let r = tokio::time::timeout(Duration::from_secs(3), async {
        let mut c = Client::connect(path).await?;
        c.send(&ClientMsg::Ping).await?;
        c.recv().await.map_err(std::io::Error::other)
    })
    .await;
    match r {
        Ok(Ok(Some(DaemonMsg::Pong(Pong { version, busy, .. })))) => Check::pass(
            "daemon",
            format!(
                "hybridd {version} answers on {}{}",
                path.display(),
                if busy { " (a session is running)" } else { "" }
            ),
        ),
        Ok(Ok(Some(DaemonMsg::Error(e)))) => {
            Check::fail("daemon", format!("{} refused: {e}", path.display()), fix)
        }
        Ok(Ok(_)) => Check::fail(
            "daemon",
            format!("unexpected answer on {}", path.display()),
            fix,
        ),
        Ok(Err(e)) => Check::fail(
            "daemon",
            format!("not running ({}: {e})", path.display()),
            fix,
        ),
        Err(_) => Check::fail(
            "daemon",
            format!("no answer on {} within 3 s", path.display()),
            fix,
        ),
    }
}
