//! The desktop side of the Chromium suite's `notify-fingerprint` scenario:
//! the real dunst and fprintd, started through the project's own harnesses
//! (`hybrid_desktop::testing`, the same ones `crates/hybridd/tests/
//! desktop_ceremony.rs` uses), on private buses only.
//!
//! ```text
//! interop-desktop --ready-file F --finger NAME --print ID
//! ```
//! * the system bus is `DBUS_SYSTEM_BUS_ADDRESS` (the suite's private one,
//!   where the fake `org.bluez` runs): a polkit stand-in that allows every
//!   action ([`PolkitAllowAll`]) and fprintd with libfprint's virtual
//!   device ([`Fprintd`], `FP_VIRTUAL_DEVICE`), `NAME` enrolled with print
//!   `ID` for the calling user;
//! * a new private session bus with dunst on `DISPLAY` ([`Dunst`]).
//!
//! Once all of it is up it writes `--ready-file` as `key=value` lines:
//! `session_bus` (the session bus's address), `fprintd_socket` (the virtual
//! device's socket: the harness writes `SCAN ID` there for a finger
//! touch), `dunst_dir` (dunst's directory: the harness writes `<id>,<action>`
//! to its `choice` file and runs `dunstctl context`, whose `dmenu` stand-in
//! picks that line), `fprintd_log`. It then runs until SIGTERM or SIGINT,
//! and stops what it started on the way out.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use hybrid_desktop::testing::{
    private_bus, Dunst, DunstOptions, Fprintd, FprintdOptions, PolkitAllowAll,
};
use hybrid_interop_chromium::arg_value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("interop-desktop: {what}: {e}");
        ExitCode::FAILURE
    };
    let (Ok(system), Ok(display)) = (
        std::env::var("DBUS_SYSTEM_BUS_ADDRESS"),
        std::env::var("DISPLAY"),
    ) else {
        eprintln!("interop-desktop: DBUS_SYSTEM_BUS_ADDRESS and DISPLAY must be set");
        return ExitCode::from(2);
    };
    let (Some(ready), Some(finger), Some(print)) = (
        arg_value(&args, "--ready-file"),
        arg_value(&args, "--finger"),
        arg_value(&args, "--print"),
    ) else {
        eprintln!("usage: interop-desktop --ready-file F --finger NAME --print ID");
        return ExitCode::from(2);
    };
    let polkit = match PolkitAllowAll::start(&system).await {
        Ok(p) => p,
        Err(e) => return fail("polkit stand-in", &e),
    };
    let fprintd = match Fprintd::start(&system, FprintdOptions::default()).await {
        Ok(f) => f,
        Err(e) => return fail("fprintd", &e),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let conn = match hybrid_desktop::bus_at(&system, deadline).await {
        Ok(c) => c,
        Err(e) => return fail("system bus", &e),
    };
    if let Err(e) = fprintd.enroll(&conn, &finger, &print).await {
        return fail("enrolling", &e);
    }
    let session = match private_bus() {
        Ok(b) => b,
        Err(e) => return fail("session bus", &e),
    };
    let dunst = match Dunst::start(session.address(), &display, DunstOptions::default()).await {
        Ok(d) => d,
        Err(e) => return fail("dunst", &e),
    };
    let info = format!(
        "session_bus={}\nfprintd_socket={}\ndunst_dir={}\nfprintd_log={}\npolkit_asked={}\n",
        session.address(),
        fprintd.socket().display(),
        dunst.dir().display(),
        fprintd.log().display(),
        polkit.asked().join(","),
    );
    let tmp = format!("{ready}.tmp");
    if let Err(e) = std::fs::write(&tmp, info).and_then(|()| std::fs::rename(&tmp, &ready)) {
        return fail(&format!("writing {ready}"), &e);
    }
    println!("READY");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return fail("SIGTERM handler", &e),
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Drop order: dunst, its bus, fprintd, polkit (each harness stops its child).
    drop(dunst);
    drop(session);
    drop(fprintd);
    drop(polkit);
    ExitCode::SUCCESS
}
