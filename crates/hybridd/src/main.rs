//! The `hybridd` binary: parses the command line and hands over to
//! [`hybridd::cmd`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hybridd::cmd;

/// Be the phone in FIDO's hybrid transport: answer a desktop's
/// "use a phone or tablet" QR code with a passkey from this machine.
#[derive(Debug, Parser)]
#[command(name = "hybridd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a FIDO:/ QR URI and print its fields as JSON.
    Decode(cmd::decode::Args),
    /// Run a whole ceremony on loopback: register a passkey, then sign in with it.
    Demo(cmd::demo::Args),
    /// Run the daemon: serve `hybridd scan` over the control socket.
    Run(cmd::run::Args),
    /// Hand a desktop's QR code to the daemon (or run it with --standalone).
    Scan(cmd::scan::Args),
    /// Create the vault, change its PIN, or destroy it.
    Vault(cmd::vault::Args),
    /// List or delete the passkeys in the vault.
    Credentials(cmd::credentials::Args),
    /// Run a self-hosted tunnel server.
    TunnelServer(cmd::tunnel_server::Args),
    /// Check Bluetooth, the tunnel server, the vault and the daemon.
    Doctor(cmd::doctor::Args),
    /// Open the daemon's vault session, for fingerprint verification.
    Unlock(cmd::unlock::UnlockArgs),
    /// End the daemon's vault session.
    Lock(cmd::unlock::LockArgs),
    /// Set hybridd up for this user's desktop (FIDO:/ links).
    Setup(cmd::setup::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => cmd::decode::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Vault(args) => cmd::vault::run(args),
        Command::Credentials(args) => cmd::credentials::run(args),
        Command::TunnelServer(args) => cmd::tunnel_server::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Unlock(args) => cmd::unlock::run_unlock(args),
        Command::Lock(args) => cmd::unlock::run_lock(args),
        Command::Setup(args) => cmd::setup::run(args),
    }
}
