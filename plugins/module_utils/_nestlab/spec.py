# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab spec: defaults (the seed's lab), validation and normalisation. Pure code."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import (
    SIZE_HELP,
    format_cpuset,
    parse_cpuset,
    parse_size_bytes,
)

# The seed's lab: 3 nodes with 4/2/2 CPUs and 4/2/2 GiB, three e1000e per node, Intel vIOMMU;
# inside L1, 512/256/256 MiB of 2 MiB huge pages per node.
DEFAULT_SPEC = {
    "accel": "auto",
    "nested_virt": "auto",
    "nic_model": "e1000e",
    "numa": [
        {"cpus": 4, "memory": "4GiB", "nics": 3, "hugepages": 256},
        {"cpus": 2, "memory": "2GiB", "nics": 3, "hugepages": 128},
        {"cpus": 2, "memory": "2GiB", "nics": 3, "hugepages": 128},
    ],
    "iommu": {"model": "intel", "intremap": True, "caching_mode": True, "eim": False},
}

# Guest-visible NIC models and the QEMU device each needs.
NIC_MODELS = {
    "e1000e": "e1000e",
    "igb": "igb",
    "virtio": "virtio-net-pci",
    "e1000": "e1000",
    "rtl8139": "rtl8139",
    "vmxnet3": "vmxnet3",
}
# For messages only (features are detected, never inferred from versions): what a model is, and
# the first QEMU and libvirt releases that have it, where that is newer than the collection needs.
NIC_MODEL_NOTES = {
    "igb": {"what": "the igb NIC (82576 with SR-IOV virtual functions)", "qemu": "8.0", "libvirt": "9.3"},
}
# Models with SR-IOV, and the most virtual functions the guest's driver enables per physical
# function (QEMU's igb offers 8; Linux's igb driver enables at most 7).
SRIOV_MODELS = {"igb": 7}
ACCELS = ("auto", "kvm", "tcg")
# Whether the guest CPU offers vmx/svm (topology.nested_virt_exposed): auto offers them under KVM and TCG alike.
NESTED_VIRT = ("auto", "on", "off")
IOMMU_MODELS = ("intel", "amd", "virtio")
# auto: the vIOMMU of the vendor L1's CPU shows, intel or amd (target.choose_iommu_model), chosen where the
# domain is defined
IOMMU_CHOICES = IOMMU_MODELS + ("auto",)
# the models with interrupt remapping (the rest of the switches are the intel vIOMMU's alone)
IOMMU_INTREMAP_MODELS = ("intel", "amd")
MAX_NODES = 16
# One root port per slot of an expander's bus: slots 0x00-0x1f.
MAX_PORTS_PER_EXPANDER = 32
# Above 255 vCPUs x2APIC needs interrupt remapping in EIM mode; QEMU's q35 stops at 288.
MAX_VCPUS_XAPIC = 255
MAX_VCPUS = 288
MIN_CELL_MEMORY = 64 * 1024 * 1024

_TOP_KEYS = ("name", "accel", "nested_virt", "nic_model", "numa", "iommu", "vcpus", "machine")
_NODE_KEYS = ("cpus", "memory", "nics", "nic_model", "vfs", "distances", "hugepages")
_NIC_KEYS = ("model", "mac", "vfs", "wire")
_WIRE_KEYS = ("port", "peer_port")
# A wired NIC's UDP ports on 127.0.0.1: above the privileged ones
MIN_WIRE_PORT = 1024
_IOMMU_KEYS = ("model", "intremap", "caching_mode", "eim")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def _sub(field, key):
    return "%s.%s" % (field, key) if field else key


def _unknown_keys(data, allowed, field):
    for key in data:
        if key not in allowed:
            raise SpecError(_sub(field, key), data[key],
                            "unknown key; allowed keys: %s" % ", ".join(allowed))


def _want_bool(value, field):
    if not isinstance(value, bool):
        raise SpecError(field, value, "give true or false")
    return value


def _want_int(value, field, low, high, what="a whole number"):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(field, value, "give %s from %d to %d" % (what, low, high))
    return value


