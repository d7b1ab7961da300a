"""nodedev_info against this host's real libvirtd: listing, a device held by a defined domain,
'nothing matches' and bad filters."""

import pytest

from helpers import run_module

pytestmark = pytest.mark.libvirt


def test_lists_this_hosts_pci_devices_and_reads_only(conn):
    real = run_module("nodedev_info", {})
    checked = run_module("nodedev_info", {}, check=True)
    assert not real.get("failed") and real["changed"] is False
    names = sorted(d.name() for d in conn.listAllDevices(0) if d.name().startswith("pci_"))
    assert [d["name"] for d in real["devices"]] == names == [d["name"] for d in checked["devices"]]
    assert real["count"] == real["total"] == len(names)
    # this host's default route leaves through one of its PCI NICs: that one is not assignable
    used = [d for d in real["devices"] if any(u.startswith("network interface") for u in d["host_uses"])]
    assert used and not used[0]["assignable"]


def test_a_device_held_by_a_defined_domain(conn, domain_name):
    name = domain_name("nd")
    lab = run_module("lab_topology", {"name": name, "spec": {"numa": [{"cpus": 1, "memory": 256, "nics": 0}],
                                                             "accel": "tcg"}})
    assert not lab.get("failed"), lab
    device = run_module("nodedev_info", {"pci_class": "02"})["devices"][-1]
    held = run_module("hostdev", {"name": name, "nodedev": device["name"]})
    assert held["changed"], held
    seen = run_module("nodedev_info", {"name": [device["name"]]})["devices"][0]
    assert seen["used_by"] == [name]
    assert "%s is assigned to %s" % (device["address"], name) in seen["not_assignable_because"]
    mine = run_module("nodedev_info", {"address": [device["address"]], "for_domain": name})["devices"][0]
    assert "%s is assigned to %s" % (device["address"], name) not in mine["not_assignable_because"]


def test_nothing_matches_lists_what_there_is():
    result = run_module("nodedev_info", {"vendor_device": "ffff:0001", "required": True})
    assert result["failed"] and result["count"] == 0
    assert result["msg"].startswith("no PCI device matches vendor_device=ffff:0001; the devices there are")
    assert "pci_0000_00_" in result["msg"]
    assert run_module("nodedev_info", {"vendor_device": "ffff:0001"})["count"] == 0


@pytest.mark.parametrize("args,field", [
    ({"vendor_device": "intel"}, "vendor_device"),
    ({"pci_class": "network"}, "pci_class"),
    ({"numa_node": -2}, "numa_node"),
    ({"name": ["eth0"]}, "name"),
])
def test_bad_filters_fail_with_the_field(args, field):
    result = run_module("nodedev_info", args)
    assert result["failed"] and result["field"] == field and result["msg"].startswith(field + ": ")
