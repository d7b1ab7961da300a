"""storage_preflight on a small filesystem made for the test: stops what cannot fit, lets through what fits."""

import os
import subprocess

import pytest

from helpers import ansible_playbook, run_module, unique_name

MiB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path):
    """A 64 MiB tmpfs."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_images_that_fit_pass_and_those_that_do_not_stop(small_fs):
    ok = run_module("storage_preflight", {
        "images": [{"path": str(small_fs / "labs" / "disk.qcow2"), "capacity": "32MiB", "label": "overlay"}],
        "reserve": "8MiB"})
    assert ok["fits"] is True and not ok.get("failed"), ok
    fs = ok["filesystems"][0]
    assert fs["mount_point"] == str(small_fs) and fs["free"] == 64 * MiB and fs["reserve"] == 8 * MiB
    # a new 32 MiB qcow2 image: the capacity, 3 metadata clusters (header, L1, L2) and 2 refcount
    # clusters (tmpfs has no extent tree)
    assert ok["images"][0]["state"] == "new" and ok["images"][0]["commitment"] == 32 * MiB + 5 * 65536
    assert fs["needed"] == ok["images"][0]["commitment"]
    assert os.listdir(str(small_fs)) == []                 # nothing written, not even the directory

    # an existing image counts what it can still grow by; two new ones push it over
    existing = small_fs / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(existing), "16M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 8M", str(existing)], check=True,
                   stdout=subprocess.DEVNULL)
    before = open(str(existing), "rb").read()
    args = {"images": [
        {"path": str(existing), "label": "base image"},
        {"path": str(small_fs / "a.qcow2"), "capacity": "24MiB", "label": "disk a"},
        {"path": str(small_fs / "b.raw"), "capacity": 24 * MiB, "format": "raw", "label": "disk b"},
    ], "reserve": "10%"}
    stop = run_module("storage_preflight", args)
    assert stop["failed"] is True and stop["fits"] is False
    base, disk_a, disk_b = stop["images"]
    assert base["state"] == "existing" and base["still"] == base["commitment"] - base["allocation"] > 0
    assert base["allocation"] >= 8 * MiB
    assert disk_b["commitment"] == 24 * MiB
    fs = stop["filesystems"][0]
    assert fs["reserve"] == int(64 * MiB * 10 / 100.0)
    assert fs["needed"] == base["still"] + disk_a["commitment"] + disk_b["commitment"]
    msg = stop["msg"]
    assert msg.startswith("Not enough space for the lab's disk images; nothing was written.")
    for label in ("base image (existing)", "disk a (new)", "disk b (new)"):
        assert label in msg, msg
    assert "%s: " % small_fs in msg and "short by" in msg
    assert sorted(os.listdir(str(small_fs))) == ["base.qcow2"] and open(str(existing), "rb").read() == before
    # as a backing file that is only read, the base takes nothing more: then it fits
    args["images"][0]["read_only"] = True
    args["images"].pop()
    assert run_module("storage_preflight", args, check=True)["fits"] is True


@pytest.mark.parametrize("args,start", [
    ({"images": [{"path": "/tmp/nltest-none.qcow2"}]}, "images[0].capacity: null is not valid"),
    ({"images": [{"path": "/tmp/nltest-none.qcow2", "capacity": "ten"}]}, "images[0].capacity: 'ten' is not a size"),
    ({"images": [{"path": "/tmp/nltest-none.qcow2", "capacity": 1, "cluster_size": 1000}]},
     "images[0].cluster_size: 1000 is not valid"),
    ({"images": [], "reserve": "150%"}, "reserve: '150%' is not valid"),
])
def test_bad_input_names_the_field(args, start):
    out = run_module("storage_preflight", args)
    assert out["failed"] and out["msg"].startswith(start), out


def test_lab_vm_stops_before_writing_when_the_overlay_cannot_fit(small_fs, tmp_path, conn):
    """A base image of 1 GiB (sparse) and the lab's directory on 64 MiB: the overlay could grow past
    the free space, so lab_vm stops before it makes the directory, the keys or the domain."""
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1G"], check=True)
    name = unique_name("space")
    play = tmp_path / "lab.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - nestlab.pci.lab_vm\n")
    run = ansible_playbook(str(play), {"lab_vm_name": name, "lab_vm_dir": str(small_fs / name),
                                       "lab_vm_base_image": str(base), "lab_vm_storage_reserve": "1MiB"})
    assert run.returncode != 0
    assert "Not enough space for the lab's disk images; nothing was written." in run.stdout, run.stdout[-3000:]
    assert "lab disk (overlay) (new): commitment 1.00 GiB" in run.stdout
    assert os.listdir(str(small_fs)) == []
    assert name not in [d.name() for d in conn.listAllDomains()]
