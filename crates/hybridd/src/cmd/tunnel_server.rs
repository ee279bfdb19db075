//! `hybridd tunnel-server`: run the self-hostable tunnel server
//! (`hybrid_tunnel::server`, hybrid-protocol.md §4.2) until SIGINT/SIGTERM.
//!
//! Settings come from `--config FILE` (TOML, the fields of
//! [`ServerConfig`]: `listen`, `routing_id`, `ttl_secs`, `wait_secs`,
//! `max_message_bytes`, `max_messages_per_side`, `max_connections`,
//! `max_connections_per_source`, `max_waiting_per_source`,
//! `handshake_timeout_secs`, `frame_timeout_secs`, `trusted_proxies`,
//! `tls = { cert, key }`, `plain_listen`, `origin_host`), then the flags.
//! The soft open-file limit is raised to the hard one first (the default
//! connection limit follows from it). The first line on standard output is
//! the base URL (`ws://…` or `wss://…`), for scripts; with `--plain-listen`
//! the second line is the plain `ws://` URL. docs/tunnel-server.md has the
//! operator's guide.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hybrid_tunnel::server::{raise_descriptor_limit, ServerConfig, TlsFiles, TunnelServer};
use hybrid_tunnel::RoutingId;

use crate::error::Error;

/// Arguments of `hybridd tunnel-server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Routing ID, 6 hex characters (default: random).
    #[arg(long, value_name = "HEX")]
    pub routing_id: Option<String>,
    /// Serve wss:// with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key for --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve plain ws:// on this address (e.g. 127.0.0.1:0), sharing
    /// tunnels with --listen: a phone on the same host can then use ws://
    /// while desktops use wss://. Printed as the second line of output.
    #[arg(long, value_name = "ADDR")]
    pub plain_listen: Option<SocketAddr>,
    /// Tunnel lifetime in seconds (default 120).
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,
    /// TOML file with the server settings.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Threads serving connections (default 1: relaying is cheap and one
    /// thread avoids waking a second one for every message; run more
    /// instances behind a balancer to use more cores, docs/tunnel-server.md).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
}

/// The runtime of the server: one thread, or `threads` workers.
fn server_runtime(threads: u16) -> Result<tokio::runtime::Runtime, Error> {
    let built = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build()
    };
    built.map_err(Error::Runtime)
}

/// Builds the server configuration from the file and the flags.
pub fn server_config(args: &Args) -> Result<ServerConfig, Error> {
    let mut c = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::ServerConfigRead {
                path: p.clone(),
                source,
            })?;
            toml::from_str::<ServerConfig>(&text).map_err(|e| Error::ServerConfigParse {
                path: p.clone(),
                message: e.to_string().trim_end().replace('\n', " "),
            })?
        }
        None => ServerConfig::default(),
    };
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(r) = &args.routing_id {
        c.routing_id = Some(RoutingId::from_header(r).map_err(|_| Error::BadRoutingId(r.clone()))?);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        c.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    if let Some(t) = args.ttl {
        c.ttl_secs = t;
    }
    if let Some(p) = args.plain_listen {
        c.plain_listen = Some(p);
    }
    Ok(c)
}

/// Runs `hybridd tunnel-server`.
pub fn run(args: Args) -> ExitCode {
    crate::cmd::init_logging();
    crate::cmd::exit("tunnel-server", serve(&args))
}

fn serve(args: &Args) -> Result<ExitCode, Error> {
    let config = server_config(args)?;
    let rt = server_runtime(args.threads)?;
    // Every connection is a descriptor: lift the soft limit (often 1 024)
    // to the hard one; the default connection limit follows from it.
    let descriptors = raise_descriptor_limit();
    rt.block_on(async move {
        let tls = config.tls.is_some();
        let server = TunnelServer::bind(config).await?;
        let addr = server.local_addr().map_err(Error::Listen)?;
        let scheme = if tls { "wss" } else { "ws" };
        println!("{scheme}://{addr}");
        if let Some(plain) = server.plain_local_addr() {
            let plain = plain.map_err(Error::Listen)?;
            println!("ws://{plain}");
            tracing::info!(%plain, "plain ws:// listener");
        }
        let _ = std::io::stdout().flush();
        tracing::info!(
            %addr,
            routing_id = %server.routing_id().to_hex(),
            max_connections = server.max_connections(),
            open_file_limit = ?descriptors,
            "tunnel server listening"
        );
        server.run(crate::cmd::terminate_signal()).await;
        tracing::info!("tunnel server stopped");
        Ok(ExitCode::SUCCESS)
    })
}
