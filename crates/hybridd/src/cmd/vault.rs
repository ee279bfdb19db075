//! `hybridd vault init | change-pin | destroy`: the vault file's life cycle.
//!
//! PINs are read without echo from the terminal (twice for a new PIN), or
//! from files (`--pin-file`, `--new-pin-file`) for scripts; never from the
//! command line, where other users could see them in `ps`. The PIN policy,
//! wrong-PIN counter and file permissions are `hybrid-vault`'s
//! (`docs/vault.md`). `HYBRIDD_INSECURE_FAST_KDF=1` selects test-only
//! Argon2 costs, with a loud warning.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use hybrid_vault::Vault;
use zeroize::Zeroizing;

use crate::approval::{read_pin_file, tty};
use crate::config::{self, Overrides};
use crate::error::Error;

/// Arguments of `hybridd vault`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
    /// Where the vault is.
    #[command(flatten)]
    pub location: VaultLocation,
}

/// Where the vault is: `--vault`, else the config file's `vault`, else the
/// default (`hybridd vault` and `hybridd credentials`).
#[derive(Debug, Clone, clap::Args)]
pub struct VaultLocation {
    /// Vault file (default: from the config, else `$XDG_DATA_HOME/hybridd/vault.db`).
    #[arg(long, global = true, value_name = "PATH")]
    pub vault: Option<PathBuf>,
    /// Config file.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `hybridd vault` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create a new, empty vault protected by a PIN (never overwrites).
    Init {
        /// Read the PIN from this file (first line) instead of the terminal.
        #[arg(long, value_name = "PATH")]
        pin_file: Option<PathBuf>,
    },
    /// Change the vault's PIN.
    ChangePin {
        /// Read the current PIN from this file.
        #[arg(long, value_name = "PATH")]
        pin_file: Option<PathBuf>,
        /// Read the new PIN from this file.
        #[arg(long, value_name = "PATH")]
        new_pin_file: Option<PathBuf>,
    },
    /// Delete the vault file and every passkey in it, for good.
    Destroy {
        /// Required: confirms that every credential is lost.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `hybridd vault`.
pub fn run(args: Args) -> ExitCode {
    let path = match args.location.path() {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let r = match args.action {
        Action::Init { pin_file } => init(&path, pin_file.as_deref()),
        Action::ChangePin {
            pin_file,
            new_pin_file,
        } => change_pin(&path, pin_file.as_deref(), new_pin_file.as_deref()),
        Action::Destroy { yes } => destroy(&path, yes),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("hybridd vault: {e}");
    ExitCode::FAILURE
}

impl VaultLocation {
    /// The vault path from `--vault`, else the config, else the default.
    pub fn path(&self) -> Result<PathBuf, Error> {
        vault_path(self.vault.clone(), self.config.clone())
    }
}

/// The vault path from `--vault`, else the config, else the default.
fn vault_path(vault: Option<PathBuf>, config_file: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(v) = vault {
        return Ok(v);
    }
    let o = Overrides {
        config: config_file,
        ..Overrides::default()
    };
    // Only the vault key matters here; do not fail on unrelated settings
    // (e.g. `approval = "auto"` without a PIN file) beyond parse errors.
    let path = o.config.clone().unwrap_or_else(config::default_config_path);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let f = config::parse_file(&text, &path)?;
            Ok(f.vault.unwrap_or_else(config::default_vault_path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && o.config.is_none() => {
            Ok(config::default_vault_path())
        }
        Err(source) => Err(config::ConfigError::Read { path, source }.into()),
    }
}

/// Reads a PIN without echo from the terminal.
fn prompt_pin(prompt: &str) -> Result<Zeroizing<String>, Error> {
    tty::read_secret_blocking(prompt).map_err(Error::Terminal)
}

fn read_new_pin(file: Option<&Path>, what: &str) -> Result<Zeroizing<String>, Error> {
    let pin = match file {
        Some(f) => read_pin_file(f)?,
        None => {
            let a = prompt_pin(&format!("{what}: "))?;
            let b = prompt_pin(&format!("{what} (again): "))?;
            if a != b {
                return Err(Error::PinMismatch);
            }
            a
        }
    };
    hybrid_vault::check_pin_policy(&pin)?;
    Ok(pin)
}

fn read_pin(file: Option<&Path>, what: &str) -> Result<Zeroizing<String>, Error> {
    match file {
        Some(f) => read_pin_file(f),
        None => prompt_pin(&format!("{what}: ")),
    }
}

fn init(path: &Path, pin_file: Option<&Path>) -> Result<(), Error> {
    if path.exists() {
        return Err(Error::VaultExists(path.to_owned()));
    }
    let pin = read_new_pin(pin_file, "New vault PIN")?;
    let params = config::kdf_params();
    let mut v = Vault::create(path, &pin, params)?;
    v.lock();
    println!("created vault {}", path.display());
    Ok(())
}

fn change_pin(path: &Path, old: Option<&Path>, new: Option<&Path>) -> Result<(), Error> {
    let mut v = Vault::open(path)?;
    let old_pin = read_pin(old, "Current PIN")?;
    let new_pin = read_new_pin(new, "New PIN")?;
    v.change_pin_with_params(&old_pin, &new_pin, SystemTime::now(), config::kdf_params())?;
    v.lock();
    println!("PIN changed");
    Ok(())
}

fn destroy(path: &Path, yes: bool) -> Result<(), Error> {
    if !yes {
        return Err(Error::DestroyUnconfirmed(path.to_owned()));
    }
    Vault::destroy(path)?;
    println!("destroyed vault {}", path.display());
    Ok(())
}
