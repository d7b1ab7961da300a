# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Other people's validators on a lab's virtual host: parse their output and judge it against the lab.

Pure functions of the tools' text, so that they can be tested on output captured from real runs:
``virt-host-validate qemu`` (libvirt), ``lstopo --of xml`` (hwloc) and ``numactl --hardware``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import xmlengine

# virt-host-validate's checks that say whether devices can be assigned (libvirt 9.0 wording).
VHV_IOMMU_CHECKS = ("Checking for device assignment IOMMU support", "Checking if IOMMU is enabled by kernel")
# which firmware table a CPU flag makes virt-host-validate look for
IOMMU_TABLE_FOR_FLAG = {"vmx": "DMAR", "svm": "IVRS"}
VENDOR_OF_TABLE = {"DMAR": "Intel VT-d", "IVRS": "AMD-Vi"}
# numactl's node size is what the kernel manages on the node: firmware and kernel keep some of
# the memory the lab gives it. Accepted loss: 15 % of the node or 192 MiB, whichever is more.
NUMA_LOSS_SHARE = 0.15
NUMA_LOSS_MIB = 192

_VHV_LINE = re.compile(r"^\s*(?P<hv>[A-Z]+):\s+(?P<check>.*?)\s*:\s+(?P<result>PASS|WARN|FAIL|NOTE)\b\s*(?:\((?P<detail>.*)\))?\s*$")


def parse_virt_host_validate(text):
    """[{'hypervisor', 'check', 'result', 'detail'}] for each line of ``virt-host-validate``."""
    rows = []
    for line in (text or "").splitlines():
        match = _VHV_LINE.match(line)
        if match:
            rows.append({"hypervisor": match.group("hv"), "check": match.group("check"),
                         "result": match.group("result"), "detail": match.group("detail") or ""})
    return rows


def platform(cpu_flags, acpi_tables):
    """What a vendor-minded tool sees: the CPU's virtualization flag and the IOMMU tables of the firmware.

    ``consistent`` is False when the CPU flag makes tools look for the other vendor's table.
    """
    flag = "vmx" if "vmx" in cpu_flags else "svm" if "svm" in cpu_flags else None
    tables = sorted(t for t in ("DMAR", "IVRS") if t in acpi_tables)
    want = IOMMU_TABLE_FOR_FLAG.get(flag)
    out = {"cpu_flag": flag, "iommu_tables": tables, "consistent": bool(want and want in tables)}
    if not tables:
        out["reason"] = "the firmware has no IOMMU table (DMAR or IVRS)"
    elif flag is None:
        out["reason"] = "the CPU shows neither vmx nor svm, so tools cannot tell which IOMMU to look for"
    elif not out["consistent"]:
        out["reason"] = ("the CPU shows %s, so tools look for the %s table (%s), but the firmware has %s (%s)"
                         % (flag, want, VENDOR_OF_TABLE[want], " and ".join(tables),
                            ", ".join(VENDOR_OF_TABLE[t] for t in tables)))
    else:
        out["reason"] = "the CPU shows %s and the firmware has the %s table (%s)" % (flag, want, VENDOR_OF_TABLE[want])
    return out


def judge_virt_host_validate(rows, plat=None):
    """Problems: each IOMMU check of virt-host-validate that is missing or does not PASS, in its own words."""
    problems = []
    by_check = dict((row["check"], row) for row in rows)
    for check in VHV_IOMMU_CHECKS:
        row = by_check.get(check)
        if row is None:
            # virt-host-validate stops its IOMMU checks at the first that does not pass
            if problems:
                continue
            problems.append("virt-host-validate printed no line '%s'" % check)
        elif row["result"] != "PASS":
            problems.append("virt-host-validate: %s: %s%s" % (check, row["result"],
                                                              " (%s)" % row["detail"] if row["detail"] else ""))
    if problems and plat and not plat["consistent"]:
        problems.append("why: %s" % plat["reason"])
    return problems


def only_the_vendor_mismatch(rows, plat):
    """True when virt-host-validate's IOMMU checks fail only because the CPU and the firmware's IOMMU table
    come from two vendors: the support check names the table the CPU's flag made it look for, and the
    kernel check, when printed, passes."""
    if plat["consistent"] or plat["cpu_flag"] is None or not plat["iommu_tables"]:
        return False
    by_check = dict((row["check"], row) for row in rows)
    support, kernel = (by_check.get(check) for check in VHV_IOMMU_CHECKS)
    wanted = IOMMU_TABLE_FOR_FLAG[plat["cpu_flag"]]
    return (support is not None and support["result"] != "PASS" and "No ACPI %s table" % wanted in support["detail"]
            and (kernel is None or kernel["result"] == "PASS"))


