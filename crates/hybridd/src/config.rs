//! The daemon's configuration: `config.toml`, its defaults, and the command
//! line flags that override it (`docs/operations.md`, "Configuration").
//!
//! The file lives at `$XDG_CONFIG_HOME/hybridd/config.toml` (fallback
//! `~/.config/hybridd/config.toml`); a missing file means "all defaults".
//! Every key is optional; an unknown key is an error naming the key, so a
//! typo never silently falls back to a default.
//!
//! Owns: file locations (XDG), parsing, validation and merging. Does not own
//! what the values mean to the protocol (the tunnel domain rules are
//! `hybrid-tunnel`'s, QR freshness is `hybrid-qr`'s).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hybrid_tunnel::TunnelBase;
use serde::Deserialize;

/// Default `wait_for_desktop_secs` (hybrid-protocol.md §10 step 6: 60–120 s).
pub const DEFAULT_WAIT_FOR_DESKTOP_SECS: u64 = 120;
/// Default `approval_timeout_secs`.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 60;
/// Largest accepted `wait_for_desktop_secs`, `approval_timeout_secs` and
/// `max_qr_age_secs`: one day. A larger value is a configuration error,
/// not a deadline that overflows (issue 16).
pub const MAX_DURATION_SECS: u64 = 24 * 60 * 60;
/// Default `max_qr_age_secs` (conformance checklist "QR freshness").
pub const DEFAULT_MAX_QR_AGE_SECS: u64 = 600;
/// Default `pin_attempts`: wrong PINs accepted per approval before it counts as declined.
pub const DEFAULT_PIN_ATTEMPTS: u32 = 3;
/// Default `pinentry`: the program Debian's alternatives point at the
/// user's preferred pinentry (`pinentry-gnome3`, `-qt`, `-curses`, `-tty`).
pub const DEFAULT_PINENTRY: &str = "pinentry";
/// Default `fingerprint_attempts`: fingers that do not match before the fallback.
pub const DEFAULT_FINGERPRINT_ATTEMPTS: u32 = 3;
/// Default `vault_session_idle_secs`: an unused vault session is dropped after 15 minutes.
pub const DEFAULT_VAULT_SESSION_IDLE_SECS: u64 = 900;

/// Which radio broadcasts the advert (hybrid-protocol.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RadioBackend {
    /// BlueZ over D-Bus (`hybrid-bluez`): a real Bluetooth LE advert.
    #[default]
    Bluez,
    /// Adverts written as hex lines to `advert_file` (tests, VMs, no radio).
    File,
    /// Adverts written as hex lines to standard output.
    Stdout,
}

/// How approvals are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// Ask a person: the `hybridd scan` client on its terminal (or the
    /// terminal in `--standalone`); a request that did not come from a
    /// terminal (a `FIDO:/` link opened by `xdg-open`, `hybridd scan -` in
    /// a pipe) is asked through a desktop notification.
    #[default]
    Interactive,
    /// Always ask through a desktop notification (`org.freedesktop.Notifications`).
    Notification,
    /// Approve everything with the PIN in `pin_file`. For tests only: any
    /// desktop that scans a QR this device answers gets a signature.
    Auto,
}

/// How the person is verified (user verification) once they consented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// The vault PIN, asked together with the consent on the terminal; when
    /// the consent came from a notification, through pinentry.
    #[default]
    Pin,
    /// The vault PIN, always through the `pinentry` program.
    Pinentry,
    /// A fingerprint through fprintd, against an open vault session
    /// (`hybridd unlock`, or the PIN through pinentry at the first request).
    Fingerprint,
}

/// What happens when the fingerprint cannot verify (no fprintd, no reader,
/// no enrolled finger, or `fingerprint_attempts` fingers that did not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FingerprintFallback {
    /// Ask for the vault PIN through pinentry.
    #[default]
    Pinentry,
    /// Decline the request.
    Decline,
}

