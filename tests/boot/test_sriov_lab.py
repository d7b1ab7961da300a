"""The SR-IOV lab of issue 7 through the whole chain, on a second hypervisor that takes libvirt and
QEMU from the distribution's backports (hypervisor_upgrade_source: backports), while this machine's
own libvirt and QEMU stay as they are and keep serving the other lab tests.

The second hypervisor is a Debian root (tests/boot/files/hv-root.sh) in namespaces of its own, with
its own sshd on 127.0.0.1: it starts every time as the release's minimal system with the release's
libvirt and QEMU (cached, keyed by the release and the role's package list), so the role finds igb
missing, takes both from the backports and goes on.
The lab: two NUMA nodes, one igb per node, two VFs each. L1 must show the VFs on their PF's node,
each in an IOMMU group of its own, and libvirt in L1 must list them; L2 gets a VF on the last node
and sees 8086:10ca with igbvf bound. hostdev picks VFs by PF and index or by node inside L1."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from helpers import (IOMMU_NOTHING_TO_DO, ROOT, Job, ansible_playbook, base_image, free_port, recap, run_bounded,
                     said)

pytestmark = [pytest.mark.boot]

HV_ROOT = os.path.join(ROOT, "tests", "boot", "files", "hv-root.sh")
HV_CACHE = "/var/cache/nestlab/tests/hv-root"
LAB = "nltest-sriovlab"
SPEC = {"numa": [{"cpus": 2, "memory": "1536MiB", "nics": 1, "nic_model": "igb", "vfs": 2, "hugepages": 64},
                 {"cpus": 2, "memory": "1536MiB", "nics": 1, "nic_model": "igb", "vfs": 2, "hugepages": 64}]}


class SecondHypervisor:
    """hv-root.sh running in the background, and the ways in: Ansible's inventory and plain SSH."""

    def __init__(self, work):
        self.work = work
        for key in ("hostkey", "id"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(work, key)], check=True)
        with open(os.path.join(work, "hostkey.pub")) as handle:
            hostkey = " ".join(handle.read().split()[:2])
        self.port = free_port()
        with open(os.path.join(work, "known_hosts"), "w") as handle:
            handle.write("[127.0.0.1]:%d %s\n" % (self.port, hostkey))
        self.ssh_args = ["-i", os.path.join(work, "id"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                         "-o", "UserKnownHostsFile=" + os.path.join(work, "known_hosts")]
        self.inventory = os.path.join(work, "inventory.json")
        with open(self.inventory, "w") as handle:
            json.dump({"all": {"children": {"hypervisors": {"hosts": {"hv-second": {
                "ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
                "ansible_ssh_private_key_file": os.path.join(work, "id"),
                "ansible_ssh_common_args": " ".join(self.ssh_args[2:]),
                "ansible_python_interpreter": "/usr/bin/python3"}}}}}}, handle)
        self.log = open(os.path.join(work, "hv-root.log"), "w")
        self.proc = subprocess.Popen(
            ["sh", HV_ROOT, "run", HV_CACHE, os.path.join(work, "run"), str(self.port),
             os.path.join(work, "id.pub"), os.path.join(work, "hostkey")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        for dummy in range(100):
            assert self.proc.poll() is None, "hv-root.sh ended: " + self.read_log()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the second hypervisor's sshd did not listen in 20 s: " + self.read_log())

    def read_log(self):
        with open(os.path.join(self.work, "hv-root.log")) as handle:
            return handle.read()[-3000:]

    def ssh(self, command):
        return subprocess.run(["ssh"] + self.ssh_args + ["-p", str(self.port), "root@127.0.0.1", command],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)

    def stop(self):
        # unshare was started with --kill-child: its end takes every process of the root with it,
        # and with them the root's mount namespace (overlay, /run, binds). It ignores SIGTERM (it
        # leaves that to its child, and a namespace's PID 1 ignores signals it has no handler for).
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
        self.log.close()
        subprocess.run(["rm", "-rf", os.path.join(self.work, "run")], check=True)


def sriov_chain():
    """The whole chain on a second hypervisor started for it, asserts and all, in a directory of its own
    (removed at the end). It runs as a background job (SRIOV): a failed assert is raised again in the test."""
    # the host builds the image (or finds it cached) that the root sees through its bind mount
    base_image()
    build = run_bounded(["sh", HV_ROOT, "build", HV_CACHE], 900)
    assert build.returncode == 0, build.stdout[-3000:]
    work = tempfile.mkdtemp(prefix="nltest-sriov-")
    for sub in ("hv", "home"):
        os.mkdir(os.path.join(work, sub))
    hv = SecondHypervisor(os.path.join(work, "hv"))
    try:
        whole_chain(hv, pathlib.Path(work) / "home")
    finally:
        hv.stop()
        shutil.rmtree(work, ignore_errors=True)


# The lab's L1 and L2 boot one after the other, most of it on one core: started with the libvirt tier, it
# runs while the other tests wait on timers and boot small guests, instead of last with a core idle
SRIOV = Job("sriov-lab", sriov_chain, nice=0)


@pytest.mark.background(SRIOV, start="libvirt")
def test_sriov_lab_through_the_whole_chain():
    SRIOV.result()


def lab(hv, home, **extra):
    return ansible_playbook("playbooks/lab.yml", dict({"nestlab_lab_name": LAB, "nestlab_lab": SPEC}, **extra),
                            env={"ANSIBLE_INVENTORY": hv.inventory, "HOME": home})


def versions(hv):
    out = hv.ssh("virsh -c qemu:///system version").stdout
    found = {}
    for name, pattern in (("qemu", r"Running hypervisor: QEMU ([0-9.]+)"), ("libvirt", r"Using library: libvirt ([0-9.]+)")):
        match = re.search(pattern, out)
        assert match, out
        found[name] = tuple(int(x) for x in match.group(1).split("."))
    return found


def l1_inventory(report, home, path):
    """Ansible's way into L1: the port of the lab's SSH command (the network is shared with the
    second hypervisor, so no jump is needed) and the key the lab made."""
    port = int(re.search(r"-p (\d+) root@127\.0\.0\.1", report["ssh"]).group(1))
    keys = os.path.join(home, ".cache", "nestlab", "hv-second", LAB)
    with open(path, "w") as handle:
        json.dump({"all": {"hosts": {"sriov-l1": {
            "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
            "ansible_ssh_private_key_file": os.path.join(keys, "id_ed25519"),
            "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes"
                                       % os.path.join(keys, "known_hosts"),
            "ansible_python_interpreter": "/usr/bin/python3"}}}}, handle)
    return path


# hostdev choosing VFs in L1, on a domain of its own that is defined and never started: by PF and
# index (check, real, check), "a VF on node 1" (L2 holds the first one there), and a VF that is not
# there (named, nothing written)
HOSTDEV_PLAY = """
- hosts: sriov-l1
  gather_facts: false
  vars:
    scratch: nltest-vfpick
    by_index: {physical_function: pci_0000_b5_00_0, index: 1}
  tasks:
    - name: A domain to give VFs to
      ansible.builtin.command: virsh define /dev/stdin
      args:
        stdin: "<domain type='qemu'><name>{{ scratch }}</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"
      changed_when: true
    - block:
        - {name: check, nestlab.pci.hostdev: {name: "{{ scratch }}", virtual_function: "{{ by_index }}"}, check_mode: true, register: c1}
        - {name: real, nestlab.pci.hostdev: {name: "{{ scratch }}", virtual_function: "{{ by_index }}"}, register: r1}
        - {name: check again, nestlab.pci.hostdev: {name: "{{ scratch }}", virtual_function: "{{ by_index }}"}, check_mode: true, register: c2}
        - {name: on node 1, nestlab.pci.hostdev: {name: "{{ scratch }}", virtual_function: {numa_node: 1}}, register: n1}
        - {name: on node 1 again, nestlab.pci.hostdev: {name: "{{ scratch }}", virtual_function: {numa_node: 1}}, register: n2}
        - {name: before, ansible.builtin.command: "virsh dumpxml --inactive {{ scratch }}", register: x1, changed_when: false}
        - name: a VF index the PF does not have
          nestlab.pci.hostdev: {name: "{{ scratch }}", virtual_function: {physical_function: pci_0000_b5_00_0, index: 5}}
          register: bad
          failed_when: false
        - {name: after, ansible.builtin.command: "virsh dumpxml --inactive {{ scratch }}", register: x2, changed_when: false}
        - name: Write what happened
          ansible.builtin.copy:
            dest: "{{ out }}"
            mode: "0600"
            content: "{{ {'c1': c1, 'r1': r1, 'c2': c2, 'n1': n1, 'n2': n2, 'bad': bad, 'same': x1.stdout == x2.stdout,
                         'xml': x2.stdout} | to_json }}"
          delegate_to: localhost
      always:
        - {name: remove the domain, ansible.builtin.command: "virsh undefine {{ scratch }}", changed_when: true}
"""


# guest_sriov on its own in L1. With as_at_boot, first PF b5's VFs are taken away by hand and the boot
# unit started as a boot starts it (with the configuration the lab wrote), and the count it made read;
# then the role with the VFs asked for, read back
SRIOV_PLAY = """
- hosts: sriov-l1
  gather_facts: false
  pre_tasks:
    - name: Take PF b5's VFs away and its link down, start the boot unit as a boot does, and read what it made
      ansible.builtin.shell: |
        echo 0 > /sys/bus/pci/devices/0000:b5:00.0/sriov_numvfs
        ip link set dev "$(ls /sys/bus/pci/devices/0000:b5:00.0/net)" down
        systemctl start nestlab-sriov.service
        cat /sys/bus/pci/devices/0000:b5:00.0/sriov_numvfs
        cat /sys/bus/pci/devices/0000:b5:00.0/net/*/flags
      register: by_the_unit
      changed_when: false
      when: as_at_boot | bool
  roles:
    - nestlab.pci.guest_sriov
  post_tasks:
    - name: Keep what the unit and the role found
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'unit': by_the_unit.stdout | default(''), 'state': guest_sriov_state} | to_json }}"
        mode: "0600"
      delegate_to: localhost
      changed_when: false
"""


def check_guest_sriov_in_l1(inventory, home, tmp_path):
    """guest_sriov in the lab's L1 (PF c9's first VF is L2's, so only b5 changes): the boot unit makes
    PF b5's two VFs again after they were taken away, and brings its link up again; another count then goes through 0 (the kernel
    refuses a change between two non-zero counts); a PF that is not there is named. (A count above the
    PF's total is refused before anything runs: tests/reliability/test_bad_input.py.)"""
    play, out = tmp_path / "sriov.yml", str(tmp_path / "sriov.json")
    play.write_text(SRIOV_PLAY)

    def role(vfs, as_at_boot=False):
        return ansible_playbook(str(play), {"guest_sriov_vfs": vfs, "out": out, "as_at_boot": as_at_boot},
                                env={"ANSIBLE_INVENTORY": inventory, "HOME": home})

    fewer = role({"0000:b5:00.0": 1, "0000:c9:00.0": 2}, as_at_boot=True)
    assert fewer.returncode == 0 and recap(fewer.stdout, "sriov-l1")["changed"] > 0, fewer.stdout[-4000:]
    with open(out) as handle:
        found = json.load(handle)
    count, flags = found["unit"].split()
    assert count == "2" and int(flags, 16) & 1, found       # IFF_UP
    state = found["state"]
    assert state["0000:b5:00.0"]["up"] and state["0000:c9:00.0"]["up"], state
    assert [(vf["address"], vf["node"], vf["driver"]) for vf in state["0000:b5:00.0"]["vfs"]] == [
        ("0000:b5:10.0", 0, "igbvf")], state
    assert [vf["node"] for vf in state["0000:c9:00.0"]["vfs"]] == [1, 1], state
    bad = role({"0000:b5:00.0": 1, "0000:dd:00.0": 1})
    assert bad.returncode != 0 and "0000:dd:00.0: no such PCI device" in bad.stdout, bad.stdout[-3000:]


def whole_chain(hv, tmp_path):
    home = str(tmp_path)
    try:
        first = lab(hv, home, hypervisor_upgrade_source="backports")
        assert first.returncode == 0, first.stdout[-6000:]
        # the root started with the release's libvirt and QEMU (already there: nothing to install); the
        # role took the backports' in
        assert re.search(r"Install libvirt and QEMU from the backports\] \*+\nchanged: \[hv-second\]", first.stdout), \
            first.stdout[-6000:]
        assert re.search(r"Install libvirt and QEMU\] \*+\nskipping: \[hv-second\]", first.stdout), first.stdout[-6000:]
        found = versions(hv)
        assert found["qemu"] >= (8, 0) and found["libvirt"] >= (9, 3), found
        report = json.loads(hv.ssh("cat /var/lib/nestlab/reports/%s.json" % LAB).stdout)
        # the default path: the base image boots with the IOMMU arguments, and guest_iommu has nothing to do
        assert "intel_iommu=on iommu=pt" in report["l1"]["iommu"]["cmdline"], report["l1"]["iommu"]
        assert said(first.stdout, IOMMU_NOTHING_TO_DO)

        # L1: two VFs per PF, on the PF's node, each alone in its IOMMU group; libvirt in L1 lists them
        sriov = report["l1"]["sriov"]
        assert sorted(sriov) == ["0000:b5:00.0", "0000:c9:00.0"], sriov
        for pf, node in (("0000:b5:00.0", 0), ("0000:c9:00.0", 1)):
            vfs = sriov[pf]["vfs"]
            assert [(vf["vendor_device"], vf["node"], vf["group_size"]) for vf in vfs] == [("8086:10ca", node, 1)] * 2, vfs
        groups = [vf["iommu_group"] for pf in sriov.values() for vf in pf["vfs"]]
        assert len(set(groups)) == 4, groups
        # each PF with VFs is up (its VFs reset through its mailbox, which its driver answers only then)
        assert [sriov[pf]["up"] for pf in sorted(sriov)] == [True, True], sriov
        libvirt_vfs = dict((d["name"], (d["numa_node"], d["iommu_group"])) for d in report["libvirt_nodedevs"]
                           if d["vendor_device"] == "8086:10ca")
        assert libvirt_vfs == dict((vf["nodedev"], (vf["node"], vf["iommu_group"]))
                                   for pf in sriov.values() for vf in pf["vfs"]), report["libvirt_nodedevs"]

        # hwloc, asked by the lab command (role guest_validate), puts each PF and each of its VFs on the PF's node
        hwloc = report["validators"]["verdicts"]["hwloc"]
        assert hwloc["passed"], hwloc
        for pf, node in (("0000:b5:00.0", 0), ("0000:c9:00.0", 1)):
            assert [line for line in hwloc["output"].splitlines() if line.startswith(pf[:8])] == \
                ["%s node %d" % (addr, node) for addr in [pf] + [vf["address"] for vf in sriov[pf]["vfs"]]], hwloc

        # L2: a VF on the last node, seen from inside with its driver
        l2 = report["l2"]
        assert l2["device"]["vendor_device"] == "8086:10ca" and l2["device"]["numa_node"] == 1, l2
        assert l2["device"]["name"] == "pci_0000_c9_10_0", l2
        assert any(seen.endswith(" 8086:10ca igbvf") for seen in l2["seen_in_l2"]), l2

        # a second run changes nothing, on either host
        again = lab(hv, home, hypervisor_upgrade_source="backports")
        assert again.returncode == 0, again.stdout[-5000:]
        assert recap(again.stdout, "hv-second")["changed"] == 0, again.stdout[-5000:]
        assert recap(again.stdout, LAB + "-l1")["changed"] == 0, again.stdout[-5000:]

        # hostdev picks VFs in L1
        out = str(tmp_path / "hostdev.json")
        play = tmp_path / "hostdev.yml"
        play.write_text(HOSTDEV_PLAY)
        inventory = l1_inventory(report, home, str(tmp_path / "l1.json"))
        run = ansible_playbook(str(play), {"out": out}, env={"ANSIBLE_INVENTORY": inventory, "HOME": home})
        assert run.returncode == 0, run.stdout[-5000:]
        with open(out) as handle:
            got = json.load(handle)
        assert got["c1"]["changed"] and got["r1"]["changed"] and not got["c2"]["changed"], got
        assert got["r1"]["virtual_function"]["name"] == "pci_0000_b5_10_2" and got["r1"]["virtual_function"]["vf_index"] == 1
        # the first VF on node 1 is L2's: the next one is chosen, and again on a second run
        assert got["n1"]["changed"] and got["n1"]["virtual_function"]["name"] == "pci_0000_c9_10_2", got["n1"]
        assert not got["n2"]["changed"] and got["n2"]["virtual_function"]["name"] == "pci_0000_c9_10_2", got["n2"]
        assert "slot='0x10' function='0x2'" in got["xml"] and got["xml"].count("<hostdev") == 2, got["xml"]
        # (failed_when: false leaves the module's error in the result, not its failed flag)
        assert got["bad"]["error"]["field"] == "virtual_function" and got["same"], got["bad"]
        assert got["bad"]["msg"].startswith("virtual_function: ") and "vf_index=5" in got["bad"]["msg"], got["bad"]["msg"]
        assert "pci_0000_b5_10_2 8086:10ca" in got["bad"]["msg"], got["bad"]["msg"]
        check_guest_sriov_in_l1(inventory, home, tmp_path)
    finally:
        down = ansible_playbook("playbooks/teardown.yml", {"nestlab_lab_name": LAB},
                                env={"ANSIBLE_INVENTORY": hv.inventory, "HOME": home})
        assert down.returncode == 0, down.stdout[-3000:]
        assert LAB not in hv.ssh("virsh -c qemu:///system list --all --name").stdout
