# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI node devices as libvirt describes them, who uses them, and selection by a few criteria."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guest import read_text
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import libvirt
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import (
    format_pci_address,
    parse_nodedev_name,
    parse_pci_address,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import parse

_BRIDGE_CLASS = "06"
# PCI-to-PCI and CardBus bridges (header type 1/2): vfio lets them stay in a group it opens.
_PCI_BRIDGE_CLASSES = ("0604", "0607")
_GROUP_SAFE_DRIVERS = (None, "vfio-pci", "pci-stub")
_VENDOR_DEVICE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$")
_CLASS = re.compile(r"^(0x)?([0-9a-f]{2}|[0-9a-f]{4}|[0-9a-f]{6})$")
# the selection criteria, in the order messages name them
FILTERS = ("name", "address", "numa_node", "pci_class", "vendor_device", "driver", "virtual_function",
           "physical_function", "vf_index", "assignable")
_ADDRESS = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")


def normalize_address(value, field="address"):
    """Accept ``0000:df:00.0``, ``df:00.0`` or a node device name; return ``0000:df:00.0``."""
    text = str(value).strip().lower()
    try:
        addr = parse_nodedev_name(text) if text.startswith("pci_") else parse_pci_address(text)
    except ValueError:
        raise SpecError(field, value, "a PCI address such as 0000:df:00.0 or a node device name such as pci_0000_df_00_0")
    return format_pci_address(addr)


def _int(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None


def _addr_of(elem):
    return format_pci_address(dict((k, _int(elem.get(k), 16) or 0) for k in ("domain", "bus", "slot", "function")))


def parse_pci_nodedev(xml_text):
    """One ``virsh nodedev-dumpxml`` of a PCI device -> a flat dict (None for other devices)."""
    root = parse(xml_text, "node device XML")
    cap = root.find("capability[@type='pci']")
    if cap is None:
        return None
    address = format_pci_address(dict((k, _int(cap.findtext(k)) or 0) for k in ("domain", "bus", "slot", "function")))
    vendor, product = cap.find("vendor"), cap.find("product")
    group = cap.find("iommuGroup")
    numa = cap.find("numa")
    klass = (cap.findtext("class") or "").lower().replace("0x", "")
    dev = {
        "name": root.findtext("name"),
        "address": address,
        "parent": root.findtext("parent"),
        "path": root.findtext("path"),
        "driver": root.findtext("driver/name"),
        "class": klass,
        "vendor_id": (vendor.get("id") or "").lower().replace("0x", "") if vendor is not None else "",
        "vendor": (vendor.text or "").strip() if vendor is not None else "",
        "product_id": (product.get("id") or "").lower().replace("0x", "") if product is not None else "",
        "product": (product.text or "").strip() if product is not None else "",
        "numa_node": _int(numa.get("node")) if numa is not None else None,
        "iommu_group": _int(group.get("number")) if group is not None else None,
        "iommu_group_members": sorted(_addr_of(a) for a in group.findall("address")) if group is not None else [],
        # libvirt lists a PF's VFs in the kernel's order (virtfn0, virtfn1, ...): a VF's index
        "virtual_functions": [_addr_of(a) for a in cap.findall("capability[@type='virt_functions']/address")],
        "physical_function": None,
        "vf_index": None,
    }
    pf = cap.find("capability[@type='phys_function']/address")
    if pf is not None:
        dev["physical_function"] = _addr_of(pf)
    if dev["numa_node"] is not None and dev["numa_node"] < 0:
        dev["numa_node"] = None
    dev["vendor_device"] = "%s:%s" % (dev["vendor_id"], dev["product_id"])
    return dev


def hostdev_users(domains):
    """``domains``: iterable of (name, XML text, active) -> {PCI address: [{domain, active}]}.

    Counts every ``<hostdev type='pci'>`` of every defined domain, running or not.
    """
    users = {}
    for name, xml_text, active in domains:
        root = parse(xml_text)
        for addr in root.findall("devices/hostdev[@type='pci']/source/address"):
            users.setdefault(_addr_of(addr), []).append({"domain": name, "active": bool(active)})
    return users


def annotate(devices, users, host_uses, for_domain=None):
    """Add ``used_by``, ``host_uses`` and ``assignable`` (with ``not_assignable_because``).

    ``host_uses``: {PCI address: [what the host itself uses it for, in words]}.
    A device is assignable to ``for_domain`` when no member of its IOMMU group (PCI bridges aside) is
    assigned to another domain or used by the host itself (its network, its disks), and every other
    member is driver-less or on vfio-pci/pci-stub (or assigned to ``for_domain`` too): otherwise vfio
    cannot open the group.
    """
    by_addr = dict((d["address"], d) for d in devices)
    for dev in devices:
        dev["used_by"] = [u["domain"] for u in users.get(dev["address"], [])]
        dev["host_uses"] = sorted(host_uses.get(dev["address"], []))
        siblings = by_addr.get(dev.get("physical_function"), {}).get("virtual_functions", [])
        dev["vf_index"] = siblings.index(dev["address"]) if dev["address"] in siblings else None
    for dev in devices:
        reasons = []
        if dev["class"].startswith(_BRIDGE_CLASS):
            reasons.append("%s is a bridge (PCI class 06)" % dev["address"])
        if dev["iommu_group"] is None:
            reasons.append("%s has no IOMMU group (is the IOMMU on in this guest?)" % dev["address"])
        members = dev["iommu_group_members"] or [dev["address"]]
        for member in members:
            other = by_addr.get(member, {"class": "", "used_by": [], "host_uses": [], "driver": None})
            if member != dev["address"] and other["class"].startswith(_PCI_BRIDGE_CLASSES):
                continue
            others = [d for d in other["used_by"] if d != for_domain]
            if others:
                reasons.append("%s is assigned to %s" % (member, ", ".join(sorted(set(others)))))
            if other["host_uses"]:
                reasons.append("%s is used by this host (%s)" % (member, "; ".join(other["host_uses"])))
            elif member != dev["address"] and not others and for_domain not in other["used_by"] \
                    and other.get("driver") not in _GROUP_SAFE_DRIVERS:
                # vfio opens a group only when every member is driver-less, on vfio-pci or pci-stub, or a
                # PCI bridge; libvirt detaches just the assigned device
                reasons.append("%s shares IOMMU group %s and stays with its host driver %s: vfio cannot use "
                               "the group" % (member, dev["iommu_group"], other.get("driver")))
        dev["assignable"] = not reasons
        dev["not_assignable_because"] = reasons
    return devices


def validate_filters(filters):
    """Check the selection criteria; return them normalised."""
    out = dict(filters)
    if out.get("vendor_device") is not None:
        text = str(out["vendor_device"]).strip().lower().replace("0x", "")
        if not _VENDOR_DEVICE.match(text):
            raise SpecError("vendor_device", out["vendor_device"], "vendor:device in hex, such as 8086:10d3")
        out["vendor_device"] = text
    if out.get("pci_class") is not None:
        text = str(out["pci_class"]).strip().lower()
        match = _CLASS.match(text)
        if not match:
            raise SpecError("pci_class", out["pci_class"],
                            "a PCI class prefix in hex: 2, 4 or 6 digits, such as 02 (network) or 0200 (Ethernet)")
        out["pci_class"] = match.group(2)
    if out.get("numa_node") is not None and out["numa_node"] < 0:
        raise SpecError("numa_node", out["numa_node"], "a NUMA node number, 0 or more")
    if out.get("vf_index") is not None and out["vf_index"] < 0:
        raise SpecError("vf_index", out["vf_index"], "the index of a virtual function of its PF, 0 or more")
    if out.get("physical_function") is not None:
        out["physical_function"] = normalize_address(out["physical_function"], "physical_function")
    if out.get("address"):
        out["address"] = [normalize_address(a, "address") for a in out["address"]]
    if out.get("name"):
        out["name"] = [normalize_address(a, "name") for a in out["name"]]
    return out


def select(devices, filters):
    """The devices that meet every given criterion, ordered by address."""
    f = filters
    wanted = set((f.get("address") or []) + (f.get("name") or []))
    out = []
    for dev in sorted(devices, key=lambda d: d["address"]):
        if wanted and dev["address"] not in wanted:
            continue
        if f.get("numa_node") is not None and dev["numa_node"] != f["numa_node"]:
            continue
        if f.get("pci_class") and not dev["class"].startswith(f["pci_class"]):
            continue
        if f.get("vendor_device") and dev["vendor_device"] != f["vendor_device"]:
            continue
        if f.get("driver") and dev["driver"] != f["driver"]:
            continue
        if f.get("assignable") is not None and dev.get("assignable") != f["assignable"]:
            continue
        if f.get("virtual_function") is not None and (dev.get("physical_function") is not None) != f["virtual_function"]:
            continue
        if f.get("physical_function") and dev.get("physical_function") != f["physical_function"]:
            continue
        if f.get("vf_index") is not None and dev.get("vf_index") != f["vf_index"]:
            continue
        out.append(dev)
    return out


def describe_filters(filters):
    """The criteria in words, for 'nothing matches' messages."""
    words = []
    for key in FILTERS:
        value = filters.get(key)
        if value is None or value == []:
            continue
        words.append("%s=%s" % (key, ",".join(value) if isinstance(value, list) else value))
    return " ".join(words) or "(no criteria)"


def pci_ancestor(sysfs_path):
    """The PCI address closest to the device in a resolved sysfs path, or None."""
    for part in reversed(sysfs_path.split("/")):
        if _ADDRESS.match(part):
            return part
    return None


def mounted_block_devices(mounts_text, swaps_text):
    """{kernel block device name: [mount points or 'swap']} from /proc/mounts and /proc/swaps."""
    out = {}
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("/dev/"):
            out.setdefault(parts[0][5:], []).append(parts[1])
    for line in swaps_text.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0].startswith("/dev/"):
            out.setdefault(parts[0][5:], []).append("swap")
    return out


def host_traffic_interfaces(route_text, if_inet6_text):
    """Interface names that carry an IPv4 route or a global IPv6 address (the host uses them)."""
    names = set()
    for line in route_text.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] != "lo":
            names.add(parts[0])
    for line in if_inet6_text.splitlines():
        parts = line.split()
        # address index prefix-length scope flags name; scope 00 is global
        if len(parts) >= 6 and parts[3] == "00" and parts[5] != "lo":
            names.add(parts[5])
    return names


