"""Quality gate: ansible-test sanity passes on the committed tree, with no ignore entries."""

import os

import pytest

from helpers import EARLY, ROOT


SANITY = ["bash", os.path.join(ROOT, "scripts", "sanity.sh")]


@pytest.mark.early("sanity", SANITY)
def test_ansible_test_sanity_is_clean():
    assert not os.path.exists(os.path.join(ROOT, "tests", "sanity")), "no sanity ignore files"
    run = EARLY.result("sanity", SANITY)
    errors = [line for line in run.stdout.splitlines() if line.startswith(("ERROR", "FATAL"))]
    assert run.returncode == 0, "\n".join(errors) or run.stdout[-3000:]
