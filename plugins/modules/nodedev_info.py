# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nodedev_info
short_description: PCI node devices as libvirt sees them, with NUMA node, IOMMU group and whether they can be assigned
version_added: 0.1.0
description:
  - Lists the PCI node devices of a libvirt host (the lab's virtual host L1, or any hypervisor) -
    name, address, vendor, product, driver, NUMA node, IOMMU group and its members, and the
    virtual or physical functions of SR-IOV devices.
  - Says for each device whether it can be assigned to a guest. It cannot when a member of its
    IOMMU group (PCI bridges aside) is already assigned to another domain (running or only
    defined) or carries the host's own traffic (an IPv4 route or a global IPv6 address), or
    when the device has no IOMMU group at all.
  - Filters narrow the list; all given filters must match. With O(required=true) an empty result
    is an error that names the filters and lists what there is.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
  name:
    description: Only these node devices (C(pci_0000_df_00_0); PCI addresses are accepted too).
    type: list
    elements: str
  address:
    description: Only these PCI addresses (C(0000:df:00.0) or C(df:00.0)).
    type: list
    elements: str
  numa_node:
    description: Only devices on this NUMA node.
    type: int
  pci_class:
    description: Only devices whose PCI class starts with this hex prefix (C(02) network, C(0200) Ethernet).
    type: str
  vendor_device:
    description: Only devices with this C(vendor:device) pair in hex, such as C(8086:10d3) (e1000e).
    type: str
  driver:
    description: Only devices bound to this driver (C(e1000e), C(vfio-pci)).
    type: str
  virtual_function:
    description:
      - Only SR-IOV virtual functions (V(true)) or only devices that are not one (V(false)).
      - With O(numa_node), V(true) picks "a VF on NUMA node N".
    type: bool
  physical_function:
    description: Only the virtual functions of this physical function (node device name or PCI address).
    type: str
  vf_index:
    description:
      - Only the virtual function with this index on its physical function (the kernel's C(virtfn<N>),
        in the order libvirt lists them). Usually given with O(physical_function).
    type: int
  assignable:
    description: Only devices that can (V(true)) or cannot (V(false)) be assigned now.
    type: bool
  for_domain:
    description:
      - The domain the device is meant for. Devices already assigned to it still count as assignable,
        so that choosing again gives the same answer.
    type: str
  required:
    description: Fail when nothing matches, with the filters and the devices there are in the message.
    type: bool
    default: false
requirements:
  - libvirt-python
extends_documentation_fragment:
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: An e1000e on NUMA node 2 that can be given to a nested guest
  nestlab.pci.nodedev_info:
    vendor_device: "8086:10d3"
    numa_node: 2
    assignable: true
    required: true
  register: nics

- name: Show its node device name
  ansible.builtin.debug:
    msg: "{{ nics.devices[0].name }}"

- name: The second virtual function of the igb on bus b5
  nestlab.pci.nodedev_info:
    physical_function: pci_0000_b5_00_0
    vf_index: 1
    required: true
  register: vf

- name: Any virtual function on NUMA node 1 that is free
  nestlab.pci.nodedev_info:
    virtual_function: true
    numa_node: 1
    assignable: true
    required: true
  register: vf_on_node
"""

RETURN = r"""
devices:
  description: The matching PCI devices, ordered by address.
  returned: always
  type: list
  elements: dict
  sample:
    - name: pci_0000_df_00_0
      address: "0000:df:00.0"
      vendor_device: "8086:10d3"
      product: 82574L Gigabit Network Connection
      driver: e1000e
      class: "020000"
      numa_node: 2
      iommu_group: 14
      iommu_group_members: ["0000:df:00.0"]
      virtual_functions: []
      physical_function: null
      vf_index: null
      used_by: []
      host_uses: []
      assignable: true
      not_assignable_because: []
count:
  description: Number of matching devices.
  returned: always
  type: int
  sample: 1
total:
  description: Number of PCI devices libvirt knows before filtering.
  returned: always
  type: int
  sample: 31
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import NestlabError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.nodedev import (
    FILTERS,
    describe_filters,
    listing,
    read_devices,
    select,
    validate_filters,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import libvirt, require_libvirt


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="list", elements="str"),
            address=dict(type="list", elements="str"),
            numa_node=dict(type="int"),
            pci_class=dict(type="str"),
            vendor_device=dict(type="str"),
            driver=dict(type="str"),
            virtual_function=dict(type="bool"),
            physical_function=dict(type="str"),
            vf_index=dict(type="int"),
            assignable=dict(type="bool"),
            for_domain=dict(type="str"),
            required=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    require_libvirt(module)
    try:
        filters = validate_filters(dict((k, module.params[k]) for k in FILTERS))
    except NestlabError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    try:
        conn = libvirt.open(module.params["uri"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg="cannot connect to libvirt at %s: %s" % (module.params["uri"], exc))
    try:
        devices = read_devices(conn, module.params["for_domain"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt at %s: %s" % (module.params["uri"], exc))
    finally:
        conn.close()
    chosen = select(devices, filters)
    result = dict(changed=False, devices=chosen, count=len(chosen), total=len(devices))
    if module.params["required"] and not chosen:
        module.fail_json(msg="no PCI device matches %s; the devices there are (bridges left out):\n%s"
                             % (describe_filters(filters), listing(devices)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
