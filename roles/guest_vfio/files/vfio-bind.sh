#!/bin/sh
# vfio-bind.sh [CONF]: bind the PCI devices named in CONF (one per line: an address such as
# 0000:df:00.0, or vendor:device such as 8086:10d3) to vfio-pci. Prints "bound ADDRESS" for each
# device it moved and "missing SELECTOR" for selectors that match nothing. Idempotent.
set -eu
conf="${1:-/etc/nestlab/vfio-bind.conf}"
[ -r "$conf" ] || exit 0
modprobe vfio-pci 2>/dev/null || true
bind() {
  dev="/sys/bus/pci/devices/$1"
  current=""
  [ -L "$dev/driver" ] && current="$(basename "$(readlink "$dev/driver")")"
  [ "$current" = vfio-pci ] && return 0
  echo vfio-pci > "$dev/driver_override"
  [ -n "$current" ] && echo "$1" > "$dev/driver/unbind"
  echo "$1" > /sys/bus/pci/drivers_probe
  echo "bound $1 (was ${current:-unbound})"
}
grep -v '^[[:space:]]*\(#\|$\)' "$conf" | while read -r selector; do
  found=""
  case "$selector" in
    *:*:*.*)
      [ -d "/sys/bus/pci/devices/$selector" ] && { bind "$selector"; found=1; } ;;
    *)
      want_vendor="0x${selector%%:*}"; want_device="0x${selector##*:}"
      for dev in /sys/bus/pci/devices/*; do
        [ "$(cat "$dev/vendor")" = "$want_vendor" ] && [ "$(cat "$dev/device")" = "$want_device" ] || continue
        bind "$(basename "$dev")"; found=1
      done ;;
  esac
  [ -n "$found" ] || echo "missing $selector"
done
