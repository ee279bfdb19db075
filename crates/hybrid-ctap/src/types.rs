//! Wire types shared by the commands (CTAP 2.1 §6.1 / §6.2 parameter
//! structures, WebAuthn §5.8 dictionaries), each with a strict parser and a
//! canonical encoder.

use hybrid_cbor::Value;

use crate::cbor::{self, b, i, t};
use crate::error::Error;

/// The only credential type (WebAuthn §5.8.2 `PublicKeyCredentialType`).
pub const PUBLIC_KEY: &str = "public-key";

/// `clientDataHash` is a SHA-256 output (WebAuthn §5.8.1; Chromium
/// `kClientDataHashLength`); any other length → `CTAP1_ERR_INVALID_LENGTH`.
pub const CLIENT_DATA_HASH_LEN: usize = 32;
/// A PRF salt is a SHA-256 output (hybrid-protocol.md §7.4), the
/// hmac-secret evaluation input (CTAP 2.1 §12.5); any other length →
/// `CTAP1_ERR_INVALID_LENGTH`.
pub const PRF_SALT_LEN: usize = 32;
/// The longest user handle (WebAuthn §5.4.3 `user.id`: "maximum size is 64
/// bytes"); longer → `CTAP1_ERR_INVALID_LENGTH`.
pub const MAX_USER_ID_LEN: usize = 64;

/// Checks that a byte string has exactly `len` bytes.
pub(crate) fn exact_len(bytes: Vec<u8>, len: usize, what: &'static str) -> Result<Vec<u8>, Error> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(Error::InvalidLength(what))
    }
}

/// `PublicKeyCredentialRpEntity` (CTAP 2.1 §6.1 `rp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpEntity {
    /// `id`, required.
    pub id: String,
    /// `name`, optional in CTAP (Chrome always sends it).
    pub name: Option<String>,
}

impl RpEntity {
    pub(crate) fn parse(v: Value) -> Result<Self, Error> {
        let mut m = cbor::map(v, "rp")?;
        let id = cbor::text(
            cbor::required(cbor::take_text(&mut m, "id"), "rp.id")?,
            "rp.id",
        )?;
        let name = cbor::take_text(&mut m, "name")
            .map(|v| cbor::text(v, "rp.name"))
            .transpose()?;
        Ok(RpEntity { id, name })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = vec![(t("id"), t(&self.id))];
        if let Some(n) = &self.name {
            m.push((t("name"), t(n)));
        }
        Value::Map(m)
    }
}

/// `PublicKeyCredentialUserEntity` (CTAP 2.1 §6.1 `user`, §6.2 response key 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntity {
    /// `id`: the user handle, at most [`MAX_USER_ID_LEN`] bytes (longer is
    /// refused when parsing).
    pub id: Vec<u8>,
    /// `name`.
    pub name: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
}

impl UserEntity {
    pub(crate) fn parse(v: Value) -> Result<Self, Error> {
        let mut m = cbor::map(v, "user")?;
        let id = cbor::bytes(
            cbor::required(cbor::take_text(&mut m, "id"), "user.id")?,
            "user.id",
        )?;
        if id.len() > MAX_USER_ID_LEN {
            return Err(Error::InvalidLength("user.id"));
        }
        let name = cbor::take_text(&mut m, "name")
            .map(|v| cbor::text(v, "user.name"))
            .transpose()?;
        let display_name = cbor::take_text(&mut m, "displayName")
            .map(|v| cbor::text(v, "user.displayName"))
            .transpose()?;
        Ok(UserEntity {
            id,
            name,
            display_name,
        })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = vec![(t("id"), b(&self.id))];
        if let Some(n) = &self.name {
            m.push((t("name"), t(n)));
        }
        if let Some(n) = &self.display_name {
            m.push((t("displayName"), t(n)));
        }
        Value::Map(m)
    }
}

/// One `PublicKeyCredentialParameters` entry (CTAP 2.1 §6.1 `pubKeyCredParams`).
/// Entries of unknown `type` are kept (and skipped when choosing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubKeyCredParam {
    /// COSE algorithm identifier.
    pub alg: i64,
    /// Credential type; only `"public-key"` is usable.
    pub cred_type: String,
}

impl PubKeyCredParam {
    fn parse(v: Value) -> Result<Self, Error> {
        let mut m = cbor::map(v, "pubKeyCredParams[]")?;
        let cred_type = cbor::text(
            cbor::required(cbor::take_text(&mut m, "type"), "pubKeyCredParams[].type")?,
            "pubKeyCredParams[].type",
        )?;
        let alg = match cbor::take_text(&mut m, "alg") {
            Some(v) => match cbor::int(v, "pubKeyCredParams[].alg") {
                Ok(a) => a,
                // An algorithm number outside i64 is simply unsupported.
                Err(Error::InvalidParameter(_)) => i64::MIN,
                Err(e) => return Err(e),
            },
            None => return Err(Error::MissingParameter("pubKeyCredParams[].alg")),
        };
        Ok(PubKeyCredParam { alg, cred_type })
    }

