//! `authenticatorMakeCredential` (CTAP 2.1 §6.1.2), steps numbered as there.

use hybrid_cbor::Value;
use zeroize::Zeroizing;

use crate::authenticator::{Authenticator, Flow, Waiting, CREDENTIAL_ID_LEN, DUMMY_RP_ID};
use crate::cbor::{b, i, t};
use crate::command::MakeCredentialRequest;
use crate::crypto;
use crate::env::{Approval, ApprovalRequest, Clock, Command, Env, RequestContext};
use crate::error::Error;
use crate::extensions;
use crate::response::{
    AttestedCredential, AuthenticatorData, MakeCredentialResponse, FLAG_UP, FLAG_UV,
};
use crate::status::Ctap2Status;
use crate::store::{CredentialMeta, CredentialSecrets, CredentialStore, COSE_EDDSA, COSE_ES256};
use crate::types::PUBLIC_KEY;

/// Attestation statement format chosen for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Packed,
    None,
}

/// CTAP 2.2 §6.1.2 `attestationFormatsPreference`: the first format in the
/// platform's list that we support wins; default `packed` self-attestation.
fn choose_format(pref: Option<&[String]>) -> Format {
    pref.unwrap_or_default()
        .iter()
        .find_map(|f| match f.as_str() {
            "none" => Some(Format::None),
            "packed" => Some(Format::Packed),
            _ => None,
        })
        .unwrap_or(Format::Packed)
}

/// A makeCredential that passed every check before the user is asked:
/// what it waits with while the user answers.
pub(crate) struct McPlan {
    req: MakeCredentialRequest,
    alg: i64,
    discoverable: bool,
    uv_requested: bool,
    cred_protect: Option<u8>,
    qr_age_secs: Option<u64>,
    /// The excludeList hit only userVerificationRequired (credProtect
    /// level 3) credentials, which count once the user is verified (CTAP
    /// 2.1 §6.1.2 step 12.1.1) — at the excludeList prompt or at consent.
    excluded_once_verified: bool,
}

/// Where a parked makeCredential waits.
pub(crate) enum McStage {
    /// Step 12: an excludeList hit asked for presence; `only_level3`: every
    /// hit is a userVerificationRequired credential (step 12.1.1).
    Excluded {
        /// Every hit has credProtect level 3.
        only_level3: bool,
    },
    /// Steps 14–16: consent and verification.
    Consent,
}

impl McPlan {
    fn ask(&self, command: Command, uv_required: bool) -> ApprovalRequest {
        ApprovalRequest {
            command,
            rp_id: self.req.rp.id.clone(),
            rp_name: self.req.rp.name.clone(),
            user_name: self.req.user.name.clone(),
            user_display_name: self.req.user.display_name.clone(),
            uv_required,
            qr_age_secs: self.qr_age_secs,
        }
    }

    /// Steps 14–16 ask for consent (and verification when `uv` was set).
    fn consent(self) -> Flow {
        let request = self.ask(Command::MakeCredential, self.uv_requested);
        Flow::Ask(
            request,
            Waiting::MakeCredential(Box::new(self), McStage::Consent),
        )
    }
}

