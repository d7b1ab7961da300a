"""Twins of real machines: spec_from_hwloc's pure code on the topologies hwloc publishes in its own test
suite (tests/data/hwloc/README.md says where each came from), and on bad input."""

import glob
import os

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import twin
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import XMLSafetyError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import MAX_NODES, validate_spec

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "hwloc")
V1 = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA, "*.xml")) if "v1.xml" in p)
V2 = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA, "*.xml")) if "v1.xml" not in p)
TOO_MANY = ("192em64t-12gr2n8c2t.xml", "192em64t-24n8c2t.xml")


def read(name):
    with open(os.path.join(DATA, name)) as handle:
        return handle.read()


def test_the_data_is_what_the_readme_lists():
    # 22 topologies in hwloc's XML v2, 8 in v1 (refused), two of them beyond the spec's 16 nodes
    assert len(V2) == 28 and len(V1) == 8
    assert all(name in V2 for name in TOO_MANY)


@pytest.mark.parametrize("name", [n for n in V2 if n not in TOO_MANY])
def test_every_published_topology_gives_a_spec_the_lab_accepts_and_a_row_for_everything(name):
    source = twin.parse_topology(read(name))
    spec, fidelity = twin.make_twin(source)
    validate_spec(spec)
    # one node per source node, the totals asked for
    assert len(spec["numa"]) == len(source["nodes"])
    assert sum(cell["cpus"] for cell in spec["numa"]) == max(8, len(source["nodes"]))
    assert sum(int(cell["memory"][:-3]) for cell in spec["numa"]) == max(8192, 256 * len(source["nodes"]))
    assert [row["source"] for row in fidelity if row["kind"] == "node"] == [
        "node %d" % node["os_index"] for node in source["nodes"]]
    # the distances are the source's, or the row says why not
    rows = [row for row in fidelity if row["kind"] == "distances"]
    if source["distances"] is not None:
        assert len(rows) == 1 and [cell["distances"] for cell in spec["numa"]] == [
            [int(v) for v in line.split()] for line in rows[0]["twin"].split(" / ")]
        if rows[0]["outcome"] == "kept":
            assert rows[0]["twin"] == rows[0]["source"]
    else:
        assert all("distances" not in cell for cell in spec["numa"])
        assert len(rows) == (1 if len(source["nodes"]) > 1 else 0)
    # every PCI function has one row; each node has as many NICs as the source has Ethernet PFs on it,
    # less those the rows drop
    pci_rows = [row for row in fidelity if row["kind"] == "pci"]
    assert sorted(row["source"] for row in pci_rows) == sorted(f["busid"] for f in source["pci"])
    for node, busids in twin.ethernet_per_node(source).items():
        dropped = [row for row in pci_rows if row["source"] in busids and row["outcome"] == "dropped"]
        assert len(spec["numa"][node]["nics"]) == len(busids) - len(dropped)
    for row in pci_rows:
        assert row["outcome"] in ("kept", "scaled", "placed", "dropped") and row["why"]


def test_a_server_with_82576_nics_keeps_their_identity_node_and_distances():
    # an HP ProLiant SL390s G7: two 82576 ports on node 0, an InfiniBand HCA, GPUs, SATA
    source = twin.parse_topology(read("24em64t-2n6c2t-pci.xml"))
    assert source["product"] == "ProLiant SL390s G7" and [n["cpus"] for n in source["nodes"]] == [12, 12]
    spec, fidelity = twin.make_twin(source)
    assert spec == {"numa": [
        {"cpus": 4, "memory": "4096MiB", "distances": [10, 20], "nics": [{"model": "igb"}, {"model": "igb"}]},
        {"cpus": 4, "memory": "4096MiB", "distances": [20, 10], "nics": []}]}
    rows = dict((row["source"], row) for row in fidelity)
    assert rows["0000:04:00.0"]["outcome"] == "kept" and rows["0000:04:00.0"]["twin"] == "node 0 NIC 0: igb"
    assert rows["0000:05:00.0"]["outcome"] == "dropped" and "InfiniBand" in rows["0000:05:00.0"]["why"]
    assert rows["0000:14:00.0"]["node"] == 1 and "GPU" in rows["0000:14:00.0"]["why"]
    # on a hypervisor whose QEMU has no igb: the closest model, said
    spec, fidelity = twin.make_twin(source, nic_models=["e1000e", "virtio"])
    assert spec["numa"][0]["nics"] == [{"model": "e1000e"}, {"model": "e1000e"}]
    row = [r for r in fidelity if r["source"] == "0000:04:00.0"][0]
    assert row["outcome"] == "scaled" and row["why"].startswith("the hypervisor's QEMU has no igb")
    # InfiniBand carried when asked for, as an Ethernet NIC
    spec, fidelity = twin.make_twin(source, classes=["ethernet", "infiniband"])
    assert len(spec["numa"][0]["nics"]) == 3
    assert "InfiniBand controller carried as an Ethernet NIC" in [
        r for r in fidelity if r["source"] == "0000:05:00.0"][0]["why"]


