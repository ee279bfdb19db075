//! `xdg-open 'FIDO:/…'` with `dist/hybridd.desktop` installed in private
//! XDG directories runs its Exec line with the link intact. The program it
//! names (`hybridd`) is a stand-in first in `PATH` that records its
//! arguments; the desktop file itself is the one shipped, unmodified.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hybrid_desktop::testing::{find_program, or_skip};

use super::bounded;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn desktop_file() -> PathBuf {
    repo().join("dist/hybridd.desktop")
}

/// The longest `FIDO:/…` URI among the shared test vectors.
fn vector_uri() -> String {
    let text = std::fs::read_to_string(repo().join("tests/vectors/hybrid-vectors.json")).unwrap();
    text.match_indices("FIDO:/")
        .map(|(i, _)| {
            let digits = text[i + 6..].bytes().take_while(u8::is_ascii_digit).count();
            text[i..i + 6 + digits].to_owned()
        })
        .max_by_key(String::len)
        .unwrap()
}

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// Private XDG directories with the desktop entry installed as
    /// `hybridd setup desktop` will: the file in `$XDG_DATA_HOME/applications`
    /// and, when `default`, the handler in `$XDG_CONFIG_HOME/mimeapps.list`.
    fn new(default: bool) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("data/applications");
        std::fs::create_dir_all(&apps).unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::copy(desktop_file(), apps.join("hybridd.desktop")).unwrap();
        if default {
            std::fs::write(
                dir.path().join("config/mimeapps.list"),
                "[Default Applications]\nx-scheme-handler/fido=hybridd.desktop\n\
                 x-scheme-handler/FIDO=hybridd.desktop\n",
            )
            .unwrap();
        }
        let out = dir.path().join("argv");
        let stand_in = dir.path().join("bin/hybridd");
        std::fs::write(
            &stand_in,
            format!("#!/bin/sh\nprintf '%s\\0' \"$@\" > '{}'\n", out.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o700)).unwrap();
        Home { dir }
    }

    /// Runs `xdg-open uri` as desktop `desktop` would (XDG_CURRENT_DESKTOP),
    /// with nothing of the machine's own session: no session bus, no
    /// browser to fall back to. Returns the stand-in's arguments.
    async fn open(&self, desktop: &str, uri: &str) -> Result<Vec<String>, String> {
        let d = self.dir.path();
        let child = tokio::process::Command::new("xdg-open")
            .arg(uri)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", d.join("bin").display()))
            .env("HOME", d)
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_DATA_DIRS", d.join("empty"))
            .env("XDG_CONFIG_DIRS", d.join("empty"))
            .env("XDG_CURRENT_DESKTOP", desktop)
            .env("DISPLAY", ":hybridd-test")
            .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
            .env("GIO_USE_VFS", "local")
            .env("BROWSER", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .map_err(|_| "xdg-open did not finish in 30 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = out.status;
        let recorded = std::fs::read(d.join("argv")).map_err(|e| {
            format!(
                "the handler did not run ({e}); xdg-open {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(recorded
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect())
    }
}

fn have_xdg_open(test: &str) -> bool {
    or_skip(test, find_program("xdg-open", "xdg-utils")).is_some()
}

#[test]
fn xdg_open_desktop_entry_is_valid() {
    let Some(validate) = or_skip(
        "xdg_open_desktop_entry_is_valid",
        find_program("desktop-file-validate", "desktop-file-utils"),
    ) else {
        return;
    };
    let out = std::process::Command::new(validate)
        .arg(desktop_file())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(desktop_file()).unwrap();
    assert!(text.contains("\nExec=hybridd scan --detach %u\n"), "{text}");
    assert!(
        text.contains("\nMimeType=x-scheme-handler/fido;x-scheme-handler/FIDO;\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdg_open_generic_hands_the_qr_uri_to_the_exec_line() {
    let test = "xdg_open_generic_hands_the_qr_uri_to_the_exec_line";
    bounded(test, async {
        if !have_xdg_open(test) {
            return;
        }
        let uri = vector_uri();
        assert!(uri.len() > 100, "{uri}");
        let home = Home::new(true);
        // xdg-utils' generic mode (sway, Phosh, any desktop it does not
        // know) looks the handler up by the scheme exactly as written.
        let argv = home.open("X-Generic", &uri).await.unwrap();
        assert_eq!(argv, vec!["scan".to_owned(), "--detach".to_owned(), uri]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdg_open_generic_finds_the_entry_by_mime_type_alone() {
    let test = "xdg_open_generic_finds_the_entry_by_mime_type_alone";
    bounded(test, async {
        if !have_xdg_open(test) {
            return;
        }
        let uri = vector_uri();
        // No mimeapps.list: xdg-mime falls back to the desktop files'
        // MimeType lists, which must name the uppercase scheme too.
        let home = Home::new(false);
        let argv = home.open("X-Generic", &uri).await.unwrap();
        assert_eq!(argv, vec!["scan".to_owned(), "--detach".to_owned(), uri]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdg_open_gnome_hands_the_qr_uri_to_the_exec_line_through_gio() {
    let test = "xdg_open_gnome_hands_the_qr_uri_to_the_exec_line_through_gio";
    bounded(test, async {
        if !have_xdg_open(test) || or_skip(test, find_program("gio", "libglib2.0-bin")).is_none() {
            return;
        }
        let uri = vector_uri();
        let home = Home::new(true);
        // As GNOME and Phosh (XDG_CURRENT_DESKTOP=GNOME…): xdg-open runs
        // `gio open`, which looks the handler up by the lowercase scheme.
        let argv = home.open("GNOME", &uri).await.unwrap();
        assert_eq!(argv, vec!["scan".to_owned(), "--detach".to_owned(), uri]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xdg_open_hostile_link_arrives_as_one_argument() {
    let test = "xdg_open_hostile_link_arrives_as_one_argument";
    bounded(test, async {
        if !have_xdg_open(test) {
            return;
        }
        let home = Home::new(true);
        let marker = home.dir.path().join("pwned");
        // A web page can make any FIDO: link; it must reach hybridd as one
        // argument (which then refuses it as qr_invalid), never a shell.
        let uri = format!(
            "FIDO:/123 $(touch {m}) `touch {m}`;touch {m}|*&\"'",
            m = marker.display()
        );
        for desktop in ["X-Generic", "GNOME"] {
            let argv = home.open(desktop, &uri).await.unwrap();
            assert_eq!(
                argv,
                vec!["scan".to_owned(), "--detach".to_owned(), uri.clone()],
                "{desktop}"
            );
            assert!(!marker.exists(), "{desktop}: a shell ran part of the link");
        }
    })
    .await;
}
