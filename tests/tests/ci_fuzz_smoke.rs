//! `.ci/fuzz-smoke` must fail on every fuzzer run that did not end cleanly
//! at its time limit — a crash or leak report without an artifact, a
//! fuzzer killed by a signal, an exit status of 0 without libFuzzer's final
//! "Done N runs" line — not only when an artifact file appears (issue 16).
//!
//! The script runs unmodified, from a copy in a scratch tree
//! (`<tmp>/.ci/fuzz-smoke`, `<tmp>/fuzz/`), with a stub `cargo` first in
//! `PATH` that plays `cargo fuzz list | build | run` as told by
//! `STUB_FUZZ_RUN` (the behaviours libFuzzer and cargo-fuzz show).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A `cargo` that knows one fuzz target, `stub_target`.
const STUB_CARGO: &str = r##"#!/usr/bin/env bash
set -u
[ "${1:-}" = fuzz ] || { echo "stub cargo: unexpected $*" >&2; exit 2; }
case "${2:-}" in
  list) echo stub_target ;;
  build) exit 0 ;;
  run)
    case "$STUB_FUZZ_RUN" in
      clean)
        echo "INFO: Seed: 1"
        echo "#1000 DONE   cov: 10 ft: 10 corp: 1/1b exec/s: 1000"
        echo "Done 1000 runs in 1 second(s)"
        echo "stat::number_of_executed_units: 1000"
        exit 0 ;;
      leak-without-artifact)
        echo "==4242==ERROR: LeakSanitizer: detected memory leaks"
        echo "SUMMARY: AddressSanitizer: 64 byte(s) leaked in 1 allocation(s)."
        echo "Error: Fuzz target exited with exit status: 1" >&2
        exit 1 ;;
      killed-without-artifact)
        echo "#500 NEW    cov: 10 ft: 10"
        kill -KILL $$ ;;
      ok-without-done)
        echo "INFO: Seed: 1"
        exit 0 ;;
      crash-with-artifact)
        mkdir -p artifacts/stub_target
        echo x > artifacts/stub_target/crash-0000
        echo "==4242== ERROR: libFuzzer: deadly signal"
        exit 77 ;;
    esac ;;
esac
"##;

/// Runs a copy of `.ci/fuzz-smoke` against the stub; returns (success, output).
fn fuzz_smoke(behaviour: &str) -> (bool, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join(".ci")).unwrap();
    std::fs::create_dir_all(tmp.path().join("fuzz")).unwrap();
    std::fs::create_dir_all(tmp.path().join("bin")).unwrap();
    std::fs::copy(
        repo.join(".ci/fuzz-smoke"),
        tmp.path().join(".ci/fuzz-smoke"),
    )
    .unwrap();
    let cargo = tmp.path().join("bin/cargo");
    std::fs::write(&cargo, STUB_CARGO).unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        tmp.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(tmp.path().join(".ci/fuzz-smoke"))
        .env("PATH", path)
        .env("FUZZ_SECONDS", "1")
        .env("STUB_FUZZ_RUN", behaviour)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn fuzz_smoke_fails_on_any_unclean_fuzzer_exit() {
    let (ok, out) = fuzz_smoke("clean");
    assert!(ok, "a clean time-limit end must pass:\n{out}");
    for behaviour in [
        "leak-without-artifact",
        "killed-without-artifact",
        "ok-without-done",
        "crash-with-artifact",
    ] {
        let (ok, out) = fuzz_smoke(behaviour);
        assert!(!ok, "{behaviour}: fuzz-smoke passed:\n{out}");
        assert!(out.contains("stub_target"), "{behaviour}: {out}");
    }
}
