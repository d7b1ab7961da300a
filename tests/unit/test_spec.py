"""Spec validation: defaults are the seed's lab; bad input names the field, the value and what is allowed."""

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import chosen_iommu, validate_spec
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import (
    format_cpuset,
    parse_cpuset,
    parse_nodedev_name,
    parse_pci_address,
    parse_size_bytes,
)


def test_defaults_are_the_seed_lab():
    spec = validate_spec(None)
    assert [format_cpuset(c["cpus"]) for c in spec["numa"]] == ["0-3", "4-5", "6-7"]
    assert [c["memory_kib"] for c in spec["numa"]] == [4194304, 2097152, 2097152]
    assert [len(c["nics"]) for c in spec["numa"]] == [3, 3, 3]
    assert {n["model"] for c in spec["numa"] for n in c["nics"]} == {"e1000e"}
    assert spec["iommu"] == {"model": "intel", "intremap": True, "caching_mode": True, "eim": False}
    assert spec["vcpus"] == 8


def test_partial_iommu_keeps_intel_defaults():
    assert validate_spec({"iommu": {"eim": True}})["iommu"]["intremap"] is True
    assert validate_spec({"iommu": {"model": "virtio"}})["iommu"] == {
        "model": "virtio", "intremap": False, "caching_mode": False, "eim": False}
    assert validate_spec({"iommu": None})["iommu"] is None
    # the AMD vIOMMU has interrupt remapping (on by default) and neither of the intel-only switches
    assert validate_spec({"iommu": {"model": "amd"}})["iommu"] == {
        "model": "amd", "intremap": True, "caching_mode": False, "eim": False}
    assert validate_spec({"iommu": {"model": "amd", "intremap": False}})["iommu"]["intremap"] is False
    # auto: the model is chosen where the domain is defined; interrupt remapping on unless asked otherwise
    assert validate_spec({"iommu": {"model": "auto"}})["iommu"] == {
        "model": "auto", "intremap": True, "caching_mode": False, "eim": False}


def test_an_auto_viommu_takes_the_chosen_models_defaults():
    auto = validate_spec({"iommu": {"model": "auto", "intremap": False}})["iommu"]
    assert chosen_iommu(auto, "intel") == {"model": "intel", "intremap": False, "caching_mode": True, "eim": False}
    assert chosen_iommu(auto, "amd") == {"model": "amd", "intremap": False, "caching_mode": False, "eim": False}


def test_explicit_cpu_sets_and_nic_lists():
    spec = validate_spec({"numa": [
        {"cpus": "0,2", "memory": 1024, "nics": [{"model": "virtio"}, {"mac": "52:54:00:AA:BB:CC"}],
         "distances": [10, 20]},
        {"cpus": "1,3", "memory": "1GiB", "distances": [20, 10]}],
        "nic_model": "e1000e"})
    assert spec["numa"][0]["cpus"] == [0, 2]
    assert spec["numa"][0]["nics"] == [{"model": "virtio", "mac": None, "vfs": 0},
                                       {"model": "e1000e", "mac": "52:54:00:aa:bb:cc", "vfs": 0}]
    assert spec["vcpus"] == 4


def test_sr_iov_nics_per_node_and_per_nic():
    # the lab: 2 nodes, one igb PF per node, 2 VFs each
    spec = validate_spec({"nic_model": "igb", "numa": [{"cpus": 2, "memory": 1024, "nics": 1, "vfs": 2},
                                                       {"cpus": 2, "memory": 1024, "nics": 1, "vfs": 2}]})
    assert [nic for cell in spec["numa"] for nic in cell["nics"]] == [{"model": "igb", "mac": None, "vfs": 2}] * 2
    # a node of its own model, a NIC of its own VF count, and e1000e beside igb on a node with vfs
    spec = validate_spec({"numa": [
        {"cpus": 1, "memory": 512, "nics": 2},
        {"cpus": 1, "memory": 512, "nic_model": "igb", "vfs": 3, "nics": [{}, {"vfs": 7}, {"model": "e1000e"}]}]})
    assert [n["model"] for n in spec["numa"][0]["nics"]] == ["e1000e", "e1000e"]
    assert [(n["model"], n["vfs"]) for n in spec["numa"][1]["nics"]] == [("igb", 3), ("igb", 7), ("e1000e", 0)]
    assert validate_spec({"nic_model": "igb"})["numa"][0]["nics"][0]["vfs"] == 0


