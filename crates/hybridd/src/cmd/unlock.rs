//! `hybridd unlock` and `hybridd lock`: open and end the running daemon's
//! vault session (`verify = "fingerprint"`; [`crate::vault_session`]).
//!
//! `unlock` reads the PIN from `--pin-file`, else without echo from the
//! controlling terminal; without either it sends no PIN and the daemon
//! asks through its pinentry. The PIN travels only over the control
//! socket (0600, same user), never on a command line or in the environment.
//!
//! Exit status: 0 done; 1 refused (wrong PIN, no PIN); 2 bad input or a
//! daemon without vault sessions; 69 no daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use zeroize::Zeroizing;

use crate::approval::{read_pin_file, Tty};
use crate::cmd::scan::EXIT_NO_DAEMON;
use crate::config::{self, Overrides};
use crate::control::{Client, ClientMsg, DaemonMsg};
use crate::error::Error;

/// Arguments of `hybridd unlock` (`--pin-file PATH`: the PIN from a file's
/// first line instead of the terminal).
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// Settings (the socket, `--pin-file`).
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Arguments of `hybridd lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// Settings (the socket).
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Runs `hybridd unlock`.
pub fn run_unlock(args: UnlockArgs) -> ExitCode {
    crate::cmd::exit("unlock", unlock(&args))
}

/// Runs `hybridd lock`.
pub fn run_lock(args: LockArgs) -> ExitCode {
    crate::cmd::exit("lock", lock(&args))
}

fn socket(o: &Overrides) -> Result<PathBuf, Error> {
    Ok(match &o.socket {
        Some(s) => s.clone(),
        None => config::load(o)?.socket_path()?.to_owned(),
    })
}

fn unlock(args: &UnlockArgs) -> Result<ExitCode, Error> {
    let socket = socket(&args.overrides)?;
    let rt = crate::cmd::runtime()?;
    rt.block_on(async {
        let pin: Option<Zeroizing<String>> = match &args.overrides.pin_file {
            Some(f) => Some(read_pin_file(f)?),
            None => match Tty::open() {
                Ok(tty) => Some(
                    tty.read_secret("vault PIN: ")
                        .await
                        .map_err(Error::Terminal)?,
                ),
                Err(_) => None,
            },
        };
        Ok(ask(&socket, &ClientMsg::Unlock(pin)).await)
    })
}

fn lock(args: &LockArgs) -> Result<ExitCode, Error> {
    let socket = socket(&args.overrides)?;
    let rt = crate::cmd::runtime()?;
    Ok(rt.block_on(ask(&socket, &ClientMsg::Lock)))
}

/// Sends `msg` and prints the daemon's answer.
async fn ask(socket: &Path, msg: &ClientMsg) -> ExitCode {
    let mut c = match Client::connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "hybridd: no daemon on {} ({e}); start it with `systemctl --user start hybridd` \
                 or `hybridd run`",
                socket.display()
            );
            return ExitCode::from(EXIT_NO_DAEMON);
        }
    };
    if let Err(e) = c.send(msg).await {
        eprintln!("hybridd: lost the daemon: {e}");
        return ExitCode::FAILURE;
    }
    match c.recv().await {
        Ok(Some(DaemonMsg::Done(d))) if d.ok => {
            println!("{}", d.message);
            ExitCode::SUCCESS
        }
        Ok(Some(DaemonMsg::Done(d))) => {
            eprintln!("failed [{}]: {}", d.outcome, d.message);
            ExitCode::FAILURE
        }
        Ok(Some(DaemonMsg::Error(e))) => {
            eprintln!("hybridd: the daemon refused: {e}");
            ExitCode::from(2)
        }
        Ok(other) => {
            eprintln!("hybridd: unexpected answer from the daemon: {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("hybridd: lost the daemon: {e}");
            ExitCode::FAILURE
        }
    }
}
