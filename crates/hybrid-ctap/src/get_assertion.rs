//! `authenticatorGetAssertion` (CTAP 2.1 §6.2.2) and
//! `authenticatorGetNextAssertion` (§6.3), steps numbered as there.
//!
//! Choices for a phone authenticator without a display of accounts:
//! * Every assertion is approved by the user, and the user is always asked
//!   to verify (phones always verify). Candidates are filtered before the
//!   prompt as if verification will succeed, and again with the actual
//!   outcome (credProtect, CTAP 2.1 §12.1); no candidate → `NO_CREDENTIALS`
//!   (never `INVALID_CREDENTIAL`, hybrid-protocol.md §7.2).
//! * `up=false`: the spec's "silent" request. We never sign without the
//!   user's consent, so the user is still asked; the UP flag is left clear,
//!   as the spec requires for `up=false` (§6.2.2 step 9). Chrome never sends
//!   it over hybrid.
//! * Several discoverable credentials: the newest is returned with
//!   `numberOfCredentials`, the rest through getNextAssertion (§6.2.2
//!   step 13, the behaviour for authenticators without a display).
//! * One discoverable credential, approved with verification: the prompt
//!   named its account, so the response says `userSelected` (0x06).

use std::collections::VecDeque;

use crate::authenticator::{Authenticator, Flow, PendingAssertions, Waiting};
use crate::command::GetAssertionRequest;
use crate::crypto;
use crate::env::{Approval, ApprovalRequest, Clock, Command, Env, RequestContext};
use crate::error::Error;
use crate::extensions::{self, cred_protect_allows};
use crate::response::{AuthenticatorData, GetAssertionResponse, FLAG_UP, FLAG_UV};
use crate::status::Ctap2Status;
use crate::store::{CredentialMeta, CredentialStore};
use crate::types::{CredentialDescriptor, PrfInput, UserEntity};

/// What one assertion needs besides the credential.
struct AssertionParams<'a> {
    rp_id: &'a str,
    client_data_hash: &'a [u8],
    flags: u8,
    user_verified: bool,
    prf: Option<&'a PrfInput>,
    discovery: bool,
    number_of_credentials: Option<u64>,
    user_selected: bool,
}

/// A getAssertion waiting for the user: the request and its candidates,
/// filtered as if verification will succeed.
pub(crate) struct GaPlan {
    req: GetAssertionRequest,
    candidates: Vec<CredentialMeta>,
    discovery: bool,
    up: bool,
    uv_requested: bool,
}

impl<E: Env> Authenticator<E> {
    pub(crate) fn get_assertion(
        &mut self,
        params: &[u8],
        ctx: &RequestContext,
    ) -> Result<Flow, Error> {
        let req = GetAssertionRequest::from_cbor(params)?;

        // Steps 1–2: pinUvAuthParam (no clientPIN here).
        if let Some(touch) = self.pin_uv_auth_precheck(
            req.pin_uv_auth_param.as_deref(),
            req.pin_uv_auth_protocol,
            &req.rp_id,
            ctx,
        )? {
            return Ok(touch);
        }

        // Step 5: options. `rk` is not a getAssertion option
        // (trussed-dev/fido2-tests#14 expects INVALID_OPTION).
        if req.options.rk.is_some() {
            return Err(Ctap2Status::InvalidOption.into());
        }
        let up = req.options.up.unwrap_or(true);
        let uv_requested = req.options.uv.unwrap_or(false);
        // CTAP 2.1 §12.5: hmac-secret needs user presence.
        if req.extensions.hmac_secret && !up {
            return Err(Ctap2Status::UnsupportedOption.into());
        }
        extensions::check_large_blob_key(req.extensions.large_blob_key)?;

        // Step 7: locate credentials.
        let discovery = req.allow_list.is_empty();
        let ids: Vec<Vec<u8>> = req.allow_list.iter().map(|d| d.id.clone()).collect();
        let found = self
            .env
            .store()
            .find(&req.rp_id, if discovery { None } else { Some(&ids) })?;
        let candidates: Vec<CredentialMeta> = found
            .into_iter()
            .filter(|c| c.rp_id == req.rp_id)
            .filter(|c| {
                if discovery {
                    c.discoverable
                } else {
                    ids.contains(&c.id)
                }
            })
            .filter(|c| cred_protect_allows(c.cred_protect, !discovery, true))
            .collect();
        let Some(first) = candidates.first() else {
            return Err(Ctap2Status::NoCredentials.into());
        };

        // Steps 6 and 9: user verification and presence, in one prompt.
        let needs_uv = uv_requested
            || candidates
                .iter()
                .all(|c| !cred_protect_allows(c.cred_protect, !discovery, false));
        let request = ApprovalRequest {
            command: Command::GetAssertion,
            rp_id: req.rp_id.clone(),
            rp_name: first.rp_name.clone(),
            user_name: first.user_name.clone(),
            user_display_name: first.user_display_name.clone(),
            uv_required: needs_uv,
            qr_age_secs: ctx.qr_age_secs,
        };
        let plan = GaPlan {
            req,
            candidates,
            discovery,
            up,
            uv_requested,
        };
        Ok(Flow::Ask(request, Waiting::GetAssertion(Box::new(plan))))
    }