def wired(*wires):
    return {"numa": [{"cpus": 1, "memory": 512, "nics": [{"wire": wire} for wire in wires]}]}


def test_a_wired_nic_keeps_its_ports_and_the_others_have_none():
    nics = [{"wire": {"port": 40001, "peer_port": 40002}}, {}]
    spec = validate_spec({"numa": [{"cpus": 1, "memory": 512, "nics": nics}]})
    assert spec["numa"][0]["nics"][0]["wire"] == {"port": 40001, "peer_port": 40002}
    assert "wire" not in spec["numa"][0]["nics"][1]


BAD = [
    (wired({"port": 40001}), "spec.numa[0].nics[0].wire.peer_port", "not given; required: a UDP port on 127.0.0.1"),
    (wired({"port": 80, "peer_port": 40002}), "spec.numa[0].nics[0].wire.port", "a UDP port on 127.0.0.1"),
    (wired({"port": 40001, "peer_port": 40001}), "spec.numa[0].nics[0].wire.peer_port", "must differ"),
    (wired({"port": 40001, "peer_port": 40002}, {"port": 40001, "peer_port": 40003}),
     "spec.numa[0].nics[1].wire.port", "spec.numa[0].nics[0].wire.port has it already"),
    (wired({"port": 40001, "peer_port": 40002, "address": "10.0.0.1"}), "spec.numa[0].nics[0].wire.address",
     "unknown key"),
    (wired("40002"), "spec.numa[0].nics[0].wire", "give {port, peer_port}"),
    ({"numa": [{"cpus": "0-3", "memory": 1024}, {"cpus": "3-4", "memory": 1024}]}, "spec.numa[1].cpus", "overlap"),
    ({"numa": [{"cpus": "0-1", "memory": 1024}], "vcpus": 1}, "spec.vcpus", "the NUMA nodes give CPUs 0-1 (spec.numa), up to CPU 1; give 2 or more vCPUs"),
    ({"numa": [{"cpus": "0,2", "memory": 1024}]}, "spec.vcpus", "belong to no NUMA node"),
    ({"numa": [{"cpus": "0-300", "memory": 1024}]}, "spec.numa[0].cpus", "out of range"),
    ({"numa": [{"cpus": 260, "memory": 1024}]}, "spec.vcpus", "eim"),
    ({"numa": [{"cpus": 1, "memory": 0}]}, "spec.numa[0].memory", "at least 64MiB"),
    ({"numa": [{"cpus": 1, "memory": "lots"}]}, "spec.numa[0].memory", "2GiB"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": 33}]}, "spec.numa[0].nics", "at most 32 root ports"),
    ({"nic_model": "ne2k_isa"}, "spec.nic_model", "allowed models"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": [{"mac": "52:54:00:zz:00:01"}]}]}, "spec.numa[0].nics[0].mac",
     "MAC"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": [{"mac": "01:54:00:00:00:01"}]}]}, "spec.numa[0].nics[0].mac",
     "unicast"),
    ({"iommu": {"intremap": False, "eim": True}}, "spec.iommu.eim", "needs intremap"),
    ({"iommu": {"model": "virtio", "caching_mode": True}}, "spec.iommu.caching_mode", "only the intel"),
    ({"iommu": {"model": "smmuv3"}}, "spec.iommu.model", "intel, amd, virtio, auto"),
    ({"iommu": {"model": "auto", "caching_mode": True}}, "spec.iommu.caching_mode", "(auto may choose amd)"),
    ({"iommu": {"model": "auto", "eim": True}}, "spec.iommu.eim", "only the intel"),
    ({"iommu": {"model": "amd", "caching_mode": True}}, "spec.iommu.caching_mode", "only the intel"),
    ({"iommu": {"model": "amd", "eim": True}}, "spec.iommu.eim", "only the intel"),
    ({"iommu": {"model": "virtio", "intremap": True}}, "spec.iommu.intremap", "only the intel and amd"),
    ({"colour": "blue"}, "spec.colour", "unknown key"),
    ({"numa": [{"cpus": 1, "memory": 512, "numa_node": 1}]}, "spec.numa[0].numa_node", "unknown key"),
    ({"accel": "hvf"}, "spec.accel", "auto, kvm, tcg"),
    ({"machine": "pc-i440fx-7.2"}, "spec.machine", "q35"),
    ({"numa": []}, "spec.numa", "1 to 16"),
    ({"numa": [{"cpus": 1, "memory": 512, "distances": [10, 20]}]}, "spec.numa[0].distances", "1 distances"),
    ({"numa": [{"cpus": 1, "memory": 512, "distances": [15]}]}, "spec.numa[0].distances[0]", "itself"),
    ({"numa": [{"cpus": 1, "memory": 512, "distances": [10, 20]}, {"cpus": 1, "memory": 512}]},
     "spec.numa[1].distances", "every node or for none"),
    ({"name": "bad name!"}, "spec.name", "letters"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": 1, "vfs": 2}]}, "spec.numa[0].vfs", "e1000e NICs have no virtual"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": [{"vfs": 1}]}]}, "spec.numa[0].nics[0].vfs", "SR-IOV needs nic_model igb"),
    ({"nic_model": "igb", "numa": [{"cpus": 1, "memory": 512, "nics": 1, "vfs": 8}]}, "spec.numa[0].vfs", "0 to 7"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": [{"model": "igb", "vfs": -1}]}]}, "spec.numa[0].nics[0].vfs", "0 to 7"),
    ({"numa": [{"cpus": 1, "memory": 512, "nic_model": "ne2k"}]}, "spec.numa[0].nic_model", "allowed models"),
    ({"numa": [{"cpus": 1, "memory": 512, "nics": [{"mac": "52:54:00:00:00:01"}]},
               {"cpus": 1, "memory": 512, "nics": [{}, {"mac": "52-54-00-00-00-01"}]}]}, "spec.numa[1].nics[1].mac",
     "spec.numa[0].nics[0].mac has it already"),
]


