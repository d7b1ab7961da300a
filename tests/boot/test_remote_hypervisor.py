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
import sys
import tempfile
import threading
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
# chain inside L1 is the default lab's test. Its e1000e on node 1 is wired to the NIC of a second lab.
def remote_spec(wire):
    return {"numa": [{"cpus": 3, "memory": "1536MiB", "nics": 1},
                     {"cpus": 1, "memory": "512MiB", "nics": [{"model": "virtio"}, {"wire": wire}]}],
            "iommu": {"model": "intel", "caching_mode": False}}


# the second lab, on this machine as a local hypervisor of the same inventory: one node, one wired NIC
def local_spec(wire):
    return {"numa": [{"cpus": 1, "memory": "768MiB", "nics": [{"wire": wire}]}], "iommu": None}


def free_udp_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# Raw Ethernet frames of an ethertype for local experiments (0x88b5, IEEE 802), no IP address needed, on the
# NIC at ADDRESS: "send COUNT" sends COUNT numbered frames; "receive COUNT" counts the distinct numbered frames
# that arrive, until it has COUNT, or 5 s pass without a new one after the first, or 90 s in all.
FRAMES = r"""
import os, socket, struct, sys, time
role, address, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
name = os.listdir("/sys/bus/pci/devices/%s/net" % address)[0]
os.system("ip link set %s up" % name)
for dummy in range(100):  # the link comes up a moment later; a frame sent before is dropped
    if open("/sys/class/net/%s/carrier" % name).read().strip() == "1":
        break
    time.sleep(0.2)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
sock.bind((name, 0))
if role == "send":
    mac = open("/sys/class/net/%s/address" % name).read().strip()
    head = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) + struct.pack("!H", 0x88b5)
    for number in range(count):
        sock.send(head + b"nestlab-wire %06d " % number + b"." * 40)
        time.sleep(0.002)
    print("%s sent %d" % (name, count))
else:
    sock.settimeout(1)
    seen, start, last = set(), time.time(), None
    print("ready", flush=True)
    while len(seen) < count and time.time() - start < 90 and (last is None or time.time() - last < 5):
        try:
            frame = sock.recv(2048)
        except socket.timeout:
            continue
        if frame[14:27] == b"nestlab-wire ":
            seen.add(frame[27:33])
            last = time.time()
    print("%s received %d" % (name, len(seen)))
"""


def in_l1(report, args, home):
    """The FRAMES script run with ``args`` in a lab's L1 over the SSH command of its report (a Popen)."""
    ssh = shlex.split(report["ssh"]) + ["-o", "BatchMode=yes", "python3", "-"] + list(args)
    proc = subprocess.Popen(ssh, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, env=dict(os.environ, HOME=home))
    proc.stdin.write(FRAMES)
    proc.stdin.close()
    return proc


