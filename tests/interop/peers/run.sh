#!/usr/bin/env bash
# Independent desktop implementations against `hybridd run` (docs/interop.md):
# webauthn-rs's and libwebauthn's hybrid initiators, unmodified, from
# crates.io, each on its normal tunnel path (wss://cable.ua5v.com derived
# from the advert), judged by webauthn-rs-core (and p256 for libwebauthn).
#
# Usage: tests/interop/peers/run.sh [--radios bluez,file] PEER[@RELEASE] [PHASE...]
#   PEER   webauthn-rs (RELEASE 0.6 = 0.6.2, the default, or 0.5 = 0.5.5)
#          libwebauthn (RELEASE 0.11 = 0.11.0, the default, or 0.10 = 0.10.0)
#   PHASE  uv:N        N create+get runs, userVerification required
#          uvdirect:N  the same with attestation "direct" (webauthn-rs)
#          rk:N        N discoverable create + empty-allow-list get runs
#                      (libwebauthn; webauthn-rs cannot express them)
#          local:N     uv:N with QRs that also offer the BLE L2CAP data
#                      channel (CTAP 2.3 key 6 = [0, 1]; libwebauthn):
#                      hybridd must take the tunnel
#          tlsfail     the desktop does not trust the tunnel's CA: it must
#                      fail, and `hybridd scan` must end desktop_never_connected
#   Default phases: webauthn-rs  uv:3 uvdirect:1 tlsfail uv:1
#                   libwebauthn  uv:3 rk:3 local:1 tlsfail uv:1
#   Each radio mode gets a fresh daemon and vault; the phases run in order
#   against one `hybridd run`, so a phase after tlsfail shows that the daemon
#   serves the next scan.
# Needs root (or CAP_SYS_ADMIN): the run lives in a private network namespace
# (the tunnel server listens on 127.0.0.1:443) and each desktop in a private
# mount namespace whose /etc/hosts maps cable.ua5v.com to 127.0.0.1. Needs
# dbus-daemon, openssl, iproute2 and, to build the initiators, pkg-config,
# libdbus-1-dev, libssl-dev and libudev-dev.
# Environment: PEERS_RUN_DIR (default target/interop-peers/run-<stamp>),
#   PEERS_KEEP=1 keeps it on success too.
# Prints `PEER-INTEROP RESULT: PASS|FAIL (...)`; exit 0 on PASS, 1 on FAIL,
# 2 when set-up failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
say() { printf '[peers %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "PEER-INTEROP RESULT: FAIL (setup: $*)"; exit 2; }

RADIOS=bluez,file
if [ "${1:-}" = --radios ]; then RADIOS=${2:?--radios needs a value}; shift 2; fi
SPEC=${1:-}; [ $# -gt 0 ] && shift
PEER=${SPEC%@*}
case $SPEC in
  webauthn-rs|webauthn-rs@0.6) RELEASE=0.6 ;;
  webauthn-rs@0.5) RELEASE=0.5 ;;
  libwebauthn|libwebauthn@0.11) RELEASE=0.11 ;;
  libwebauthn@0.10) RELEASE=0.10 ;;
  *) echo "usage: $0 [--radios bluez,file] webauthn-rs[@0.6|@0.5]|libwebauthn[@0.11|@0.10] [PHASE...]" >&2; exit 2 ;;
esac
case $PEER in
  webauthn-rs) DEFAULT_PHASES=(uv:3 uvdirect:1 tlsfail uv:1) ;;
  libwebauthn) DEFAULT_PHASES=(uv:3 rk:3 local:1 tlsfail uv:1) ;;
esac
PHASES=("$@"); [ ${#PHASES[@]} -gt 0 ] || PHASES=("${DEFAULT_PHASES[@]}")
for ph in "${PHASES[@]}"; do
  case $ph in
    uv:[1-9]*|rk:[1-9]*|tlsfail) ;;
    uvdirect:[1-9]*) [ "$PEER" = webauthn-rs ] || die "uvdirect is a webauthn-rs phase" ;;
    local:[1-9]*) [ "$PEER" = libwebauthn ] || die "local is a libwebauthn phase" ;;
    *) die "unknown phase $ph" ;;
  esac
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RUN_DIR=${PEERS_RUN_DIR:-$TARGET/interop-peers/run-$(date +%Y%m%d-%H%M%S)-$$}