def bits(mask):
    """hwloc bitmap text ('0x00000004', '0x00000001,0x00000000', '0x3,,0x0' with empty words for zero ones)
    -> set of indices. An infinite bitmap ('0xf...f,0x...', all indices from some point on) counts its
    finite words only."""
    if not mask:
        return set()
    value = 0
    for word in mask.replace("0xf...f", "0x0").split(","):
        value = (value << 32) | (int(word, 16) if word else 0)
    return set(i for i in range(value.bit_length()) if value >> i & 1)


def local_nodes(obj):
    """The NUMA nodes an hwloc object is local to: the nodeset of its nearest ancestor that has one (hwloc
    hangs I/O objects off the CPU-side object they are local to), sorted; [] when none has one."""
    parent = obj.getparent()
    while parent is not None and parent.get("nodeset") is None:
        parent = parent.getparent()
    return sorted(bits(parent.get("nodeset"))) if parent is not None else []


def parse_hwloc(text):
    """From ``lstopo --of xml``: NUMA nodes (os_index -> CPUs) and PCI functions (bus id -> nodes).

    A PCI function's nodes are the nodeset of its nearest ancestor that has one (hwloc hangs I/O
    objects off the CPU-side object they are local to).
    """
    root = xmlengine.parse(text, what="hwloc XML", doctype="topology")
    if root.tag != "topology":
        raise ValueError("hwloc XML: the root element is <%s>, not <topology>" % root.tag)
    nodes = {}
    for obj in root.iter("object"):
        if obj.get("type") == "NUMANode":
            nodes[int(obj.get("os_index"))] = sorted(bits(obj.get("cpuset")))
    pci = {}
    for obj in root.iter("object"):
        if obj.get("type") != "PCIDev" or not obj.get("pci_busid"):
            continue
        pci[obj.get("pci_busid").lower()] = {
            "nodes": local_nodes(obj),
            "class_ids": obj.get("pci_type", ""),
        }
    return {"nodes": nodes, "pci": pci}


def virtual_functions(seen, pf):
    """The other functions hwloc shows on a PF's bus (an SR-IOV PF's VFs sit on its bus, from device 0x10)."""
    bus = pf.lower().rsplit(":", 1)[0] + ":"
    return sorted(addr for addr in seen["pci"] if addr.startswith(bus) and addr != pf.lower())


def judge_hwloc(seen, nics):
    """Problems: each lab NIC (``{'address', 'node'}``, and ``vfs``: its SR-IOV virtual functions) hwloc does
    not show under exactly its node, with as many other functions on its bus as it has VFs."""
    problems = []
    for nic in nics:
        got = seen["pci"].get(nic["address"].lower())
        if got is None:
            problems.append("hwloc shows no PCI function %s (the lab puts a NIC there, on NUMA node %s)"
                            % (nic["address"], nic["node"]))
            continue
        if got["nodes"] != [nic["node"]]:
            problems.append("hwloc puts %s under NUMA node(s) %s; the lab puts it on node %s"
                            % (nic["address"], ",".join(str(n) for n in got["nodes"]) or "none", nic["node"]))
        vfs = virtual_functions(seen, nic["address"])
        if len(vfs) != nic.get("vfs", 0):
            problems.append("hwloc shows %d virtual function(s) of %s (%s); the lab gives it %d"
                            % (len(vfs), nic["address"], ", ".join(vfs) or "none", nic.get("vfs", 0)))
        for vf in vfs:
            if seen["pci"][vf]["nodes"] != [nic["node"]]:
                problems.append("hwloc puts %s, a virtual function of %s, under NUMA node(s) %s; the lab puts %s on node %s"
                                % (vf, nic["address"], ",".join(str(n) for n in seen["pci"][vf]["nodes"]) or "none",
                                   nic["address"], nic["node"]))
    return problems


_NUMA_CPUS = re.compile(r"^node (\d+) cpus:(.*)$")
_NUMA_SIZE = re.compile(r"^node (\d+) size: (\d+) MB$")


def parse_numactl(text):
    """From ``numactl --hardware``: {'nodes': {id: {'cpus', 'size_mib'}}, 'distances': {id: [..]}}."""
    nodes, distances, header = {}, {}, None
    for line in (text or "").splitlines():
        line = line.strip()
        match = _NUMA_CPUS.match(line)
        if match:
            nodes.setdefault(int(match.group(1)), {})["cpus"] = [int(c) for c in match.group(2).split()]
            continue
        match = _NUMA_SIZE.match(line)
        if match:
            nodes.setdefault(int(match.group(1)), {})["size_mib"] = int(match.group(2))
            continue
        if line.startswith("node ") and line.split()[1:] and all(w.isdigit() for w in line.split()[1:]):
            header = [int(w) for w in line.split()[1:]]
            continue
        match = re.match(r"^(\d+):((?:\s+\d+)+)$", line)
        if match and header is not None:
            row = [int(w) for w in match.group(2).split()]
            distances[int(match.group(1))] = dict(zip(header, row))
    return {"nodes": nodes, "distances": distances}