    fn to_value(&self) -> Value {
        Value::Map(vec![
            (t("alg"), i(self.alg)),
            (t("type"), t(&self.cred_type)),
        ])
    }
}

/// `PublicKeyCredentialDescriptor` of type `"public-key"` (CTAP 2.1 §6.1
/// `excludeList`, §6.2 `allowList`, §6.2 response key 1). `transports` and
/// unknown members are ignored on input and never emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDescriptor {
    /// Credential ID.
    pub id: Vec<u8>,
}

impl CredentialDescriptor {
    /// Parses one descriptor; `Ok(None)` for a descriptor of another type
    /// (WebAuthn: "ignore any credential whose type it does not support").
    pub(crate) fn parse(v: Value, what: &'static str) -> Result<Option<Self>, Error> {
        let mut m = cbor::map(v, what)?;
        let ty = cbor::text(cbor::required(cbor::take_text(&mut m, "type"), what)?, what)?;
        if ty != PUBLIC_KEY {
            return Ok(None);
        }
        let id = cbor::bytes(cbor::required(cbor::take_text(&mut m, "id"), what)?, what)?;
        Ok(Some(CredentialDescriptor { id }))
    }

    /// `{"id": id, "type": "public-key"}` (canonical order: "id" < "type").
    pub fn to_value(&self) -> Value {
        Value::Map(vec![(t("id"), b(&self.id)), (t("type"), t(PUBLIC_KEY))])
    }

    pub(crate) fn parse_list(v: Value, what: &'static str) -> Result<Vec<Self>, Error> {
        let mut out = Vec::new();
        for d in cbor::array(v, what)? {
            if let Some(d) = Self::parse(d, what)? {
                out.push(d);
            }
        }
        Ok(out)
    }
}

pub(crate) fn parse_params(v: Value) -> Result<Vec<PubKeyCredParam>, Error> {
    cbor::array(v, "pubKeyCredParams")?
        .into_iter()
        .map(PubKeyCredParam::parse)
        .collect()
}

pub(crate) fn params_value(p: &[PubKeyCredParam]) -> Value {
    Value::Array(p.iter().map(PubKeyCredParam::to_value).collect())
}

pub(crate) fn descriptors_value(d: &[CredentialDescriptor]) -> Value {
    Value::Array(d.iter().map(CredentialDescriptor::to_value).collect())
}

/// The `options` map (CTAP 2.1 §6.1 key 7, §6.2 key 5). Absent means
/// "not sent"; unknown options are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `rk`.
    pub rk: Option<bool>,
    /// `up`.
    pub up: Option<bool>,
    /// `uv`.
    pub uv: Option<bool>,
}

impl Options {
    pub(crate) fn parse(v: Value) -> Result<Self, Error> {
        let mut m = cbor::map(v, "options")?;
        let mut get = |k: &'static str| {
            cbor::take_text(&mut m, k)
                .map(|v| cbor::boolean(v, k))
                .transpose()
        };
        Ok(Options {
            rk: get("rk")?,
            up: get("up")?,
            uv: get("uv")?,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rk.is_none() && self.up.is_none() && self.uv.is_none()
    }

    pub(crate) fn to_value(self) -> Value {
        let mut m = Vec::new();
        for (k, v) in [("rk", self.rk), ("up", self.up), ("uv", self.uv)] {
            if let Some(v) = v {
                m.push((t(k), Value::Bool(v)));
            }
        }
        Value::Map(m)
    }
}

/// One PRF evaluation input: salts already hashed by the client
/// (hybrid-protocol.md §7.4: `SHA-256("WebAuthn PRF" || 0x00 || x)`), each
/// exactly [`PRF_SALT_LEN`] bytes (checked when parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrfSalts {
    /// `first`.
    pub first: Vec<u8>,
    /// `second`, optional.
    pub second: Option<Vec<u8>>,
}

