# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: spec_from_hwloc
short_description: A lab spec shaped like a real machine, from hwloc's XML of it
version_added: 0.1.0
description:
  - Reads the topology of a machine as hwloc writes it (C(lstopo --of xml), XML versions 2 and 3) and
    returns a lab spec for M(nestlab.pci.lab_topology) and the lab playbook (a "twin" of that machine),
    with a fidelity row for every NUMA node and PCI function of the source saying what the twin kept,
    scaled, placed by a rule or dropped, and why.
  - NUMA nodes - one per source node, in the order of their OS indexes (numbered from 0 in the lab). The
    lab's vCPUs and memory are shared out in the source's proportions (every node at least one vCPU and
    256 MiB). hwloc's NUMA latency matrix (C(NUMALatency), from the ACPI SLIT) is copied when the source has
    one; a matrix whose local distance is not 10 is scaled to 10, and values above 255 are clamped.
  - "PCI - every function of a carried class (O(classes)) lands on the node hwloc makes it local to: the
    nodeset of its nearest ancestor. A function local to several nodes (or to the whole machine) goes to the
    first of them, said in its row. Devices QEMU emulates exactly keep their identity (the 82576, 8086:10c9,
    is QEMU's V(igb); the 82574L is V(e1000e); the 82540EM V(e1000)); other boards of the 82576 become
    V(igb); a physical function with virtual functions becomes an V(igb) with as many VFs, up to 7 (what
    Linux's igb driver enables); any other becomes an V(e1000e). Virtual functions are known by their
    name in the source (V(Virtual Function)) or their IDs."
  - Devices with no emulation in the lab (GPUs, storage and NVMe controllers, InfiniBand unless carried)
    are listed as dropped, with their node. NVMe is not carried - the lab spec has no storage devices.
  - A source with more NUMA nodes than the lab spec allows (16) is refused, naming the limit. hwloc XML
    v1 is refused with the command that converts it (hwloc 2 reads v1).
  - With O(twin_lstopo), also compares the twin's own C(lstopo --of xml) (run inside the lab's virtual
    host) with the source - the number of NUMA nodes, the distances the twin should show, and each carried
    NIC on its node with its virtual functions.
  - A pure function of its inputs - it reads O(src) and changes nothing. Run it where O(src) is (the
    controller, with C(delegate_to) V(localhost)).
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  src:
    description:
      - The path of the source machine's hwloc XML (C(lstopo --of xml > server.xml) on that machine).
      - A DTD or entity declaration is refused, except hwloc's own plain C(<!DOCTYPE topology SYSTEM "hwloc2.dtd">)
        line; nothing is ever loaded from it or from the network.
    type: path
    required: true
  vcpus:
    description: The lab's vCPUs in all, shared out in proportion to the source nodes' CPUs (raised to one per node).
    type: int
    default: 8
  memory:
    description:
      - The lab's memory in all, shared out in proportion to the source nodes' memory, in steps of 64 MiB.
      - Units follow libvirt - V(KiB), V(MiB), V(GiB) and V(K), V(M), V(G) are binary (powers of 1024), V(KB), V(MB), V(GB) decimal (powers of 1000).
    type: str
    default: 8GiB
  classes:
    description:
      - The device classes the twin carries as lab NICs - V(ethernet) (PCI class 0200), V(infiniband) (0c06,
        carried as Ethernet NICs) and V(network) (the other network classes, 02xx).
    type: list
    elements: str
    choices: [ethernet, infiniband, network]
    default: [ethernet]
  nic_models:
    description:
      - The NIC models the hypervisor's QEMU offers (the lab playbook C(twin.yml) reads them with
        M(nestlab.pci.virt_capabilities)). A function whose exact model is missing gets the closest one
        that is there, said in its row.
    type: list
    elements: str
    choices: [e1000e, igb, virtio, e1000, rtl8139, vmxnet3]
  twin_lstopo:
    description: The twin's own C(lstopo --of xml) output (text), to compare with the source.
    type: str
  twin_nics:
    description:
      - With O(twin_lstopo), the lab's NICs in the order of the spec, each with its PCI address in the
        virtual host and its node (the lab report's C(guest.nics)).
    type: list
    elements: dict
    default: []
extends_documentation_fragment:
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: A lab spec shaped like the server (on the controller)
  nestlab.pci.spec_from_hwloc:
    src: files/server.xml
    vcpus: 8
    memory: 8GiB
  delegate_to: localhost
  register: twin

- name: Show what the twin kept and what it dropped
  ansible.builtin.debug:
    msg: "{{ twin.fidelity | map(attribute='summary') | list }}"

- name: Build it
  ansible.builtin.include_role:
    name: nestlab.pci.lab_vm
  vars:
    lab_vm_spec: "{{ twin.spec }}"
"""

RETURN = r"""
spec:
  description: The twin's lab spec (only C(numa), with each node's C(cpus), C(memory), C(nics) and C(distances)).
  returned: always
  type: dict
  sample: {"numa": [{"cpus": 4, "memory": "4096MiB", "distances": [10, 20],
                     "nics": [{"model": "igb"}, {"model": "igb"}]},
                    {"cpus": 4, "memory": "4096MiB", "distances": [20, 10], "nics": []}]}
