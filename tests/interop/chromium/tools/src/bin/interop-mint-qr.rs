//! Prints one fresh `FIDO:/` URI from `hybrid_initiator::Desktop`: a desktop
//! that never connects. The harness hands it to the phone on the negative
//! paths (no adapter on Chromium's side), where the phone must time out
//! waiting for the desktop and then serve the next scan.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match hybrid_initiator::Desktop::new(&mut rand_core::OsRng) {
        Ok(d) => {
            println!("{}", d.qr_uri());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interop-mint-qr: {e}");
            ExitCode::FAILURE
        }
    }
}