def finish(proc, timeout=150):
    """The rest of an in_l1 Popen's output, once it has ended (killed after ``timeout`` s)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()
        proc.wait()
    finally:
        timer.cancel()
    return out


def remote_lab():
    """One lab command for two labs: the asymmetric one on the hypervisor reached through the private sshd,
    and a small one on this machine as a local hypervisor of the same inventory, their NICs wired to each
    other; frames from one L1 counted in the other; then one teardown of both. The controller's HOME is a
    directory of the job's own (removed at the end). What happened, for the test to judge: this runs as a
    job that the shared lab's lane starts when it ends (REMOTE), so it asserts nothing itself."""
    work = tempfile.mkdtemp(prefix="nltest-remote-")
    inventory, sshd = private_sshd(work)
    seen = {"name": unique_name("remote"), "local": unique_name("wired")}
    ports = (free_udp_port(), free_udp_port())
    seen["wires"] = ({"port": ports[0], "peer_port": ports[1]}, {"port": ports[1], "peer_port": ports[0]})
    with open(inventory) as handle:
        data = json.load(handle)
    hosts = data["all"]["children"]["hypervisors"]["hosts"]
    hosts["hv-remote"].update(nestlab_lab_name=seen["name"], nestlab_lab=remote_spec(seen["wires"][0]))
    hosts["hv-local"] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                         "nestlab_lab_name": seen["local"], "nestlab_lab": local_spec(seen["wires"][1])}
    with open(inventory, "w") as handle:
        json.dump(data, handle)
    keys = os.path.join(work, ".cache", "nestlab", "hv-remote", seen["name"])
    env = {"ANSIBLE_INVENTORY": inventory, "HOME": work}
    try:
        seen["run"] = ansible_playbook("playbooks/lab.yml", {"nestlab_guest_roles": False}, env=env)
        if seen["run"].returncode == 0:
            seen["key_mode"] = oct(os.stat(os.path.join(keys, "id_ed25519")).st_mode & 0o777)
            # the report as the hypervisor has it, read over the same SSH as Ansible's
            seen["report"] = on_hypervisor(inventory, "cat /var/lib/nestlab/reports/%s.json" % seen["name"])
            with open("/var/lib/nestlab/reports/%s.json" % seen["local"]) as handle:
                seen["local_report"] = json.load(handle)
            if seen["report"].returncode == 0:
                report = json.loads(seen["report"].stdout)
                # the SSH command the lab reports, from the controller, through the hypervisor
                ssh = shlex.split(report["ssh"]) + ["-o", "BatchMode=yes", "cat", "/proc/sys/kernel/hostname"]
                seen["hostname"] = subprocess.run(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                                                  env=dict(os.environ, HOME=work))
                # 500 frames from the remote lab's wired NIC (node 1's e1000e), counted on the local lab's
                receiver = in_l1(seen["local_report"], ["receive", "0000:b5:00.0", "500"], work)
                seen["ready"] = receiver.stdout.readline().strip()
                sender = in_l1(report, ["send", "0000:ca:00.0", "500"], work)
                seen["sent"] = finish(sender)
                seen["received"] = finish(receiver)
    finally:
        seen["down"] = ansible_playbook("playbooks/teardown.yml", env=env)
        seen["keys_left"] = os.path.exists(keys)
        seen["left"] = [name for name in (seen["name"], seen["local"])
                        if os.path.exists("/var/lib/nestlab/labs/" + name)]
        sshd.terminate()
        sshd.wait(timeout=10)
        seen["keys_dir"] = keys
        shutil.rmtree(work, ignore_errors=True)
    return seen


REMOTE = Job("remote-hypervisor", remote_lab, nice=0)


@pytest.mark.after_lab(REMOTE)  # started once the shared lab is built, beside the lane's serial steps in it
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


@pytest.mark.after_lab(REMOTE)
def test_two_labs_from_one_run_are_kept_apart_and_exchange_frames_over_wired_nics(conn):
    seen = REMOTE.result()
    assert seen["run"].returncode == 0, seen["run"].stdout[-5000:]
    remote, local = json.loads(seen["report"].stdout), seen["local_report"]
    # both verified by the one run, each with its own name, SSH port, key and report
    assert "%s-l1" % seen["local"] in seen["run"].stdout
    assert local["guest"]["nics"][0]["address"] == "0000:b5:00.0"
    assert remote["name"] == seen["name"] and local["name"] == seen["local"]
    ports = [args[args.index("-p") + 1] for args in (shlex.split(remote["ssh"]), shlex.split(local["ssh"]))]
    assert ports[0] != ports[1]
    assert "ProxyCommand" not in local["ssh"] and "/var/lib/nestlab/labs/%s/" % seen["local"] in local["ssh"]
    # the wires as planned: each NIC sends to the other's port on 127.0.0.1
    assert remote["plan"][1]["nics"][1]["wire"] == seen["wires"][0]
    assert local["plan"][0]["nics"][0]["wire"] == seen["wires"][1]
    # frames from the remote lab's L1 arrive in the local lab's L1 (a few may be lost under TCG)
    assert seen["ready"] == "ready", seen.get("received")
    assert seen["sent"].split()[-2:] == ["sent", "500"], seen["sent"]
    received = int(seen["received"].split()[-1])
    assert 475 <= received <= 500, seen["received"]
    assert seen["down"].returncode == 0 and seen["left"] == []
    assert not [d.name() for d in conn.listAllDomains() if d.name() in (seen["name"], seen["local"])]
