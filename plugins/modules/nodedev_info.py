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

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import NestlabError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.nodedev import (
    annotate,
    describe_filters,
    host_traffic_interfaces,
    hostdev_users,
    mounted_block_devices,
    parse_pci_nodedev,
    pci_ancestor,
    select,
    validate_filters,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import libvirt, require_libvirt

_FILTERS = ("name", "address", "numa_node", "pci_class", "vendor_device", "driver", "assignable")


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return ""


def host_uses():
    """{PCI address: [what this host uses the device for]}: interfaces with routes or global
    addresses, block devices that are mounted or used as swap (partitions count for their disk)."""
    uses = {}
    for name in sorted(host_traffic_interfaces(_read("/proc/net/route"), _read("/proc/net/if_inet6"))):
        address = pci_ancestor(os.path.realpath("/sys/class/net/%s" % name))
        if address:
            uses.setdefault(address, []).append("network interface %s" % name)
    mounted = mounted_block_devices(_read("/proc/mounts"), _read("/proc/swaps"))
    for dev, points in sorted(mounted.items()):
        name = os.path.basename(os.path.realpath("/dev/" + dev))
        sysfs = os.path.realpath("/sys/class/block/%s" % name)
        slaves = sorted(os.listdir(sysfs + "/slaves")) if os.path.isdir(sysfs + "/slaves") else []
        for real in slaves or [name]:
            address = pci_ancestor(os.path.realpath("/sys/class/block/%s" % real))
            if address:
                uses.setdefault(address, []).append("disk %s mounted on %s" % (real, ", ".join(points)))
    return uses


def gather(conn):
    devices = []
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
        parsed = parse_pci_nodedev(dev.XMLDesc(0))
        if parsed is not None:
            devices.append(parsed)
    domains = [(d.name(), d.XMLDesc(0), d.isActive()) for d in conn.listAllDomains(0)]
    return devices, hostdev_users(domains)


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
            assignable=dict(type="bool"),
            for_domain=dict(type="str"),
            required=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    require_libvirt(module)
    try:
        filters = validate_filters(dict((k, module.params[k]) for k in _FILTERS))
    except NestlabError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    try:
        conn = libvirt.open(module.params["uri"])
    except libvirt.libvirtError as exc:
        module.fail_json(msg="cannot connect to libvirt at %s: %s" % (module.params["uri"], exc))
    try:
        devices, users = gather(conn)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt at %s: %s" % (module.params["uri"], exc))
    finally:
        conn.close()
    annotate(devices, users, host_uses(), module.params["for_domain"])
    chosen = select(devices, filters)
    result = dict(changed=False, devices=chosen, count=len(chosen), total=len(devices))
    if module.params["required"] and not chosen:
        listing = ["%s %s %s node=%s group=%s%s" % (
            d["name"], d["vendor_device"], d["driver"] or "-", d["numa_node"], d["iommu_group"],
            "" if d["assignable"] else " (not assignable: %s)" % "; ".join(d["not_assignable_because"]))
            for d in sorted(devices, key=lambda d: d["address"]) if not d["class"].startswith("06")]
        module.fail_json(msg="no PCI device matches %s; the devices there are (bridges left out):\n%s"
                             % (describe_filters(filters), "\n".join(listing) or "(none)"), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
