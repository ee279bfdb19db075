#!/usr/bin/env bash
# hybridd's real-radio check: a real bluetoothd with two virtual LE controllers,
# inside a throwaway qemu VM (the host kernels we run on have no Bluetooth).
#
#   tests/ble-vm/vm.sh prepare        install packages, fetch a Debian kernel, build an initramfs
#   tests/ble-vm/vm.sh boot SCRIPT    boot the VM and run SCRIPT (absolute path) as root inside
#   tests/ble-vm/vm.sh check          prepare if needed, build hybridd, the examples, the
#                                     helper tools and the libwebauthn drivers, run
#                                     inside.sh (every scenario in one boot), print one
#                                     "SCENARIO name: PASS|FAIL path=... verify=..." line
#                                     each and "BLE-VM RESULT: PASS|FAIL (reason)"
#
# How it works: the VM boots Debian's stock kernel (it has bluetooth.ko and
# hci_vhci.ko) with TCG emulation (no KVM needed), mounts the host's / read-only
# over virtio-9p, and chroots into it, so the host's bluez, dbus and our freshly
# built binaries run unchanged inside. One host folder ($STATE/share) is
# mounted writable for logs and results. Needs root (apt-get, dpkg -x).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=${BLE_VM_STATE:-$ROOT/target/ble-vm}
SHARE=$STATE/share
# Kernel modules the init loads, in dependency order (resolved at prepare time).
WANTED_MODULES="virtio_pci 9pnet_virtio 9p hci_vhci af_alg algif_hash algif_skcipher cmac ecb"

log() { printf 'ble-vm: %s\n' "$*" >&2; }

prepare() {
  export DEBIAN_FRONTEND=noninteractive
  local need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  [ -x /bin/busybox ] || need+=(busybox-static)
  [ -x /usr/libexec/bluetooth/bluetoothd ] || need+=(bluez)
  command -v btvirt >/dev/null || need+=(bluez-test-tools)
  command -v dbus-daemon >/dev/null || need+=(dbus-daemon)
  command -v depmod >/dev/null || need+=(kmod)
  command -v cpio >/dev/null || need+=(cpio)
  # The ceremonies: loopback, the throwaway PKI, /metrics, and what the
  # libwebauthn drivers build with (btleplug, native-tls, hidapi).
  command -v ip >/dev/null || need+=(iproute2)
  command -v openssl >/dev/null || need+=(openssl)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  pkg-config --exists dbus-1 2>/dev/null || need+=(libdbus-1-dev)
  pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
  pkg-config --exists libudev 2>/dev/null || need+=(libudev-dev)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  mkdir -p "$STATE" "$SHARE"
  cd "$STATE"
  local kver=${BLE_VM_KERNEL:-}
  if [ -z "$kver" ]; then
    [ -n "$(apt-cache policy linux-image-amd64 2>/dev/null)" ] || apt-get update -qq
    kver=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{sub(/.*linux-image-/,""); print; exit}')
  fi
  [ -n "$kver" ] || { log "cannot tell which kernel linux-image-amd64 depends on"; exit 1; }
  if [ ! -f "kernel-$kver/boot/vmlinuz-$kver" ]; then
    log "fetching linux-image-$kver"
    rm -rf kdeb && mkdir kdeb && (cd kdeb && apt-get download "linux-image-$kver" >/dev/null)
    rm -rf "kernel-$kver" && dpkg-deb -x kdeb/linux-image-"$kver"_*.deb "kernel-$kver"
    rm -rf kdeb
    depmod -b "$STATE/kernel-$kver" "$kver"
  fi
  ln -sfn "kernel-$kver" kernel
  cp "kernel-$kver/boot/vmlinuz-$kver" vmlinuz

  # The initramfs: busybox, the modules, and an init that mounts the host.
  rm -rf rootfs && mkdir -p rootfs/{bin,lib/modules,proc,sys,dev,host}
  cp /bin/busybox rootfs/bin/busybox
  local order=""
  for f in $(for m in $WANTED_MODULES; do
               modprobe -d "$STATE/kernel-$kver" -S "$kver" --show-depends "$m"
             done | awk '$1 == "insmod" && !seen[$2]++ {print $2}'); do
    cp "$f" rootfs/lib/modules/
    order="$order $(basename "$f")"
  done
  cat > rootfs/init <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc none /proc
mount -t sysfs none /sys
mount -t devtmpfs none /dev
for m in$order; do insmod /lib/modules/\$m || echo "ble-vm init: insmod \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro host /host || { echo "ble-vm init: no host fs"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L share /host$SHARE || { echo "ble-vm init: no share"; poweroff -f; }
for d in proc sys dev; do mount --move /\$d /host/\$d; done
# Writable scratch where the guest's programs expect it.
for d in run tmp var/lib/bluetooth root; do [ -d /host/\$d ] && mount -t tmpfs none /host/\$d; done
exec chroot /host /bin/sh -c 'export BLE_VM_SHARE=$SHARE; . $SHARE/guest.env; exec /bin/sh "\$BLE_VM_SCRIPT"'
INIT
  chmod 755 rootfs/init
  (cd rootfs && find . | cpio -o -H newc --quiet | gzip -1 > ../initramfs.gz)
  echo "$kver" > kernel.version
  log "ready: kernel $kver, modules:$order"
}

