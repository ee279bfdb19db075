//! The loopback world shared by the end-to-end tests: a tunnel server on
//! 127.0.0.1 (ws:// or wss:// with a test CA), a file radio in a temp dir,
//! the daemon's ceremony core (`hybridd::ceremony`) with a person who
//! always approves, and the desktop from `hybrid-initiator`.
#![allow(dead_code, missing_docs)]
// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::Duration;

use hybrid_ctap::testing::{test_authenticator, SeededRng, TestEnv};
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{Approval, ApprovalRequest, Authenticator, RegisteredCredential, RelyingParty};
use hybrid_initiator::{AdvertSource, Channel, Desktop, Resolver};
use hybrid_tunnel::client::ClientOptions;
use hybrid_tunnel::server::{ServerConfig, ServerHandle, TlsFiles, TunnelServer};
use hybrid_tunnel::TunnelBase;
use hybridd::ceremony::{Authenticate, Ceremony, CeremonyOptions, Report, SessionEvent};
use hybridd::replay::ReplaySet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type TestAuth = Authenticator<TestEnv>;

pub fn rp() -> RelyingParty {
    RelyingParty::new("example.com", "Example")
}

pub fn user(n: u8) -> UserEntity {
    UserEntity {
        id: vec![n; 16],
        name: Some(format!("user{n}@example.com")),
        display_name: Some(format!("User {n}")),
    }
}

pub struct World {
    pub server: Option<ServerHandle>,
    pub dir: tempfile::TempDir,
    pub advert_file: PathBuf,
    pub base: String,
    pub resolver: Resolver,
    pub phone: CeremonyOptions,
    pub client: ClientOptions,
    pub rng: SeededRng,
}

/// A running phone session.
pub struct PhoneTask<H> {
    pub task: JoinHandle<(Report, H)>,
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    pub cancel: tokio::sync::watch::Sender<bool>,
}

impl<H: Authenticate> PhoneTask<H> {
    pub async fn finish(self) -> (Report, H) {
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("phone session did not end")
            .expect("phone task panicked")
    }
}

impl World {
    pub async fn new() -> World {
        Self::with_config(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..ServerConfig::default()
            },
            None,
        )
        .await
    }

    /// A `wss://` world: a test CA made with rcgen signs the server's
    /// certificate; phone and desktop trust the CA file only.
    pub async fn tls() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = make_ca(dir.path());
        let w = Self::with_config(
            ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                tls: Some(TlsFiles { cert, key }),
                ..ServerConfig::default()
            },
            Some(ca),
        )
        .await;
        std::mem::forget(dir); // (the CA dir must outlive the world; tiny, in /tmp)
        w
    }

    async fn with_config(config: ServerConfig, ca: Option<PathBuf>) -> World {
        let server = TunnelServer::bind(config).await.unwrap().spawn();
        // For wss:// the certificate names "localhost".
        let base = server.base_url().replace(
            "127.0.0.1",
            if ca.is_some() {
                "localhost"
            } else {
                "127.0.0.1"
            },
        );
        let client = ClientOptions {
            connect_timeout: Duration::from_secs(5),
            extra_ca_file: ca.clone(),
            webpki_roots: ca.is_none(),
            ..ClientOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let advert_file = dir.path().join("advert");
        World {
            phone: phone_options(TunnelBase::url(&base, 0).unwrap(), client.clone()),
            resolver: Resolver::fixed(&base),
            base,
            server: Some(server),
            dir,
            advert_file,
            client,
            rng: SeededRng::new(1234),
        }
    }

    pub fn desktop(&mut self) -> Desktop {
        Desktop::new(&mut self.rng).unwrap()
    }

    /// Starts the phone on `desktop`'s QR with the file radio.
    pub fn start_phone<H: Authenticate + 'static>(
        &self,
        desktop: &Desktop,
        handler: H,
    ) -> PhoneTask<H> {
        self.start_phone_with(desktop, handler, self.phone.clone())
    }

    /// Runs the ceremony for `desktop`'s QR with `handler`, a person who
    /// approves everything (verified), and a fresh replay set.
    pub fn start_phone_with<H: Authenticate + 'static>(
        &self,
        desktop: &Desktop,
        mut handler: H,
        opts: CeremonyOptions,
    ) -> PhoneTask<H> {
        let uri = desktop.qr_uri();
        let path = self.advert_file.clone();
        let (tx, events) = mpsc::unbounded_channel();
        let (cancel, cancel_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut radio = hybrid_ble::FileRadio::to_file(&path);
            let mut approve = |_: &ApprovalRequest| {
                Ok(Approval {
                    user_present: true,
                    user_verified: true,
                })
            };
            let report = Ceremony {
                radio: &mut radio,
                authenticator: &mut handler,
                user: &mut approve,
                replay: &mut ReplaySet::default(),
                progress: &tx,
                cancel: Some(cancel_rx),
                l2cap: None,
            }
            .run(&uri, &opts)
            .await;
            (report, handler)
        });
        PhoneTask {
            task,
            events,
            cancel,
        }
    }

    pub fn source(&self) -> AdvertSource {
        AdvertSource::file(&self.advert_file)
    }

    /// Advert → connect → handshake → getInfo.
    pub async fn establish(&mut self, desktop: &Desktop) -> Channel {
        let mut source = self.source();
        desktop
            .establish(
                &mut source,
                Duration::from_secs(10),
                &self.resolver,
                &self.client,
                &mut self.rng,
            )
            .await
            .unwrap()
    }

    /// A full registration session; returns the registered credential.
    pub async fn register<H: Authenticate + 'static>(
        &mut self,
        handler: H,
        n: u8,
    ) -> (RegisteredCredential, H) {
        let desktop = self.desktop();
        let phone = self.start_phone(&desktop, handler);
        let mut ch = self.establish(&desktop).await;
        let (cred, _) = ch.register(&rp(), [n; 32], user(n), true).await.unwrap();
        let (_, closed) = ch.shutdown().await.unwrap();
        assert!(closed, "the phone closes after the shutdown frame");
        let (report, handler) = phone.finish().await;
        assert!(report.outcome.is_completed(), "{}", report.outcome);
        (cred, handler)
    }

    /// A full discoverable sign-in session (empty allowList).
    pub async fn sign_in<H: Authenticate + 'static>(
        &mut self,
        handler: H,
        creds: &mut [RegisteredCredential],
    ) -> (usize, H) {
        let desktop = self.desktop();
        let phone = self.start_phone(&desktop, handler);
        let mut ch = self.establish(&desktop).await;
        let (i, _) = ch.authenticate(&rp(), creds, [9; 32], &[]).await.unwrap();
        ch.shutdown().await.unwrap();
        let (report, handler) = phone.finish().await;
        assert!(report.outcome.is_completed(), "{}", report.outcome);
        (i, handler)
    }
}

