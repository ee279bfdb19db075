#!/bin/sh
# Runs inside the ble-vm guest as root (see vm.sh). The host's / is mounted
# read-only; $BLE_VM_SHARE is the one writable folder shared with the host.
# Three virtual LE controllers come from btvirt; a real bluetoothd serves them
# on a private bus. The first two it serves are the phone's and the desktop's.
#
# Scenarios, all in this one boot, each appending one line to
# $BLE_VM_SHARE/scenarios ("SCENARIO <name>: PASS|FAIL ..."):
#  advert        our advertise example registers $ADVERT on the phone's
#                controller through hybrid-bluez; our scan example on the
#                desktop's must receive exactly those 20 bytes under 0xFFF9,
#                then the advertiser stops cleanly (UnregisterAdvertisement).
#  l2cap-radio   hybrid-bluez's L2capListener (kernel-assigned PSM, no
#                security) and the connectable advert with the {1: PSM}
#                suffix; a desktop-side probe reads the PSM from the advert,
#                connects an LE credit-based channel and gets its message
#                back (examples/l2cap.rs): the radio half of CTAP 2.3's path.
#  lwa-0.11-l2cap, lwa-0.10-l2cap
#                `hybridd run` (radio = "bluez", adapter = the phone's
#                controller) and the unmodified libwebauthn initiator (built
#                as tests/interop/peers builds it) on the desktop's
#                controller: makeCredential, then getAssertion with a new QR,
#                verified by webauthn-rs-core and p256; QRs with key 6 =
#                [0, 1] (DRIVER_TRANSPORTS=local): CTAP 2.3's BLE L2CAP
#                channel, the tunnel server pairs nothing (its /metrics).
#  lwa-0.11-tunnel, lwa-0.10-tunnel
#                the same with QRs without key 6 (DRIVER_TRANSPORTS=only):
#                the 20-byte non-connectable advert, the tunnel.
#  lwa-0.11-fallback
#                key 6 = [0, 1], but hybridd (HYBRIDD_TEST_L2CAP_REFUSE=1)
#                advertises its PSM with the listener closed: the desktop's
#                L2CAP connect fails and it falls back to the tunnel.
#                Each ceremony line names the path from hybridd's log
#                ("phone session ended … path=…"), checked against /metrics
#                and the advert kinds hybridd registered.
#  never-connected
#                the desktop cannot reach the tunnel (its CA is not trusted):
#                `hybridd scan` ends with desktop_never_connected.
# The verdict goes to $BLE_VM_SHARE/result.
OUT=${BLE_VM_SHARE:?}
exec > "$OUT/inside.log" 2>&1
PS4='+ $(date +%T) '
set -x
: "${BIN:?}" "${EXAMPLES:?}" "${ADVERT:?}" "${ROOT:?}"
FAILED=0
scenario() { echo "SCENARIO $1" >> "$OUT/scenarios"; case "$1" in *": PASS "*) ;; *) FAILED=1;; esac; }
verdict() {
  if [ -z "$1" ]; then
    if [ "$FAILED" = 0 ]; then set -- "PASS ($(grep -c '^SCENARIO' "$OUT/scenarios") scenarios)"
    else set -- "FAIL (a scenario failed)"; fi
  fi
  echo "$1" > "$OUT/result"; sync; poweroff -f; exit 0; }
# Waits (by the clock: TCG on a busy host is slow) until "$@" succeeds.
wait_for() { secs=$1; shift; end=$(( $(date +%s) + secs ))
  until "$@" > /tmp/wait.out 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && { cat /tmp/wait.out; return 1; }; sleep 0.3; done; }
bus_call() { dbus-send --system --print-reply --reply-timeout=5000 "$@"; }
# Adapter names bluetoothd serves now (hci0 hci1 ...).
adapters() { bus_call --dest=org.bluez / org.freedesktop.DBus.ObjectManager.GetManagedObjects \
  | sed -n 's|.*object path "/org/bluez/\(hci[0-9]*\)"$|\1|p' | sort -u; }