@pytest.mark.parametrize("raw,field,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_spec_names_field_value_and_allowed(raw, field, words):
    with pytest.raises(SpecError) as err:
        validate_spec(raw)
    assert err.value.field == field
    assert words in err.value.msg
    assert err.value.msg.startswith(field + ": ")


@pytest.mark.parametrize("text,expected", [(2048, 2048 * 2 ** 20), ("2GiB", 2 ** 31), ("512 MiB", 2 ** 29),
                                           ("4096KiB", 2 ** 22), ("1G", 2 ** 30), ("1GB", 10 ** 9)])
def test_sizes(text, expected):
    assert parse_size_bytes(text) == expected


def test_cpusets_round_trip():
    assert parse_cpuset("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpuset([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    for bad in ("", "3-1", "a", "1,1"):
        with pytest.raises(ValueError):
            parse_cpuset(bad)


def test_pci_names():
    assert parse_nodedev_name("pci_0000_df_00_0") == {"domain": 0, "bus": 0xDF, "slot": 0, "function": 0}
    assert parse_pci_address("df:00.0") == parse_pci_address("0000:df:00.0")
    for bad in ("pci_0000_df_00", "pci_0000_df_20_0"):
        with pytest.raises(ValueError):
            parse_nodedev_name(bad)


def test_hugepages_may_take_at_most_half_a_node():
    from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError as _SpecError
    ok = validate_spec({"numa": [{"cpus": 1, "memory": "1GiB", "hugepages": 256}]})
    assert ok["numa"][0]["hugepages"] == 256
    try:
        validate_spec({"numa": [{"cpus": 1, "memory": "1GiB", "hugepages": 257}]})
    except _SpecError as exc:
        assert exc.field == "spec.numa[0].hugepages" and "at most 256 pages of 2 MiB" in exc.msg
    else:
        raise AssertionError("257 pages of 2 MiB on a 1 GiB node were accepted")
