//! hybrid-bench: load generators that measure hybridd's components from the
//! outside, against another implementation in the same run.
//!
//! **Owns** `hybrid-bench tunnel` ([`tunnel`]): any caBLE tunnel server
//! command is started ([`server`]), loaded on loopback and measured through
//! `/proc` ([`procfs`]); several commands in one invocation are printed side
//! by side with ratios ([`report`]). Timing requirements of the project live
//! here, as same-run comparisons, never in timed tests (docs/performance.md).
//!
//! **Owns** `hybrid-bench ceremony` ([`ceremony`]): whole ceremonies of a
//! phone process (`hybridd run` or another phone, [`phone`]) driven by our
//! desktop side, with the phone's own phase times, CPU and memory.
//!
//! **Does not own** the tunnel protocol (the URL paths and header names come
//! from `hybrid_tunnel::names`) or the server itself.
#![forbid(unsafe_code)]

pub mod ceremony;
mod lean_ws;
pub mod phone;
pub mod procfs;
pub mod report;
pub mod server;
pub mod stats;
pub mod tunnel;

/// Why a benchmark could not run (failures *of the server under test* are
/// counted in the results instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// `/proc/<pid>/…` of the server could not be read.
    #[error("cannot read {what} of process {pid} under /proc (is /proc mounted, is the server still running?)")]
    Proc {
        /// The server's pid.
        pid: u32,
        /// What was missing.
        what: &'static str,
    },
    /// The server command did not come up.
    #[error("server {name:?} did not start: {reason}")]
    Start {
        /// The server's name from `--server NAME=COMMAND`.
        name: String,
        /// What happened.
        reason: String,
    },
    /// A local system call failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The options cannot work on this machine.
    #[error("{0}")]
    Options(String),
}
