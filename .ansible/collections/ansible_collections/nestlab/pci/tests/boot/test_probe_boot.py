"""Boot level: the lab's guest, booted under QEMU (TCG here), sees what the spec asks for.

The probe boots a direct kernel (Debian's kernel package) with a busybox initramfs and reads
the guest's own sysfs and kernel log; these tests assert on those facts.
"""

import json
import os
import subprocess

import pytest

from helpers import ROOT, ansible_playbook, run_module

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]

CACHE = "/var/cache/nestlab/probe"
FETCH = os.path.join(ROOT, "roles", "topology_probe", "files", "fetch-kernel.sh")


@pytest.fixture(scope="session")
def kernel():
    path = os.path.join(CACHE, "vmlinuz")
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run(["sh", FETCH, "linux-image-amd64", path], check=True)
    return path


def recap(output):
    """{'ok': N, 'changed': N, 'failed': N, ...} of localhost from the play recap."""
    line = [l for l in output.splitlines() if l.startswith("localhost") and "ok=" in l][-1]
    return dict((k, int(v)) for k, v in (part.split("=") for part in line.split()[2:]))


def test_default_lab_through_the_lab_playbook(conn, domain_name, kernel):
    name = domain_name("seed")
    report_dir = os.path.join(ROOT, ".cache", "test-reports")
    extra = {"nestlab_lab_name": name, "nestlab_report_dir": report_dir}
    run = ansible_playbook("playbooks/lab.yml", extra)
    assert run.returncode == 0, run.stdout[-4000:]
    report_path = os.path.join(report_dir, name + ".json")
    with open(report_path) as handle:
        report = json.load(handle)
    guest = report["guest"]
    assert report["problems"] == []
    # numactl --hardware of the seed: 3 nodes, CPUs 0-3 / 4-5 / 6-7
    assert guest["nodes"] == {"0": {"cpus": "0-3"}, "1": {"cpus": "4-5"}, "2": {"cpus": "6-7"}}
    # lspci -t of the seed: expanders b4/c8/dc, three 82574L (8086:10d3) behind each, on the right node
    assert guest["expander_buses"] == ["0000:b4", "0000:c8", "0000:dc"]
    nics = guest["nics"]
    assert [n["address"][5:7] for n in nics] == ["b5", "b6", "b7", "c9", "ca", "cb", "dd", "de", "df"]
    for nic in nics:
        assert nic["ids"] == "8086:10d3"
        assert nic["node"] == {"b": 0, "c": 1, "d": 2}[nic["address"][5]], nic
        assert isinstance(nic["iommu_group"], int)
    assert nics[-1]["nodedev"] == "pci_0000_df_00_0" and nics[-1]["node"] == 2
    assert guest["iommu_active"] and guest["interrupt_remapping"]
    assert "pci_0000_df_00_0" in run.stdout
    # the playbook again on the healthy lab: nothing changes (the report is rewritten identically)
    again = ansible_playbook("playbooks/lab.yml", extra)
    os.unlink(report_path)
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]


ASYMMETRIC = {
    "accel": "tcg",
    "numa": [
        {"cpus": 1, "memory": "768MiB", "nics": 1, "distances": [10, 15]},
        {"cpus": 3, "memory": "256MiB", "nics": [{"model": "virtio"}, {}, {"model": "e1000e"}, {}],
         "distances": [15, 10]},
    ],
    "iommu": {"model": "intel", "caching_mode": False},
}


def test_asymmetric_lab(conn, domain_name, kernel):
    name = domain_name("asym")
    topo = run_module("lab_topology", {"name": name, "spec": ASYMMETRIC})
    assert topo["changed"] and not topo.get("failed"), topo
    assert [n["expander_bus"] for n in topo["plan"]] == ["0000:b4", "0000:c8"]
    probe = run_module("topology_probe", {"name": name, "kernel": kernel, "workdir": CACHE})
    assert not probe.get("failed"), probe.get("msg")
    facts = probe["facts"]
    assert {int(k): v["cpus"] for k, v in facts["nodes"].items()} == {0: [0], 1: [1, 2, 3]}
    mem = {int(k): v["memory_kib"] for k, v in facts["nodes"].items()}
    assert mem[0] > mem[1]
    assert facts["pci"]["0000:b5:00.0"]["numa_node"] == 0
    assert facts["pci"]["0000:c9:00.0"]["vendor"] == "1af4"
    assert [facts["pci"]["0000:%s:00.0" % b]["numa_node"] for b in ("c9", "ca", "cb", "cc")] == [1, 1, 1, 1]
    assert "DMAR-IR: Enabled IRQ remapping" in "\n".join(facts["dmesg"])
