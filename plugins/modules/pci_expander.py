# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: pci_expander
short_description: Ensure a PCIe expander bus bound to a NUMA node in a libvirt domain
version_added: 0.1.0
description:
  - Ensures one C(pcie-expander-bus) controller (QEMU's C(pxb-pcie)) on C(pcie-root), bound to
    a guest NUMA node, identified by the user alias C(ua-nestlab-pxb-<id>).
  - For people who compose their own topology; M(nestlab.pci.lab_topology) does this for a whole lab.
  - An expander owns the bus numbers from its C(busNr) up to the next expander's; it needs one for
    itself and one per root port behind it. The guest sees the expander's devices at bus C(busNr).
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  id:
    description: Identifier of the expander; the alias is C(ua-nestlab-pxb-<id>).
    type: str
    required: true
  node:
    description: Guest NUMA node the expander belongs to; it must exist in the domain's C(<cpu><numa>).
    type: int
  bus_nr:
    description:
      - First bus number (1-254). By default an existing expander keeps its own; a new one takes
        the first free of 180, 200, 220, 240, 160, 140, ... (the recipe's layout).
    type: int
  state:
    description: V(absent) removes the expander; it must have nothing behind it.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: An expander on NUMA node 1 at bus 0xc8
  nestlab.pci.pci_expander:
    name: mylab
    id: node1
    node: 1
    bus_nr: 200
"""

RETURN = r"""
expander:
  description: The expander as defined.
  returned: when O(state=present)
  type: dict
  sample: {alias: ua-nestlab-pxb-node1, index: 5, bus_nr: 200, guest_bus: "0000:c8", node: 1, slot: 3}
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import (
    find_controller_by_alias,
    free_index,
    free_slot,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import ALIAS_PREFIX, ROOT_SLOTS
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_id
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import expander_element
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import xml_int

AUTO_BUS_NRS = (180, 200, 220, 240) + tuple(range(160, 0, -20))


class PciExpander(DomainEditModule):

    def prepare(self):
        self.alias = ALIAS_PREFIX + "pxb-" + validate_id(self.params["id"])
        bus_nr = self.params["bus_nr"]
        if bus_nr is not None and not 1 <= bus_nr <= 254:
            raise SpecError("bus_nr", bus_nr, "give a bus number from 1 to 254")
        if self.params["state"] == "present" and self.params["node"] is None:
            raise SpecError("node", None, "required when state is present")

    def edit(self, dom):
        existing = find_controller_by_alias(dom, self.alias)
        if self.params["state"] == "absent":
            if existing is not None:
                behind = dom.children_of(xml_int(existing.get("index")))
                if behind:
                    raise SpecError("state", "absent", "expander %s still has %d device(s) behind it; remove them "
                                    "first" % (self.alias, len(behind)))
                dom.remove_device(self.alias)
            self.expander = None
            return
        if not dom.is_q35:
            raise SpecError("name", dom.name, "pcie-expander-bus needs a q35 machine; the domain is %r" % dom.machine)
        node = self.params["node"]
        nodes = dom.numa_node_ids()
        if node not in nodes:
            raise SpecError("node", node, "domain %r has NUMA nodes %s; add the node first (nestlab.pci.numa)"
                            % (dom.name, nodes or "none"))
        others = [r for r in dom.expander_ranges() if r[2] != self.alias]
        ports = len(dom.children_of(xml_int(existing.get("index")))) if existing is not None else 0
        need = 1 + ports

        def free(first):
            last = first + need - 1
            return 1 <= first and last <= 255 and not any(
                not (last < o_first or first > o_last) for o_first, o_last, dummy in others) and not any(
                o_first > first and o_first <= last for o_first, dummy, dummy2 in others)

        bus_nr = self.params["bus_nr"]
        if bus_nr is None and existing is not None:
            bus_nr = xml_int(existing.find("target").get("busNr"))
        if bus_nr is None:
            bus_nr = next((c for c in AUTO_BUS_NRS if free(c) and c > dom.root_bus_count()), None)
            if bus_nr is None:
                raise SpecError("bus_nr", None, "no free bus range is left for another expander; give bus_nr")
        elif not free(bus_nr):
            raise SpecError("bus_nr", bus_nr, "buses %d-%d overlap another expander (%s); pick a range clear of them"
                            % (bus_nr, bus_nr + need - 1,
                               ", ".join("%s at %d-%d" % (o[2], o[0], o[1]) for o in others)))
        if existing is not None:
            index = xml_int(existing.get("index"))
            slot = dom.address_of(existing)["slot"] if dom.address_of(existing) else None
        else:
            index = free_index(dom)
            slot = free_slot(dom, 0, ROOT_SLOTS)
            if slot is None:
                raise SpecError("id", self.params["id"], "pcie-root has no free slot for another expander")
        dom.ensure_device(self.alias, expander_element(index, slot, bus_nr, node))
        self.expander = {"alias": self.alias, "index": index, "slot": slot, "bus_nr": bus_nr,
                         "guest_bus": "0000:%02x" % bus_nr, "node": node}

    def finish(self, dom, changed):
        if self.expander:
            self.result["expander"] = self.expander


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            id=dict(type="str", required=True),
            node=dict(type="int"),
            bus_nr=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        **TARGET_MODULE_KWARGS
    )
    PciExpander(module).run()


if __name__ == "__main__":
    main()
