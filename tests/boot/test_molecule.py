"""The Molecule scenarios (extensions/molecule) on the run's shared default lab, run in its build right
after the lab command (helpers.run_molecule): the default scenario
adopts it (NESTLAB_MOLECULE_LAB) instead of booting a lab of its own, every in-guest role and
nested_guest converge on its L1, converge again with no change (idempotence), and are verified, and
the lab is left standing for its owner. guest_vfio binds a NIC the chain did not give to L2 and gives
it back; nested_guest boots an L2 of its own with a NIC of node 1. Without NESTLAB_MOLECULE_LAB,
`molecule test --all` creates and destroys a small lab of its own."""

import os
import re

import pytest

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]

SCENARIOS = ["guest_hugepages", "guest_iommu", "guest_nested_virt", "guest_vfio", "nested_guest"]


def test_molecule_test_all(conn, default_lab):
    # Molecule ran on the shared lab in its build (helpers.run_molecule), right after the lab command
    run = default_lab["molecule"]
    assert run is not None and run.returncode == 0, run.stdout[-6000:] if run else "Molecule did not run"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)

    def succeeded(scenario, step):
        # "scenario ➜ step" on a terminal, "scenario > step" otherwise
        return re.search(r"%s (➜|>) %s: Executed: Successful" % (scenario, step), plain) is not None

    assert succeeded("default", "create") and succeeded("default", "destroy"), plain[-3000:]
    for scenario in SCENARIOS:
        for step in ("converge", "idempotence", "verify"):
            assert succeeded(scenario, step), "%s of %s did not succeed:\n%s" % (step, scenario, plain[-3000:])
    # the adopted lab is still there and running; no lab of Molecule's own was made
    assert conn.lookupByName(default_lab["name"]).isActive()
    assert "nestlab-molecule" not in [d.name() for d in conn.listAllDomains()]
    assert not os.path.exists("/var/lib/nestlab/labs/nestlab-molecule")
    assert not os.path.exists("/var/lib/nestlab/molecule")