def normalise_mac(value, field):
    """Lower-case, colon-separated, unicast; error names the field otherwise."""
    if not isinstance(value, str) or not _MAC.match(value.lower().replace("-", ":")):
        raise SpecError(field, value, "give a MAC address such as '52:54:00:7e:6e:c6'")
    mac = value.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise SpecError(field, value, "a NIC needs a unicast MAC: the first octet must be even")
    return mac


def nic_model_help():
    return "allowed models: %s" % ", ".join(sorted(NIC_MODELS))


def nic_model_requirement(model):
    """{name, what}: the QEMU device a NIC model needs, worded for a preflight that finds it missing."""
    note = NIC_MODEL_NOTES.get(model)
    what = ("%s, in QEMU >= %s and libvirt >= %s" % (note["what"], note["qemu"], note["libvirt"]) if note
            else "the %s NIC" % model)
    return {"name": NIC_MODELS.get(model, model), "what": what}


def validate_nic_model(value, field):
    if value not in NIC_MODELS:
        raise SpecError(field, value, nic_model_help())
    return value


def validate_spec(raw, field="spec"):
    """Return the normalised spec for ``raw`` (None means the defaults).

    Raises SpecError for the first problem, naming its field (``spec.numa[1].memory``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(field, raw, "give a mapping (keys: %s)" % ", ".join(_TOP_KEYS))
    _unknown_keys(raw, _TOP_KEYS, field)
    data = copy.deepcopy(DEFAULT_SPEC)
    data.update(copy.deepcopy(raw))

    spec = {}
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        raise SpecError(field + ".name", name,
                        "give 1-64 characters: letters, digits, '_', '.', '+', '-', starting with a letter or digit")
    spec["name"] = name

    if data["accel"] not in ACCELS:
        raise SpecError(field + ".accel", data["accel"], "allowed: %s" % ", ".join(ACCELS))
    spec["accel"] = data["accel"]
    if data["nested_virt"] not in NESTED_VIRT:
        raise SpecError(field + ".nested_virt", data["nested_virt"],
                        "allowed: %s (auto: vmx/svm in the guest only under KVM)" % ", ".join(NESTED_VIRT))
    spec["nested_virt"] = data["nested_virt"]

    machine = data.get("machine", "q35")
    if not isinstance(machine, str) or not (machine == "q35" or machine.startswith("pc-q35-")):
        raise SpecError(field + ".machine", machine,
                        "PCIe expander buses and the vIOMMU need a q35 machine: give 'q35' or 'pc-q35-<version>'")
    spec["machine"] = machine

    spec["nic_model"] = validate_nic_model(data["nic_model"], field + ".nic_model")
    spec["iommu"] = validate_iommu(data["iommu"], field + ".iommu")
    spec["numa"], spec["vcpus"] = validate_cells(
        data["numa"], field + ".numa", field + ".vcpus", data.get("vcpus"),
        eim=bool(spec["iommu"] and spec["iommu"]["eim"]), nic_model=spec["nic_model"])
    return spec


def validate_cells(cells, field, vcpus_field, vcpus=None, eim=False, nic_model="e1000e"):
    """Validate NUMA nodes and the vCPU count together. Returns (cells, vcpus)."""
    cells = _validate_numa(cells, field, nic_model)
    used = sorted(cpu for cell in cells for cpu in cell["cpus"])
    if vcpus is None:
        vcpus = used[-1] + 1 if used else 0
    limit = MAX_VCPUS if eim else MAX_VCPUS_XAPIC
    _want_int(vcpus, vcpus_field, 1, limit,
              "a vCPU count (above %d needs iommu.eim: true)" % MAX_VCPUS_XAPIC if limit == MAX_VCPUS_XAPIC
              else "a vCPU count")
    if used and used[-1] >= vcpus:
        # the count given is what disagrees with the nodes (without one, it follows from them)
        raise SpecError(vcpus_field, vcpus, "the NUMA nodes give CPUs %s (%s), up to CPU %d; give %d or more vCPUs, "
                        "or fewer CPUs per node" % (format_cpuset(used), field, used[-1], used[-1] + 1))
    missing = sorted(set(range(vcpus)) - set(used))
    if missing:
        raise SpecError(vcpus_field, vcpus,
                        "CPUs %s belong to no NUMA node; every vCPU must be in one node" % format_cpuset(missing))
    return cells, vcpus


def validate_iommu(value, field):
    """The vIOMMU settings on their own (the iommu module); defaults depend on the model."""
    defaults = {"intel": DEFAULT_SPEC["iommu"], "amd": {"model": "amd", "intremap": True},
                "auto": {"model": "auto", "intremap": True}}
    if isinstance(value, dict) and value.get("model", "intel") in defaults:
        merged = dict(defaults[value.get("model", "intel")])
        merged.update(value)
        value = merged
    return _validate_iommu(value, field)


def chosen_iommu(iommu, model):
    """The settings of an ``iommu`` with model auto once ``model`` (intel or amd) is chosen: that model's
    defaults (intel: caching mode on) with the interrupt remapping asked for."""
    return validate_iommu({"model": model, "intremap": iommu["intremap"]}, "iommu")


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")


def validate_id(value, field="id"):
    """Ids become part of a libvirt user alias (ua-nestlab-<kind>-<id>)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise SpecError(field, value, "give 1-48 characters: letters, digits, '_' or '-', starting with a letter or digit")
    return value


