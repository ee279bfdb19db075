//! End-to-end ceremonies on loopback: the daemon's ceremony core
//! (`hybridd::ceremony`) against the desktop from `hybrid-initiator`, through
//! the real tunnel server, verified as a relying party (hybrid-protocol.md
//! §0 steps 1–6).
#![allow(missing_docs)]
// Helpers outside #[test] fns are not covered by clippy.toml's test exemptions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{auth, rp, World};

#[tokio::test]
async fn register_then_sign_in_in_separate_sessions() {
    let mut world = World::new().await;
    let (cred, a) = world.register(auth(1), 1).await;
    let mut creds = vec![cred];
    let (i, a) = world.sign_in(a, &mut creds).await;
    assert_eq!(i, 0);
    let first = creds[0].sign_count;
    let (_, _a) = world.sign_in(a, &mut creds).await;
    assert!(creds[0].sign_count > first, "the counter increases");
}

#[tokio::test]
async fn register_and_sign_in_with_the_sqlite_vault() {
    let mut world = World::new().await;
    let path = world.dir.path().join("v").join("vault.db");
    let vault = hybrid_vault::Vault::create(
        &path,
        "1234-e2e",
        hybrid_vault::KdfParams::INSECURE_FOR_TESTS,
    )
    .unwrap();
    let env = common::VaultEnv::with_store(vault, 77);
    let a = hybrid_ctap::Authenticator::new(hybrid_ctap::Config::default(), env);
    let (cred, a) = world.register(a, 1).await;
    let mut creds = vec![cred];
    let (_, a) = world.sign_in(a, &mut creds).await;
    assert_eq!(a.env().store.count().unwrap(), 1);
}

/// Two discoverable credentials: the getAssertion announces
/// `numberOfCredentials` = 2 and the desktop fetches the other with
/// getNextAssertion in the same session, under the default one-command
/// policy (CTAP 2.1 §6.3; libwebauthn and Chromium's `GetAssertionTask` do
/// this).
#[tokio::test]
async fn two_credentials_for_one_rp_with_get_next_assertion() {
    let mut world = World::new().await;
    let (c1, a) = world.register(auth(2), 1).await;
    let (c2, a) = world.register(a, 2).await;
    let mut creds = vec![c1, c2];
    let desktop = world.desktop();
    let phone = world.start_phone(&desktop, a);
    let mut ch = world.establish(&desktop).await;
    let (i, first) = ch
        .authenticate(&rp(), &mut creds, [5; 32], &[])
        .await
        .unwrap();
    assert_eq!(first.number_of_credentials, Some(2));
    let (j, next) = ch.next_assertion(&rp(), &mut creds, [5; 32]).await.unwrap();
    assert_ne!(i, j, "getNextAssertion returns the other credential");
    assert_eq!(next.number_of_credentials, None);
    ch.shutdown().await.unwrap();
    let (report, _) = phone.finish().await;
    assert_eq!(
        report.outcome,
        hybrid_session::Outcome::Completed { commands: 2 }
    );
}

/// One command per session by default: after the getAssertion and the
/// getNextAssertion it announced, another getAssertion closes the session
/// (conformance checklist "A second command in one-command mode → close").
#[tokio::test]
async fn one_command_per_session_by_default() {
    let mut world = World::new().await;
    let (c1, a) = world.register(auth(3), 1).await;
    let (c2, a) = world.register(a, 2).await;
    let mut creds = vec![c1, c2];
    let desktop = world.desktop();
    let phone = world.start_phone(&desktop, a);
    let mut ch = world.establish(&desktop).await;
    let (_, first) = ch
        .authenticate(&rp(), &mut creds, [5; 32], &[])
        .await
        .unwrap();
    assert_eq!(first.number_of_credentials, Some(2));
    ch.next_assertion(&rp(), &mut creds, [5; 32]).await.unwrap();
    // Nothing more was announced: a third getNextAssertion or a new
    // getAssertion is a second command.
    assert!(ch
        .authenticate(&rp(), &mut creds, [6; 32], &[])
        .await
        .is_err());
    let (report, _) = phone.finish().await;
    assert_eq!(
        report.outcome,
        hybrid_session::Outcome::Failed(hybrid_session::FailReason::SecondCommand)
    );
}

#[tokio::test]
async fn same_ceremony_over_wss_with_a_test_ca() {
    let mut world = World::tls().await;
    assert!(world.base.starts_with("wss://"));
    let (cred, a) = world.register(auth(4), 1).await;
    let mut creds = vec![cred];
    world.sign_in(a, &mut creds).await;
}

/// The leak checks (`e2e_leaks.rs`) must fail, not pass with zeros, when `/proc`
/// cannot be read (issue 16).
#[test]
fn leak_probes_fail_when_proc_cannot_be_read() {
    let missing = std::path::Path::new("/proc/self/no-such-entry");
    let fds = std::panic::catch_unwind(|| common::open_fds_in(missing));
    assert!(fds.is_err(), "open_fds_in returned {fds:?} for {missing:?}");
    let rss = std::panic::catch_unwind(|| common::rss_kib_from(missing));
    assert!(
        rss.is_err(),
        "rss_kib_from returned {rss:?} for {missing:?}"
    );
    // A readable file without a VmRSS line is not a measurement either.
    let no_rss = std::panic::catch_unwind(|| {
        common::rss_kib_from(std::path::Path::new("/proc/self/cmdline"))
    });
    assert!(no_rss.is_err());
    // The real probes work here.
    assert!(common::open_fds() > 0 && common::rss_kib() > 0);
}
