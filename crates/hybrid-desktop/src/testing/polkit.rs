//! A stand-in polkit authority that allows everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::zvariant::OwnedValue;

use super::HarnessError;

/// `CheckAuthorization`'s result, `(bba{ss})`.
#[derive(Debug, serde::Serialize, zbus::zvariant::Type)]
struct AuthorizationResult {
    is_authorized: bool,
    is_challenge: bool,
    details: HashMap<String, String>,
}

struct Authority {
    asked: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl Authority {
    /// Allows `action_id` and records it.
    fn check_authorization(
        &self,
        _subject: (String, HashMap<String, OwnedValue>),
        action_id: String,
        _details: HashMap<String, String>,
        _flags: u32,
        _cancellation_id: String,
    ) -> (AuthorizationResult,) {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(action_id);
        // One out argument, the struct (a bare struct would be flattened
        // into three).
        (AuthorizationResult {
            is_authorized: true,
            is_challenge: false,
            details: HashMap::new(),
        },)
    }

    #[zbus(property)]
    fn backend_name(&self) -> String {
        "hybridd-test-allow-all".to_owned()
    }

    #[zbus(property)]
    fn backend_version(&self) -> String {
        "0".to_owned()
    }

    #[zbus(property)]
    fn backend_features(&self) -> u32 {
        0
    }
}

/// `org.freedesktop.PolicyKit1` on a private bus, allowing every action
/// (fprintd asks it before `Claim`, `VerifyStart` and `EnrollStart`). It
/// records the action ids asked, so a test can show fprintd really asked.
#[derive(Debug)]
pub struct PolkitAllowAll {
    _conn: zbus::Connection,
    asked: Arc<Mutex<Vec<String>>>,
}

impl PolkitAllowAll {
    /// Serves the authority on `bus_address`.
    pub async fn start(bus_address: &str) -> Result<Self, HarnessError> {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fail = |e: zbus::Error| HarnessError::Failed(format!("polkit stand-in: {e}"));
        let conn = zbus::connection::Builder::address(bus_address)
            .map_err(fail)?
            .serve_at(
                "/org/freedesktop/PolicyKit1/Authority",
                Authority {
                    asked: asked.clone(),
                },
            )
            .map_err(fail)?
            .name("org.freedesktop.PolicyKit1")
            .map_err(fail)?
            .build()
            .await
            .map_err(fail)?;
        Ok(PolkitAllowAll { _conn: conn, asked })
    }

    /// The action ids asked so far.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
