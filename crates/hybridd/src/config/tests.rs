//! Unit tests of [`super`] (a file of their own: config.rs stays under 600 lines).

use super::*;

fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    parse_file(text, Path::new("config.toml"))
}

#[test]
fn empty_file_is_all_defaults() {
    let c = resolve(parse("").unwrap(), &Overrides::default(), None).unwrap();
    assert_eq!(c.tunnel, TunnelBase::Domain(0));
    assert_eq!(c.radio, RadioBackend::Bluez);
    assert_eq!(c.adapter, None);
    assert_eq!(c.wait_for_desktop, Duration::from_secs(120));
    assert_eq!(c.approval_timeout, Duration::from_secs(60));
    assert_eq!(c.max_qr_age_secs, 600);
    assert_eq!(c.approval, ApprovalMode::Interactive);
    assert_eq!(c.aaguid, hybrid_ctap::DEFAULT_AAGUID);
    assert_eq!(c.verify, VerifyMode::Pin);
    assert_eq!(c.pinentry.program, Path::new("pinentry"));
    assert_eq!(c.pinentry.tty, None);
    assert_eq!(c.fingerprint_fallback, FingerprintFallback::Pinentry);
    assert_eq!(c.fingerprint_attempts, 3);
    assert_eq!(c.vault_session_idle, Duration::from_secs(900));
}

#[test]
fn unknown_key_is_named() {
    let e = parse("tunel_url = \"ws://x\"\n").unwrap_err().to_string();
    assert!(e.contains("tunel_url"), "{e}");
}

#[test]
fn wrong_type_and_bad_enum() {
    assert!(parse("domain_id = \"zero\"").is_err());
    let e = parse("radio = \"wifi\"").unwrap_err().to_string();
    assert!(e.contains("wifi"), "{e}");
}

#[test]
fn unassigned_domain_refused() {
    let e = resolve(parse("domain_id = 7").unwrap(), &Overrides::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("domain_id"), "{e}");
}

#[test]
fn flags_override_file() {
    let f =
        parse("tunnel_url = \"wss://a.example\"\nradio = \"stdout\"\napproval_timeout_secs = 5\n")
            .unwrap();
    let o = Overrides {
        tunnel_url: Some("ws://127.0.0.1:9".into()),
        advert_file: Some("/tmp/adv".into()),
        ..Overrides::default()
    };
    let c = resolve(f, &o, None).unwrap();
    assert_eq!(c.tunnel, TunnelBase::url("ws://127.0.0.1:9", 0).unwrap());
    assert_eq!(c.radio, RadioBackend::File);
    assert_eq!(c.approval_timeout, Duration::from_secs(5));
}

#[test]
fn auto_needs_pin_file_and_file_needs_path() {
    assert!(resolve(
        parse("approval = \"auto\"").unwrap(),
        &Overrides::default(),
        None
    )
    .is_err());
    assert!(resolve(
        parse("radio = \"file\"").unwrap(),
        &Overrides::default(),
        None
    )
    .is_err());
    let c = resolve(
        parse("approval = \"auto\"\npin_file = \"/p\"").unwrap(),
        &Overrides::default(),
        None,
    )
    .unwrap();
    assert_eq!(c.approval, ApprovalMode::Auto);
}

#[test]
fn aaguid_parsed() {
    let c = resolve(
        parse("aaguid = \"00112233-4455-6677-8899-aabbccddeeff\"").unwrap(),
        &Overrides::default(),
        None,
    )
    .unwrap();
    assert_eq!(c.aaguid[0], 0x00);
    assert_eq!(c.aaguid[15], 0xff);
    assert!(resolve(
        parse("aaguid = \"0011\"").unwrap(),
        &Overrides::default(),
        None
    )
    .is_err());
}

#[test]
fn desktop_keys_parse() {
    let c = resolve(
        parse(
            "approval = \"notification\"\nverify = \"fingerprint\"\n\
             pinentry = \"/usr/bin/pinentry-tty\"\npinentry_tty = \"/dev/pts/3\"\n\
             fingerprint_fallback = \"decline\"\nfingerprint_attempts = 0\n\
             vault_session_idle_secs = 60\n",
        )
        .unwrap(),
        &Overrides::default(),
        None,
    )
    .unwrap();
    assert_eq!(c.approval, ApprovalMode::Notification);
    assert_eq!(c.verify, VerifyMode::Fingerprint);
    assert_eq!(c.pinentry.tty.as_deref(), Some(Path::new("/dev/pts/3")));
    assert_eq!(c.fingerprint_fallback, FingerprintFallback::Decline);
    assert_eq!(c.fingerprint_attempts, 1);
    assert_eq!(c.vault_session_idle, Duration::from_secs(60));
    assert!(parse("verify = \"face\"").is_err());
    assert!(parse_mode("notification").is_ok());
    assert!(resolve(
        parse("vault_session_idle_secs = 0").unwrap(),
        &Overrides::default(),
        None
    )
    .is_err());
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = include_str!("../../../../dist/config.example.toml");
    let c = resolve(parse(text).unwrap(), &Overrides::default(), None).unwrap();
    assert_eq!(c.verify, VerifyMode::Pin);
    assert_eq!(c.fingerprint_fallback, FingerprintFallback::Pinentry);
}