def _validate_iommu(value, field):
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise SpecError(field, value, "give a mapping with keys %s, or null for no vIOMMU" % ", ".join(_IOMMU_KEYS))
    _unknown_keys(value, _IOMMU_KEYS, field)
    model = value.get("model")
    if model not in IOMMU_CHOICES:
        raise SpecError(_sub(field, "model"), model, "allowed on x86 q35: %s" % ", ".join(IOMMU_CHOICES))
    out = {"model": model}
    for key in ("intremap", "caching_mode", "eim"):
        out[key] = _want_bool(value.get(key, False), _sub(field, key))
    if out["intremap"] and model not in IOMMU_INTREMAP_MODELS + ("auto",):
        raise SpecError(_sub(field, "intremap"), True, "only the %s vIOMMUs have intremap; set it false or use "
                        "model %s" % (" and ".join(IOMMU_INTREMAP_MODELS), " or ".join(IOMMU_INTREMAP_MODELS)))
    if model != "intel":
        for key in ("caching_mode", "eim"):
            if out[key]:
                raise SpecError(_sub(field, key), True,
                                "only the intel vIOMMU has %s; set it false or use model intel%s"
                                % (key, " (auto may choose amd)" if model == "auto" else ""))
    if out["eim"] and not out["intremap"]:
        raise SpecError(_sub(field, "eim"), True, "eim (extended interrupt mode) needs intremap: true")
    return out


