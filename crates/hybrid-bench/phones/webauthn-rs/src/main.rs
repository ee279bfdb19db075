//! The comparison phone of `hybrid-bench ceremony` (docs/performance.md):
//! webauthn-authenticator-rs's phone side, `share_cable_authenticator` with
//! an in-memory `SoftToken` (user verification claimed, as its own example
//! does), kept for the whole run so a sign-in finds the passkey registered
//! before it.
//!
//! Protocol with the benchmark: prints `ready` once, then reads one
//! `FIDO:/…` URI per stdin line and answers each with one stdout line, `ok`
//! or `error: …`, until stdin ends. The advert goes to a file as 40 hex
//! characters and a newline (written to a temporary file, then renamed) —
//! the same "file radio" `hybridd run --advert-file` writes — and the
//! tunnel is the benchmark's loopback server (`cable-override-tunnel`).
//!
//! Usage: hybrid-bench-phone-webauthn-rs --tunnel ws://127.0.0.1:PORT --advert PATH
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::http::uri::{Builder, Parts, Uri};
use webauthn_authenticator_rs::cable::{
    share_cable_authenticator, Advertiser, ShareCableAuthenticatorOptions,
};
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;

/// Bound on one ceremony.
const CEREMONY_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes each advert's service data to a file, like hybridd's file radio.
struct FileAdvertiser {
    path: PathBuf,
}

#[async_trait]
impl Advertiser for FileAdvertiser {
    async fn start_advertising(
        &mut self,
        _service_uuid: u16,
        payload: &[u8],
    ) -> Result<(), WebauthnCError> {
        let mut line = String::with_capacity(2 * payload.len() + 1);
        for b in payload {
            line.push_str(&format!("{b:02x}"));
        }
        line.push('\n');
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, line)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    async fn stop_advertising(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }
}

/// No person: nothing is asked, nothing is shown.
#[derive(Debug)]
struct NoUi;

impl UiCallback for NoUi {
    fn request_pin(&self) -> Option<String> {
        None
    }
    fn request_touch(&self) {}
    fn processing(&self) {}
    fn fingerprint_enrollment_feedback(&self, _: u32, _: Option<EnrollSampleStatus>) {}
    fn cable_qr_code(&self, _: CableRequestType, _: String) {}
    fn dismiss_qr_code(&self) {}
    fn cable_status_update(&self, _: CableState) {}
}

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn tunnel_builder(tunnel: &str) -> Option<Builder> {
    let parts: Parts = tunnel.parse::<Uri>().ok()?.into_parts();
    Some(
        Builder::new()
            .scheme(parts.scheme?)
            .authority(parts.authority?),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let (Some(tunnel), Some(advert)) = (arg("--tunnel"), arg("--advert")) else {
        eprintln!("usage: hybrid-bench-phone-webauthn-rs --tunnel ws://HOST:PORT --advert PATH");
        return std::process::ExitCode::FAILURE;
    };
    if tunnel_builder(&tunnel).is_none() {
        eprintln!("--tunnel {tunnel:?}: not a ws://HOST:PORT URL");
        return std::process::ExitCode::FAILURE;
    }
    let (mut token, _ca) = match SoftToken::new(true) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SoftToken: {e:?}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut advertiser = FileAdvertiser {
        path: PathBuf::from(advert),
    };
    let mut out = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    if out.write_all(b"ready\n").await.is_err() || out.flush().await.is_err() {
        return std::process::ExitCode::FAILURE;
    }
    while let Ok(Some(uri)) = lines.next_line().await {
        let options = ShareCableAuthenticatorOptions::default().tunnel_server_id(0);
        let options = match tunnel_builder(&tunnel) {
            Some(b) => options.tunnel_uri(b),
            None => options,
        };
        let info = token.get_info();
        let r = tokio::time::timeout(
            CEREMONY_TIMEOUT,
            share_cable_authenticator(
                &mut token,
                info,
                uri.trim(),
                &mut advertiser,
                &NoUi,
                options,
            ),
        )
        .await;
        let line = match r {
            Ok(Ok(())) => "ok\n".to_owned(),
            Ok(Err(e)) => format!("error: {e:?}\n"),
            Err(_) => format!("error: no end within {CEREMONY_TIMEOUT:?}\n"),
        };
        if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}
