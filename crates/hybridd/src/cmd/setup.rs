//! `hybridd setup desktop`: make `FIDO:/` links open with this hybridd.
//!
//! Installs `dist/hybridd.desktop` (built in) as
//! `$XDG_DATA_HOME/applications/hybridd.desktop` with `Exec`'s program made
//! this binary's absolute path (a graphical session's `PATH` often lacks
//! `~/.cargo/bin`), then makes it the user's default handler of
//! `x-scheme-handler/fido` and `x-scheme-handler/FIDO` with `xdg-mime`
//! (xdg-utils: it writes `mimeapps.list`, or asks GNOME's or KDE's own
//! tools) and refreshes the directory's cache with
//! `update-desktop-database` when that is installed. The same steps by hand
//! are in docs/operations.md, "FIDO:/ links".

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::Error;

/// The shipped desktop entry.
const DESKTOP_ENTRY: &str = include_str!("../../../../dist/hybridd.desktop");
/// Its file name, which `mimeapps.list` refers to.
const ENTRY_NAME: &str = "hybridd.desktop";
/// The schemes: QR codes spell it `FIDO:`; GLib looks handlers up in
/// lowercase, xdg-utils' generic mode as written.
const SCHEMES: [&str; 2] = ["x-scheme-handler/fido", "x-scheme-handler/FIDO"];
/// How long each helper program may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `hybridd setup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to set up.
    #[command(subcommand)]
    pub what: What,
}

/// What `hybridd setup` sets up.
#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Open FIDO:/ links (from a browser, a QR scanner app, `xdg-open`)
    /// with this hybridd: install the desktop entry and make it the default.
    Desktop,
}

/// Runs `hybridd setup`.
pub fn run(args: Args) -> ExitCode {
    match args.what {
        What::Desktop => crate::cmd::exit("setup desktop", desktop()),
    }
}

