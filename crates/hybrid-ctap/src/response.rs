//! Typed responses (CTAP 2.1 §6.1 / §6.2 / §6.4 response maps) and
//! `authenticatorData` (WebAuthn §6.1), each with a canonical encoder and a
//! parser (used by [`crate::rp`] and round-trip tests).

use hybrid_cbor::Value;

use crate::cbor::{self, b, i, t};
use crate::error::{Error, VerifyError};
use crate::types::{CredentialDescriptor, UserEntity};

/// authData flag: user present (WebAuthn §6.1).
pub const FLAG_UP: u8 = 0x01;
/// authData flag: user verified.
pub const FLAG_UV: u8 = 0x04;
/// authData flag: attested credential data included.
pub const FLAG_AT: u8 = 0x40;
/// authData flag: extension data included.
pub const FLAG_ED: u8 = 0x80;

fn malformed(what: &'static str) -> Error {
    Error::Verify(VerifyError::Malformed(what))
}

/// Attested credential data (WebAuthn §6.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    /// AAGUID.
    pub aaguid: [u8; 16],
    /// Credential ID.
    pub credential_id: Vec<u8>,
    /// The credential public key, canonical COSE_Key bytes.
    pub public_key_cose: Vec<u8>,
}

/// `authenticatorData` (WebAuthn §6.1).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatorData {
    /// SHA-256 of the RP ID.
    pub rp_id_hash: [u8; 32],
    /// Flags byte.
    pub flags: u8,
    /// Signature counter.
    pub sign_count: u32,
    /// Present iff `FLAG_AT`.
    pub attested: Option<AttestedCredential>,
    /// Extension outputs map, present iff `FLAG_ED`.
    pub extensions: Option<Value>,
}

impl AuthenticatorData {
    /// Serializes; the AT/ED flags are set from the optional parts.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut flags = self.flags & !(FLAG_AT | FLAG_ED);
        if self.attested.is_some() {
            flags |= FLAG_AT;
        }
        if self.extensions.is_some() {
            flags |= FLAG_ED;
        }
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.rp_id_hash);
        out.push(flags);
        out.extend_from_slice(&self.sign_count.to_be_bytes());
        if let Some(a) = &self.attested {
            out.extend_from_slice(&a.aaguid);
            // Credential IDs are at most 1023 bytes (WebAuthn §6.5.1); ours are 32.
            let len = u16::try_from(a.credential_id.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&a.credential_id);
            out.extend_from_slice(&a.public_key_cose);
        }
        if let Some(e) = &self.extensions {
            out.extend_from_slice(&hybrid_cbor::to_canonical_vec(e));
        }
        out
    }

    /// Parses authData as a relying party would (strict CBOR for the COSE
    /// key and extensions, no trailing bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (head, rest) = bytes
            .split_at_checked(37)
            .ok_or(malformed("authData too short"))?;
        let (hash, tail) = head.split_at_checked(32).ok_or(malformed("authData"))?;
        let rp_id_hash: [u8; 32] = hash.try_into().map_err(|_| malformed("authData"))?;
        let (&flags, counter) = tail.split_first().ok_or(malformed("authData"))?;
        let sign_count = u32::from_be_bytes(counter.try_into().map_err(|_| malformed("authData"))?);
        let mut rest = rest;
        let attested = if flags & FLAG_AT != 0 {
            let (aaguid, r) = rest.split_at_checked(16).ok_or(malformed("aaguid"))?;
            let (len, r) = r
                .split_at_checked(2)
                .ok_or(malformed("credentialIdLength"))?;
            let len = usize::from(u16::from_be_bytes(
                len.try_into().map_err(|_| malformed("length"))?,
            ));
            let (id, r) = r.split_at_checked(len).ok_or(malformed("credentialId"))?;
            let (key, r) = split_cbor_item(r)?;
            rest = r;
            Some(AttestedCredential {
                aaguid: aaguid.try_into().map_err(|_| malformed("aaguid"))?,
                credential_id: id.to_vec(),
                public_key_cose: key.to_vec(),
            })
        } else {
            None
        };
        let extensions = if flags & FLAG_ED != 0 {
            let (ext, r) = split_cbor_item(rest)?;
            rest = r;
            Some(hybrid_cbor::decode_canonical(ext)?)
        } else {
            None
        };
        if !rest.is_empty() {
            return Err(malformed("trailing bytes in authData"));
        }
        Ok(AuthenticatorData {
            rp_id_hash,
            flags,
            sign_count,
            attested,
            extensions,
        })
    }
}

/// Splits one strict-canonical CBOR item off the front of `bytes`.
fn split_cbor_item(bytes: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    // Find the shortest prefix that is exactly one canonical item. Items in
    // authData are small (a COSE key, an extension map), so this is cheap.
    for n in 1..=bytes.len() {
        let prefix = bytes.get(..n).ok_or(malformed("cbor"))?;
        match hybrid_cbor::decode_canonical(prefix) {
            Ok(_) => return Ok((prefix, bytes.get(n..).unwrap_or_default())),
            Err(hybrid_cbor::Error::Truncated) => continue,
            Err(e) => return Err(Error::InvalidCbor(e)),
        }
    }
    Err(Error::InvalidCbor(hybrid_cbor::Error::Truncated))
}

