"""The lab on a hypervisor that Ansible reaches over SSH (here: a private sshd on 127.0.0.1):
the virtual host is then reached through the hypervisor, with its key copied to the controller.
The lab is an asymmetric one (nodes of 3 and 1 vCPUs, a virtio NIC among the e1000e), so the same
boot also proves that L1 sees a spec other than the default as it was given."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import time

import pytest

from helpers import ansible_playbook, free_port, unique_name

pytestmark = [pytest.mark.libvirt, pytest.mark.boot]


@pytest.fixture
def remote_hypervisor(tmp_path):
    """This machine as a 'remote' hypervisor: an sshd of the test's own on 127.0.0.1 only."""
    if not os.path.exists("/usr/sbin/sshd"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    os.makedirs("/run/sshd", exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
    shutil.copy(str(tmp_path / "client_key.pub"), str(tmp_path / "authorized_keys"))
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text("ListenAddress 127.0.0.1\nPort %d\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n"
                      "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\n"
                      % (port, tmp_path / "host_key", tmp_path / "authorized_keys", tmp_path / "sshd.pid"))
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    host_pub = (tmp_path / "host_key.pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text("[127.0.0.1]:%d %s\n" % (port, " ".join(host_pub)))
    for dummy in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"hypervisors": {"hosts": {"hv-remote": {
        "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(tmp_path / "client_key"),
        "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % (tmp_path / "known_hosts"),
        "ansible_python_interpreter": "/usr/bin/python3"}}}}}}))
    yield str(inventory)
    sshd.terminate()
    sshd.wait(timeout=10)


def on_hypervisor(inventory, command):
    """stdout of ``command`` run on the inventory's hypervisor over SSH, as Ansible reaches it."""
    with open(inventory) as handle:
        host = json.load(handle)["all"]["children"]["hypervisors"]["hosts"]["hv-remote"]
    ssh = (["ssh", "-p", str(host["ansible_port"]), "-i", host["ansible_ssh_private_key_file"], "-o", "BatchMode=yes"]
           + shlex.split(host["ansible_ssh_common_args"]) + ["%s@%s" % (host["ansible_user"], host["ansible_host"]), command])
    out = subprocess.run(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_lab_on_a_hypervisor_reached_over_ssh(conn, remote_hypervisor, tmp_path):
    name = unique_name("remote")
    env = {"ANSIBLE_INVENTORY": remote_hypervisor, "HOME": str(tmp_path)}
    try:
        # an asymmetric lab (3 + 1 vCPUs, a virtio NIC beside an e1000e, no caching mode): the L1
        # check only, the chain inside L1 is the default lab's test
        spec = {"numa": [{"cpus": 3, "memory": "1536MiB", "nics": 1},
                         {"cpus": 1, "memory": "512MiB", "nics": [{"model": "virtio"}, {}]}],
                "iommu": {"model": "intel", "caching_mode": False}}
        run = ansible_playbook("playbooks/lab.yml", {"nestlab_lab_name": name, "nestlab_lab": spec,
                                                     "nestlab_guest_roles": False}, env=env)
        assert run.returncode == 0, run.stdout[-5000:]
        assert "hv-remote" in run.stdout and "%s-l1" % name in run.stdout
        keys = tmp_path / ".cache" / "nestlab" / "hv-remote" / name
        assert oct(os.stat(str(keys / "id_ed25519")).st_mode & 0o777) == "0o600"
        # the report as the hypervisor has it, read over the same SSH as Ansible's
        report = json.loads(on_hypervisor(remote_hypervisor, "cat /var/lib/nestlab/reports/%s.json" % name))
        assert "ProxyCommand" in report["ssh"] and str(keys) in report["ssh"]
        guest = report["guest"]
        assert guest["expander_buses"] == ["0000:b4", "0000:c8"]
        assert guest["nodes"] == {"0": {"cpus": "0-2"}, "1": {"cpus": "3"}}
        assert [(n["address"], n["node"], n["ids"][:4]) for n in guest["nics"]] == [
            ("0000:b5:00.0", 0, "8086"), ("0000:c9:00.0", 1, "1af4"), ("0000:ca:00.0", 1, "8086")]
        # the SSH command the lab reports works from the controller, through the hypervisor
        ssh = shlex.split(report["ssh"]) + ["-o", "BatchMode=yes", "cat", "/proc/sys/kernel/hostname"]
        out = subprocess.run(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, check=False, env=dict(os.environ, HOME=str(tmp_path)))
        assert out.returncode == 0 and out.stdout.strip() == "nestlab-l1", out.stdout
    finally:
        down = ansible_playbook("playbooks/teardown.yml", {"nestlab_lab_name": name}, env=env)
        assert down.returncode == 0, down.stdout[-3000:]
        assert name not in [d.name() for d in conn.listAllDomains()]
        assert not os.path.exists(str(tmp_path / ".cache" / "nestlab" / "hv-remote" / name))
