#!/bin/sh
# Print the first http(s) mirror of the Debian archive that this host's apt configuration names
# (deb822 .sources files first, then one-line sources.list entries). Security mirrors are skipped.
set -eu
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  awk 'BEGIN{RS=""} /Types:[^\n]*deb/ && !/Enabled: *no/ {
         if (match($0, /URIs:[^\n]*/)) { n = split(substr($0, RSTART+5, RLENGTH-5), u, " ");
           for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\// && u[i] !~ /security/) { print u[i]; exit } } }' "$f"
done | head -n 1 | grep . && exit 0
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -r "$f" ] || continue
  awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\// && $i !~ /security/) { print $i; exit } }' "$f"
done | head -n 1 | grep . && exit 0
echo "no Debian mirror found in this host's apt configuration; set base_image_mirror" >&2
exit 1
