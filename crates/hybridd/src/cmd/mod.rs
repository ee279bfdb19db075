//! One module per subcommand, each with its own `Args` and `run`, plus the
//! runtime, logging and signal helpers they share.

pub mod credentials;
pub mod decode;
pub mod demo;
pub mod doctor;
pub mod run;
pub mod scan;
pub mod tunnel_server;
pub mod vault;

/// A multi-threaded tokio runtime with two workers: approvals block a
/// thread while the control socket keeps being served on the other.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
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
