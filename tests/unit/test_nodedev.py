"""Node devices: parsing libvirt's XML (captured from a real L1), who uses what, and selection."""

import os

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError, XMLSafetyError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.nodedev import (
    annotate,
    describe_filters,
    host_traffic_interfaces,
    hostdev_users,
    mounted_block_devices,
    normalize_address,
    parse_pci_nodedev,
    pci_ancestor,
    select,
    validate_filters,
)

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def golden(name):
    with open(os.path.join(GOLDEN, name)) as handle:
        return handle.read()


def nic(address, node, group, members=None, klass="020000"):
    return {"name": "pci_" + address.replace(":", "_").replace(".", "_"), "address": address, "class": klass,
            "vendor_device": "8086:10d3", "driver": "e1000e", "numa_node": node, "iommu_group": group,
            "iommu_group_members": members or [address]}


def domain_xml(*addresses):
    hostdevs = "".join(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x%s' "
        "slot='0x%s' function='0x%s'/></source></hostdev>" % (a[5:7], a[8:10], a[11]) for a in addresses)
    return "<domain type='qemu'><name>x</name><devices>%s</devices></domain>" % hostdevs


def test_parse_the_seed_nic_as_libvirt_in_l1_reports_it():
    dev = parse_pci_nodedev(golden("nodedev_df.xml"))
    assert dev["name"] == "pci_0000_df_00_0" and dev["address"] == "0000:df:00.0"
    assert dev["vendor_device"] == "8086:10d3" and dev["driver"] == "e1000e" and dev["class"] == "020000"
    assert dev["numa_node"] == 2 and dev["iommu_group"] == 17 and dev["iommu_group_members"] == ["0000:df:00.0"]
    assert dev["product"] == "82574L Gigabit Network Connection" and dev["physical_function"] is None


def test_parse_refuses_entities_and_ignores_non_pci_devices():
    with pytest.raises(XMLSafetyError):
        parse_pci_nodedev('<!DOCTYPE d [<!ENTITY x "y">]><device><name>&x;</name></device>')
    assert parse_pci_nodedev("<device><name>net_eth0</name><capability type='net'/></device>") is None


def test_a_device_assigned_elsewhere_or_used_by_the_host_is_not_assignable():
    bridge = parse_pci_nodedev(golden("nodedev_rootport.xml"))
    devices = [nic("0000:b5:00.0", 0, 1), nic("0000:c9:00.0", 1, 2, ["0000:c9:00.0", "0000:ca:00.0"]),
               nic("0000:ca:00.0", 1, 2, ["0000:c9:00.0", "0000:ca:00.0"]), nic("0000:00:1e.0", None, 3),
               nic("0000:dd:00.0", 2, None), bridge]
    users = hostdev_users([("l2-a", domain_xml("0000:ca:00.0"), True), ("l2-b", domain_xml("0000:b5:00.0"), False)])
    annotate(devices, users, {"0000:00:1e.0": ["network interface enp0s30"]}, for_domain="l2-b")
    by = dict((d["address"], d) for d in devices)
    assert by["0000:b5:00.0"]["assignable"] and by["0000:b5:00.0"]["used_by"] == ["l2-b"]
    # c9 shares its group with ca, which l2-a holds
    assert not by["0000:c9:00.0"]["assignable"]
    assert by["0000:c9:00.0"]["not_assignable_because"] == ["0000:ca:00.0 is assigned to l2-a"]
    assert by["0000:00:1e.0"]["not_assignable_because"] == [
        "0000:00:1e.0 is used by this host (network interface enp0s30)"]
    assert "has no IOMMU group" in by["0000:dd:00.0"]["not_assignable_because"][0]
    assert "bridge" in by[bridge["address"]]["not_assignable_because"][0]
    # for another domain, b5 is taken
    annotate(devices, users, {}, for_domain="l2-c")
    assert by["0000:b5:00.0"]["not_assignable_because"] == ["0000:b5:00.0 is assigned to l2-b"]


def test_a_group_shared_with_a_device_on_a_host_driver_is_not_viable():
    """q35's 00:1f.x functions share one group in L1: the LPC bridge (lpc_ich), SATA (ahci), SMBus
    (i2c_i801). libvirt would detach only the SMBus, and vfio refuses a group whose other members
    keep host drivers; a PCI-to-PCI bridge in the group is fine."""
    group = ["0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"]
    lpc = dict(nic("0000:00:1f.0", None, 8, group, "060100"), driver="lpc_ich")
    sata = dict(nic("0000:00:1f.2", None, 8, group, "010601"), driver="ahci")
    smbus = dict(nic("0000:00:1f.3", None, 8, group, "0c0500"), driver="i2c_i801")
    annotate([lpc, sata, smbus], {}, {}, for_domain="l2")
    assert smbus["not_assignable_because"] == [
        "0000:00:1f.0 shares IOMMU group 8 and stays with its host driver lpc_ich: vfio cannot use the group",
        "0000:00:1f.2 shares IOMMU group 8 and stays with its host driver ahci: vfio cannot use the group"]
    # with the others on vfio-pci / no driver, and a PCI bridge in the group, it can be assigned
    lpc["driver"], sata["driver"] = "vfio-pci", None
    bridge = dict(nic("0000:00:1f.4", None, 8, group + ["0000:00:1f.4"], "060400"), driver="pcieport")
    for dev in (lpc, sata, smbus):
        dev["iommu_group_members"] = group + ["0000:00:1f.4"]
    annotate([lpc, sata, smbus, bridge], {}, {}, for_domain="l2")
    assert smbus["assignable"] is True and smbus["not_assignable_because"] == []


