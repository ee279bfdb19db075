//! Command bytes and typed request parameters (CTAP 2.1 §6 command table;
//! parsing per §8: strict canonical CBOR, top-level map with integer keys).

use hybrid_cbor::Value;

use crate::cbor::{self, b, i, t};
use crate::error::Error;
use crate::types::{
    descriptors_value, exact_len, params_value, parse_params, CredentialDescriptor, Extensions,
    Options, PubKeyCredParam, RpEntity, UserEntity, CLIENT_DATA_HASH_LEN,
};

/// `authenticatorMakeCredential`.
pub const CMD_MAKE_CREDENTIAL: u8 = 0x01;
/// `authenticatorGetAssertion`.
pub const CMD_GET_ASSERTION: u8 = 0x02;
/// `authenticatorGetInfo`.
pub const CMD_GET_INFO: u8 = 0x04;
/// `authenticatorClientPIN` (not offered over hybrid → `INVALID_COMMAND`).
pub const CMD_CLIENT_PIN: u8 = 0x06;
/// `authenticatorReset` (never offered → `INVALID_COMMAND`).
pub const CMD_RESET: u8 = 0x07;
/// `authenticatorGetNextAssertion`.
pub const CMD_GET_NEXT_ASSERTION: u8 = 0x08;
/// `authenticatorCredentialManagement` (not offered → `INVALID_COMMAND`).
pub const CMD_CREDENTIAL_MANAGEMENT: u8 = 0x0A;
/// `authenticatorSelection` (not offered → `INVALID_COMMAND`; Chromium's phone aborts).
pub const CMD_SELECTION: u8 = 0x0B;

/// Decodes the CBOR parameters of a command: strict canonical CBOR whose
/// top level is a map. No bytes at all means every required parameter is
/// missing (`CTAP2_ERR_MISSING_PARAMETER`, OpenSK's choice for an absent map).
pub(crate) fn decode_params(bytes: &[u8]) -> Result<Vec<(Value, Value)>, Error> {
    if bytes.is_empty() {
        return Err(Error::MissingParameter("request parameters"));
    }
    let v = hybrid_cbor::decode_canonical(bytes)?;
    cbor::map(v, "request parameters")
}

/// `clientDataHash`: a byte string of exactly [`CLIENT_DATA_HASH_LEN`] bytes.
fn client_data_hash(v: Value) -> Result<Vec<u8>, Error> {
    exact_len(
        cbor::bytes(v, "clientDataHash")?,
        CLIENT_DATA_HASH_LEN,
        "clientDataHash",
    )
}

fn encode(entries: Vec<(Value, Value)>) -> Vec<u8> {
    hybrid_cbor::to_canonical_vec(&Value::Map(entries))
}

/// `authenticatorMakeCredential` parameters (CTAP 2.1 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeCredentialRequest {
    /// 0x01 `clientDataHash` (required; exactly 32 bytes when parsed).
    pub client_data_hash: Vec<u8>,
    /// 0x02 `rp` (required).
    pub rp: RpEntity,
    /// 0x03 `user` (required).
    pub user: UserEntity,
    /// 0x04 `pubKeyCredParams` (required), in the RP's preference order.
    pub pub_key_cred_params: Vec<PubKeyCredParam>,
    /// 0x05 `excludeList` (public-key descriptors only).
    pub exclude_list: Vec<CredentialDescriptor>,
    /// 0x06 `extensions`.
    pub extensions: Extensions,
    /// 0x07 `options`.
    pub options: Options,
    /// 0x08 `pinUvAuthParam`.
    pub pin_uv_auth_param: Option<Vec<u8>>,
    /// 0x09 `pinUvAuthProtocol`.
    pub pin_uv_auth_protocol: Option<u64>,
    /// 0x0A `enterpriseAttestation`.
    pub enterprise_attestation: Option<u64>,
    /// 0x0B `attestationFormatsPreference` (CTAP 2.2).
    pub attestation_formats_preference: Option<Vec<String>>,
}

