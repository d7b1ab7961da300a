"""The guest-side check: all good when the facts match the definition, and every mismatch is named."""

import copy

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guestview import (
    DMAR_ACTIVE,
    DMAR_IR,
    check,
    expectations,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import (
    BEGIN,
    END,
    build_initramfs,
    parse_report,
    resolve_modules,
)

from unit.test_engine import seed_lab


def perfect_facts(exp):
    facts = {"nodes": {}, "buses": ["0000:00"], "pci": {}, "dmesg": ["DMAR: " + DMAR_ACTIVE, DMAR_IR + " in x2apic mode"]}
    for node, want in exp["nodes"].items():
        facts["nodes"][node] = {"cpus": list(want["cpus"]), "memory_kib": want["memory_kib"] - 100000}
    for pxb in exp["expanders"]:
        facts["buses"].append(pxb["bus"])
    for group, nic in enumerate(exp["nics"]):
        facts["pci"][nic["address"]] = {"vendor": "8086", "device": "10d3", "numa_node": nic["node"],
                                        "iommu_group": group, "driver": None}
    return facts


def test_matching_facts_pass_and_each_mismatch_is_named():
    exp = expectations(seed_lab()[0])
    good = perfect_facts(exp)
    assert check(good, exp) == []
    cases = [
        (lambda f: f["nodes"].pop(2), "NUMA nodes"),
        (lambda f: f["nodes"][1].update(cpus=[4]), "node 1: expected CPUs 4-5"),
        (lambda f: f["buses"].remove("0000:c8"), "expander bus 0000:c8"),
        (lambda f: f["pci"].pop("0000:df:00.0"), "NIC 0000:df:00.0 (e1000e, node 2) is missing"),
        (lambda f: f["pci"]["0000:b5:00.0"].update(numa_node=-1), "expected numa_node 0"),
        (lambda f: f["pci"]["0000:b6:00.0"].update(device="10c9"), "expected 8086:10d3"),
        (lambda f: f["pci"]["0000:b7:00.0"].update(iommu_group=None), "no IOMMU group"),
        (lambda f: f["dmesg"].pop(0), "Intel IOMMU is not active"),
        (lambda f: f["dmesg"].pop(1), "interrupt remapping is off"),
    ]
    for mutate, words in cases:
        facts = copy.deepcopy(good)
        mutate(facts)
        problems = check(facts, exp)
        assert len(problems) == 1 and words in problems[0], (words, problems)


def test_the_amd_viommu_is_judged_by_amd_vis_own_kernel_lines():
    """A lab with the AMD vIOMMU: the kernel's AMD-Vi lines (as L1's 6.1 kernel logs them under QEMU 11.1's
    amd-iommu) prove it; Intel's DMAR lines do not stand in for them."""
    dom = seed_lab()[0]
    dom.root.find("devices/iommu").set("model", "amd")
    exp = expectations(dom)
    amd = dict(perfect_facts(exp), dmesg=["pci 0000:00:05.0: AMD-Vi: Found IOMMU cap 0x40",
                                          "AMD-Vi: Interrupt remapping enabled"])
    assert check(amd, exp) == []
    assert check(dict(amd, dmesg=amd["dmesg"][:1]), exp) == [
        "the kernel log lacks 'AMD-Vi: Interrupt remapping enabled': interrupt remapping is off"]
    assert check(perfect_facts(exp), exp) == [
        "the kernel log lacks 'AMD-Vi: Found IOMMU': the AMD IOMMU is not active",
        "the kernel log lacks 'AMD-Vi: Interrupt remapping enabled': interrupt remapping is off"]


def test_a_spec_that_left_the_viommu_to_auto_is_judged_by_the_vendor_the_kernel_found():
    """guest_topology_facts given a raw spec with iommu.model auto: AMD-Vi's lines or DMAR's, and that vendor's
    interrupt-remapping line; neither is a problem named after the intel one."""
    dom = seed_lab()[0]
    exp = expectations(dom)
    exp["iommu"]["model"] = "auto"
    amd = dict(perfect_facts(exp), dmesg=["pci 0000:00:05.0: AMD-Vi: Found IOMMU cap 0x40",
                                          "AMD-Vi: Interrupt remapping enabled"])
    assert check(amd, exp) == [] and check(perfect_facts(exp), exp) == []
    assert check(dict(amd, dmesg=amd["dmesg"][:1]), exp) == [
        "the kernel log lacks 'AMD-Vi: Interrupt remapping enabled': interrupt remapping is off"]
    assert check(dict(amd, dmesg=[]), exp)[0] == (
        "the kernel log lacks %r: the Intel IOMMU is not active" % "Intel(R) Virtualization Technology for Directed I/O")


def test_report_parser():
    text = "\n".join(["junk", BEGIN, "NL cmdline console=ttyS0 intel_iommu=on", "NL node 1 cpus 4-5 mem_kib 2016808",
                      "NL bus 0000:dc", "NL pci 0000:df:00.0 0x8086 0x10d3 0x020000 2 10 -",
                      "NL dmesg DMAR-IR: Enabled IRQ remapping in xapic mode", "NL kvm no", END, "[ 3.7] Power down"])
    facts = parse_report(text)
    assert facts["nodes"] == {1: {"cpus": [4, 5], "memory_kib": 2016808}}
    assert facts["pci"]["0000:df:00.0"] == {"vendor": "8086", "device": "10d3", "class": "020000", "numa_node": 2,
                                            "iommu_group": 10, "driver": None}
    assert facts["buses"] == ["0000:dc"] and facts["kvm"] is False


MODULES_DEP = """kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz: kernel/drivers/ptp/ptp.ko.xz kernel/drivers/pps/pps_core.ko.xz
kernel/drivers/ptp/ptp.ko.xz: kernel/drivers/pps/pps_core.ko.xz
kernel/drivers/pps/pps_core.ko.xz:
kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko
kernel/drivers/vfio/vfio.ko:
"""


def test_modules_come_with_their_dependencies_first_and_builtins_are_skipped():
    assert resolve_modules(["e1000e"], MODULES_DEP) == [
        "kernel/drivers/pps/pps_core.ko.xz", "kernel/drivers/ptp/ptp.ko.xz",
        "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz"]
    # a dash and an underscore name the same module; each file once
    assert resolve_modules(["vfio_pci", "vfio-pci", "vfio"], MODULES_DEP) == [
        "kernel/drivers/vfio/vfio.ko", "kernel/drivers/vfio/pci/vfio-pci.ko"]
    assert resolve_modules(["e1000e"], MODULES_DEP, "kernel/drivers/pps/pps_core.ko\n") == [
        "kernel/drivers/ptp/ptp.ko.xz", "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz"]
    assert resolve_modules(["pcieport"], MODULES_DEP, "kernel/drivers/pci/pcie/pcieport.ko\n") == []
    with pytest.raises(ValueError) as err:
        resolve_modules(["igb"], MODULES_DEP)
    assert "kernel module igb is not in this kernel's modules.dep" in str(err.value)


def test_initramfs_with_modules_is_deterministic_and_lists_them_in_order(tmp_path):
    import gzip
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake")
    mods = [("pps_core.ko", b"A" * 5), ("e1000e.ko", b"B" * 7)]
    one, two = build_initramfs(str(busybox), modules=mods), build_initramfs(str(busybox), modules=mods)
    assert one == two
    raw = gzip.decompress(one)
    assert b"lib/modules/pps_core.ko" in raw and b"pps_core.ko\ne1000e.ko\n" in raw
    assert build_initramfs(str(busybox)) != one and b"etc/nestlab-modules\x00" not in gzip.decompress(build_initramfs(str(busybox)))
