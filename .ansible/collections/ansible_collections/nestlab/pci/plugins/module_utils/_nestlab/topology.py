# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device builders and the whole-lab apply: plan -> edits of a Domain. No I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import pci_address
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import LAB_PREFIX, make_plan
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import xml_int
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import E, find_by_alias

LAB_IOMMU_ALIAS = LAB_PREFIX + "iommu"


def expander_element(index, slot, bus_nr, node):
    return E("controller", {"type": "pci", "index": index, "model": "pcie-expander-bus"}, [
        E("target", {"busNr": bus_nr}, [E("node", text=node)]),
        pci_address(0, slot),
    ])


def root_port_element(index, parent_index, slot):
    return E("controller", {"type": "pci", "index": index, "model": "pcie-root-port"}, [
        pci_address(parent_index, slot),
    ])


def nic_element(mac, model, bus):
    # user-mode (SLIRP) networking: no TAP devices on the host, as in the seed
    return E("interface", {"type": "user"}, [
        E("mac", {"address": mac}),
        E("model", {"type": model}),
        pci_address(bus, 0),
    ])


def accel_settings(accel):
    """Domain type and CPU mode for an accelerator: host-passthrough needs KVM."""
    if accel == "kvm":
        return "kvm", "host-passthrough"
    return "qemu", "maximum"


def apply_lab(dom, spec, lab, accel):
    """Bring ``dom`` to ``spec``. Returns (plan, nic models that are added or changed)."""
    plan = make_plan(spec, lab, dom.inventory(LAB_PREFIX))
    domain_type, cpu_mode = accel_settings(accel)
    dom.ensure_domain_type(domain_type)
    dom.ensure_cpu_mode(cpu_mode)
    dom.ensure_numa(plan["cells"], plan["vcpus"])
    wanted = set()
    new_models = set()
    for exp in plan["expanders"]:
        wanted.add(exp["alias"])
        dom.ensure_device(exp["alias"], expander_element(exp["index"], exp["slot"], exp["bus_nr"], exp["node"]))
        for port in exp["root_ports"]:
            wanted.add(port["alias"])
            dom.ensure_device(port["alias"], root_port_element(port["index"], exp["index"], port["slot"]))
            nic = port["nic"]
            wanted.add(nic["alias"])
            if dom.ensure_device(nic["alias"], nic_element(nic["mac"], nic["model"], port["index"])):
                new_models.add(nic["model"])
    for elem in dom.owned(LAB_PREFIX):
        alias = dom.alias_of(elem)
        if alias not in wanted and alias != LAB_IOMMU_ALIAS:
            dom.devices.remove(elem)
    dom.ensure_iommu(spec["iommu"], LAB_IOMMU_ALIAS)
    return plan, sorted(new_models)


def pci_tree(dom):
    """Text drawing of the PCI controllers, like the seed's 'pcie-root (index == 0)' tree."""
    ctrls = dict((xml_int(c.get("index")), c) for c in dom.controllers())
    children = {}
    for index, ctrl in sorted(ctrls.items()):
        addr = dom.address_of(ctrl)
        parent = addr["bus"] if addr is not None else (0 if index else None)
        if index == 0:
            continue
        children.setdefault(parent, []).append(index)
    endpoints = {}
    for elem in dom.devices:
        if elem.tag == "controller" and elem.get("type") == "pci":
            continue
        addr = dom.address_of(elem)
        if addr is not None:
            endpoints.setdefault(addr["bus"], []).append(elem)

    def label(index):
        ctrl = ctrls[index]
        extra = ""
        node = ctrl.find("target/node")
        if node is not None:
            extra = ", numa node == %s" % node.text.strip()
        bus_nr = ctrl.find("target")
        if bus_nr is not None and bus_nr.get("busNr"):
            extra += ", busNr == %s" % bus_nr.get("busNr")
        text = "%s (index == %d%s)" % (ctrl.get("model"), index, extra)
        for dev in endpoints.get(index, []):
            model = dev.find("model")
            kind = model.get("type") if model is not None and model.get("type") else dev.get("type", dev.tag)
            text += " -> %s %s" % (dev.tag, kind) if kind != dev.tag else " -> %s" % dev.tag
        return text

    lines = []

    def walk(index, prefix):
        # a bare '|' line opens each group and follows every sibling that had children
        kids = children.get(index, [])
        for pos, kid in enumerate(kids):
            if pos == 0 or children.get(kids[pos - 1]):
                lines.append(prefix + "|")
            lines.append(prefix + "+- " + label(kid))
            walk(kid, prefix + ("     " if pos == len(kids) - 1 else "|    "))

    if 0 in ctrls:
        lines.append("%s (index == 0)" % ctrls[0].get("model"))
        walk(0, "  ")
    return "\n".join(lines)


def find_owned(dom, alias):
    return find_by_alias(dom.root, alias)
