"""Boot level: the lab's guest, booted under QEMU (TCG here), sees what the spec asks for.

The probe boots a direct kernel (Debian's kernel package) with a busybox initramfs and reads
the guest's own sysfs and kernel log; these tests assert on those facts.
"""

import pytest

from helpers import run_module

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]

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
    probe = run_module("topology_probe", {"name": name, "kernel": kernel, "workdir": "/var/cache/nestlab/probe"})
    assert not probe.get("failed"), probe.get("msg")
    facts = probe["facts"]
    assert {int(k): v["cpus"] for k, v in facts["nodes"].items()} == {0: [0], 1: [1, 2, 3]}
    mem = {int(k): v["memory_kib"] for k, v in facts["nodes"].items()}
    assert mem[0] > mem[1]
    assert facts["pci"]["0000:b5:00.0"]["numa_node"] == 0
    assert facts["pci"]["0000:c9:00.0"]["vendor"] == "1af4"
    assert [facts["pci"]["0000:%s:00.0" % b]["numa_node"] for b in ("c9", "ca", "cb", "cc")] == [1, 1, 1, 1]
    assert "DMAR-IR: Enabled IRQ remapping" in "\n".join(facts["dmesg"])
