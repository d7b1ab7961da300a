# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: numa
short_description: Ensure the guest NUMA nodes (and optionally the CPU mode) of a libvirt domain
version_added: 0.1.0
description:
  - Ensures C(<cpu><numa>) cells with their CPUs, memory and optional distances, and keeps
    C(<vcpu>) and C(<memory>) equal to what the cells add up to.
  - Refuses to drop a node that an expander bus is still bound to.
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  cells:
    description: One entry per node, in node order.
    type: list
    elements: dict
    required: true
    suboptions:
      cpus:
        description: A CPU count (nodes get consecutive CPUs) or a CPU set such as C(0-3), the same form in every node.
        type: raw
        required: true
      memory:
        description:
          - Memory of the node in MiB, or with a unit (C(2GiB)); at least 64 MiB.
          - Units follow libvirt - V(KiB), V(MiB), V(GiB) and V(K), V(M), V(G) are binary (powers of 1024), V(KB), V(MB), V(GB) decimal (powers of 1000).
        type: raw
        required: true
      distances:
        description: Distance to every node (C(10) to itself); all nodes or none.
        type: list
        elements: int
  vcpus:
    description: vCPU count; by default the highest CPU of any node plus one. Every vCPU must be in a node.
    type: int
  cpu_mode:
    description:
      - Also set C(<cpu mode>). V(host-passthrough) needs KVM; under TCG use V(maximum).
      - By default the mode is left as it is.
    type: str
    choices: [host-passthrough, host-model, maximum]
"""

EXAMPLES = r"""
- name: The recipe's NUMA layout
  nestlab.pci.numa:
    name: mylab
    cpu_mode: maximum
    cells:
      - {cpus: 4, memory: 4GiB}
      - {cpus: 2, memory: 2GiB}
      - {cpus: 2, memory: 2GiB}
"""

RETURN = r"""
cells:
  description: The cells as written (CPU sets in libvirt's form, memory in KiB).
  returned: success
  type: list
  elements: dict
  sample: [{id: 0, cpus: "0-3", memory_kib: 4194304, distances: null}]
vcpus:
  description: The vCPU count.
  returned: success
  type: int
  sample: 8
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_cells
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import format_cpuset


class Numa(DomainEditModule):

    def prepare(self):
        cells, self.vcpus = validate_cells(self.params["cells"], "cells", "vcpus", self.params["vcpus"])
        self.cells = [{"id": c["id"], "cpus": format_cpuset(c["cpus"]), "memory_kib": c["memory_kib"],
                       "distances": c["distances"]} for c in cells]

    def edit(self, dom):
        for pxb in dom.controllers("pcie-expander-bus"):
            node = pxb.findtext("target/node")
            if node is not None and int(node) >= len(self.cells):
                raise SpecError("cells", "%d nodes" % len(self.cells),
                                "expander %s is bound to node %s; keep that node or remove the expander first"
                                % (dom.alias_of(pxb) or "index " + pxb.get("index"), node))
        dom.ensure_numa(self.cells, self.vcpus)
        if self.params["cpu_mode"]:
            dom.ensure_cpu_mode(self.params["cpu_mode"])

    def finish(self, dom, changed):
        self.result["cells"] = self.cells
        self.result["vcpus"] = self.vcpus


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            cells=dict(type="list", elements="dict", required=True),
            vcpus=dict(type="int"),
            cpu_mode=dict(type="str", choices=["host-passthrough", "host-model", "maximum"]),
        ),
        **TARGET_MODULE_KWARGS
    )
    Numa(module).run()


if __name__ == "__main__":
    main()
