//! The PIN through a real pinentry: `pinentry-tty` on a pseudo-terminal
//! the test types into; and pinentries that misbehave (small scripts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hybrid_desktop::testing::{find_program, or_skip, Pty};
use hybrid_desktop::{get_pin, DesktopError, PinOutcome, PinRequest, Pinentry, PinentryConfig};

use super::{bounded, deadline};

/// What the terminal may take to show the prompt.
const SHOW: Duration = Duration::from_secs(20);

fn request(error: Option<&str>) -> PinRequest<'_> {
    PinRequest {
        title: "hybridd",
        description: "Sign in to example.com as alice?\n100% yours: enter the vault PIN.",
        prompt: "Vault PIN:",
        error,
    }
}

fn tty_config(test: &str, pty: &Pty) -> Option<PinentryConfig> {
    let program = or_skip(test, find_program("pinentry-tty", "pinentry-tty"))?;
    Some(PinentryConfig {
        program,
        ttyname: Some(pty.path().to_owned()),
        ttytype: Some("dumb".to_owned()),
        display: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_tty_pin_typed_on_the_terminal_is_returned() {
    let test = "pinentry_tty_pin_typed_on_the_terminal_is_returned";
    bounded(test, async {
        let mut pty = Pty::open().unwrap();
        let Some(config) = tty_config(test, &pty) else {
            return;
        };
        let task =
            tokio::spawn(async move { get_pin(&config, &request(None), deadline(60)).await });
        // The terminal stays open (`_pty`) until pinentry has answered:
        // closing the master side hangs the terminal up.
        let (shown, _pty) = tokio::task::spawn_blocking(move || {
            let shown = pty.read_until(b"Vault PIN:", SHOW).unwrap();
            pty.type_in(b"1234 five%\n").unwrap();
            (shown, pty)
        })
        .await
        .unwrap();
        let shown = String::from_utf8_lossy(&shown);
        // The description arrived intact through Assuan's %-escaping.
        assert!(
            shown.contains("Sign in to example.com as alice?"),
            "{shown}"
        );
        assert!(
            shown.contains("100% yours: enter the vault PIN."),
            "{shown}"
        );
        match task.await.unwrap().unwrap() {
            PinOutcome::Pin(pin) => assert_eq!(pin.as_str(), "1234 five%"),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_tty_retry_shows_the_error_in_the_same_pinentry() {
    let test = "pinentry_tty_retry_shows_the_error_in_the_same_pinentry";
    bounded(test, async {
        let mut pty = Pty::open().unwrap();
        let Some(config) = tty_config(test, &pty) else {
            return;
        };
        let mut p = Pinentry::start(&config, deadline(60))
            .await
            .unwrap()
            .unwrap();
        let typing = tokio::task::spawn_blocking(move || {
            pty.read_until(b"Vault PIN:", SHOW).unwrap();
            pty.type_in(b"0000\n").unwrap();
            let second = pty.read_until(b"Vault PIN:", SHOW).unwrap();
            pty.type_in(b"1234\n").unwrap();
            (second, pty)
        });
        let first = p.get_pin(&request(None), deadline(60)).await.unwrap();
        assert!(matches!(first, PinOutcome::Pin(ref pin) if pin.as_str() == "0000"));
        let second = p
            .get_pin(&request(Some("Wrong PIN: 2 attempts left")), deadline(60))
            .await
            .unwrap();
        assert!(matches!(second, PinOutcome::Pin(ref pin) if pin.as_str() == "1234"));
        let (shown, _pty) = typing.await.unwrap();
        let shown = String::from_utf8_lossy(&shown);
        assert!(shown.contains("Wrong PIN: 2 attempts left"), "{shown}");
        p.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_tty_end_of_input_is_cancel() {
    let test = "pinentry_tty_end_of_input_is_cancel";
    bounded(test, async {
        let mut pty = Pty::open().unwrap();
        let Some(config) = tty_config(test, &pty) else {
            return;
        };
        let task =
            tokio::spawn(async move { get_pin(&config, &request(None), deadline(60)).await });
        let _pty = tokio::task::spawn_blocking(move || {
            pty.read_until(b"Vault PIN:", SHOW).unwrap();
            pty.type_in(&[0x04]).unwrap(); // Ctrl-D: end of input
            pty
        })
        .await
        .unwrap();
        let outcome = task.await.unwrap().unwrap();
        assert!(matches!(outcome, PinOutcome::Cancelled), "{outcome:?}");
    })
    .await;
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_tty_deadline_is_a_timeout_and_leaves_no_process() {
    let test = "pinentry_tty_deadline_is_a_timeout_and_leaves_no_process";
    bounded(test, async {
        let mut pty = Pty::open().unwrap();
        let Some(config) = tty_config(test, &pty) else {
            return;
        };
        let mut p = Pinentry::start(&config, deadline(60))
            .await
            .unwrap()
            .unwrap();
        let pid = p.pid().unwrap();
        let waiting = tokio::task::spawn_blocking(move || {
            pty.read_until(b"Vault PIN:", SHOW).unwrap();
            pty
        });
        // Nobody types.
        let outcome = p.get_pin(&request(None), deadline(2)).await.unwrap();
        assert!(matches!(outcome, PinOutcome::TimedOut), "{outcome:?}");
        let _pty = waiting.await.unwrap();
        p.close().await;
        assert!(!alive(pid), "pinentry {pid} still runs");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_missing_program_is_a_typed_error() {
    bounded("pinentry_missing_program_is_a_typed_error", async {
        let config = PinentryConfig::new("/nonexistent/pinentry-hybridd-test");
        let err = get_pin(&config, &request(None), deadline(10))
            .await
            .unwrap_err();
        assert!(matches!(err, DesktopError::PinentrySpawn { .. }), "{err:?}");
        assert!(err.to_string().contains("pinentry-gnome3"), "{err}");
    })
    .await;
}

/// A "pinentry" that is a shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p
}

/// Retries `attempt` while the script it runs is "busy": a script just
/// written can fail to exec (ETXTBSY) while another test's child, forked
/// before our write closed, still holds the descriptor until its own exec.
async fn unless_busy<T, F, Fut>(mut attempt: F) -> Result<T, DesktopError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DesktopError>>,
{
    for _ in 0..100 {
        match attempt().await {
            Err(DesktopError::PinentrySpawn { detail, .. }) if detail.contains("os error 26") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
    attempt().await
}

async fn against(body: &str, secs: u64) -> Result<PinOutcome, DesktopError> {
    let dir = tempfile::tempdir().unwrap();
    let config = PinentryConfig::new(script(dir.path(), "pinentry-hostile", body));
    let request = request(None);
    unless_busy(|| get_pin(&config, &request, deadline(secs))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinentry_hostile_programs_are_typed_errors() {
    bounded("pinentry_hostile_programs_are_typed_errors", async {
        // Garbage instead of a greeting.
        let err = against("echo 'HELLO there'; exec sleep 30", 20).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::PinentryProtocol { detail: "an unknown line", .. }),
            "{err:?}"
        );
        // An endless line: refused at the line limit, never buffered.
        let err = against("yes x | tr -d '\\n'", 20).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::PinentryProtocol { detail: "a line longer than 1000 bytes", .. }),
            "{err:?}"
        );
        // Endless data lines after GETPIN.
        let body = "echo OK; while read -r cmd; do case \"$cmd\" in GETPIN) while :; do echo \"D 1234567890123456789012345678901234567890\"; done;; *) echo OK;; esac; done";
        let err = against(body, 20).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::PinentryProtocol { detail: "more than 1024 bytes of data", .. }),
            "{err:?}"
        );
        // Exits before answering.
        let err = against("echo OK; exit 3", 20).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::PinentryExited { ref status, .. } if status.contains('3')),
            "{err:?}"
        );
        // Never greets: the deadline ends it.
        let outcome = against("exec sleep 60", 1).await.unwrap();
        assert!(matches!(outcome, PinOutcome::TimedOut), "{outcome:?}");
        // Greets, then hangs: the deadline kills it.
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "pinentry-hangs", "echo OK; exec sleep 60");
        let config = PinentryConfig::new(program);
        let mut p = unless_busy(|| Pinentry::start(&config, deadline(20)))
            .await
            .unwrap()
            .unwrap();
        let pid = p.pid().unwrap();
        let outcome = p.get_pin(&request(None), deadline(1)).await.unwrap();
        assert!(matches!(outcome, PinOutcome::TimedOut), "{outcome:?}");
        assert!(!alive(pid), "the hung pinentry {pid} still runs");
        // A well-behaved one that returns a PIN with escapes.
        let body = "echo 'OK hi'; while read -r cmd; do case \"$cmd\" in GETPIN) echo 'D 12%2534%0A'; echo OK;; BYE) echo OK; exit 0;; *) echo OK;; esac; done";
        match against(body, 20).await.unwrap() {
            PinOutcome::Pin(pin) => assert_eq!(pin.as_str(), "12%34\n"),
            other => panic!("{other:?}"),
        }
        // A PIN that is not UTF-8.
        let body = "echo OK; while read -r cmd; do case \"$cmd\" in GETPIN) echo 'D %FF%FE'; echo OK;; *) echo OK;; esac; done";
        let err = against(body, 20).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::PinentryProtocol { detail: "a PIN that is not UTF-8", .. }),
            "{err:?}"
        );
        // Any other ERR to GETPIN (e.g. no display) is a typed failure.
        let body = "echo OK; while read -r cmd; do case \"$cmd\" in GETPIN) echo 'ERR 83918950 Inappropriate ioctl for device <Pinentry>';; *) echo OK;; esac; done";
        let err = against(body, 20).await.unwrap_err();
        assert!(
            matches!(err, DesktopError::PinentryFailed { code: 83918950, .. }),
            "{err:?}"
        );
    })
    .await;
}