/// `authenticatorMakeCredential` response (CTAP 2.2 §6.1 response map).
#[derive(Debug, Clone, PartialEq)]
pub struct MakeCredentialResponse {
    /// 0x01 `fmt`: `"packed"` or `"none"`.
    pub fmt: String,
    /// 0x02 `authData`.
    pub auth_data: Vec<u8>,
    /// 0x03 `attStmt` (a map).
    pub att_stmt: Value,
    /// 0x06 `unsignedExtensionOutputs` (PRF, hybrid-protocol.md §7.4).
    pub unsigned_extension_outputs: Option<Value>,
}

impl MakeCredentialResponse {
    /// Canonical CBOR (without the status byte).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m = vec![
            (i(1), t(&self.fmt)),
            (i(2), b(&self.auth_data)),
            (i(3), self.att_stmt.clone()),
        ];
        if let Some(u) = &self.unsigned_extension_outputs {
            m.push((i(6), u.clone()));
        }
        hybrid_cbor::to_canonical_vec(&Value::Map(m))
    }

    /// Parses the CBOR (without the status byte), strictly.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, Error> {
        let mut m = cbor::map(hybrid_cbor::decode_canonical(bytes)?, "response")?;
        let fmt = cbor::text(cbor::required(cbor::take_int(&mut m, 1), "fmt")?, "fmt")?;
        let auth_data = cbor::bytes(
            cbor::required(cbor::take_int(&mut m, 2), "authData")?,
            "authData",
        )?;
        let att_stmt = cbor::required(cbor::take_int(&mut m, 3), "attStmt")?;
        if !matches!(att_stmt, Value::Map(_)) {
            return Err(Error::UnexpectedType("attStmt"));
        }
        let unsigned_extension_outputs = cbor::take_int(&mut m, 6);
        Ok(MakeCredentialResponse {
            fmt,
            auth_data,
            att_stmt,
            unsigned_extension_outputs,
        })
    }
}

/// `authenticatorGetAssertion` / `GetNextAssertion` response (CTAP 2.2 §6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct GetAssertionResponse {
    /// 0x01 `credential` (always sent).
    pub credential: CredentialDescriptor,
    /// 0x02 `authData`.
    pub auth_data: Vec<u8>,
    /// 0x03 `signature`.
    pub signature: Vec<u8>,
    /// 0x04 `user` (discoverable lookups, non-empty user handle).
    pub user: Option<UserEntity>,
    /// 0x05 `numberOfCredentials` (first response of a discovery with > 1).
    pub number_of_credentials: Option<u64>,
    /// 0x06 `userSelected` (CTAP 2.1 §6.2.2): the user picked this account
    /// on the authenticator, so the platform need not ask again. Sent only
    /// when true.
    pub user_selected: bool,
    /// 0x08 `unsignedExtensionOutputs` (PRF results).
    pub unsigned_extension_outputs: Option<Value>,
}

impl GetAssertionResponse {
    /// Canonical CBOR (without the status byte).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m = vec![
            (i(1), self.credential.to_value()),
            (i(2), b(&self.auth_data)),
            (i(3), b(&self.signature)),
        ];
        if let Some(u) = &self.user {
            m.push((i(4), u.to_value()));
        }
        if let Some(n) = self.number_of_credentials {
            m.push((i(5), Value::Integer(n.into())));
        }
        if self.user_selected {
            m.push((i(6), Value::Bool(true)));
        }
        if let Some(u) = &self.unsigned_extension_outputs {
            m.push((i(8), u.clone()));
        }
        hybrid_cbor::to_canonical_vec(&Value::Map(m))
    }

    /// Parses the CBOR (without the status byte), strictly.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, Error> {
        let mut m = cbor::map(hybrid_cbor::decode_canonical(bytes)?, "response")?;
        let credential = CredentialDescriptor::parse(
            cbor::required(cbor::take_int(&mut m, 1), "credential")?,
            "credential",
        )?
        .ok_or(malformed("credential type"))?;
        let auth_data = cbor::bytes(
            cbor::required(cbor::take_int(&mut m, 2), "authData")?,
            "authData",
        )?;
        let signature = cbor::bytes(
            cbor::required(cbor::take_int(&mut m, 3), "signature")?,
            "signature",
        )?;
        let user = cbor::take_int(&mut m, 4)
            .map(UserEntity::parse)
            .transpose()?;
        let number_of_credentials = cbor::take_int(&mut m, 5)
            .map(|v| cbor::uint(v, "numberOfCredentials"))
            .transpose()?;
        let user_selected = match cbor::take_int(&mut m, 6) {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(malformed("userSelected")),
        };
        let unsigned_extension_outputs = cbor::take_int(&mut m, 8);
        Ok(GetAssertionResponse {
            credential,
            auth_data,
            signature,
            user,
            number_of_credentials,
            user_selected,
            unsigned_extension_outputs,
        })
    }
}

/// Splits a response frame `status || cbor` into status and CBOR, turning a
/// non-zero status into [`VerifyError::Status`].
pub fn split_response(frame: &[u8]) -> Result<&[u8], Error> {
    let (&status, rest) = frame.split_first().ok_or(malformed("empty response"))?;
    if status != 0 {
        let s = crate::Ctap2Status::from_byte(status).unwrap_or(crate::Ctap2Status::Other);
        return Err(Error::Verify(VerifyError::Status(s)));
    }
    Ok(rest)
}
