//! One module per subcommand, each with its own `Args` and `run`, plus the
//! runtime, logging, signal and exit helpers they share. Each command's
//! work returns `Result<_, crate::Error>`; [`exit`] prints the error once,
//! prefixed with the command, and picks the exit status.

pub mod credentials;
pub mod decode;
pub mod demo;
pub mod doctor;
pub mod run;
pub mod scan;
pub mod setup;
pub mod tunnel_server;
pub mod unlock;
pub mod vault;

use std::process::ExitCode;

/// A multi-threaded tokio runtime with two workers (nothing on it blocks:
/// the vault has its own worker thread, `crate::vault`).
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(crate::Error::Runtime)
}

/// The daemon's (`hybridd run`) runtime: one thread, the one that calls
/// `block_on`. It serves one session at a time and nothing on it blocks
/// (the vault has its own worker thread, `crate::vault`), so worker threads
/// bought it nothing but memory: glibc gives every thread that allocates
/// its own malloc arena, and the two workers' arenas held ≈ 0.5 MiB after
/// the phone benchmark's ceremonies (`/proc/<pid>/smaps`; docs/performance.md,
/// "Phone: what the idle resident memory is").
pub fn daemon_runtime() -> Result<tokio::runtime::Runtime, crate::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(crate::Error::Runtime)
}

/// The exit status of a command: its own on success; on failure the error
/// printed as `hybridd <command>: <error>` and [`crate::Error::exit_code`].
pub fn exit(command: &str, result: Result<ExitCode, crate::Error>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hybridd {command}: {e}");
            e.exit_code()
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Log fields
/// never carry keys, PINs, QR secrets or the QR URI.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on SIGINT or SIGTERM.
pub async fn terminate_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received");
}
