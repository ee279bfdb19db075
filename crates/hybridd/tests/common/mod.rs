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

    /// Writes `pin` to a file and returns its path.
    pub fn pin_file(&self, name: &str, pin: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, format!("{pin}\n")).unwrap();
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
            .env("RUST_LOG", "info");
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
