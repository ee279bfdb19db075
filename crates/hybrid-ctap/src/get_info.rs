//! `authenticatorGetInfo` (CTAP 2.1 §6.4), shaped for a hybrid phone as
//! hybrid-protocol.md §7.1 requires, and a parser applying Chromium's
//! `ReadCTAPGetInfoResponse` rules (device_response_converter.cc) so tests can
//! check that what we send is what Chrome accepts.

use hybrid_cbor::Value;

use crate::cbor::{self, b, i, t};
use crate::error::{Error, VerifyError};
use crate::store::{COSE_EDDSA, COSE_ES256};
use crate::types::{PubKeyCredParam, PUBLIC_KEY};

/// Decoded/encodable getInfo response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetInfoResponse {
    /// 0x01 `versions`.
    pub versions: Vec<String>,
    /// 0x02 `extensions`.
    pub extensions: Vec<String>,
    /// 0x03 `aaguid`.
    pub aaguid: [u8; 16],
    /// 0x04 `options` (all bools here; `defaultCredProtect` is not sent).
    pub options: Vec<(String, bool)>,
    /// 0x05 `maxMsgSize`.
    pub max_msg_size: Option<u64>,
    /// 0x09 `transports`.
    pub transports: Vec<String>,
    /// 0x0A `algorithms`.
    pub algorithms: Vec<PubKeyCredParam>,
}

impl GetInfoResponse {
    /// What hybridd's authenticator reports (hybrid-protocol.md §7.1):
    /// versions FIDO_2_0 + FIDO_2_1; extensions `credProtect` and `prf` (no
    /// `hmac-secret`: Chrome would then use the encrypted-salt form, which
    /// needs clientPIN); options rk/up/uv true and *no* `plat`, `clientPin`
    /// or `pinUvAuthToken` (no key 6 is sent); transports
    /// `["cable","hybrid","internal"]` (Chrome copies them into
    /// `getTransports()`); algorithms ES256 then EdDSA.
    pub fn for_phone(aaguid: [u8; 16], max_msg_size: u64) -> Self {
        let s = |x: &str| x.to_owned();
        GetInfoResponse {
            versions: vec![s("FIDO_2_0"), s("FIDO_2_1")],
            extensions: vec![s("credProtect"), s("prf")],
            aaguid,
            options: vec![(s("rk"), true), (s("up"), true), (s("uv"), true)],
            max_msg_size: Some(max_msg_size),
            transports: vec![s("cable"), s("hybrid"), s("internal")],
            algorithms: vec![
                PubKeyCredParam {
                    alg: COSE_ES256,
                    cred_type: s(PUBLIC_KEY),
                },
                PubKeyCredParam {
                    alg: COSE_EDDSA,
                    cred_type: s(PUBLIC_KEY),
                },
            ],
        }
    }

    /// Canonical CBOR (without the status byte).
    pub fn to_cbor(&self) -> Vec<u8> {
        let texts = |v: &[String]| Value::Array(v.iter().map(|s| t(s)).collect());
        let mut m = vec![(i(1), texts(&self.versions))];
        if !self.extensions.is_empty() {
            m.push((i(2), texts(&self.extensions)));
        }
        m.push((i(3), b(&self.aaguid)));
        if !self.options.is_empty() {
            m.push((
                i(4),
                Value::Map(
                    self.options
                        .iter()
                        .map(|(k, v)| (t(k), Value::Bool(*v)))
                        .collect(),
                ),
            ));
        }
        if let Some(n) = self.max_msg_size {
            m.push((i(5), Value::Integer(n.into())));
        }
        if !self.transports.is_empty() {
            m.push((i(9), texts(&self.transports)));
        }
        if !self.algorithms.is_empty() {
            m.push((
                i(10),
                Value::Array(
                    self.algorithms
                        .iter()
                        .map(|p| {
                            Value::Map(vec![(t("alg"), i(p.alg)), (t("type"), t(&p.cred_type))])
                        })
                        .collect(),
                ),
            ));
        }
        hybrid_cbor::to_canonical_vec(&Value::Map(m))
    }

