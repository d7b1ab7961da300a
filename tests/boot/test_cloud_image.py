"""The second base-image path: a user's cloud image with cloud-init, configured from a NoCloud seed.

The cloud image is made here (no cloud image can be downloaded on this machine): the base image
builder's 'cloud' flavour gives a generic Debian image with cloud-init and nothing of nestlab's own
boot-time set-up, so SSH keys, host name and network can only come from the seed."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
import yaml

from helpers import ROOT, ansible_playbook, l1_shell, lab_report, recap, remove_domain, unique_name

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]

FILES = os.path.join(ROOT, "roles", "base_image", "files")
# debootstrap does not resolve virtual packages: python3-cryptography (for cloud-init) needs the
# cffi backend named outright.
CLOUD_PACKAGES = ["cloud-init", "ifupdown", "isc-dhcp-client", "python3-cffi-backend"]
SPEC = {"numa": [{"cpus": 1, "memory": "1GiB", "nics": 1}, {"cpus": 1, "memory": "1GiB", "nics": 2}]}


CACHE = "/var/cache/nestlab/tests/cloud-image"


@pytest.fixture(scope="module")
def cloud_image(tmp_path_factory):
    """A Debian cloud-style image with cloud-init, built once and cached under CACHE by a digest of
    what it is made from (the build script, the package lists, the release, the size); an entry of
    other inputs is removed when a new one is built."""
    with open(os.path.join(ROOT, "roles", "base_image", "defaults", "main.yml")) as handle:
        packages = yaml.safe_load(handle)["base_image_packages"]
    with open(os.path.join(FILES, "build-image.sh"), "rb") as handle:
        script = handle.read()
    inputs = dict(SUITE="bookworm", SIZE_GB="3", FLAVOUR="cloud", PACKAGES=",".join(packages + CLOUD_PACKAGES))
    digest = hashlib.sha256(script + json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    out = os.path.join(CACHE, "debian-12-cloud-%s.qcow2" % digest)
    if os.path.exists(out):
        return out
    work = tmp_path_factory.mktemp("cloudimg")
    mirror = subprocess.run(["sh", os.path.join(FILES, "apt-mirror.sh")], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout.strip()
    os.makedirs(CACHE, exist_ok=True)
    for old in os.listdir(CACHE):
        os.unlink(os.path.join(CACHE, old))
    env = dict(os.environ, MIRROR=mirror, OUT=out, WORK=str(work / "build"), **inputs)
    # the script moves the finished image to OUT at its very end: a cache entry is always whole
    build = subprocess.run(["sh", os.path.join(FILES, "build-image.sh")], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    shutil.rmtree(str(work), ignore_errors=True)
    assert build.returncode == 0, build.stdout[-3000:]
    return out


def test_lab_on_a_cloud_image_with_a_nocloud_seed(conn, cloud_image):
    import pathlib

    name = unique_name("cloud")
    # QEMU's user must reach the image cache (pytest's own directories are root-only)
    work = pathlib.Path("/var/lib/nestlab/tests") / name
    images = work / "images"
    extra = {"nestlab_lab_name": name, "nestlab_lab": SPEC, "base_image_source": "cloud",
             "base_image_cloud_image": cloud_image, "base_image_dir": str(images), "base_image_size_gb": 4,
             "nestlab_guest_roles": False}
    try:
        run = ansible_playbook("playbooks/lab.yml", extra)
        assert run.returncode == 0, run.stdout[-5000:]
        # the cache holds a qcow2 copy grown to the lab's size; the lab boots from an overlay on it
        copies = sorted(os.listdir(str(images)))
        assert len(copies) == 1 and copies[0].startswith("nestlab-cloud-debian-12-cloud-"), copies
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(images / copies[0])],
                                         stdout=subprocess.PIPE, check=True).stdout)
        assert info["format"] == "qcow2" and info["virtual-size"] == 4 * 1024 ** 3
        xml = conn.lookupByName(name).XMLDesc(0)
        assert "<alias name='ua-nestlab-lab-seed'/>" in xml
        report = lab_report(name)
        assert report["guest"]["nodes"] == {"0": {"cpus": "0"}, "1": {"cpus": "1"}}
        assert [n["address"] for n in report["guest"]["nics"]] == ["0000:b5:00.0", "0000:c9:00.0", "0000:ca:00.0"]
        # cloud-init did the work: host name, root's key and the host key from the seed (checked by SSH)
        out = l1_shell(report, "hostname; cloud-init status; ls /etc/ssh/ssh_host_*_key")
        assert out.returncode == 0, out.stdout
        lines = out.stdout.split()
        assert lines[0] == "nestlab-l1" and "status: done" in out.stdout
        assert lines[-1] == "/etc/ssh/ssh_host_ed25519_key" and len([l for l in lines if l.startswith("/etc")]) == 1
        again = ansible_playbook("playbooks/lab.yml", extra)
        assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
    finally:
        ansible_playbook("playbooks/teardown.yml", {"nestlab_lab_name": name})
        remove_domain(conn, name)
        shutil.rmtree(str(work), ignore_errors=True)
    assert not os.path.exists("/var/lib/nestlab/labs/" + name)


def test_a_missing_cloud_image_is_named_and_nothing_is_made(tmp_path):
    play = tmp_path / "image.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - nestlab.pci.base_image\n")
    missing = str(tmp_path / "nowhere.qcow2")
    run = ansible_playbook(str(play), {"base_image_source": "cloud", "base_image_cloud_image": missing,
                                       "base_image_dir": str(tmp_path / "images")})
    assert run.returncode != 0
    assert 'base_image_cloud_image: "%s" is not a file on localhost' % missing in run.stdout
    assert not (tmp_path / "images").exists()
