# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: hostdev
short_description: Ensure a PCI device of the host is assigned to a libvirt domain
version_added: 0.1.0
description:
  - Ensures a C(<hostdev mode='subsystem' type='pci'>) for one host PCI device, given by its
    libvirt node device name (C(pci_0000_df_00_0), as C(virsh nodedev-list) shows it) or its
    address (C(0000:df:00.0)). The device carries the alias C(ua-nestlab-hostdev-<id>).
  - For a libvirt domain the device must exist on that hypervisor. For O(path) the name is
    only checked for form (there is no hypervisor to ask).
  - Or, with O(virtual_function), an SR-IOV virtual function that the module chooses on the
    hypervisor - by its physical function, by its index there, or as "a VF on NUMA node N". The
    choice is the first VF by address that can be assigned to this domain; a VF the domain already
    has counts, so that a second run chooses the same one.
  - A hostdev for the same device that is already in the domain (added by hand) counts as present
    and is not touched.
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  nodedev:
    description: Node device name of the host PCI device, for example C(pci_0000_df_00_0).
    type: str
  address:
    description: PCI address of the host device, C(DDDD:BB:SS.F) or C(BB:SS.F).
    type: str
  virtual_function:
    description:
      - Choose an SR-IOV virtual function on the hypervisor instead of naming a device. At least one
        suboption; all that are given must match. Needs O(name) (a libvirt domain), not O(path).
    type: dict
    suboptions:
      physical_function:
        description: Only a VF of this physical function (node device name or PCI address).
        type: str
      index:
        description: The VF with this index on its physical function (the kernel's C(virtfn<N>)); needs O(virtual_function.physical_function).
        type: int
      numa_node:
        description: Only a VF on this NUMA node.
        type: int
  managed:
    description: Let libvirt detach the device from its host driver when the domain starts and give it back after.
    type: bool
    default: true
  id:
    description: Identifier for the alias C(ua-nestlab-hostdev-<id>); by default made from the address (C(0000_df_00_0)).
    type: str
  state:
    description: V(absent) removes the hostdev this module added.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Give the nested guest the last NIC of NUMA node 2 (the recipe's example)
  nestlab.pci.hostdev:
    name: l2
    nodedev: pci_0000_df_00_0

- name: Give it the second VF of the igb on bus b5
  nestlab.pci.hostdev:
    name: l2
    virtual_function:
      physical_function: pci_0000_b5_00_0
      index: 1

- name: Or any free VF on NUMA node 1
  nestlab.pci.hostdev:
    name: l2
    virtual_function:
      numa_node: 1
"""

RETURN = r"""
hostdev:
  description: The host device.
  returned: success
  type: dict
  sample: {alias: ua-nestlab-hostdev-0000_df_00_0, address: "0000:df:00.0", nodedev: pci_0000_df_00_0, managed: true}
virtual_function:
  description: The chosen VF as M(nestlab.pci.nodedev_info) describes it (with O(virtual_function)).
  returned: when virtual_function is given
  type: dict
  sample: {name: pci_0000_b5_10_2, address: "0000:b5:10.2", physical_function: "0000:b5:00.0", vf_index: 1,
           vendor_device: "8086:10ca", numa_node: 0, iommu_group: 21}
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError, TargetError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.nodedev import (
    describe_filters,
    listing,
    read_devices,
    select,
    validate_filters,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import ALIAS_PREFIX
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_id
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import libvirt
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import (
    format_pci_address,
    nodedev_name,
    parse_nodedev_name,
    parse_pci_address,
    xml_int,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import E


def hostdev_element(addr, managed):
    return E("hostdev", {"mode": "subsystem", "type": "pci", "managed": "yes" if managed else "no"}, [
        E("source", children=[E("address", {
            "domain": "0x%04x" % addr["domain"], "bus": "0x%02x" % addr["bus"],
            "slot": "0x%02x" % addr["slot"], "function": "0x%x" % addr["function"]})]),
    ])


_VF_KEYS = ("physical_function", "index", "numa_node")


class Hostdev(DomainEditModule):

    def prepare(self):
        vf = self.params["virtual_function"]
        if vf is not None:
            self._prepare_vf(vf)
            return
        if bool(self.params["nodedev"]) == bool(self.params["address"]):
            raise SpecError("nodedev", self.params["nodedev"], "give exactly one of nodedev, address and virtual_function")
        if self.params["nodedev"]:
            try:
                self.addr = parse_nodedev_name(self.params["nodedev"])
            except ValueError:
                raise SpecError("nodedev", self.params["nodedev"],
                                "give a PCI node device name such as 'pci_0000_df_00_0' (virsh nodedev-list --cap pci)")
        else:
            try:
                self.addr = parse_pci_address(self.params["address"])
            except ValueError:
                raise SpecError("address", self.params["address"], "give a PCI address such as '0000:df:00.0'")
        self._chosen(self.addr)

    def _chosen(self, addr):
        self.addr = addr
        self.nodedev = nodedev_name(addr)
        ident = self.params["id"] or self.nodedev[len("pci_"):]
        self.alias = ALIAS_PREFIX + "hostdev-" + validate_id(ident)

    def _prepare_vf(self, vf):
        # the suboptions given (Ansible sets the others to None)
        self.vf_given = dict((k, v) for k, v in vf.items() if v is not None)
        if self.params["path"]:
            raise SpecError("virtual_function", self.vf_given,
                            "a VF is chosen on a hypervisor: give name (a libvirt domain), not path")
        if not self.vf_given:
            raise SpecError("virtual_function", self.vf_given, "give at least one of %s" % ", ".join(_VF_KEYS))
        if vf["index"] is not None and vf["physical_function"] is None:
            raise SpecError("virtual_function.index", vf["index"], "an index needs virtual_function.physical_function")
        try:
            self.vf_filters = validate_filters({
                "virtual_function": True, "physical_function": vf["physical_function"],
                "vf_index": vf["index"], "numa_node": vf["numa_node"]})
        except SpecError as exc:
            key = {"vf_index": "index"}.get(exc.field, exc.field)
            raise SpecError("virtual_function." + key, exc.details["value"], exc.details["allowed"])
        self.addr = None
        if self.params["id"] is not None:
            validate_id(self.params["id"])

    def _choose_vf(self):
        """The first VF that matches and can be assigned to this domain (one it has already counts)."""
        try:
            devices = read_devices(self.target.conn, self.params["name"])
        except libvirt.libvirtError as exc:
            raise TargetError("cannot list the PCI devices of %s: %s" % (self.target.uri, exc.get_error_message()))
        matches = select(devices, self.vf_filters)
        usable = [d for d in matches if d["assignable"]]
        if not usable:
            why = "" if not matches else " (%s)" % "; ".join(
                "%s: %s" % (d["name"], ", ".join(d["not_assignable_because"])) for d in matches)
            raise SpecError("virtual_function", self.vf_given,
                            "no VF that can be assigned to %s matches %s%s on %s; its PCI devices (bridges left out):\n%s"
                            % (self.params["name"], describe_filters(self.vf_filters), why, self.target.uri,
                               listing(devices)))
        chosen = usable[0]
        self._chosen(parse_pci_address(chosen["address"]))
        self.result["virtual_function"] = dict((k, chosen[k]) for k in (
            "name", "address", "physical_function", "vf_index", "vendor_device", "numa_node", "iommu_group"))

    def _same_source(self, dom):
        for dev in dom.root.xpath("./devices/hostdev[@type='pci']"):
            src = dev.find("source/address")
            if src is not None and all(xml_int(src.get(k, "0")) == self.addr[k]
                                       for k in ("domain", "bus", "slot", "function")):
                return dev
        return None

    def edit(self, dom):
        if self.params["virtual_function"] is not None and self.addr is None:
            self._choose_vf()
        if self.params["state"] == "absent":
            dom.remove_device(self.alias)
            return
        exists = self.target.nodedev_exists(self.nodedev)
        if exists is False:
            known = self.target.pci_nodedevs()
            field = "nodedev" if self.params["nodedev"] else "address"
            raise SpecError(field, self.params[field], "no such PCI device on %s; it has %d PCI devices: %s%s"
                            % (self.target.uri, len(known), ", ".join(known[:12]), ", ..." if len(known) > 12 else ""))
        other = self._same_source(dom)
        if other is not None and dom.alias_of(other) != self.alias:
            self.module.warn("%s is already assigned to %s by a hostdev this module does not own; left as it is"
                             % (self.nodedev, dom.name))
            return
        dom.ensure_device(self.alias, hostdev_element(self.addr, self.params["managed"]))

    def finish(self, dom, changed):
        self.result["hostdev"] = {"alias": self.alias, "address": format_pci_address(self.addr),
                                  "nodedev": self.nodedev, "managed": self.params["managed"]}


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            nodedev=dict(type="str"),
            address=dict(type="str"),
            managed=dict(type="bool", default=True),
            virtual_function=dict(type="dict", options=dict(
                physical_function=dict(type="str"),
                index=dict(type="int"),
                numa_node=dict(type="int"),
            )),
            id=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        mutually_exclusive=[("nodedev", "address", "virtual_function")],
        **TARGET_MODULE_KWARGS
    )
    Hostdev(module).run()


if __name__ == "__main__":
    main()
