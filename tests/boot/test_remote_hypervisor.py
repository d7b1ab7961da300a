"""The lab on a hypervisor that Ansible reaches over SSH (here: a private sshd on 127.0.0.1):
the virtual host is then reached through the hypervisor, with its key copied to the controller.
The lab is an asymmetric one (nodes of 3 and 1 vCPUs, a virtio NIC among the e1000e), so the same
boot also proves that L1 sees a spec other than the default as it was given.

The lab command runs as a job (REMOTE) that the shared default lab's lane starts when it ends, so that it
runs beside the last of the other boot tests (the SR-IOV lab) instead of after them; run alone, the test
starts it itself."""

import functools
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from helpers import Job, ansible_playbook, free_port, unique_name

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]


def private_sshd(work):
    """This machine as a 'remote' hypervisor: an sshd of the test's own on 127.0.0.1 only, its keys and
    Ansible's inventory for it in ``work``. The inventory's path and the sshd's process."""
    if not os.path.exists("/usr/sbin/sshd"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdin=subprocess.DEVNULL)
    os.makedirs("/run/sshd", exist_ok=True)
    path = functools.partial(os.path.join, work)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path(key)], check=True)
    shutil.copy(path("client_key.pub"), path("authorized_keys"))
    port = free_port()
    with open(path("sshd_config"), "w") as handle:
        handle.write("ListenAddress 127.0.0.1\nPort %d\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n"
                     "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\n"
                     % (port, path("host_key"), path("authorized_keys"), path("sshd.pid")))
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", path("sshd_config")], stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    with open(path("host_key.pub")) as handle:
        host_pub = handle.read().split()[:2]
    with open(path("known_hosts"), "w") as handle:
        handle.write("[127.0.0.1]:%d %s\n" % (port, " ".join(host_pub)))
    for dummy in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    with open(path("inventory.json"), "w") as handle:
        json.dump({"all": {"children": {"hypervisors": {"hosts": {"hv-remote": {
            "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
            "ansible_ssh_private_key_file": path("client_key"),
            "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % path("known_hosts"),
            "ansible_python_interpreter": "/usr/bin/python3"}}}}}}, handle)
    return path("inventory.json"), sshd


def on_hypervisor(inventory, command):
    """``command`` run on the inventory's hypervisor over SSH, as Ansible reaches it: its CompletedProcess."""
    with open(inventory) as handle:
        host = json.load(handle)["all"]["children"]["hypervisors"]["hosts"]["hv-remote"]
    ssh = (["ssh", "-p", str(host["ansible_port"]), "-i", host["ansible_ssh_private_key_file"], "-o", "BatchMode=yes"]
           + shlex.split(host["ansible_ssh_common_args"]) + ["%s@%s" % (host["ansible_user"], host["ansible_host"]), command])
    return subprocess.run(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)


# an asymmetric lab (3 + 1 vCPUs, a virtio NIC beside an e1000e, no caching mode): the L1 check only, the
# chain inside L1 is the default lab's test
SPEC = {"numa": [{"cpus": 3, "memory": "1536MiB", "nics": 1},
                 {"cpus": 1, "memory": "512MiB", "nics": [{"model": "virtio"}, {}]}],
        "iommu": {"model": "intel", "caching_mode": False}}


def remote_lab():
    """The lab command and its teardown through the private sshd, with the controller's HOME in a directory
    of the job's own (removed at the end). What happened, for the test to judge: this runs as a job that
    the shared lab's lane starts when it ends (REMOTE), so it asserts nothing itself."""
    work = tempfile.mkdtemp(prefix="nltest-remote-")
    inventory, sshd = private_sshd(work)
    seen = {"name": unique_name("remote")}
    keys = os.path.join(work, ".cache", "nestlab", "hv-remote", seen["name"])
    env = {"ANSIBLE_INVENTORY": inventory, "HOME": work}
    try:
        seen["run"] = ansible_playbook("playbooks/lab.yml", {"nestlab_lab_name": seen["name"], "nestlab_lab": SPEC,
                                                             "nestlab_guest_roles": False}, env=env)
        if seen["run"].returncode == 0:
            seen["key_mode"] = oct(os.stat(os.path.join(keys, "id_ed25519")).st_mode & 0o777)
            # the report as the hypervisor has it, read over the same SSH as Ansible's
            seen["report"] = on_hypervisor(inventory, "cat /var/lib/nestlab/reports/%s.json" % seen["name"])
            if seen["report"].returncode == 0:
                # the SSH command the lab reports, from the controller, through the hypervisor
                ssh = shlex.split(json.loads(seen["report"].stdout)["ssh"]) + [
                    "-o", "BatchMode=yes", "cat", "/proc/sys/kernel/hostname"]
                seen["hostname"] = subprocess.run(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                                                  env=dict(os.environ, HOME=work))
    finally:
        seen["down"] = ansible_playbook("playbooks/teardown.yml", {"nestlab_lab_name": seen["name"]}, env=env)
        seen["keys_left"] = os.path.exists(keys)
        sshd.terminate()
        sshd.wait(timeout=10)
        seen["keys_dir"] = keys
        shutil.rmtree(work, ignore_errors=True)
    return seen


REMOTE = Job("remote-hypervisor", remote_lab, nice=0)


@pytest.mark.after_lab(REMOTE)  # started when the shared lab's lane ends, beside the last of the other tests
def test_lab_on_a_hypervisor_reached_over_ssh(conn):
    seen = REMOTE.result()
    run, name = seen["run"], seen["name"]
    assert run.returncode == 0, run.stdout[-5000:]
    assert "hv-remote" in run.stdout and "%s-l1" % name in run.stdout
    assert seen["key_mode"] == "0o600"
    assert seen["report"].returncode == 0, seen["report"].stderr
    report = json.loads(seen["report"].stdout)
    assert "ProxyCommand" in report["ssh"] and seen["keys_dir"] in report["ssh"]
    guest = report["guest"]
    assert guest["expander_buses"] == ["0000:b4", "0000:c8"]
    assert guest["nodes"] == {"0": {"cpus": "0-2"}, "1": {"cpus": "3"}}
    assert [(n["address"], n["node"], n["ids"][:4]) for n in guest["nics"]] == [
        ("0000:b5:00.0", 0, "8086"), ("0000:c9:00.0", 1, "1af4"), ("0000:ca:00.0", 1, "8086")]
    out = seen["hostname"]
    assert out.returncode == 0 and out.stdout.strip() == "nestlab-l1", out.stdout
    assert seen["down"].returncode == 0, seen["down"].stdout[-3000:]
    assert name not in [d.name() for d in conn.listAllDomains()]
    assert not seen["keys_left"]
