# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device builders and the whole-lab apply: plan -> edits of a Domain. No I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import pci_address
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import LAB_PREFIX, make_plan
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import E

LAB_IOMMU_ALIAS = LAB_PREFIX + "iommu"


def expander_element(index, slot, bus_nr, node):
    return E("controller", {"type": "pci", "index": index, "model": "pcie-expander-bus"}, [
        E("target", {"busNr": bus_nr}, [E("node", text=node)]),
        pci_address(0, slot),
    ])


def root_port_element(index, parent_index, slot):
    return E("controller", {"type": "pci", "index": index, "model": "pcie-root-port"}, [
        pci_address(parent_index, slot),
    ])


def nic_element(mac, model, bus, wire=None):
    # user-mode (SLIRP) networking: no TAP devices on the host, as in the recipe; a wired NIC instead sends
    # its frames in UDP datagrams to its peer's port on 127.0.0.1 and takes them on its own (QEMU's udp
    # socket backend), so the host carries them on loopback only: nothing is bridged or routed
    source = [E("source", {"address": "127.0.0.1", "port": str(wire["peer_port"])}, [
        E("local", {"address": "127.0.0.1", "port": str(wire["port"])}),
    ])] if wire else []
    return E("interface", {"type": "udp" if wire else "user"},
             [E("mac", {"address": mac})] + source + [E("model", {"type": model}), pci_address(bus, 0)])


def accel_settings(accel):
    """Domain type and CPU mode for an accelerator: host-passthrough needs KVM."""
    if accel == "kvm":
        return "kvm", "host-passthrough"
    return "qemu", "maximum"


VIRT_FLAGS = ("svm", "vmx")


def nested_virt_exposed(spec, accel):
    """(exposed, reason): does the guest CPU offer vmx/svm? SpecError for 'off' under TCG."""
    wanted = spec.get("nested_virt", "auto")
    if wanted == "off" and accel != "kvm":
        raise SpecError("spec.nested_virt", "off",
                        "under TCG QEMU 7.2's 'max' CPU with svm disabled crashes the guest's static glibc "
                        "programs (seen here); use auto (under TCG, guest_nested_virt keeps KVM out of the guest)")
    if wanted != "auto":
        return wanted == "on", "asked for in spec.nested_virt"
    if accel == "kvm":
        return True, "KVM: the guest gets the host CPU's vmx/svm for nested KVM"
    return True, ("TCG: QEMU's emulated SVM stays in the guest's CPU (hiding it breaks the guest); "
                  "guest_nested_virt keeps KVM out of such a guest, whose own guests use TCG")


def apply_lab(dom, spec, lab, accel):
    """Bring ``dom`` to ``spec``. Returns (plan, nic models that are added or changed)."""
    # the vIOMMU first: the plan is made on the document as it will be (a vIOMMU that is replaced
    # frees its slot, so one run converges); a virtio vIOMMU of ours stands where libvirt put it
    dom.ensure_iommu(spec["iommu"], LAB_IOMMU_ALIAS, "spec.iommu.")
    plan = make_plan(spec, lab, dom.inventory(LAB_PREFIX, obstacles=(LAB_IOMMU_ALIAS,)))
    domain_type, cpu_mode = accel_settings(accel)
    dom.ensure_domain_type(domain_type)
    dom.ensure_cpu_mode(cpu_mode)
    dom.ensure_cpu_features_disabled(VIRT_FLAGS, not nested_virt_exposed(spec, accel)[0])
    dom.ensure_numa(plan["cells"], plan["vcpus"], "spec.vcpus")
    wanted = set()
    new_models = set()
    for exp in plan["expanders"]:
        wanted.add(exp["alias"])
        dom.ensure_device(exp["alias"], expander_element(exp["index"], exp["slot"], exp["bus_nr"], exp["node"]))
        for port in exp["root_ports"]:
            wanted.add(port["alias"])
            dom.ensure_device(port["alias"], root_port_element(port["index"], exp["index"], port["slot"]))
            nic = port["nic"]
            wanted.add(nic["alias"])
            if dom.ensure_device(nic["alias"], nic_element(nic["mac"], nic["model"], port["index"], nic.get("wire"))):
                new_models.add(nic["model"])
    topology_prefixes = tuple(LAB_PREFIX + kind for kind in ("pxb", "rp", "nic"))
    for elem in dom.owned(LAB_PREFIX):
        alias = dom.alias_of(elem)
        if alias.startswith(topology_prefixes) and alias not in wanted:
            dom.devices.remove(elem)
    return plan, sorted(new_models)


def pci_tree(dom):
    """Text drawing of the PCI controllers, like the seed's 'pcie-root (index == 0)' tree."""
    ctrls = dom.controllers_by_index()
    children = {}
    for index, ctrl in sorted(ctrls.items()):
        addr = dom.address_of(ctrl)
        parent = addr["bus"] if addr is not None else (0 if index else None)
        if index == 0:
            continue
        children.setdefault(parent, []).append(index)
    endpoints = {}
    for elem in dom.devices:
        if elem.tag == "controller" and elem.get("type") == "pci":
            continue
        addr = dom.address_of(elem)
        if addr is not None:
            endpoints.setdefault(addr["bus"], []).append(elem)

    def label(index):
        ctrl = ctrls[index]
        extra = ""
        node = ctrl.find("target/node")
        if node is not None:
            extra = ", numa node == %s" % node.text.strip()
        bus_nr = ctrl.find("target")
        if bus_nr is not None and bus_nr.get("busNr"):
            extra += ", busNr == %s" % bus_nr.get("busNr")
        text = "%s (index == %d%s)" % (ctrl.get("model"), index, extra)
        for dev in endpoints.get(index, []):
            model = dev.find("model")
            kind = model.get("type") if model is not None and model.get("type") else dev.get("type", dev.tag)
            text += " -> %s %s" % (dev.tag, kind) if kind != dev.tag else " -> %s" % dev.tag
        return text

    lines = []

    def walk(index, prefix):
        # a bare '|' line opens each group and follows every sibling that had children
        kids = children.get(index, [])
        for pos, kid in enumerate(kids):
            if pos == 0 or children.get(kids[pos - 1]):
                lines.append(prefix + "|")
            lines.append(prefix + "+- " + label(kid))
            walk(kid, prefix + ("     " if pos == len(kids) - 1 else "|    "))

    if 0 in ctrls:
        lines.append("%s (index == 0)" % ctrls[0].get("model"))
        walk(0, "  ")
    return "\n".join(lines)


