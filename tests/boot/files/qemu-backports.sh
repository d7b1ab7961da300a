#!/bin/sh
# qemu-backports.sh DIR: QEMU from the distribution's backports, unpacked into DIR (not installed:
# the host's own QEMU stays), for tests of labs whose devices the host's QEMU lacks (igb: QEMU 8.0).
# The mirror is the one this host's apt configuration names. Prints the qemu-system-x86_64 path.
set -eu
dir="${1:?directory}"
bin="$dir/root/usr/bin/qemu-system-x86_64"
if [ ! -x "$bin" ]; then
  here="$(cd "$(dirname "$0")" && pwd)"
  mirror="$(sh "$here/../../../roles/base_image/files/apt-mirror.sh")"
  release="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  rm -rf "$dir"; mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/apt/sources" "$dir/debs"
  printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$release" > "$dir/apt/sources/backports.sources"
  opts="-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=$dir/apt/sources -o Dir::State::Lists=$dir/apt/lists -o Dir::Cache=$dir/apt/cache"
  apt-get $opts -q update >&2
  (cd "$dir/debs" && apt-get $opts -q download qemu-system-x86/"$release"-backports qemu-system-common/"$release"-backports \
    qemu-system-data/"$release"-backports >&2)
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
fi
"$bin" -version >&2
echo "$bin"