def test_virtual_functions_become_vfs_of_an_igb_on_the_pfs_node_up_to_seven():
    # hwloc's topology of a Cisco UCS blade: two I350 ports (PFs) under one root port; 8 functions named as
    # VFs put beside them, which belong to the PF of the closest lower address (the second port)
    text = read("16intel64-manyVFs.xml")
    vf = 'pci_type="0200 [8086:10ca] [0000:0000] 01"'
    extra = "".join('<object type="PCIDev" pci_busid="0000:02:10.%d" %s><info name="PCIDevice" value="82576 Virtual '
                    'Function"/></object>' % (i, vf) for i in range(8))
    text = text.replace('<object type="PCIDev" gp_index="49"', extra + '<object type="PCIDev" gp_index="49"', 1)
    source = twin.parse_topology(text)
    spec, fidelity = twin.make_twin(source)
    validate_spec(spec)
    assert spec["numa"][0]["nics"][1] == {"model": "igb", "vfs": 7}
    rows = dict((row["source"], row) for row in fidelity)
    assert "8 virtual functions in the source, 7 in the twin" in rows["0000:02:00.1"]["why"]
    assert rows["0000:02:00.1"]["outcome"] == "scaled" and rows["0000:02:00.1"]["vfs"] == 7
    assert [rows["0000:02:10.%d" % i]["outcome"] for i in range(8)] == ["kept"] * 7 + ["dropped"]
    assert rows["0000:02:10.0"]["twin"] == "a VF of node 0 NIC 1"
    # the other port has no VFs: the plain model
    assert spec["numa"][0]["nics"][0] == {"model": "e1000e"}


def test_a_nic_local_to_the_whole_machine_goes_to_the_first_node_said_in_its_row():
    from lxml import etree

    root = etree.fromstring(read("24em64t-2n6c2t-pci.xml").split("\n", 2)[2].encode())
    # the host bridge of the 82576 ports moved from package 0 to the machine (the nodeset of both nodes)
    bridge = [obj for obj in root.iter("object") if obj.get("gp_index") == "35"][0]
    root.find("object").append(bridge)
    source = twin.parse_topology(etree.tostring(root).decode())
    spec, fidelity = twin.make_twin(source)
    row = [r for r in fidelity if r["source"] == "0000:04:00.0"][0]
    assert row["node"] == 0 and row["outcome"] == "placed"
    assert "local to nodes 0,1 (not one node); the twin puts it on node 0, the first of them" in row["why"]
    assert len(spec["numa"][0]["nics"]) == 2


def test_distances_not_based_on_10_are_scaled_and_big_ones_clamped():
    text = read("24em64t-2n6c2t-pci.xml")
    text = text.replace('<u64values length="12">10 20 20 10 ', '<u64values length="18">100 300 3000 100 ')
    spec, fidelity = twin.make_twin(twin.parse_topology(text))
    assert [cell["distances"] for cell in spec["numa"]] == [[10, 30], [255, 10]]
    row = [r for r in fidelity if r["kind"] == "distances"][0]
    assert row["outcome"] == "scaled" and row["source"] == "100 300 / 3000 100"
    assert "scaled to 10" in row["why"] and "300 outside 10-255, clamped" in row["why"]


def test_more_nodes_than_the_spec_allows_is_refused_with_the_limit():
    with pytest.raises(twin.TwinError) as err:
        twin.make_twin(twin.parse_topology(read("192em64t-24n8c2t.xml")))
    assert str(err.value) == "src: 24 NUMA nodes; the lab spec allows at most %d NUMA nodes" % MAX_NODES


