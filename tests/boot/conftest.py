"""Fixtures of the boot tests."""

import pytest

from helpers import ansible_playbook


@pytest.fixture(scope="session")
def base_image(tmp_path_factory):
    """The lab's base image on this host (built when the cache has none); its path."""
    play = tmp_path_factory.mktemp("image") / "image.yml"
    play.write_text("- hosts: localhost\n  gather_facts: true\n  roles:\n    - nestlab.pci.base_image\n"
                    "  post_tasks:\n    - ansible.builtin.debug:\n        msg: 'IMAGE={{ base_image_path }}'\n")
    run = ansible_playbook(str(play))
    assert run.returncode == 0, run.stdout[-3000:]
    return [line.split("IMAGE=")[1].strip().strip("'\"") for line in run.stdout.splitlines() if "IMAGE=" in line][0]
