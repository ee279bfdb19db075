//! Helpers for the `cli_*` tests: a private XDG home and the `hybridd` binary.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary home with `XDG_CONFIG_HOME`, `XDG_DATA_HOME`, `XDG_RUNTIME_DIR`.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["config", "data", "run"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn vault(&self) -> PathBuf {
        self.path().join("data/hybridd/vault.db")
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run/hybridd/control.sock")
    }

    pub fn config_file(&self) -> PathBuf {
        self.path().join("config/hybridd/config.toml")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.config_file().parent().unwrap()).unwrap();
        std::fs::write(self.config_file(), text).unwrap();
    }

    /// Writes `pin` to a file (mode 0600, as `read_pin_file` demands) and
    /// returns its path.
    pub fn pin_file(&self, name: &str, pin: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path().join(name);
        std::fs::write(&p, format!("{pin}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// `hybridd ARGS` with this home's environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hybridd"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("HYBRIDD_INSECURE_FAST_KDF", "1")
            // The driver's `debug` lines too: tests count "opening tunnel"
            // to see whether a session used the network; and the control
            // server's, which say how a scan arrived (terminal, detached).
            .env(
                "RUST_LOG",
                "info,hybridd::ceremony::driver=debug,hybridd::control::server=debug",
            );
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `vault init` with PIN `pin`.
    pub fn init_vault(&self, pin: &str) {
        let f = self.pin_file("init-pin", pin);
        let o = self.run(&["vault", "init", "--pin-file", f.to_str().unwrap()]);
        assert!(o.status.success(), "vault init: {}", text(&o.stderr));
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A child process killed (by its own pid) and reaped on drop.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hybridd tunnel-server` on loopback; returns it and its `ws://` base URL.
pub fn start_tunnel_server(h: &Home) -> (Killed, String) {
    start_tunnel_server_with(h, &[])
}

/// [`start_tunnel_server`] with extra flags (e.g. `--routing-id`).
pub fn start_tunnel_server_with(h: &Home, extra: &[&str]) -> (Killed, String) {
    use std::io::BufRead;
    let mut ts = h
        .cmd()
        .args(["tunnel-server", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(ts.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    (Killed(ts), url)
}

/// Asks the daemon on `socket` whether it is busy; `None` if nobody answers.
pub async fn daemon_busy(socket: &Path) -> Option<bool> {
    use hybridd::control::{Client, ClientMsg, DaemonMsg, Pong};
    let mut c = Client::connect(socket).await.ok()?;
    c.send(&ClientMsg::Ping).await.ok()?;
    match c.recv().await.ok()? {
        Some(DaemonMsg::Pong(Pong { busy, .. })) => Some(busy),
        _ => None,
    }
}

/// Waits (up to 20 s) until the daemon answers on `socket`; on failure
/// shows its log and whether it exited.
pub async fn wait_daemon_ready(daemon: &mut Killed, socket: &Path, log: &Path) {
    let t0 = std::time::Instant::now();
    while daemon_busy(socket).await.is_none() {
        let exited = daemon.0.try_wait().unwrap();
        assert!(
            exited.is_none() && t0.elapsed() < std::time::Duration::from_secs(20),
            "daemon did not start (exit: {exited:?}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs `wait` (a blocking wait for the process `pid`) off the runtime's
/// threads, for at most 60 s; past the deadline the process is killed by
/// its pid and the test fails.
async fn within_60_s<T: Send + 'static>(
    pid: u32,
    wait: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> T {
    let limit = std::time::Duration::from_secs(60);
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(wait)).await {
        Ok(joined) => joined.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("pid {pid} did not exit within 60 s");
        }
    }
}

/// Waits (at most 60 s) for a spawned `hybridd scan` and its output.
pub async fn scan_output(child: std::process::Child) -> Output {
    within_60_s(child.id(), move || child.wait_with_output()).await
}

/// Waits (at most 60 s) for `child` to exit by itself; its status.
pub async fn exit_status(mut child: Killed) -> std::process::ExitStatus {
    within_60_s(child.0.id(), move || child.0.wait()).await
}

/// 32 random bytes (a clientDataHash).
pub fn cdh() -> [u8; 32] {
    use rand_core::RngCore;
    let mut h = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut h);
    h
}

/// Whether `tool` (a program answering `--version`) can be run. When it
/// cannot, the calling test is skipped with a loud message naming the Debian
/// package — or, with `HYBRIDD_REQUIRE_TOOLS=1` (set by `.ci/run`, as
/// `HYBRIDD_REQUIRE_DBUS=1` is for D-Bus), fails: CI must never skip.
pub fn tool_or_skip(test: &str, tool: &str, package: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("HYBRIDD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{test}: {tool} is not installed (apt-get install {package}); \
             HYBRIDD_REQUIRE_TOOLS=1 forbids skipping"
        );
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED {test}: {tool} is not installed.\n\
         !!!!!!!! apt-get install {package}, or set HYBRIDD_REQUIRE_TOOLS=1 to fail instead.\n"
    );
    false
}

/// Runs this test binary's test `name` as CI does (`HYBRIDD_REQUIRE_TOOLS=1`)
/// but with an empty `PATH`, so no tool can be found; returns whether it
/// failed and its output.
pub fn run_without_tools(name: &str) -> (bool, String) {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env("PATH", empty.path())
        .env("HYBRIDD_REQUIRE_TOOLS", "1")
        .output()
        .unwrap();
    (
        !out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}