def host_uses():
    """{PCI address: [what this host uses the device for]}: interfaces with routes or global
    addresses, block devices that are mounted or used as swap (partitions count for their disk)."""
    uses = {}
    for name in sorted(host_traffic_interfaces(read_text("/proc/net/route", ""), read_text("/proc/net/if_inet6", ""))):
        address = pci_ancestor(os.path.realpath("/sys/class/net/%s" % name))
        if address:
            uses.setdefault(address, []).append("network interface %s" % name)
    mounted = mounted_block_devices(read_text("/proc/mounts", ""), read_text("/proc/swaps", ""))
    for dev, points in sorted(mounted.items()):
        name = os.path.basename(os.path.realpath("/dev/" + dev))
        sysfs = os.path.realpath("/sys/class/block/%s" % name)
        slaves = sorted(os.listdir(sysfs + "/slaves")) if os.path.isdir(sysfs + "/slaves") else []
        for real in slaves or [name]:
            address = pci_ancestor(os.path.realpath("/sys/class/block/%s" % real))
            if address:
                uses.setdefault(address, []).append("disk %s mounted on %s" % (real, ", ".join(points)))
    return uses


def read_devices(conn, for_domain=None):
    """Every PCI node device of the libvirt connection ``conn`` (which runs on this host), annotated
    (see annotate) for ``for_domain``. Raises libvirt.libvirtError."""
    devices = []
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
        parsed = parse_pci_nodedev(dev.XMLDesc(0))
        if parsed is not None:
            devices.append(parsed)
    domains = [(d.name(), d.XMLDesc(0), d.isActive()) for d in conn.listAllDomains(0)]
    return annotate(devices, hostdev_users(domains), host_uses(), for_domain)


def listing(devices):
    """The non-bridge devices, one line each, for messages that say what there is."""
    lines = ["%s %s %s node=%s group=%s%s%s" % (
        d["name"], d["vendor_device"], d["driver"] or "-", d["numa_node"], d["iommu_group"],
        " VF %d of %s" % (d["vf_index"], d["physical_function"]) if d.get("vf_index") is not None else "",
        "" if d["assignable"] else " (not assignable: %s)" % "; ".join(d["not_assignable_because"]))
        for d in sorted(devices, key=lambda d: d["address"]) if not d["class"].startswith(_BRIDGE_CLASS)]
    return "\n".join(lines) or "(none)"
