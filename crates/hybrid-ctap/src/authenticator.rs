//! The authenticator state machine: one request in, a [`Step`] out — the
//! response, or a question for the user that [`Authenticator::resume`]
//! answers (sans-IO; CTAP 2.1 §6 "Authenticator API").

use std::collections::VecDeque;

use crate::command::{
    CMD_GET_ASSERTION, CMD_GET_INFO, CMD_GET_NEXT_ASSERTION, CMD_MAKE_CREDENTIAL,
};
use crate::env::{Approval, ApprovalRequest, Command, Env, RequestContext, UserError};
use crate::error::Error;
use crate::get_assertion::GaPlan;
use crate::get_info::GetInfoResponse;
use crate::make_credential::{McPlan, McStage};
use crate::status::Ctap2Status;
use crate::step::{Reply, Step};
use crate::store::CredentialMeta;
use crate::types::PrfInput;

/// hybridd's AAGUID, `dda76cf2-ddfc-435b-83db-2d0dec8c9ef3`: a random
/// version-4 UUID generated once for this project (not registered with the
/// FIDO MDS). Override with [`Config::aaguid`].
pub const DEFAULT_AAGUID: [u8; 16] = [
    0xdd, 0xa7, 0x6c, 0xf2, 0xdd, 0xfc, 0x43, 0x5b, 0x83, 0xdb, 0x2d, 0x0d, 0xec, 0x8c, 0x9e, 0xf3,
];

/// Default `maxMsgSize`: 16 KiB, the tunnel frame limit used by the
/// webauthn-rs backend (conformance checklist, message layer).
pub const DEFAULT_MAX_MSG_SIZE: usize = 16 * 1024;

/// getNextAssertion window (CTAP 2.1 §6.3: 30 s, OpenSK
/// `STATEFUL_COMMAND_TIMEOUT_DURATION_MS`).
pub const NEXT_ASSERTION_TIMEOUT_MS: u64 = 30_000;

/// Length of the credential IDs we mint (random bytes).
pub const CREDENTIAL_ID_LEN: usize = 32;

/// The RP ID Chrome uses for its "collect a touch" dummy makeCredential
/// (hybrid-protocol.md §7.2); never stored.
pub const DUMMY_RP_ID: &str = ".dummy";

/// Authenticator configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// AAGUID in getInfo and attested credential data.
    pub aaguid: [u8; 16],
    /// Largest accepted request (command byte + CBOR); also getInfo key 5.
    pub max_msg_size: usize,
    /// getNextAssertion window in milliseconds.
    pub next_assertion_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            aaguid: DEFAULT_AAGUID,
            max_msg_size: DEFAULT_MAX_MSG_SIZE,
            next_assertion_timeout_ms: NEXT_ASSERTION_TIMEOUT_MS,
        }
    }
}

/// State kept between a discovery getAssertion and its getNextAssertions
/// (CTAP 2.1 §6.2.2 step 13, §6.3).
pub(crate) struct PendingAssertions {
    pub rp_id: String,
    pub client_data_hash: Vec<u8>,
    pub remaining: VecDeque<CredentialMeta>,
    pub flags: u8,
    pub user_verified: bool,
    pub prf: Option<PrfInput>,
    pub deadline_ms: u64,
}

/// A request parked until the user answers (the yield points of
/// CTAP 2.1 §6.1.2 and §6.2.2).
pub(crate) enum Waiting {
    /// A zero-length `pinUvAuthParam`: a touch, then `PIN_NOT_SET`.
    PresenceOnly,
    /// makeCredential, at the excludeList check or at consent.
    MakeCredential(Box<McPlan>, McStage),
    /// getAssertion, at consent.
    GetAssertion(Box<GaPlan>),
}

/// What the request being processed turned into.
pub(crate) enum Flow {
    /// The response body (after the `CTAP2_OK` byte).
    Done(Vec<u8>),
    /// Ask the user this, and park the request.
    Ask(ApprovalRequest, Waiting),
}

