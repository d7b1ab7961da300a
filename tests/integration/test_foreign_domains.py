"""Issue 14: the XML modules on files as users have them, not as this project writes them. One
rule for a name that is not the document's (case 8), and writes that keep what the file was to
the system: owner, group, mode, SELinux label, a symbolic link (case 9, shared with guest_config)."""

import os

from helpers import run_module

LABEL = b"system_u:object_r:virt_etc_t:s0\x00"


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_a_name_that_is_not_the_documents_is_refused_on_a_file(tmp_path):
    path = str(tmp_path / "lab.xml")
    spec = {"accel": "tcg", "numa": [{"cpus": 1, "memory": "256MiB", "nics": 1}]}
    assert run_module("lab_topology", {"path": path, "name": "filelab", "spec": spec})["changed"]
    before = read(path)
    # another name would seed other MACs while <name> stayed: refused, nothing written
    for module, args in (("lab_topology", {"spec": spec}), ("lab_topology", {"spec": dict(spec, name="other")}),
                         ("iommu", {}), ("numa", {"cells": [{"cpus": "0", "memory": "256MiB"}]})):
        full = dict(args, path=path) if "name" in args.get("spec", {}) else dict(args, path=path, name="other")
        bad = run_module(module, full)
        assert bad["failed"] and bad["msg"].startswith("name: 'other' is not valid; %s is the document of domain "
                                                       "'filelab'" % path), (module, bad)
        assert bad["error"]["field"] == "name" and "leave name out or give 'filelab'" in bad["msg"], bad
        assert read(path) == before, module
    # the document's own name, or none, is the same edit: no change
    for args in ({"name": "filelab"}, {}):
        again = run_module("lab_topology", dict(args, path=path, spec=spec))
        assert again["changed"] is False, again
    assert read(path) == before


def test_a_write_keeps_owner_group_mode_and_label_and_goes_through_a_symlink(tmp_path):
    real_dir, link_dir = tmp_path / "qemu", tmp_path / "mine"
    real_dir.mkdir()
    link_dir.mkdir()
    real, link = str(real_dir / "lab.xml"), str(link_dir / "lab.xml")
    spec = {"accel": "tcg", "numa": [{"cpus": 1, "memory": "256MiB", "nics": 1}]}
    assert run_module("lab_topology", {"path": real, "name": "filelab", "spec": spec})["changed"]
    os.chown(real, 1234, 2345)
    os.chmod(real, 0o640)
    os.setxattr(real, "security.selinux", LABEL)
    os.symlink(real, link)
    before = read(real)
    # check mode through the link writes nothing; a real run changes the file the link points to
    grown = dict(spec, iommu={"eim": True})
    assert run_module("lab_topology", {"path": link, "spec": grown}, check=True)["changed"] and read(real) == before
    done = run_module("lab_topology", {"path": link, "spec": grown})
    assert done["changed"] and read(real) != before and b'eim="on"' in read(real)
    assert os.path.islink(link) and os.readlink(link) == real
    st = os.stat(real)
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (1234, 2345, "0o640")
    assert os.getxattr(real, "security.selinux") == LABEL
    assert sorted(os.listdir(str(real_dir))) == ["lab.xml"] and sorted(os.listdir(str(link_dir))) == ["lab.xml"]
    assert run_module("lab_topology", {"path": link, "spec": grown}, check=True)["changed"] is False


def test_guest_config_writes_through_a_symlink_and_keeps_the_owner(tmp_path):
    real, link = str(tmp_path / "real.conf"), str(tmp_path / "link.conf")
    with open(real, "w") as handle:
        handle.write("old\n")
    os.chown(real, 1234, 2345)
    os.setxattr(real, "security.selinux", LABEL)
    os.symlink(real, link)
    done = run_module("guest_config", {"files": [{"path": link, "content": "new\n", "mode": "0600"}]})
    assert done["changed"], done
    assert os.path.islink(link) and read(real) == b"new\n"
    st = os.stat(real)
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (1234, 2345, "0o600")
    assert os.getxattr(real, "security.selinux") == LABEL
    assert sorted(os.listdir(str(tmp_path))) == ["link.conf", "real.conf"]
    assert run_module("guest_config", {"files": [{"path": link, "content": "new\n", "mode": "0600"}]})["changed"] is False


