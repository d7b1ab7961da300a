#!/bin/sh
# start-daemons.sh [restart]: start virtlogd and libvirtd where no init system does (with
# "restart", stop running ones first, as after an upgrade); print what was done.
set -eu
answers() { virsh -q -c qemu:///system version >/dev/null 2>&1; }
# only daemons in this shell's PID and mount namespaces: a container's libvirtd is not this host's
OURS="--ns $$ --nslist pid,mnt"
if [ "${1:-}" = restart ]; then
  for daemon in libvirtd virtlogd; do
    pkill $OURS -x "$daemon" || true
    i=0; while pgrep $OURS -x "$daemon" >/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
  done
fi
if answers; then echo "virtlogd and libvirtd already running"; exit 0; fi
# a daemon that is still shutting down would make a new one exit at once
i=0; while pgrep $OURS -x libvirtd >/dev/null && [ $i -lt 50 ]; do answers && break; sleep 0.2; i=$((i+1)); done
done_list=""
if ! pgrep $OURS -x virtlogd >/dev/null; then virtlogd -d; done_list="$done_list virtlogd"; fi
if ! answers && ! pgrep $OURS -x libvirtd >/dev/null; then libvirtd -d; done_list="$done_list libvirtd"; fi
i=0; while ! answers && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
answers || { echo "libvirtd does not answer on qemu:///system" >&2; exit 1; }
echo "started directly:${done_list:- nothing (libvirtd came up by itself)}"
