//! `hybridd vault …` and `hybridd credentials …` through the binary, plus
//! config errors as `hybridd run` reports them.

mod common;

use common::{text, Home};

#[test]
fn init_refuses_overwrite_and_change_pin_works() {
    let h = Home::new();
    h.init_vault("1234");
    assert!(h.vault().exists());
    // Never overwrites.
    let again = h.pin_file("p2", "5678");
    let o = h.run(&["vault", "init", "--pin-file", again.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("never overwritten"),
        "{}",
        text(&o.stderr)
    );

    // change-pin: wrong old PIN refused with the retries left, right one works.
    let wrong = h.pin_file("wrong", "0000");
    let new = h.pin_file("new", "98765");
    let o = h.run(&[
        "vault",
        "change-pin",
        "--pin-file",
        wrong.to_str().unwrap(),
        "--new-pin-file",
        new.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("wrong PIN"), "{}", text(&o.stderr));
    std::thread::sleep(std::time::Duration::from_millis(1100)); // the vault's 1 s delay after a wrong PIN
    let old = h.pin_file("old", "1234");
    let o = h.run(&[
        "vault",
        "change-pin",
        "--pin-file",
        old.to_str().unwrap(),
        "--new-pin-file",
        new.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The old PIN no longer works.
    let o = h.run(&[
        "vault",
        "change-pin",
        "--pin-file",
        old.to_str().unwrap(),
        "--new-pin-file",
        new.to_str().unwrap(),
    ]);
    assert!(!o.status.success());

    // A PIN breaking the policy is refused before anything is written.
    let short = h.pin_file("short", "12");
    let o = h.run(&[
        "vault",
        "change-pin",
        "--pin-file",
        new.to_str().unwrap(),
        "--new-pin-file",
        short.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("PIN rejected"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn destroy_needs_yes() {
    let h = Home::new();
    h.init_vault("1234");
    let o = h.run(&["vault", "destroy"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--yes"));
    assert!(h.vault().exists());
    let o = h.run(&["vault", "destroy", "--yes"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!h.vault().exists());
}

#[test]
fn list_empty_and_missing_vault() {
    let h = Home::new();
    let o = h.run(&["credentials", "list"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("hybridd vault init"),
        "{}",
        text(&o.stderr)
    );
    h.init_vault("1234");
    let o = h.run(&["credentials", "list", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
    let o = h.run(&["credentials", "delete", "abcd"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no passkey"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn run_without_vault_says_so() {
    let h = Home::new();
    let o = h.run(&["run", "--advert-stdout"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no vault: run `hybridd vault init`"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn config_errors_name_the_key() {
    let h = Home::new();
    h.write_config("radio = \"file\"\nadvert_fil = \"/tmp/x\"\n");
    let o = h.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("advert_fil") && e.contains("config.toml"), "{e}");

    h.write_config("approval = \"auto\"\n");
    let o = h.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("pin_file"), "{}", text(&o.stderr));

    h.write_config("domain_id = 5\n");
    let o = h.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("domain_id"), "{}", text(&o.stderr));

    // An explicit --config that does not exist is an error, not defaults.
    let o = h.run(&["run", "--config", "/nonexistent/hybridd.toml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn doctor_without_bluetooth_fails_in_one_line() {
    let h = Home::new();
    h.init_vault("1234");
    let o = h.run(&["doctor", "--offline"]);
    assert!(!o.status.success(), "doctor passed without a daemon");
    let out = text(&o.stdout);
    let bt: Vec<_> = out.lines().filter(|l| l.contains("bluetooth")).collect();
    assert_eq!(bt.len(), 1, "{out}");
    if bt[0].starts_with("FAIL") {
        assert!(bt[0].contains("fix:"), "{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok   vault:") && l.contains("0 passkey(s)")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("FAIL daemon:")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok   tunnel:") && l.contains("--offline")),
        "{out}"
    );
}
