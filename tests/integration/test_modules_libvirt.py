"""Every module against a real libvirtd: check, real, check again; honest diffs; bad input writes nothing."""

import libvirt
import pytest

from helpers import run_module

pytestmark = pytest.mark.libvirt

SMALL = {"numa": [{"cpus": 1, "memory": 256, "nics": 1}, {"cpus": 1, "memory": 256, "nics": 1}], "accel": "tcg"}


def xml_of(conn, name):
    return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


def check_real_check(module, args):
    """The standard's sequence: check mode says 'changed', the real run changes, check mode then says not."""
    pre = run_module(module, args, check=True, diff=True)
    assert not pre.get("failed"), pre
    assert pre["changed"] is True, pre
    real = run_module(module, args, diff=True)
    assert not real.get("failed"), real
    assert real["changed"] is True
    post = run_module(module, args, check=True, diff=True)
    assert not post.get("failed"), post
    assert post["changed"] is False, post["diff"]
    again = run_module(module, args)
    assert again["changed"] is False
    return pre, real, post


def changed_lines(diff):
    """(added, removed) lines of a diff, as sets of stripped lines."""
    import difflib
    lines = [line for line in difflib.unified_diff(diff["before"].splitlines(), diff["after"].splitlines(),
                                                   lineterm="", n=0)
             if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return ({l[1:].strip() for l in lines if l[0] == "+"}, {l[1:].strip() for l in lines if l[0] == "-"})


@pytest.fixture
def lab(conn, domain_name):
    """A small 2-node lab domain, defined through lab_topology."""
    name = domain_name("mod")
    result = run_module("lab_topology", {"name": name, "spec": SMALL})
    assert result["changed"], result
    return name


def test_lab_topology_check_real_check(conn, domain_name):
    name = domain_name("lab")
    pre, real, post = check_real_check("lab_topology", {"name": name, "spec": {"accel": "tcg"}})
    assert pre["created"] and real["created"] and not post["created"]
    assert [n["expander_bus"] for n in real["plan"]] == ["0000:b4", "0000:c8", "0000:dc"]
    assert real["plan"][2]["nics"][2]["nodedev"] == "pci_0000_df_00_0"
    xml = xml_of(conn, name)
    assert xml.count("model='pcie-expander-bus'") == 3 and xml.count("<interface type='user'>") == 9
    assert "<ioapic driver='qemu'/>" in xml and "intremap='on'" in xml and "caching_mode='on'" in xml
    # check mode and the real run plan the same thing
    assert pre["plan"] == real["plan"]
    # the diff of a real run is exactly the new domain; of an unchanged run, nothing
    assert real["diff"]["before"] == "" and "ua-nestlab-lab-nic2-2" in real["diff"]["after"]
    assert post["diff"]["before"] == post["diff"]["after"]


def test_a_wired_nic_is_a_udp_socket_on_loopback_and_rewiring_it_is_one_edit(conn, domain_name):
    name = domain_name("wired")
    wire = {"port": 40101, "peer_port": 40102}
    spec = dict(SMALL, numa=[{"cpus": 1, "memory": 256, "nics": [{"wire": wire}, {}]}, {"cpus": 1, "memory": 256}])
    pre, real, post = check_real_check("lab_topology", {"name": name, "spec": spec})
    assert real["plan"][0]["nics"][0]["wire"] == wire and "wire" not in real["plan"][0]["nics"][1]
    xml = xml_of(conn, name)
    assert xml.count("<interface type='udp'>") == 1 and xml.count("<interface type='user'>") == 1
    assert "<source address='127.0.0.1' port='40102'>" in xml and "<local address='127.0.0.1' port='40101'/>" in xml
    # the other way round (the peer's ports): one NIC changes, in place
    swapped = dict(spec, numa=[{"cpus": 1, "memory": 256, "nics": [{"wire": {"port": 40102, "peer_port": 40101}}, {}]},
                               {"cpus": 1, "memory": 256}])
    pre, real, post = check_real_check("lab_topology", {"name": name, "spec": swapped})
    xml = xml_of(conn, name)
    assert "<source address='127.0.0.1' port='40101'>" in xml and "<local address='127.0.0.1' port='40102'/>" in xml


def test_lab_topology_edit_diff_shows_only_the_change(conn, lab):
    spec = dict(SMALL, numa=[{"cpus": 1, "memory": 256, "nics": 1}, {"cpus": 1, "memory": 256, "nics": 2}])
    pre, real, post = check_real_check("lab_topology", {"name": lab, "spec": spec})
    added, removed = changed_lines(real["diff"])
    # libvirt may move unchanged devices around: whatever left one place came back in another
    assert removed <= added, removed - added
    new = "\n".join(sorted(added - removed))
    assert "ua-nestlab-lab-rp1-1" in new and "ua-nestlab-lab-nic1-1" in new
    assert "ua-nestlab-lab-pxb0" not in new and "ua-nestlab-lab-nic0-0" not in new
    # check mode planned the same new devices that the real run wrote
    pre_added, pre_removed = changed_lines(pre["diff"])
    assert {l for l in pre_added - pre_removed if "alias" in l} == {l for l in added - removed if "alias" in l}


def test_pci_expander_and_root_port(conn, lab):
    check_real_check("pci_expander", {"name": lab, "id": "extra", "node": 1, "bus_nr": 100})
    pre, real, post = check_real_check("root_port", {"name": lab, "id": "extra-0", "expander": "extra"})
    assert real["root_port"]["guest_bus"] == "0x65".replace("0x", "0000:")
    xml = xml_of(conn, lab)
    assert "ua-nestlab-pxb-extra" in xml and "ua-nestlab-rp-extra-0" in xml
    check_real_check("root_port", {"name": lab, "id": "extra-0", "state": "absent"})
    check_real_check("pci_expander", {"name": lab, "id": "extra", "state": "absent"})
    assert "ua-nestlab-pxb-extra" not in xml_of(conn, lab)


def test_iommu_module(conn, lab):
    pre, real, post = check_real_check("iommu", {"name": lab, "eim": True})
    assert "eim='on'" in xml_of(conn, lab)
    check_real_check("iommu", {"name": lab, "model": "virtio"})
    xml = xml_of(conn, lab)
    assert "<iommu model='virtio'" in xml and "intremap" not in xml


def test_numa_module(conn, lab):
    cells = [{"cpus": 2, "memory": 512}, {"cpus": 2, "memory": "512MiB", "distances": [20, 10]}]
    cells[0]["distances"] = [10, 20]
    check_real_check("numa", {"name": lab, "cells": cells, "cpu_mode": "maximum"})
    xml = xml_of(conn, lab)
    assert "<vcpu placement='static'>4</vcpu>" in xml and "<sibling id='1' value='20'/>" in xml
    assert "<memory unit='KiB'>1048576</memory>" in xml


def test_stash_module_round_trip(conn, lab):
    # libvirt sorts controllers it added itself on the first redefine: start from its fixed point
    conn.defineXML(xml_of(conn, lab))
    before = xml_of(conn, lab)
    args = {"name": lab, "key": "nic", "alias": "ua-nestlab-lab-nic1-0"}
    pre, real, post = check_real_check("stash", args)
    assert real["stashes"][0]["key"] == "nic"
    stashed = xml_of(conn, lab)
    assert "urn:x-nestlab:pci:stash:1" in stashed and stashed.count("<interface type='") == 1
    text = {"name": lab, "key": "note", "text": "<disk> not finished"}
    check_real_check("stash", text)
    assert "<![CDATA[<disk> not finished]]>" in xml_of(conn, lab)
    listed = run_module("stash", {"name": lab, "state": "listed"})
    assert [s["key"] for s in listed["stashes"]] == ["nic", "note"] and not listed["changed"]
    check_real_check("stash", {"name": lab, "key": "note", "state": "absent"})
    check_real_check("stash", {"name": lab, "key": "nic", "state": "restored"})
    assert xml_of(conn, lab) == before


def test_hostdev_module(conn, lab):
    devs = sorted(d.name() for d in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV))
    if not devs:
        pytest.fail("this host lists no PCI node devices; the hostdev test needs one")
    pre, real, post = check_real_check("hostdev", {"name": lab, "nodedev": devs[-1]})
    xml = xml_of(conn, lab)
    assert "<hostdev mode='subsystem' type='pci' managed='yes'>" in xml
    assert real["hostdev"]["nodedev"] == devs[-1]
    check_real_check("hostdev", {"name": lab, "nodedev": devs[-1], "state": "absent"})