two_adapters() { [ "$(adapters | wc -l)" -ge 2 ]; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# A private "system" bus: the stock session policy lets anyone own any name,
# which is all bluetoothd and our programs need. (A hand-written minimal
# config that works on the host did not answer inside the guest.)
dbus-daemon --session --address=unix:path=/run/hybridd-test-bus --fork --nopidfile \
  || verdict "FAIL (dbus-daemon did not start)"
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/hybridd-test-bus
wait_for 30 bus_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetId \
  || verdict "FAIL (the private bus does not answer)"

# Three LE-only virtual controllers: on a busy host the kernel's HCI reset of
# one can time out under TCG, so we use the first two bluetoothd does serve.
btvirt -L -l3 > "$OUT/btvirt.log" 2>&1 &
wait_for 60 test -e /sys/class/bluetooth/hci2 || verdict "FAIL (btvirt made no controllers)"
btmon -w "$OUT/hci.btsnoop" > /dev/null 2>&1 &
# -E: experimental features, so MinInterval/MaxInterval are honoured.
/usr/libexec/bluetooth/bluetoothd -n -E -d > "$OUT/bluetoothd.log" 2>&1 &
wait_for 90 two_adapters || verdict "FAIL (bluetoothd did not serve two controllers)"
sleep 2   # let the last one finish its setup
set -- $(adapters); PHONE=$1; DESK=$2
echo "phone $PHONE, desktop $DESK" > "$OUT/adapters"
# bluetoothd powers new controllers on by itself (AutoEnable); make sure.
for h in "$PHONE" "$DESK"; do timeout 10 btmgmt --index "${h#hci}" power on; done
# ...and every other controller off. libwebauthn's L2CAP socket is not bound
# to an adapter, so the kernel routes it through the newest powered
# controller (hci_get_route), the spare if it is up. Two controllers linked
# to the phone's at once then break btvirt: its emulated controllers (BlueZ
# 5.66's btdev) give every ACL link handle 42, and the phone's packets for
# one link reach the other. The HCI trace of a failed CI run showed it: the
# probe of l2cap-radio still linked from the desktop's controller, the spare
# linking for libwebauthn, the phone's LE Credit Based Connection Response
# delivered to the wrong one; libwebauthn's channel never opened ("send MTU
# did not become available", then os error 107).
for h in $(ls /sys/class/bluetooth | grep -x 'hci[0-9]*'); do
  case " $PHONE $DESK " in *" $h "*) continue ;; esac
  timeout 10 btmgmt --index "${h#hci}" power off
  hciconfig "$h" | grep -q DOWN || timeout 10 hciconfig "$h" down
  echo "spare $h: $(hciconfig "$h" | grep -o -m1 -E 'UP|DOWN')" >> "$OUT/adapters"
done
addr_of() { timeout 5 btmgmt --index "${1#hci}" info | sed -n 's/^\s*addr \([0-9A-F:]*\).*/\1/p' | head -1; }
PHONE_ADDR=$(addr_of "$PHONE"); DESK_ADDR=$(addr_of "$DESK")
echo "phone $PHONE $PHONE_ADDR, desktop $DESK $DESK_ADDR" >> "$OUT/adapters"

# ------------------------------------------------------------------ advert
timeout 60 "$EXAMPLES/scan" --adapter "$DESK" --expect "$ADVERT" --timeout 45 > "$OUT/scan.log" 2>&1 &
scan=$!
sleep 2
timeout 60 "$EXAMPLES/advertise" "$ADVERT" --adapter "$PHONE" --seconds 12 > "$OUT/adv.log" 2>&1 &
adv=$!
if wait $scan && grep -qx "MATCH $ADVERT" "$OUT/scan.log"; then
  wait $adv
  if grep -qx STOPPED "$OUT/adv.log"; then
    scenario "advert: PASS path=radio verify=$DESK received exactly the 20 bytes $PHONE advertised under fff9; unregistered cleanly"
  else
    scenario "advert: FAIL advertiser did not stop cleanly: $(tail -n1 "$OUT/adv.log")"
  fi
