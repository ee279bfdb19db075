//! What both peer drivers share (included with `#[path]`: each driver is its
//! own workspace, so a shared crate would be a third one for five helpers).
//! The drivers play the *desktop*; this module is the person who scans the
//! QR (`DRIVER_SCAN_CMD`) and the driver's bookkeeping.

use std::io::Write;
use std::sync::Mutex;
use std::thread::JoinHandle;

use tracing_subscriber::{filter::LevelFilter, EnvFilter};

/// Everything the initiator logged, kept so a scenario can tell *why* it
/// failed (the initiators report a tunnel failure as an opaque error and
/// log its cause).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Writes each log line to stderr and to [`LOG`].
struct Tee;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = LOG.lock() {
            log.extend_from_slice(buf);
        }
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Logs to stderr at WARN unless `RUST_LOG` says otherwise (and keeps a
/// copy for [`tls_certificate_failure`]).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(|| Tee)
        .with_ansi(false)
        .compact()
        .init();
}

/// The logged line saying the TLS handshake with the tunnel server failed
/// on its certificate, if any: what the `tls-fail` scenario must see, as
/// opposed to any other failure (timeout, DNS, refused connection, a bad
/// advert). webauthn-authenticator-rs (native-tls/OpenSSL) logs
/// "websocket error: … certificate verify failed"; libwebauthn and its pxp
/// (rustls) log "Failed to connect to tunnel server …
/// InvalidCertificate(UnknownIssuer)" (or rustls's text, "invalid peer
/// certificate"). Only the tunnel connection uses TLS in these drivers.
pub fn tls_certificate_failure() -> Option<String> {
    let log = LOG.lock().ok()?;
    String::from_utf8_lossy(&log)
        .lines()
        .find(|l| {
            [
                "InvalidCertificate",
                "certificate verify failed",
                "invalid peer certificate",
            ]
            .iter()
            .any(|p| l.contains(p))
        })
        .map(str::to_owned)
}

/// An environment variable, or `default`.
pub fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// Writes the `FIDO:/…` URL to `qr_file` (write, then rename, so the scanner
/// never reads half a QR) and runs `scan_cmd` in the background, as the
/// person scanning it. Returns the thread waiting for that command.
pub fn show_qr(qr_file: &str, scan_cmd: &str, url: &str) -> Option<JoinHandle<()>> {
    let tmp = format!("{qr_file}.tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(url.as_bytes()).and_then(|_| f.sync_all()))
        .expect("write qr tmp");
    std::fs::rename(&tmp, qr_file).expect("rename qr");
    if scan_cmd.is_empty() {
        return None;
    }
    let cmd = scan_cmd.to_string();
    Some(std::thread::spawn(move || {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status();
        eprintln!("driver: scan command exited: {st:?}");
    }))
}

/// A copy of `bytes` with one bit of its middle byte flipped: the negative
/// control every verified signature gets.
pub fn flip_middle(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    let n = v.len() / 2;
    if let Some(b) = v.get_mut(n) {
        *b ^= 0x01;
    }
    v
}

/// Prints `TIMES <what>: n= min= median= max= ms` (the lower middle value
/// when n is even); nothing for no samples.
pub fn print_times(what: &str, v: &mut [u128]) {
    v.sort_unstable();
    if let (Some(min), Some(max)) = (v.first(), v.last()) {
        let median = v[(v.len() - 1) / 2];
        println!(
            "TIMES {what}: n={} min={min} median={median} max={max} ms",
            v.len()
        );
    }
}