impl MakeCredentialRequest {
    /// A request with the required members and nothing else.
    pub fn new(
        client_data_hash: Vec<u8>,
        rp: RpEntity,
        user: UserEntity,
        pub_key_cred_params: Vec<PubKeyCredParam>,
    ) -> Self {
        MakeCredentialRequest {
            client_data_hash,
            rp,
            user,
            pub_key_cred_params,
            exclude_list: Vec::new(),
            extensions: Extensions::default(),
            options: Options::default(),
            pin_uv_auth_param: None,
            pin_uv_auth_protocol: None,
            enterprise_attestation: None,
            attestation_formats_preference: None,
        }
    }

    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, Error> {
        let mut m = decode_params(bytes)?;
        // Type-check everything present before reporting a missing member,
        // in key order (CTAP 2.1 §6.1 parameter table).
        let cdh = cbor::take_int(&mut m, 1)
            .map(client_data_hash)
            .transpose()?;
        let rp = cbor::take_int(&mut m, 2).map(RpEntity::parse).transpose()?;
        let user = cbor::take_int(&mut m, 3)
            .map(UserEntity::parse)
            .transpose()?;
        let params = cbor::take_int(&mut m, 4).map(parse_params).transpose()?;
        let exclude_list = cbor::take_int(&mut m, 5)
            .map(|v| CredentialDescriptor::parse_list(v, "excludeList"))
            .transpose()?
            .unwrap_or_default();
        let extensions = cbor::take_int(&mut m, 6)
            .map(Extensions::parse)
            .transpose()?
            .unwrap_or_default();
        let options = cbor::take_int(&mut m, 7)
            .map(Options::parse)
            .transpose()?
            .unwrap_or_default();
        let pin_uv_auth_param = cbor::take_int(&mut m, 8)
            .map(|v| cbor::bytes(v, "pinUvAuthParam"))
            .transpose()?;
        let pin_uv_auth_protocol = cbor::take_int(&mut m, 9)
            .map(|v| cbor::uint(v, "pinUvAuthProtocol"))
            .transpose()?;
        let enterprise_attestation = cbor::take_int(&mut m, 10)
            .map(|v| cbor::uint(v, "enterpriseAttestation"))
            .transpose()?;
        let attestation_formats_preference = cbor::take_int(&mut m, 11)
            .map(|v| {
                cbor::array(v, "attestationFormatsPreference")?
                    .into_iter()
                    .map(|f| cbor::text(f, "attestationFormatsPreference[]"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(MakeCredentialRequest {
            client_data_hash: cbor::required(cdh, "clientDataHash")?,
            rp: cbor::required(rp, "rp")?,
            user: cbor::required(user, "user")?,
            pub_key_cred_params: cbor::required(params, "pubKeyCredParams")?,
            exclude_list,
            extensions,
            options,
            pin_uv_auth_param,
            pin_uv_auth_protocol,
            enterprise_attestation,
            attestation_formats_preference,
        })
    }

    /// Canonical CBOR parameters (without the command byte).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m = vec![
            (i(1), b(&self.client_data_hash)),
            (i(2), self.rp.to_value()),
            (i(3), self.user.to_value()),
            (i(4), params_value(&self.pub_key_cred_params)),
        ];
        if !self.exclude_list.is_empty() {
            m.push((i(5), descriptors_value(&self.exclude_list)));
        }
        if !self.extensions.is_empty() {
            m.push((i(6), self.extensions.to_value()));
        }
        if !self.options.is_empty() {
            m.push((i(7), self.options.to_value()));
        }
        if let Some(p) = &self.pin_uv_auth_param {
            m.push((i(8), b(p)));
        }
        if let Some(p) = self.pin_uv_auth_protocol {
            m.push((i(9), Value::Integer(p.into())));
        }
        if let Some(p) = self.enterprise_attestation {
            m.push((i(10), Value::Integer(p.into())));
        }
        if let Some(f) = &self.attestation_formats_preference {
            m.push((i(11), Value::Array(f.iter().map(|s| t(s)).collect())));
        }
        encode(m)
    }

    /// The full request frame: command byte 0x01 followed by the CBOR.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = vec![CMD_MAKE_CREDENTIAL];
        out.extend_from_slice(&self.to_cbor());
        out
    }
}

/// `authenticatorGetAssertion` parameters (CTAP 2.1 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetAssertionRequest {
    /// 0x01 `rpId` (required).
    pub rp_id: String,
    /// 0x02 `clientDataHash` (required; exactly 32 bytes when parsed).
    pub client_data_hash: Vec<u8>,
    /// 0x03 `allowList` (public-key descriptors only); empty = discoverable.
    pub allow_list: Vec<CredentialDescriptor>,
    /// 0x04 `extensions`.
    pub extensions: Extensions,
    /// 0x05 `options`.
    pub options: Options,
    /// 0x06 `pinUvAuthParam`.
    pub pin_uv_auth_param: Option<Vec<u8>>,
    /// 0x07 `pinUvAuthProtocol`.
    pub pin_uv_auth_protocol: Option<u64>,
}