else
  kill $adv 2>/dev/null; wait $adv
  scenario "advert: FAIL scanner on $DESK did not receive the advert: $(tail -n1 "$OUT/scan.log") / $(tail -n1 "$OUT/adv.log")"
fi

# ------------------------------------------------------------- l2cap-radio
L2ADV=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
timeout 90 "$EXAMPLES/l2cap" serve --adapter "$PHONE" --advert "$L2ADV" --seconds 75 > "$OUT/l2cap-serve.log" 2>&1 &
srv=$!
wait_for 30 grep -q LISTENING "$OUT/l2cap-serve.log"
timeout 90 "$EXAMPLES/l2cap" connect --adapter "$DESK" --advert "$L2ADV" --seconds 60 > "$OUT/l2cap-connect.log" 2>&1
crc=$?
wait $srv; src=$?
if [ $crc = 0 ] && [ $src = 0 ] && grep -q '^L2CAP OK' "$OUT/l2cap-connect.log"; then
  seen=$(sed -n 's/^SEEN \([0-9a-f]*\).*/\1/p' "$OUT/l2cap-connect.log")
  scenario "l2cap-radio: PASS path=l2cap verify=advert of $(( ${#seen} / 2 )) bytes (20 + {1: PSM} suffix), $(grep '^L2CAP OK' "$OUT/l2cap-connect.log" | cut -d' ' -f3-); phone: $(grep '^SERVED' "$OUT/l2cap-serve.log" | cut -d' ' -f2-)"
else
  scenario "l2cap-radio: FAIL connect rc $crc: $(tail -n1 "$OUT/l2cap-connect.log") / serve rc $src: $(tail -n1 "$OUT/l2cap-serve.log")"
fi

# -------------------------------------------------------------- ceremonies
# The tunnel server inside the VM: no network, so lo, a hosts file mapping
# cable.ua5v.com (the host a desktop derives from tunnel domain 0) to
# 127.0.0.1, and a throwaway CA the desktop trusts via SSL_CERT_FILE.
ip link set lo up
P=$OUT/pki
bash "$ROOT/tests/interop/common/pki.sh" "$P" || verdict "FAIL (pki.sh)"
{ grep -v 'cable\.ua5v\.com' /etc/hosts; echo '127.0.0.1 cable.ua5v.com'; } > "$OUT/hosts"
mount --bind "$OUT/hosts" /etc/hosts || verdict "FAIL (cannot bind-mount /etc/hosts)"
"$BIN/hybridd" tunnel-server --listen 127.0.0.1:443 --tls-cert "$P/chain.pem" --tls-key "$P/server.key" \
  --plain-listen 127.0.0.1:0 > "$OUT/tunnel.out" 2> "$OUT/tunnel.log" &
wait_for 60 grep -q '^ws://' "$OUT/tunnel.out" || verdict "FAIL (the tunnel server did not start)"
TURL=$(grep -m1 '^ws://' "$OUT/tunnel.out")
METRICS=http://${TURL#ws://}/metrics
# Tunnels the server paired so far (busybox's static wget: under TCG every
# process start counts, and a Python start costs ~20 s).
paired() { timeout 20 busybox wget -q -O - "$METRICS" | sed -n 's/^hybrid_tunnel_tunnels_paired_total //p'; }

# The phone: its own home, vault and config; hybridd run on the private bus.
W=/tmp/phone; mkdir -p "$W/cfg/hybridd" "$W/data" "$W/run"; chmod 700 "$W/run"
export XDG_CONFIG_HOME=$W/cfg XDG_DATA_HOME=$W/data XDG_RUNTIME_DIR=$W/run
printf 'radio = "bluez"\nadapter = "%s"\n' "$PHONE" > "$W/cfg/hybridd/config.toml"
printf '246810\n' > "$W/pin.txt"; chmod 600 "$W/pin.txt"
HYBRIDD_INSECURE_FAST_KDF=1 "$BIN/hybridd" vault init --pin-file "$W/pin.txt" > "$OUT/vault.log" 2>&1 \
  || verdict "FAIL (vault init: $(tail -n1 "$OUT/vault.log"))"
