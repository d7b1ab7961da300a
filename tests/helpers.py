"""Shared test helpers: run a module as Ansible does (a whole process), reach a real libvirtd."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "collections")
PREFIX = "nltest-"


def module_env(first=()):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(list(first) + [COLLECTIONS, env.get("PYTHONPATH", "")])
    return env


def run_module(name, args, check=False, diff=False, prefix=(), pythonpath=()):
    """Run plugins/modules/<name>.py the way AnsiballZ does, with an args file; return its JSON.
    ``prefix``: a command to run it under (such as taskset); ``pythonpath``: directories searched first."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
        path = handle.name
    try:
        proc = subprocess.run(list(prefix) + [sys.executable, "-m", "ansible_collections.nestlab.pci.plugins.modules." + name, path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=module_env(pythonpath),
                              universal_newlines=True, cwd=ROOT, check=False)
    finally:
        os.unlink(path)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("module %s printed no JSON (rc %s):\n%s\n%s"
                             % (name, proc.returncode, proc.stdout, proc.stderr))


def call_module(name, args, check=False, diff=False):
    """Run a module's main() in this process, with AnsibleModule reading ``args`` as it does in a real
    run; return its JSON result. For tests that make thousands of calls (the corpus), where a process
    per call would take minutes; run_module is the way Ansible itself runs a module."""
    import contextlib
    import importlib
    import io

    from ansible.module_utils import basic

    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    try:
        from ansible.module_utils.testing import patch_module_args  # ansible-core 2.19 and later
        patch = patch_module_args(payload)
    except ImportError:
        patch = _module_args(basic, payload)
    module = importlib.import_module("ansible_collections.nestlab.pci.plugins.modules." + name)
    out = io.StringIO()
    with patch, contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    try:
        return json.loads(out.getvalue().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("module %s printed no JSON:\n%s" % (name, out.getvalue()))


@contextlib.contextmanager
def _module_args(basic, payload):
    old = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode("utf-8")
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = old


# No single command of the suite may take longer than this: a guest that wedges under TCG must
# fail its test with the output so far, not stall the whole run.
COMMAND_TIMEOUT = int(os.environ.get("NESTLAB_TEST_COMMAND_TIMEOUT", "1800"))


def run_bounded(cmd, timeout=None, on_line=None, cancel=None, **kwargs):
    """subprocess.run with stdout+stderr captured as text, in its own process group, killed as a group
    after ``timeout`` s or as soon as the event ``cancel`` is set; then returncode is -9 and stdout ends
    with a line that says so. ``on_line``: called with each line of output as it comes. Standard input is a
    /dev/null of the command's own (kwargs may say otherwise): ansible-playbook refuses to start on a
    non-blocking one, and an SSH client that shares the test run's standard input can leave it so."""
    timeout = timeout or COMMAND_TIMEOUT
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            start_new_session=True, **kwargs)
    killed, finished = [], threading.Event()

    def watch():
        deadline = time.time() + timeout
        while not finished.wait(0.5):
            why = ("killed after %d s" % timeout if time.time() >= deadline
                   else "cancelled (the test run is stopping)" if cancel is not None and cancel.is_set() else None)
            if why:
                killed.append(why)
                os.killpg(proc.pid, 9)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines = []
    try:
        for text in proc.stdout:
            lines.append(text)
            if on_line is not None:
                on_line(text)
        proc.wait()
    finally:
        finished.set()
        watcher.join()
    out = "".join(lines)
    if killed:
        out += "\nnestlab tests: %s %s\n" % (" ".join(cmd[:2]), killed[0])
        return subprocess.CompletedProcess(cmd, -9, out, None)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


class Job(object):
    """A part of a test's work that runs in a thread of its own, by default at the lowest CPU priority (it
    and the processes it starts get the CPU the rest of the run leaves idle), from the point where the run
    starts the shared lab (conftest: @pytest.mark.background(job)); the test judges ``result()`` when it
    comes. Run alone, the test starts it itself."""

    def __init__(self, name, function, nice=19):
        self.name, self.function, self.nice = name, function, nice
        self.thread, self.value, self.error = None, None, None

    def start(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.thread.start()

    def _run(self):
        try:
            if self.nice:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)  # this thread, what it starts
            self.value = self.function()
        except BaseException as exc:  # handed to the test that asks for the result
            self.error = exc

    def result(self, timeout=COMMAND_TIMEOUT * 2):
        self.start()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "%s did not end in %d s" % (self.name, timeout)
        if self.error is not None:
            raise self.error
        return self.value


class Early(object):
    """Commands the run starts as soon as tests are collected, in the background, and a test reads later:
    the quality gates, each a process of its own (a Job at normal priority) on the core the unit and file
    tiers leave idle. A test run alone starts its command when it asks for it."""

    def __init__(self):
        self.jobs = {}

    def start(self, key, cmd, timeout=900):
        if key not in self.jobs:
            self.jobs[key] = Job(key, lambda: run_bounded(cmd, timeout, cwd=ROOT), nice=0)
            self.jobs[key].start()

    def result(self, key, cmd, timeout=900):
        """``cmd``'s CompletedProcess (started now when it was not started early), bounded by run_bounded."""
        self.start(key, cmd, timeout)
        return self.jobs[key].result()


EARLY = Early()

# A command run as on a machine without libvirt, QEMU or a package manager: in a mount namespace of its
# own where their programs, libvirt's library and its sockets are hidden (each program bound to /dev/null,
# so running it fails); it stops with 97 when virsh still runs there.
_WITHOUT_LIBVIRT = r"""
for f in /usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/virsh /usr/bin/qemu-system-x86_64 /usr/bin/apt-get \
         /usr/bin/apt /usr/bin/dpkg-query /usr/bin/dpkg /usr/bin/dnf /usr/lib/x86_64-linux-gnu/libvirt.so.0; do
  if [ -e "$f" ]; then mount --bind /dev/null "$(readlink -f "$f")" || exit 96; fi
done
if [ -d /run/libvirt ]; then mount -t tmpfs none /run/libvirt || exit 96; fi
if virsh --version >/dev/null 2>&1; then echo "virsh still runs in the namespace"; exit 97; fi
exec "$@"
"""


def without_libvirt(cmd):
    """``cmd`` (a list) as it runs on a machine without libvirt, QEMU or a package manager."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _WITHOUT_LIBVIRT, "sh"] + list(cmd)


def playbook_command(playbook, extra_vars=None, check=False, env=None):
    """The ansible-playbook command line of the venv, and its environment (the checkout's ansible.cfg)."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0")
    full_env.update(env or {})
    return cmd, full_env


def ansible_playbook(playbook, extra_vars=None, check=False, env=None, timeout=None):
    """Run ansible-playbook from the venv with the checkout's ansible.cfg; return the CompletedProcess
    (bounded: see run_bounded)."""
    cmd, full_env = playbook_command(playbook, extra_vars, check, env)
    return run_bounded(cmd, timeout, cwd=ROOT, env=full_env)


_BASE_IMAGE = []


def base_image():
    """The lab's base image on this host (built when the cache has none), looked up once per run; its path."""
    if not _BASE_IMAGE:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="nltest-image-") as play:
            play.write("- hosts: localhost\n  gather_facts: true\n  roles:\n    - nestlab.pci.base_image\n"
                       "  post_tasks:\n    - ansible.builtin.debug:\n        msg: 'IMAGE={{ base_image_path }}'\n")
            play.flush()
            run = ansible_playbook(play.name)
        assert run.returncode == 0, run.stdout[-3000:]
        _BASE_IMAGE.extend(line.split("IMAGE=")[1].strip().strip("'\"") for line in run.stdout.splitlines()
                           if "IMAGE=" in line)
    return _BASE_IMAGE[0]


def l1_inventory(report, path):
    """Write an inventory with the lab's L1 as host 'l1' (from the lab's report) to ``path``; return it."""
    args = report["ssh"].split()
    key, port = args[args.index("-i") + 1], args[args.index("-p") + 1]
    known = [a.split("=", 1)[1] for a in args if a.startswith("UserKnownHostsFile=")][0]
    with open(str(path), "w") as handle:
        json.dump({"l1": {"hosts": {"l1": {
            "ansible_host": "127.0.0.1", "ansible_port": int(port), "ansible_user": "root",
            "ansible_ssh_private_key_file": key, "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % known}}}}, handle)
    return str(path)


# L1 held to this share of one core (libvirt's global CPU quota, microseconds per 100 ms) for the
# slow-machine check. bench/slow_l1.py (bench/results/slow-l1.json) measures what a quota does: at 60 %
# L2's boot takes about 3 times as long as without a hold (a little more than the 2.7 times of the
# slowest machine of this kind seen) and the pace workload about 1.7 times; at 30 % the boot took about
# 5 times as long, and in CI, beside the other tests, 277 to 550 s against 197 s at 60 %.
SLOW_L1_QUOTA = 60000

# the Debian packages of the dpdk validator, as role guest_validate installs them
with open(os.path.join(ROOT, "roles", "guest_validate", "vars", "main.yml")) as _vars:
    DPDK_PACKAGES = yaml.safe_load(_vars)["guest_validate_packages"]["Debian"]["dpdk"]


class SharedLab(object):
    """The run's one default lab (the spec's defaults, L2 included), built in the background (from the
    no-daemon tier on, once the tests that stop libvirtd have run) while the other tests run, and made to go
    through two real failures on the way (LabFaults): its QEMU killed while lab_boot waits for L1's
    first SSH (started again), and its IOMMU reboot never coming back (the lab command fails; the same
    command again repairs it). It boots from the base image without the IOMMU arguments
    (``base_image_iommu: none``: the one IOMMU reboot of the run). Then L1 is held to SLOW_L1_QUOTA of a
    core while its L2 boots (a machine several times slower: the bounds must follow), then Molecule's
    scenarios run on it (run_molecule), then nested_guest's failure paths inside its L1 (run_l2_failures),
    and L1 is reset to the state saved before them (reset_lab). The tests that use the lab wait for all
    of it; they read what was recorded here.
    The base image is made first, so that the lab and the tests that need the image never build it at
    once."""

    # the same for every lab command on this lab (the two of the build and the test's no-op one): the
    # image without the IOMMU arguments; a reboot that hangs is given up at once (no reset) after 20 s
    # of a silent console (the shutdown before it can be silent for 10 s); a boot whose console stops
    # for 30 s is reset
    # Every validator runs, DPDK's testpmd too (10 s on the last node's first NIC). DPDK's packages (231 with
    # their dependencies) are in this lab's image: installed in L1 they took 134 s under TCG on the CI machine
    # (by hand, not stored), on the lane that is the run's critical path; debootstrap installs them natively.
    VARS = {"base_image_iommu": "none", "lab_vm_boot_timeout": 240, "lab_vm_boot_stall": 30,
            "guest_iommu_reboot_resets": 0, "guest_iommu_reboot_stall": 20,
            "base_image_extra_packages": DPDK_PACKAGES,
            "guest_validate_validators": ["virt_host_validate", "hwloc", "numactl", "dpdk"],
            "guest_validate_dpdk": {"seconds": 10}}

    def __init__(self):
        self.name = None
        self.thread = None
        self.deadline = None
        self.result = None
        self.slow = None
        self.molecule = None
        self.failures = None
        self.saved = None
        self.reset = None
        self.faults = None
        self.failed = None
        self.stopped = False
        # helpers.Job: work the lane starts once its lab is built and saved (conftest:
        # @pytest.mark.after_lab(job)), so that it runs on the core the lane's serial steps in L1 (Molecule,
        # the failure paths, the reset) leave idle, instead of after them; at the latest when the lane ends
        self.after = []
        # set when the run stops before the lab's tests (a tier failed, or ^C): the build ends at once
        self.cancel = threading.Event()

    def start(self):
        if self.thread is not None or self.stopped:
            return
        base_image()
        self.name = unique_name("lab")
        self.deadline = time.time() + COMMAND_TIMEOUT
        self.thread = threading.Thread(target=self._build, name="shared-lab", daemon=True)
        self.thread.start()

    def _build(self):
        try:
            self._lane()
        finally:
            for job in self.after if not self.cancel.is_set() else ():
                job.start()

    def _lane(self):
        # under Ansible's own linear strategy: the one build per run that proves the whole chain (the
        # IOMMU reboot included) without Mitogen, which the suite's other playbook runs use
        cmd, env = playbook_command("playbooks/lab.yml", dict(self.VARS, nestlab_lab_name=self.name),
                                    env={"ANSIBLE_STRATEGY": "linear"})
        self.faults = LabFaults(self.name)
        self.failed = run_bounded(cmd, cwd=ROOT, env=env, cancel=self.cancel)
        self.faults.end()
        self.slow = SlowL2(self.name)
        self.result = run_bounded(cmd, cwd=ROOT, env=env, on_line=self.slow.line, cancel=self.cancel)
        self.slow.release()
        if self.result.returncode == 0 and not self.cancel.is_set():
            # the verified lab is saved before Molecule and the failure paths work in it, and reset to
            # that state after them (playbooks/snapshot.yml, reset.yml)
            self.saved = ansible_playbook("playbooks/snapshot.yml", {"nestlab_lab_name": self.name})
            # L1 gets a CPU weight (libvirt's cpu_shares) ten times the default, so that the jobs' guests take
            # only what its serial steps leave idle: CI43's machine was half idle for the 430 s of them. Where
            # it cannot be set the jobs still run, only slower: it decides no test
            subprocess.run(["virsh", "-q", "schedinfo", self.name, "--live", "cpu_shares=10240"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            for job in self.after:
                job.start()
            # one after the other: run at once, the failure paths' L2 and Molecule's took L1's time from
            # each other (a panic not seen within its bound, an SSH connection to L1 lost)
            self.molecule = run_molecule(self.name, cancel=self.cancel)
            if not self.cancel.is_set():
                self.failures = run_l2_failures(self.name)
            if self.saved.returncode == 0 and not self.cancel.is_set():
                self.reset = reset_lab(self.name)

    def wait(self):
        """The lab command's CompletedProcess, once the lab is built and Molecule has run on it."""
        self.start()
        if self.thread is not None:
            self.thread.join(max(1, self.deadline - time.time()) + 1800)
            assert not self.thread.is_alive(), "the shared lab's build did not end"
        assert self.result is not None, "the shared lab was torn down before it was built"
        return self.result

    def stop(self):
        """Tear the lab down (once; a no-op when it was never started); the teardown's CompletedProcess."""
        if self.thread is None:
            return None
        if self.thread.is_alive():
            self.cancel.set()
        self.thread.join()
        self.thread = None
        self.stopped = True  # once per run: a test that asks for the lab after this gets its first result
        return ansible_playbook("playbooks/teardown.yml", {"nestlab_lab_name": self.name})


class LabFaults(object):
    """Two real failures of lab ``name``'s L1 during its first lab command, from a thread that reads its
    console log: (1) once the first boot prints the kernel's banner (lab_boot is waiting for SSH), its
    QEMU is killed (SIGKILL, as the segfaults of QEMU 7.2 under TCG end it); (2) once L1 reboots for the
    IOMMU (the kernel's "reboot: Restarting system") and the next boot prints anything, the domain is
    paused, so that the reboot never comes back. ``done``: what was done, in seconds from the start;
    ``errors``: what could not be done."""

    KERNEL = "Linux version"
    REBOOT = "reboot: Restarting system"

    def __init__(self, name, deadline=1800):
        self.name, self.began, self.done, self.errors = name, time.time(), {}, []
        self.console = "/var/lib/nestlab/labs/%s/console.log" % name
        self.deadline = self.began + deadline
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lab-faults", daemon=True)
        self.thread.start()

    def end(self):
        """The lab command these faults were for has ended: do nothing more (a fault not done by now is
        an error, and never lands on the next command)."""
        self.ended.set()
        self.thread.join()

    def _read(self):
        try:
            with open(self.console, errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def _until(self, what, test):
        while time.time() < self.deadline and not self.ended.is_set():
            if test():
                return True
            time.sleep(0.1)
        self.errors.append("%s did not come while the lab command ran" % what)
        return False

    def _rebooted(self):
        """True once the console shows a line after the kernel's last reboot lines: the next boot's."""
        after = self._read().split(self.REBOOT, 1)[1].splitlines()[1:]
        return any(line.strip() and "reboot: " not in line for line in after)

    def _run(self):
        import libvirt

        pidfile = "/run/libvirt/qemu/%s.pid" % self.name
        if not self._until("the kernel's banner", lambda: os.path.exists(pidfile) and self.KERNEL in self._read()):
            return
        os.kill(qemu_pid(self.name), signal.SIGKILL)
        self.done["killed"] = time.time() - self.began
        # the console of the boot that follows (started again by lab_boot) up to the reboot, and past it
        if not self._until("the IOMMU reboot", lambda: self.REBOOT in self._read()):
            return
        if not self._until("the boot after the reboot", self._rebooted):
            return
        conn = libvirt.open("qemu:///system")
        try:
            conn.lookupByName(self.name).suspend()
            self.done["paused"] = time.time() - self.began
        finally:
            conn.close()


class SlowL2(object):
    """Fed the lab command's output line by line: holds L1 to SLOW_L1_QUOTA of a core (libvirt's global
    CPU quota, set live) from the banner of nested_guest's L2 boot to the next task's, so that L2 boots
    inside an L1 that runs TCG several times slower, as on a slower machine of this kind. ``held``:
    (seconds from the start of the lab command when the hold began, when it ended)."""

    BOOT_TASK = "TASK [nestlab.pci.nested_guest : Boot L2 and check from inside"

    def __init__(self, name):
        self.name, self.began, self.held, self.holding, self.errors = name, time.time(), None, False, []

    def _quota(self, quota):
        run = subprocess.run(["virsh", "-q", "schedinfo", self.name, "--live", "global_period=100000",
                              "global_quota=%d" % quota], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, check=False)
        if run.returncode != 0:
            self.errors.append("global_quota=%d: %s" % (quota, run.stdout.strip()))

    def line(self, text):
        if not self.holding and self.held is None and text.startswith(self.BOOT_TASK):
            self._quota(SLOW_L1_QUOTA)
            self.holding, self.held = True, (time.time() - self.began, None)
        elif self.holding and text.startswith("TASK ["):
            self.release()

    def release(self):
        if self.holding:
            self._quota(-1)
            self.holding, self.held = False, (self.held[0], time.time() - self.began)


def run_l2_failures(lab):
    """nested_guest's failure paths inside lab ``lab``'s L1 (tests/boot/files/l2-failures.yml): each failure
    caught and recorded, then L1's state read. (the playbook run, what it recorded or None)."""
    report = lab_report(lab)
    work = tempfile.mkdtemp(prefix="nltest-l2-failures-")
    try:
        busy, results = report["l2"]["device"], os.path.join(work, "failures.json")
        run = ansible_playbook("tests/boot/files/l2-failures.yml", {
            "busy_device": busy["name"], "busy_address": busy["address"], "free_device": "pci_0000_b5_00_0",
            "free_address": "0000:b5:00.0", "results_file": results, "wrong_plan": misplaced_nic(report["plan"])},
            env={"ANSIBLE_INVENTORY": l1_inventory(report, os.path.join(work, "l1.json"))})
        found = None
        if os.path.exists(results):
            with open(results) as handle:
                found = json.load(handle)
        return run, found
    finally:
        shutil.rmtree(work, ignore_errors=True)


def misplaced_nic(plan):
    """``plan`` with the last node's last NIC claimed by the first node (for the validators to refuse)."""
    wrong = json.loads(json.dumps(plan))
    wrong[0]["nics"].append(wrong[-1]["nics"].pop())
    return wrong


def lab_report(lab):
    """The report lab.yml wrote for lab ``lab`` on this hypervisor."""
    with open("/var/lib/nestlab/reports/%s.json" % lab) as handle:
        return json.load(handle)


def l1_shell(report, command):
    """``command`` in the lab's L1, through the SSH command of its report, with the recorded host key
    checked; the CompletedProcess (stdout and stderr together)."""
    ssh = report["ssh"].split() + ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", command]
    return subprocess.run(ssh, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120, check=False)


def reset_lab(lab):
    """Lab ``lab`` back to its saved state 'verified' (playbooks/reset.yml): a file written in L1 after the
    save, L1's boot id and clock, before and after. A dict: run (the CompletedProcess), seconds, before,
    after (each: marker, boot_id, clock - L1's clock minus the hypervisor's, in seconds)."""
    report = lab_report(lab)
    probe = ("cat /proc/sys/kernel/random/boot_id; test -e /root/nltest-after-save && echo marker || echo no-marker;"
             " date +%s")

    def look():
        out = l1_shell(report, probe).stdout.split()
        return {"boot_id": out[0], "marker": out[1] == "marker", "clock": int(out[2]) - int(time.time())} \
            if len(out) == 3 else {"raw": out}

    l1_shell(report, "touch /root/nltest-after-save")
    before = look()
    started = time.time()
    run = ansible_playbook("playbooks/reset.yml", {"nestlab_lab_name": lab})
    seconds = time.time() - started
    return {"run": run, "seconds": seconds, "before": before, "after": look() if run.returncode == 0 else None}


def run_molecule(lab, cancel=None):
    """`molecule test --all` on lab ``lab`` (NESTLAB_MOLECULE_LAB: the default scenario adopts it), from a
    clean Molecule state; its CompletedProcess."""
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1",
               NO_COLOR="1", ANSIBLE_FORCE_COLOR="0", NESTLAB_MOLECULE_LAB=lab)
    # no state from an earlier run: the default scenario must really adopt the lab
    subprocess.run([os.path.join(bindir, "molecule"), "reset"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return run_bounded([os.path.join(bindir, "molecule"), "test", "--all"], timeout=1500, cwd=ROOT, env=env,
                       cancel=cancel)


SHARED_LAB = SharedLab()


def on_each_boot(name, boots, action, deadline=600):
    """In the background: call ``action(dom)`` as soon as each of the next ``boots`` boots of domain ``name``
    (when it exists) starts running, until the deadline or until the thread's ``done`` event is set. The
    thread; join it."""
    import libvirt

    done = threading.Event()

    def watch():
        conn = libvirt.open("qemu:///system")
        started = time.time()
        seen = set()
        try:
            while len(seen) < boots and not done.is_set() and time.time() - started < deadline:
                try:
                    dom = conn.lookupByName(name)
                    if dom.isActive() and dom.ID() not in seen:
                        action(dom)
                        seen.add(dom.ID())
                except libvirt.libvirtError:
                    pass  # not defined yet, or gone between the look-up and the action
                time.sleep(0.05)
        finally:
            conn.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.done = done
    thread.start()
    return thread


def pause_each_boot(name, boots, deadline=600):
    """In the background: pause domain ``name`` as soon as each of its next ``boots`` boots starts running,
    so that its console stops as that of a guest that hangs early under TCG does (on_each_boot)."""
    return on_each_boot(name, boots, lambda dom: dom.suspend(), deadline)


def unique_name(tag):
    return "%s%s-%s" % (PREFIX, tag, uuid.uuid4().hex[:6])


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def systemd_is_pid1():
    with open("/proc/1/comm") as handle:
        return handle.read().strip() == "systemd"


def qemu_pid(name):
    """The pid of the QEMU process of running domain ``name`` on qemu:///system."""
    with open("/run/libvirt/qemu/%s.pid" % name) as handle:
        return int(handle.read().strip())


# pgrep and pkill options for this host's own daemons: not those of a root in namespaces of its own
# (the second hypervisor of the SR-IOV lab test runs a libvirtd of its own)
OURS = ["--ns", str(os.getpid()), "--nslist", "pid,mnt"]


def ensure_libvirtd(uri="qemu:///system"):
    """Connect to libvirtd, starting virtlogd and libvirtd first when they do not answer."""
    import libvirt

    libvirt.registerErrorHandler(lambda *args: None, None)  # errors are raised; do not also print them

    def try_open():
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            return None

    conn = try_open()
    if conn is not None:
        return conn
    if systemd_is_pid1():
        subprocess.run(["systemctl", "start", "libvirtd"], check=False)
    else:
        def running(daemon):
            return subprocess.run(["pgrep"] + OURS + ["-x", daemon], stdout=subprocess.DEVNULL, check=False).returncode == 0

        # a daemon that is still shutting down would make a new one exit at once: let it go first
        for dummy in range(50):
            if not running("libvirtd"):
                break
            time.sleep(0.2)
        for daemon in ("virtlogd", "libvirtd"):
            if not running(daemon):
                subprocess.run([daemon, "-d"], check=True)
    for dummy in range(100):
        conn = try_open()
        if conn is not None:
            return conn
        time.sleep(0.1)
    raise RuntimeError("libvirtd did not answer on %s" % uri)


def stop_libvirtd(signal_name="TERM"):
    """Stop libvirtd (SIGTERM, or SIGKILL with ``signal_name='KILL'``) and wait until it is gone; running
    guests keep running, as with any libvirtd restart. ``ensure_libvirtd`` starts it again."""
    if systemd_is_pid1() and signal_name == "TERM":
        subprocess.run(["systemctl", "stop", "libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket",
                        "libvirtd-admin.socket"], check=False)
    else:
        subprocess.run(["pkill", "-" + signal_name] + OURS + ["-x", "libvirtd"], check=False)
    for dummy in range(100):
        if subprocess.run(["pgrep"] + OURS + ["-x", "libvirtd"], stdout=subprocess.DEVNULL, check=False).returncode != 0:
            return
        time.sleep(0.1)
    raise RuntimeError("libvirtd did not stop after SIG%s" % signal_name)


def remove_domain(conn, name):
    import libvirt
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    except libvirt.libvirtError:
        pass


# what guest_iommu says on a guest that boots with its arguments already (the collection's base image)
IOMMU_NOTHING_TO_DO = "boots with intel_iommu=on iommu=pt already: nothing to change, no reboot"


def said(output, text):
    """True when Ansible's ``output`` has ``text``, whatever line breaks the YAML result format put in it."""
    return " ".join(text.split()) in " ".join(output.split())


def recap(output, host="localhost"):
    """{'ok': N, 'changed': N, 'failed': N, ...} of ``host`` from the play recap."""
    line = [l for l in output.splitlines() if l.startswith(host + " ") and "ok=" in l][-1]
    return dict((k, int(v)) for k, v in (part.split("=") for part in line.split()[2:]))


class FakeSSH(object):
    """Greets like sshd on a free port of 127.0.0.1 while ``up`` is true (a stand-in for a guest that reboots)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.up = True
        self.stop = False
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                peer, dummy = self.sock.accept()
            except socket.timeout:
                continue
            if self.up:
                peer.sendall(b"SSH-2.0-nestlab-test\r\n")
            peer.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def listening_sockets(pid):
    """(address, port) of every TCP socket ``pid`` listens on, from /proc/net/tcp{,6} and its fds."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                raw, port = fields[1].split(":")
                packed = bytes.fromhex(raw)
                if family == socket.AF_INET:
                    address = socket.inet_ntop(family, packed[::-1])
                else:
                    address = socket.inet_ntop(family, b"".join(packed[i:i + 4][::-1] for i in range(0, 16, 4)))
                found.append((address, int(port, 16)))
    return found


def forked_module(name, args, prepare=None):
    """Run plugins/modules/<name>.py in a forked child of this process, as Ansible runs it (arguments
    from a file, JSON on stdout), without a new interpreter: for tests that run modules hundreds of
    times, or that change the module's world first (``prepare()`` runs in the child)."""
    import runpy

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False, _ansible_diff=False)}, handle)
        path = handle.name
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            # the module prints its JSON to sys.stdout, which pytest has replaced: point it at the pipe
            sys.stdout = os.fdopen(write_end, "w")
            if prepare is not None:
                prepare()
            sys.argv = [name, path]
            runpy.run_module("ansible_collections.nestlab.pci.plugins.modules." + name, run_name="__main__",
                             alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    os.unlink(path)
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    try:
        return json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        return {"failed": True, "msg": "module %s printed no JSON: %s" % (name, text[-500:])}