/// A CTAP2 authenticator over an [`Env`].
pub struct Authenticator<E: Env> {
    pub(crate) config: Config,
    pub(crate) env: E,
    pub(crate) pending: Option<PendingAssertions>,
    /// The request waiting for the user, with its command byte.
    waiting: Option<(u8, Waiting)>,
}

impl<E: Env> core::fmt::Debug for Authenticator<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("pending", &self.pending.as_ref().map(|p| p.remaining.len()))
            .field("waiting", &self.waiting.as_ref().map(|w| w.0))
            .finish_non_exhaustive()
    }
}

impl<E: Env> Authenticator<E> {
    /// A new authenticator.
    pub fn new(config: Config, env: E) -> Self {
        Authenticator {
            config,
            env,
            pending: None,
            waiting: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The environment (tests advance fake clocks through this).
    pub fn env(&self) -> &E {
        &self.env
    }

    /// The environment, mutably.
    pub fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// Consumes the authenticator, returning the environment.
    pub fn into_env(self) -> E {
        self.env
    }

    /// Forgets per-session state (pending getNextAssertion, a request
    /// waiting for the user). The daemon calls this when a hybrid session
    /// ends, so state never crosses sessions (checklist: getNextAssertion
    /// "on another channel" → NOT_ALLOWED).
    pub fn end_session(&mut self) {
        self.pending = None;
        self.waiting = None;
    }

    /// Whether a request is parked until [`Authenticator::resume`].
    pub fn is_waiting_for_user(&self) -> bool {
        self.waiting.is_some()
    }

    /// The getInfo response this authenticator sends (also the body of the
    /// hybrid post-handshake message, hybrid-protocol.md §6.2).
    pub fn get_info(&self) -> GetInfoResponse {
        GetInfoResponse::for_phone(self.config.aaguid, self.config.max_msg_size as u64)
    }

    /// Processes one CTAP request (`command byte || CBOR parameters`).
    /// Never panics; every failure is a one-byte status reply.
    ///
    /// Returns [`Step::Reply`], or [`Step::NeedsUser`] when the request
    /// needs the user (presence-only touch, excludeList hit, consent): the
    /// request is then parked and continues with [`Authenticator::resume`].
    /// A new request while one is parked abandons the parked one.
    ///
    /// * empty request → `CTAP1_ERR_INVALID_LENGTH` (there is no command byte
    ///   to answer; microG's choice — Chromium drops the session earlier);
    /// * longer than `maxMsgSize` → `CTAP2_ERR_REQUEST_TOO_LARGE`;
    /// * getInfo/getNextAssertion with a payload → `CTAP1_ERR_INVALID_LENGTH`
    ///   (Chromium treats a getInfo payload as a protocol error);
    /// * any command but 0x01/0x02/0x04/0x08 → `CTAP1_ERR_INVALID_COMMAND`
    ///   (clientPIN, reset, credential management, selection, … are never
    ///   offered over hybrid).
    pub fn process(&mut self, request: &[u8], ctx: &RequestContext) -> Step {
        self.waiting = None;
        let command = request.first().copied();
        let flow = self.dispatch(request, ctx);
        self.step(command, flow)
    }

    /// Continues the parked request with the user's answer: an
    /// [`Approval`], or why there is none (declined, the caller's deadline
    /// passed, cancelled). The time, where the command needs it, comes from
    /// the [`Env`]'s clock. A "not present" approval counts as declined.
    ///
    /// Without a parked request this answers `CTAP2_ERR_NOT_ALLOWED`
    /// (a caller bug, never a peer's doing).
    pub fn resume(&mut self, answer: Result<Approval, UserError>) -> Step {
        let Some((command, waiting)) = self.waiting.take() else {
            return self.step(None, Err(Ctap2Status::NotAllowed.into()));
        };
        let flow = accept(answer).and_then(|approval| match waiting {
            // CTAP 2.1 §6.1.2 step 1.1: the touch is all; no PIN is set.
            Waiting::PresenceOnly => Err(Ctap2Status::PinNotSet.into()),
            Waiting::MakeCredential(plan, stage) => {
                self.make_credential_answered(*plan, stage, approval)
            }
            Waiting::GetAssertion(plan) => self.get_assertion_answered(*plan, approval),
        });
        self.step(Some(command), flow)
    }

    /// Turns a flow into the step the caller sees, parking a question.
    fn step(&mut self, command: Option<u8>, flow: Result<Flow, Error>) -> Step {
        let (bytes, status) = match flow {
            Ok(Flow::Ask(request, waiting)) => {
                self.waiting = Some((command.unwrap_or(0), waiting));
                return Step::NeedsUser(request);
            }
            Ok(Flow::Done(body)) => {
                let mut out = Vec::with_capacity(body.len() + 1);
                out.push(Ctap2Status::Ok.byte());
                out.extend_from_slice(&body);
                (out, Ctap2Status::Ok)
            }
            Err(e) => {
                let status = e.status();
                (vec![status.byte()], status)
            }
        };
        Step::Reply(Reply {
            bytes,
            command,
            status,
            follow_ups: self.pending.as_ref().map_or(0, |p| p.remaining.len()),
        })
    }

    fn dispatch(&mut self, request: &[u8], ctx: &RequestContext) -> Result<Flow, Error> {
        let (&cmd, params) = request.split_first().ok_or(Ctap2Status::InvalidLength)?;
        if request.len() > self.config.max_msg_size {
            self.pending = None;
            return Err(Ctap2Status::RequestTooLarge.into());
        }
        if cmd != CMD_GET_NEXT_ASSERTION {
            // CTAP 2.1 §6.3: any other command ends the getNextAssertion state.
            self.pending = None;
        }
        match cmd {
            CMD_GET_INFO => {
                if !params.is_empty() {
                    return Err(Ctap2Status::InvalidLength.into());
                }
                Ok(Flow::Done(self.get_info().to_cbor()))
            }
            CMD_MAKE_CREDENTIAL => self.make_credential(params, ctx),
            CMD_GET_ASSERTION => self.get_assertion(params, ctx),
            CMD_GET_NEXT_ASSERTION => {
                if !params.is_empty() {
                    self.pending = None;
                    return Err(Ctap2Status::InvalidLength.into());
                }
                self.get_next_assertion().map(Flow::Done)
            }
            _ => Err(Ctap2Status::InvalidCommand.into()),
        }
    }

    /// Fills `n` random bytes from the environment's RNG.
    pub(crate) fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rand_core::RngCore::fill_bytes(self.env.rng(), &mut v);
        v
    }

    /// CTAP 2.1 §6.1.2 / §6.2.2 steps 1–2: `pinUvAuthParam` handling for an
    /// authenticator without clientPIN or pinUvAuthToken support. A
    /// zero-length parameter asks for a touch (`Some(flow)`: the question),
    /// then answers `CTAP2_ERR_PIN_NOT_SET`; any other needs a protocol
    /// (`MISSING_PARAMETER`), and none is supported (`INVALID_PARAMETER`).
    pub(crate) fn pin_uv_auth_precheck(
        &mut self,
        param: Option<&[u8]>,
        protocol: Option<u64>,
        rp_id: &str,
        ctx: &RequestContext,
    ) -> Result<Option<Flow>, Error> {
        let Some(param) = param else { return Ok(None) };
        if param.is_empty() {
            let request = ApprovalRequest {
                command: Command::PresenceOnly,
                rp_id: rp_id.to_owned(),
                rp_name: None,
                user_name: None,
                user_display_name: None,
                uv_required: false,
                qr_age_secs: ctx.qr_age_secs,
            };
            return Ok(Some(Flow::Ask(request, Waiting::PresenceOnly)));
        }
        match protocol {
            None => Err(Error::MissingParameter("pinUvAuthProtocol")),
            Some(_) => Err(Error::InvalidParameter("pinUvAuthProtocol")),
        }
    }
}

/// The user's answer as an approval; "not present" counts as a refusal.
fn accept(answer: Result<Approval, UserError>) -> Result<Approval, Error> {
    let approval = answer?;
    if !approval.user_present {
        return Err(Error::User(UserError::Declined));
    }
    Ok(approval)
}