/// `config.toml` as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Vault file. Default `$XDG_DATA_HOME/hybridd/vault.db`.
    pub vault: Option<PathBuf>,
    /// Control socket. Default `$XDG_RUNTIME_DIR/hybridd/control.sock`
    /// (no default without `XDG_RUNTIME_DIR`).
    pub socket: Option<PathBuf>,
    /// Tunnel server domain ID put in the advert (0, 1 or ≥ 256; §4.1). Default 0.
    pub domain_id: Option<u16>,
    /// Explicit tunnel server base URL (`ws://…`/`wss://…`), overriding the
    /// host derived from `domain_id` (which is still advertised). `ws://`
    /// only to a loopback address unless `allow_plain_ws_tunnel`.
    pub tunnel_url: Option<String>,
    /// Opt-in: allow an unencrypted `ws://` `tunnel_url` to a host that is
    /// not loopback. Default false.
    pub allow_plain_ws_tunnel: Option<bool>,
    /// Extra CA certificate (PEM) trusted for `wss://` tunnel servers.
    pub extra_ca_file: Option<PathBuf>,
    /// Radio backend. Default `bluez`.
    pub radio: Option<RadioBackend>,
    /// BlueZ adapter (`"hci1"`). Default: the first powered one
    /// (`hybrid_bluez::choose_adapter`; `hybridd doctor` names it).
    pub adapter: Option<String>,
    /// File the `file` radio writes adverts to.
    pub advert_file: Option<PathBuf>,
    /// How long the advert stays up waiting for the desktop. Default 120.
    pub wait_for_desktop_secs: Option<u64>,
    /// How long the user has to approve. Default 60.
    pub approval_timeout_secs: Option<u64>,
    /// Oldest QR code accepted, in seconds. Default 600.
    pub max_qr_age_secs: Option<u64>,
    /// Accept a QR code without a timestamp (key 3). Default false.
    pub allow_qr_without_timestamp: Option<bool>,
    /// Wrong PINs allowed per approval. Default 3.
    pub pin_attempts: Option<u32>,
    /// `interactive` (default), `notification` or `auto`.
    pub approval: Option<ApprovalMode>,
    /// `pin` (default), `pinentry` or `fingerprint`.
    pub verify: Option<VerifyMode>,
    /// The pinentry program. Default `pinentry`.
    pub pinentry: Option<PathBuf>,
    /// The terminal a terminal pinentry (`pinentry-tty`, `-curses`) shows
    /// on. Default: none (a graphical pinentry).
    pub pinentry_tty: Option<PathBuf>,
    /// `pinentry` (default) or `decline`.
    pub fingerprint_fallback: Option<FingerprintFallback>,
    /// Fingers that do not match before the fallback. Default 3.
    pub fingerprint_attempts: Option<u32>,
    /// An unused vault session is dropped after this many seconds. Default 900.
    pub vault_session_idle_secs: Option<u64>,
    /// File holding the PIN for `approval = "auto"`.
    pub pin_file: Option<PathBuf>,
    /// AAGUID as 32 hex characters. Default: hybridd's own.
    pub aaguid: Option<String>,
}