@pytest.mark.parametrize("name", V1)
def test_hwloc_v1_is_refused_with_the_command_that_converts_it(name):
    with pytest.raises(twin.TwinError) as err:
        twin.parse_topology(read(name))
    assert "hwloc XML v1" in str(err.value) and "lstopo --input OLD.xml --of xml NEW.xml" in str(err.value)


@pytest.mark.parametrize("text, words", [
    ("not xml at all", "not well-formed XML"),
    ("<domain type='kvm'/>", "the root element is <domain>"),
    ('<topology version="1.5"><object type="Machine"/></topology>', "hwloc XML version 1.5"),
    ('<topology version="2.0"><object type="Machine" cpuset="0x1"/></topology>', "no NUMANode object"),
    ('<?xml version="1.0"?>\n<!DOCTYPE topology [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n'
     '<topology version="2.0">&b;</topology>', "refusing XML with a DTD or entity declarations"),
    ('<?xml version="1.0"?>\n<!DOCTYPE topology SYSTEM "hwloc2.dtd" [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
     '<topology version="2.0">&x;</topology>', "refusing XML with a DTD or entity declarations"),
    ('<?xml version="1.0"?>\n<!DOCTYPE topology PUBLIC "-//x//y" "http://127.0.0.1:9/hwloc2.dtd">\n'
     '<topology version="2.0"/>', "refusing XML with a DTD or entity declarations"),
])
def test_bad_sources_are_refused_naming_what_is_wrong(text, words):
    with pytest.raises((twin.TwinError, XMLSafetyError)) as err:
        twin.make_twin(twin.parse_topology(text))
    assert words in str(err.value)


def test_the_plain_doctype_line_hwloc_writes_is_accepted():
    text = read("24em64t-2n6c2t-pci.xml")
    assert '<!DOCTYPE topology SYSTEM "hwloc2.dtd">' in text
    assert len(twin.parse_topology(text)["nodes"]) == 2


def test_the_twins_lstopo_is_compared_with_the_source():
    # the default lab's own lstopo (tests/data/validators) as the twin of a 3-node source
    with open(os.path.join(DATA, "..", "validators", "lstopo-default-lab.xml")) as handle:
        lab = twin.parse_topology(handle.read())
    nics = [{"address": "0000:%02x:00.0" % bus, "node": node}
            for node, first in ((0, 0xb5), (1, 0xc9), (2, 0xdd)) for bus in range(first, first + 3)]
    fidelity = [{"kind": "pci", "source": "0000:%02x:00.0" % i, "node": i % 3, "nic": 0, "vfs": 0}
                for i in range(3)]
    source = {"nodes": [{"os_index": i} for i in range(3)]}
    rows = twin.compare(source, fidelity, lab, nics)
    assert all(row["ok"] for row in rows), rows
    assert rows[1] == {"check": "0000:00:00.0 on its node", "source": "node 0", "twin": "0000:b5:00.0 on node 0",
                       "ok": True, "summary": "0000:00:00.0 on its node: source node 0, twin 0000:b5:00.0 on node 0 (ok)"}
    # a NIC the twin put on another node, a source with another node count, a VF that is not there
    wrong = [dict(row, vfs=2) if row["node"] == 1 else row for row in fidelity]
    rows = twin.compare({"nodes": source["nodes"] * 2}, wrong, lab, [dict(n, node=0) for n in nics])
    assert [row["check"] for row in rows if not row["ok"]] == [
        "NUMA nodes", "0000:01:00.0 on its node", "0000:01:00.0 virtual functions", "0000:02:00.0 on its node"]


@pytest.mark.parametrize("name", ["24em64t-2n6c2t-pci.xml", "96em64t-4n4d3ca2co-pci.xml"])
def test_hwlocs_coming_xml_v3_gives_the_same_twin_as_v2(name):
    # the same machines as hwloc's development branch writes them (XML version 3.0; tests/data/hwloc/v3)
    with open(os.path.join(DATA, "v3", name)) as handle:
        v3 = twin.parse_topology(handle.read())
    assert v3["version"] == "3.0"
    assert twin.make_twin(v3) == twin.make_twin(twin.parse_topology(read(name)))
