"""A twin booted: playbooks/twin.yml on the topology of a real machine that hwloc publishes (an IBM
x3950 M2: 4 NUMA nodes, two NetXtreme II ports on each, SLIT distances 10/26; tests/data/hwloc/README.md),
its virtual host (L1) only, and hwloc inside L1 compared with the source: the nodes, the distances, each
NIC on its node.

The playbook runs as a background job (TWIN) from the first test of the boot tier on, at normal
priority, beside the small boots of the other boot tests. Run alone, the test starts it itself."""

import json
import os

import pytest

from helpers import ROOT, Job, ansible_playbook, unique_name

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]

SRC = os.path.join(ROOT, "tests", "data", "hwloc", "96em64t-4n4d3ca2co-pci.xml")
REPORTS = "/var/lib/nestlab/reports"


def twin_lab():
    """twin.yml and the teardown; what happened, for the test to judge (a job: it asserts nothing)."""
    seen = {"name": unique_name("twin")}
    try:
        seen["run"] = ansible_playbook("playbooks/twin.yml", {
            "nestlab_lab_name": seen["name"], "nestlab_twin_src": SRC, "nestlab_twin_vcpus": 4,
            "nestlab_twin_memory": "2GiB", "nestlab_guest_roles": False})
        for key, suffix in (("report", ".json"), ("twin", ".twin.json")):
            path = os.path.join(REPORTS, seen["name"] + suffix)
            if os.path.exists(path):
                with open(path) as handle:
                    seen[key] = json.load(handle)
    finally:
        seen["down"] = ansible_playbook("playbooks/teardown.yml", {"nestlab_lab_name": seen["name"]})
        seen["left"] = [suffix for suffix in (".json", ".twin.json")
                        if os.path.exists(os.path.join(REPORTS, seen["name"] + suffix))]
    return seen


TWIN = Job("twin", twin_lab, nice=0)


@pytest.mark.background(TWIN, start="boot")  # from the boot tier on, beside its small boots
def test_a_twin_of_a_real_server_shows_its_shape_to_hwloc(conn):
    seen = TWIN.result()
    run = seen["run"]
    assert run.returncode == 0, run.stdout[-5000:]
    twin = seen["twin"]
    assert twin["source"]["product"] == "IBM 3850 M2 / x3950 M2 -[72336SG]-" and twin["source"]["nodes"] == 4
    # the spec: 4 nodes of one vCPU and 512 MiB, the source's distances, two NICs per node; this host's
    # QEMU has no NetXtreme II, so e1000e, said in the fidelity rows
    assert [(c["cpus"], c["memory"], c["distances"], len(c["nics"])) for c in twin["spec"]["numa"]] == [
        (1, "512MiB", [10 if i == j else 26 for j in range(4)], 2) for i in range(4)]
    nics = [row for row in twin["fidelity"] if row["kind"] == "pci" and "nic" in row]
    assert len(nics) == 8 and all(row["outcome"] == "scaled" and "e1000e" in row["why"] for row in nics)
    # hwloc inside L1 against the source: every row holds, and there is one per NIC
    comparison = dict((row["check"], row) for row in twin["comparison"])
    assert twin["matches"] and all(row["ok"] for row in twin["comparison"]), twin["comparison"]
    assert comparison["NUMA nodes"]["twin"] == 4
    assert comparison["distances"]["twin"] == " / ".join(
        " ".join("10" if i == j else "26" for j in range(4)) for i in range(4))
    assert sorted(check for check in comparison if check.endswith("on its node")) == sorted(
        "%s on its node" % row["source"] for row in nics)
    # L1's own report agrees: 4 nodes, the NICs on nodes 0-3 two by two
    assert [nic["node"] for nic in seen["report"]["guest"]["nics"]] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert "Twin against source" in run.stdout and "Fidelity:" in run.stdout
    assert seen["down"].returncode == 0, seen["down"].stdout[-3000:]
    assert seen["name"] not in [d.name() for d in conn.listAllDomains()] and seen["left"] == []
