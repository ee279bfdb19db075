//! Starting, finding and stopping the server under test: any command.
//!
//! A command containing `{port}` gets a free loopback port substituted and
//! is ready once that port accepts a TCP connection; otherwise the first
//! `ws://HOST:PORT` on its standard output names the address (as `hybridd
//! tunnel-server --listen 127.0.0.1:0` prints it). The command runs under
//! `sh -c 'exec env …'`, so environment assignments in front work and the
//! measured pid is the server's own.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::BenchError;

/// Bound on a server coming up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a server or phone going away (after SIGTERM, or a phone after
/// its input ended) before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A server under test: a name for the table and a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Column title.
    pub name: String,
    /// Shell command; `{port}` is replaced by a free port on 127.0.0.1.
    pub command: String,
}

impl std::str::FromStr for ServerSpec {
    type Err = String;

    /// `NAME=COMMAND`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, command) = s
            .split_once('=')
            .filter(|(n, c)| !n.trim().is_empty() && !c.trim().is_empty() && !n.contains(' '))
            .ok_or_else(|| format!("--server {s:?}: expected NAME=COMMAND"))?;
        Ok(Self {
            name: name.trim().to_owned(),
            command: command.trim().to_owned(),
        })
    }
}

/// A running server process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its pid (the `exec`'d command itself).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `spec` and waits (bounded) until it accepts connections.
    pub async fn start(spec: &ServerSpec) -> Result<Self, BenchError> {
        let port = if spec.command.contains("{port}") {
            Some(free_port()?)
        } else {
            None
        };
        let command = match port {
            Some(p) => spec.command.replace("{port}", &p.to_string()),
            None => spec.command.clone(),
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec env {command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Start {
                name: spec.name.clone(),
                reason: e.to_string(),
            })?;
        let pid = child.id().ok_or_else(|| BenchError::Start {
            name: spec.name.clone(),
            reason: "exited at once".into(),
        })?;
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Start {
            name: spec.name.clone(),
            reason: "no stdout pipe".into(),
        })?;
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        // Reads stdout to its end so the server never blocks on a full pipe;
        // the first ws:// line names the address.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = ws_addr(&line) {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = match port {
            Some(p) => SocketAddr::from(([127, 0, 0, 1], p)),
            None => match tokio::time::timeout_at(deadline, addr_rx).await {
                Ok(Ok(a)) => a,
                _ => {
                    return Err(BenchError::Start {
                        name: spec.name.clone(),
                        reason: "printed no ws://HOST:PORT line (use {port} in the command)".into(),
                    })
                }
            },
        };
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BenchError::Start {
                    name: spec.name.clone(),
                    reason: format!("exited with {status}"),
                });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Start {
                    name: spec.name.clone(),
                    reason: format!("nothing listens on {addr} after {START_TIMEOUT:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, pid, addr })
    }

    /// SIGTERM, then SIGKILL if it has not exited within a bound.
    pub async fn stop(mut self) {
        terminate(&mut self.child, self.pid).await;
    }
}

/// Ends `child` (whose pid is `pid`): SIGTERM, then SIGKILL if it has not
/// exited within [`STOP_TIMEOUT`].
pub(crate) async fn terminate(child: &mut Child, pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Io {
            what: "finding a free port",
            source: e,
        })
}

/// `ws://127.0.0.1:1234` anywhere in a line → the address.
fn ws_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("ws://").nth(1)?;
    let authority = rest.split(|c: char| c == '/' || c.is_whitespace()).next()?;
    authority.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_addresses() {
        let s: ServerSpec = "ours=hybridd tunnel-server --listen 127.0.0.1:{port}"
            .parse()
            .unwrap();
        assert_eq!(s.name, "ours");
        assert!("no-equals".parse::<ServerSpec>().is_err());
        assert!("=cmd".parse::<ServerSpec>().is_err());
        assert_eq!(
            ws_addr("ws://127.0.0.1:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            ws_addr("listening on ws://127.0.0.1:99/ now"),
            Some("127.0.0.1:99".parse().unwrap())
        );
        assert_eq!(ws_addr("wss://x"), None);
    }
}