/// Command line flags shared by `hybridd run` and `hybridd scan --standalone`;
/// each one overrides the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Config file to read instead of `$XDG_CONFIG_HOME/hybridd/config.toml`.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Vault file.
    #[arg(long, value_name = "PATH")]
    pub vault: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Tunnel server base URL, e.g. `ws://127.0.0.1:8080`.
    #[arg(long, value_name = "URL")]
    pub tunnel_url: Option<String>,
    /// Tunnel domain ID to advertise.
    #[arg(long, value_name = "ID")]
    pub domain_id: Option<u16>,
    /// Extra CA certificate (PEM) for `wss://`.
    #[arg(long = "extra-ca", value_name = "PATH")]
    pub extra_ca_file: Option<PathBuf>,
    /// Use the file radio, writing adverts to this file.
    #[arg(long, value_name = "PATH")]
    pub advert_file: Option<PathBuf>,
    /// Use the stdout radio (adverts printed as hex lines).
    #[arg(long)]
    pub advert_stdout: bool,
    /// Approval mode: `interactive`, `notification` or `auto` (auto needs `--pin-file`).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub approval: Option<ApprovalMode>,
    /// PIN file for `--approval auto`.
    #[arg(long, value_name = "PATH")]
    pub pin_file: Option<PathBuf>,
    /// Seconds to wait for the desktop after the tunnel opened.
    #[arg(long, value_name = "SECS")]
    pub wait_for_desktop_secs: Option<u64>,
    /// Seconds the user has to approve.
    #[arg(long, value_name = "SECS")]
    pub approval_timeout_secs: Option<u64>,
}

fn parse_mode(s: &str) -> Result<ApprovalMode, ConfigError> {
    match s {
        "interactive" => Ok(ApprovalMode::Interactive),
        "notification" => Ok(ApprovalMode::Notification),
        "auto" => Ok(ApprovalMode::Auto),
        other => Err(ConfigError::Invalid(format!(
            "unknown approval mode {other:?}: use interactive, notification or auto"
        ))),
    }
}

/// The effective configuration after defaults, file and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the config came from (`None`: no file, defaults only).
    pub source: Option<PathBuf>,
    /// Vault file.
    pub vault: PathBuf,
    /// Control socket; `None` when neither configured nor derivable (no
    /// `XDG_RUNTIME_DIR`): see [`Config::socket_path`].
    pub socket: Option<PathBuf>,
    /// The tunnel server to use and the domain ID to advertise.
    pub tunnel: TunnelBase,
    /// Extra CA for `wss://`.
    pub extra_ca_file: Option<PathBuf>,
    /// Radio backend.
    pub radio: RadioBackend,
    /// BlueZ adapter name; `None`: the first powered one.
    pub adapter: Option<String>,
    /// File radio target (required when `radio = "file"`).
    pub advert_file: Option<PathBuf>,
    /// Wait for the desktop's handshake.
    pub wait_for_desktop: Duration,
    /// Time the user has to approve.
    pub approval_timeout: Duration,
    /// Oldest QR accepted, seconds.
    pub max_qr_age_secs: u64,
    /// Accept a QR without a timestamp (key 3).
    pub allow_qr_without_timestamp: bool,
    /// Wrong PINs allowed per approval.
    pub pin_attempts: u32,
    /// Approval mode.
    pub approval: ApprovalMode,
    /// PIN file for `auto`.
    pub pin_file: Option<PathBuf>,
    /// User verification.
    pub verify: VerifyMode,
    /// The pinentry program and the terminal it shows on.
    pub pinentry: PinentrySettings,
    /// What replaces a fingerprint that cannot verify.
    pub fingerprint_fallback: FingerprintFallback,
    /// Fingers that do not match before the fallback (at least 1).
    pub fingerprint_attempts: u32,
    /// How long an unused vault session lives.
    pub vault_session_idle: Duration,
    /// AAGUID.
    pub aaguid: [u8; 16],
}

/// Which pinentry to run (`pinentry`, `pinentry_tty`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinentrySettings {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// The terminal of a terminal pinentry; `None` for a graphical one.
    pub tty: Option<PathBuf>,
}

/// Why the configuration is unusable. Each message names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of its allowed range or combination.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// `$XDG_CONFIG_HOME` or `~/.config`.
pub fn config_home() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config")
}

/// `$XDG_DATA_HOME` or `~/.local/share`.
pub fn data_home() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share")
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => home().join(fallback),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The default config file path.
pub fn default_config_path() -> PathBuf {
    config_home().join("hybridd").join("config.toml")
}

/// The default vault path.
pub fn default_vault_path() -> PathBuf {
    data_home().join("hybridd").join("vault.db")
}

