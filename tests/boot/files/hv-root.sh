#!/bin/sh
# hv-root.sh: a second hypervisor on this machine for the tests. A Debian root (debootstrap, kept
# in CACHE) runs in namespaces of its own: its own mounts (an overlay on the cached root, so every
# run starts from the same clean root and leaves it clean), its own process IDs (its libvirtd and
# virtlogd cannot be confused with the host's, and they all die with it) and its own /run (its
# libvirtd has sockets of its own). It shares the network, so its sshd listens on 127.0.0.1 and its
# guests' port forwards are reachable like the host's. The host's base image directory is
# bind-mounted, and so is an apt archive cache, so that packages are downloaded once.
# Ansible reaches it as a remote hypervisor; the hypervisor role installs into it whatever libvirt
# and QEMU it is asked for, and the host's own stay as they are.
#
# The cached root already has the release's own libvirt and QEMU (the hypervisor role's package list
# for Debian, installed as the role installs them): the role finds them, and what a test proves is what
# comes after (the backports' versions). The cache is made again when the release or that list changes.
#
#   hv-root.sh build CACHE                           debootstrap CACHE/base once, with the packages
#   hv-root.sh run CACHE RUN PORT KEYS HOST_KEY      run it until killed (RUN: this run's files)
set -eu
cmd="${1:?build or run}"
cache="${2:?cache directory}"
here="$(cd "$(dirname "$0")" && pwd)"

case "$cmd" in
build)
  release="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  packages="$(sed -n 's/^  - //p' "$here/../../../roles/hypervisor/vars/Debian.yml" | tr '\n' ' ')"
  key="$release: $packages"
  if [ "$(cat "$cache/base/.nestlab-complete" 2>/dev/null)" != "$key" ]; then
    mirror="$(sh "$here/../../../roles/base_image/files/apt-mirror.sh")"
    rm -rf "$cache/base"; mkdir -p "$cache/apt-archives/partial"
    debootstrap --variant=minbase \
      --include=openssh-server,python3,python3-apt,procps,ca-certificates,iproute2,debian-archive-keyring \
      "$release" "$cache/base" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    rm -f "$cache/base/etc/ssh/ssh_host_"*
    # the release's libvirt and QEMU, in a mount namespace of its own (its /proc, the apt archive
    # cache), with the host's kvm group number (see 'inside') and no service started by their scripts
    kvm_gid="$(getent group kvm | cut -d: -f3)" || kvm_gid=""
    [ -z "$kvm_gid" ] || chroot "$cache/base" groupadd --system --gid "$kvm_gid" kvm
    printf '#!/bin/sh\nexit 101\n' > "$cache/base/usr/sbin/policy-rc.d"
    chmod 0755 "$cache/base/usr/sbin/policy-rc.d"
    # shellcheck disable=SC2086
    unshare --mount --propagation private sh -c '
      mount -t proc proc "$1/proc" && mount --bind "$2" "$1/var/cache/apt/archives" && shift 2 &&
      chroot "$0" sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \"\$@\"" sh "$@"' \
      "$cache/base" "$cache/base" "$cache/apt-archives" $packages >"$cache/packages.log" 2>&1 \
      || { tail -n 20 "$cache/packages.log" >&2; exit 1; }
    rm -f "$cache/base/usr/sbin/policy-rc.d"
    printf '%s' "$key" > "$cache/base/.nestlab-complete"
  fi
  ;;
run)
  [ -e "$cache/base/.nestlab-complete" ] || { echo "hv-root.sh: no root in $cache; run 'build' first" >&2; exit 1; }
  shift 2
  exec unshare --mount --pid --fork --kill-child --propagation private sh "$0" inside "$cache" "$@"
  ;;
inside)
  # PID 1 of the new namespaces: build the root's mounts, then keep sshd running in it. It ends
  # with a SIGKILL to unshare (which ignores SIGTERM), and everything in the namespaces with it.
  run="${3:?run directory}"; port="${4:?port}"; keys="${5:?authorized keys}"; hostkey="${6:?host key}"
  root="$run/root"
  mkdir -p "$run/upper" "$run/work" "$root" "$cache/apt-archives/partial"
  mount -t overlay overlay -o "lowerdir=$cache/base,upperdir=$run/upper,workdir=$run/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mkdir -p /var/lib/nestlab/images "$root/var/lib/nestlab/images" "$root/run/sshd" "$root/root/.ssh"
  mount --bind /var/lib/nestlab/images "$root/var/lib/nestlab/images"
  mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # /dev is the host's: the root's kvm group gets the host's number, or its packages and its
  # hypervisor role would give the host's /dev/kvm a group the host does not know
  kvm_gid="$(getent group kvm | cut -d: -f3)" || kvm_gid=""
  if [ -n "$kvm_gid" ] && ! chroot "$root" getent group kvm >/dev/null; then
    chroot "$root" groupadd --system --gid "$kvm_gid" kvm
  elif [ -n "$kvm_gid" ] && [ "$(chroot "$root" getent group kvm | cut -d: -f3)" != "$kvm_gid" ]; then
    chroot "$root" groupmod --gid "$kvm_gid" kvm
  fi
  install -m 0600 "$keys" "$root/root/.ssh/authorized_keys"
  install -m 0600 "$hostkey" "$root/etc/ssh/nestlab_host_key"
  printf 'ListenAddress 127.0.0.1\nPort %s\nHostKey /etc/ssh/nestlab_host_key\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nPidFile /run/sshd.pid\n' \
    "$port" > "$root/etc/ssh/nestlab_sshd_config"
  # bash as PID 1 reaps the daemons that libvirt and others leave to it
  exec chroot "$root" /bin/bash -c '/usr/sbin/sshd -D -e -f /etc/ssh/nestlab_sshd_config & while :; do wait; sleep 1; done'
  ;;
*)
  echo "hv-root.sh: '$cmd' is not valid; give build or run" >&2; exit 2 ;;
esac
