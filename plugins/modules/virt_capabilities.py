# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: virt_capabilities
short_description: What this hypervisor's libvirt and QEMU offer, read in one call
version_added: 0.1.0
description:
  - Reads the libvirt and QEMU versions from libvirt, the devices QEMU has from
    C(qemu-system-x86_64 -device help), and whether libvirt offers the machine type asked for
    (its domain capabilities).
  - With O(require), reports which required devices are missing, so a preflight can name each
    missing feature together with the versions found. Features are read from QEMU and libvirt
    themselves, never inferred from version numbers.
  - It never changes anything.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  uri:
    description: The libvirt connection.
    type: str
    default: qemu:///system
  emulator:
    description: The QEMU binary (the first of the usual paths that exists when not given).
    type: path
  machine:
    description: The machine type whose domain capabilities are read.
    type: str
    default: q35
  virt_type:
    description: The domain type for the capabilities (V(qemu) is TCG, V(kvm) is KVM).
    type: str
    choices: [qemu, kvm]
    default: qemu
  nic_models:
    description:
      - NIC models of the lab spec (such as V(igb)) whose QEMU devices the caller needs. A missing one is named
        in RV(missing) with the QEMU and libvirt releases that have it, where those are newer than the
        collection needs.
    type: list
    elements: str
    choices: [e1000e, igb, virtio, e1000, rtl8139, vmxnet3]
    default: []
  require:
    description: QEMU device names the caller needs, each with the words to name it by when missing.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The device name as C(-device help) lists it, such as V(pxb-pcie).
        type: str
        required: true
      what:
        description: How to name it in RV(missing) (the device name when not given).
        type: str
extends_documentation_fragment:
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: Read what libvirt and QEMU offer
  nestlab.pci.virt_capabilities:
    require:
      - {name: pxb-pcie, what: "the pxb-pcie device (PCIe expander bus)"}
      - {name: igb, what: "the igb NIC (SR-IOV)"}
  register: caps

- name: Stop when something is missing
  ansible.builtin.assert:
    that: caps.missing | length == 0
    fail_msg: "missing {{ caps.missing | join(', ') }} (libvirt {{ caps.libvirt_version }}, QEMU {{ caps.qemu_version }})"
"""

RETURN = r"""
libvirt_version:
  description: The libvirt library's version.
  returned: always
  type: str
  sample: "9.0.0"
qemu_version:
  description: The QEMU version libvirt reports for O(uri).
  returned: always
  type: str
  sample: "7.2.0"
emulator:
  description: The QEMU binary that was asked for its devices.
  returned: always
  type: str
  sample: /usr/bin/qemu-system-x86_64
devices:
  description: Every device name QEMU lists, sorted.
  returned: always
  type: list
  elements: str
machine_ok:
  description: True when libvirt returns domain capabilities for O(machine) and O(virt_type).
  returned: always
  type: bool
machine_error:
  description: libvirt's reason when RV(machine_ok) is false.
  returned: always
  type: str
iommu_models:
  description: The vIOMMU models the domain capabilities list (empty when libvirt does not list them).
  returned: always
  type: list
  elements: str
  sample: [intel, smmuv3, virtio]
missing:
  description:
    - The O(require) entries QEMU lacks (their O(require[].what)), then the O(nic_models) it lacks, plus the
      machine type when libvirt refuses it.
  returned: always
  type: list
  elements: str
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import nic_model_requirement
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import libvirt, require_libvirt
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import parse

EMULATORS = ("/usr/bin/qemu-system-x86_64", "/usr/libexec/qemu-kvm", "/usr/local/bin/qemu-system-x86_64")


def dotted(number):
    """libvirt's packed version (major * 1000000 + minor * 1000 + micro) as text."""
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            emulator=dict(type="path"),
            machine=dict(type="str", default="q35"),
            virt_type=dict(type="str", choices=["qemu", "kvm"], default="qemu"),
            nic_models=dict(type="list", elements="str", default=[],
                            choices=["e1000e", "igb", "virtio", "e1000", "rtl8139", "vmxnet3"]),
            require=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                what=dict(type="str"),
            )),
        ),
        supports_check_mode=True,
    )
    require_libvirt(module)
    params = module.params
    emulator = params["emulator"] or next((path for path in EMULATORS if os.path.exists(path)), None)
    if emulator is None or not os.path.exists(emulator):
        module.fail_json(msg="emulator: %r does not exist; give the QEMU binary (looked at %s)"
                         % (params["emulator"], ", ".join(EMULATORS)))
    rc, out, err = module.run_command([emulator, "-nodefaults", "-machine", "none", "-device", "help"])
    if rc != 0:
        module.fail_json(msg="%s -device help failed (rc %d): %s" % (emulator, rc, err.strip()))
    devices = sorted(set(re.findall(r'name "([^"]+)"', out)))
    try:
        conn = libvirt.open(params["uri"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg="uri: cannot connect to %s: %s" % (params["uri"], exc))
    result = dict(changed=False, emulator=emulator, devices=devices, libvirt_version=dotted(conn.getLibVersion()),
                  qemu_version=dotted(conn.getVersion()), machine_ok=True, machine_error="", iommu_models=[])
    try:
        caps = parse(conn.getDomainCapabilities(emulator, "x86_64", params["machine"], params["virt_type"]),
                     "domain capabilities")
        result["iommu_models"] = sorted(caps.xpath("devices/iommu/enum[@name='model']/value/text()"))
    except libvirt.libvirtError as exc:
        result.update(machine_ok=False, machine_error=str(exc))
    wanted = list(params["require"]) + [nic_model_requirement(model) for model in dict.fromkeys(params["nic_models"])]
    missing = [item["what"] or item["name"] for item in wanted if item["name"] not in devices]
    if not result["machine_ok"]:
        missing.append("a %s machine type in libvirt (%s)" % (params["machine"], result["machine_error"]))
    module.exit_json(missing=missing, **result)


if __name__ == "__main__":
    main()
