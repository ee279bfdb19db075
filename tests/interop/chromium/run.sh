#!/usr/bin/env bash
# Chromium interop suite: Debian's unmodified `chromium` completes hybrid
# ceremonies against `hybridd run` on loopback (docs/interop.md).
#
# Usage: tests/interop/chromium/run.sh [harness options]
#   --modes bluez,file   radio modes to run (default both)
#   --rounds N           ceremonies of the rounds scenario (default 10)
#   --only a,b           only these scenarios (uv, discoverable,
#                        discoverable-pick, prf, notify-fingerprint, rounds,
#                        untrusted, no-adapter)
#   --wait-for-desktop S hybridd's wait for the desktop (default 10 s)
# Environment: INTEROP_RUN_DIR (default target/interop-chromium/<stamp>),
#   INTEROP_KEEP=1 keeps the run directory on success too,
#   INTEROP_SKIP_SETUP=1 skips apt/venv checks.
# Prints `CHROMIUM-INTEROP RESULT: PASS|FAIL (...)`; exit 0 on PASS, 1 on FAIL,
# 2 when set-up failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=$TARGET/interop-chromium/venv
STAMP=$(date +%Y%m%d-%H%M%S)-$$
RUN_DIR=${INTEROP_RUN_DIR:-$TARGET/interop-chromium/run-$STAMP}
say() { printf '[interop %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "CHROMIUM-INTEROP RESULT: FAIL (setup: $*)"; exit 2; }

# ---------------------------------------------------------------- set-up
if [ -z "${INTEROP_SKIP_SETUP:-}" ]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v Xvfb >/dev/null || missing+=(xvfb)
  command -v zbarimg >/dev/null || missing+=(zbar-tools)
  command -v xdotool >/dev/null || missing+=(xdotool)
  command -v certutil >/dev/null || missing+=(libnss3-tools)
  command -v dbus-daemon >/dev/null || missing+=(dbus-daemon)
  command -v openssl >/dev/null || missing+=(openssl)
  [ -x /usr/bin/import ] || missing+=(imagemagick)
  command -v dunst >/dev/null || missing+=(dunst)
  command -v dbus-send >/dev/null || missing+=(dbus-bin)
  [ -x /usr/libexec/fprintd ] || missing+=(fprintd)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
      > "${TMPDIR:-/tmp}/hybridd-interop-apt.log" 2>&1 || die "apt-get failed (${TMPDIR:-/tmp}/hybridd-interop-apt.log)"
  fi
  if ! "$VENV/bin/python" -c 'import webauthn' 2>/dev/null; then
    say "creating $VENV with py_webauthn (requirements.txt)"
    python3 -m venv "$VENV" || die "python3 -m venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" || die "pip install"
  fi
fi
say "building hybridd and the harness helpers"
cargo build -q -p hybridd -p hybrid-interop-chromium || die "cargo build"

mkdir -p "$RUN_DIR"
say "run directory $RUN_DIR"
set +e
"$VENV/bin/python" "$HERE/harness.py" --run-dir "$RUN_DIR" --bin-dir "$TARGET/debug" \
  --json "$RUN_DIR/results.json" "$@"
rc=$?
set -e
if [ $rc -eq 0 ] && [ -z "${INTEROP_KEEP:-}" ]; then
  rm -rf "$RUN_DIR"
else
  say "logs kept in $RUN_DIR"
fi
exit $rc
