#!/bin/sh
# newer-hv.sh: a newer libvirt and QEMU than this host's, for tests/boot/test_amd_viommu.py and
# bench/iommu_vendors.py --newer. A Debian root of another release (debootstrap, kept in DIR) with that
# release's backports of QEMU and libvirt, run in namespaces of its own (mounts, process IDs, /run) so that its
# libvirtd and the host's do not meet. It shares the network (guests' port forwards on 127.0.0.1, as the
# host's) and /var/lib/nestlab (the lab's disks).
#
#   newer-hv.sh build DIR SUITE    debootstrap DIR/root once with SUITE-backports' QEMU and libvirt, and
#                                  SUITE's Python (libvirt's and lxml's bindings) and ansible-core
#   newer-hv.sh run DIR            run virtlogd and libvirtd in it until killed (SIGKILL to unshare)
#   newer-hv.sh exec DIR CMD...    run CMD inside, beside that libvirtd (exit 3 while it is not running)
set -eu
cmd="${1:?build or run}"
dir="${2:?directory}"
root="$dir/root"
here="$(cd "$(dirname "$0")" && pwd)"
# with what the hypervisor role installs (nothing left for it to install), and Ansible with an SSH client, so that
# playbooks/lab.yml can run inside with a local connection (bench/newer_labs.py)
packages="qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients ovmf python3-libvirt python3-lxml busybox-static dbus ansible-core openssh-client"

case "$cmd" in
build)
  suite="${3:?suite}"
  key="$suite-backports: $packages"
  [ "$(cat "$root/.nestlab-complete" 2>/dev/null)" = "$key" ] && exit 0
  mirror="$(sh "$here/../../../roles/base_image/files/apt-mirror.sh")"
  rm -rf "$root"; mkdir -p "$dir"
  debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; exit 1; }
  printf 'deb %s %s main\ndeb %s %s-backports main\n' "$mirror" "$suite" "$mirror" "$suite" > "$root/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2086
  unshare --mount --propagation private sh -c 'mount -t proc proc "$0/proc" && chroot "$0" sh -c \
      "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -t $1-backports $2"' \
      "$root" "$suite" "$packages" >"$dir/packages.log" 2>&1 || { tail -n 20 "$dir/packages.log" >&2; exit 1; }
  # no mount namespace per guest: libvirt cannot make one inside this root
  echo 'namespaces = []' >> "$root/etc/libvirt/qemu.conf"
  printf '%s' "$key" > "$root/.nestlab-complete"
  ;;
run)
  [ -e "$root/.nestlab-complete" ] || { echo "newer-hv.sh: no root in $dir; run 'build' first" >&2; exit 1; }
  # unshare keeps this process's ID: exec finds the namespaces through its child
  echo $$ > "$dir/run.pid"
  exec unshare --mount --pid --fork --kill-child --propagation private sh "$0" inside "$dir"
  ;;
exec)
  shift 2
  child="$(pgrep -P "$(cat "$dir/run.pid" 2>/dev/null || echo 0)" | head -n 1)" || child=""
  [ -n "$child" ] || { echo "newer-hv.sh: nothing runs in $dir; start 'run' first" >&2; exit 3; }
  exec nsenter -t "$child" -m -p chroot "$root" "$@"
  ;;
inside)
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  mkdir -p "$root/var/lib/nestlab"
  mount --bind /var/lib/nestlab "$root/var/lib/nestlab"
  # /dev is the host's: the root's kvm group takes the host's number (see tests/boot/files/hv-root.sh)
  kvm_gid="$(getent group kvm | cut -d: -f3)" || kvm_gid=""
  if [ -n "$kvm_gid" ] && [ "$(chroot "$root" getent group kvm | cut -d: -f3)" != "$kvm_gid" ]; then
    chroot "$root" groupmod --gid "$kvm_gid" kvm
  fi
  exec chroot "$root" /bin/bash -c 'mkdir -p /run/libvirt; virtlogd -d; libvirtd -d; while :; do wait; sleep 1; done'
  ;;
*)
  echo "newer-hv.sh: '$cmd' is not valid; give build, run or exec" >&2; exit 2 ;;
esac
