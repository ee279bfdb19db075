//! One desktop transaction: identity key, QR secret, QR code, advert filter.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hybrid_ble::{EidKey, EidPlaintext};
use hybrid_qr::{QrCode, RequestType};
use hybrid_tunnel::client::ClientOptions;
use hybrid_tunnel::{RoutingId, TunnelId};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::advert::{AdvertSource, MatchedAdvert};
use crate::error::{Error, Stage};
use crate::resolver::Resolver;
use crate::session::{Channel, Connection};
use crate::timeline::Timeline;

/// The number of assigned tunnel domains this desktop knows (QR key 2),
/// like current Chromium: IDs 0 and 1 (§1.3, §4.1).
pub const KNOWN_DOMAINS: u64 = 2;

/// The desktop's side of one QR-initiated transaction: a fresh identity key
/// and QR secret, the QR code built from them, and the EID key that tells
/// this QR's adverts from everyone else's (§3.3). One `Desktop` per QR; a new
/// ceremony needs a new one (§8.3: keep the QR secret per transaction).
pub struct Desktop {
    identity: SecretKey,
    qr: QrCode,
    eid_key: EidKey,
    created: Instant,
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktop")
            .field("qr", &self.qr)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Desktop {
    /// A fresh identity (random 32-byte seed → `derive_p256_from_secret`,
    /// §2.3) and QR secret (16 random bytes), a QR with key 2 = 2, key 3 =
    /// now and hint `"mc"`.
    pub fn new(rng: &mut impl CryptoRngCore) -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let identity = hybrid_noise::derive_p256_from_secret(seed.as_ref()).map_err(Error::Key)?;
        let mut secret = Zeroizing::new([0u8; hybrid_qr::SECRET_SIZE]);
        rng.fill_bytes(secret.as_mut());
        let point = identity.public_key().to_encoded_point(true);
        let compressed: [u8; hybrid_qr::IDENTITY_KEY_SIZE] = point
            .as_bytes()
            .try_into()
            .map_err(|_| Error::Key(hybrid_noise::Error::DerivedKeyZero))?;
        let qr = QrCode::new(compressed, *secret)?
            .with_known_domains(KNOWN_DOMAINS)
            .with_timestamp(unix_now())
            .with_request_type(RequestType::MakeCredential);
        let eid_key = EidKey::from_secret(secret.as_ref());
        Ok(Desktop {
            identity,
            qr,
            eid_key,
            created: Instant::now(),
        })
    }

    /// Sets the request-type hint (key 5).
    #[must_use]
    pub fn with_request_type(mut self, t: RequestType) -> Self {
        self.qr = self.qr.clone().with_request_type(t);
        self
    }

    /// Sets the creation time (key 3), e.g. to test the phone's freshness policy.
    #[must_use]
    pub fn with_timestamp(mut self, unix_secs: u64) -> Self {
        self.qr = self.qr.clone().with_timestamp(unix_secs);
        self
    }

    /// The QR code.
    pub fn qr(&self) -> &QrCode {
        &self.qr
    }

    /// The `FIDO:/` URI (§1.1). It contains the QR secret: never log it.
    pub fn qr_uri(&self) -> String {
        self.qr.to_uri()
    }

    /// The URI as a QR code in Unicode half blocks (dark on light), for a
    /// terminal.
    pub fn qr_terminal(&self) -> Result<String, Error> {
        use qrcode::render::unicode::Dense1x2;
        let code = qrcode::QrCode::new(self.qr_uri().as_bytes())
            .map_err(|e| Error::QrRender(e.to_string()))?;
        Ok(code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build())
    }

    /// The tunnel ID both sides derive from the QR secret (§2.3).
    pub fn tunnel_id(&self) -> TunnelId {
        TunnelId(hybrid_ble::tunnel_id(self.qr.secret()))
    }

    /// The desktop's advert check (§3.3): decrypts under this QR's EID key
    /// and requires a domain this desktop knows (key 2).
    pub fn match_advert(&self, service_data: &[u8]) -> Result<EidPlaintext, hybrid_ble::BleError> {
        let plaintext = hybrid_ble::decrypt(&self.eid_key, service_data)?;
        plaintext.check_domain(self.qr.known_domains())?;
        Ok(plaintext)
    }

    /// Waits up to `timeout` for the first candidate that passes
    /// [`Desktop::match_advert`]; every other candidate is skipped (and
    /// counted), so an advert for another QR never leads to a connection.
    pub async fn await_advert(
        &self,
        source: &mut AdvertSource,
        timeout: Duration,
    ) -> Result<MatchedAdvert, Error> {
        let started = Instant::now();
        let mut ignored = 0usize;
        let wait = async {
            loop {
                let candidate = source.next_candidate().await?;
                match self.match_advert(&candidate) {
                    Ok(plaintext) => return Ok::<_, Error>(plaintext),
                    Err(e) => {
                        ignored += 1;
                        tracing::debug!(reason = %e, "advert ignored");
                    }
                }
            }
        };
        let plaintext = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout(Stage::Advert, timeout))??;
        Ok(MatchedAdvert {
            plaintext,
            waited: started.elapsed(),
            ignored,
        })
    }

    /// Time since the QR code was made.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// Opens `/cable/connect/<routing id>/<tunnel id>` at the base the
    /// resolver gives for the advert's domain (§4.2) and derives the PSK
    /// from the advert plaintext (§5.3). Records phase `"tunnel"`.
    pub async fn connect(
        &self,
        advert: &MatchedAdvert,
        resolver: &Resolver,
        opts: &ClientOptions,
    ) -> Result<Connection, Error> {
        let mut timeline = Timeline::new();
        let base = resolver.resolve(advert.plaintext.domain_id())?;
        let routing_id = RoutingId(advert.plaintext.routing_id());
        let tunnel =
            hybrid_tunnel::client::connect_desktop(&base, &routing_id, &self.tunnel_id(), opts)
                .await?;
        timeline.mark("tunnel");
        let psk = hybrid_ble::psk(self.qr.secret(), &advert.plaintext);
        Ok(Connection::new(
            tunnel,
            psk,
            self.identity.clone(),
            timeline,
        ))
    }

    /// The whole opening: [`Desktop::await_advert`], [`Desktop::connect`]
    /// and [`Connection::handshake`], ready for CTAP requests.
    pub async fn establish<R: CryptoRngCore + Send>(
        &self,
        source: &mut AdvertSource,
        advert_timeout: Duration,
        resolver: &Resolver,
        opts: &ClientOptions,
        rng: &mut R,
    ) -> Result<Channel, Error> {
        let advert = self.await_advert(source, advert_timeout).await?;
        let conn = self.connect(&advert, resolver, opts).await?;
        conn.handshake(rng).await
    }
}
