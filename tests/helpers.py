"""Shared test helpers: run a module as Ansible does (a whole process), reach a real libvirtd."""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "collections")
PREFIX = "nltest-"


def module_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = COLLECTIONS + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_module(name, args, check=False, diff=False):
    """Run plugins/modules/<name>.py the way AnsiballZ does, with an args file; return its JSON."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
        path = handle.name
    try:
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.nestlab.pci.plugins.modules." + name, path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=module_env(),
                              universal_newlines=True, cwd=ROOT, check=False)
    finally:
        os.unlink(path)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("module %s printed no JSON (rc %s):\n%s\n%s"
                             % (name, proc.returncode, proc.stdout, proc.stderr))


# No single command of the suite may take longer than this: a guest that wedges under TCG must
# fail its test with the output so far, not stall the whole run.
COMMAND_TIMEOUT = int(os.environ.get("NESTLAB_TEST_COMMAND_TIMEOUT", "1800"))


def run_bounded(cmd, timeout=None, **kwargs):
    """subprocess.run with stdout+stderr captured as text, in its own process group, killed as a group
    after ``timeout`` s; then returncode is -9 and stdout ends with a line that says so."""
    timeout = timeout or COMMAND_TIMEOUT
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            start_new_session=True, **kwargs)
    try:
        out, dummy = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, dummy = proc.communicate()
        out += "\nnestlab tests: %s killed after %d s\n" % (" ".join(cmd[:2]), timeout)
        return subprocess.CompletedProcess(cmd, -9, out, None)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def ansible_playbook(playbook, extra_vars=None, check=False, env=None, timeout=None):
    """Run ansible-playbook from the venv with the checkout's ansible.cfg; return the CompletedProcess
    (bounded: see run_bounded)."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0")
    full_env.update(env or {})
    return run_bounded(cmd, timeout, cwd=ROOT, env=full_env)


def unique_name(tag):
    return "%s%s-%s" % (PREFIX, tag, uuid.uuid4().hex[:6])


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
    with open("/proc/1/comm") as handle:
        systemd = handle.read().strip() == "systemd"
    if systemd:
        subprocess.run(["systemctl", "start", "libvirtd"], check=False)
    else:
        def running(daemon):
            return subprocess.run(["pgrep", "-x", daemon], stdout=subprocess.DEVNULL, check=False).returncode == 0

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
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError:
        pass


def recap(output, host="localhost"):
    """{'ok': N, 'changed': N, 'failed': N, ...} of ``host`` from the play recap."""
    line = [l for l in output.splitlines() if l.startswith(host + " ") and "ok=" in l][-1]
    return dict((k, int(v)) for k, v in (part.split("=") for part in line.split()[2:]))
