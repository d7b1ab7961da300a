#!/bin/sh
# Copy a user's cloud image into the image cache as qcow2, grown to SIZE_GB when it is smaller.
# The copy appears at OUT only when complete.
# Environment: SRC FORMAT SIZE_GB OUT
set -eu
: "${SRC:?}" "${FORMAT:?}" "${SIZE_GB:?}" "${OUT:?}"
rm -f "$OUT.tmp"
trap 'rm -f "$OUT.tmp"' EXIT
qemu-img convert -f "$FORMAT" -O qcow2 "$SRC" "$OUT.tmp"
have=$(qemu-img info --output=json "$OUT.tmp" | python3 -c 'import json, sys; print(json.load(sys.stdin)["virtual-size"])')
want=$(( SIZE_GB * 1024 * 1024 * 1024 ))
if [ "$have" -lt "$want" ]; then
  qemu-img resize -q "$OUT.tmp" "$want"
fi
mv "$OUT.tmp" "$OUT"
trap - EXIT