# ------------------------------------------------- checks, build (outside)
if [ -z "${HN_PEERS_INNER:-}" ]; then
  for t in dbus-daemon openssl ip unshare; do
    command -v $t >/dev/null || die "$t not found (apt-get install dbus-daemon openssl iproute2 util-linux)"
  done
  unshare -n -m true 2>/dev/null || die "cannot create network/mount namespaces: run as root"
  cd "$ROOT"
  say "building hybridd and the fake org.bluez"
  cargo build -q -p hybridd -p hybrid-interop-chromium || die "cargo build (hybridd)"
  say "building the $PEER $RELEASE initiator (crates.io, Cargo.lock pinned)"
  DRIVER=$(bash "$HERE/build.sh" "$PEER" "$RELEASE") \
    || die "cargo build ($PEER $RELEASE; needs pkg-config libdbus-1-dev libssl-dev libudev-dev)"
  mkdir -p "$RUN_DIR"
  say "run directory $RUN_DIR"
  set +e
  HN_PEERS_INNER=1 HN_BIN=$TARGET/debug HN_DRIVER=$DRIVER \
    HN_RUN_DIR=$RUN_DIR unshare -n bash "$HERE/run.sh" --radios "$RADIOS" "$SPEC" "${PHASES[@]}"
  rc=$?
  set -e
  if [ $rc -eq 0 ] && [ -z "${PEERS_KEEP:-}" ]; then rm -rf "$RUN_DIR"; else say "logs kept in $RUN_DIR"; fi
  exit $rc
fi

# ------------------------------------------ inside the network namespace
ip link set lo up
H=$HN_BIN D=$HN_DRIVER
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}
trap cleanup EXIT
wait_for() { # $1 = test expression (eval'd), $2 = what; 10 s at most
  for _ in $(seq 100); do eval "$1" && return 0; sleep 0.1; done
  echo "PEER-INTEROP RESULT: FAIL (setup: $2 did not come up)"; exit 2
}

# Throwaway PKI for cable.ua5v.com (shared with the Chromium harness); the CA
# is handed to the desktop with SSL_CERT_FILE.
P=$HN_RUN_DIR/pki
bash "$HERE/../common/pki.sh" "$P" || { echo "PEER-INTEROP RESULT: FAIL (setup: pki.sh)"; exit 2; }
HOSTS=$HN_RUN_DIR/hosts
{ grep -v 'cable\.ua5v\.com' /etc/hosts || true; echo '127.0.0.1 cable.ua5v.com'; } >"$HOSTS"
# The CA bundle a desktop uses when it must NOT trust the tunnel: the system's.
SYSTEM_CA=/etc/ssl/certs/ca-certificates.crt
[ -r "$SYSTEM_CA" ] || SYSTEM_CA=/dev/null

TOTAL_OK=0 TOTAL_CEREMONIES=0 FAILED=()

