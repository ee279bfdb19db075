#!/bin/sh
# Runs inside the ble-vm guest as root (see vm.sh). The host's / is mounted
# read-only; $BLE_VM_SHARE is the one writable folder shared with the host.
# Two virtual LE controllers come from btvirt; a real bluetoothd serves them on
# a private bus. Our advertise example registers $ADVERT on the first
# controller bluetoothd serves, through hybrid-bluez; our scan example on the
# second must receive exactly those 20 bytes under 0xFFF9, and the advertiser
# must then stop cleanly (UnregisterAdvertisement). The verdict goes to
# $BLE_VM_SHARE/result.
OUT=${BLE_VM_SHARE:?}
exec > "$OUT/inside.log" 2>&1
set -x
verdict() { echo "$1" > "$OUT/result"; sync; poweroff -f; exit 0; }
# Waits (by the clock: TCG on a busy host is slow) until "$@" succeeds.
wait_for() { secs=$1; shift; end=$(( $(date +%s) + secs ))
  until "$@" > /tmp/wait.out 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && { cat /tmp/wait.out; return 1; }; sleep 0.3; done; }
bus_call() { dbus-send --system --print-reply --reply-timeout=5000 "$@"; }
# Adapter names bluetoothd serves now (hci0 hci1 ...).
adapters() { bus_call --dest=org.bluez / org.freedesktop.DBus.ObjectManager.GetManagedObjects \
  | sed -n 's|.*object path "/org/bluez/\(hci[0-9]*\)"$|\1|p' | sort -u; }
two_adapters() { [ "$(adapters | wc -l)" -ge 2 ]; }
: "${BIN:?}" "${ADVERT:?}"

# A private "system" bus: the stock session policy lets anyone own any name,
# which is all bluetoothd and our examples need. (A hand-written minimal
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
set -- $(adapters); ADV_HCI=$1; SCAN_HCI=$2
echo "advertiser $ADV_HCI, scanner $SCAN_HCI" > "$OUT/adapters"
# bluetoothd powers new controllers on by itself (AutoEnable); make sure.
for h in "$ADV_HCI" "$SCAN_HCI"; do timeout 10 btmgmt --index "${h#hci}" power on; done

timeout 60 "$BIN/scan" --adapter "$SCAN_HCI" --expect "$ADVERT" --timeout 45 > "$OUT/scan.log" 2>&1 &
scan=$!
sleep 2
timeout 60 "$BIN/advertise" "$ADVERT" --adapter "$ADV_HCI" --seconds 12 > "$OUT/adv.log" 2>&1 &
adv=$!
if wait $scan; then
  if grep -qx "MATCH $ADVERT" "$OUT/scan.log"; then
    wait $adv; adv_rc=$?
    grep -qx STOPPED "$OUT/adv.log" \
      || verdict "FAIL (advertiser did not stop cleanly, rc $adv_rc: $(tail -n1 "$OUT/adv.log"))"
    verdict "PASS ($SCAN_HCI received exactly the 20 bytes $ADV_HCI advertised under fff9; unregistered cleanly)"
  fi
  verdict "FAIL (scanner exited 0 without the expected MATCH line)"
fi
grep -q ADVERTISING "$OUT/adv.log" || verdict "FAIL (advertiser: $(tail -n1 "$OUT/adv.log"))"
verdict "FAIL (scanner on $SCAN_HCI did not receive the advert: $(tail -n1 "$OUT/scan.log"))"
