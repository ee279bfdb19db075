#!/usr/bin/env bash
# The phone benchmark in one command (docs/performance.md): builds `hybridd`
# and `hybrid-bench` (release) and the comparison phone — webauthn-rs's
# `share_cable_authenticator` with a SoftToken, a small program kept outside
# the workspace (crates/hybrid-bench/phones/webauthn-rs, `cargo build
# --locked` against its own Cargo.lock) — then runs the same ceremonies
# against both in one run and prints them side by side with ratios.
#
# Usage: crates/hybrid-bench/ceremony.sh [hybrid-bench ceremony options...]
#   e.g. --ceremonies 40 --runs 2 (see `hybrid-bench ceremony --help`).
# Environment:
#   BENCH_EXTRA_PHONE="NAME=COMMAND"  one more column before the reference
#       phone, e.g. an older hybridd binary for a before/after table.
#   CARGO_TARGET_DIR                  as usual (default ./target).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEER_DIR=$HERE/phones/webauthn-rs
PEER=$TARGET/bench-peers/phone-webauthn-rs/release/hybrid-bench-phone-webauthn-rs
say() { printf '[ceremony-bench] %s\n' "$*" >&2; }

say "building hybrid-bench and hybridd (release)"
# hybridd on its own, as `cargo install --path crates/hybridd` builds it: built
# together with hybrid-bench, shared dependencies get the union of both
# packages' features, other symbol names, and crates/hybridd/hot-symbols.txt
# (its hot-code layout, crates/hybridd/build.rs) would not match them.
cargo build --release -q -p hybrid-bench
cargo build --release -q -p hybridd
say "building the webauthn-rs phone (its Cargo.lock; needs libssl-dev, libdbus-1-dev, pkg-config)"
CARGO_TARGET_DIR=$TARGET/bench-peers/phone-webauthn-rs \
  cargo build --release -q --locked --manifest-path "$PEER_DIR/Cargo.toml"

# hybridd at its default log level (info), plus its own phase-time lines.
phones=(--phone "hybridd=RUST_LOG=info,hybridd::timing=debug NO_COLOR=1 $TARGET/release/hybridd run --vault {vault} --socket {socket} --tunnel-url {tunnel} --advert-file {advert} --approval auto --pin-file {pin}")
if [ -n "${BENCH_EXTRA_PHONE:-}" ]; then phones+=(--phone "$BENCH_EXTRA_PHONE"); fi
# SoftToken does no user verification and attests with a certificate (x5c):
# the desktop asks it for no UV and accepts both (rpIdHash, UP, signatures and
# counters are checked as for hybridd).
phones+=(--phone "webauthn-rs=$PEER --tunnel {tunnel} --advert {advert}"
  --uv-discouraged webauthn-rs --attestation-certificate webauthn-rs)
"$TARGET/release/hybrid-bench" ceremony "${phones[@]}" "$@"