    /// Parses getInfo by the rules of hybrid-protocol.md §7.1 (Chromium
    /// `ReadCTAPGetInfoResponse`): canonical CBOR; versions a non-empty array
    /// of unique text strings with at least one of `FIDO_2_0`/`FIDO_2_1`;
    /// AAGUID exactly 16 bytes; option values bools (`defaultCredProtect`
    /// an unsigned int, skipped); no `clientPin`/`pinUvAuthToken` without
    /// key 6; `credBlob` needs `credProtect` and key 15; `largeBlobs` needs `rk`.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |w: &'static str| Error::Verify(VerifyError::Malformed(w));
        let mut m = cbor::map(hybrid_cbor::decode_canonical(bytes)?, "getInfo")?;
        let text_array = |v: Value, w: &'static str| -> Result<Vec<String>, Error> {
            cbor::array(v, w)?
                .into_iter()
                .map(|x| cbor::text(x, w))
                .collect()
        };
        let versions = text_array(
            cbor::required(cbor::take_int(&mut m, 1), "versions")?,
            "versions",
        )?;
        if versions.is_empty() {
            return Err(bad("empty versions"));
        }
        for (n, v) in versions.iter().enumerate() {
            if versions.iter().skip(n + 1).any(|w| w == v) {
                return Err(bad("duplicate version"));
            }
        }
        if !versions.iter().any(|v| v == "FIDO_2_0" || v == "FIDO_2_1") {
            return Err(bad("no CTAP2 version"));
        }
        let extensions = cbor::take_int(&mut m, 2)
            .map(|v| text_array(v, "extensions"))
            .transpose()?
            .unwrap_or_default();
        let aaguid: [u8; 16] = cbor::bytes(
            cbor::required(cbor::take_int(&mut m, 3), "aaguid")?,
            "aaguid",
        )?
        .try_into()
        .map_err(|_| bad("aaguid length"))?;
        let mut options = Vec::new();
        if let Some(v) = cbor::take_int(&mut m, 4) {
            for (k, v) in cbor::map(v, "options")? {
                let k = cbor::text(k, "option name")?;
                if k == "defaultCredProtect" {
                    cbor::uint(v, "defaultCredProtect")?;
                    continue;
                }
                options.push((k, cbor::boolean(v, "option value")?));
            }
        }
        let max_msg_size = cbor::take_int(&mut m, 5)
            .map(|v| cbor::uint(v, "maxMsgSize"))
            .transpose()?;
        let has_pin_protocols = cbor::take_int(&mut m, 6).is_some();
        let opt = |name: &str| options.iter().any(|(k, _)| k == name);
        if (opt("clientPin") || opt("pinUvAuthToken")) && !has_pin_protocols {
            return Err(bad("clientPin/pinUvAuthToken without pinUvAuthProtocols"));
        }
        if options.iter().any(|(k, v)| k == "largeBlobs" && *v)
            && !options.iter().any(|(k, v)| k == "rk" && *v)
        {
            return Err(bad("largeBlobs without rk"));
        }
        let transports = cbor::take_int(&mut m, 9)
            .map(|v| text_array(v, "transports"))
            .transpose()?
            .unwrap_or_default();
        let algorithms = cbor::take_int(&mut m, 10)
            .map(crate::types::parse_params)
            .transpose()?
            .unwrap_or_default();
        if extensions.iter().any(|e| e == "credBlob") {
            let max_blob = cbor::take_int(&mut m, 15)
                .map(|v| cbor::uint(v, "maxCredBlobLength"))
                .transpose()?;
            if !extensions.iter().any(|e| e == "credProtect") || max_blob.unwrap_or(0) < 32 {
                return Err(bad("credBlob without credProtect / maxCredBlobLength"));
            }
        }
        Ok(GetInfoResponse {
            versions,
            extensions,
            aaguid,
            options,
            max_msg_size,
            transports,
            algorithms,
        })
    }
}
