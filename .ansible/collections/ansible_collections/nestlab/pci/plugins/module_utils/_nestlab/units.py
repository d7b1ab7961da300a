# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizes, CPU sets and PCI addresses: parsing and formatting, no I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# libvirt's scaled-integer units, as virsh and the domain XML accept them.
_UNITS = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024 ** 2, "mib": 1024 ** 2, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
    "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4,
}
SIZE_HELP = "give a whole number of MiB or a size such as '2GiB', '512MiB', '4096KiB'"


def parse_size_bytes(value, default_unit="mib"):
    """Return bytes for 2048 (MiB), '2GiB', '2 G', '512MiB'. Raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a size")
    if isinstance(value, int):
        return value * _UNITS[default_unit]
    if not isinstance(value, str):
        raise ValueError("not a size")
    match = re.match(r"^\s*([0-9]+)\s*([A-Za-z]*)\s*$", value)
    if not match:
        raise ValueError("not a size")
    unit = (match.group(2) or default_unit).lower()
    if unit not in _UNITS:
        raise ValueError("unknown unit")
    return int(match.group(1)) * _UNITS[unit]


def unit_factor(unit):
    """Factor of a libvirt unit attribute (``None`` means KiB, as in <memory>)."""
    return _UNITS[(unit or "KiB").lower()]


def parse_cpuset(text):
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]. Raise ValueError when malformed."""
    cpus = []
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty CPU set")
    for part in text.split(","):
        part = part.strip()
        match = re.match(r"^([0-9]+)(?:-([0-9]+))?$", part)
        if not match:
            raise ValueError("malformed CPU set part %r" % part)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError("descending range %r" % part)
        cpus.extend(range(first, last + 1))
    if len(set(cpus)) != len(cpus):
        raise ValueError("a CPU appears twice")
    return sorted(cpus)


def format_cpuset(cpus):
    """[0, 1, 2, 3, 8] -> '0-3,8' (libvirt's own compact form)."""
    parts = []
    cpus = sorted(cpus)
    start = prev = None
    for cpu in cpus:
        if start is None:
            start = prev = cpu
        elif cpu == prev + 1:
            prev = cpu
        else:
            parts.append(_range(start, prev))
            start = prev = cpu
    if start is not None:
        parts.append(_range(start, prev))
    return ",".join(parts)


def _range(first, last):
    return str(first) if first == last else "%d-%d" % (first, last)


_PCI_ADDR = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<slot>[0-9a-fA-F]{1,2})\.(?P<function>[0-7])$"
)
_NODEDEV = re.compile(
    r"^pci_(?P<domain>[0-9a-f]{4})_(?P<bus>[0-9a-f]{2})_(?P<slot>[0-9a-f]{2})_(?P<function>[0-7])$"
)


def parse_pci_address(text):
    """'0000:df:00.0' or 'df:00.0' -> dict(domain, bus, slot, function) of ints."""
    match = _PCI_ADDR.match(text or "")
    if not match:
        raise ValueError("not a PCI address")
    addr = dict((k, int(v, 16)) for k, v in match.groupdict(default="0").items())
    if addr["slot"] > 31:
        raise ValueError("slot above 0x1f")
    return addr


def parse_nodedev_name(text):
    """'pci_0000_df_00_0' -> dict(domain, bus, slot, function) of ints."""
    match = _NODEDEV.match(text or "")
    if not match:
        raise ValueError("not a PCI node device name")
    addr = dict((k, int(v, 16)) for k, v in match.groupdict().items())
    if addr["slot"] > 31:
        raise ValueError("slot above 0x1f")
    return addr


def format_pci_address(addr):
    return "%04x:%02x:%02x.%x" % (addr["domain"], addr["bus"], addr["slot"], addr["function"])


def nodedev_name(addr):
    return "pci_%04x_%02x_%02x_%x" % (addr["domain"], addr["bus"], addr["slot"], addr["function"])


def xml_int(text):
    """libvirt writes numbers as '0x0a' or '10': read either."""
    text = (text or "").strip()
    return int(text, 16) if text.lower().startswith("0x") else int(text)
