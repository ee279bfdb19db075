//! `hybridd credentials list | delete`: the passkeys in the vault.
//!
//! Both read only credential metadata, which the vault keeps in clear
//! (`docs/vault.md`), so neither asks for the PIN. A credential is named by
//! its ID in hex or any unambiguous prefix of it.

use std::process::ExitCode;

use hybrid_ctap::store::CredentialMeta;
use hybrid_vault::Vault;
use serde_json::json;

use crate::cmd::vault::VaultLocation;
use crate::error::{CredentialError, Error};
use crate::peer_text;

/// Arguments of `hybridd credentials`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Where the vault is.
    #[command(flatten)]
    pub location: VaultLocation,
}

/// `hybridd credentials` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the passkeys: RP, user, created, last used, ID prefix.
    List {
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete one passkey, named by its ID in hex or an unambiguous prefix.
    Delete {
        /// Credential ID (hex) or a prefix of it.
        id: String,
    },
}

/// Runs `hybridd credentials`.
pub fn run(args: Args) -> ExitCode {
    let r = args
        .location
        .path()
        .and_then(|p| Ok(Vault::open(&p)?))
        .and_then(|mut v| match args.action {
            Action::List { json } => list(&v, json),
            Action::Delete { id } => delete(&mut v, &id),
        });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hybridd credentials: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list(v: &Vault, as_json: bool) -> Result<(), Error> {
    let creds = v.list()?;
    if as_json {
        let arr: Vec<_> = creds
            .iter()
            .map(|c| {
                json!({
                    "id": hex::encode(&c.id),
                    "rp_id": c.rp_id,
                    "rp_name": c.rp_name,
                    "user_name": c.user_name,
                    "user_display_name": c.user_display_name,
                    "user_id": hex::encode(&c.user_id),
                    "algorithm": c.algorithm,
                    "discoverable": c.discoverable,
                    "cred_protect": c.cred_protect,
                    "sign_count": c.sign_count,
                    "created_unix": c.created_unix,
                    "last_used_unix": c.last_used_unix,
                })
            })
            .collect();
        let out = serde_json::to_string_pretty(&arr).unwrap_or_default();
        println!("{}", peer_text::json_escape_unsafe(&out));
        return Ok(());
    }
    if creds.is_empty() {
        println!("no passkeys in the vault");
        return Ok(());
    }
    println!(
        "{:<30} {:<28} {:<17} {:<17} ID",
        "RP", "USER", "CREATED (UTC)", "LAST USED (UTC)"
    );
    for c in &creds {
        println!(
            "{:<30} {:<28} {:<17} {:<17} {}",
            clip(&c.rp_id, 30),
            clip(&user_label(c), 28),
            utc(c.created_unix),
            c.last_used_unix.map(utc).unwrap_or_else(|| "never".into()),
            hex::encode(c.id.get(..6).unwrap_or(&c.id)),
        );
    }
    Ok(())
}

/// The account, for display: the user name or display name (peer text,
/// through [`peer_text::name`]), else the start of the user ID.
fn user_label(c: &CredentialMeta) -> String {
    c.user_name
        .as_deref()
        .or(c.user_display_name.as_deref())
        .map(peer_text::name)
        .unwrap_or_else(|| {
            format!(
                "(id {})",
                hex::encode(c.user_id.get(..4).unwrap_or(&c.user_id))
            )
        })
}

/// `s` for a table column of `n` characters: rendered through
/// [`peer_text::for_terminal`] (the vault's names came from a peer), cut
/// with `…` to fit.
fn clip(s: &str, n: usize) -> String {
    let t = peer_text::for_terminal(s, n);
    if t.chars().count() <= n {
        t
    } else {
        peer_text::for_terminal(s, n.saturating_sub(1))
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Finds the one credential whose hex ID starts with `prefix`.
pub fn resolve_prefix<'a>(
    creds: &'a [CredentialMeta],
    prefix: &str,
) -> Result<&'a CredentialMeta, CredentialError> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CredentialError::NotHex(prefix.to_owned()));
    }
    let hits: Vec<_> = creds
        .iter()
        .filter(|c| hex::encode(&c.id).starts_with(&p))
        .collect();
    match hits.as_slice() {
        [] => Err(CredentialError::NoMatch(p)),
        [one] => Ok(one),
        many => Err(CredentialError::Ambiguous {
            prefix: p,
            matches: many.len(),
        }),
    }
}

fn delete(v: &mut Vault, prefix: &str) -> Result<(), Error> {
    let creds = v.list()?;
    let c = resolve_prefix(&creds, prefix)?;
    let id = c.id.clone();
    let label = format!("{} / {}", peer_text::rp_id(&c.rp_id), user_label(c));
    if v.delete(&id)? {
        println!("deleted passkey {} ({label})", hex::encode(&id));
        Ok(())
    } else {
        Err(CredentialError::Vanished.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_666_589_051), "2022-10-24 05:24");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
    }

    fn meta(id: &[u8]) -> CredentialMeta {
        CredentialMeta {
            id: id.to_vec(),
            rp_id: "example.com".into(),
            rp_name: None,
            user_id: vec![1],
            user_name: None,
            user_display_name: None,
            algorithm: -7,
            public_key_cose: vec![],
            discoverable: true,
            cred_protect: 1,
            sign_count: 0,
            created_unix: 0,
            last_used_unix: None,
        }
    }

    #[test]
    fn peer_text_credentials_table_cells_are_sanitized_and_fit() {
        const ATTACK: &str = "mallory\u{1b}[2J\rApprove: bank.example\nok\u{202e}evil";
        let mut c = meta(&[1]);
        c.user_name = Some(ATTACK.into());
        for cell in [clip(ATTACK, 30), user_label(&c), clip(&"x".repeat(40), 30)] {
            assert!(!cell.chars().any(peer_text::is_unsafe), "{cell:?}");
            assert!(cell.chars().count() <= 64 + 1, "{cell:?}");
        }
        assert_eq!(clip(ATTACK, 30).chars().count(), 30);
        assert_eq!(clip("short", 30), "short");
        assert_eq!(clip(&"x".repeat(30), 30), "x".repeat(30));
    }

    #[test]
    fn prefixes() {
        let c = [meta(&[0xab, 0xcd]), meta(&[0xab, 0xef])];
        assert!(resolve_prefix(&c, "ab")
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        assert_eq!(resolve_prefix(&c, "ABE").unwrap().id, vec![0xab, 0xef]);
        assert!(resolve_prefix(&c, "ff").is_err());
        assert!(resolve_prefix(&c, "zz").is_err());
    }
}