fn desktop() -> Result<ExitCode, Error> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::Setup(format!("cannot tell where this hybridd is: {e}")))?;
    // The user's data directory, as for the vault (`$XDG_DATA_HOME` or
    // `~/.local/share`).
    let apps = crate::config::data_home().join("applications");
    let entry = entry_for(&exe)?;
    std::fs::create_dir_all(&apps)
        .map_err(|e| Error::Setup(format!("cannot create {}: {e}", apps.display())))?;
    let path = apps.join(ENTRY_NAME);
    write_replacing(&path, entry.as_bytes())?;
    println!("installed {}", path.display());

    let rt = crate::cmd::runtime()?;
    let mut args: Vec<OsString> = vec!["default".into(), ENTRY_NAME.into()];
    args.extend(SCHEMES.iter().map(OsString::from));
    match rt.block_on(tool("xdg-mime", &args)) {
        Tool::Ok => {}
        Tool::Missing => {
            return Err(Error::Setup(format!(
                "xdg-mime is not installed, so {ENTRY_NAME} is not the default for FIDO:/ links \
                 yet: install xdg-utils and run this again, or add to ~/.config/mimeapps.list \
                 under [Default Applications]: {}",
                SCHEMES.map(|s| format!("{s}={ENTRY_NAME}")).join(" and ")
            )))
        }
        Tool::Failed(why) => {
            return Err(Error::Setup(format!(
                "xdg-mime could not make {ENTRY_NAME} the default for FIDO:/ links: {why}"
            )))
        }
    }
    // Best effort: GLib also reads the directory's mimeinfo.cache.
    if let Tool::Failed(why) = rt.block_on(tool(
        "update-desktop-database",
        &[apps.clone().into_os_string()],
    )) {
        eprintln!(
            "hybridd setup desktop: update-desktop-database: {why} (not needed by most desktops)"
        );
    }
    println!(
        "FIDO:/ links now open with `{} scan --detach`, which hands the QR code to the running \
         daemon (start it with `systemctl --user enable --now hybridd`). Check with: \
         xdg-mime query default x-scheme-handler/fido",
        exe.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The shipped entry with `Exec`'s program replaced by `exe`.
fn entry_for(exe: &Path) -> Result<String, Error> {
    let program = exe
        .to_str()
        .ok_or_else(|| Error::Setup(format!("{} is not UTF-8", exe.display())))?;
    let quoted = exec_quote(program)
        .ok_or_else(|| Error::Setup(format!("{program} cannot be named in a desktop entry")))?;
    let mut out = String::with_capacity(DESKTOP_ENTRY.len() + program.len());
    let mut replaced = false;
    for line in DESKTOP_ENTRY.lines() {
        match line.strip_prefix("Exec=hybridd ") {
            Some(rest) if !replaced => {
                out.push_str(&format!("Exec={quoted} {rest}\n"));
                replaced = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !replaced {
        return Err(Error::Setup(
            "the built-in desktop entry has no Exec line".into(),
        ));
    }
    Ok(out)
}

/// `s` as one argument of a desktop entry's `Exec` key (Desktop Entry
/// Specification 1.5, "The Exec key"): as is when it has no reserved
/// character, else in double quotes with `"`, `` ` ``, `$` and `\`
/// backslash-escaped; then every `\` doubled and `%` written `%%` (the
/// key's own escaping). `None` for control characters, which the key
/// cannot carry.
fn exec_quote(s: &str) -> Option<String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return None;
    }
    const RESERVED: &str = " \t\n\"'\\><~|&;$*?#()`";
    let quoted = if s.chars().any(|c| RESERVED.contains(c)) {
        let mut q = String::from("\"");
        for c in s.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    } else {
        s.to_owned()
    };
    Some(quoted.replace('\\', "\\\\").replace('%', "%%"))
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory and a rename, so a reader never sees half a file.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| Error::Setup(format!("cannot write {}: {e}", path.display()));
    let mut tmp = tempfile::Builder::new()
        .prefix(".hybridd.desktop.")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    // Readable by the desktop's services (0644, as any desktop entry).
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// How a helper program ended.
enum Tool {
    Ok,
    Missing,
    Failed(String),
}

/// Runs `program args` (from `PATH`), bounded by [`TOOL_TIMEOUT`].
async fn tool(program: &str, args: &[OsString]) -> Tool {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(TOOL_TIMEOUT, child).await {
        Err(_) => Tool::Failed(format!("no answer in {} s", TOOL_TIMEOUT.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Tool::Missing,
        Ok(Err(e)) => Tool::Failed(e.to_string()),
        Ok(Ok(o)) if o.status.success() => Tool::Ok,
        Ok(Ok(o)) => Tool::Failed(format!(
            "{}: {}",
            o.status,
            crate::peer_text::for_terminal(String::from_utf8_lossy(&o.stderr).trim(), 400)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_arguments_are_quoted_as_the_spec_says() {
        assert_eq!(exec_quote("/usr/bin/hybridd").unwrap(), "/usr/bin/hybridd");
        assert_eq!(
            exec_quote("/home/a b/.cargo/bin/hybridd").unwrap(),
            "\"/home/a b/.cargo/bin/hybridd\""
        );
        // `$` escaped inside the quotes, then the backslash doubled.
        assert_eq!(exec_quote("/x/$HOME/h").unwrap(), "\"/x/\\\\$HOME/h\"");
        assert_eq!(exec_quote("/x/100%/h").unwrap(), "/x/100%%/h");
        assert_eq!(exec_quote("/x\ny"), None);
        assert_eq!(exec_quote(""), None);
    }

    #[test]
    fn the_entry_runs_this_binary_with_detach() {
        let e = entry_for(Path::new("/opt/my apps/hybridd")).unwrap();
        let exec: Vec<&str> = e.lines().filter(|l| l.starts_with("Exec=")).collect();
        assert_eq!(exec, ["Exec=\"/opt/my apps/hybridd\" scan --detach %u"]);
        assert!(e.contains("MimeType=x-scheme-handler/fido;x-scheme-handler/FIDO;"));
    }
}
