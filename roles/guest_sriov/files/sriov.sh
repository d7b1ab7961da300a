#!/bin/sh
# sriov.sh [CONF]: give each physical function named in CONF (lines "PF_ADDRESS VF_COUNT") that
# many virtual functions, and bring the network interface of each PF that has VFs up (link only, no
# address): a VF's driver resets it through its PF's mailbox, which the PF's driver answers only
# while its interface is up (igbvf: "PF still in reset state. Is the PF interface up?"), and until
# then the VF has no link and sends nothing. A count can only change through 0, so a PF that has
# another non-zero count is set to 0 first. Prints "set PF: OLD -> NEW" for each change, "up PF: IF"
# for each interface brought up, and "error PF: ..." when a PF is missing or has no SR-IOV; exit
# status 1 then. Idempotent.
set -eu
conf="${1:-/etc/nestlab/sriov.conf}"
[ -r "$conf" ] || exit 0
rc=0
while read -r pf count; do
  case "$pf" in ''|\#*) continue ;; esac
  d="/sys/bus/pci/devices/$pf"
  if [ ! -e "$d/sriov_numvfs" ]; then
    echo "error $pf: $( [ -e "$d" ] && echo "no SR-IOV (no sriov_numvfs)" || echo "no such PCI device")"; rc=1; continue
  fi
  total=$(cat "$d/sriov_totalvfs")
  if [ "$count" -gt "$total" ]; then echo "error $pf: $count VFs asked for, it offers $total"; rc=1; continue; fi
  old=$(cat "$d/sriov_numvfs")
  if [ "$old" != "$count" ]; then
    [ "$old" = 0 ] || echo 0 > "$d/sriov_numvfs"
    if echo "$count" > "$d/sriov_numvfs"; then echo "set $pf: $old -> $count"; else echo "error $pf: writing $count failed"; rc=1; fi
  fi
  [ "$count" -gt 0 ] || continue
  for n in "$d"/net/*; do
    [ -e "$n/flags" ] || continue
    # IFF_UP is bit 0 of the interface's flags
    [ $(( $(cat "$n/flags") & 1 )) -eq 1 ] && continue
    if ip link set dev "${n##*/}" up; then echo "up $pf: ${n##*/}"; else echo "error $pf: ${n##*/} did not come up"; rc=1; fi
  done
done < "$conf"
exit $rc
