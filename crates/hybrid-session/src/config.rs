//! Session policy: where the tunnel goes and how long each wait may last.

use std::time::Duration;

use hybrid_tunnel_names::TunnelBase;

/// Default [`SessionConfig::wait_for_desktop`]: 120 s (conformance checklist
/// "Desktop never connects"; hybrid-protocol.md §10 step 6 suggests 60–120 s).
pub const DEFAULT_WAIT_FOR_DESKTOP: Duration = Duration::from_secs(120);
/// Default [`SessionConfig::command_timeout`]: 60 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`SessionConfig::shutdown_grace`]: 5 s ("a few seconds", §6.3).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default [`SessionConfig::approval_timeout`]: 60 s.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a [`crate::PhoneSession`] needs besides the QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The tunnel server the phone opens its tunnel on; its domain ID goes
    /// into the advert (§8.3: the phone uses *its* tunnel server).
    pub tunnel: TunnelBase,
    /// How long the advert stays up waiting for the desktop's msg1, counted
    /// from the moment the tunnel opened (§10 step 6). Also bounds the wait
    /// for the tunnel to open.
    pub wait_for_desktop: Duration,
    /// How long to wait for a CTAP request after the handshake (or after a
    /// reply, when more commands are allowed).
    pub command_timeout: Duration,
    /// How long the user has to answer one approval (consent and the PIN,
    /// wrong-PIN back-off included), from
    /// [`crate::PhoneSession::on_user_needed`]; then
    /// [`crate::Action::UserTimedOut`].
    pub approval_timeout: Duration,
    /// How many CTAP requests are answered; 1 like phones do (§8.3). A
    /// further request closes the session ([`crate::FailReason::SecondCommand`]).
    /// 0 is treated as 1. The getNextAssertion follow-ups a getAssertion reply
    /// announces with `numberOfCredentials` do not count (CTAP 2.1 §6.3).
    pub max_commands: usize,
    /// After the last reply, how long to wait for the desktop's shutdown or
    /// close before closing ourselves (§6.3: the phone never sends `00`).
    pub shutdown_grace: Duration,
    /// The authenticator's getInfo response CBOR (no status byte), sent in
    /// the post-handshake message `{1: getInfo, 3: ["ctap"]}` (§6.2).
    pub get_info: Vec<u8>,
}

impl SessionConfig {
    /// The defaults with `tunnel` and `get_info`.
    pub fn new(tunnel: TunnelBase, get_info: Vec<u8>) -> Self {
        SessionConfig {
            tunnel,
            get_info,
            ..SessionConfig::default()
        }
    }
}

impl Default for SessionConfig {
    /// Domain 0 (`cable.ua5v.com`), 120 s / 60 s / 60 s / 1 command / 5 s, and an
    /// **empty** getInfo: set [`SessionConfig::get_info`] (the `hybridd`
    /// driver fills it from its CTAP handler when left empty).
    fn default() -> Self {
        SessionConfig {
            tunnel: TunnelBase::Domain(0),
            wait_for_desktop: DEFAULT_WAIT_FOR_DESKTOP,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            max_commands: 1,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            get_info: Vec::new(),
        }
    }
}