impl<E: Env> Authenticator<E> {
    pub(crate) fn make_credential(
        &mut self,
        params: &[u8],
        ctx: &RequestContext,
    ) -> Result<Flow, Error> {
        let req = MakeCredentialRequest::from_cbor(params)?;

        // hybridd policy (hybrid-protocol.md §7.2): Chrome's ".dummy"
        // makeCredential only collects a touch; never create it, never prompt.
        if req.rp.id == DUMMY_RP_ID {
            return Err(Ctap2Status::OperationDenied.into());
        }

        // Steps 1–2: pinUvAuthParam (no clientPIN here).
        if let Some(touch) = self.pin_uv_auth_precheck(
            req.pin_uv_auth_param.as_deref(),
            req.pin_uv_auth_protocol,
            &req.rp.id,
            ctx,
        )? {
            return Ok(touch);
        }

        // Step 3: the first supported algorithm in the RP's order; entries of
        // other types are skipped.
        let alg = req
            .pub_key_cred_params
            .iter()
            .filter(|p| p.cred_type == PUBLIC_KEY)
            .map(|p| p.alg)
            .find(|a| *a == COSE_ES256 || *a == COSE_EDDSA)
            .ok_or(Ctap2Status::UnsupportedAlgorithm)?;

        // Step 5: options. `up=false` is invalid for makeCredential; `rk` is
        // supported; `uv` is valid (built-in user verification).
        if req.options.up == Some(false) {
            return Err(Ctap2Status::InvalidOption.into());
        }
        let discoverable = req.options.rk.unwrap_or(false);
        let uv_requested = req.options.uv.unwrap_or(false);

        // Step 8 (CTAP 2.1): not enterprise-attestation capable.
        if req.enterprise_attestation.is_some() {
            return Err(Error::InvalidParameter("enterpriseAttestation"));
        }

        // Extension inputs that can fail (step 13, CTAP 2.1 §12).
        let cred_protect = extensions::cred_protect_level(req.extensions.cred_protect)?;
        extensions::check_large_blob_key(req.extensions.large_blob_key)?;

        // Step 12: excludeList. A hit asks for presence first, then answers
        // CREDENTIAL_EXCLUDED and stores nothing. A userVerificationRequired
        // (level 3) credential only counts if the user was verified
        // (CTAP 2.1 §6.1.2 step 12.1.1).
        let hits: Vec<CredentialMeta> = if req.exclude_list.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<Vec<u8>> = req.exclude_list.iter().map(|d| d.id.clone()).collect();
            self.env
                .store()
                .find(&req.rp.id, Some(&ids))?
                .into_iter()
                .filter(|c| c.rp_id == req.rp.id && ids.contains(&c.id))
                .collect()
        };
        let plan = McPlan {
            req,
            alg,
            discoverable,
            uv_requested,
            cred_protect,
            qr_age_secs: ctx.qr_age_secs,
            excluded_once_verified: false,
        };
        if hits.is_empty() {
            return Ok(plan.consent());
        }
        let only_level3 = hits.iter().all(|c| c.cred_protect >= 3);
        let request = plan.ask(Command::ExcludedCredential, only_level3);
        Ok(Flow::Ask(
            request,
            Waiting::MakeCredential(Box::new(plan), McStage::Excluded { only_level3 }),
        ))
    }

    /// The user answered a parked makeCredential.
    pub(crate) fn make_credential_answered(
        &mut self,
        plan: McPlan,
        stage: McStage,
        approval: Approval,
    ) -> Result<Flow, Error> {
        match stage {
            McStage::Excluded { only_level3 } => {
                if !only_level3 || approval.user_verified {
                    return Err(Ctap2Status::CredentialExcluded.into());
                }
                // Presence only: the level-3 hits stay invisible for now,
                // but a verification collected at consent reveals them —
                // never create a duplicate of a credential the verified
                // user already has (issue 16).
                let mut plan = plan;
                plan.excluded_once_verified = true;
                Ok(plan.consent())
            }
            McStage::Consent => {
                if plan.uv_requested && !approval.user_verified {
                    return Err(Ctap2Status::OperationDenied.into());
                }
                if plan.excluded_once_verified && approval.user_verified {
                    return Err(Ctap2Status::CredentialExcluded.into());
                }
                self.create_credential(plan, approval).map(Flow::Done)
            }
        }
    }

    /// Steps 17–20: the new credential, stored, and its attestation.
    fn create_credential(&mut self, plan: McPlan, approval: Approval) -> Result<Vec<u8>, Error> {
        let McPlan {
            req,
            alg,
            discoverable,
            cred_protect,
            ..
        } = plan;
        // Step 17: new credential.
        let key = crypto::generate(alg, self.env.rng())?;
        let credential_id = self.random(CREDENTIAL_ID_LEN);
        let mut prf_secret = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(self.env.rng(), prf_secret.as_mut());
        let meta = CredentialMeta {
            id: credential_id.clone(),
            rp_id: req.rp.id.clone(),
            rp_name: req.rp.name.clone(),
            user_id: req.user.id.clone(),
            user_name: req.user.name.clone(),
            user_display_name: req.user.display_name.clone(),
            algorithm: alg,
            public_key_cose: key.public_key_cose.clone(),
            discoverable,
            cred_protect: cred_protect.unwrap_or(1),
            sign_count: 0,
            created_unix: self.env.clock().unix_secs(),
            last_used_unix: None,
        };
        let secrets = CredentialSecrets {
            private_key: key.private_key.clone(),
            prf_secret: *prf_secret,
            cred_blob: None,
            large_blob_key: None,
        };
        self.env.store().insert(&meta, &secrets)?;

        // Step 19: authenticator data. Extensions only when requested.
        let mut flags = FLAG_UP;
        if approval.user_verified {
            flags |= FLAG_UV;
        }
        let ext_outputs =
            cred_protect.map(|n| Value::Map(vec![(t("credProtect"), i(i64::from(n)))]));
        let auth_data = AuthenticatorData {
            rp_id_hash: crypto::sha256(req.rp.id.as_bytes()),
            flags,
            sign_count: 0,
            attested: Some(AttestedCredential {
                aaguid: self.config.aaguid,
                credential_id,
                public_key_cose: key.public_key_cose.clone(),
            }),
            extensions: ext_outputs,
        }
        .to_bytes();

        // Step 20: attestation statement.
        let (fmt, att_stmt) = match choose_format(req.attestation_formats_preference.as_deref()) {
            Format::None => ("none", Value::Map(Vec::new())),
            Format::Packed => {
                let mut msg = auth_data.clone();
                msg.extend_from_slice(&req.client_data_hash);
                let sig = key.sign(alg, &msg)?;
                (
                    "packed",
                    Value::Map(vec![(t("alg"), i(alg)), (t("sig"), b(&sig))]),
                )
            }
        };

        // Unsigned extension outputs (key 6): PRF only (hybrid-protocol.md §7.4).
        let unsigned = req
            .extensions
            .prf
            .as_ref()
            .map(|p| extensions::prf_make_credential_output(p, &secrets.prf_secret));

        Ok(MakeCredentialResponse {
            fmt: fmt.to_owned(),
            auth_data,
            att_stmt,
            unsigned_extension_outputs: unsigned,
        }
        .to_cbor())
    }
}
