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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => cmd::decode::run(args),
    }
}
