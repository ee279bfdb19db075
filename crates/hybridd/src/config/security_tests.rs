//! Issue 16's configuration rules: plain `ws://` only to loopback unless
//! opted in, and no duration that could overflow a deadline.

use super::*;

fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    parse_file(text, Path::new("config.toml"))
}

/// Issue 16: `ws://` to a host that is not loopback needs the explicit
/// opt-in; the README's `ws://127.0.0.1` flow needs none.
#[test]
fn ws_tunnel_url_only_for_loopback_unless_opted_in() {
    let with = |toml: &str, flag: Option<&str>| {
        let o = Overrides {
            tunnel_url: flag.map(str::to_owned),
            ..Overrides::default()
        };
        resolve(parse(toml).unwrap(), &o, None)
    };
    assert!(with("", Some("ws://127.0.0.1:8080")).is_ok());
    let e = with("", Some("ws://tunnel.example:8080"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("allow_plain_ws_tunnel") && e.contains("wss://"),
        "{e}"
    );
    assert!(with("tunnel_url = \"ws://10.0.0.2\"", None).is_err());
    assert!(with("allow_plain_ws_tunnel = false", Some("ws://10.0.0.2")).is_err());
    let c = with("allow_plain_ws_tunnel = true", Some("ws://10.0.0.2:80")).unwrap();
    assert_eq!(c.tunnel.base_url().unwrap(), "ws://10.0.0.2:80");
    assert!(with("", Some("wss://tunnel.example")).is_ok());
}

/// Issue 16: a huge configured duration is a configuration error
/// naming the key, never a deadline that overflows later.
#[test]
fn huge_configured_durations_are_config_errors() {
    for key in [
        "wait_for_desktop_secs",
        "approval_timeout_secs",
        "max_qr_age_secs",
    ] {
        for v in [MAX_DURATION_SECS + 1, u64::MAX / 1000, u64::MAX] {
            let e = resolve(
                parse(&format!("{key} = {}", v.min(i64::MAX as u64))).unwrap(),
                &Overrides::default(),
                None,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(key) && e.contains("at most"), "{e}");
        }
        assert!(resolve(
            parse(&format!("{key} = {MAX_DURATION_SECS}")).unwrap(),
            &Overrides::default(),
            None
        )
        .is_ok());
    }
    let o = Overrides {
        approval_timeout_secs: Some(u64::MAX),
        ..Overrides::default()
    };
    let e = resolve(FileConfig::default(), &o, None).unwrap_err();
    assert!(e.to_string().contains("approval_timeout_secs"), "{e}");
}
