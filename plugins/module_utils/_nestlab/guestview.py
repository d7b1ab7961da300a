# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a guest should see (derived from its domain XML) and the check of what it does see.

Facts have one shape whoever gathers them (the probe boot's report, or sysfs read inside
the guest):

  {"nodes": {0: {"cpus": [0, 1], "memory_kib": 1000}}, "buses": ["0000:b4", ...],
   "pci": {"0000:b5:00.0": {"vendor": "8086", "device": "10d3", "numa_node": 0,
                            "iommu_group": 14, "driver": "e1000e"}},
   "dmesg": ["DMAR: ...", ...], "cmdline": "..."}
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guest import read_text
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import format_cpuset, parse_cpuset, xml_int

# vendor:device each NIC model shows the guest
NIC_IDS = {
    "e1000e": ("8086", "10d3"),
    "igb": ("8086", "10c9"),
    "e1000": ("8086", "100e"),
    "rtl8139": ("10ec", "8139"),
    "vmxnet3": ("15ad", "07b0"),
    "virtio": ("1af4", "1041"),
}
DMAR_ACTIVE = "Intel(R) Virtualization Technology for Directed I/O"
DMAR_IR = "DMAR-IR: Enabled IRQ remapping"
# per vIOMMU model: (its vendor, the kernel line that says it is active, the one that says interrupts are remapped)
IOMMU_EVIDENCE = {
    "intel": ("Intel", DMAR_ACTIVE, DMAR_IR),
    "amd": ("AMD", "AMD-Vi: Found IOMMU", "AMD-Vi: Interrupt remapping enabled"),
}


def expectations(dom):
    """From a domain document: nodes, expander buses, NICs behind them, the vIOMMU."""
    exp = {"nodes": {}, "expanders": [], "nics": [], "iommu": None}
    for cell in dom.root.xpath("./cpu/numa/cell"):
        memory = int(cell.get("memory")) * {"kib": 1, "mib": 1024, "gib": 1024 ** 2}.get(
            (cell.get("unit") or "KiB").lower(), 1)
        exp["nodes"][xml_int(cell.get("id"))] = {"cpus": parse_cpuset(cell.get("cpus")), "memory_kib": memory}
    ctrls = dom.controllers_by_index()
    for index, pxb in sorted(ctrls.items()):
        if pxb.get("model") != "pcie-expander-bus" or pxb.find("target") is None:
            continue
        bus_nr = xml_int(pxb.find("target").get("busNr"))
        node = pxb.findtext("target/node")
        node = int(node) if node is not None else None
        exp["expanders"].append({"bus": "0000:%02x" % bus_nr, "node": node, "index": index})
        ports = sorted((dom.address_of(c)["slot"], i) for i, c in ctrls.items()
                       if dom.address_of(c) is not None and dom.address_of(c)["bus"] == index)
        for rank, (dummy, port_index) in enumerate(ports):
            for dev in dom.children_of(port_index):
                if dev.tag != "interface":
                    continue
                model = dev.find("model")
                exp["nics"].append({
                    "address": "0000:%02x:00.0" % (bus_nr + 1 + rank),
                    "node": node,
                    "model": model.get("type") if model is not None else None,
                    "alias": dom.alias_of(dev),
                })
    iommu = dom.root.find("devices/iommu")
    if iommu is not None:
        driver = iommu.find("driver")
        exp["iommu"] = {"model": iommu.get("model"),
                        "intremap": driver is not None and driver.get("intremap") == "on"}
    return exp


def check(facts, exp, iommu_enabled=True):
    """Every way ``facts`` differ from ``exp``, as readable lines (empty list: all good)."""
    problems = []
    seen_nodes = facts.get("nodes", {})
    if sorted(seen_nodes) != sorted(exp["nodes"]):
        problems.append("NUMA nodes: expected %s, the guest sees %s" % (sorted(exp["nodes"]), sorted(seen_nodes)))
    for node, want in sorted(exp["nodes"].items()):
        have = seen_nodes.get(node)
        if have is None:
            continue
        if have.get("cpus") != want["cpus"]:
            problems.append("node %d: expected CPUs %s, the guest sees %s"
                            % (node, format_cpuset(want["cpus"]), format_cpuset(have.get("cpus") or [])))
        mem = have.get("memory_kib")
        if mem is not None and not want["memory_kib"] // 2 <= mem <= want["memory_kib"]:
            problems.append("node %d: expected about %d KiB of memory, the guest sees %d KiB"
                            % (node, want["memory_kib"], mem))
    buses = set(facts.get("buses", []))
    for pxb in exp["expanders"]:
        if pxb["bus"] not in buses:
            problems.append("expander bus %s (node %s) is missing; the guest's buses: %s"
                            % (pxb["bus"], pxb["node"], ", ".join(sorted(buses))))
    pci = facts.get("pci", {})
    for nic in exp["nics"]:
        dev = pci.get(nic["address"])
        if dev is None:
            problems.append("NIC %s (%s, node %s) is missing" % (nic["address"], nic["model"], nic["node"]))
            continue
        ids = NIC_IDS.get(nic["model"])
        if ids and (dev.get("vendor"), dev.get("device")) != ids and not (
                nic["model"] == "virtio" and dev.get("vendor") == "1af4"):
            problems.append("NIC %s: expected %s:%s (%s), the guest sees %s:%s"
                            % (nic["address"], ids[0], ids[1], nic["model"], dev.get("vendor"), dev.get("device")))
        if nic["node"] is not None and dev.get("numa_node") != nic["node"]:
            problems.append("NIC %s: expected numa_node %s, the guest sees %s"
                            % (nic["address"], nic["node"], dev.get("numa_node")))
        if exp["iommu"] and iommu_enabled and dev.get("iommu_group") is None:
            problems.append("NIC %s has no IOMMU group" % nic["address"])
    text = "\n".join(facts.get("dmesg", []))
    model = exp["iommu"] and exp["iommu"]["model"]
    if model == "auto":
        # a spec that left the choice to lab_topology: the vendor whose IOMMU the kernel found
        model = next((m for m, evidence in sorted(IOMMU_EVIDENCE.items()) if evidence[1] in text), "intel")
    if model in IOMMU_EVIDENCE and iommu_enabled:
        vendor, active, remapped = IOMMU_EVIDENCE[model]
        if active not in text:
            problems.append("the kernel log lacks %r: the %s IOMMU is not active" % (active, vendor))
        if exp["iommu"]["intremap"] and remapped not in text:
            problems.append("the kernel log lacks %r: interrupt remapping is off" % remapped)
    return problems


