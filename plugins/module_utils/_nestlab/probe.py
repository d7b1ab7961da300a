# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The probe boot: a busybox initramfs that reports what the guest sees on its serial console.

Pure parts (the init script, a newc cpio writer, the report parser) and the clone of a lab
domain into a transient probe domain that boots a kernel directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import io
import os
import re
import struct

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import parse_cpuset
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import E

BEGIN = "NESTLAB-REPORT-BEGIN"
END = "NESTLAB-REPORT-END"

INIT_SCRIPT = r"""#!/bin/busybox sh
# Under nested TCG every fork and exec costs about 0.1 s: the report is read with shell built-ins
# (read, cd -P, $PWD). Only the node CPU lists need cat: busybox read gets nothing from them.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
# kernel modules bundled in load order (drivers of assigned devices); insmod returns after the
# module's probes, asynchronous ones included
if [ -s /etc/nestlab-modules ]; then
  while read -r m; do insmod "/lib/modules/$m" || echo "NL insmod-failed $m"; done < /etc/nestlab-modules
fi
echo "%(begin)s"
read -r line < /proc/cmdline; echo "NL cmdline $line"
for n in /sys/devices/system/node/node[0-9]*; do
  [ -d "$n" ] || continue
  mem=; while read -r dummy dummy key value dummy; do [ "$key" = MemTotal: ] && mem=$value; done < "$n/meminfo"
  echo "NL node ${n##*node} cpus $(cat "$n/cpulist") mem_kib $mem"
done
for b in /sys/class/pci_bus/*; do echo "NL bus ${b##*/}"; done
for d in /sys/bus/pci/devices/*; do
  read -r vendor < "$d/vendor"; read -r device < "$d/device"; read -r class < "$d/class"
  read -r node < "$d/numa_node"
  g=-; [ -L "$d/iommu_group" ] && cd -P "$d/iommu_group" && g=${PWD##*/}
  drv=-; [ -L "$d/driver" ] && cd -P "$d/driver" && drv=${PWD##*/}
  cd /
  echo "NL pci ${d##*/} $vendor $device $class $node $g $drv"
done
[ -e /dev/kvm ] && echo "NL kvm yes" || echo "NL kvm no"
dmesg | grep -E 'DMAR|IOMMU|iommu|AMD-Vi|virtio-iommu' | sed 's/^\[[ 0-9.]*\] //; s/^/NL dmesg /'
echo "%(end)s"
poweroff -f
""" % {"begin": BEGIN, "end": END}


