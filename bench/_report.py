"""Shared bits of the benchmark scripts: each saves its raw results as JSON under bench/results/, and
docs/benchmarks.md is rendered from those files only (bench/render.py)."""

import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
NEWER_HV = os.path.join(ROOT, "tests", "boot", "files", "newer-hv.sh")


def cpu_model():
    with open("/proc/cpuinfo") as handle:
        return [l.split(":", 1)[1].strip() for l in handle if l.startswith("model name")][0]


def machine():
    return "%d cores (%s)" % (os.cpu_count(), cpu_model())


def add_write_option(parser):
    parser.add_argument("--write", action="store_true",
                        help="also render docs/benchmarks.md again from bench/results/ (bench/render.py)")


def save(section, data, write=False):
    """Save ``data`` (raw figures) as bench/results/<section>.json with what made them (script, command
    line, date, machine, platform); print the section as the doc shows it; with ``write``, render the
    doc again. Returns the saved record."""
    record = dict(data, section=section, script="bench/" + os.path.basename(sys.argv[0]),
                  command=" ".join([".venv/bin/python", "bench/" + os.path.basename(sys.argv[0])]
                                   + [shlex.quote(a) for a in sys.argv[1:] if a != "--write"]),
                  date=time.strftime("%Y-%m-%d"), machine=machine(), platform=platform.platform())
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, section + ".json")
    with open(path + ".tmp", "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.rename(path + ".tmp", path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import render

    sys.stdout.write("\n".join(render.section_lines(section)) + "\n")
    if write:
        render.write_doc()
    return record


def load(section):
    """The stored record of ``section``, or None."""
    path = os.path.join(RESULTS, section + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def lab_ssh(lab):
    """A lab's report (/var/lib/nestlab/reports/<lab>.json) and its SSH command with the recorded host key
    checked, as a list to which a remote command is appended."""
    with open("/var/lib/nestlab/reports/%s.json" % lab) as handle:
        report = json.load(handle)
    return report, shlex.split(report["ssh"]) + ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]


def testpmd_in_l1(ssh, device, cores, prefix, seconds=25):
    """DPDK's testpmd on ``device`` inside a lab's L1 (over ``ssh``, a list from lab_ssh): bound to vfio-pci,
    run with --tx-first for ``seconds``, then given back to e1000e. (testpmd's output, the driver after)."""
    import subprocess

    sys.path.insert(0, os.path.join(ROOT, "collections"))
    from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import validators

    def run(command, timeout=300):
        return subprocess.run(ssh + [command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, universal_newlines=True, timeout=timeout, check=False)

    bind = run("modprobe vfio-pci && dpdk-devbind.py -b vfio-pci %s" % device)
    testpmd = "timeout -s INT %d dpdk-testpmd %s" % (seconds, " ".join(validators.testpmd_args(cores, device, prefix)))
    out = run(testpmd, timeout=seconds + 120).stdout if bind.returncode == 0 else bind.stdout
    run("dpdk-devbind.py -b e1000e %s" % device)
    return out, run("basename $(readlink /sys/bus/pci/devices/%s/driver)" % device).stdout.strip()


def newer_hv(directory, suite):
    """The root of tests/boot/files/newer-hv.sh in ``directory`` (built once for ``suite``) with its libvirtd
    running: (the running process, kill it to stop them; virsh inside; `virsh version`'s text)."""
    subprocess.run(["sh", NEWER_HV, "build", directory, suite], stdin=subprocess.DEVNULL, check=True)
    hv = subprocess.Popen(["sh", NEWER_HV, "run", directory], stdin=subprocess.DEVNULL)
    virsh = ["sh", NEWER_HV, "exec", directory, "virsh"]
    for dummy in range(30):
        version = subprocess.run(virsh + ["version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, universal_newlines=True, check=False)
        if version.returncode == 0:
            return hv, virsh, version.stdout
        time.sleep(1)
    hv.kill()
    hv.wait()
    raise RuntimeError("the libvirtd of %s did not answer in 30 s: %s" % (directory, version.stdout))
