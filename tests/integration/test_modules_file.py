"""The same modules on a domain XML file: check, real, check; atomic writes; bad input leaves the bytes alone."""

import os

import pytest

from helpers import run_module


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_lab_topology_on_a_file(tmp_path):
    path = str(tmp_path / "lab.xml")
    args = {"path": path, "name": "filelab", "spec": {"accel": "tcg"}}
    pre = run_module("lab_topology", args, check=True, diff=True)
    assert pre["changed"] and pre["created"] and not os.path.exists(path)
    real = run_module("lab_topology", args, diff=True)
    assert real["changed"] and os.path.exists(path)
    assert real["diff"]["after"] == read(path).decode()
    os.chmod(path, 0o640)
    post = run_module("lab_topology", args, check=True)
    assert not post["changed"]
    again = run_module("lab_topology", args)
    assert not again["changed"] and oct(os.stat(path).st_mode & 0o777) == "0o640"
    # a change keeps the file's mode and leaves no temporary files behind
    bigger = run_module("lab_topology", dict(args, spec={"accel": "tcg", "iommu": {"eim": True}}))
    assert bigger["changed"] and oct(os.stat(path).st_mode & 0o777) == "0o640"
    assert sorted(os.listdir(str(tmp_path))) == ["lab.xml"]


def test_nested_virt_off_hides_svm_and_vmx_under_kvm_and_is_refused_under_tcg(tmp_path):
    from lxml import etree
    path = str(tmp_path / "lab.xml")

    def disabled():
        cpu = etree.parse(path).getroot().find("cpu")
        return sorted(f.get("name") for f in cpu.findall("feature") if f.get("policy") == "disable")

    # TCG: QEMU's emulated SVM stays (hiding it crashed static glibc programs in the guest)
    tcg = run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": "tcg"}})
    assert disabled() == [] and tcg["nested_virt"]["exposed"] is True
    assert "guest_nested_virt keeps KVM out" in tcg["nested_virt"]["reason"]
    before = read(path)
    bad = run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": "tcg", "nested_virt": "off"}})
    assert bad["failed"] and bad["msg"].startswith("spec.nested_virt: 'off' is not valid; under TCG"), bad
    assert read(path) == before
    # KVM: off hides both flags (check mode first, the file untouched by it); auto brings them back
    off = {"path": path, "name": "f", "spec": {"accel": "kvm", "nested_virt": "off"}}
    assert run_module("lab_topology", off, check=True)["changed"] and read(path) == before
    assert run_module("lab_topology", off)["nested_virt"] == {"exposed": False, "reason": "asked for in spec.nested_virt"}
    assert disabled() == ["svm", "vmx"] and not run_module("lab_topology", off, check=True)["changed"]
    kvm = run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": "kvm"}})
    assert kvm["nested_virt"]["exposed"] is True and disabled() == []
    bad = run_module("lab_topology", {"path": path, "name": "f", "spec": {"nested_virt": "yes"}})
    assert bad["failed"] and bad["msg"].startswith("spec.nested_virt: 'yes'") and "auto, on, off" in bad["msg"]


@pytest.mark.parametrize("module,args,field", [
    ("lab_topology", {"spec": {"numa": [{"cpus": 2, "memory": 128, "nics": 1}], "vcpus": 1}}, "spec.vcpus"),
    ("stash", {"key": "k", "xpath": "./devices/nothing"}, "xpath"),
    ("pci_expander", {"id": "bad id!", "node": 0}, "id"),
    ("root_port", {"id": "p", "expander": "missing"}, "expander"),
    ("hostdev", {"address": "0000:zz:00.0"}, "address"),
])
def test_bad_input_leaves_the_file_byte_identical(tmp_path, module, args, field):
    path = str(tmp_path / "lab.xml")
    assert run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": "tcg"}})["changed"]
    with open(path, "a") as handle:
        handle.write("<!-- hand-made trailing comment -->\n")
    before = read(path)
    result = run_module(module, dict(args, path=path))
    assert result.get("failed") and result["msg"].startswith(field + ":"), result
    assert read(path) == before


def test_stash_round_trip_on_a_file_is_byte_identical(tmp_path):
    path = str(tmp_path / "lab.xml")
    run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": "tcg"}})
    before = read(path)
    for key, xpath in (("nic", "./devices/interface[alias/@name='ua-nestlab-lab-nic1-1']"), ("cpu", "./cpu"),
                       ("iommu", "./devices/iommu")):
        assert run_module("stash", {"path": path, "key": key, "xpath": xpath})["changed"]
    for key in ("iommu", "cpu", "nic"):
        assert run_module("stash", {"path": path, "key": key, "state": "restored"})["changed"]
    assert read(path) == before


