# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KVM or TCG: decided by CPU flags and, where they allow KVM, by booting a test guest under KVM.

A /dev/kvm that exists proves nothing: on some hosts it is a paravirtual device on which
firmware runs but a Linux guest hangs. Only a guest that boots and reports counts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import tempfile
import time

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import build_initramfs
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import host_cpu_flags

KVM_MARKER = "NESTLAB-KVM-GUEST-RAN"
KVM_INIT = """#!/bin/busybox sh
/bin/busybox echo %s
/bin/busybox poweroff -f
""" % KVM_MARKER
NESTED_MODULES = {"vmx": "kvm_intel", "svm": "kvm_amd"}


def nested_state(sysfs="/sys/module"):
    """{'module': 'kvm_intel', 'loaded': True, 'nested': True} for the vendor's KVM module."""
    for module in ("kvm_intel", "kvm_amd"):
        path = os.path.join(sysfs, module, "parameters", "nested")
        if os.path.exists(path):
            with open(path) as handle:
                value = handle.read().strip()
            return {"module": module, "loaded": True, "nested": value in ("Y", "y", "1")}
    return {"module": None, "loaded": False, "nested": False}


def boot_under_kvm(emulator, kernel, busybox, timeout):
    """True when a Linux guest boots under KVM and reports within ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="nestlab-kvm-probe-") as work:
        initrd = os.path.join(work, "initrd.gz")
        with open(initrd, "wb") as handle:
            handle.write(build_initramfs(busybox, KVM_INIT))
        console = os.path.join(work, "console.log")
        cmd = [emulator, "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256", "-smp", "1",
               "-nodefaults", "-display", "none", "-no-reboot", "-serial", "file:" + console,
               "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet"]
        started = time.time()
        detail = "no report within %d s" % timeout
        try:
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
                                  check=False, universal_newlines=True)
            if proc.returncode:
                lines = [l for l in proc.stderr.splitlines() if l.strip()]
                detail = "QEMU exited with %d: %s" % (proc.returncode, lines[0] if lines else "no message")
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.time() - started
        try:
            with open(console, "rb") as handle:
                ran = KVM_MARKER.encode() in handle.read()
        except IOError:
            ran = False
    return ran, round(elapsed, 1), detail


def cpu_model_name(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except IOError:
        pass
    return ""


def decide(emulator=None, kernel=None, busybox=None, timeout=60, cpuinfo="/proc/cpuinfo", dev="/dev/kvm",
           emulated_cpu_ok=False):
    """{'accel': 'kvm'|'tcg', 'reason': ..., 'cpu_flag': 'vmx'|'svm'|None, 'verified': bool}."""
    flags = host_cpu_flags(cpuinfo)
    flag = "vmx" if "vmx" in flags else "svm" if "svm" in flags else None
    model = cpu_model_name(cpuinfo)
    out = {"cpu_flag": flag, "dev_kvm": os.path.exists(dev), "verified": False,
           "nested_module": NESTED_MODULES.get(flag), "cpu_model": model}
    if flag is None:
        out.update(accel="tcg", reason="the CPU flags show no vmx/svm: no hardware virtualization")
        return out
    if model.startswith("QEMU TCG CPU") and not emulated_cpu_ok:
        # QEMU's TCG emulates SVM well enough for a short test boot, but a nested guest under KVM
        # on it has hung every vCPU of the host here (docs/design.md): not worth a lab's time
        out.update(accel="tcg", reason="the CPU is QEMU's TCG emulation (%s): its %s boots a test guest, but nested "
                                       "guests under KVM on it can hang this host; TCG is used (emulated_cpu_ok "
                                       "overrides)" % (model, flag))
        return out
    if not out["dev_kvm"]:
        out.update(accel="tcg", reason="the CPU has %s but there is no %s (is the %s module loaded?)"
                   % (flag, dev, NESTED_MODULES[flag]))
        return out
    if not (emulator and kernel and busybox):
        out.update(accel="kvm", reason="the CPU has %s and %s exists (not verified by a test boot)" % (flag, dev))
        return out
    ran, seconds, detail = boot_under_kvm(emulator, kernel, busybox, timeout)
    out["probe_seconds"] = seconds
    if ran:
        out.update(accel="kvm", verified=True, reason="a test guest booted under KVM in %.1f s" % seconds)
    else:
        out.update(accel="tcg", reason="the CPU has %s and %s exists, but a test guest did not boot under KVM "
                                       "(%s): this KVM does not run guests" % (flag, dev, detail))
    return out
