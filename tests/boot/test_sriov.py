"""guest_sriov on a real igb: the lab's base image booted by QEMU from the distribution's backports
(the host's QEMU 7.2 has no igb; this one is unpacked, not installed, and run without libvirt) with
one igb per NUMA node behind pxb-pcie expanders and the Intel vIOMMU. The role makes the virtual
functions, a second run changes nothing, they come back after a reboot, and a bad request is named."""

import json
import os
import shutil
import subprocess
import time

import pytest

from helpers import ROOT, ansible_playbook, free_port, recap, run_bounded

pytestmark = [pytest.mark.boot]

CACHE = "/var/cache/nestlab/tests/qemu-backports"


@pytest.fixture(scope="module")
def qemu10():
    run = run_bounded(["sh", os.path.join(ROOT, "tests", "boot", "files", "qemu-backports.sh"), CACHE], 900)
    assert run.returncode == 0, run.stdout[-3000:]
    return run.stdout.strip().splitlines()[-1]


class SriovGuest:
    """The base image under QEMU 10: two NUMA nodes, an igb behind a root port on each node's expander."""

    def __init__(self, qemu, image, work):
        self.qemu, self.work, self.port = qemu, work, free_port()
        for key in ("id", "hostkey"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(work, key)], check=True)
        with open(os.path.join(work, "hostkey.pub")) as handle:
            hostkey = " ".join(handle.read().split()[:2])
        with open(os.path.join(work, "known_hosts"), "w") as handle:
            handle.write("[127.0.0.1]:%d %s\n" % (self.port, hostkey))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image,
                        os.path.join(work, "disk.qcow2")], check=True)
        self.inventory = os.path.join(work, "inventory.json")
        with open(self.inventory, "w") as handle:
            json.dump({"all": {"hosts": {"sriov-l1": {
                "ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
                "ansible_ssh_private_key_file": os.path.join(work, "id"),
                "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes"
                                           % os.path.join(work, "known_hosts"),
                "ansible_python_interpreter": "/usr/bin/python3"}}}}, handle)
        self.proc = None

    def start(self):
        share = os.path.join(os.path.dirname(os.path.dirname(self.qemu)), "share", "qemu")
        w = self.work
        cmd = [self.qemu, "-L", share, "-L", "/usr/share/seabios", "-L", "/usr/share/qemu", "-L", "/usr/lib/ipxe/qemu",
               "-machine", "q35,kernel-irqchip=split", "-accel", "tcg", "-cpu", "max", "-m", "2048",
               "-smp", "2,sockets=2", "-display", "none", "-no-reboot", "-nodefaults",
               "-serial", "file:" + os.path.join(w, "console.log"),
               "-object", "memory-backend-ram,id=m0,size=1024M", "-object", "memory-backend-ram,id=m1,size=1024M",
               "-numa", "node,nodeid=0,cpus=0,memdev=m0", "-numa", "node,nodeid=1,cpus=1,memdev=m1",
               "-device", "intel-iommu,intremap=on,caching-mode=on"]
        for node, bus_nr in ((0, 180), (1, 200)):
            cmd += ["-device", "pxb-pcie,id=pxb%d,bus_nr=%d,numa_node=%d,bus=pcie.0" % (node, bus_nr, node),
                    "-device", "pcie-root-port,id=rp%d,bus=pxb%d,chassis=%d,slot=0" % (node, node, node + 1),
                    "-device", "igb,bus=rp%d,netdev=n%d,romfile=" % (node, node),
                    "-netdev", "user,id=n%d,restrict=on" % node]
        cmd += ["-drive", "file=%s,if=none,id=d0,format=qcow2" % os.path.join(w, "disk.qcow2"),
                "-device", "virtio-blk-pci,drive=d0,bus=pcie.0",
                "-netdev", "user,id=mgmt,hostfwd=tcp:127.0.0.1:%d-:22" % self.port,
                "-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:4e:4c:4d,bus=pcie.0",
                "-fw_cfg", "name=opt/nestlab/authorized_keys,file=%s" % os.path.join(w, "id.pub"),
                "-fw_cfg", "name=opt/nestlab/ssh_host_ed25519_key,file=%s" % os.path.join(w, "hostkey")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
        deadline = time.time() + 300
        while time.time() < deadline:
            assert self.proc.poll() is None, "QEMU exited: %s" % self.proc.stderr.read()
            if self.ssh("true").returncode == 0:
                return
            time.sleep(3)
        raise AssertionError("no SSH after 300 s; console:\n" + self.console()[-3000:])

    def ssh(self, command):
        return subprocess.run(["ssh", "-i", os.path.join(self.work, "id"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                               "-o", "UserKnownHostsFile=" + os.path.join(self.work, "known_hosts"),
                               "-o", "StrictHostKeyChecking=yes", "-p", str(self.port), "root@127.0.0.1", command],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)

    def console(self):
        with open(os.path.join(self.work, "console.log"), errors="replace") as handle:
            return handle.read()

    def reboot(self):
        # QEMU runs with -no-reboot: the guest's reboot ends it, and it starts again on the same disk
        self.ssh("systemctl reboot")
        self.proc.wait(timeout=120)
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def guest(qemu10, base_image, tmp_path):
    g = SriovGuest(qemu10, base_image, str(tmp_path))
    try:
        g.start()
        yield g
    finally:
        g.stop()
        shutil.rmtree(str(tmp_path), ignore_errors=True)


def role(guest, vfs):
    play = os.path.join(guest.work, "sriov.yml")
    with open(play, "w") as handle:
        handle.write("- hosts: sriov-l1\n  gather_facts: false\n  roles:\n    - nestlab.pci.guest_sriov\n"
                     "  post_tasks:\n    - ansible.builtin.copy:\n        dest: %s\n        content: '{{ guest_sriov_state"
                     " | to_json }}'\n        mode: '0600'\n      delegate_to: localhost\n      changed_when: false\n"
                     % os.path.join(guest.work, "state.json"))
    return ansible_playbook(play, {"guest_sriov_vfs": vfs}, env={"ANSIBLE_INVENTORY": guest.inventory})


def state(guest):
    with open(os.path.join(guest.work, "state.json")) as handle:
        return json.load(handle)


def test_virtual_functions_on_their_nodes_in_groups_of_their_own(guest):
    first = role(guest, {"0000:b5:00.0": 2, "0000:c9:00.0": 3})
    assert first.returncode == 0, first.stdout[-4000:]
    seen = state(guest)
    assert [(vf["address"], vf["node"], vf["vendor_device"], vf["driver"], vf["group_size"])
            for vf in seen["0000:b5:00.0"]["vfs"]] == [
        ("0000:b5:10.0", 0, "8086:10ca", "igbvf", 1), ("0000:b5:10.2", 0, "8086:10ca", "igbvf", 1)]
    assert [vf["nodedev"] for vf in seen["0000:c9:00.0"]["vfs"]] == [
        "pci_0000_c9_10_0", "pci_0000_c9_10_2", "pci_0000_c9_10_4"]
    assert {vf["node"] for vf in seen["0000:c9:00.0"]["vfs"]} == {1}
    groups = [vf["iommu_group"] for pf in seen.values() for vf in pf["vfs"]] + [pf["iommu_group"] for pf in seen.values()]
    assert len(set(groups)) == len(groups) == 7
    again = role(guest, {"0000:b5:00.0": 2, "0000:c9:00.0": 3})
    assert again.returncode == 0 and recap(again.stdout, "sriov-l1")["changed"] == 0, again.stdout[-3000:]
    # another count goes through 0 (the kernel refuses a change between two non-zero counts)
    fewer = role(guest, {"0000:b5:00.0": 1, "0000:c9:00.0": 3})
    assert fewer.returncode == 0 and len(state(guest)["0000:b5:00.0"]["vfs"]) == 1, fewer.stdout[-3000:]
    # made again at boot
    guest.reboot()
    after = role(guest, {"0000:b5:00.0": 1, "0000:c9:00.0": 3})
    assert after.returncode == 0 and recap(after.stdout, "sriov-l1")["changed"] == 0, after.stdout[-3000:]
    assert [len(pf["vfs"]) for key, pf in sorted(state(guest).items())] == [1, 3]
    # a device that is not there is named, with what the guest has
    bad = role(guest, {"0000:b5:00.0": 1, "0000:dd:00.0": 1})
    assert bad.returncode != 0
    assert "0000:dd:00.0: no such PCI device" in bad.stdout and "error 0000:dd:00.0: no such PCI device" in bad.stdout
    too_many = role(guest, {"0000:b5:00.0": 8})
    assert too_many.returncode != 0 and "VF count from 0 to 7" in too_many.stdout