# invalid arguments of every module: tests/reliability/test_bad_input.py


def test_nic_model_the_host_qemu_lacks(conn, lab):
    """A NIC model this host's QEMU has is written; one it lacks is refused before anything is written.
    QEMU's own device list decides which is which (Debian 12's QEMU 7.2 has vmxnet3 and no igb)."""
    import subprocess
    help_text = subprocess.run(["qemu-system-x86_64", "-nodefaults", "-machine", "none", "-device", "help"],
                               stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    assert 'name "e1000e"' in help_text, help_text[-2000:]
    for model in ("vmxnet3", "igb"):
        before = xml_of(conn, lab)
        result = run_module("lab_topology", {"name": lab, "spec": dict(SMALL, nic_model=model)})
        if 'name "%s"' % model in help_text:
            assert result["changed"] and not result.get("failed"), (model, result.get("msg"))
            assert "<model type='%s'/>" % model in xml_of(conn, lab)
        else:
            assert result.get("failed") and result["msg"].startswith("spec.nic_model: '%s'" % model), (model, result)
            assert xml_of(conn, lab) == before


def _amd_viommu_here():
    """Whether this host could give the amd vIOMMU, read without the collection's code: libvirt's schema lists
    the model for <iommu>, and QEMU lists dma-remap among amd-iommu's properties."""
    import re
    import subprocess
    try:
        with open("/usr/share/libvirt/schemas/domaincommon.rng") as handle:
            define = re.search(r'<define name="iommu">.*?</define>', handle.read(), re.S).group(0)
    except (IOError, AttributeError):
        define = ""
    props = subprocess.run(["qemu-system-x86_64", "-nodefaults", "-machine", "none", "-device", "amd-iommu,help"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           check=False).stdout
    return "<value>amd</value>" in define and "dma-remap=" in props


def test_the_amd_viommu_as_this_hosts_qemu_and_libvirt_judge_it(conn, lab):
    """iommu.model amd needs QEMU's amd-iommu with dma-remap and a libvirt whose schema has the model: a host
    without them (Debian 12's QEMU 7.2 and libvirt 9.0) is refused before anything is written, naming the field
    and the QEMU; with them, the definition has it. QEMU's property list and libvirt's schema decide."""
    import subprocess
    props = subprocess.run(["qemu-system-x86_64", "-nodefaults", "-machine", "none", "-device", "amd-iommu,help"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           check=False).stdout
    for module, args, field in (("lab_topology", {"name": lab, "spec": dict(SMALL, iommu={"model": "amd"})},
                                 "spec.iommu.model"),
                                ("iommu", {"name": lab, "model": "amd"}, "model")):
        before = xml_of(conn, lab)
        result = run_module(module, args)
        if not _amd_viommu_here():
            assert result.get("failed") and result["msg"].startswith("%s: 'amd'" % field), result
            if "dma-remap=" not in props:
                assert "dma-remap" in result["msg"] and "qemu-system-x86_64" in result["msg"], result["msg"]
            assert xml_of(conn, lab) == before
        else:
            xml = xml_of(conn, lab)
            assert "<iommu model='amd'>" in xml and "amd-iommu.dma-remap=on" in xml, xml


def test_an_auto_viommu_is_the_one_of_the_vendor_l1s_cpu_shows(conn, domain_name):
    """iommu.model auto, with the accelerator left to the probe as well (KVM where it works, else TCG): L1's
    CPU is this host's under KVM (vmx means intel, svm amd, as virt-host-validate reads it) and QEMU's
    AuthenticAMD under TCG; amd is chosen only where this host's libvirt and QEMU have it. The choice and
    its reason come back, the definition has that model, and check-real-check holds; the iommu module's
    auto agrees on the domain it made."""
    name = domain_name("auto")
    spec = {"numa": SMALL["numa"], "iommu": {"model": "auto"}}
    pre, real, post = check_real_check("lab_topology", {"name": name, "spec": spec})
    with open("/proc/cpuinfo") as handle:
        flags = set(next(l for l in handle if l.startswith("flags")).split(":", 1)[1].split())
    amd_cpu = real["accel"]["accel"] == "tcg" or ("svm" in flags and "vmx" not in flags)
    expected = "amd" if amd_cpu and _amd_viommu_here() else "intel"
    assert pre["iommu"] == real["iommu"] == post["iommu"], (pre["iommu"], post["iommu"])
    assert real["iommu"]["model"] == expected, (real["accel"], real["iommu"])
    if amd_cpu and expected == "intel":
        assert "intel instead" in real["iommu"]["reason"] and "will warn" in real["iommu"]["reason"], real["iommu"]
    assert real["iommu"]["settings"]["caching_mode"] is (expected == "intel")
    xml = xml_of(conn, name)
    assert "<iommu model='%s'>" % expected in xml and "<driver intremap='on'" in xml, xml
    again = run_module("iommu", {"name": name, "model": "auto"}, check=True)
    assert (again["changed"], again["iommu"]["model"]) == (False, expected), again
    assert again["reason"] == real["iommu"]["reason"]


def test_intremap_on_a_non_q35_machine(conn, domain_name):
    name = domain_name("i440fx")
    conn.defineXML("<domain type='qemu'><name>%s</name><memory unit='MiB'>128</memory><os>"
                   "<type arch='x86_64' machine='pc'>hvm</type></os></domain>" % name)
    before = xml_of(conn, name)
    result = run_module("iommu", {"name": name})
    assert result.get("failed") and result["msg"].startswith("intremap:") and "q35" in result["msg"]
    result = run_module("lab_topology", {"name": name})
    assert result.get("failed") and result["msg"].startswith("spec.machine:")
    assert xml_of(conn, name) == before


# concurrent edits of one domain: tests/reliability/test_concurrency.py


def test_lab_topology_vm_devices_check_real_check(conn, domain_name, tmp_path):
    name = domain_name("vm")
    vm = {"disk": str(tmp_path / "disk.qcow2"), "seed": str(tmp_path / "seed.iso"),
          "console_log": str(tmp_path / "console.log"), "ssh_port": 40022,
          "fw_cfg": {"authorized_keys": str(tmp_path / "id.pub")}}
    pre, real, post = check_real_check("lab_topology", {"name": name, "spec": SMALL, "vm": vm})
    assert real["vm"] == {"ssh_port": 40022, "mgmt_slot": 0x1e, "mgmt_mac": "52:54:00:4e:4c:4d"}
    xml = xml_of(conn, name)
    assert "<alias name='ua-nestlab-lab-seed'/>" in xml and "<disk type='file' device='cdrom'>" in xml
    assert "<target dev='sda' bus='sata'/>" in xml and "<readonly/>" in xml
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in xml
    assert "name='opt/nestlab/authorized_keys'" in xml
    # a new port moves the forward (libvirt may also reorder the controllers it added itself)
    moved = run_module("lab_topology", {"name": name, "spec": SMALL, "vm": dict(vm, ssh_port=40023)}, diff=True)
    added, removed = changed_lines(moved["diff"])
    assert moved["changed"] and [l for l in added if "hostfwd" in l] == [
        '<qemu:arg value="user,id=nestlab-mgmt,hostfwd=tcp:127.0.0.1:40023-:22"/>']
    assert [l for l in removed if "hostfwd" in l] == [
        '<qemu:arg value="user,id=nestlab-mgmt,hostfwd=tcp:127.0.0.1:40022-:22"/>']
    assert "hostfwd=tcp:127.0.0.1:40023-:22" in xml_of(conn, name)
