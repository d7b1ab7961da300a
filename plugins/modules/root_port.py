# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: root_port
short_description: Ensure a PCIe root port on an expander bus (or on pcie-root) in a libvirt domain
version_added: 0.1.0
description:
  - Ensures one C(pcie-root-port) controller, identified by the user alias C(ua-nestlab-rp-<id>),
    plugged into an expander made by M(nestlab.pci.pci_expander) or M(nestlab.pci.lab_topology),
    or into C(pcie-root).
  - One endpoint device fits behind a root port (slot 0 of its bus). Attach a device by giving it
    the address C(bus=<index>) with the index that RV(root_port) returns.
  - Refuses a port that would not fit. An expander's bus holds 32 ports, and every port needs a
    bus number below the next expander's C(busNr).
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  id:
    description: Identifier of the root port; the alias is C(ua-nestlab-rp-<id>).
    type: str
    required: true
  expander:
    description:
      - The expander to plug into, by the O(nestlab.pci.pci_expander#module:id) it was made with, or
        by its full alias (C(ua-nestlab-lab-pxb0)), or V(pcie-root).
      - Required when O(state=present).
    type: str
  state:
    description: V(absent) removes the root port; nothing may be plugged into it.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Two root ports on the node1 expander
  nestlab.pci.root_port:
    name: mylab
    id: "node1-{{ item }}"
    expander: node1
  loop: [0, 1]
"""

RETURN = r"""
root_port:
  description: The root port as defined, and the bus the guest will see behind it.
  returned: when O(state=present)
  type: dict
  sample: {alias: ua-nestlab-rp-node1-0, index: 7, expander: ua-nestlab-pxb-node1, slot: 0, guest_bus: "0000:c9"}
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
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import MAX_PORTS_PER_EXPANDER, validate_id
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import root_port_element
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import xml_int


class RootPort(DomainEditModule):

    def prepare(self):
        self.alias = ALIAS_PREFIX + "rp-" + validate_id(self.params["id"])
        if self.params["state"] == "present" and not self.params["expander"]:
            raise SpecError("expander", None, "required when state is present: an expander id, alias or pcie-root")

    def _parent(self, dom):
        wanted = self.params["expander"]
        if wanted == "pcie-root":
            return dom.controller_by_index(0), 0
        for alias in (wanted, ALIAS_PREFIX + "pxb-" + wanted):
            ctrl = find_controller_by_alias(dom, alias)
            if ctrl is not None and ctrl.get("model") == "pcie-expander-bus":
                return ctrl, xml_int(ctrl.get("index"))
        known = [dom.alias_of(c) for c in dom.controllers("pcie-expander-bus") if dom.alias_of(c)]
        raise SpecError("expander", wanted, "no such expander in domain %r; expanders: %s, or pcie-root"
                        % (dom.name, ", ".join(known) or "none"))

    def edit(self, dom):
        existing = find_controller_by_alias(dom, self.alias)
        self.port = None
        if self.params["state"] == "absent":
            if existing is not None:
                behind = dom.children_of(xml_int(existing.get("index")))
                if behind:
                    raise SpecError("state", "absent", "root port %s still has a %s plugged in; remove it first"
                                    % (self.alias, behind[0].tag))
                dom.remove_device(self.alias)
            return
        parent, parent_index = self._parent(dom)
        addr = dom.address_of(existing) if existing is not None else None
        if existing is not None and addr is not None and addr["bus"] == parent_index:
            index, slot = xml_int(existing.get("index")), addr["slot"]
        else:
            index = free_index(dom, above=parent_index)
            slot = free_slot(dom, parent_index, ROOT_SLOTS if parent_index == 0 else range(MAX_PORTS_PER_EXPANDER))
            if slot is None:
                raise SpecError("expander", self.params["expander"],
                                "more root ports than fit under one expander: all %d slots of its bus are taken"
                                % MAX_PORTS_PER_EXPANDER)
        guest_bus = None
        if parent_index:
            bus_nr = xml_int(parent.find("target").get("busNr"))
            ports = [c for c in dom.children_of(parent_index) if dom.alias_of(c) != self.alias]
            count = len(ports) + 1
            nxt = min([r[0] for r in dom.expander_ranges() if r[0] > bus_nr] + [256])
            if bus_nr + count > nxt - 1:
                raise SpecError("expander", self.params["expander"],
                                "more root ports than fit under one expander: it starts at bus %d and the next "
                                "expander at %d, so it has room for %d root ports, not %d"
                                % (bus_nr, nxt, nxt - bus_nr - 1, count))
            rank = sorted([dom.address_of(c)["slot"] for c in ports] + [slot]).index(slot)
            guest_bus = "0000:%02x" % (bus_nr + 1 + rank)
        dom.ensure_device(self.alias, root_port_element(index, parent_index, slot))
        self.port = {"alias": self.alias, "index": index, "slot": slot, "guest_bus": guest_bus,
                     "expander": dom.alias_of(parent) or "pcie-root"}

    def finish(self, dom, changed):
        if self.port:
            self.result["root_port"] = self.port


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            id=dict(type="str", required=True),
            expander=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        **TARGET_MODULE_KWARGS
    )
    RootPort(module).run()


if __name__ == "__main__":
    main()
