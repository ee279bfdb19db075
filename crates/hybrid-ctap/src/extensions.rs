//! Extension processing: `credProtect` (CTAP 2.1 §12.1), `prf` over hybrid
//! (hybrid-protocol.md §7.4) and the `largeBlobKey` input rule (§12.3).
//!
//! PRF evaluation is [`crate::crypto::prf_evaluate`]; a later encrypted-salt
//! `hmac-secret` (which needs clientPIN key agreement) would decrypt the
//! salts, call the same function and encrypt the results. An `hmac-secret`
//! input is ignored today (it is not listed in getInfo).

use hybrid_cbor::Value;

use crate::cbor::{b, t};
use crate::crypto::prf_evaluate;
use crate::error::Error;
use crate::status::Ctap2Status;
use crate::types::{PrfInput, PrfSalts};

/// Validates a `credProtect` input: 1, 2 or 3; anything else is refused
/// with `CTAP2_ERR_INVALID_OPTION` (hybridd choice: an RP asking for a
/// protection level we cannot name must not silently get level 1).
pub(crate) fn cred_protect_level(input: Option<u64>) -> Result<Option<u8>, Error> {
    match input {
        None => Ok(None),
        Some(n @ 1..=3) => Ok(u8::try_from(n).ok()),
        Some(_) => Err(Ctap2Status::InvalidOption.into()),
    }
}

/// CTAP 2.1 §12.3: `largeBlobKey` must be `true` if present.
pub(crate) fn check_large_blob_key(input: Option<bool>) -> Result<(), Error> {
    match input {
        Some(false) => Err(Ctap2Status::InvalidOption.into()),
        _ => Ok(()),
    }
}

/// May credential of protection `level` be used? (CTAP 2.1 §6.2.2 step 7,
/// §12.1): level 3 only with UV; level 2 only with an allowList or UV.
pub(crate) fn cred_protect_allows(level: u8, with_allow_list: bool, user_verified: bool) -> bool {
    match level {
        0 | 1 => true,
        2 => with_allow_list || user_verified,
        _ => user_verified,
    }
}

/// `{"first": r1, "second"?: r2}` with 32-byte results.
fn prf_results(salts: &PrfSalts, key: &[u8; 32]) -> Value {
    let mut m = vec![(t("first"), b(&prf_evaluate(key, &salts.first)))];
    if let Some(s) = &salts.second {
        m.push((t("second"), b(&prf_evaluate(key, s))));
    }
    Value::Map(m)
}

/// makeCredential unsigned outputs: `{"prf": {"enabled": true, "results"?}}`.
pub(crate) fn prf_make_credential_output(input: &PrfInput, key: &[u8; 32]) -> Value {
    let mut inner = vec![(t("enabled"), Value::Bool(true))];
    if let Some(salts) = &input.eval {
        inner.push((t("results"), prf_results(salts, key)));
    }
    Value::Map(vec![(t("prf"), Value::Map(inner))])
}

/// getAssertion unsigned outputs: `{"prf": {"results": {...}}}` for the
/// credential `id` (its `evalByCredential` entry, else `eval`), or `None`.
pub(crate) fn prf_get_assertion_output(
    input: &PrfInput,
    id: &[u8],
    key: &[u8; 32],
) -> Option<Value> {
    let salts = input.salts_for(id)?;
    Some(Value::Map(vec![(
        t("prf"),
        Value::Map(vec![(t("results"), prf_results(salts, key))]),
    )]))
}
