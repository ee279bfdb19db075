//! hybrid-ctap: the CTAP2 authenticator core of hybridd (CTAP 2.1/2.2 §6).
//!
//! **Owns:** decoding CTAP2 requests strictly (canonical CBOR via
//! `hybrid-cbor`, CTAP 2.1 §8), the commands a hybrid phone offers —
//! getInfo (0x04), makeCredential (0x01), getAssertion (0x02),
//! getNextAssertion (0x08) — with the `credProtect` and `prf` extensions
//! (hybrid-protocol.md §7), the status codes ([`Ctap2Status`]) and
//! canonical responses. Behind the `rp` feature, a relying-party verifier
//! (`rp`) for the desktop side (hybrid-initiator, tests, fuzzing); behind
//! `testing`, deterministic doubles (`testing`).
//!
//! **Does not own:** storage (the [`store::CredentialStore`] seam, implemented
//! by `hybrid-vault`), the user prompt, clocks and randomness (the [`Env`]
//! seam), the hybrid transport (QR, advert, Noise, tunnel) or any IO. It is
//! sans-IO: [`Authenticator::process`] takes request bytes and returns a
//! [`Step`] — the response bytes, or an [`ApprovalRequest`] for the user
//! that [`Authenticator::resume`] continues with the answer — never
//! blocks, never panics, and offers nothing else: clientPIN, reset,
//! credential management, large blobs and selection all answer
//! `CTAP1_ERR_INVALID_COMMAND`.
//!
//! Layout follows OpenSK's `libraries/opensk/src/ctap/`: one status enum
//! with the wire byte, parsing ([`command`], [`types`]) separate from the
//! command logic (one module per command), and the outside world behind one
//! [`Env`] trait; `testing` (feature) holds deterministic doubles.
#![forbid(unsafe_code)]

pub mod authenticator;
mod cbor;
pub mod command;
pub mod crypto;
pub mod env;
pub mod error;
mod extensions;
mod get_assertion;
pub mod get_info;
mod make_credential;
pub mod response;
#[cfg(any(test, feature = "rp"))]
pub mod rp;
pub mod status;
mod step;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod types;

pub use authenticator::{Authenticator, Config, DEFAULT_AAGUID, DEFAULT_MAX_MSG_SIZE};
pub use command::{GetAssertionRequest, MakeCredentialRequest};
pub use env::{
    Approval, ApprovalRequest, Clock, Command, Env, EnvParts, RequestContext, UserError,
};
pub use error::{Error, VerifyError};
pub use get_info::GetInfoResponse;
pub use response::{AuthenticatorData, GetAssertionResponse, MakeCredentialResponse};
#[cfg(any(test, feature = "rp"))]
pub use rp::{AttestationPolicy, RegisteredCredential, RelyingParty};
pub use status::Ctap2Status;
pub use step::{Reply, Step};

#[cfg(test)]
mod tests;
