"""Other people's validators judged against the lab, on output captured from a real lab's L1
(tests/data/validators/README.md says how each file was made)."""

import os

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import validators as v
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import XMLSafetyError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "validators")
# the default lab's NICs and nodes, as lab_topology plans them
DEFAULT_NICS = [{"address": "0000:%02x:00.0" % bus, "node": node}
                for node, first in ((0, 0xb5), (1, 0xc9), (2, 0xdd)) for bus in range(first, first + 3)]


def read(name):
    with open(os.path.join(DATA, name)) as handle:
        return handle.read()


def test_hwloc_puts_every_nic_of_the_default_lab_under_its_node():
    seen = v.parse_hwloc(read("lstopo-default-lab.xml"))
    assert seen["nodes"] == {0: [0, 1, 2, 3], 1: [4, 5], 2: [6, 7]}
    assert v.judge_hwloc(seen, DEFAULT_NICS) == []
    assert seen["pci"]["0000:df:00.0"]["nodes"] == [2]


def test_hwloc_disagrees_with_a_lab_that_claims_another_node_or_a_missing_nic():
    seen = v.parse_hwloc(read("lstopo-default-lab.xml"))
    wrong = [dict(nic, node=0) if nic["address"] == "0000:df:00.0" else nic for nic in DEFAULT_NICS]
    assert v.judge_hwloc(seen, wrong) == ["hwloc puts 0000:df:00.0 under NUMA node(s) 2; the lab puts it on node 0"]
    assert v.judge_hwloc(seen, [{"address": "0000:e1:00.0", "node": 2}]) == [
        "hwloc shows no PCI function 0000:e1:00.0 (the lab puts a NIC there, on NUMA node 2)"]


def test_hwloc_counts_the_virtual_functions_on_a_pfs_bus_and_their_node():
    text = read("lstopo-default-lab.xml")
    # two functions more on b5's bus, as igb's VFs appear (device 0x10), hwloc hangs them next to the PF
    pf = '<object type="PCIDev" gp_index="83" pci_busid="0000:b5:00.0"'
    vfs = "".join('<object type="PCIDev" gp_index="%d" pci_busid="0000:b5:10.%d" pci_type="0200 [8086:10ca]"/>'
                  % (900 + fn, fn) for fn in (0, 2))
    at = text.index(pf)
    with_vfs = text[:at] + vfs + text[at:]
    seen = v.parse_hwloc(with_vfs)
    assert v.virtual_functions(seen, "0000:b5:00.0") == ["0000:b5:10.0", "0000:b5:10.2"]
    nics = [dict(nic, vfs=2 if nic["address"] == "0000:b5:00.0" else 0) for nic in DEFAULT_NICS]
    assert v.judge_hwloc(seen, nics) == []
    assert v.judge_hwloc(v.parse_hwloc(text), nics) == [
        "hwloc shows 0 virtual function(s) of 0000:b5:00.0 (none); the lab gives it 2"]
    claimed = [dict(nic, node=1) if nic["address"] == "0000:b5:00.0" else nic for nic in nics]
    assert v.judge_hwloc(seen, claimed) == [
        "hwloc puts 0000:b5:00.0 under NUMA node(s) 0; the lab puts it on node 1",
        "hwloc puts 0000:b5:10.0, a virtual function of 0000:b5:00.0, under NUMA node(s) 0; the lab puts 0000:b5:00.0 on node 1",
        "hwloc puts 0000:b5:10.2, a virtual function of 0000:b5:00.0, under NUMA node(s) 0; the lab puts 0000:b5:00.0 on node 1"]


