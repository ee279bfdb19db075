//! The project's tunnel server (`hybrid_tunnel::server`) serving `wss://`
//! for the harness: `interop-tunnel-server --listen 127.0.0.1:0 --cert
//! chain.pem --key key.pem`. Prints `LISTENING <addr>` once bound; runs
//! until killed.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use hybrid_interop_chromium::arg_value;
use hybrid_tunnel::server::{ServerConfig, TlsFiles, TunnelServer};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = arg_value(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let Ok(listen) = listen.parse() else {
        eprintln!("interop-tunnel-server: bad --listen {listen}");
        return ExitCode::from(2);
    };
    let tls = match (arg_value(&args, "--cert"), arg_value(&args, "--key")) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        _ => {
            eprintln!("interop-tunnel-server: give both --cert and --key");
            return ExitCode::from(2);
        }
    };
    let config = ServerConfig {
        listen,
        tls,
        ..ServerConfig::default()
    };
    let server = match TunnelServer::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("interop-tunnel-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(a) => println!("LISTENING {a}"),
        Err(e) => {
            eprintln!("interop-tunnel-server: {e}");
            return ExitCode::FAILURE;
        }
    }
    server.run(std::future::pending::<()>()).await;
    ExitCode::SUCCESS
}
