"""The collection works as a built artifact: build, install into a clean path, run a playbook from it."""

import os
import subprocess
import sys
import tempfile

from helpers import ROOT

BIN = os.path.dirname(sys.executable)


def test_build_install_and_run_from_the_artifact(tmp_path):
    build = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path),
                            ROOT], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           check=False)
    assert build.returncode == 0, build.stdout
    tarball = [p for p in os.listdir(tmp_path) if p.endswith(".tar.gz")]
    assert tarball == ["nestlab-pci-0.1.0.tar.gz"]
    listing = subprocess.run(["tar", "-tzf", str(tmp_path / tarball[0])], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.split()
    assert "plugins/modules/lab_topology.py" in listing
    assert not [p for p in listing if p.startswith((".venv", "collections/", ".cache", "tests/output"))]
    dest = tmp_path / "installed"
    # a clean configuration: the checkout's ansible.cfg would resolve nestlab.pci to the checkout
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_CONFIG=str(cfg))
    install = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-p", str(dest),
                              str(tmp_path / tarball[0])], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, check=False, env=env)
    assert install.returncode == 0, install.stdout
    assert (dest / "ansible_collections" / "nestlab" / "pci" / "plugins" / "modules" / "lab_topology.py").exists()
    target = tmp_path / "lab.xml"
    play = tmp_path / "play.yml"
    play.write_text("""
- hosts: localhost
  gather_facts: false
  tasks:
    - nestlab.pci.lab_topology:
        path: %s
        name: artifact
        spec: {accel: tcg}
      register: lab
    - ansible.builtin.assert:
        that: ["lab.plan[2].nics[2].nodedev == 'pci_0000_df_00_0'"]
""" % target)
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=" + sys.executable, str(play)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                         cwd=tempfile.gettempdir(), check=False)
    assert run.returncode == 0, run.stdout
    assert "ua-nestlab-lab-pxb2" in target.read_text()
