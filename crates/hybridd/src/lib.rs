//! `hybridd`: be the phone in FIDO's hybrid transport (CTAP 2.2 §11.5,
//! formerly caBLE v2) on a Linux device.
//!
//! This crate owns the command line, the daemon (config, control socket,
//! session orchestration, approval prompts) and the wiring of the protocol
//! crates: `hybrid-qr`, `hybrid-ble`, `hybrid-tunnel`, `hybrid-noise`,
//! `hybrid-ctap` and `hybrid-vault`. It owns no protocol rule itself: each
//! lives in the crate named in `docs/architecture.md`.
//!
//! The library half exists so the end-to-end tests in `tests/` and the demo
//! can drive the same code the binary runs. Each subcommand is a module under
//! [`cmd`] with its own `Args` and `run`.
#![forbid(unsafe_code)]

pub mod approval;
pub mod cmd;
pub mod config;
pub mod control;
pub mod peer_text;
pub mod phone;
pub mod replay;