def summary(facts, exp):
    """The stable part of what the guest saw (no timings, no free-memory figures): for reports."""
    text = "\n".join(facts.get("dmesg", []))
    return {
        "nodes": dict((str(node), {"cpus": format_cpuset(info.get("cpus") or [])})
                      for node, info in sorted(facts.get("nodes", {}).items())),
        "expander_buses": [b for b in sorted(facts.get("buses", [])) if b in set(p["bus"] for p in exp["expanders"])],
        "nics": [dict(address=nic["address"], node=facts["pci"].get(nic["address"], {}).get("numa_node"),
                      ids="%s:%s" % (facts["pci"].get(nic["address"], {}).get("vendor"),
                                     facts["pci"].get(nic["address"], {}).get("device")),
                      iommu_group=facts["pci"].get(nic["address"], {}).get("iommu_group"),
                      nodedev="pci_%s" % nic["address"].replace(":", "_").replace(".", "_"))
                 for nic in exp["nics"]],
        "iommu_active": any(lines[1] in text for lines in IOMMU_EVIDENCE.values()),
        "interrupt_remapping": any(lines[2] in text for lines in IOMMU_EVIDENCE.values()),
    }


def _read(path, default):
    """A sysfs or proc file's text without its newline, or ``default`` when it cannot be read."""
    return read_text(path, default).strip()


def gather(sysfs="/sys", proc="/proc", dmesg_lines=None):
    """Facts from a running Linux (this machine): the same shape the probe's report gives."""
    import glob
    import os
    facts = {"nodes": {}, "buses": [], "pci": {}, "dmesg": [], "cmdline": _read(os.path.join(proc, "cmdline"), ""),
             "kvm": os.path.exists("/dev/kvm")}
    for node_dir in sorted(glob.glob(os.path.join(sysfs, "devices/system/node/node[0-9]*"))):
        node = int(os.path.basename(node_dir)[4:])
        cpus = _read(os.path.join(node_dir, "cpulist"), "")
        mem = None
        for line in _read(os.path.join(node_dir, "meminfo"), "").splitlines():
            if "MemTotal:" in line:
                mem = int(line.split()[-2])
        facts["nodes"][node] = {"cpus": parse_cpuset(cpus) if cpus else [], "memory_kib": mem}
    facts["buses"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(sysfs, "class/pci_bus/*")))
    for dev in sorted(glob.glob(os.path.join(sysfs, "bus/pci/devices/*"))):
        group = os.path.join(dev, "iommu_group")
        driver = os.path.join(dev, "driver")
        numa = _read(os.path.join(dev, "numa_node"), "-1")
        facts["pci"][os.path.basename(dev)] = {
            "vendor": _read(os.path.join(dev, "vendor"), "").replace("0x", ""),
            "device": _read(os.path.join(dev, "device"), "").replace("0x", ""),
            "class": _read(os.path.join(dev, "class"), "").replace("0x", ""),
            "numa_node": int(numa),
            "iommu_group": int(os.path.basename(os.readlink(group))) if os.path.islink(group) else None,
            "driver": os.path.basename(os.readlink(driver)) if os.path.islink(driver) else None,
        }
    keep = ("DMAR", "IOMMU", "iommu", "AMD-Vi", "virtio-iommu")
    facts["dmesg"] = [line for line in (dmesg_lines or []) if any(k in line for k in keep)]
    return facts


def expectations_from_plan(spec, plan):
    """What the guest should see, from a lab spec (normalised) and lab_topology's ``plan``."""
    exp = {"nodes": {}, "expanders": [], "nics": [], "iommu": None}
    for cell in spec["numa"]:
        exp["nodes"][cell["id"]] = {"cpus": list(cell["cpus"]), "memory_kib": cell["memory_kib"]}
    for node in plan:
        exp["expanders"].append({"bus": node["expander_bus"], "node": node["node"], "index": node.get("controller_index")})
        for nic in node["nics"]:
            exp["nics"].append({"address": nic["guest_address"], "node": node["node"], "model": nic["model"],
                                "alias": nic.get("alias"), "vfs": nic.get("vfs") or 0})
    if spec["iommu"]:
        exp["iommu"] = {"model": spec["iommu"]["model"], "intremap": spec["iommu"]["intremap"]}
    return exp