MGMT_ID = "nestlab-mgmt"
# The base image configures DHCP on this MAC only (each lab's management NIC is alone on its own
# user-mode network, so one MAC serves every lab); lab NICs stay unconfigured.
MGMT_MAC = "52:54:00:4e:4c:4d"
FWCFG_PREFIX = "opt/nestlab/"
LAB_DISK_ALIAS = LAB_PREFIX + "disk"
LAB_SERIAL_ALIAS = LAB_PREFIX + "serial"
LAB_SEED_ALIAS = LAB_PREFIX + "seed"


def _mgmt_args(dom):
    """The domain's <qemu:arg> elements, and the indexes of our four -netdev/-device arguments among them."""
    args = dom.qemu_args()
    ours = []
    for idx, arg in enumerate(args[:-1]):
        if arg.get("value") in ("-netdev", "-device") and "nestlab-mgmt" in (args[idx + 1].get("value") or ""):
            ours.extend([idx, idx + 1])
    return args, ours


def apply_vm(dom, vm, lab):
    """The lab VM's own devices: disk, serial log, fw_cfg entries, management NIC with an SSH port forward."""
    if vm.get("disk"):
        dom.ensure_device(LAB_DISK_ALIAS, E("disk", {"type": "file", "device": "disk"}, [
            E("driver", {"name": "qemu", "type": vm.get("disk_format") or "qcow2"}),
            E("source", {"file": vm["disk"]}),
            E("target", {"dev": "vda", "bus": "virtio"}),
        ]))
    if vm.get("kernel"):
        # direct kernel boot (a nested guest made of the host's own kernel and a small initramfs)
        os_elem = dom.root.find("os")
        wanted = [("kernel", vm["kernel"]), ("initrd", vm.get("initrd")), ("cmdline", vm.get("cmdline"))]
        for tag, value in wanted:
            elem = os_elem.find(tag)
            if value is None:
                if elem is not None:
                    os_elem.remove(elem)
                continue
            if elem is None:
                elem = E(tag)
                os_elem.append(elem)
            elem.text = value
    if vm.get("seed"):
        # cloud-init NoCloud: an ISO 9660 volume labelled cidata, read-only on SATA (q35 has AHCI built in)
        dom.ensure_device(LAB_SEED_ALIAS, E("disk", {"type": "file", "device": "cdrom"}, [
            E("driver", {"name": "qemu", "type": "raw"}),
            E("source", {"file": vm["seed"]}),
            E("target", {"dev": "sda", "bus": "sata"}),
            E("readonly"),
        ]))
    if vm.get("console_log"):
        dom.ensure_device(LAB_SERIAL_ALIAS, E("serial", {"type": "file"}, [
            E("source", {"path": vm["console_log"]}), E("target", {"port": "0"})]))
    wanted = dict((FWCFG_PREFIX + name, path) for name, path in sorted((vm.get("fw_cfg") or {}).items()))
    sysinfo = dom.root.find("sysinfo[@type='fwcfg']")
    have = dict((e.get("name"), e.get("file")) for e in sysinfo.findall("entry")) if sysinfo is not None else {}
    have_ours = dict((k, v) for k, v in have.items() if k.startswith(FWCFG_PREFIX))
    if have_ours != wanted:
        if sysinfo is None:
            sysinfo = E("sysinfo", {"type": "fwcfg"})
            anchor = dom.root.find("os")
            anchor.addprevious(sysinfo) if anchor is not None else dom.root.append(sysinfo)
        for entry in sysinfo.findall("entry"):
            if entry.get("name", "").startswith(FWCFG_PREFIX):
                sysinfo.remove(entry)
        for name, path in wanted.items():
            sysinfo.append(E("entry", {"name": name, "file": path}))
        if len(sysinfo) == 0:
            sysinfo.getparent().remove(sysinfo)
    if vm.get("ssh_port"):
        args, ours = _mgmt_args(dom)
        slot = None
        for idx in ours:
            match = re.search(r"addr=0x([0-9a-f]+)", args[idx].get("value") or "")
            if match:
                slot = int(match.group(1), 16)
        used = set()
        for elem in dom.devices:
            addr = dom.address_of(elem)
            if addr is not None and addr["bus"] == 0:
                used.add(addr["slot"])
        if slot is None or slot in used:
            slot = next(s for s in range(0x1E, 0x00, -1) if s not in used)
        mac = vm.get("mgmt_mac") or MGMT_MAC
        desired = ["-netdev", "user,id=%s,hostfwd=tcp:127.0.0.1:%d-:22" % (MGMT_ID, vm["ssh_port"]),
                   "-device", "virtio-net-pci,netdev=%s,mac=%s,bus=pcie.0,addr=0x%02x" % (MGMT_ID, mac, slot)]
        if [args[idx].get("value") for idx in ours] != desired:
            dom.replace_qemu_args([args[idx] for idx in ours], desired)
        return {"ssh_port": vm["ssh_port"], "mgmt_slot": slot, "mgmt_mac": mac}
    return {}
