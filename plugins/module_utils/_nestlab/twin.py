# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lab spec shaped like a real machine, from hwloc's XML of it (``lstopo --of xml``): its NUMA nodes
(CPUs and memory scaled to the lab's size, the latency distances copied), and its Ethernet functions on
the node hwloc says they are local to. Every source node and PCI function gets a fidelity row: what the
twin kept, scaled, placed by a rule or dropped, and why. Pure code: no files, no network."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import validators, xmlengine
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import (
    MAX_NODES,
    MAX_PORTS_PER_EXPANDER,
    NIC_MODELS,
    SRIOV_MODELS,
)

MIB = 1024 * 1024
# the smallest share of memory a twin's node gets (a Linux guest boots on nodes this small; the spec's
# own floor is 64 MiB)
MIN_NODE_MIB = 256
# memory is shared out in steps of this many MiB
MEMORY_UNIT_MIB = 64
# hwloc's distances kinds (hwloc/distances.h): the values are latencies
KIND_MEANS_LATENCY = 4
DISTANCE_SELF = 10
DISTANCE_MAX = 255

# Source functions that QEMU emulates exactly: the twin's NIC has the same vendor:device.
SAME_DEVICE = {
    "8086:10c9": "igb",        # 82576: QEMU's igb is this controller
    "8086:10d3": "e1000e",     # 82574L
    "8086:100e": "e1000",      # 82540EM
    "10ec:8139": "rtl8139",
    "1af4:1000": "virtio",     # virtio-net, transitional
    "1af4:1041": "virtio",     # virtio-net, modern
    "15ad:07b0": "vmxnet3",
}
# Other boards of the 82576 (copper quad, fibre, serdes, ET2, NS): the same controller, which QEMU's igb
# shows as 8086:10c9.
SAME_CONTROLLER = {"8086:10e6": "igb", "8086:10e7": "igb", "8086:10e8": "igb", "8086:1526": "igb",
                   "8086:150a": "igb", "8086:1518": "igb", "8086:150d": "igb"}
# Virtual functions known by their IDs (most are also named "... Virtual Function" by pci.ids, which
# hwloc copies into the XML when it has the names): 82576, I350, 82599, X540, X710/XL710, E810.
VF_IDS = frozenset(["8086:10ca", "8086:1520", "8086:10ed", "8086:1515", "8086:154c", "8086:1889"])
# What each emulated model shows the guest.
MODEL_DEVICES = {"igb": "82576, 8086:10c9", "e1000e": "82574L, 8086:10d3", "e1000": "82540EM, 8086:100e",
                 "virtio": "virtio-net, 1af4:1041", "rtl8139": "RTL8139, 10ec:8139", "vmxnet3": "VMXNET3, 15ad:07b0"}
# The emulated model a PF without an exact match becomes: the spec's default NIC, a PCI Express Intel
# controller with a driver in every distribution; a PF with virtual functions becomes an igb.
PLAIN_MODEL = "e1000e"

# Device classes the twin can carry (the first two digits of the PCI class) and how.
CLASSES = {
    "ethernet": ("0200",),
    "infiniband": ("0c06",),
    "network": ("0201", "0202", "0203", "0204", "0205", "0206", "0207", "0280"),
}
DEFAULT_CLASSES = ("ethernet",)
CLASS_NAMES = {
    "00": "unclassified device", "01": "storage controller", "02": "network controller",
    "03": "display controller (GPU)", "04": "multimedia controller", "05": "memory controller",
    "06": "bridge", "07": "communication controller", "08": "system peripheral", "09": "input device",
    "0a": "docking station", "0b": "processor", "0c": "serial bus controller", "0d": "wireless controller",
    "0e": "intelligent controller", "0f": "satellite controller", "10": "encryption controller",
    "11": "signal processing controller", "12": "processing accelerator", "13": "instrumentation",
}
SUBCLASS_NAMES = {
    "0106": "SATA controller", "0107": "SAS controller", "0104": "RAID controller", "0108": "NVMe controller",
    "0200": "Ethernet controller", "0207": "InfiniBand controller", "0280": "network controller",
    "0300": "VGA controller", "0302": "3D controller (GPU)", "0c03": "USB controller",
    "0c06": "InfiniBand controller", "0c05": "SMBus controller", "1200": "processing accelerator",
}


class TwinError(ValueError):
    """A source the twin cannot be made from: ``field``, ``value`` and what is needed."""

    def __init__(self, field, value, need):
        ValueError.__init__(self, "%s: %s; %s" % (field, value, need))
        self.field, self.value, self.need = field, value, need


def _numbers(elements, field):
    values = []
    for element in elements:
        try:
            values.extend(int(word) for word in (element.text or "").split())
        except ValueError:
            raise TwinError(field, (element.text or "")[:60], "hwloc writes whole numbers there")
    return values


def _class_name(code):
    return SUBCLASS_NAMES.get(code, CLASS_NAMES.get(code[:2], "PCI class %s" % code))


def parse_topology(text, field="src"):
    """hwloc XML v2 (or v3) -> {'version', 'product', 'nodes': [{os_index, cpus, memory, subtype}],
    'distances': {'name', 'indexes', 'values'} or None, 'pci': [{busid, class, ids, name, nodes, parent}]}.

    Refuses what is not hwloc XML, v1 (convert it with hwloc 2 first), DTDs other than hwloc's own
    plain line, entities. A PCI function's nodes are the nodeset of its nearest ancestor that has one."""
    try:
        root = xmlengine.parse(text, what="%s (hwloc XML)" % field, doctype="topology")
    except ValueError as exc:  # bytes that are not UTF-8 (XMLSafetyError, not a ValueError, goes through)
        raise TwinError(field, "not XML (%s)" % exc, "give the output of lstopo --of xml")
    if root.tag != "topology":
        raise TwinError(field, "the root element is <%s>" % root.tag,
                        "hwloc XML has <topology> (give the output of lstopo --of xml)")
    version = root.get("version")
    if version is None:
        raise TwinError(field, "hwloc XML v1 (its <topology> has no version)",
                        "convert it with hwloc 2 first: lstopo --input OLD.xml --of xml NEW.xml")
    if version.split(".")[0] not in ("2", "3"):
        raise TwinError(field, "hwloc XML version %s" % version, "versions 2.x and 3.x are read")
    product = None
    for info in root.iter("info"):
        if info.get("name") == "DMIProductName" and (info.get("value") or "").strip():
            product = info.get("value").strip()
            break
    nodes = []
    for obj in root.iter("object"):
        if obj.get("type") != "NUMANode":
            continue
        try:
            os_index = int(obj.get("os_index"))
            memory = int(obj.get("local_memory") or 0)
        except (TypeError, ValueError):
            raise TwinError(field, "a NUMANode with os_index %r and local_memory %r"
                            % (obj.get("os_index"), obj.get("local_memory")), "hwloc writes whole numbers there")
        nodes.append({"os_index": os_index, "cpus": len(validators.bits(obj.get("cpuset"))), "memory": memory,
                      "subtype": obj.get("subtype")})
    if not nodes:
        raise TwinError(field, "no NUMANode object", "an hwloc topology of a machine has at least one NUMA node")
    nodes.sort(key=lambda node: node["os_index"])
    if len(set(node["os_index"] for node in nodes)) != len(nodes):
        raise TwinError(field, "two NUMANode objects with one os_index", "each node has an index of its own")
    pci = []
    for obj in root.iter("object"):
        if obj.get("type") != "PCIDev" or not obj.get("pci_busid"):
            continue
        words = (obj.get("pci_type") or "").split()
        code = words[0].lower() if words else ""
        ids = words[1].strip("[]").lower() if len(words) > 1 else ""
        names = dict((info.get("name"), info.get("value")) for info in obj.findall("info"))
        pci.append({"busid": obj.get("pci_busid").lower(), "class": code, "ids": ids,
                    "name": names.get("PCIDevice") or "", "nodes": validators.local_nodes(obj),
                    "parent": obj.getparent()})
    return {"version": version, "product": product, "nodes": nodes, "pci": pci,
            "distances": _latencies(root, [node["os_index"] for node in nodes], field)}


def _latencies(root, indexes, field):
    """The NUMA nodes' latency matrix (OS indexes) that covers every node: hwloc's 'NUMALatency' (from the
    ACPI SLIT) when there is one, else the first other latency matrix over all nodes; None without one."""
    found = []
    for dist in root.iter("distances2"):
        if dist.get("type") != "NUMANode":
            continue
        try:
            kind, count = int(dist.get("kind") or 0), int(dist.get("nbobjs") or 0)
        except ValueError:
            continue
        if not kind & KIND_MEANS_LATENCY:
            continue
        if (dist.get("indexing") or "os") != "os":
            continue
        order = _numbers(dist.findall("indexes"), field + " distances indexes")
        values = _numbers(dist.findall("u64values"), field + " distances values")
        if len(order) != count or len(values) != count * count or sorted(order) != sorted(indexes):
            continue
        found.append({"name": dist.get("name") or "", "indexes": order, "values": values})
    found.sort(key=lambda matrix: matrix["name"] != "NUMALatency")
    return found[0] if found else None


def _split(total, weights, minimum):
    """``total`` split in proportion to ``weights`` (largest remainders), each share at least ``minimum``."""
    count = len(weights)
    rest = total - minimum * count
    weight = sum(weights)
    if weight <= 0:
        weights, weight = [1] * count, count
    exact = [rest * w / float(weight) for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(count), key=lambda i: (shares[i] - exact[i], i))
    for i in order[:rest - sum(shares)]:
        shares[i] += 1
    return [minimum + share for share in shares]


def _is_vf(function):
    return function["ids"] in VF_IDS or "virtual function" in function["name"].lower()


def _carried(function, classes):
    return any(function["class"] in CLASSES[name] for name in classes)


def _describe(function):
    name = function["name"] or _class_name(function["class"])
    return "%s [%s] %s" % (name, function["ids"], _class_name(function["class"])) if function["name"] \
        else "%s [%s]" % (name, function["ids"])


def make_twin(source, vcpus=8, memory_mib=8192, classes=DEFAULT_CLASSES, nic_models=None):
    """The twin's lab spec and its fidelity rows, from ``parse_topology``'s result.

    ``vcpus`` and ``memory_mib`` are the lab's totals, shared out in the source's proportions (each node at
    least one vCPU and MIN_NODE_MIB); ``classes`` the device classes carried (CLASSES); ``nic_models`` the
    emulated NIC models the hypervisor offers (default: every model the spec knows)."""
    models = set(nic_models) if nic_models is not None else set(NIC_MODELS)
    nodes = source["nodes"]
    if len(nodes) > MAX_NODES:
        raise TwinError("src", "%d NUMA nodes" % len(nodes), "the lab spec allows at most %d NUMA nodes" % MAX_NODES)
    fidelity = []
    lab_of = lab_numbers(nodes)
    wanted_vcpus = vcpus
    vcpus = max(vcpus, len(nodes))
    memory_mib = max(memory_mib, MIN_NODE_MIB * len(nodes))
    cpu_shares = _split(vcpus, [node["cpus"] for node in nodes], 1)
    mem_shares = _split(memory_mib // MEMORY_UNIT_MIB, [node["memory"] for node in nodes], MIN_NODE_MIB // MEMORY_UNIT_MIB)
    cells = []
    for number, node in enumerate(nodes):
        cell = {"cpus": cpu_shares[number], "memory": "%dMiB" % (mem_shares[number] * MEMORY_UNIT_MIB), "nics": []}
        cells.append(cell)
        why = ["%d of the source's CPUs, %d MiB of its memory" % (node["cpus"], node["memory"] // MIB)]
        if node["os_index"] != number:
            why.append("source node %d is the twin's node %d (the lab numbers its nodes from 0)"
                       % (node["os_index"], number))
        if not node["cpus"]:
            why.append("the source node has no CPUs; the lab spec gives every node at least one")
        if not node["memory"]:
            why.append("the source node has no memory; the twin gives it %d MiB" % MIN_NODE_MIB)
        if node["subtype"]:
            why.append("the source's %s memory is ordinary memory in the twin" % node["subtype"])
        if wanted_vcpus < len(nodes) and number == 0:
            why.append("%d vCPUs asked for, %d nodes: one vCPU per node at least" % (wanted_vcpus, len(nodes)))
        shown = "node %d: %d vCPU%s, %s" % (number, cell["cpus"], "s" if cell["cpus"] > 1 else "", cell["memory"])
        fidelity.append({"kind": "node", "source": "node %d" % node["os_index"], "node": number,
                         "outcome": "scaled", "twin": shown, "why": "; ".join(why)})
    _copy_distances(source, cells, lab_of, fidelity)
    _carry_functions(source, cells, lab_of, classes, models, fidelity)
    for row in fidelity:
        row["summary"] = _summary(row)
    return {"numa": cells}, fidelity


def _summary(row):
    """A fidelity row in one line."""
    where = "" if row["node"] is None or row["kind"] == "node" else " (node %d)" % row["node"]
    what = " %s" % row["what"] if row.get("what") else ""
    return "%s %s%s%s: %s -> %s; %s" % (row["kind"], row["source"], what, where, row["outcome"], row["twin"], row["why"])


def lab_numbers(nodes):
    """{os_index: the lab's node number} for a topology's nodes (sorted by OS index: numbered from 0)."""
    return dict((node["os_index"], number) for number, node in enumerate(nodes))


def _copy_distances(source, cells, lab_of, fidelity):
    matrix = source["distances"]
    if matrix is None:
        if len(cells) > 1:
            fidelity.append({"kind": "distances", "source": "none", "node": None, "outcome": "dropped",
                             "twin": "none", "why": "the source has no latency distances between its NUMA nodes; "
                             "the twin's come from QEMU's defaults (10 local, 20 remote)"})
        return
    count = len(matrix["indexes"])
    position = dict((os_index, i) for i, os_index in enumerate(matrix["indexes"]))
    ordered = sorted(lab_of, key=lambda os_index: lab_of[os_index])
    rows = source_rows = [[matrix["values"][position[a] * count + position[b]] for b in ordered] for a in ordered]
    why = ["hwloc's %s matrix" % (matrix["name"] or "latency")]
    local = set(rows[i][i] for i in range(count))
    if local != set([DISTANCE_SELF]):
        base = max(local) or 1
        why.append("local distance %s in the source, scaled to %d as ACPI's SLIT has it"
                   % ("/".join(str(v) for v in sorted(local)), DISTANCE_SELF))
        rows = [[int(round(value * DISTANCE_SELF / float(base))) for value in row] for row in rows]
        for i in range(count):
            rows[i][i] = DISTANCE_SELF
    clamped = [value for row in rows for value in row if value > DISTANCE_MAX or value < DISTANCE_SELF]
    if clamped:
        why.append("%s outside %d-%d, clamped to it" % (", ".join(str(v) for v in sorted(set(clamped))),
                                                        DISTANCE_SELF, DISTANCE_MAX))
        rows = [[min(DISTANCE_MAX, max(DISTANCE_SELF, value)) for value in row] for row in rows]
    for i, cell in enumerate(cells):
        cell["distances"] = rows[i]
    fidelity.append({"kind": "distances", "source": _matrix_text(source_rows), "node": None,
                     "outcome": "kept" if len(why) == 1 else "scaled", "twin": _matrix_text(rows),
                     "why": "; ".join(why)})


def _matrix_text(rows):
    return " / ".join(" ".join(str(value) for value in row) for row in rows)


def _node_of(function, lab_of):
    """The twin's node for a source function, and why when hwloc gives no single node."""
    local = [n for n in function["nodes"] if n in lab_of]
    if len(local) == 1:
        return lab_of[local[0]], None
    first = min(lab_of[n] for n in local) if local else 0
    where = "nodes %s" % ",".join(str(n) for n in function["nodes"]) if local else "no NUMA node"
    return first, ("hwloc makes it local to %s (not one node); the twin puts it on node %d, the first of them"
                   % (where, first) if local else "hwloc makes it local to no NUMA node; the twin puts it on node 0")


def _model_for(function, has_vfs, models):
    """The emulated model of a carried PF, its outcome and why."""
    ids = function["ids"]
    exact = SAME_DEVICE.get(ids)
    if exact and exact in models:
        return exact, "kept", "QEMU's %s is this device (%s)" % (exact, ids)
    family = SAME_CONTROLLER.get(ids)
    if family and family in models:
        return family, "scaled", "another board of the same controller; QEMU's %s shows 8086:10c9" % family
    if has_vfs and "igb" in models:
        return "igb", "scaled", "its virtual functions need an emulated NIC with SR-IOV: igb (8086:10c9)"
    reason = ("the hypervisor's QEMU has no %s" % (exact or family)) if (exact or family) else "QEMU does not emulate it"
    if function["class"] != "0200":
        reason += "; a %s carried as an Ethernet NIC" % _class_name(function["class"])
    model = PLAIN_MODEL if PLAIN_MODEL in models else sorted(models)[0]
    return model, "scaled", "%s: the closest emulated NIC is %s (%s)" % (reason, model, MODEL_DEVICES[model])


def _carry_functions(source, cells, lab_of, classes, models, fidelity):
    functions = source["pci"]
    carried = [f for f in functions if _carried(f, classes)]
    pfs = [f for f in carried if not _is_vf(f)]
    vfs_of = dict((f["busid"], []) for f in pfs)
    orphans = []
    for vf in (f for f in carried if _is_vf(f)):
        pf = _pf_of(vf, pfs)
        (vfs_of[pf["busid"]] if pf is not None else orphans).append(vf)
    for function in functions:
        if _carried(function, classes):
            continue
        node, placed = _node_of(function, lab_of)
        fidelity.append({"kind": "pci", "source": function["busid"], "node": node, "outcome": "dropped",
                         "twin": "none", "what": _describe(function),
                         "why": "%s: a class the twin does not carry (it carries: %s)"
                                % (_class_name(function["class"]), ", ".join(classes))})
    for vf in orphans:
        node, placed = _node_of(vf, lab_of)
        fidelity.append({"kind": "pci", "source": vf["busid"], "node": node, "outcome": "dropped", "twin": "none",
                         "what": _describe(vf), "why": "a virtual function whose physical function is not in the source"})
    for pf in pfs:
        node, placed = _node_of(pf, lab_of)
        cell = cells[node]
        vfs = vfs_of[pf["busid"]]
        if len(cell["nics"]) >= MAX_PORTS_PER_EXPANDER:
            fidelity.append({"kind": "pci", "source": pf["busid"], "node": node, "outcome": "dropped", "twin": "none",
                             "what": _describe(pf), "why": "node %d has %d NICs already, as many as its expander has "
                             "root ports" % (node, MAX_PORTS_PER_EXPANDER)})
            continue
        model, outcome, why = _model_for(pf, bool(vfs), models)
        notes = [why]
        if placed:
            notes.append(placed)
            outcome = "placed" if outcome == "kept" else outcome
        nic = {"model": model}
        if vfs:
            kept = min(len(vfs), SRIOV_MODELS.get(model, 0))
            if kept:
                nic["vfs"] = kept
            if kept < len(vfs):
                notes.append("%d virtual functions in the source, %d in the twin (%s)"
                             % (len(vfs), kept, "Linux's igb driver enables at most %d" % SRIOV_MODELS["igb"]
                                if model in SRIOV_MODELS else "%s has no SR-IOV" % model))
                outcome = "scaled"
        cell["nics"].append(nic)
        fidelity.append({"kind": "pci", "source": pf["busid"], "node": node, "outcome": outcome,
                         "twin": "node %d NIC %d: %s%s" % (node, len(cell["nics"]) - 1, model,
                                                           " with %d VFs" % nic["vfs"] if nic.get("vfs") else ""),
                         "nic": len(cell["nics"]) - 1, "vfs": nic.get("vfs", 0),
                         "what": _describe(pf), "why": "; ".join(notes)})
        for number, vf in enumerate(vfs):
            in_twin = number < nic.get("vfs", 0)
            fidelity.append({"kind": "pci", "source": vf["busid"], "node": node,
                             "outcome": "kept" if in_twin else "dropped",
                             "twin": "a VF of node %d NIC %d" % (node, len(cell["nics"]) - 1) if in_twin else "none",
                             "what": _describe(vf), "why": "a virtual function of %s" % pf["busid"]})


def _pf_of(vf, pfs):
    """A VF's physical function: the carried PF of the same vendor under the same parent (the bridge the
    VFs share with it), the last one before it; else one of the same vendor on the same nodes."""
    vendor = vf["ids"].split(":")[0]
    same_vendor = [pf for pf in pfs if pf["ids"].split(":")[0] == vendor]
    siblings = [pf for pf in same_vendor if pf["parent"] is vf["parent"] and pf["busid"] < vf["busid"]]
    if siblings:
        return siblings[-1]
    nearby = [pf for pf in same_vendor if pf["nodes"] == vf["nodes"]]
    return nearby[0] if nearby else None


def ethernet_per_node(parsed, lab_of=None):
    """{node: [busid, ...]} of the Ethernet functions (PFs) of a parsed topology, by lab node number."""
    lab_of = lab_of or lab_numbers(parsed["nodes"])
    found = {}
    for function in parsed["pci"]:
        if function["class"] == "0200" and not _is_vf(function):
            found.setdefault(_node_of(function, lab_of)[0], []).append(function["busid"])
    return found


def compare(source, fidelity, twin, plan_nics):
    """What the twin's own lstopo (``twin``, parse_topology of L1's XML) shows against the source and the
    fidelity rows: rows {check, source, twin, ok}. ``plan_nics``: the lab's NICs in spec order, each
    {address, node} (the lab report's guest.nics)."""
    rows = []
    rows.append({"check": "NUMA nodes", "source": len(source["nodes"]), "twin": len(twin["nodes"]),
                 "ok": len(source["nodes"]) == len(twin["nodes"])})
    want = [row for row in fidelity if row["kind"] == "distances" and row["outcome"] != "dropped"]
    if want:
        got = twin["distances"]
        size = len(got["indexes"]) if got else 0
        shown = _matrix_text([got["values"][i * size:(i + 1) * size] for i in range(size)]) if got else "none"
        # the twin shows the spec's distances: the source's, or as the fidelity row scaled them
        rows.append({"check": "distances", "source": want[0]["twin"], "twin": shown, "ok": shown == want[0]["twin"]})
    by_node = {}
    for nic in plan_nics:
        by_node.setdefault(nic["node"], []).append(nic["address"].lower())
    seen = dict((f["busid"], f) for f in twin["pci"])
    twin_lab_of = lab_numbers(twin["nodes"])
    for row in fidelity:
        if row["kind"] != "pci" or "nic" not in row:
            continue
        addresses = by_node.get(row["node"], [])
        address = addresses[row["nic"]] if row["nic"] < len(addresses) else None
        got = seen.get(address) if address else None
        node = _node_of(got, twin_lab_of)[0] if got and len(got["nodes"]) == 1 else None
        vfs = validators.virtual_functions({"pci": seen}, address) if address else []
        rows.append({"check": "%s on its node" % row["source"], "source": "node %d" % row["node"],
                     "twin": "%s on node %s" % (address, node) if got else "%s not shown" % address,
                     "ok": node == row["node"]})
        if row["vfs"]:
            rows.append({"check": "%s virtual functions" % row["source"], "source": row["vfs"], "twin": len(vfs),
                         "ok": len(vfs) == row["vfs"]})
    for row in rows:
        verdict = "ok" if row["ok"] else "DIFFERS"
        row["summary"] = "%s: source %s, twin %s (%s)" % (row["check"], row["source"], row["twin"], verdict)
    return rows