    /// The user answered a parked getAssertion: steps 10–13.
    pub(crate) fn get_assertion_answered(
        &mut self,
        plan: GaPlan,
        approval: Approval,
    ) -> Result<Flow, Error> {
        let GaPlan {
            req,
            mut candidates,
            discovery,
            up,
            uv_requested,
        } = plan;
        if uv_requested && !approval.user_verified {
            return Err(Ctap2Status::OperationDenied.into());
        }
        candidates
            .retain(|c| cred_protect_allows(c.cred_protect, !discovery, approval.user_verified));
        let mut remaining: VecDeque<CredentialMeta> = candidates.into();
        let Some(chosen) = remaining.pop_front() else {
            return Err(Ctap2Status::NoCredentials.into());
        };

        let mut flags = 0;
        if up {
            flags |= FLAG_UP;
        }
        if approval.user_verified {
            flags |= FLAG_UV;
        }
        // Step 13: more than one discoverable credential → numberOfCredentials
        // now, the rest via getNextAssertion. With an allowList any one match
        // is enough (step 11).
        if !discovery {
            remaining.clear();
        }
        let total = remaining.len() + 1;
        let body = self.assert_one(
            &chosen,
            &AssertionParams {
                rp_id: &req.rp_id,
                client_data_hash: &req.client_data_hash,
                flags,
                user_verified: approval.user_verified,
                prf: req.extensions.prf.as_ref(),
                discovery,
                number_of_credentials: (total > 1).then_some(total as u64),
                // One discoverable candidate: the approval prompt named its
                // account and the user approved it, i.e. selected it on this
                // device (CTAP 2.1 §6.2.2 `userSelected`). Chromium then skips
                // its own account chooser, as it does for Android phones.
                user_selected: discovery && total == 1 && approval.user_verified,
            },
        )?;
        if !remaining.is_empty() {
            let now = self.env.clock().monotonic_ms();
            self.pending = Some(PendingAssertions {
                rp_id: req.rp_id,
                client_data_hash: req.client_data_hash,
                remaining,
                flags,
                user_verified: approval.user_verified,
                prf: req.extensions.prf,
                deadline_ms: now.saturating_add(self.config.next_assertion_timeout_ms),
            });
        }
        Ok(Flow::Done(body))
    }

    /// CTAP 2.1 §6.3: the next credential of the last discovery, within 30 s
    /// of the previous response; otherwise `CTAP2_ERR_NOT_ALLOWED`.
    pub(crate) fn get_next_assertion(&mut self) -> Result<Vec<u8>, Error> {
        let mut pending = self.pending.take().ok_or(Ctap2Status::NotAllowed)?;
        let now = self.env.clock().monotonic_ms();
        if now > pending.deadline_ms {
            return Err(Ctap2Status::NotAllowed.into());
        }
        let chosen = pending
            .remaining
            .pop_front()
            .ok_or(Ctap2Status::NotAllowed)?;
        let body = self.assert_one(
            &chosen,
            &AssertionParams {
                rp_id: &pending.rp_id,
                client_data_hash: &pending.client_data_hash,
                flags: pending.flags,
                user_verified: pending.user_verified,
                prf: pending.prf.as_ref(),
                discovery: true,
                number_of_credentials: None,
                user_selected: false,
            },
        )?;
        if !pending.remaining.is_empty() {
            pending.deadline_ms = now.saturating_add(self.config.next_assertion_timeout_ms);
            self.pending = Some(pending);
        }
        Ok(body)
    }

    /// Steps 10–12: sign with one credential and build the response.
    fn assert_one(
        &mut self,
        cred: &CredentialMeta,
        p: &AssertionParams<'_>,
    ) -> Result<Vec<u8>, Error> {
        let secrets = self.env.store().secrets(&cred.id)?;
        let now_unix = self.env.clock().unix_secs();
        // Durable before the response leaves; never goes backwards (store contract).
        let sign_count = self.env.store().next_sign_count(&cred.id, now_unix)?;
        let auth_data = AuthenticatorData {
            rp_id_hash: crypto::sha256(p.rp_id.as_bytes()),
            flags: p.flags,
            sign_count,
            attested: None,
            extensions: None,
        }
        .to_bytes();
        let mut msg = auth_data.clone();
        msg.extend_from_slice(p.client_data_hash);
        let signature = crypto::sign(
            cred.algorithm,
            &secrets.private_key,
            &cred.public_key_cose,
            &msg,
        )?;
        let unsigned = p.prf.and_then(|prf| {
            extensions::prf_get_assertion_output(prf, &cred.id, &secrets.prf_secret)
        });
        // Key 4 only for discoverable lookups, omitted for an empty user
        // handle (test tool "empty user IDs are omitted"); name and
        // displayName only after user verification (§6.2.2 step 12).
        let user = (p.discovery && !cred.user_id.is_empty()).then(|| UserEntity {
            id: cred.user_id.clone(),
            name: if p.user_verified {
                cred.user_name.clone()
            } else {
                None
            },
            display_name: if p.user_verified {
                cred.user_display_name.clone()
            } else {
                None
            },
        });
        Ok(GetAssertionResponse {
            credential: CredentialDescriptor {
                id: cred.id.clone(),
            },
            auth_data,
            signature,
            user,
            number_of_credentials: p.number_of_credentials,
            user_selected: p.user_selected,
            unsigned_extension_outputs: unsigned,
        }
        .to_cbor())
    }
}