# A q35 domain as a user may have written it: no aliases, no addresses but the one given.
def q35(devices="", extra=""):
    return ("<domain type='qemu'>\n  <name>theirs</name>\n  <memory unit='MiB'>512</memory>\n  <vcpu>4</vcpu>\n"
            "  <os><type arch='x86_64' machine='q35'>hvm</type></os>\n  <features><acpi/><ioapic driver='qemu'/>"
            "</features>\n%s  <devices>\n%s  </devices>\n</domain>\n" % (extra, devices))


SLOT1 = "<address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>"
SMALL = {"accel": "tcg", "numa": [{"cpus": 2, "memory": "256MiB", "nics": 1}, {"cpus": 2, "memory": "256MiB", "nics": 1}]}


def write(tmp_path, text):
    path = str(tmp_path / "theirs.xml")
    with open(path, "w") as handle:
        handle.write(text)
    return path


def root_slots(path):
    from lxml import etree
    root = etree.parse(path).getroot()
    return sorted((dev.find("alias").get("name") if dev.find("alias") is not None else dev.tag, int(addr.get("slot"), 16))
                  for dev in root.find("devices") for addr in dev.findall("address")
                  if addr.get("bus") in ("0x00", "0") and addr.get("type") == "pci")


def converges(module, args):
    """check, real, check, real again: the first run changes and the next ones do not."""
    assert run_module(module, args, check=True)["changed"]
    first = run_module(module, args)
    assert first["changed"], first
    assert run_module(module, args, check=True)["changed"] is False
    again = run_module(module, args, diff=True)
    assert again["changed"] is False and again["diff"]["before"] == again["diff"]["after"], again
    return first


def test_a_virtio_iommu_of_theirs_is_adopted_or_refused_never_swapped(tmp_path):
    # case 3 and 5: their virtio vIOMMU at slot 0x01; the spec's intel one would replace it, drop its
    # address, and the next run would plan the expanders on the freed slot
    path = write(tmp_path, q35("    <iommu model='virtio'>\n      %s\n    </iommu>\n" % SLOT1))
    before = read(path)
    bad = run_module("lab_topology", {"path": path, "spec": SMALL})
    assert bad["failed"] and bad["error"]["field"] == "spec.iommu.model", bad
    assert "vIOMMU of model 'virtio' that nestlab.pci did not add" in bad["msg"] and "slot=0x01" in bad["msg"], bad["msg"]
    assert "give 'virtio' to adopt it" in bad["msg"] and read(path) == before
    bad = run_module("iommu", {"path": path})
    assert bad["failed"] and bad["error"]["field"] == "model" and read(path) == before, bad
    # asked for as it is: adopted where it stands, the expanders planned around its slot, one run converges
    converges("lab_topology", {"path": path, "spec": dict(SMALL, iommu={"model": "virtio"})})
    slots = root_slots(path)
    assert ("iommu", 1) in slots and [s for a, s in slots if a.startswith("ua-nestlab-lab-pxb")] == [2, 3], slots


def test_our_virtio_iommu_keeps_its_slot_out_of_the_plan(tmp_path):
    # ours, where libvirt put it (the first free slot): the expanders must not be planned onto it
    path = write(tmp_path, q35("    <iommu model='virtio'>\n      <alias name='ua-nestlab-lab-iommu'/>\n      %s\n"
                               "    </iommu>\n" % SLOT1))
    converges("lab_topology", {"path": path, "spec": dict(SMALL, iommu={"model": "virtio"})})
    slots = root_slots(path)
    assert ("ua-nestlab-lab-iommu", 1) in slots and [s for a, s in slots if "pxb" in a] == [2, 3], slots
    # the spec asks for intel now: ours is replaced (its address goes), one run converges
    converges("lab_topology", {"path": path, "spec": SMALL})
    assert b"model=\"intel\"" in read(path) and b"slot=\"0x01\"" not in read(path).split(b"<iommu")[1]