/// The directory holding the control socket: `$XDG_RUNTIME_DIR/hybridd`
/// (created 0700 by the daemon); `None` without an absolute
/// `XDG_RUNTIME_DIR`. There is deliberately no fallback in a shared
/// directory such as `/tmp`: another local user could create the path
/// first and answer `hybridd scan` with a fake prompt that collects the
/// PIN (issue 16).
pub fn default_socket_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if Path::new(&v).is_absolute() => Some(PathBuf::from(v).join("hybridd")),
        _ => None,
    }
}

/// The default control socket path (see [`default_socket_dir`]).
pub fn default_socket_path() -> Option<PathBuf> {
    default_socket_dir().map(|d| d.join("control.sock"))
}

/// Why there is no control socket path, and the fix.
pub const NO_SOCKET_PATH: &str = "no control socket path: XDG_RUNTIME_DIR is not set \
     (a systemd user session sets it); set XDG_RUNTIME_DIR to a directory only you can \
     access, or set `socket` in config.toml, or pass --socket";

impl Config {
    /// The control socket path, or the configuration error naming the fix.
    pub fn socket_path(&self) -> Result<&Path, ConfigError> {
        self.socket
            .as_deref()
            .ok_or_else(|| ConfigError::Invalid(NO_SOCKET_PATH.into()))
    }
}

/// This process's real user ID.
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Parses `config.toml` text.
pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