impl PrfSalts {
    fn parse(v: Value) -> Result<Self, Error> {
        let mut m = match v {
            Value::Map(m) => m,
            _ => return Err(Error::UnexpectedType("prf eval")),
        };
        // Chromium's phone treats a missing/non-bytes `first` as a parse
        // failure (v2_authenticator.cc); we answer CTAP2_ERR_INVALID_CBOR.
        let first = match cbor::take_text(&mut m, "first") {
            Some(Value::Bytes(b)) => exact_len(b, PRF_SALT_LEN, "prf first")?,
            Some(_) => return Err(Error::UnexpectedType("prf first")),
            None => return Err(Error::Malformed("prf eval without first")),
        };
        let second = cbor::take_text(&mut m, "second")
            .map(|v| exact_len(cbor::bytes(v, "prf second")?, PRF_SALT_LEN, "prf second"))
            .transpose()?;
        Ok(PrfSalts { first, second })
    }

    fn to_value(&self) -> Value {
        let mut m = vec![(t("first"), b(&self.first))];
        if let Some(s) = &self.second {
            m.push((t("second"), b(s)));
        }
        Value::Map(m)
    }
}

/// The `prf` extension input (hybrid-protocol.md §7.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrfInput {
    /// `eval`.
    pub eval: Option<PrfSalts>,
    /// `evalByCredential`: credential ID → salts (getAssertion only).
    pub eval_by_credential: Vec<(Vec<u8>, PrfSalts)>,
}

impl PrfInput {
    pub(crate) fn parse(v: Value) -> Result<Self, Error> {
        let mut m = cbor::map(v, "prf")?;
        let eval = cbor::take_text(&mut m, "eval")
            .map(PrfSalts::parse)
            .transpose()?;
        let mut eval_by_credential = Vec::new();
        if let Some(v) = cbor::take_text(&mut m, "evalByCredential") {
            for (k, v) in cbor::map(v, "prf evalByCredential")? {
                let id = match k {
                    Value::Bytes(b) => b,
                    _ => return Err(Error::UnexpectedType("prf evalByCredential key")),
                };
                eval_by_credential.push((id, PrfSalts::parse(v)?));
            }
        }
        Ok(PrfInput {
            eval,
            eval_by_credential,
        })
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = Vec::new();
        if let Some(e) = &self.eval {
            m.push((t("eval"), e.to_value()));
        }
        if !self.eval_by_credential.is_empty() {
            let by = self
                .eval_by_credential
                .iter()
                .map(|(id, s)| (b(id), s.to_value()))
                .collect();
            m.push((t("evalByCredential"), Value::Map(by)));
        }
        Value::Map(m)
    }

    /// The salts for credential `id`: its `evalByCredential` entry, else `eval`.
    pub fn salts_for(&self, id: &[u8]) -> Option<&PrfSalts> {
        self.eval_by_credential
            .iter()
            .find(|(k, _)| k.as_slice() == id)
            .map(|(_, s)| s)
            .or(self.eval.as_ref())
    }
}

/// Extension inputs this authenticator understands (CTAP 2.1 §12, WebAuthn
/// PRF). Any other extension is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `credProtect` (makeCredential): 1, 2 or 3 (CTAP 2.1 §12.1).
    pub cred_protect: Option<u64>,
    /// `prf` (hybrid-protocol.md §7.4).
    pub prf: Option<PrfInput>,
    /// `hmac-secret` was present (not offered; only its `up=false` rule is
    /// enforced, CTAP 2.1 §12.5).
    pub hmac_secret: bool,
    /// `largeBlobKey` (not offered; `false` is invalid, CTAP 2.1 §12.3).
    pub large_blob_key: Option<bool>,
}

impl Extensions {
    pub(crate) fn parse(v: Value) -> Result<Self, Error> {
        let mut m = cbor::map(v, "extensions")?;
        let cred_protect = cbor::take_text(&mut m, "credProtect")
            .map(|v| cbor::uint(v, "credProtect"))
            .transpose()?;
        let prf = cbor::take_text(&mut m, "prf")
            .map(PrfInput::parse)
            .transpose()?;
        let hmac_secret = cbor::take_text(&mut m, "hmac-secret").is_some();
        let large_blob_key = cbor::take_text(&mut m, "largeBlobKey")
            .map(|v| cbor::boolean(v, "largeBlobKey"))
            .transpose()?;
        Ok(Extensions {
            cred_protect,
            prf,
            hmac_secret,
            large_blob_key,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self == &Extensions::default()
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = Vec::new();
        if let Some(c) = self.cred_protect {
            m.push((t("credProtect"), Value::Integer(c.into())));
        }
        if let Some(p) = &self.prf {
            m.push((t("prf"), p.to_value()));
        }
        if self.hmac_secret {
            m.push((t("hmac-secret"), Value::Bool(true)));
        }
        if let Some(l) = self.large_blob_key {
            m.push((t("largeBlobKey"), Value::Bool(l)));
        }
        Value::Map(m)
    }
}