run_radio() { # $1 = bluez | file
  local radio=$1 W=$HN_RUN_DIR/$1
  mkdir -p "$W/cfg" "$W/data" "$W/run" "$W/logs"; chmod 700 "$W/run"
  export XDG_CONFIG_HOME=$W/cfg XDG_DATA_HOME=$W/data XDG_RUNTIME_DIR=$W/run
  # Private system bus with the project's fake org.bluez: the desktops scan
  # it with btleplug (StartDiscovery, Device1.ServiceData) as on real BlueZ.
  sed "s|@SOCKET@|$W/bus.sock|" "$HERE/../common/system-bus.conf" >"$W/bus.conf"
  dbus-daemon --config-file="$W/bus.conf" --nofork --nopidfile >"$W/logs/dbus.log" 2>&1 & PIDS+=($!)
  wait_for "[ -S '$W/bus.sock' ]" "dbus-daemon"
  export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$W/bus.sock
  local fb=("$H/interop-fake-bluez" --ready-file "$W/bluez.ready" --events "$W/logs/bluez-events.txt")
  [ "$radio" = file ] && fb+=(--advert-file "$W/advert.txt")
  "${fb[@]}" >"$W/logs/fake-bluez.log" 2>&1 & PIDS+=($!)
  wait_for "[ -e '$W/bluez.ready' ]" "the fake org.bluez"
  # hybridd's own tunnel server: TLS on :443 for the desktop (the name it
  # derives from the advert), plain ws:// on loopback for the phone.
  "$H/hybridd" tunnel-server --listen 127.0.0.1:443 --tls-cert "$P/chain.pem" --tls-key "$P/server.key" \
    --plain-listen 127.0.0.1:0 >"$W/logs/tunnel.out" 2>"$W/logs/tunnel.log" & PIDS+=($!)
  wait_for "grep -q '^ws://' '$W/logs/tunnel.out'" "the tunnel server"
  local turl; turl=$(grep -m1 '^ws://' "$W/logs/tunnel.out")
  printf '246810\n' >"$W/pin.txt"; chmod 600 "$W/pin.txt"
  HYBRIDD_INSECURE_FAST_KDF=1 "$H/hybridd" vault init --pin-file "$W/pin.txt" >"$W/logs/vault.log" 2>&1 \
    || { echo "PEER-INTEROP RESULT: FAIL (setup: vault init, $W/logs/vault.log)"; exit 2; }
  local args=(run --tunnel-url "$turl" --approval auto --pin-file "$W/pin.txt" --wait-for-desktop-secs 10)
  [ "$radio" = file ] && args+=(--advert-file "$W/advert.txt")
  "$H/hybridd" "${args[@]}" >"$W/logs/hybridd.log" 2>&1 & PIDS+=($!)
  wait_for "[ -S '$W/run/hybridd/control.sock' ]" "hybridd run"
  say "$radio radio: tunnel $turl, hybridd run ready"

  local rk_base=0 n=0
  for ph in "${PHASES[@]}"; do
    n=$((n + 1))
    local label="$n-${ph/:/-}" runs=${ph#*:} scen att=none ca=$P/ca.pem transports=only
    case $ph in
      uv:*) scen=uv ;;
      local:*) scen=uv transports=local ;;
      uvdirect:*) scen=uv att=direct ;;
      rk:*) scen=rk ;;
      tlsfail) scen=tls-fail runs=1 ca=$SYSTEM_CA ;;
    esac
    local scanlog=$W/logs/scan-$label.log
    set +e
    env DRIVER_QR_FILE="$W/qr.txt" DRIVER_SCENARIO=$scen DRIVER_RUNS="$runs" DRIVER_ATTESTATION=$att DRIVER_TRANSPORTS=$transports \
      DRIVER_RK_BASE=$rk_base SSL_CERT_FILE="$ca" RUST_LOG="${DRIVER_LOG:-warn}" \
      DRIVER_SCAN_CMD="'$H/hybridd' scan - <'$W/qr.txt' >>'$scanlog' 2>&1; echo \"scan exit \$?\" >>'$scanlog'" \
      unshare -m sh -c "mount --bind '$HOSTS' /etc/hosts && exec '$D'" \
      >"$W/logs/driver-$label.out" 2>"$W/logs/driver-$label.log"
    local rc=$?
    set -e
    sed "s/^/  [$radio $label] /" "$W/logs/driver-$label.out" | grep -E 'RUN|TIMES|RESULT|NEGATIVE' >&2 || true
    local verdict=PASS why=""
    if [ $rc -ne 0 ]; then verdict=FAIL why="driver exit $rc"; fi
    if [ "$scen" = tls-fail ] && ! grep -q 'desktop_never_connected' "$scanlog" 2>/dev/null; then
      verdict=FAIL why="${why:+$why; }hybridd scan did not end desktop_never_connected"
    fi
    if [ "$scen" != tls-fail ]; then
      local ok; ok=$(grep -c ': OK' "$W/logs/driver-$label.out" || true)
      TOTAL_OK=$((TOTAL_OK + ok)); TOTAL_CEREMONIES=$((TOTAL_CEREMONIES + 2 * runs))
      [ "$scen" = rk ] && rk_base=$((rk_base + runs))
    fi
    echo "PHASE $radio/$label $verdict${why:+ ($why)}"
    [ $verdict = PASS ] || FAILED+=("$radio/$label")
  done
  cleanup
}

IFS=, read -r -a radio_list <<<"$RADIOS"
for radio in "${radio_list[@]}"; do
  case $radio in bluez|file) run_radio "$radio" ;; *) die "unknown radio $radio" ;; esac
done
summary="$PEER $RELEASE, radios $RADIOS, phases ${PHASES[*]}, $TOTAL_OK of $TOTAL_CEREMONIES ceremonies verified"
if [ ${#FAILED[@]} -eq 0 ] && [ "$TOTAL_OK" -eq "$TOTAL_CEREMONIES" ]; then
  echo "PEER-INTEROP RESULT: PASS ($summary)"
else
  echo "PEER-INTEROP RESULT: FAIL ($summary; failed: ${FAILED[*]:-none})"
  exit 1
fi
