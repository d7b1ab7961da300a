# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iommu
short_description: Ensure the emulated IOMMU of a libvirt domain
version_added: 0.1.0
description:
  - Ensures the domain's C(<iommu>) device (a domain has one at most; an existing one is adopted)
    and, with interrupt remapping, C(<features><ioapic driver='qemu'/></features>), which QEMU's
    intel-iommu needs for it.
  - A vIOMMU the collection added (this module, alias C(ua-nestlab-iommu), or M(nestlab.pci.lab_topology)) is made exactly as asked.
  - On a vIOMMU the domain already had, the switches asked for are turned on and nothing else
    changes. A switch its owner turned on stays on. Its other driver attributes (C(aw_bits),
    C(iotlb), ...), its address and its alias stay, and O(state=absent) leaves it in place.
  - A vIOMMU of another O(model) that the collection did not add is refused, not replaced, and nothing
    is written.
  - >-
    With O(intremap) the guest kernel logs C(DMAR-IR: Enabled IRQ remapping), and VFIO inside the
    guest needs no C(allow_unsafe_interrupts).
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  model:
    description:
      - vIOMMU model. V(intel) and V(amd) need a q35 machine.
      - V(amd) is QEMU's amd-iommu (libvirt's C(<iommu model='amd'>)), for a guest whose CPU is AMD-like (QEMU's
        TCG, or KVM on an AMD host), so that tools that decide by the CPU's vendor find the IOMMU they look for.
        It needs a libvirt that knows the model (12.9.0 tested; 9.0.0 and 11.3.0 do not) and a QEMU whose
        amd-iommu has the C(dma-remap) property (11.1.3 tested; 7.2 and 10.0 have none), which the module turns
        on with C(-global amd-iommu.dma-remap=on) in the domain's C(<qemu:commandline>) - without it the device
        did not translate the DMA of a NIC given to vfio. A QEMU on this host without it is refused before
        anything is written, as is a libvirt whose domain schema has no such model.
      - V(auto) chooses V(intel) or V(amd) by the vendor the domain's CPU shows. A C(kvm) domain shows this host's
        CPU (C(host-passthrough)). A C(qemu) (TCG) domain shows QEMU's emulation, which is AuthenticAMD. V(amd) is
        chosen only for an AMD CPU on a libvirt and QEMU that have it, else V(intel); RV(reason) says why.
        With V(auto), O(caching_mode) and O(eim) cannot be set.
    type: str
    choices: [intel, amd, virtio, auto]
    default: intel
  intremap:
    description: Interrupt remapping (intel and amd). Defaults to V(true) for intel and amd.
    type: bool
  caching_mode:
    description: Caching mode (intel only), needed when the guest passes devices through. Defaults to V(true) for intel.
    type: bool
  eim:
    description: Extended interrupt mode (intel only); needs O(intremap). Defaults to V(false).
    type: bool
  state:
    description: V(absent) removes the vIOMMU (the C(ioapic) feature stays).
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Intel vIOMMU with interrupt remapping and caching mode
  nestlab.pci.iommu:
    name: mylab

- name: virtio-iommu instead
  nestlab.pci.iommu:
    name: mylab
    model: virtio

- name: The vIOMMU of the vendor the guest's CPU shows (amd where libvirt and QEMU have it, else intel)
  nestlab.pci.iommu:
    name: mylab
    model: auto
  register: viommu

- name: AMD's vIOMMU, for a guest whose CPU is AMD-like (TCG, or KVM on an AMD host), on a libvirt and QEMU that have it
  nestlab.pci.iommu:
    name: mylab
    model: amd
"""

RETURN = r"""
iommu:
  description: The vIOMMU settings in force.
  returned: when O(state=present)
  type: dict
  sample: {model: intel, intremap: true, caching_mode: true, eim: false}
reason:
  description: With O(model=auto), why the model in RV(iommu) was chosen.
  returned: when O(model=auto) and O(state=present)
  type: str
  sample: "KVM passes this host's Intel CPU to L1: the intel vIOMMU (VT-d, DMAR) matches it"
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import ALIAS_PREFIX
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import DEFAULT_SPEC, IOMMU_CHOICES, validate_iommu
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import resolve_iommu

IOMMU_ALIAS = ALIAS_PREFIX + "iommu"


class Iommu(DomainEditModule):

    def prepare(self):
        raw = dict((k, self.params[k]) for k in ("model", "intremap", "caching_mode", "eim")
                   if self.params[k] is not None)
        # field names are the module's own options
        self.iommu = validate_iommu(raw, "").copy() if self.params["state"] == "present" else None
        self.settled = False

    def edit(self, dom):
        if self.iommu is None:
            existing = dom.root.find("devices/iommu")
            if existing is not None:
                dom.remove_iommu(existing)
            return
        if not self.settled:
            # the domain's type says where its CPU comes from: KVM passes the host's through
            accel = "kvm" if dom.root.get("type") == "kvm" else "tcg"
            self.iommu, reason = resolve_iommu(self.target, self.iommu, accel, self.target.emulator(), "model")
            if self.params["model"] == "auto":
                self.result["reason"] = reason
            self.settled = True  # an edit planned again keeps it
        dom.ensure_iommu(self.iommu, IOMMU_ALIAS)

    def finish(self, dom, changed):
        if self.iommu:
            self.result["iommu"] = self.iommu


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            model=dict(type="str", choices=list(IOMMU_CHOICES), default=DEFAULT_SPEC["iommu"]["model"]),
            intremap=dict(type="bool"),
            caching_mode=dict(type="bool"),
            eim=dict(type="bool"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        **TARGET_MODULE_KWARGS
    )
    Iommu(module).run()


if __name__ == "__main__":
    main()