/// Reads the config file (the explicit one, else the default path; a
/// missing default file is fine, a missing explicit one is not) and applies
/// the flags.
pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
    let (path, explicit) = match &overrides.config {
        Some(p) => (p.clone(), true),
        None => (default_config_path(), false),
    };
    let (file, source) = match std::fs::read_to_string(&path) {
        Ok(text) => (parse_file(&text, &path)?, Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            (FileConfig::default(), None)
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    resolve(file, overrides, source)
}

/// Merges defaults, `file` and `overrides` into a [`Config`] and validates it.
pub fn resolve(
    file: FileConfig,
    o: &Overrides,
    source: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let domain_id = o.domain_id.or(file.domain_id).unwrap_or(0);
    let tunnel_url = o.tunnel_url.clone().or(file.tunnel_url);
    let tunnel = match tunnel_url {
        Some(url) if file.allow_plain_ws_tunnel == Some(true) => {
            TunnelBase::url_allowing_plain(&url, domain_id)
                .map_err(|e| ConfigError::Invalid(format!("tunnel_url: {e}")))?
        }
        Some(url) => TunnelBase::url(&url, domain_id).map_err(|e| {
            ConfigError::Invalid(format!(
                "tunnel_url: {e} (`allow_plain_ws_tunnel = true` in config.toml)"
            ))
        })?,
        None => {
            hybrid_tunnel::names::domain_name(domain_id)
                .map_err(|e| ConfigError::Invalid(format!("domain_id: {e}")))?;
            TunnelBase::Domain(domain_id)
        }
    };
    let advert_file = o.advert_file.clone().or(file.advert_file);
    let radio = if o.advert_stdout {
        RadioBackend::Stdout
    } else if o.advert_file.is_some() {
        RadioBackend::File
    } else {
        file.radio.unwrap_or_default()
    };
    if radio == RadioBackend::File && advert_file.is_none() {
        return Err(ConfigError::Invalid(
            "radio = \"file\" needs advert_file (or --advert-file)".into(),
        ));
    }
    let approval = o.approval.or(file.approval).unwrap_or_default();
    let pin_file = o.pin_file.clone().or(file.pin_file);
    if approval == ApprovalMode::Auto && pin_file.is_none() {
        return Err(ConfigError::Invalid(
            "approval = \"auto\" needs pin_file (or --pin-file)".into(),
        ));
    }
    let aaguid = match file.aaguid {
        None => hybrid_ctap::DEFAULT_AAGUID,
        Some(h) => {
            let bytes = hex::decode(h.replace('-', ""))
                .map_err(|_| ConfigError::Invalid("aaguid is not hex".into()))?;
            <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| {
                ConfigError::Invalid("aaguid must be 16 bytes (32 hex characters)".into())
            })?
        }
    };
    let secs = |flag: Option<u64>, key: Option<u64>, default: u64, name: &str| {
        let v = flag.or(key).unwrap_or(default);
        if v == 0 {
            Err(ConfigError::Invalid(format!("{name} must be at least 1")))
        } else if v > MAX_DURATION_SECS {
            Err(ConfigError::Invalid(format!(
                "{name} must be at most {MAX_DURATION_SECS} (one day)"
            )))
        } else {
            Ok(v)
        }
    };
    Ok(Config {
        source,
        vault: o
            .vault
            .clone()
            .or(file.vault)
            .unwrap_or_else(default_vault_path),
        socket: o
            .socket
            .clone()
            .or(file.socket)
            .or_else(default_socket_path),
        tunnel,
        extra_ca_file: o.extra_ca_file.clone().or(file.extra_ca_file),
        radio,
        adapter: file.adapter,
        advert_file,
        wait_for_desktop: Duration::from_secs(secs(
            o.wait_for_desktop_secs,
            file.wait_for_desktop_secs,
            DEFAULT_WAIT_FOR_DESKTOP_SECS,
            "wait_for_desktop_secs",
        )?),
        approval_timeout: Duration::from_secs(secs(
            o.approval_timeout_secs,
            file.approval_timeout_secs,
            DEFAULT_APPROVAL_TIMEOUT_SECS,
            "approval_timeout_secs",
        )?),
        max_qr_age_secs: secs(
            None,
            file.max_qr_age_secs,
            DEFAULT_MAX_QR_AGE_SECS,
            "max_qr_age_secs",
        )?,
        allow_qr_without_timestamp: file.allow_qr_without_timestamp.unwrap_or(false),
        pin_attempts: file.pin_attempts.unwrap_or(DEFAULT_PIN_ATTEMPTS).max(1),
        approval,
        pin_file,
        verify: file.verify.unwrap_or_default(),
        pinentry: PinentrySettings {
            program: file
                .pinentry
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PINENTRY)),
            tty: file.pinentry_tty,
        },
        fingerprint_fallback: file.fingerprint_fallback.unwrap_or_default(),
        fingerprint_attempts: file
            .fingerprint_attempts
            .unwrap_or(DEFAULT_FINGERPRINT_ATTEMPTS)
            .max(1),
        vault_session_idle: Duration::from_secs(secs(
            None,
            file.vault_session_idle_secs,
            DEFAULT_VAULT_SESSION_IDLE_SECS,
            "vault_session_idle_secs",
        )?),
        aaguid,
    })
}

/// Whether `HYBRIDD_INSECURE_FAST_KDF=1` asks for the test-only KDF cost.
pub fn insecure_fast_kdf() -> bool {
    std::env::var("HYBRIDD_INSECURE_FAST_KDF").is_ok_and(|v| v == "1")
}

/// The KDF parameters for new vaults / PIN changes: the default, or the
/// test-only cheap ones with a loud warning under `HYBRIDD_INSECURE_FAST_KDF=1`.
pub fn kdf_params() -> hybrid_vault::KdfParams {
    if insecure_fast_kdf() {
        eprintln!(
            "hybridd: WARNING: HYBRIDD_INSECURE_FAST_KDF=1: the vault PIN key uses test-only \
             Argon2 parameters and can be brute-forced; never use this for real credentials"
        );
        hybrid_vault::KdfParams::INSECURE_FOR_TESTS
    } else {
        hybrid_vault::KdfParams::DEFAULT
    }
}

#[cfg(test)]
mod security_tests;

#[cfg(test)]
mod tests;
