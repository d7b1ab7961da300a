#!/usr/bin/env bash
# Prepare this machine for nestlab.pci: Debian packages for libvirt/QEMU, a Python virtual
# environment with the collection's requirements, and running libvirt daemons.
# Idempotent: a second run installs nothing and starts nothing that already runs.
#
#   bash scripts/setup.sh          the whole set-up; prints the virtual environment's path
#   bash scripts/setup.sh --docs   only what scripts/docs.sh needs: Python packages, no system packages,
#                                  no libvirt (the lab's environment when it is there, else one of its own)
#
# Environment:
#   NESTLAB_VENV       where the virtual environment lives (default: <checkout>/.venv)
#   NESTLAB_DOCS_VENV  the documentation's own one, made by --docs when there is no lab environment
#                      (default: <checkout>/.venv-docs)
#   NESTLAB_PYTHON     Python used to create them (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NESTLAB_VENV:-$ROOT/.venv}"
PYTHON="${NESTLAB_PYTHON:-python3}"
log() { printf 'nestlab setup: %s\n' "$*" >&2; }

# whether the virtual environment at $1 was made from requirements file $2 as it is now
env_current() {
  [ -x "$1/bin/python" ] && [ "$(cat "$1/.nestlab-requirements.sha256" 2>/dev/null)" = "$(sha256sum "$2" | cut -d' ' -f1)" ]
}

# a virtual environment at $1 with the packages of requirements file $2 (made again when the file changes)
python_env() {
  local venv="$1" req="$2"
  if ! env_current "$venv" "$req"; then
    log "creating the virtual environment $venv"
    "$PYTHON" -m venv "$venv" >&2 || { log "$PYTHON cannot make a virtual environment (Debian: install python3-venv)"; exit 1; }
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -r "$req" >&2
    sha256sum "$req" | cut -d' ' -f1 > "$venv/.nestlab-requirements.sha256"
  fi
}

if [ "${1:-}" = "--docs" ]; then
  if env_current "$VENV" "$ROOT/requirements.txt"; then
    echo "$VENV"
  else
    DOCS_VENV="${NESTLAB_DOCS_VENV:-$ROOT/.venv-docs}"
    python_env "$DOCS_VENV" "$ROOT/scripts/docs-requirements.txt"
    echo "$DOCS_VENV"
  fi
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- Debian packages --------------------------------------------------------
# (virtinst: virt-xml, which bench/topology_vs_virt_xml.py compares lab_topology with; hwloc-nox: lstopo,
# which converts hwloc's XML v1 for the twin tests)
DEB_PACKAGES=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
              busybox-static gcc python3-dev dbus debootstrap fdisk e2fsprogs openssh-client virtinst hwloc-nox)
install_debian() {
  local missing=()
  for pkg in "${DEB_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}
if command -v dpkg-query >/dev/null 2>&1; then
  install_debian ${NESTLAB_EXTRA_DEBS:-}
elif command -v dnf >/dev/null 2>&1; then
  $SUDO dnf install -y qemu-kvm qemu-img libvirt-daemon-kvm libvirt-client libvirt-devel pkgconf-pkg-config \
    busybox gcc python3-devel virt-install >&2
else
  log "unsupported distribution: install libvirt, QEMU and busybox yourself"; exit 1
fi

# --- Python virtual environment --------------------------------------------
python_env "$VENV" "$ROOT/requirements.txt"

# --- /dev/kvm ownership -----------------------------------------------------
# Without udev, /dev/kvm may be root:root 0600. libvirt then decides on every lookup that
# "KVM was enabled when probing, but it is not available now" and probes QEMU again (~4 s
# each time), which makes starting a domain with NICs take minutes. Give it the usual
# root:kvm 0660 that udev would have given it. Whether KVM really runs guests is decided
# separately (CPU flags and a real probe), never from this device.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
  log "giving /dev/kvm the usual root:kvm 0660 ownership (no udev here)"
  $SUDO chgrp kvm /dev/kvm && $SUDO chmod 0660 /dev/kvm
fi

# --- libvirt daemons ----------------------------------------------------------
answers() { "$VENV/bin/python" -c "import libvirt; libvirt.open('qemu:///system').close()" 2>/dev/null; }
# only daemons in this shell's PID and mount namespaces: a container's libvirtd is not this host's
OURS="--ns $$ --nslist pid,mnt"
if ! answers; then
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    log "starting libvirtd through systemd"
    $SUDO systemctl start libvirtd >&2
  else
    # a daemon that is still shutting down would make a new one exit at once: let it go first
    for _ in $(seq 1 50); do pgrep $OURS -x libvirtd >/dev/null || break; answers && break; sleep 0.2; done
    if ! pgrep $OURS -x virtlogd >/dev/null; then
      log "systemd is not PID 1: starting virtlogd directly"
      $SUDO virtlogd -d
    fi
    if ! answers && ! pgrep $OURS -x libvirtd >/dev/null; then
      log "systemd is not PID 1: starting libvirtd directly"
      $SUDO libvirtd -d
    fi
  fi
  for _ in $(seq 1 100); do answers && break; sleep 0.2; done
  answers || { log "libvirtd does not answer on qemu:///system"; exit 1; }
fi

echo "$VENV"