def test_select_by_every_criterion():
    devices = [nic("0000:b5:00.0", 0, 1), nic("0000:dd:00.0", 2, 5), nic("0000:de:00.0", 2, 6)]
    devices[2]["vendor_device"] = "1af4:1041"
    annotate(devices, {}, {})
    f = validate_filters({"vendor_device": "0x8086:0x10D3", "numa_node": 2, "assignable": True})
    assert [d["address"] for d in select(devices, f)] == ["0000:dd:00.0"]
    assert [d["address"] for d in select(devices, validate_filters({"name": ["pci_0000_de_00_0"]}))] == ["0000:de:00.0"]
    assert [d["address"] for d in select(devices, validate_filters({"address": ["b5:00.0"]}))] == ["0000:b5:00.0"]
    assert len(select(devices, validate_filters({"pci_class": "0x02"}))) == 3
    assert select(devices, validate_filters({"pci_class": "0c03"})) == []
    assert select(devices, validate_filters({"driver": "vfio-pci"})) == []
    assert describe_filters(f) == "numa_node=2 vendor_device=8086:10d3 assignable=True"


@pytest.mark.parametrize("field,value,allowed", [
    ("vendor_device", "8086", "vendor:device in hex"),
    ("pci_class", "0x2", "a PCI class prefix in hex"),
    ("numa_node", -1, "a NUMA node number"),
    ("address", ["0000:zz:00.0"], "a PCI address such as"),
    ("name", ["pci_0000_df"], "a PCI address such as"),
])
def test_bad_filters_name_the_field_and_what_is_allowed(field, value, allowed):
    with pytest.raises(SpecError) as err:
        validate_filters({field: value})
    assert err.value.msg.startswith(field + ": ") and allowed in err.value.msg


def test_what_the_host_uses():
    route = "Iface\tDestination\tGateway\nenp0s30\t00000000\t0202000A\nlo\t0000007F\t00000000\n"
    inet6 = ("fe800000000000000000000000000001 02 40 20 80 enp1s0\n"
             "20010db8000000000000000000000001 03 40 00 00 enp2s0\n")
    assert host_traffic_interfaces(route, inet6) == {"enp0s30", "enp2s0"}
    mounts = "/dev/vda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/vdb /data xfs rw 0 0\n"
    swaps = "Filename Type Size Used Priority\n/dev/vdc partition 100 0 -2\n"
    assert mounted_block_devices(mounts, swaps) == {"vda1": ["/"], "vdb": ["/data"], "vdc": ["swap"]}
    assert pci_ancestor("/sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/virtio1/block/vda/vda1") == "0000:02:00.0"
    assert pci_ancestor("/sys/devices/virtual/net/lo") is None
    assert normalize_address("PCI_0000_DF_00_0") == "0000:df:00.0"


def sriov_devices():
    """The igb PF on bus b5 and its two VFs as libvirt 9.0 in a lab's L1 reported them (golden files),
    the second VF built from the first, and an e1000e."""
    pf = parse_pci_nodedev(golden("nodedev_igb_pf.xml"))
    vf1 = parse_pci_nodedev(golden("nodedev_igb_vf.xml"))
    vf0 = dict(vf1, name="pci_0000_b5_10_0", address="0000:b5:10.0", iommu_group=15,
               iommu_group_members=["0000:b5:10.0"])
    return [pf, vf1, vf0, nic("0000:c9:00.0", 1, 2)]


def test_parse_an_igb_and_its_virtual_functions():
    pf, vf1 = sriov_devices()[:2]
    assert pf["vendor_device"] == "8086:10c9" and pf["driver"] == "igb" and pf["numa_node"] == 0
    assert pf["virtual_functions"] == ["0000:b5:10.0", "0000:b5:10.2"] and pf["physical_function"] is None
    assert vf1["vendor_device"] == "8086:10ca" and vf1["driver"] == "igbvf" and vf1["numa_node"] == 0
    assert vf1["physical_function"] == "0000:b5:00.0" and vf1["iommu_group_members"] == ["0000:b5:10.2"]


def test_a_vf_gets_its_index_on_its_physical_function():
    devices = annotate(sriov_devices(), {}, {})
    assert dict((d["address"], d["vf_index"]) for d in devices) == {
        "0000:b5:00.0": None, "0000:b5:10.2": 1, "0000:b5:10.0": 0, "0000:c9:00.0": None}


def test_select_a_vf_by_its_pf_by_index_or_by_node():
    devices = annotate(sriov_devices(), {"0000:b5:10.0": [{"domain": "other", "active": False}]}, {})

    def chosen(**filters):
        return [d["address"] for d in select(devices, validate_filters(filters))]

    assert chosen(virtual_function=True) == ["0000:b5:10.0", "0000:b5:10.2"]
    assert chosen(virtual_function=False) == ["0000:b5:00.0", "0000:c9:00.0"]
    assert chosen(physical_function="pci_0000_b5_00_0") == ["0000:b5:10.0", "0000:b5:10.2"]
    assert chosen(physical_function="b5:00.0", vf_index=1) == ["0000:b5:10.2"]
    # "a VF on NUMA node 0" that is free: the first is another domain's
    assert chosen(virtual_function=True, numa_node=0, assignable=True) == ["0000:b5:10.2"]
    assert chosen(virtual_function=True, numa_node=1) == []
    assert describe_filters(validate_filters({"physical_function": "pci_0000_b5_00_0", "vf_index": 0})) == \
        "physical_function=0000:b5:00.0 vf_index=0"


@pytest.mark.parametrize("field,value,allowed", [
    ("vf_index", -1, "the index of a virtual function"),
    ("physical_function", "b5", "a PCI address such as"),
])
def test_bad_vf_filters_name_the_field(field, value, allowed):
    with pytest.raises(SpecError) as err:
        validate_filters({field: value})
    assert err.value.msg.startswith(field + ": ") and allowed in err.value.msg
