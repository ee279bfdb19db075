//! Issue 16, "the control socket" (another local user is the attacker),
//! through the binary: no shared-`/tmp` fallback for the socket, and a
//! socket in a directory others can enter is refused before anything — the
//! QR URI — is sent.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{text, Home};

#[test]
fn control_socket_without_runtime_dir_is_refused_with_the_fix() {
    let h = Home::new();
    let tmp_fallback = format!("/tmp/hybridd-{}", rustix::process::getuid().as_raw());
    let existed = std::path::Path::new(&tmp_fallback).exists();
    for args in [
        &["scan", "FIDO:/1"][..],
        &[
            "run",
            "--tunnel-url",
            "ws://127.0.0.1:9",
            "--advert-file",
            "adv",
        ][..],
    ] {
        let o = h
            .cmd()
            .env_remove("XDG_RUNTIME_DIR")
            .args(args)
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("XDG_RUNTIME_DIR") && err.contains("--socket") && err.contains("`socket`"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::path::Path::new(&tmp_fallback).exists(),
        existed,
        "{tmp_fallback} created"
    );
}

#[test]
fn control_client_sends_nothing_to_a_squatted_socket() {
    let h = Home::new();
    let dir = h.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = dir.join("control.sock");
    let squatter = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    squatter.set_nonblocking(true).unwrap();
    let o = h
        .cmd()
        .arg("scan")
        .arg("--socket")
        .arg(&socket)
        .arg("FIDO:/1")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("accessible to other users") && err.contains("nothing was sent"),
        "{err}"
    );
    // The squatter never saw a connection (the process has exited).
    assert_eq!(
        squatter.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}