def test_hwloc_xml_is_read_safely():
    text = read("lstopo-default-lab.xml")
    assert text.splitlines()[1] == '<!DOCTYPE topology SYSTEM "hwloc2.dtd">'   # hwloc's own line: accepted
    laughs = text.replace('<!DOCTYPE topology SYSTEM "hwloc2.dtd">',
                          '<!DOCTYPE topology [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>')
    external = text.replace('<!DOCTYPE topology SYSTEM "hwloc2.dtd">',
                            '<!DOCTYPE topology SYSTEM "http://127.0.0.1:9/x.dtd" [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
    for bad in (laughs, external, text.replace("topology SYSTEM", "domain SYSTEM")):
        with pytest.raises(XMLSafetyError, match="refusing XML with a DTD"):
            v.parse_hwloc(bad)
    with pytest.raises(ValueError, match="not <topology>"):
        v.parse_hwloc("<domain/>")
    assert v.bits("0x00000001,0x00000004") == {2, 32} and v.bits("") == set()


def test_numactl_agrees_with_the_default_spec_and_names_what_differs():
    seen = v.parse_numactl(read("numactl-default-lab.txt"))
    assert seen["nodes"][0] == {"cpus": [0, 1, 2, 3], "size_mib": 3965}
    assert seen["distances"][2] == {0: 20, 1: 20, 2: 10}
    cells = validate_spec({})["numa"]
    assert v.judge_numactl(seen, cells) == []
    wrong = validate_spec({"numa": [{"cpus": 4, "memory": "4GiB", "distances": [10, 20, 20]},
                                    {"cpus": 2, "memory": "1GiB", "distances": [20, 10, 30]},
                                    {"cpus": 2, "memory": "2GiB", "distances": [20, 30, 10]}]})["numa"]
    assert v.judge_numactl(seen, wrong) == [
        "numactl: node 1 size: 2015 MB; the lab gives it 1024 MiB (accepted: 832 to 1024)",
        "numactl: distances from node 1: [20, 10, 20]; the lab gives [20, 10, 30]",
        "numactl: distances from node 2: [20, 20, 10]; the lab gives [20, 30, 10]"]
    two = validate_spec({"numa": [{"cpus": 6, "memory": "6GiB"}, {"cpus": 2, "memory": "2GiB"}]})["numa"]
    assert v.judge_numactl(seen, two)[:2] == ["numactl shows nodes [0, 1, 2]; the lab has [0, 1]",
                                              "numactl: node 0 cpus: 0 1 2 3; the lab gives it 0 1 2 3 4 5"]


def test_virt_host_validate_on_an_amd_like_cpu_with_intels_viommu_fails_and_says_why():
    rows = v.parse_virt_host_validate(read("virt-host-validate-tcg-intel.txt"))
    assert {"hypervisor": "QEMU", "check": "Checking for hardware virtualization", "result": "PASS", "detail": ""} in rows
    plat = v.platform({"svm", "sse2"}, {"DMAR", "FACP"})
    assert plat["consistent"] is False
    assert plat["reason"] == ("the CPU shows svm, so tools look for the IVRS table (AMD-Vi), "
                              "but the firmware has DMAR (Intel VT-d)")
    assert v.only_the_vendor_mismatch(rows, plat) is True
    assert v.judge_virt_host_validate(rows, plat) == [
        "virt-host-validate: Checking for device assignment IOMMU support: WARN (No ACPI IVRS table found, "
        "IOMMU either disabled in BIOS or not supported by this hardware platform)",
        "why: " + plat["reason"]]


def test_virt_host_validate_passes_only_when_both_iommu_checks_pass():
    line = "  QEMU: %-70s: %s"
    both = "\n".join(line % (check, "PASS") for check in v.VHV_IOMMU_CHECKS)
    plat = v.platform({"svm"}, {"IVRS"})
    assert plat["consistent"] is True and v.judge_virt_host_validate(v.parse_virt_host_validate(both), plat) == []
    off = both[:both.rindex("PASS")] + "WARN (IOMMU appears to be disabled in kernel)"
    assert v.judge_virt_host_validate(v.parse_virt_host_validate(off), plat) == [
        "virt-host-validate: Checking if IOMMU is enabled by kernel: WARN (IOMMU appears to be disabled in kernel)"]
    assert v.judge_virt_host_validate([], plat) == [
        "virt-host-validate printed no line 'Checking for device assignment IOMMU support'"]
    # a kernel without the IOMMU on is not a vendor mismatch, even on a platform of two vendors
    two = v.platform({"svm"}, {"DMAR"})
    kernel_off = [{"check": v.VHV_IOMMU_CHECKS[0], "result": "WARN", "detail": "No ACPI IVRS table found, ..."},
                  {"check": v.VHV_IOMMU_CHECKS[1], "result": "WARN", "detail": "IOMMU appears to be disabled in kernel"}]
    assert v.only_the_vendor_mismatch(kernel_off, two) is False
    assert v.only_the_vendor_mismatch(kernel_off[:1], two) is True
    assert v.only_the_vendor_mismatch(kernel_off[:1], plat) is False      # one vendor: nothing to excuse
    assert v.platform({"vmx"}, {"DMAR"})["consistent"] is True
    assert v.platform(set(), {"DMAR"})["reason"].startswith("the CPU shows neither vmx nor svm")
    assert v.platform({"vmx"}, set())["reason"] == "the firmware has no IOMMU table (DMAR or IVRS)"


def test_testpmd_moved_packets_on_the_nics_node_through_the_iommu():
    text = read("testpmd-default-lab.txt")
    seen = v.parse_testpmd(text, "0000:dd:00.0")
    assert seen == {"iommu": True, "noiommu": False, "driver": "net_e1000_em", "socket": 2, "mbuf_sockets": [2],
                    "tx_packets": 38, "rx_packets": 6}
    assert v.judge_testpmd(seen, "0000:dd:00.0", 2, "e1000e", "e1000e") == []


def test_testpmd_disagrees_with_another_node_no_iommu_no_packets_or_a_lost_driver():
    seen = v.parse_testpmd(read("testpmd-default-lab.txt"), "0000:dd:00.0")
    assert v.judge_testpmd(seen, "0000:dd:00.0", 0, "vfio-pci", "e1000e") == [
        "dpdk-testpmd probed 0000:dd:00.0 on socket 2; the lab puts it on NUMA node 0",
        "dpdk-testpmd took its packet buffers from socket(s) [2]; the device is on node 0",
        "0000:dd:00.0 is with vfio-pci after the run, not with e1000e as before"]
    silent = v.parse_testpmd(read("testpmd-default-lab.txt").replace("Using IOMMU type 1 (Type 1)", "Using noIOMMU mode")
                             .replace("TX-packets: 38", "TX-packets: 0"), "0000:dd:00.0")
    assert v.judge_testpmd(silent, "0000:dd:00.0", 2, "e1000e", "e1000e") == [
        "dpdk-testpmd did not say 'Using IOMMU type 1' (vfio without the IOMMU, noiommu mode)",
        "dpdk-testpmd sent no packet through 0000:dd:00.0 (TX-packets: 0)"]
    assert v.judge_testpmd(v.parse_testpmd("", "0000:dd:00.0"), "0000:dd:00.0", 2, "e1000e", "e1000e")[1] == \
        "dpdk-testpmd did not probe 0000:dd:00.0"


def test_the_report_keeps_dpdks_verdict_without_the_counters_that_change_from_run_to_run():
    """Two testpmd runs on an unchanged lab that moved different numbers of packets, through a port whose MAC
    changed, give the same report (the lab command's second run then writes nothing); the module's own verdict
    keeps the counters."""
    from ansible_collections.nestlab.pci.plugins.modules.guest_validate import _for_report

    def verdicts(tx, rx, mac="52:54:00:79:EE:EA"):
        text = read("testpmd-default-lab.txt").replace("TX-packets: 38", "TX-packets: %d" % tx) \
            .replace("RX-packets: 6", "RX-packets: %d" % rx).replace("Port 0: 52:54:00:79:EE:EA", "Port 0: " + mac)
        seen = v.parse_testpmd(text, "0000:dd:00.0")
        return {"dpdk": {"passed": True, "problems": [], "command": "-l 6,7", "output": text,
                         "facts": dict(seen, device="0000:dd:00.0", node=2)},
                "hwloc": {"passed": True, "problems": [], "output": "0000:dd:00.0 node 2"}}

    # a VF without an administered MAC takes a random one at each reset (seen with DPDK's igbvf PMD)
    first, second = verdicts(38, 6), verdicts(70, 11, mac="02:85:88:57:83:75")
    assert first != second and first["dpdk"]["facts"]["tx_packets"] == 38
    assert _for_report(first) == _for_report(second)
    kept = _for_report(first)["dpdk"]
    assert kept["facts"]["packets_sent"] is True and "tx_packets" not in kept["facts"] and kept["facts"]["socket"] == 2
    assert "TX-packets" not in kept["output"] and "Using IOMMU type 1" in kept["output"]
    assert "Port 0: " not in kept["output"] and "Configuring Port 0 (socket 2)" in kept["output"]
    assert _for_report(first)["hwloc"] == first["hwloc"]
    assert _for_report(verdicts(0, 0))["dpdk"]["facts"]["packets_sent"] is False


def test_a_pfs_virtual_functions_come_in_the_kernels_order(tmp_path):
    """The VFs DPDK may take in an SR-IOV lab (by default the last node's first NIC's first VF, since taking the
    PF from igb would take its VFs away): virtfn0, virtfn1, ... by number, not by the links' names."""
    from ansible_collections.nestlab.pci.plugins.modules.guest_validate import _virtual_functions

    pf = tmp_path / "0000:c9:00.0"
    pf.mkdir()
    for index, vf in ((0, "0000:c9:10.0"), (1, "0000:c9:10.2"), (10, "0000:c9:11.4"), (2, "0000:c9:10.4")):
        (tmp_path / vf).mkdir()
        (pf / ("virtfn%d" % index)).symlink_to("../" + vf)
    assert _virtual_functions("0000:c9:00.0", str(tmp_path)) == [
        "0000:c9:10.0", "0000:c9:10.2", "0000:c9:10.4", "0000:c9:11.4"]
    assert _virtual_functions("0000:c9:10.0", str(tmp_path)) == []
    assert _virtual_functions("0000:ff:00.0", str(tmp_path)) == []


def test_a_vf_whose_pf_is_down_is_named_with_its_pf(tmp_path):
    """DPDK on a VF whose PF's interface is down moves nothing (the VF cannot reset through the PF's mailbox):
    the validator names the PF's interface. A VF whose PF is up, and a device that is no VF, give None."""
    from ansible_collections.nestlab.pci.plugins.modules.guest_validate import _down_pf

    pf, vf = tmp_path / "0000:c9:00.0", tmp_path / "0000:c9:10.0"
    (pf / "net" / "enp201s0").mkdir(parents=True)
    vf.mkdir()
    (vf / "physfn").symlink_to("../0000:c9:00.0")
    for flags, down in (("0x1002", "enp201s0"), ("0x1003", None)):
        (pf / "net" / "enp201s0" / "flags").write_text(flags + "\n")
        assert _down_pf("0000:c9:10.0", str(tmp_path)) == down
    assert _down_pf("0000:c9:00.0", str(tmp_path)) is None