def judge_numactl(seen, cells):
    """Problems: nodes, CPUs, memory and (when the spec gives them) distances that differ from the spec."""
    problems = []
    want_ids = sorted(cell["id"] for cell in cells)
    if sorted(seen["nodes"]) != want_ids:
        problems.append("numactl shows nodes %s; the lab has %s" % (sorted(seen["nodes"]), want_ids))
    for cell in cells:
        got = seen["nodes"].get(cell["id"])
        if got is None:
            continue
        if got.get("cpus") != list(cell["cpus"]):
            problems.append("numactl: node %d cpus: %s; the lab gives it %s"
                            % (cell["id"], " ".join(str(c) for c in got.get("cpus", [])),
                               " ".join(str(c) for c in cell["cpus"])))
        want_mib = cell["memory_kib"] // 1024
        size = got.get("size_mib")
        loss = max(int(want_mib * NUMA_LOSS_SHARE), NUMA_LOSS_MIB)
        if size is None or size > want_mib or size < want_mib - loss:
            problems.append("numactl: node %d size: %s MB; the lab gives it %d MiB (accepted: %d to %d)"
                            % (cell["id"], size, want_mib, want_mib - loss, want_mib))
        if cell.get("distances"):
            row = seen["distances"].get(cell["id"], {})
            got_row = [row.get(other["id"]) for other in cells]
            if got_row != list(cell["distances"]):
                problems.append("numactl: distances from node %d: %s; the lab gives %s"
                                % (cell["id"], got_row, list(cell["distances"])))
    return problems


_PROBED = re.compile(r"EAL: Probe PCI driver: (?P<driver>\S+) \((?P<ids>[0-9a-f:]+)\) device: (?P<dev>\S+) \(socket (?P<socket>-?\d+)\)")
_MBUF = re.compile(r"create a new mbuf pool <(?P<pool>[^>]+)>: n=\d+, size=\d+, socket=(?P<socket>-?\d+)")


def testpmd_args(cores, device, prefix="nestlab-validate"):
    """dpdk-testpmd's arguments (after the program) for one NIC: a burst first, statistics every 5 s."""
    return ["-l", cores, "-n", "1", "-a", device, "--file-prefix", prefix, "--", "--tx-first", "--stats-period", "5",
            "--total-num-mbufs", "2048"]


def parse_testpmd(text, device):
    """From dpdk-testpmd's output: IOMMU mode, the probe of ``device`` (driver, socket), the mbuf pools'
    sockets, and the last TX/RX packet counters it printed."""
    probe = [m.groupdict() for m in _PROBED.finditer(text or "") if m.group("dev") == device]
    tx = re.findall(r"TX-packets:\s+(\d+)", text or "")
    rx = re.findall(r"RX-packets:\s+(\d+)", text or "")
    return {"iommu": "Using IOMMU type 1" in (text or ""), "noiommu": "noiommu" in (text or "").lower(),
            "driver": probe[0]["driver"] if probe else None,
            "socket": int(probe[0]["socket"]) if probe else None,
            "mbuf_sockets": sorted(set(int(m.group("socket")) for m in _MBUF.finditer(text or ""))),
            "tx_packets": int(tx[-1]) if tx else None, "rx_packets": int(rx[-1]) if rx else None}


def judge_testpmd(seen, device, node, driver_after, driver_before):
    """Problems: DPDK did not use the IOMMU, did not place the device or its buffers on its node, moved no
    packets, or the device did not go back to its kernel driver."""
    problems = []
    if not seen["iommu"]:
        problems.append("dpdk-testpmd did not say 'Using IOMMU type 1' (vfio without the IOMMU%s)"
                        % (", noiommu mode" if seen["noiommu"] else ""))
    if seen["socket"] is None:
        problems.append("dpdk-testpmd did not probe %s" % device)
    elif seen["socket"] != node:
        problems.append("dpdk-testpmd probed %s on socket %d; the lab puts it on NUMA node %d" % (device, seen["socket"], node))
    if seen["mbuf_sockets"] != [node]:
        problems.append("dpdk-testpmd took its packet buffers from socket(s) %s; the device is on node %d"
                        % (seen["mbuf_sockets"] or "none", node))
    if not seen["tx_packets"]:
        problems.append("dpdk-testpmd sent no packet through %s (TX-packets: %s)" % (device, seen["tx_packets"]))
    if driver_after != driver_before:
        problems.append("%s is with %s after the run, not with %s as before" % (device, driver_after or "no driver", driver_before))
    return problems
