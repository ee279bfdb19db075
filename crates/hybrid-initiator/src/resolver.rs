//! Where the desktop connects for a given advert domain ID (§4.1).

use hybrid_tunnel::TunnelBase;

use crate::error::Error;

/// Maps the tunnel-server domain ID in an advert to a tunnel base. The
/// phone chooses its server and the desktop follows the ID in the advert
/// (§8.3); tests and the demo map every ID to a loopback server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolver {
    base_url: Option<String>,
}

impl Resolver {
    /// Real host names: `wss://<domain_name(id)>` (§4.1).
    pub fn domains() -> Self {
        Resolver { base_url: None }
    }

    /// Every domain ID goes to `base_url` (`ws://127.0.0.1:PORT`,
    /// `wss://localhost:PORT`), keeping the ID itself.
    pub fn fixed(base_url: &str) -> Self {
        Resolver {
            base_url: Some(base_url.to_owned()),
        }
    }

    /// The tunnel base for `domain_id`; IDs 2..=255 are refused (§4.1).
    pub fn resolve(&self, domain_id: u16) -> Result<TunnelBase, Error> {
        match &self.base_url {
            Some(base) => {
                TunnelBase::url(base, domain_id).map_err(|e| Error::Resolve(domain_id, e))
            }
            None => {
                hybrid_tunnel::names::domain_name(domain_id)
                    .map_err(|e| Error::Resolve(domain_id, e))?;
                Ok(TunnelBase::Domain(domain_id))
            }
        }
    }
}
