# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lab_topology
short_description: Bring a libvirt domain to a NUMA and PCI lab topology in one define
version_added: 0.1.0
description:
  - Turns a lab spec into a q35 domain whose guest sees real-looking NUMA hardware
    with PCI devices bound to NUMA nodes, an emulated IOMMU and (under KVM) nested virtualization.
  - Per NUMA node it owns one C(pcie-expander-bus) bound to the node, one C(pcie-root-port)
    per NIC behind it, and one NIC per root port with a stable MAC; plus the NUMA cells,
    the CPU mode, and the vIOMMU with C(<ioapic driver='qemu'/>) when interrupt remapping is on.
  - Creates the domain when it does not exist, otherwise brings it to the spec. Devices it
    owns carry a C(ua-nestlab-lab-) alias; everything else in the domain (disks, the
    root ports libvirt adds for USB and the balloon, devices added by hand) is worked around
    and never renumbered or removed.
  - All edits land in one define. With the default spec the guest sees the expanders of the
    default lab at buses C(0000:b4), C(0000:c8) and C(0000:dc), NICs on buses b5-b7, c9-cb and dd-df.
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  spec:
    description:
      - The lab spec. Omitted keys take the default lab's values.
    type: dict
    default: {}
    suboptions:
      name:
        description: Domain name to use when O(name) is not given.
        type: str
      accel:
        description:
          - V(kvm) gives C(<domain type='kvm'>) and C(<cpu mode='host-passthrough'>);
            V(tcg) gives C(<domain type='qemu'>) and C(<cpu mode='maximum'>).
          - V(auto) picks KVM only when libvirt offers KVM B(and) the host CPU has vmx or svm;
            a C(/dev/kvm) device alone is not trusted.
        type: str
        choices: [auto, kvm, tcg]
        default: auto
      nested_virt:
        description:
          - Whether the guest's CPU offers vmx/svm, so that the guest can run its own guests under KVM.
          - V(auto) offers them under KVM (the host CPU's vmx/svm, for nested KVM) and under TCG alike. Under
            TCG C(maximum) offers QEMU's emulated SVM and hiding it breaks the guest, but KVM on it hangs the
            guest (docs/design.md), so role nestlab.pci.guest_nested_virt keeps KVM out of such a guest, whose
            own guests use TCG. RV(nested_virt) says they are exposed in both cases.
          - V(on) leaves vmx/svm in. V(off) hides them with C(<feature policy='disable'>); it is refused
            under TCG, where a hidden SVM crashes the guest's static glibc programs.
        type: str
        choices: [auto, 'on', 'off']
        default: auto
      machine:
        description: Machine type; expander buses and the intel vIOMMU need q35.
        type: str
        default: q35
      nic_model:
        description: Model of every NIC that does not name its own.
        type: str
        choices: [e1000e, igb, virtio, e1000, rtl8139, vmxnet3]
        default: e1000e
      vcpus:
        description: vCPU count; by default the highest CPU of any node plus one. Every vCPU must be in a node.
        type: int
      numa:
        description:
          - One entry per guest NUMA node, in node order.
          - Default three nodes with 4, 2 and 2 CPUs, 4, 2 and 2 GiB and three NICs each.
        type: list
        elements: dict
        suboptions:
          cpus:
            description: A CPU count (nodes get consecutive CPUs) or a CPU set such as C(0-3) in every node.
            type: raw
            required: true
          memory:
            description:
              - Memory of the node, in MiB or with a unit (C(2GiB), C(512MiB)); at least 64 MiB.
              - Units follow libvirt - V(KiB), V(MiB), V(GiB) and V(K), V(M), V(G) are binary (powers of 1024), V(KB), V(MB), V(GB) decimal (powers of 1000).
            type: raw
            required: true
          nics:
            description:
              - A NIC count, or a list of C({model, mac, vfs, wire}) dicts (all optional), each on its own root port.
              - At most 32 per node (one root port per slot of the expander's bus).
              - A NIC without C(wire) has user-mode networking (no device on the host). C(wire) is C({port, peer_port}) -
                the NIC is wired point to point to another NIC (of this lab or another lab on the same host) - it sends
                its frames in UDP datagrams to C(peer_port) on 127.0.0.1 and takes them on C(port) (libvirt's
                C(<interface type='udp'>)); the other NIC has the two ports the other way round. The host carries the
                frames on loopback only - nothing is bridged or routed, and no IP address is needed. Ports 1024-65535,
                each C(port) used once.
            type: raw
            default: 0
          nic_model:
            description: Model of this node's NICs that do not name their own; by default O(spec.nic_model).
            type: str
            choices: [e1000e, igb, virtio, e1000, rtl8139, vmxnet3]
          vfs:
            description:
              - SR-IOV virtual functions per physical function for this node's C(igb) NICs (0 to 7; the
                guest's igb driver enables at most 7). A NIC's own C(vfs) wins.
              - The VFs are made inside the guest (the guest_sriov role); the domain gets the physical functions.
            type: int
          distances:
            description: Distance from this node to every node (C(10) to itself); all nodes or none.
            type: list
            elements: int
          hugepages:
            description:
              - 2 MiB huge pages to reserve on this node inside the guest (the guest_hugepages role); at most
                half of the node's memory. The default lab has 256/128/128.
            type: int
      iommu:
        description:
          - The vIOMMU; V(null) for none of the lab's (a vIOMMU the domain already had stays).
          - A vIOMMU the domain already had is adopted as M(nestlab.pci.iommu) adopts one. The switches
            asked for are turned on and nothing else of it changes. One of another model is refused, not
            replaced.
        type: dict
        suboptions:
          model:
            description:
              - vIOMMU model. V(amd) is for a guest whose CPU is AMD-like (QEMU's TCG, or KVM on an AMD host), so
                that tools that decide by the CPU's vendor (libvirt's virt-host-validate) find the IOMMU they
                look for. It needs libvirt's C(<iommu model='amd'>) (12.9.0 tested; 9.0.0 and 11.3.0 lack it)
                and a QEMU whose amd-iommu has C(dma-remap) (11.1.3 tested; 7.2 and 10.0 lack it), turned on
                with C(-global amd-iommu.dma-remap=on) in C(<qemu:commandline>). See M(nestlab.pci.iommu).
              - V(auto) chooses by the vendor L1's CPU shows, here where the domain is defined. Under KVM
                (C(host-passthrough)) that is this host's CPU; under TCG it is QEMU's emulation, which shows
                AuthenticAMD. An Intel CPU gets V(intel). An AMD one gets V(amd) where this host's libvirt and
                QEMU have it as above, else V(intel), and the reason says what was missing (tools that judge the
                IOMMU by the CPU's vendor will then warn). With V(auto), O(spec.iommu.caching_mode) and
                O(spec.iommu.eim) cannot be set; an V(intel) choice gets caching mode on. The choice and its reason
                are returned in RV(iommu).
            type: str
            choices: [intel, amd, virtio, auto]
            default: intel
          intremap:
            description: Interrupt remapping (intel and amd); adds C(<ioapic driver='qemu'/>).
            type: bool
            default: true
          caching_mode:
            description:
              - Caching mode (intel only), needed when the guest assigns devices behind the vIOMMU.
              - The default is V(true) for intel and V(false) for the other models.
            type: bool
            default: true
          eim:
            description: Extended interrupt mode (intel only, needs O(spec.iommu.intremap)); allows more than 255 vCPUs.
            type: bool
            default: false
  vm:
    description:
      - What the lab needs to run as a virtual host, all owned by this module and applied in the same define.
      - Omit it for a topology-only domain.
    type: dict
    suboptions:
      disk:
        description: Disk image (the overlay of the base image) as C(vda) on virtio.
        type: path
      disk_format:
        description: Format of O(vm.disk).
        type: str
        default: qcow2
      kernel:
        description:
          - Boot this kernel directly (C(<os><kernel>)) instead of from a disk; for small nested guests.
        type: path
      initrd:
        description: The initramfs for O(vm.kernel).
        type: path
      cmdline:
        description: The kernel command line for O(vm.kernel).
        type: str
      seed:
        description:
          - A cloud-init NoCloud seed (an ISO 9660 image labelled C(cidata)), attached read-only as a
            SATA CD-ROM. For base images that are cloud images; see the base_image and lab_vm roles.
        type: path
      console_log:
        description: File that receives the serial console.
        type: path
      ssh_port:
        description:
          - Port on 127.0.0.1 forwarded to the guest's port 22, through a virtio-net management NIC on
            QEMU user-mode networking (C(<qemu:commandline>); libvirt 9.0 has no port forwards for user-mode NICs).
        type: int
      mgmt_mac:
        description: MAC of the management NIC; the base image configures DHCP only on the default.
        default: "52:54:00:4e:4c:4d"
        type: str
      fw_cfg:
        description:
          - QEMU fw_cfg entries C(opt/nestlab/<name>) read from files on the hypervisor; the base image
            takes C(authorized_keys) and C(ssh_host_ed25519_key) from them.
        type: dict
"""

EXAMPLES = r"""
- name: The default lab (3 NUMA nodes, 3 e1000e per node, Intel vIOMMU) as domain nestlab
  nestlab.pci.lab_topology:
    name: nestlab

- name: An asymmetric lab, written to a file instead of libvirt
  nestlab.pci.lab_topology:
    path: /tmp/lab2.xml
    name: lab2
    spec:
      accel: tcg
      numa:
        - {cpus: 1, memory: 1GiB, nics: 1}
        - {cpus: 3, memory: 512MiB, nics: [{model: virtio}, {mac: "52:54:00:aa:bb:01"}], distances: [15, 10]}
      iommu: {model: intel, eim: false}
  register: lab

- name: Show what the guest will see
  ansible.builtin.debug:
    msg: "{{ lab.tree }}"
"""

RETURN = r"""
plan:
  description: Per NUMA node, what the guest will see.
  returned: success
  type: list
  elements: dict
  sample:
    - node: 2
      expander_bus: "0000:dc"
      bus_nr: 220
      controller_index: 3
      root_ports: ["0000:dd", "0000:de", "0000:df"]
      nics:
        - {alias: ua-nestlab-lab-nic2-2, model: e1000e, mac: "52:54:00:12:34:56",
           guest_address: "0000:df:00.0", nodedev: pci_0000_df_00_0}
tree:
  description: The PCI controllers of the resulting domain drawn as a tree, as in the recipe's blog post.
  returned: success
  type: str
  sample: "pcie-root (index == 0)\n  |\n  +- pcie-expander-bus (index == 1, numa node == 0, busNr == 180)"
accel:
  description: The accelerator used, and why.
  returned: success
  type: dict
  sample: {accel: tcg, reason: "libvirt lists KVM but the host CPU shows no vmx/svm"}
nested_virt:
  description: Whether the guest CPU offers vmx/svm (see O(spec.nested_virt)), and why.
  returned: success
  type: dict
  sample:
    exposed: true
    reason: >-
      TCG: QEMU's emulated SVM stays in the guest's CPU (hiding it breaks the guest); guest_nested_virt
      keeps KVM out of such a guest, whose own guests use TCG
iommu:
  description:
    - The vIOMMU model in force, why (for O(spec.iommu.model=auto), what it was chosen by), and its settings.
    - V(null) when the spec has no vIOMMU.
  returned: success
  type: dict
  sample:
    model: intel
    reason: >-
      under TCG L1's CPU is QEMU's emulation, which shows AuthenticAMD with svm, but the libvirt on this host has
      no <iommu model='amd'> (its schema allows intel, smmuv3, virtio; 12.9.0 has it, 9.0.0 and 11.3.0 do not): intel
      instead, and tools that judge the IOMMU by the CPU's vendor (virt-host-validate) will warn
    settings: {model: intel, intremap: true, caching_mode: true, eim: false}
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
vm:
  description: The management NIC's port forward, PCI slot and MAC.
  returned: when O(vm.ssh_port) is given
  type: dict
  sample: {ssh_port: 22022, mgmt_slot: 30, mgmt_mac: "52:54:00:3a:1b:2c"}
created:
  description: True when the domain (or file) did not exist before.
  returned: success
  type: bool
  sample: true
conflicts:
  description: How many times the definition changed under us and the edit was planned again.
  returned: when non-zero
  type: int
  sample: 1
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import new_domain
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import plan_summary
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import (
    missing_nic_models,
    resolve_iommu,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import (
    accel_settings,
    nested_virt_exposed,
    apply_lab,
    apply_vm,
    pci_tree,
)


class LabTopology(DomainEditModule):
    can_create = True

    def prepare(self):
        self.spec = validate_spec(self.params["spec"])
        if not self.params.get("name"):
            self.params["name"] = self.spec["name"]
        if not self.params.get("name") and not self.params.get("path"):
            raise SpecError("name", None, "give the domain's name (or spec.name, or path)")
        self.accel = None
        self.iommu_settled = False
        self.created = False

    def _resolve_accel(self):
        if self.accel is None:
            if self.spec["accel"] == "auto":
                self.accel, reason = self.target.accel_probe()
            else:
                self.accel, reason = self.spec["accel"], "asked for in spec.accel"
            self.result["accel"] = {"accel": self.accel, "reason": reason}
        return self.accel

    def _resolve_iommu(self, emulator):
        """spec.iommu settled here, once (an edit planned again keeps it): model auto becomes intel or amd, a
        model this host lacks is refused."""
        if self.iommu_settled or not self.spec["iommu"]:
            return
        self.spec["iommu"], why = resolve_iommu(self.target, self.spec["iommu"], self._resolve_accel(), emulator,
                                                "spec.iommu.model")
        self.iommu_settled = True
        self.result["iommu"] = {"model": self.spec["iommu"]["model"], "reason": why, "settings": self.spec["iommu"]}

    def new_domain(self):
        name = self.params.get("name")
        if not name:
            raise SpecError("name", None, "%s does not exist yet: give the new domain's name" % self.target.label)
        self.created = True
        domain_type = accel_settings(self._resolve_accel())[0]
        return new_domain(name, domain_type, self.spec["machine"])

    def edit(self, dom):
        if not dom.is_q35:
            raise SpecError("spec.machine", dom.machine,
                            "domain %r is not a q35 machine; expander buses and the vIOMMU need q35 "
                            "(recreate the domain with --machine q35)" % dom.name)
        lab = self.params.get("name") or dom.name
        emulator = self.target.emulator()
        self._resolve_iommu(emulator)
        plan, new_models = apply_lab(dom, self.spec, lab, self._resolve_accel())
        missing = missing_nic_models(new_models, emulator)
        if missing:
            raise SpecError("spec.nic_model", missing[0],
                            "the QEMU on this host (%s) has no %r device; use e1000e, or a QEMU that has it "
                            "(igb needs QEMU >= 8.0)" % (emulator, missing[0]))
        self.plan = plan
        self.vm = apply_vm(dom, self.params["vm"], lab) if self.params["vm"] else None

    def finish(self, dom, changed):
        self.result.setdefault("iommu", None)
        self.result["created"] = self.created
        self.result["plan"] = plan_summary(self.plan)
        self.result["tree"] = pci_tree(dom)
        exposed, why = nested_virt_exposed(self.spec, self._resolve_accel())
        self.result["nested_virt"] = {"exposed": exposed, "reason": why}
        if self.vm:
            self.result["vm"] = self.vm


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            spec=dict(type="dict", default={}),
            vm=dict(type="dict", options=dict(
                disk=dict(type="path"),
                disk_format=dict(type="str", default="qcow2"),
                kernel=dict(type="path"),
                initrd=dict(type="path"),
                cmdline=dict(type="str"),
                seed=dict(type="path"),
                console_log=dict(type="path"),
                ssh_port=dict(type="int"),
                mgmt_mac=dict(type="str", default="52:54:00:4e:4c:4d"),
                fw_cfg=dict(type="dict"),
            )),
        ),
        **TARGET_MODULE_KWARGS
    )
    LabTopology(module).run()


if __name__ == "__main__":
    main()
