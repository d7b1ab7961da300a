"""virt_capabilities against this machine's libvirt and QEMU."""

import subprocess

from helpers import ensure_libvirtd, run_module


def test_reads_versions_devices_and_the_machine_type():
    ensure_libvirtd()
    got = run_module("virt_capabilities", {"require": [{"name": "pxb-pcie", "what": "the pxb-pcie device"},
                                                       {"name": "nestlab-no-such-device"}]}, check=True)
    assert got["changed"] is False and got["machine_ok"] is True
    assert {"pxb-pcie", "pcie-root-port", "intel-iommu", "e1000e"} <= set(got["devices"])
    assert got["missing"] == ["nestlab-no-such-device"]
    virsh = subprocess.run(["virsh", "-c", "qemu:///system", "version"], stdout=subprocess.PIPE,
                           universal_newlines=True, check=True).stdout
    assert "Using library: libvirt %s" % got["libvirt_version"] in virsh
    assert "Running hypervisor: QEMU %s" % got["qemu_version"] in virsh


def test_a_machine_type_libvirt_refuses_is_missing():
    ensure_libvirtd()
    got = run_module("virt_capabilities", {"machine": "nestlab-no-such-machine"})
    assert got["machine_ok"] is False and got["machine_error"]
    assert got["missing"][0].startswith("a nestlab-no-such-machine machine type in libvirt (")


def test_a_missing_emulator_is_named():
    got = run_module("virt_capabilities", {"emulator": "/nonexistent/qemu"})
    assert got["failed"] and got["msg"].startswith("emulator: '/nonexistent/qemu' does not exist")


def test_nic_models_are_named_with_the_releases_that_have_them():
    ensure_libvirtd()
    got = run_module("virt_capabilities", {"nic_models": ["e1000e", "igb", "e1000e"]}, check=True)
    if "igb" in got["devices"]:
        assert got["missing"] == []
    else:
        # Debian 12's QEMU 7.2: the igb device came with QEMU 8.0
        assert got["missing"] == ["the igb NIC (82576 with SR-IOV virtual functions), in QEMU >= 8.0 and libvirt >= 9.3"]
    assert run_module("virt_capabilities", {"nic_models": ["ne2k"]})["msg"].startswith("value of nic_models must be")