fidelity:
  description:
    - One row per source NUMA node, for the distances, and per PCI function (bridges aside).
    - C(kind) (V(node), V(distances), V(pci)), C(source) (the node, the PCI address, the matrix),
      C(node) (the twin's node), C(outcome) (V(kept), V(scaled), V(placed), V(dropped)), C(twin) (what the
      twin has instead), C(why), C(summary) (one line of all that); PCI rows also C(what) (the device) and,
      when carried, C(nic) (its index among the node's NICs) and C(vfs).
  returned: always
  type: list
  elements: dict
source:
  description: The source machine - C(product) (DMI product name, when hwloc recorded it), C(version) (of the
    XML), C(nodes), C(pus), C(memory) (bytes), C(pci_functions).
  returned: always
  type: dict
comparison:
  description:
    - With O(twin_lstopo), one row per check - C(check), C(source) (what the twin should show - the source's, or
      as the fidelity rows scaled it), C(twin) (what hwloc inside it shows), C(ok), C(summary).
  returned: when O(twin_lstopo) is given
  type: list
  elements: dict
matches:
  description: With O(twin_lstopo), true when every row of RV(comparison) is ok.
  returned: when O(twin_lstopo) is given
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import twin, xmlengine
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import NIC_MODELS, validate_spec
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import SIZE_HELP, parse_size_bytes


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            vcpus=dict(type="int", default=8),
            memory=dict(type="str", default="8GiB"),
            classes=dict(type="list", elements="str", choices=sorted(twin.CLASSES), default=list(twin.DEFAULT_CLASSES)),
            nic_models=dict(type="list", elements="str", choices=["e1000e", "igb", "virtio", "e1000", "rtl8139", "vmxnet3"]),
            twin_lstopo=dict(type="str"),
            twin_nics=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    if not xmlengine.HAS_LXML:
        module.fail_json(msg=missing_required_lib("lxml"), exception=str(xmlengine.LXML_IMPORT_ERROR))
    params = module.params
    error = None
    try:
        memory = parse_size_bytes(params["memory"])
    except ValueError:
        memory, error = None, "memory: %r is not a size; %s" % (params["memory"], SIZE_HELP)
    if error is None and memory < twin.MIB * twin.MIN_NODE_MIB:
        error = "memory: %r is less than %d MiB; give at least %d MiB (a node needs that much)" % (
            params["memory"], twin.MIN_NODE_MIB, twin.MIN_NODE_MIB)
    if error is None and not 1 <= params["vcpus"] <= 255:
        error = "vcpus: %r is not valid; a vCPU count, 1-255" % params["vcpus"]
    if error is None and params["nic_models"] is not None and not params["nic_models"]:
        error = "nic_models: [] leaves the twin no NIC model; give at least one of %s" % ", ".join(sorted(NIC_MODELS))
    if error is None:
        try:
            with open(params["src"], "rb") as handle:
                text = handle.read()
        except (IOError, OSError) as exc:
            error = "src: %s cannot be read (%s); give the path of an hwloc XML file on this host" % (
                params["src"], exc.strerror or exc)
    if error is None:
        try:
            source = twin.parse_topology(text)
            spec, fidelity = twin.make_twin(source, vcpus=params["vcpus"], memory_mib=memory // twin.MIB,
                                            classes=params["classes"], nic_models=params["nic_models"])
            validate_spec(spec)
        except (twin.TwinError, xmlengine.XMLSafetyError) as exc:
            error = "%s (src is %s)" % (exc, params["src"])
        except ValueError as exc:  # a spec the lab would refuse: a bug here, said as such
            error = "src: the twin of %s is not a valid lab spec (%s); please report it" % (params["src"], exc)
    if error is not None:
        module.fail_json(msg=error)
    result = dict(changed=False, spec=spec, fidelity=fidelity, source=dict(
        product=source["product"], version=source["version"], nodes=len(source["nodes"]),
        pus=sum(node["cpus"] for node in source["nodes"]), memory=sum(node["memory"] for node in source["nodes"]),
        pci_functions=len(source["pci"])))
    if params["twin_lstopo"] is not None:
        try:
            seen = twin.parse_topology(params["twin_lstopo"], field="twin_lstopo")
            nics = [dict(address=str(nic["address"]), node=int(nic["node"])) for nic in params["twin_nics"]]
        except (twin.TwinError, xmlengine.XMLSafetyError) as exc:
            error = str(exc)
        except (KeyError, TypeError, ValueError) as exc:
            error = "twin_nics: each entry needs address and node (%s)" % exc
        if error is not None:
            module.fail_json(msg=error)
        result["comparison"] = twin.compare(source, fidelity, seen, nics)
        result["matches"] = all(row["ok"] for row in result["comparison"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
