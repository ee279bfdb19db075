//! hybridd's one error type: every failure a subcommand can report, each
//! with a typed cause and a sentence that names the fix where there is one.
//!
//! Protocol failures of a *session* are not errors here: they end the
//! session with a [`hybrid_session::FailReason`] in the ceremony's
//! [`crate::ceremony::Report`]. CTAP failures are status bytes sent to the
//! desktop.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::ConfigError;
use crate::control::ProtocolError;

/// Why a hybridd command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file or flags are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// There is no vault at the configured path.
    #[error("no vault: run `hybridd vault init` (looked for {})", .0.display())]
    NoVault(PathBuf),
    /// The vault refused or failed.
    #[error(transparent)]
    Vault(#[from] hybrid_vault::VaultError),
    /// The vault's PIN thread is gone (it only stops when the daemon does).
    #[error("the vault's PIN thread stopped")]
    VaultWorker,
    /// A PIN file could not be read.
    #[error("cannot read PIN file {}: {source}", .path.display())]
    PinFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PIN file others could read or substitute.
    #[error("refusing PIN file {}: {why}", .path.display())]
    PinFileUnsafe {
        /// The file.
        path: PathBuf,
        /// Why it is refused, with the fix.
        why: &'static str,
    },
    /// The QR replay memory cannot be used.
    #[error("QR replay file {}: {why}", .path.display())]
    ReplayFile {
        /// The file.
        path: PathBuf,
        /// Why, with the fix.
        why: String,
    },
    /// A PIN file has no PIN on its first line.
    #[error("PIN file {} is empty", .0.display())]
    EmptyPinFile(PathBuf),
    /// The PIN could not be read from the terminal.
    #[error("cannot read the PIN: {0}")]
    Terminal(std::io::Error),
    /// The two entries of a new PIN differ.
    #[error("the two PINs differ; nothing was changed")]
    PinMismatch,
    /// `vault init` never overwrites.
    #[error("a vault already exists at {} and is never overwritten (use `hybridd vault destroy --yes` first, or --vault PATH)", .0.display())]
    VaultExists(PathBuf),
    /// `vault destroy` without `--yes`.
    #[error("this deletes {} and every passkey in it for good; run again with --yes to confirm", .0.display())]
    DestroyUnconfirmed(PathBuf),
    /// A credential ID prefix could not be resolved.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The Bluetooth radio is unusable.
    #[error("Bluetooth: {} — fix: {} (or set radio = \"file\")", .0.summary(), .0.fix())]
    Bluetooth(#[from] hybrid_bluez::BluezError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The control socket could not be bound.
    #[error("control socket {}: {source}", .path.display())]
    ControlSocket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A control-protocol line could not be read or understood.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Standard input could not be read.
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    /// No QR code was given.
    #[error("no QR code given")]
    NoQr,
    /// `hybridd setup` could not finish (the message names what and the fix).
    #[error("{0}")]
    Setup(String),
    /// The screenshot holds no readable QR code.
    #[error(transparent)]
    QrImage(#[from] QrImageError),
    /// A tunnel name (domain, base URL, routing ID) is invalid.
    #[error(transparent)]
    TunnelName(#[from] hybrid_tunnel::TunnelError),
    /// The tunnel failed (connect, send, receive).
    #[error(transparent)]
    Tunnel(#[from] hybrid_tunnel::client::ClientError),
    /// The self-hosted tunnel server could not start.
    #[error(transparent)]
    TunnelServer(#[from] hybrid_tunnel::server::ServerError),
    /// The tunnel server's config file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ServerConfigRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tunnel server's config file is not valid.
    #[error("invalid config {}: {message}", .path.display())]
    ServerConfigParse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (names the key and line).
        message: String,
    },
    /// A listening socket's address could not be read.
    #[error("{0}")]
    Listen(std::io::Error),
    /// `--routing-id` is not 3 bytes of hex.
    #[error("--routing-id {0:?} is not 3 bytes of hex")]
    BadRoutingId(String),
    /// `hybridd demo` failed.
    #[error(transparent)]
    Demo(#[from] DemoError),
}

/// A credential named by an ID prefix (`hybridd credentials delete`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// Not hex.
    #[error("{0:?} is not a hex credential ID or prefix")]
    NotHex(String),
    /// No credential ID starts with the prefix.
    #[error("no passkey has an ID starting with {0}")]
    NoMatch(String),
    /// More than one does.
    #[error("{prefix} is ambiguous: {matches} passkeys match; give more hex digits")]
    Ambiguous {
        /// The prefix (lower-case hex).
        prefix: String,
        /// How many IDs start with it.
        matches: usize,
    },
    /// It was deleted by someone else in between.
    #[error("the passkey disappeared before it could be deleted")]
    Vanished,
}

/// Why a screenshot gave no QR code (`hybridd scan --qr-image`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrImageError {
    /// The file is not a readable PNG or JPEG.
    #[error("cannot read image {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// No QR code was found.
    #[error("no QR code found in the image")]
    NotFound,
    /// A QR code was found but did not decode.
    #[error("a QR code was found but could not be decoded: {0}")]
    Undecodable(rqrr::DeQRError),
}

/// Why `hybridd demo` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The temporary directory could not be made.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// The desktop side failed.
    #[error("{stage}: desktop: {source} (phone: {phone})")]
    Desktop {
        /// `registration` or `sign-in`.
        stage: &'static str,
        /// The desktop's error.
        source: hybrid_initiator::Error,
        /// How the phone's session ended.
        phone: hybrid_session::Outcome,
    },
    /// The phone's session failed.
    #[error("{stage}: phone: {outcome}")]
    Phone {
        /// `registration` or `sign-in`.
        stage: &'static str,
        /// How it ended.
        outcome: hybrid_session::Outcome,
    },
    /// The desktop could not be set up.
    #[error(transparent)]
    Initiator(#[from] hybrid_initiator::Error),
    /// The vault does not hold what was registered.
    #[error("the vault holds {stored} credentials, expected {expected}")]
    Count {
        /// Credentials in the vault.
        stored: u64,
        /// Registrations made.
        expected: u64,
    },
}

impl Error {
    /// The exit status for this error: 2 for bad input or configuration
    /// (fix the command line or the file), 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_)
            | Error::PinFile { .. }
            | Error::PinFileUnsafe { .. }
            | Error::ReplayFile { .. }
            | Error::EmptyPinFile(_)
            | Error::Stdin(_)
            | Error::NoQr
            | Error::QrImage(_)
            | Error::ServerConfigRead { .. }
            | Error::ServerConfigParse { .. }
            | Error::BadRoutingId(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}