impl GetAssertionRequest {
    /// A request with the required members and nothing else.
    pub fn new(rp_id: String, client_data_hash: Vec<u8>) -> Self {
        GetAssertionRequest {
            rp_id,
            client_data_hash,
            allow_list: Vec::new(),
            extensions: Extensions::default(),
            options: Options::default(),
            pin_uv_auth_param: None,
            pin_uv_auth_protocol: None,
        }
    }

    /// Parses the CBOR parameters (the bytes after the command byte).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, Error> {
        let mut m = decode_params(bytes)?;
        let rp_id = cbor::take_int(&mut m, 1)
            .map(|v| cbor::text(v, "rpId"))
            .transpose()?;
        let cdh = cbor::take_int(&mut m, 2)
            .map(client_data_hash)
            .transpose()?;
        let allow_list = cbor::take_int(&mut m, 3)
            .map(|v| CredentialDescriptor::parse_list(v, "allowList"))
            .transpose()?
            .unwrap_or_default();
        let extensions = cbor::take_int(&mut m, 4)
            .map(Extensions::parse)
            .transpose()?
            .unwrap_or_default();
        let options = cbor::take_int(&mut m, 5)
            .map(Options::parse)
            .transpose()?
            .unwrap_or_default();
        let pin_uv_auth_param = cbor::take_int(&mut m, 6)
            .map(|v| cbor::bytes(v, "pinUvAuthParam"))
            .transpose()?;
        let pin_uv_auth_protocol = cbor::take_int(&mut m, 7)
            .map(|v| cbor::uint(v, "pinUvAuthProtocol"))
            .transpose()?;
        Ok(GetAssertionRequest {
            rp_id: cbor::required(rp_id, "rpId")?,
            client_data_hash: cbor::required(cdh, "clientDataHash")?,
            allow_list,
            extensions,
            options,
            pin_uv_auth_param,
            pin_uv_auth_protocol,
        })
    }

    /// Canonical CBOR parameters (without the command byte).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m = vec![(i(1), t(&self.rp_id)), (i(2), b(&self.client_data_hash))];
        if !self.allow_list.is_empty() {
            m.push((i(3), descriptors_value(&self.allow_list)));
        }
        if !self.extensions.is_empty() {
            m.push((i(4), self.extensions.to_value()));
        }
        if !self.options.is_empty() {
            m.push((i(5), self.options.to_value()));
        }
        if let Some(p) = &self.pin_uv_auth_param {
            m.push((i(6), b(p)));
        }
        if let Some(p) = self.pin_uv_auth_protocol {
            m.push((i(7), Value::Integer(p.into())));
        }
        encode(m)
    }

    /// The full request frame: command byte 0x02 followed by the CBOR.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = vec![CMD_GET_ASSERTION];
        out.extend_from_slice(&self.to_cbor());
        out
    }
}
