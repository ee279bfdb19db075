//! The control socket: how `hybridd scan` hands a QR code to the running
//! daemon and answers its approval prompt (`docs/operations.md`,
//! "Control protocol").
//!
//! A Unix stream socket (directory 0700, socket 0600) speaking JSON lines:
//! one JSON object per `\n`-terminated line, each way, at most
//! [`MAX_LINE`] bytes (a longer line is refused without being buffered),
//! at most [`MAX_CONNECTIONS`] connections at once.
//! Only a peer with the daemon's own uid (SO_PEERCRED) is served. One
//! session at a time: a scan while one runs is answered `{"busy": …}` at once.
//!
//! ```text
//! client → {"scan": "FIDO:/…"}                 start a session
//! client → {"scan": "FIDO:/…", "terminal": false}  the same, from a client without a
//!                                              terminal: the daemon asks through the desktop
//! client → {"ping": true}                      daemon → {"pong": {"version": …, "busy": bool,
//!                                              "vault_session"?: true}}
//! client → {"unlock": true, "pin"?: "…"}        open the vault session (no PIN: pinentry)
//! client → {"lock": true}                      end it; both answered {"done": …}
//! daemon → {"event": "tunnel_open"}            progress events (also "advertising",
//!                                              "desktop_connected", "request",
//!                                              "next_account": a getNextAssertion)
//! daemon → {"event": "prompt", "action": "sign in", "rp_id": …, "user_name": …,
//!           "needs_pin": true, "qr_age_secs": 4, "notice": null, …}
//! client → {"approve": true, "pin": "…"} | {"approve": false}
//! daemon → {"event": "notice", "message": "wrong PIN: …"}
//! daemon → {"done": {"ok": bool, "outcome": "completed" | <code>, "message": "…"}}
//!                                              a scan's done ends the connection
//! daemon → {"busy": "a session is already running"} | {"error": "…"}
//! ```
//!
//! Files by role: [`protocol`] (the typed messages and their JSON),
//! [`server`] (bind, accept, one session at a time), [`client`], and the
//! bounded line reader. The QR URI and the PIN travel only over this
//! socket; neither is logged.

pub mod client;
mod lines;
pub mod protocol;
pub mod server;

pub use client::Client;
pub use lines::{write_line, LineReader};
pub use protocol::{ClientMsg, DaemonMsg, Done, Event, Pong, ProtocolError, ScanMode};
pub use server::{bind, peer_allowed, Runner, Server, SessionRequest, VaultSessions};

/// The answer to a scan made while a session runs.
pub const BUSY_MESSAGE: &str = "a session is already running";
/// Most control connections served at once; more are answered
/// [`TOO_MANY_CONNECTIONS`] and closed (a client of the user's own uid
/// cannot grow the daemon without bound — issue 16).
pub const MAX_CONNECTIONS: usize = 16;
/// The answer to a connection over [`MAX_CONNECTIONS`].
pub const TOO_MANY_CONNECTIONS: &str = "too many control connections";
/// Longest accepted line (a QR URI is well under 1 KiB).
pub const MAX_LINE: usize = 16 * 1024;
