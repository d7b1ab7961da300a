#!/bin/sh
# hugepages.sh [CONF]: set the huge pages per NUMA node named in CONF (lines "NODE SIZE_KB COUNT").
# Prints "set node N: OLD -> NEW" for each change, "short node N: WANT, got HAVE" when the
# kernel could not find enough free memory, and "have N COUNT" for every node afterwards (-1: no
# such pages). Exit status 1 when any node is short. Idempotent.
set -eu
conf="${1:-/etc/nestlab/hugepages.conf}"
[ -r "$conf" ] || exit 0
rc=0
while read -r node size count; do
  case "$node" in ''|\#*) continue ;; esac
  f="/sys/devices/system/node/node$node/hugepages/hugepages-${size}kB/nr_hugepages"
  if [ ! -w "$f" ]; then
    echo "short node $node: no ${size} kB pages on this node ($f)"; echo "have $node -1"; rc=1; continue
  fi
  old=$(cat "$f")
  if [ "$old" != "$count" ]; then
    echo "$count" > "$f"
    new=$(cat "$f")
    echo "set node $node: $old -> $new"
    if [ "$new" != "$count" ]; then echo "short node $node: $count wanted, got $new"; rc=1; fi
  fi
  echo "have $node $(cat "$f")"
done < "$conf"
exit $rc
