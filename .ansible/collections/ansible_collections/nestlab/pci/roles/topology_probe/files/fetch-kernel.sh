#!/bin/sh
# fetch-kernel.sh PACKAGE DEST: put the vmlinuz of PACKAGE (or of the kernel a meta-package
# depends on) at DEST, without installing the package. Uses the host's own apt sources.
set -eu
pkg="$1"
dest="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
resolve() {
  apt-cache depends "$pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
real="$(resolve)"
if [ -z "$real" ] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
  apt-get update -q >&2
  real="$(resolve)"
fi
[ -n "$real" ] || real="$pkg"
apt-get download "$real" >&2
deb="$(ls ./*.deb | head -n 1)"
dpkg-deb --fsys-tarfile "$deb" | tar -x --wildcards './boot/vmlinuz-*'
kernel="$(ls ./boot/vmlinuz-* | head -n 1)"
[ -s "$kernel" ] || { echo "no vmlinuz in $deb" >&2; exit 1; }
install -m 0644 "$kernel" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "$(basename "$kernel") from $real"
