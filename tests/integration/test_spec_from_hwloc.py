"""spec_from_hwloc as Ansible runs it, on the topologies of real machines that hwloc publishes
(tests/data/hwloc/README.md): check, real, check; every twin taken by lab_topology and judged by
libvirt's own schema (the RELAX NG of virt-xml-validate); hwloc's XML v1 converted by hwloc's own lstopo and then
accepted; one twin defined in a real libvirtd."""

import glob
import os
import shutil
import subprocess

import pytest
from lxml import etree

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import NIC_MODELS
from helpers import call_module, remove_domain, run_module

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "hwloc")
SERVER = os.path.join(DATA, "24em64t-2n6c2t-pci.xml")
TOO_MANY = ("192em64t-12gr2n8c2t.xml", "192em64t-24n8c2t.xml")
V2 = sorted(p for p in glob.glob(os.path.join(DATA, "*.xml")) if "v1.xml" not in p
            and os.path.basename(p) not in TOO_MANY)
V1 = sorted(p for p in glob.glob(os.path.join(DATA, "*.xml")) if "v1.xml" in p)


def test_check_real_check_read_the_same_and_change_nothing():
    before = os.stat(SERVER)
    runs = [run_module("spec_from_hwloc", {"src": SERVER}, check=check, diff=True) for check in (True, False, True)]
    assert all(not run.get("failed") and not run["changed"] for run in runs), runs
    assert runs[0]["spec"] == runs[1]["spec"] == runs[2]["spec"]
    assert runs[0]["fidelity"] == runs[1]["fidelity"]
    assert runs[1]["source"] == {"product": "ProLiant SL390s G7", "version": "2.0", "nodes": 2, "pus": 24,
                                 "memory": 38643982336, "pci_functions": 9}
    assert "pci 0000:04:00.0 82576 Gigabit Network Connection [8086:10c9] Ethernet controller (node 0): kept -> " \
           "node 0 NIC 0: igb; QEMU's igb is this device (8086:10c9)" in [r["summary"] for r in runs[1]["fidelity"]]
    after = os.stat(SERVER)
    assert (before.st_mtime, before.st_size) == (after.st_mtime, after.st_size)


def host_nic_models():
    """The lab spec's NIC models this host's QEMU has (as twin.yml reads them with virt_capabilities)."""
    if not hasattr(host_nic_models, "models"):
        out = subprocess.run(["qemu-system-x86_64", "-nodefaults", "-machine", "none", "-device", "help"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             stdin=subprocess.DEVNULL, check=True).stdout
        host_nic_models.models = sorted(model for model, device in NIC_MODELS.items() if '"%s"' % device in out)
    return host_nic_models.models


def domain_schema():
    """libvirt's RELAX NG schema of a domain (what virt-xml-validate and libvirt's own tests use), loaded once."""
    if not hasattr(domain_schema, "schema"):
        domain_schema.schema = etree.RelaxNG(file="/usr/share/libvirt/schemas/domain.rng")
    return domain_schema.schema


@pytest.mark.parametrize("src", V2, ids=[os.path.basename(p) for p in V2])
def test_every_twin_is_a_domain_libvirts_schema_accepts(src, tmp_path):
    made = call_module("spec_from_hwloc", {"src": src, "nic_models": host_nic_models()})
    assert not made.get("failed"), made
    path = str(tmp_path / "twin.xml")
    args = {"path": path, "name": "nltest-twin", "spec": dict(made["spec"], accel="tcg")}
    check = call_module("lab_topology", args, check=True)
    assert not check.get("failed") and check["changed"] and not os.path.exists(path), check
    real = call_module("lab_topology", args)
    assert not real.get("failed") and real["changed"], real
    schema = domain_schema()
    assert schema.validate(etree.parse(path)), schema.error_log
    again = call_module("lab_topology", args, check=True)
    assert not again["changed"], again


@pytest.mark.parametrize("src", V1, ids=[os.path.basename(p) for p in V1])
def test_xml_v1_is_refused_then_accepted_once_hwlocs_lstopo_converts_it(src, tmp_path):
    refused = run_module("spec_from_hwloc", {"src": src})
    assert refused.get("failed") and "hwloc XML v1" in refused["msg"] and "lstopo --input" in refused["msg"]
    lstopo = shutil.which("lstopo-no-graphics") or shutil.which("lstopo")
    assert lstopo, "hwloc's lstopo is missing (scripts/setup.sh installs hwloc-nox)"
    converted = str(tmp_path / "v2.xml")
    subprocess.run([lstopo, "--input", src, "--of", "xml", converted], check=True, stdin=subprocess.DEVNULL)
    made = call_module("spec_from_hwloc", {"src": converted})
    assert not made.get("failed"), made
    # the same twin as from hwloc's own conversion of the file, which its test suite keeps beside it
    name = os.path.basename(src)
    theirs = os.path.join(DATA, name.replace(".v1.xml", ".v1tov2.xml") if name.endswith(".v1.xml")
                          else name.replace(".v2tov1.xml", ".xml"))
    assert made["spec"] == call_module("spec_from_hwloc", {"src": theirs})["spec"]


@pytest.mark.libvirt
def test_a_twin_of_four_nodes_with_eight_nics_is_defined_by_libvirt(conn, domain_name):
    # an IBM x3950 M2: 4 nodes, two NetXtreme II ports on each, SLIT distances 10/26
    made = run_module("spec_from_hwloc", {"src": os.path.join(DATA, "96em64t-4n4d3ca2co-pci.xml")})
    name = domain_name("twin")
    try:
        done = run_module("lab_topology", {"name": name, "spec": dict(made["spec"], accel="tcg")})
        assert not done.get("failed") and done["changed"], done
        root = etree.fromstring(conn.lookupByName(name).XMLDesc(0).encode())
        cells = root.findall("cpu/numa/cell")
        assert [c.find("distances/sibling[@id='1']").get("value") for c in cells] == ["26", "10", "26", "26"]
        assert len(root.findall("devices/interface")) == 8
    finally:
        remove_domain(conn, name)