"$BIN/hybridd" doctor --offline > "$OUT/doctor.log" 2>&1
bt=$(grep -m1 bluetooth "$OUT/doctor.log")
case "$bt" in
  *"using adapter $PHONE ($PHONE_ADDR"*) scenario "doctor: PASS path=none verify=$bt" ;;
  *) scenario "doctor: FAIL $bt" ;;
esac
RUST_LOG=info "$BIN/hybridd" run --tunnel-url "$TURL" --approval auto --pin-file "$W/pin.txt" \
  --wait-for-desktop-secs 40 > "$OUT/hybridd.log" 2>&1 &
HYBRIDD_PID=$!
wait_for 90 test -S "$W/run/hybridd/control.sock" || verdict "FAIL (hybridd run did not start: $(tail -n2 "$OUT/hybridd.log"))"

# The desktop's view of the same bluetoothd: only its own controller
# (libwebauthn scans with the first adapter BlueZ lists; see
# interop-bluez-view). L2CAP sockets go straight to the kernel.
dbus-daemon --session --address=unix:path=/run/desktop-bus --fork --nopidfile \
  || verdict "FAIL (the desktop's bus did not start)"
"$BIN/interop-bluez-view" --upstream "$DBUS_SYSTEM_BUS_ADDRESS" --downstream unix:path=/run/desktop-bus \
  --show "$DESK" --ready-file /tmp/view.ready > "$OUT/bluez-view.log" 2>&1 &
wait_for 30 test -e /tmp/view.ready || verdict "FAIL (interop-bluez-view: $(tail -n1 "$OUT/bluez-view.log"))"

