"""Quality gates: ansible-lint with the production profile and antsibull-changelog's lint, both with
no findings and no skip or ignore entries."""

import os
import subprocess
import sys

import pytest
import yaml

from helpers import EARLY, ROOT

BIN = os.path.dirname(sys.executable)


LINT = [os.path.join(BIN, "ansible-lint"), "--offline", "--nocolor"]


@pytest.mark.early("lint", LINT)
def test_ansible_lint_production_profile_is_clean():
    with open(os.path.join(ROOT, ".ansible-lint")) as handle:
        config = yaml.safe_load(handle)
    assert config["profile"] == "production"
    assert not config.get("skip_list") and not config.get("warn_list")
    assert not os.path.exists(os.path.join(ROOT, ".ansible-lint-ignore"))
    run = EARLY.result("lint", LINT)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "Profile 'production' was required, and it passed" in run.stdout, run.stdout[-2000:]


def test_changelog_fragments_lint_clean():
    run = subprocess.run([os.path.join(BIN, "antsibull-changelog"), "lint"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout[-3000:]
