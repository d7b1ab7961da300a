# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: guest_topology_facts
short_description: What a lab's virtual host sees from inside, optionally checked against the lab
version_added: 0.1.0
description:
  - Runs inside the guest (L1). Reads sysfs and the kernel log - NUMA nodes with their CPUs and
    memory, PCI devices with bus address, vendor and device, driver, C(numa_node) and IOMMU group,
    the PCI buses, the IOMMU and interrupt-remapping lines, C(/dev/kvm) and the nested state.
  - With O(expect_spec) and O(expect_plan) (the lab spec and the RV(nestlab.pci.lab_topology#module:plan)
    that M(nestlab.pci.lab_topology) returned), fails with a readable list of every mismatch.
  - IOMMU groups and the DMAR lines are only expected once the guest kernel runs with the IOMMU on
    (C(intel_iommu=on) on its command line); RV(iommu_on_cmdline) says whether it does.
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.expectations
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: Check the virtual host against its lab
  nestlab.pci.guest_topology_facts:
    expect_spec: "{{ nestlab_lab }}"
    expect_plan: "{{ topology.plan }}"
  register: seen
"""

RETURN = r"""
facts:
  description: NUMA nodes, PCI buses and devices, IOMMU lines of the kernel log, command line, /dev/kvm.
  returned: always
  type: dict
  sample: {nodes: {"2": {cpus: [6, 7], memory_kib: 2014644}}, pci: {"0000:df:00.0": {numa_node: 2, iommu_group: 14}}}
summary:
  description: The stable part of RV(facts), per NIC with its node device name (when expectations are given).
  returned: when O(expect_plan) is given
  type: dict
  sample: {nics: [{address: "0000:df:00.0", node: 2, ids: "8086:10d3", iommu_group: 14, nodedev: pci_0000_df_00_0}]}
problems:
  description: Every mismatch with the expectations.
  returned: when O(expect_plan) is given
  type: list
  elements: str
  sample: []
iommu_on_cmdline:
  description: Whether the kernel command line turns the IOMMU on.
  returned: always
  type: bool
  sample: false
nested:
  description: The vendor KVM module inside the guest and whether nested virtualization is on.
  returned: always
  type: dict
  sample: {module: kvm_amd, loaded: true, nested: true}
"""

import re
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.accel import nested_state
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guestview import (
    check,
    expectations_from_plan,
    gather,
    summary,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec


def main():
    module = AnsibleModule(
        argument_spec=dict(expect_spec=dict(type="dict"), expect_plan=dict(type="list", elements="dict")),
        supports_check_mode=True,
    )
    try:
        dmesg = subprocess.run(["dmesg"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               universal_newlines=True, check=False).stdout.splitlines()
    except OSError:
        dmesg = []
    dmesg = [re.sub(r"^\[[ 0-9.]*\] ", "", line) for line in dmesg]
    facts = gather(dmesg_lines=dmesg)
    iommu_on = bool(re.search(r"(^| )(intel_iommu=on|amd_iommu=on|iommu=force)( |$)", facts["cmdline"]))
    result = {"changed": False, "facts": facts, "iommu_on_cmdline": iommu_on, "nested": nested_state()}
    if module.params["expect_plan"] is not None:
        try:
            spec = validate_spec(module.params["expect_spec"] or {}, "expect_spec")
        except SpecError as exc:
            module.fail_json(msg=exc.msg, **result)
        exp = expectations_from_plan(spec, module.params["expect_plan"])
        result["problems"] = check(facts, exp, iommu_enabled=iommu_on)
        result["summary"] = summary(facts, exp)
        if result["problems"]:
            module.fail_json(msg="the virtual host does not see what the lab promises:\n- %s"
                                 % "\n- ".join(result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