pub fn auth(seed: u64) -> TestAuth {
    test_authenticator(seed)
}

/// Writes ca.pem, cert.pem (localhost, 127.0.0.1), key.pem into `dir`.
pub fn make_ca(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hybridd e2e test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "hybridd e2e tunnel");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    open_fds_in(std::path::Path::new("/proc/self/fd"))
}

/// Resident set size in KiB.
pub fn rss_kib() -> u64 {
    rss_kib_from(std::path::Path::new("/proc/self/status"))
}

/// Entries of a `/proc/<pid>/fd` directory. Panics when it cannot be read:
/// a leak check that cannot measure must fail, never compare zeros.
pub fn open_fds_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "leak check: cannot read {}: {e}; it cannot run",
                dir.display()
            )
        })
        .count()
}

/// `VmRSS` of a `/proc/<pid>/status` file, in KiB. Panics when it cannot
/// be read or has no such line (see [`open_fds_in`]).
pub fn rss_kib_from(status: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(status).unwrap_or_else(|e| {
        panic!(
            "leak check: cannot read {}: {e}; it cannot run",
            status.display()
        )
    });
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("leak check: no VmRSS line in {}", status.display()))
}

/// The test doubles around the real SQLite vault.
pub type VaultEnv = TestEnv<hybrid_vault::Vault>;

/// Phone options for the loopback world: short waits so failures end fast.
pub fn phone_options(tunnel: TunnelBase, client: ClientOptions) -> CeremonyOptions {
    let mut session = hybrid_session::SessionConfig::new(tunnel, Vec::new());
    session.wait_for_desktop = Duration::from_secs(10);
    session.command_timeout = Duration::from_secs(10);
    session.shutdown_grace = Duration::from_secs(2);
    CeremonyOptions {
        session,
        client,
        freshness: hybrid_qr::Freshness::default(),
        allow_qr_without_timestamp: false,
    }
}

/// The world's phone options with a 1 s wait for the desktop.
pub fn short_wait(world: &World) -> CeremonyOptions {
    let mut o = world.phone.clone();
    o.session.wait_for_desktop = Duration::from_secs(1);
    o
}