# Data paths of the phone sessions that ended since line $1 of hybridd's log
# (hybridd logs "phone session ended … path=l2cap|tunnel|none").
paths_since() {
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/hybridd.log" | grep 'phone session ended' | sed -n "$(($1 + 1)),\$p" \
    | sed -n 's/.*path="\{0,1\}\([a-z0-9]*\).*/\1/p' | tr '\n' ' ' | sed 's/ $//'; }
ended() { sed 's/\x1b\[[0-9;]*m//g' "$OUT/hybridd.log" | grep -c 'phone session ended'; }

# One driver run: $1 scenario name, $2 driver binary, $3 DRIVER_SCENARIO, $4 CA file,
# $5 DRIVER_TRANSPORTS (only: QR without key 6; local: key 6 = [0, 1]).
drive() {
  name=$1 driver=$2 scen=$3 ca=$4 transports=${5:-only}
  before=$(paired); adv_before=$(grep -c 'advertising on 0xFFF9' "$OUT/hybridd.log"); ended_before=$(ended)
  t0=$(now_ms)
  env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/desktop-bus DRIVER_QR_FILE=/tmp/qr-$name.txt \
    DRIVER_SCENARIO=$scen DRIVER_RUNS=1 DRIVER_TRANSPORTS=$transports DRIVER_LIMIT_SECS=150 \
    SSL_CERT_FILE=$ca RUST_LOG=${DRIVER_LOG:-warn} \
    DRIVER_SCAN_CMD="'$BIN/hybridd' scan - < /tmp/qr-$name.txt >> '$OUT/scan-$name.log' 2>&1; echo \"scan exit \$?\" >> '$OUT/scan-$name.log'" \
    timeout 400 "$driver" > "$OUT/driver-$name.out" 2> "$OUT/driver-$name.log"
  rc=$?
  secs=$(( ($(now_ms) - t0) / 1000 ))
  after=$(paired)
  tunnels=$(( ${after:-0} - ${before:-0} ))
  # hybrid-bluez logs each advert it registers ("advertising on 0xFFF9 …
  # connectable=…"); the log has ANSI colours.
  adverts=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/hybridd.log" | grep 'advertising on 0xFFF9' \
    | sed -n "$((adv_before + 1)),\$p" | sed -n 's/.*connectable=\([a-z]*\).*/connectable=\1/p' | sort | uniq -c | tr -s ' \n' ' ')
  paths=$(paths_since "$ended_before")
  echo "$name: rc=$rc tunnels=$tunnels adverts=[$adverts] paths=[$paths] secs=$secs"
}

# One create+get ceremony pair: $1 scenario name, $2 release, $3 transports,
# $4 the expected phone paths, $5 the expected tunnels paired, $6 the
# expected advert kind (connectable=true|false).
ceremonies() {
  name=$1 rel=$2 transports=$3 want_paths=$4 want_tunnels=$5 want_advert=$6
  eval driver=\$DRIVER_${rel%.*}_${rel#*.}
  log_before=$(( $(wc -l < "$OUT/hybridd.log") + 1 ))
  drive "$name" "$driver" uv "$P/ca.pem" "$transports" > /tmp/drive.out; cat /tmp/drive.out
  out=$OUT/driver-$name.out
  # The phone's side of each L2CAP channel: which controller the desktop's
  # channel came from (hybrid-bluez logs "desktop connected over L2CAP
  # peer=…"), so an L2CAP pass proves the desktop's own controller.
  l2peers=$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/hybridd.log" | sed -n "$log_before,\$p" \
    | sed -n 's/.*hybrid_bluez::l2cap: desktop connected over L2CAP peer=\([0-9A-F:]*\).*/\1/p' | sort -u | tr '\n' ' ' | sed 's/ $//')
  want_peers=""; [ "$want_paths" = "l2cap l2cap" ] && want_peers=$DESK_ADDR
  create=$(sed -n 's/^RUN 1 create: OK.* total_ms=\([0-9]*\) channel_ms=.*/\1/p' "$out")
  get=$(sed -n 's/^RUN 1 get: OK.* total_ms=\([0-9]*\) channel_ms=.*/\1/p' "$out")
  verified=$(grep -o 'p256_verified=true rp_verified=true tampered_rejected=true' "$out")
  tunnels=$(sed -n 's/.* tunnels=\([-0-9]*\) .*/\1/p' /tmp/drive.out)
  adverts=$(sed -n 's/.* adverts=\[\(.*\)\] paths.*/\1/p' /tmp/drive.out)
  paths=$(sed -n 's/.* paths=\[\(.*\)\] .*/\1/p' /tmp/drive.out)
  case $paths in "l2cap l2cap") path=l2cap ;; "tunnel tunnel") path=tunnel ;; *) path="mixed($paths)" ;; esac
  if grep -q '^DRIVER RESULT: scenario=uv 1/1' "$out" && [ -n "$verified" ] && [ -n "$create" ] && [ -n "$get" ] \
     && [ "$paths" = "$want_paths" ] && [ "$tunnels" = "$want_tunnels" ] && [ "$l2peers" = "$want_peers" ] \
     && case $adverts in *"$want_advert"*) true ;; *) false ;; esac; then
    scenario "$name: PASS path=$path verify=create registered by webauthn-rs-core, get $verified; tunnels relayed by the server: $tunnels; qr_to_credential_ms create=$create get=$get; phone adverts:$adverts${l2peers:+; L2CAP from the desktop's controller $l2peers}"
  else
    scenario "$name: FAIL path=$path (want $want_paths) tunnels_paired=$tunnels (want $want_tunnels) adverts:$adverts (want $want_advert) l2cap_peers=[$l2peers] (want [$want_peers]) $(grep -E '^(RUN|DRIVER)' "$out" | tr '\n' ' ') $(tail -n1 "$OUT/driver-$name.log")"
  fi
}