def _validate_numa(value, field, nic_model):
    if not isinstance(value, list) or not value:
        raise SpecError(field, value, "give a list of 1 to %d nodes, each {cpus, memory, nics}" % MAX_NODES)
    if len(value) > MAX_NODES:
        raise SpecError(field, "%d nodes" % len(value), "at most %d NUMA nodes are supported" % MAX_NODES)
    cells = []
    next_cpu = 0
    explicit = [isinstance(node, dict) and isinstance(node.get("cpus"), str) for node in value]
    if any(explicit) and not all(explicit):
        raise SpecError(field, "mixed", "give cpus as counts in every node or as CPU sets ('0-3') in every node")
    seen = {}
    for idx, node in enumerate(value):
        nfield = "%s[%d]" % (field, idx)
        if not isinstance(node, dict):
            raise SpecError(nfield, node, "give a mapping with keys %s" % ", ".join(_NODE_KEYS))
        _unknown_keys(node, _NODE_KEYS, nfield)
        for key in ("cpus", "memory"):
            if key not in node:
                raise SpecError("%s.%s" % (nfield, key), None, "required")
        cpus_raw = node["cpus"]
        if isinstance(cpus_raw, str):
            try:
                cpus = parse_cpuset(cpus_raw)
            except ValueError as exc:
                raise SpecError(nfield + ".cpus", cpus_raw, "give a CPU set such as '0-3' or '4,6' (%s)" % exc)
            for cpu in cpus:
                if cpu in seen:
                    raise SpecError(nfield + ".cpus", cpus_raw,
                                    "CPU %d is already in node %d; nodes must not overlap" % (cpu, seen[cpu]))
                if cpu > MAX_VCPUS - 1:
                    raise SpecError(nfield + ".cpus", cpus_raw, "CPU %d is out of range (0-%d)" % (cpu, MAX_VCPUS - 1))
                seen[cpu] = idx
        else:
            count = _want_int(cpus_raw, nfield + ".cpus", 1, MAX_VCPUS, "a CPU count or a CPU set such as '0-3'")
            cpus = list(range(next_cpu, next_cpu + count))
            next_cpu += count
        try:
            memory = parse_size_bytes(node["memory"])
        except ValueError:
            raise SpecError(nfield + ".memory", node["memory"], SIZE_HELP)
        if memory < MIN_CELL_MEMORY:
            raise SpecError(nfield + ".memory", node["memory"],
                            "each node needs at least 64MiB (a node with no memory cannot boot a Linux guest)")
        if memory % 1024:
            raise SpecError(nfield + ".memory", node["memory"], "give a whole number of KiB")
        node_model = validate_nic_model(node.get("nic_model", nic_model), nfield + ".nic_model")
        nics = _validate_nics(node.get("nics", 0), nfield + ".nics", node_model, node.get("vfs"), nfield + ".vfs")
        cells.append({"id": idx, "cpus": cpus, "memory_kib": memory // 1024, "nics": nics,
                      "distances": node.get("distances"), "hugepages": node.get("hugepages")})
    for cell in cells:
        cell["distances"] = _validate_distances(cell["distances"], "%s[%d].distances" % (field, cell["id"]),
                                                cell["id"], len(cells))
        if cell["hugepages"] is not None:
            cell["hugepages"] = _want_int(cell["hugepages"], "%s[%d].hugepages" % (field, cell["id"]), 0, 10 ** 7,
                                          "a number of 2 MiB pages")
            if cell["hugepages"] * 2048 > cell["memory_kib"] // 2:
                raise SpecError("%s[%d].hugepages" % (field, cell["id"]), cell["hugepages"],
                                "at most %d pages of 2 MiB: huge pages may take half of the node's memory (%d MiB)"
                                % (cell["memory_kib"] // 4096, cell["memory_kib"] // 1024))
    macs = {}
    for cell in cells:
        for number, nic in enumerate(cell["nics"]):
            if nic["mac"] is None:
                continue
            where = "%s[%d].nics[%d].mac" % (field, cell["id"], number)
            if nic["mac"] in macs:
                raise SpecError(where, nic["mac"], "%s has it already; every NIC needs a MAC address of its own"
                                % macs[nic["mac"]])
            macs[nic["mac"]] = where
    ports = {}
    for cell in cells:
        for number, nic in enumerate(cell["nics"]):
            if nic.get("wire") is None:
                continue
            where = "%s[%d].nics[%d].wire.port" % (field, cell["id"], number)
            if nic["wire"]["port"] in ports:
                raise SpecError(where, nic["wire"]["port"], "%s has it already; every wired NIC needs a UDP port "
                                "of its own" % ports[nic["wire"]["port"]])
            ports[nic["wire"]["port"]] = where
    given = [cell["id"] for cell in cells if cell["distances"] is not None]
    if given and len(given) != len(cells):
        missing = [cell["id"] for cell in cells if cell["distances"] is None]
        raise SpecError("%s[%d].distances" % (field, missing[0]), None,
                        "give distances for every node or for none (nodes %s have them)" % given)
    return cells


def _validate_vfs(value, field, model):
    """The number of virtual functions a NIC of ``model`` gets (0 when ``value`` is None)."""
    if value is None:
        return 0
    if model not in SRIOV_MODELS:
        if value == 0:
            return 0
        raise SpecError(field, value, "%s NICs have no virtual functions; SR-IOV needs nic_model %s"
                        % (model, " or ".join(sorted(SRIOV_MODELS))))
    return _want_int(value, field, 0, SRIOV_MODELS[model],
                     "a number of virtual functions from 0 to %d (the guest's %s driver enables at most %d)"
                     % (SRIOV_MODELS[model], model, SRIOV_MODELS[model]))


def _validate_nics(value, field, nic_model, node_vfs=None, vfs_field=None):
    """The node's NICs: [{model, mac, vfs}]. ``node_vfs`` is the node's own ``vfs`` (for its NICs)."""
    if isinstance(value, list):
        nics = []
        for idx, nic in enumerate(value):
            nfield = "%s[%d]" % (field, idx)
            if nic is None:
                nic = {}
            if not isinstance(nic, dict):
                raise SpecError(nfield, nic, "give a mapping with keys %s (all optional)" % ", ".join(_NIC_KEYS))
            _unknown_keys(nic, _NIC_KEYS, nfield)
            model = validate_nic_model(nic.get("model", nic_model), nfield + ".model")
            mac = normalise_mac(nic["mac"], nfield + ".mac") if nic.get("mac") is not None else None
            if nic.get("vfs") is not None:
                vfs = _validate_vfs(nic["vfs"], nfield + ".vfs", model)
            else:
                vfs = _validate_vfs(node_vfs if model in SRIOV_MODELS else None, vfs_field, model)
            nics.append({"model": model, "mac": mac, "vfs": vfs})
            if nic.get("wire") is not None:
                nics[-1]["wire"] = _validate_wire(nic["wire"], nfield + ".wire")
        if not any(nic["model"] in SRIOV_MODELS for nic in nics):
            # the node's vfs applied to none of its NICs: refuse it as it stands
            _validate_vfs(node_vfs, vfs_field, nics[0]["model"] if nics else nic_model)
    else:
        count = _want_int(value, field, 0, 10 ** 6, "a NIC count or a list of {model, mac, vfs}")
        vfs = _validate_vfs(node_vfs, vfs_field, nic_model)
        nics = [{"model": nic_model, "mac": None, "vfs": vfs} for dummy in range(count)]
    if len(nics) > MAX_PORTS_PER_EXPANDER:
        raise SpecError(field, len(nics),
                        "one expander bus holds at most %d root ports (one NIC each); "
                        "split the NICs over more nodes" % MAX_PORTS_PER_EXPANDER)
    return nics


def _validate_wire(value, field):
    """A NIC wired point to point over UDP on 127.0.0.1: {port (this NIC's), peer_port (the other end's)}."""
    if not isinstance(value, dict):
        raise SpecError(field, value, "give {port, peer_port}: this NIC's UDP port on 127.0.0.1 and its peer's")
    _unknown_keys(value, _WIRE_KEYS, field)
    wire = {}
    for key in _WIRE_KEYS:
        if key not in value:
            raise SpecError("%s.%s" % (field, key), None, "required: a UDP port on 127.0.0.1, %d-65535" % MIN_WIRE_PORT)
        wire[key] = _want_int(value[key], "%s.%s" % (field, key), MIN_WIRE_PORT, 65535, "a UDP port on 127.0.0.1")
    if wire["port"] == wire["peer_port"]:
        raise SpecError(field + ".peer_port", wire["peer_port"], "the peer's port must differ from this NIC's port")
    return wire


def _validate_distances(value, field, node_id, count):
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != count:
        raise SpecError(field, value, "give a list of %d distances, one per node" % count)
    for idx, dist in enumerate(value):
        _want_int(dist, "%s[%d]" % (field, idx), 10, 255, "a distance")
    if value[node_id] != 10:
        raise SpecError("%s[%d]" % (field, node_id), value[node_id], "a node's distance to itself must be 10")
    return list(value)