boot() {
  local script=$1; shift
  [ -f "$STATE/initramfs.gz" ] || { log "run '$0 prepare' first"; exit 1; }
  case "$script" in /*) ;; *) log "SCRIPT must be an absolute path"; exit 2;; esac
  mkdir -p "$SHARE"; rm -rf "${SHARE:?}"/*
  # The guest reads its settings from here: the script plus any NAME=value args.
  { printf 'export BLE_VM_SCRIPT=%q\n' "$script"
    for kv in "$@"; do printf 'export %q\n' "$kv"; done; } > "$SHARE/guest.env"
  # TCG, not KVM: nested KVM hung on these machines, and TCG boots in seconds.
  local rc=0
  timeout "${BLE_VM_TIMEOUT:-1200}" qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 \
    -nographic -no-reboot -nic none \
    -kernel "$STATE/vmlinuz" -initrd "$STATE/initramfs.gz" \
    -append "console=ttyS0 quiet panic=-1" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$SHARE",mount_tag=share,security_model=none \
    > "$STATE/console.log" 2>&1 || rc=$?
  [ $rc -eq 124 ] && log "VM timed out (console: $STATE/console.log)"
  return 0
}

check() {
  prepare   # cheap when done before: installs only what is missing
  local target=${CARGO_TARGET_DIR:-$ROOT/target}
  # Everything the guest runs is built here, once, before the boot.
  log "building hybridd, the examples and the helper tools"
  (cd "$ROOT" && cargo build -q -p hybrid-bluez --examples && cargo build -q -p hybridd -p hybrid-interop-chromium) \
    || { echo "BLE-VM RESULT: FAIL (cargo build)"; return 1; }
  local d11 d10
  log "building the libwebauthn 0.11 and 0.10 initiators as the peers suite does"
  d11=$(bash "$ROOT/tests/interop/peers/build.sh" libwebauthn 0.11) \
    && d10=$(bash "$ROOT/tests/interop/peers/build.sh" libwebauthn 0.10) \
    || { echo "BLE-VM RESULT: FAIL (building the libwebauthn drivers; needs pkg-config libdbus-1-dev libssl-dev libudev-dev)"; return 1; }
  # A fixed, recognisable advert (any 20 bytes do for the radio path).
  local advert=${BLE_VM_ADVERT:-$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')}
  local t0=$SECONDS
  log "booting the VM (all scenarios in one boot)"
  boot "$HERE/inside.sh" "BIN=$target/debug" "EXAMPLES=$target/debug/examples" "ROOT=$ROOT" \
    "ADVERT=$advert" "DRIVER_0_11=$d11" "DRIVER_0_10=$d10"
  local verdict
  if [ -f "$SHARE/result" ]; then verdict=$(cat "$SHARE/result"); else verdict="FAIL (the VM wrote no result; see $STATE/console.log)"; fi
  case "$verdict" in
    PASS*) ;;
    *) for f in inside.log bluetoothd.log hybridd.log; do
         [ -f "$SHARE/$f" ] && { echo "----- $f"; tail -n 40 "$SHARE/$f"; }
       done ;;
  esac
  [ -f "$SHARE/scenarios" ] && cat "$SHARE/scenarios"
  echo "BLE-VM RESULT: $verdict (advert $advert, $((SECONDS - t0)) s)"
  case "$verdict" in PASS*) return 0;; *) return 1;; esac
}

case "${1:-}" in
  prepare) prepare;;
  boot) shift; [ $# -ge 1 ] || { echo "usage: $0 boot /abs/script.sh [NAME=value...]" >&2; exit 2; }; boot "$@";;
  check) check;;
  *) echo "usage: $0 prepare | boot /abs/script.sh [NAME=value...] | check" >&2; exit 2;;
esac