def _cpio_entry(out, name, mode, data=b"", ino=1):
    name_bytes = name.encode("utf-8") + b"\0"
    header = "070701" + "".join("%08X" % value for value in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_bytes), 0))
    out.write(header.encode("ascii"))
    out.write(name_bytes)
    out.write(b"\0" * ((4 - (110 + len(name_bytes)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def build_initramfs(busybox_path, init_script=INIT_SCRIPT, modules=()):
    """A gzip'd newc cpio with /init, a static busybox and optionally kernel modules.

    ``modules``: [(file name, bytes)] in load order (see ``resolve_modules``).
    Deterministic bytes for the same inputs.
    """
    with open(busybox_path, "rb") as handle:
        busybox = handle.read()
    raw = io.BytesIO()
    entries = [("bin", 0o040755, b""), ("dev", 0o040755, b""), ("proc", 0o040755, b""),
               ("sys", 0o040755, b""), ("bin/busybox", 0o100755, busybox),
               ("init", 0o100755, init_script.encode("utf-8"))]
    if modules:
        entries += [("etc", 0o040755, b""), ("lib", 0o040755, b""), ("lib/modules", 0o040755, b"")]
        entries += [("lib/modules/" + name, 0o100644, data) for name, data in modules]
        entries.append(("etc/nestlab-modules", 0o100644,
                        "".join(name + "\n" for name, dummy in modules).encode("utf-8")))
    for ino, (name, mode, data) in enumerate(entries, start=1):
        _cpio_entry(raw, name, mode, data, ino)
    _cpio_entry(raw, "TRAILER!!!", 0, b"", 0)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _module_name(path):
    base = os.path.basename(path)
    for suffix in (".xz", ".zst", ".gz"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    if base.endswith(".ko"):
        base = base[:-3]
    return base.replace("-", "_")


def resolve_modules(names, modules_dep_text, builtin_text=""):
    """Kernel module names -> their .ko paths (relative to /lib/modules/<release>), dependencies first.

    Built-in modules need nothing. Raises ValueError naming a module this kernel does not have.
    """
    deps = {}
    for line in modules_dep_text.splitlines():
        if ":" not in line:
            continue
        path, dummy, rest = line.partition(":")
        deps[_module_name(path)] = (path.strip(), rest.split())
    builtin = set(_module_name(line.strip()) for line in builtin_text.splitlines() if line.strip())
    order, seen = [], set()

    def visit(name, stack):
        key = name.replace("-", "_")
        if key in seen or key in builtin:
            return
        if key not in deps:
            raise ValueError("kernel module %s is not in this kernel's modules.dep (nor built in)" % name)
        if key in stack:
            return
        path, needs = deps[key]
        for dep in needs:
            visit(_module_name(dep), stack + (key,))
        seen.add(key)
        order.append(path)

    for name in names:
        visit(name, ())
    return order


def read_module(path):
    """The bytes of a module file as busybox insmod takes them (xz and gzip files are unpacked)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if path.endswith(".xz"):
        import lzma
        data = lzma.decompress(data)
    elif path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".zst"):
        raise ValueError("%s is zstd-compressed; this Python cannot unpack it" % path)
    return data


def parse_report(text):
    """Console text -> facts (see guestview). Raises ValueError when the report is incomplete."""
    if BEGIN not in text or END not in text:
        raise ValueError("the probe's report is incomplete (no %s/%s markers)" % (BEGIN, END))
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    facts = {"nodes": {}, "buses": [], "pci": {}, "dmesg": [], "cmdline": "", "kvm": False}
    for line in body.splitlines():
        line = line.strip("\r")
        if not line.startswith("NL "):
            continue
        kind, dummy, rest = line[3:].partition(" ")
        if kind == "cmdline":
            facts["cmdline"] = rest
        elif kind == "node":
            match = re.match(r"^(\d+) cpus (\S*) mem_kib (\d*)", rest)
            if match:
                cpus = parse_cpuset(match.group(2)) if match.group(2) else []
                facts["nodes"][int(match.group(1))] = {
                    "cpus": cpus, "memory_kib": int(match.group(3)) if match.group(3) else None}
        elif kind == "bus":
            facts["buses"].append(rest.strip())
        elif kind == "pci":
            parts = rest.split()
            if len(parts) == 7:
                addr, vendor, device, klass, numa, group, driver = parts
                facts["pci"][addr] = {
                    "vendor": vendor.replace("0x", ""), "device": device.replace("0x", ""),
                    "class": klass.replace("0x", ""), "numa_node": int(numa),
                    "iommu_group": None if group == "-" else int(group),
                    "driver": None if driver == "-" else driver,
                }
        elif kind == "insmod-failed":
            facts.setdefault("insmod_failed", []).append(rest.strip())
        elif kind == "kvm":
            facts["kvm"] = rest.strip() == "yes"
        elif kind == "dmesg":
            facts["dmesg"].append(rest)
    return facts


def probe_domain(lab, name, kernel, initrd, console, cmdline):
    """Turn a copy of the lab domain into a diskless probe that boots ``kernel`` directly."""
    root = lab.root
    root.find("name").text = name
    for tag in ("uuid", "metadata", "description", "title"):
        for elem in root.findall(tag):
            root.remove(elem)
    # QEMU pass-through arguments (management NIC port forwards) belong to the lab, not the probe
    for elem in list(root):
        if isinstance(elem.tag, str) and elem.tag.startswith("{") and elem.tag.endswith("}commandline"):
            root.remove(elem)
    os_elem = root.find("os")
    for child in list(os_elem):
        if child.tag != "type":
            os_elem.remove(child)
    os_elem.append(E("kernel", text=kernel))
    os_elem.append(E("initrd", text=initrd))
    os_elem.append(E("cmdline", text=cmdline))
    for tag, value in (("on_poweroff", "destroy"), ("on_reboot", "destroy"), ("on_crash", "destroy")):
        elem = root.find(tag)
        if elem is None:
            elem = E(tag)
            root.find("devices").addprevious(elem)
        elem.text = value
    devices = root.find("devices")
    for elem in list(devices):
        drop = elem.tag in ("disk", "serial", "console", "hostdev", "filesystem", "channel", "graphics",
                            "video", "redirdev", "smartcard", "tpm", "rng")
        if elem.tag == "interface" and elem.get("type") != "user":
            drop = True
        if drop:
            devices.remove(elem)
    lab.insert_device(E("serial", {"type": "file"}, [E("source", {"path": console}), E("target", {"port": "0"})]))
    return lab


def kernel_cmdline(iommu):
    # cryptomgr.notests: the crypto self-tests are seconds of a TCG boot and prove nothing here.
    # no_timer_check: the kernel's check that the timer interrupt arrives through the IO-APIC counts on a vCPU
    # that runs while it waits; on a busy host a TCG vCPU may not, and with interrupt remapping the kernel then
    # panics ("timer doesn't work through Interrupt-remapped IO-APIC": a CI run of the asymmetric probe)
    args = ["console=ttyS0", "panic=-1", "quiet", "loglevel=3", "cryptomgr.notests", "no_timer_check"]
    if iommu and iommu.get("model") == "intel":
        args += ["intel_iommu=on", "iommu=pt"]
    elif iommu and iommu.get("model") == "amd":
        args += ["iommu=pt"]       # the kernel turns AMD-Vi on by itself
    return " ".join(args)


_COMPRESSED = ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip"), (b"BZh", "bzip2"))
_XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_note(elf):
    """True when ``elf`` (a 64-bit little-endian ELF image) carries the Xen PVH entry note that QEMU
    needs to boot an uncompressed kernel directly."""
    if elf[:4] != b"\x7fELF" or elf[4:5] != b"\x02" or elf[5:6] != b"\x01":
        return False
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        base = phoff + index * phentsize
        p_type = struct.unpack_from("<I", elf, base)[0]
        if p_type != 4:  # PT_NOTE
            continue
        offset, filesz = struct.unpack_from("<Q", elf, base + 0x08)[0], struct.unpack_from("<Q", elf, base + 0x20)[0]
        pos, end = offset, offset + filesz
        while pos + 12 <= end:
            namesz, descsz, n_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz]
            if name == b"Xen\x00" and n_type == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def uncompressed_kernel(bzimage):
    """(vmlinux bytes, None) from a bzImage whose payload is xz, gzip or bzip2 and which QEMU can boot
    through its PVH entry; (None, why not) otherwise."""
    import bz2
    import lzma
    import zlib

    for magic, kind in _COMPRESSED:
        start = bzimage.find(magic)
        while start != -1:
            try:
                if kind == "xz":
                    out = lzma.LZMADecompressor().decompress(bzimage[start:])
                elif kind == "gzip":
                    out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bzimage[start:])
                else:
                    out = bz2.BZ2Decompressor().decompress(bzimage[start:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError):
                out = b""
            if out[:4] == b"\x7fELF":
                if has_pvh_note(out):
                    return out, None
                return None, "its uncompressed image has no PVH entry note (a kernel built without CONFIG_PVH)"
            start = bzimage.find(magic, start + 1)
    return None, "no xz, gzip or bzip2 payload with an ELF image inside was found"
