"""The collection works as a built artifact: build, install into a clean path, run a playbook from it; and
the artifact holds what a user needs and nothing the workflows leave in the tree."""

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from helpers import ROOT

BIN = os.path.dirname(sys.executable)

# What the tarball may hold: files at its top, and trees under these directories (docs: the guides' and the
# site's sources only)
ALLOWED = ["MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.rst", "changelogs/*.yaml",
           "changelogs/fragments/*.yml", "docs/*.md", "docs/site/*.py", "docs/site/*.rst", "docs/ee/*.yml",
           "meta/*.yml", "meta/*.txt", "playbooks/*.yml", "plugins/*", "roles/*"]
# ... and must hold
REQUIRED = ["README.md", "LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "meta/runtime.yml",
            "plugins/modules/lab_topology.py", "plugins/module_utils/_nestlab/spec.py", "roles/lab_vm/tasks/main.yml",
            "playbooks/lab.yml", "playbooks/twin.yml", "docs/quickstart.md"]
# what the workflows leave in a checkout: the docs build, Hypothesis' database, Ansible's and pytest's caches
LEFT_BY_WORKFLOWS = ["build/docs/html/index.html", ".hypothesis/examples/x", ".ansible/tmp/x", ".pytest_cache/x",
                     "plugins/module_utils/_nestlab/__pycache__/x.cpython-311.pyc"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The collection's tarball, built once, from this tree with what the workflows leave in a checkout
    planted first (and removed again): its path."""
    out = tmp_path_factory.mktemp("artifact")
    made = []
    for rel in LEFT_BY_WORKFLOWS:  # as after scripts/docs.sh and the unit tests in this tree
        path = os.path.join(ROOT, rel)
        top = os.path.join(ROOT, rel.split("/", maxsplit=1)[0])
        if not os.path.exists(path):
            made.append(path if os.path.exists(top) else top)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                handle.write("left by a workflow\n")
    try:
        build = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path",
                                str(out), ROOT], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    finally:
        for path in made:
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    assert build.returncode == 0, build.stdout
    assert os.listdir(str(out)) == ["nestlab-pci-0.1.0.tar.gz"]
    return str(out / "nestlab-pci-0.1.0.tar.gz")


def test_the_artifact_holds_what_a_user_needs_and_nothing_else(artifact):
    tarball = artifact
    listing = subprocess.run(["tar", "-tzf", tarball], stdout=subprocess.PIPE, universal_newlines=True,
                             check=True).stdout.split()
    files = [name for name in listing if not name.endswith("/")]
    assert [name for name in files if not any(fnmatch.fnmatch(name, pattern) for pattern in ALLOWED)
            or "__pycache__" in name or name.endswith(".pyc")] == []
    assert [name for name in REQUIRED if name not in files] == []
    # the licence is the one galaxy.yml names
    with open(os.path.join(ROOT, "LICENSE")) as handle:
        assert "GNU GENERAL PUBLIC LICENSE" in handle.read(400)


def test_build_install_and_run_from_the_artifact(artifact, tmp_path):
    listing = subprocess.run(["tar", "-tzf", artifact], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.split()
    assert "plugins/modules/lab_topology.py" in listing
    assert not [p for p in listing if p.startswith((".venv", "collections/", ".cache", "tests/output"))]
    dest = tmp_path / "installed"
    # a clean configuration: the checkout's ansible.cfg would resolve nestlab.pci to the checkout
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_CONFIG=str(cfg))
    install = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-p", str(dest),
                              artifact], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
    # the playbooks by their collection names, as ansible-navigator and AWX projects run them (docs/awx.md)
    for playbook in ("nestlab.pci.lab", "nestlab.pci.twin", "nestlab.pci.teardown"):
        check = subprocess.run([os.path.join(BIN, "ansible-playbook"), playbook, "--syntax-check", "-i", "localhost,"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, env=env, cwd=tempfile.gettempdir(), check=False)
        assert check.returncode == 0 and str(dest) in check.stdout, check.stdout


def test_ansible_builder_makes_an_execution_environment_context_from_the_collections_files(artifact, tmp_path):
    """docs/ee/execution-environment.yml with the built tarball: `ansible-builder create` makes the build
    context; its galaxy stage's install, run as the Containerfile runs it (in _build), installs the
    collection; and ansible-builder's own introspection finds the Python and system packages that
    meta/execution-environment.yml names. (Building the image needs a container engine: not done here.)"""
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    shutil.copy(artifact, str(tmp_path))
    shutil.copy(os.path.join(ROOT, "docs", "ee", "execution-environment.yml"), str(tmp_path))
    create = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                             "--context", "context"], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert create.returncode == 0, create.stdout
    context = tmp_path / "context"
    assert (context / "_build" / "collections" / "nestlab-pci-0.1.0.tar.gz").is_file()
    steps = [line for name in ("Containerfile", "Dockerfile") if (context / name).exists()
             for line in (context / name).read_text().splitlines()]
    install = [line for line in steps if "ansible-galaxy collection install" in line]
    assert install and "-r requirements.yml" in install[0] and "WORKDIR /build" in steps
    # the galaxy stage, as its RUN line does it, from /build (the context's _build)
    installed = tmp_path / "installed"
    galaxy = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml",
                             "--collections-path", str(installed)], cwd=str(context / "_build"), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, check=False)
    assert galaxy.returncode == 0, galaxy.stdout
    found = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize", str(installed)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=True).stdout
    assert "lxml  # from collection nestlab.pci" in found and "libvirt-python  # from collection nestlab.pci" in found
    assert "libvirt-devel [platform:rpm compile]  # from collection nestlab.pci" in found
    assert "openssh-client [platform:dpkg]  # from collection nestlab.pci" in found
