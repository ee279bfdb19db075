#!/usr/bin/env bash
# The tunnel-server benchmark in one command (docs/performance.md):
# builds `hybridd` and `hybrid-bench` (release) and webauthn-rs's
# cable-tunnel-server-backend 0.1.0 from crates.io, then measures both in the
# same run and prints them side by side with ratios.
#
# Usage: crates/hybrid-bench/tunnel.sh [hybrid-bench tunnel options...]
#   e.g. --runs 1 --tunnels 2000 (see `hybrid-bench tunnel --help`).
# Environment:
#   BENCH_EXTRA_SERVER="NAME=COMMAND"  one more column before the reference
#       server, e.g. an older hybridd binary for a before/after table.
#   CARGO_TARGET_DIR                   as usual (default ./target).
#
# cable-tunnel-server-backend is a binary-only crate, so no manifest can
# depend on it: it is built with `cargo install --locked`, which uses the
# Cargo.lock published inside the crate (pinned by crates.io's immutable
# release). Its code is never copied into this repository.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEER_VERSION=0.1.0
PEER_ROOT=$TARGET/bench-peers/cable-tunnel-server-backend-$PEER_VERSION
PEER=$PEER_ROOT/bin/cable-tunnel-server-backend
say() { printf '[tunnel-bench] %s\n' "$*" >&2; }

say "building hybridd and hybrid-bench (release)"
cargo build --release -q -p hybridd -p hybrid-bench
if [ ! -x "$PEER" ]; then
  say "building cable-tunnel-server-backend $PEER_VERSION (crates.io, its Cargo.lock; needs libssl-dev, pkg-config)"
  cargo install -q --locked --version "=$PEER_VERSION" cable-tunnel-server-backend \
    --root "$PEER_ROOT" --target-dir "$TARGET/bench-peers/build"
fi

# The same tunnel lifetime and message budget for both servers; ours also
# lifts its per-source limits, since 10 000 tunnels come from 16 addresses.
CONF_DIR=$(mktemp -d)
trap 'rm -rf "$CONF_DIR"' EXIT
cat >"$CONF_DIR/tunnel-server.toml" <<'TOML'
ttl_secs = 600
max_messages_per_side = 200
max_connections_per_source = 4096
max_waiting_per_source = 4096
TOML

servers=(--server "hybridd=RUST_LOG=warn $TARGET/release/hybridd tunnel-server --config $CONF_DIR/tunnel-server.toml --listen 127.0.0.1:{port}")
if [ -n "${BENCH_EXTRA_SERVER:-}" ]; then servers+=(--server "$BENCH_EXTRA_SERVER"); fi
servers+=(--server "webauthn-rs=RUST_LOG=warn $PEER --bind-address 127.0.0.1:{port} --insecure-http-server --max-messages 200 --tunnel-ttl 600")
"$TARGET/release/hybrid-bench" tunnel "${servers[@]}" "$@"
