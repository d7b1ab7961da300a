"""The Molecule scenarios (extensions/molecule): the default scenario creates a small lab and
destroys it; every in-guest role and nested_guest converge on its L1, converge again with no
change (idempotence), and are verified."""

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, run_bounded

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]

SCENARIOS = ["guest_hugepages", "guest_iommu", "guest_nested_virt", "guest_vfio", "nested_guest"]


def test_molecule_test_all(conn):
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1",
               NO_COLOR="1", ANSIBLE_FORCE_COLOR="0")
    # no state from an earlier run: the default scenario must really create the lab
    subprocess.run([os.path.join(bindir, "molecule"), "reset"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    run = run_bounded([os.path.join(bindir, "molecule"), "test", "--all"], timeout=1500, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stdout[-6000:]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)

    def succeeded(scenario, step):
        # "scenario ➜ step" on a terminal, "scenario > step" otherwise
        return re.search(r"%s (➜|>) %s: Executed: Successful" % (scenario, step), plain) is not None

    assert succeeded("default", "create") and succeeded("default", "destroy"), plain[-3000:]
    for scenario in SCENARIOS:
        for step in ("converge", "idempotence", "verify"):
            assert succeeded(scenario, step), "%s of %s did not succeed:\n%s" % (step, scenario, plain[-3000:])
    assert "nestlab-molecule" not in [d.name() for d in conn.listAllDomains()]
    assert not os.path.exists("/var/lib/nestlab/labs/nestlab-molecule")