def test_an_intel_iommu_of_theirs_keeps_what_the_spec_does_not_turn_on(tmp_path):
    # case 5: aw_bits, iotlb and their eim stay; the spec turns caching_mode on; no alias of ours
    path = write(tmp_path, q35("    <iommu model='intel'>\n      <driver intremap='on' eim='on' aw_bits='48' "
                               "iotlb='on'/>\n    </iommu>\n"))
    converges("lab_topology", {"path": path, "spec": SMALL})
    from lxml import etree
    iommu = etree.parse(path).getroot().find("devices/iommu")
    assert dict(iommu.find("driver").attrib) == {"intremap": "on", "eim": "on", "aw_bits": "48", "iotlb": "on",
                                                 "caching_mode": "on"}
    assert iommu.find("alias") is None
    # and no lab of ours removes it: the spec without a vIOMMU leaves theirs
    assert run_module("lab_topology", {"path": path, "spec": dict(SMALL, iommu=None)})["changed"] is False
    assert etree.parse(path).getroot().find("devices/iommu") is not None


def test_a_cpu_topology_follows_the_vcpu_count(tmp_path):
    # case 4: 2 sockets x 2 cores for 4 vCPUs; the spec has 8: the socket count follows, the core shape stays
    topology = "  <cpu mode='maximum'>\n    <topology sockets='2' dies='1' cores='2' threads='1'/>\n  </cpu>\n"
    path = write(tmp_path, q35(extra=topology))
    spec = dict(SMALL, numa=[{"cpus": 4, "memory": "256MiB", "nics": 1}, {"cpus": 4, "memory": "256MiB", "nics": 1}])
    converges("lab_topology", {"path": path, "spec": spec})
    assert b'<topology sockets="4" dies="1" cores="2" threads="1"/>' in read(path)
    assert b"<vcpu placement=\"static\">8</vcpu>" in read(path) or b"<vcpu>8</vcpu>" in read(path)
    # 3 vCPUs cannot be whole sockets of 2 cores: refused, naming the count, nothing written
    before = read(path)
    odd = dict(SMALL, numa=[{"cpus": 1, "memory": "256MiB", "nics": 1}, {"cpus": 2, "memory": "256MiB", "nics": 1}])
    bad = run_module("lab_topology", {"path": path, "spec": odd})
    assert bad["failed"] and bad["msg"].startswith("spec.vcpus: 3 is not valid; the domain's <cpu><topology> has 2 "
                                                   "vCPUs per socket (dies=1, cores=2, threads=1)"), bad["msg"]
    assert read(path) == before
    bad = run_module("numa", {"path": path, "cells": [{"cpus": "0", "memory": "256MiB"}, {"cpus": "1-2", "memory": "256MiB"}]})
    assert bad["failed"] and bad["msg"].startswith("vcpus: 3 is not valid") and read(path) == before, bad


def test_restoring_a_device_that_was_made_again_is_refused(tmp_path):
    # case 7: stash the lab's own NIC, lab_topology makes it again, then restore: two devices, one alias
    path = str(tmp_path / "lab.xml")
    assert run_module("lab_topology", {"path": path, "name": "filelab", "spec": SMALL})["changed"]
    nic = "ua-nestlab-lab-nic0-0"
    assert run_module("stash", {"path": path, "key": "nic", "alias": nic})["changed"]
    assert run_module("lab_topology", {"path": path, "spec": SMALL})["changed"]
    before = read(path)
    bad = run_module("stash", {"path": path, "key": "nic", "state": "restored"})
    assert bad["failed"] and bad["error"]["field"] == "key", bad
    assert "has a device with alias %r again" % nic in bad["msg"] and "state=absent" in bad["msg"], bad["msg"]
    assert read(path) == before
    # a document that already has two (written by hand): every module refuses it, naming the alias
    from lxml import etree
    root = etree.parse(path).getroot()
    twin = [dev for dev in root.find("devices") if dev.find("alias") is not None and dev.find("alias").get("name") == nic][0]
    import copy
    root.find("devices").append(copy.deepcopy(twin))
    with open(path, "wb") as handle:
        handle.write(etree.tostring(root))
    before = read(path)
    for module, args in (("lab_topology", {"spec": SMALL}), ("stash", {"state": "listed"}), ("iommu", {})):
        bad = run_module(module, dict(args, path=path))
        assert bad["failed"] and "more than one device with alias %r" % nic in bad["msg"], (module, bad)
        assert read(path) == before
    assert run_module("stash", {"path": path, "key": "nic", "state": "absent"})["failed"]
