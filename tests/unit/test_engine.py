"""XML engine and whole-lab apply: safe parsing, golden XML for the seed lab, idempotent re-apply."""

import copy
import os

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import Domain, new_domain
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import XMLSafetyError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guestview import expectations
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import apply_lab, pci_tree
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import matches, parse, to_text

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")

# What virt-install gives for the seed's guest before any editing (libvirt adds root ports).
LIBVIRT_FRESH_Q35 = """<domain type='kvm'>
  <name>f25x86_64</name>
  <memory unit='KiB'>8192000</memory>
  <vcpu placement='static'>8</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/f25x86_64.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <target chassis='1' port='0x10'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>
    </controller>
    <controller type='pci' index='2' model='pcie-root-port'>
      <target chassis='2' port='0x11'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x1'/>
    </controller>
    <controller type='pci' index='3' model='pcie-root-port'>
      <target chassis='3' port='0x12'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x2'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:10:26:7e'/>
      <source network='default'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </memballoon>
  </devices>
</domain>
"""


def seed_lab(accel="tcg"):
    dom = Domain(new_domain("nestlab", "qemu"))
    plan, dummy = apply_lab(dom, validate_spec(None), "nestlab", accel)
    return dom, plan


def test_seed_lab_matches_golden_xml():
    dom, dummy = seed_lab()
    with open(os.path.join(GOLDEN, "seed_lab.xml")) as handle:
        assert to_text(dom.root) == handle.read()


def test_seed_lab_tree_matches_golden_drawing():
    dom, dummy = seed_lab()
    with open(os.path.join(GOLDEN, "seed_tree.txt")) as handle:
        assert pci_tree(dom) + "\n" == handle.read()


def test_apply_twice_changes_nothing():
    dom, dummy = seed_lab()
    before = to_text(dom.root)
    apply_lab(dom, validate_spec(None), "nestlab", "tcg")
    assert to_text(dom.root) == before


def test_existing_devices_are_worked_around_and_kept():
    dom = Domain(parse(LIBVIRT_FRESH_Q35))
    original = copy.deepcopy(dom.root)
    plan, dummy = apply_lab(dom, validate_spec(None), "f25x86_64", "tcg")
    # nothing of the user's was renumbered, moved or removed
    for elem in original.find("devices"):
        assert any(matches(elem, have) for have in dom.devices), elem.tag
    assert [e["index"] for e in plan["expanders"]] == [4, 5, 6]
    assert all(e["slot"] not in (0, 2) for e in plan["expanders"])
    # the guest still sees the seed's buses
    assert [e["bus"] for e in expectations(dom)["expanders"]] == ["0000:b4", "0000:c8", "0000:dc"]
    assert dom.root.get("type") == "qemu" and dom.root.find("cpu").get("mode") == "maximum"


def test_kvm_uses_host_passthrough():
    dom, dummy = seed_lab("kvm")
    assert dom.root.get("type") == "kvm" and dom.root.find("cpu").get("mode") == "host-passthrough"


def test_shrinking_the_spec_removes_only_owned_devices():
    dom = Domain(parse(LIBVIRT_FRESH_Q35))
    apply_lab(dom, validate_spec(None), "x", "tcg")
    small = validate_spec({"numa": [{"cpus": 8, "memory": "8GiB", "nics": 1}], "iommu": None})
    apply_lab(dom, small, "x", "tcg")
    owned = [dom.alias_of(e) for e in dom.owned()]
    assert owned == ["ua-nestlab-lab-pxb0", "ua-nestlab-lab-rp0-0", "ua-nestlab-lab-nic0-0"]
    assert dom.root.find("devices/iommu") is None
    assert dom.root.find("devices/disk") is not None and dom.root.find("devices/memballoon") is not None