def test_hostdev_and_numa_on_a_file(tmp_path):
    path = str(tmp_path / "lab.xml")
    run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": "tcg"}})
    for module, args in (("hostdev", {"nodedev": "pci_0000_df_00_0"}),
                         ("numa", {"cells": [{"cpus": 4, "memory": 4096}, {"cpus": 2, "memory": 1024},
                                             {"cpus": 2, "memory": 1024}]})):
        args = dict(args, path=path)
        assert run_module(module, args, check=True)["changed"]
        assert run_module(module, args)["changed"]
        assert not run_module(module, args, check=True)["changed"]
    text = read(path).decode()
    assert "<address domain=\"0x0000\" bus=\"0xdf\" slot=\"0x00\" function=\"0x0\"/>" in text
    assert "<memory unit=\"KiB\">6291456</memory>" in text


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_the_lab_xml_of_either_accelerator_passes_libvirts_schema(tmp_path, accel):
    """This machine cannot run KVM guests, so the KVM branch of lab_topology never boots here: the
    strongest proof it gets is libvirt's own schema on the whole default lab's XML it writes, next to
    the TCG one that the boot tests run."""
    path = str(tmp_path / ("%s.xml" % accel))
    made = run_module("lab_topology", {"path": path, "name": "f", "spec": {"accel": accel}})
    assert made["changed"] and not made.get("failed"), made
    xml = read(path).decode("utf-8")
    if accel == "kvm":
        assert "<domain type=\"kvm\"" in xml or "<domain type='kvm'" in xml
        assert "host-passthrough" in xml
    else:
        assert "<domain type=\"qemu\"" in xml or "<domain type='qemu'" in xml
    # the RELAX NG schema that virt-xml-validate and libvirt's own tests use, from the libvirt packages
    from lxml import etree

    schema = etree.RelaxNG(file="/usr/share/libvirt/schemas/domain.rng")
    valid = schema.validate(etree.parse(path))
    assert valid, [str(error) for error in schema.error_log][:5]


NO_INDEX = """<domain type='qemu'>
  <name>noindex</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <controller type='pci' model='pcie-root'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='usb' model='qemu-xhci'/>
    <interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/></interface>
  </devices>
</domain>
"""


@pytest.mark.parametrize("module,args", [
    ("lab_topology", {"name": "noindex", "spec": {"accel": "tcg"}}),
    ("iommu", {}),
])
def test_controllers_without_an_index_are_planned_around(tmp_path, module, args):
    """libvirt accepts PCI controllers without an index and gives them the lowest free ones at define:
    the modules plan around them (check, real run, check again) instead of failing on the missing
    number, and leave them as they were."""
    from lxml import etree

    path = str(tmp_path / "noindex.xml")
    with open(path, "w") as handle:
        handle.write(NO_INDEX)
    pre = run_module(module, dict(args, path=path), check=True)
    assert pre["changed"] and not pre.get("failed"), pre.get("msg")
    assert read(path) == NO_INDEX.encode()
    real = run_module(module, dict(args, path=path))
    assert real["changed"] and not real.get("failed"), real.get("msg")
    post = run_module(module, dict(args, path=path), check=True)
    assert post["changed"] is False, post.get("diff")
    root = etree.fromstring(read(path))
    # the user's index-less controllers are still there, still without an index; ours all have one
    assert len(root.xpath("./devices/controller[@type='pci'][not(@index)]")) == 3
    assert all(c.get("index") for c in root.xpath("./devices/controller[@type='pci'][starts-with(alias/@name, 'ua-')]"))
    schema = etree.RelaxNG(file="/usr/share/libvirt/schemas/domain.rng")
    assert schema.validate(root), [str(error) for error in schema.error_log][:5]


@pytest.mark.parametrize("module, args, library", [
    ("lab_topology", {"path": "/nonexistent/lab.xml", "spec": {"accel": "tcg"}}, "lxml"),
    ("spec_from_hwloc", {"src": "/nonexistent/server.xml"}, "lxml"),
    ("lab_topology", {"name": "nltest-absent", "spec": {"accel": "tcg"}}, "libvirt-python"),
])
def test_a_missing_library_gets_ansibles_own_message(tmp_path, module, args, library):
    # a Python on which the library cannot be imported: a package of that name that refuses to load
    package = "lxml" if library == "lxml" else "libvirt"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("raise ImportError('%s is not installed here')\n" % package)
    result = run_module(module, args, pythonpath=[str(tmp_path)])
    assert result.get("failed"), result
    assert result["msg"].startswith("Failed to import the required Python library (%s)" % library), result["msg"]
