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
- name: Give the nested guest the last NIC of NUMA node 2 (the seed's example)
  nestlab.pci.hostdev:
    name: l2
    nodedev: pci_0000_df_00_0
"""

RETURN = r"""
hostdev:
  description: The host device.
  returned: success
  type: dict
  sample: {alias: ua-nestlab-hostdev-0000_df_00_0, address: "0000:df:00.0", nodedev: pci_0000_df_00_0, managed: true}
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import ALIAS_PREFIX
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_id
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


class Hostdev(DomainEditModule):

    def prepare(self):
        if bool(self.params["nodedev"]) == bool(self.params["address"]):
            raise SpecError("nodedev", self.params["nodedev"], "give exactly one of nodedev and address")
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
        self.nodedev = nodedev_name(self.addr)
        ident = self.params["id"] or self.nodedev[len("pci_"):]
        self.alias = ALIAS_PREFIX + "hostdev-" + validate_id(ident)

    def _same_source(self, dom):
        for dev in dom.root.xpath("./devices/hostdev[@type='pci']"):
            src = dev.find("source/address")
            if src is not None and all(xml_int(src.get(k, "0")) == self.addr[k]
                                       for k in ("domain", "bus", "slot", "function")):
                return dev
        return None

    def edit(self, dom):
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
            id=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        mutually_exclusive=[("nodedev", "address")],
        **TARGET_MODULE_KWARGS
    )
    Hostdev(module).run()


if __name__ == "__main__":
    main()
