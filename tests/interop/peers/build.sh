#!/usr/bin/env bash
# Builds one peer driver exactly as the interop suites use it: the unmodified
# initiator release from crates.io (Cargo.lock pinned, --locked), one binary
# per release. Shared by tests/interop/peers/run.sh and tests/ble-vm/vm.sh.
#
# Usage: tests/interop/peers/build.sh PEER RELEASE   (e.g. libwebauthn 0.11)
# Prints the driver's path on stdout; build output goes to stderr.
# Needs pkg-config, libdbus-1-dev, libssl-dev and libudev-dev (btleplug,
# native-tls, libwebauthn's hidapi).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PEER=${1:?usage: build.sh PEER RELEASE}
RELEASE=${2:?usage: build.sh PEER RELEASE}
case "$PEER@$RELEASE" in
  webauthn-rs@0.6) FEATURE=v0_6 ;;
  webauthn-rs@0.5) FEATURE=v0_5 ;;
  libwebauthn@0.11) FEATURE=v0_11 ;;
  libwebauthn@0.10) FEATURE=v0_10 ;;
  *) echo "build.sh: unknown peer release $PEER@$RELEASE" >&2; exit 2 ;;
esac
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CARGO_TARGET_DIR=$TARGET/interop-peers/build cargo build -q --locked \
  --manifest-path "$HERE/$PEER/Cargo.toml" --no-default-features --features "$FEATURE" >&2
# One binary per release: the next build with other features overwrites it.
DRIVER=$TARGET/interop-peers/bin/hybridd-peer-$PEER-$RELEASE
mkdir -p "$TARGET/interop-peers/bin"
cp "$TARGET/interop-peers/build/debug/hybridd-peer-$PEER" "$DRIVER"
echo "$DRIVER"