def test_expectations_follow_the_xml():
    dom, plan = seed_lab()
    exp = expectations(dom)
    assert exp["nodes"] == {0: {"cpus": [0, 1, 2, 3], "memory_kib": 4194304},
                            1: {"cpus": [4, 5], "memory_kib": 2097152},
                            2: {"cpus": [6, 7], "memory_kib": 2097152}}
    assert [(n["address"], n["node"]) for n in exp["nics"]][-1] == ("0000:df:00.0", 2)
    assert exp["iommu"] == {"model": "intel", "intremap": True}


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<domain><name>&lol2;</name></domain>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><domain><name>&xxe;</name></domain>"""
NETWORK_DTD = """<?xml version="1.0"?>
<!DOCTYPE domain SYSTEM "http://127.0.0.1:9/domain.dtd"><domain><name>x</name></domain>"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL, NETWORK_DTD, "<domain><name>x</domain>"],
                         ids=["billion-laughs", "external-entity", "network-dtd", "malformed"])
def test_unsafe_or_broken_xml_is_refused(text):
    with pytest.raises(XMLSafetyError):
        parse(text)


def test_matches_ignores_what_libvirt_adds_and_compares_numbers():
    want = parse("<controller type='pci' index='4'><address type='pci' bus='0x01' slot='0'/></controller>")
    have = parse("<controller type='pci' index='4' model='pcie-root-port'><model name='pcie-root-port'/>"
                 "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></controller>")
    assert matches(want, have)
    have.find("address").set("slot", "0x01")
    assert not matches(want, have)


def test_cdata_survives_reindent():
    root = parse("<domain><metadata><s:x xmlns:s='urn:t'><![CDATA[<a> & </b>]]></s:x></metadata></domain>")
    assert "<![CDATA[<a> & </b>]]>" in to_text(root)


def _qemu_args(dom):
    cmd = dom.root.find("{http://libvirt.org/schemas/domain/qemu/1.0}commandline")
    return [] if cmd is None else [a.get("value") for a in cmd]


def test_the_amd_viommu_comes_with_dma_remap_and_goes_with_it():
    """iommu.model amd: libvirt's <iommu model='amd'> with interrupt remapping (and the QEMU ioapic it needs),
    and QEMU's -global amd-iommu.dma-remap=on once (without it the device did not translate a vfio NIC's DMA);
    a second apply changes nothing; back to intel, or to no vIOMMU, the arguments go and the user's stay."""
    dom = Domain(parse(LIBVIRT_FRESH_Q35))
    cmd = dom.root.makeelement("{http://libvirt.org/schemas/domain/qemu/1.0}commandline")
    dom.root.append(cmd)
    for value in ("-set", "theirs"):
        cmd.append(cmd.makeelement("{http://libvirt.org/schemas/domain/qemu/1.0}arg", value=value))
    amd = validate_spec({"iommu": {"model": "amd"}})
    apply_lab(dom, amd, "x", "tcg")
    iommu = dom.root.find("devices/iommu")
    assert iommu.get("model") == "amd" and iommu.find("driver").attrib == {"intremap": "on"}, to_text(iommu)
    assert dom.root.find("features/ioapic").get("driver") == "qemu"
    assert _qemu_args(dom) == ["-set", "theirs", "-global", "amd-iommu.dma-remap=on"]
    before = to_text(dom.root)
    apply_lab(dom, amd, "x", "tcg")
    assert to_text(dom.root) == before
    apply_lab(dom, validate_spec(None), "x", "tcg")
    assert dom.root.find("devices/iommu").get("model") == "intel" and _qemu_args(dom) == ["-set", "theirs"]
    apply_lab(dom, amd, "x", "tcg")
    apply_lab(dom, validate_spec({"iommu": None}), "x", "tcg")
    assert dom.root.find("devices/iommu") is None and _qemu_args(dom) == ["-set", "theirs"]
    # alone, the arguments take their <qemu:commandline> with them
    dom = Domain(parse(LIBVIRT_FRESH_Q35))
    apply_lab(dom, amd, "x", "tcg")
    apply_lab(dom, validate_spec({"iommu": None}), "x", "tcg")
    assert "commandline" not in to_text(dom.root)
