"""Fixtures of the boot tests."""

import os

import pytest

import helpers


@pytest.fixture(scope="session")
def base_image():
    """The lab's base image on this host (built when the cache has none); its path."""
    return helpers.base_image()


@pytest.fixture(scope="session")
def default_lab(conn):
    """The run's shared default lab (helpers.SharedLab: built in the background from the start of the
    boot tier), for the tests that read it or change it and put it back; torn down when the run ends.
    Its name, the lab command's output, the report it wrote, when L1 was held slow (helpers.SlowL2),
    Molecule's run on it and nested_guest's failure paths in it (helpers.run_l2_failures), its saved state
    and the reset to it after them (helpers.reset_lab)."""
    run = helpers.SHARED_LAB.wait()
    name = helpers.SHARED_LAB.name
    lab = {"name": name, "run": run, "report": None, "slow": helpers.SHARED_LAB.slow,
           "molecule": helpers.SHARED_LAB.molecule, "failures": helpers.SHARED_LAB.failures,
           "faults": helpers.SHARED_LAB.faults, "failed": helpers.SHARED_LAB.failed,
           "saved": helpers.SHARED_LAB.saved, "reset": helpers.SHARED_LAB.reset}
    try:
        assert run.returncode == 0, "the repair run:\n%s\nthe faults: %s %s\nthe run with the faults:\n%s" % (
            run.stdout[-5000:], lab["faults"].done, lab["faults"].errors, lab["failed"].stdout[-3000:])
        lab["report"] = helpers.lab_report(name)
        yield lab
    finally:
        down = helpers.SHARED_LAB.stop()
        helpers.remove_domain(conn, name)
        assert down.returncode == 0, down.stdout[-2000:]
        assert not os.path.exists("/var/lib/nestlab/labs/" + name)