# CTAP 2.3's BLE L2CAP channel: QRs with key 6 = [0, 1]; the phone listens,
# advertises EID ‖ {1: PSM} connectable, the desktop connects to the PSM; the
# tunnel server pairs nothing (libwebauthn 0.11: 4-byte length framing,
# 0.10: 0D 0A framing).
for rel in 0.11 0.10; do
  ceremonies "lwa-$rel-l2cap" "$rel" local "l2cap l2cap" 0 connectable=true
done
# QRs without key 6 (Chromium's shape): the 20-byte non-connectable advert,
# the tunnel.
for rel in 0.11 0.10; do
  ceremonies "lwa-$rel-tunnel" "$rel" only "tunnel tunnel" 2 connectable=false
done

SYSTEM_CA=/etc/ssl/certs/ca-certificates.crt; [ -r "$SYSTEM_CA" ] || SYSTEM_CA=/dev/null
drive never-connected "$DRIVER_0_11" tls-fail "$SYSTEM_CA" > /tmp/drive.out; cat /tmp/drive.out
if grep -q '^TLS-NEGATIVE: OK' "$OUT/driver-never-connected.out" && grep -q desktop_never_connected "$OUT/scan-never-connected.log"; then
  scenario "never-connected: PASS path=none verify=libwebauthn 0.11 could not reach the tunnel; hybridd scan ended: $(grep -m1 -o 'desktop_never_connected.*' "$OUT/scan-never-connected.log" | cut -c1-80)"
else
  scenario "never-connected: FAIL $(grep -E 'TLS-NEGATIVE|DRIVER' "$OUT/driver-never-connected.out" | tr '\n' ' ') scan: $(tail -n2 "$OUT/scan-never-connected.log" | tr '\n' ' ')"
fi

# A failing L2CAP connect: hybridd again, advertising its PSM with the
# listener closed (HYBRIDD_TEST_L2CAP_REFUSE=1, tests only), so libwebauthn's
# connect is refused and it falls back to the tunnel from the same advert.
kill "$HYBRIDD_PID"; wait "$HYBRIDD_PID"
wait_for 30 sh -c "! test -S '$W/run/hybridd/control.sock'" || rm -f "$W/run/hybridd/control.sock"
HYBRIDD_TEST_L2CAP_REFUSE=1 RUST_LOG=info "$BIN/hybridd" run --tunnel-url "$TURL" --approval auto --pin-file "$W/pin.txt" \
  --wait-for-desktop-secs 40 >> "$OUT/hybridd.log" 2>&1 &
HYBRIDD_PID=$!
wait_for 90 test -S "$W/run/hybridd/control.sock" || verdict "FAIL (hybridd run did not restart: $(tail -n2 "$OUT/hybridd.log"))"
ceremonies "lwa-0.11-fallback" 0.11 local "tunnel tunnel" 2 connectable=true

# The radio's own record: every advertising report carrying 0xFFF9 service
# data that a controller received from the phone's, by PDU type and length.
btmon -r "$OUT/hci.btsnoop" > "$OUT/hci.txt" 2>&1
awk -v phone="$PHONE_ADDR" '
  /^[<>@]/ { rep = 0; sd = 0 }
  /LE (Extended )?Advertising Report \(0x/ { rep = 1; type = ""; addr = "" }
  rep && /Event type:/ { t = $0; sub(/.*Event type: /, "", t); type = t }
  rep && /^ *Address: / { addr = $2 }
  rep && /Service Data: .*0xfff9/ { sd = 1; next }
  rep && sd && /Data: / {
    n[type ", service data " length($2) / 2 " bytes" (addr == phone ? "" : ", random address")]++; sd = 0 }
  END { for (k in n) printf "%s x%d; ", k, n[k] }' "$OUT/hci.txt" > "$OUT/radio-summary"
echo "RADIO reports received: $(cat "$OUT/radio-summary")" >> "$OUT/scenarios"
verdict ""
