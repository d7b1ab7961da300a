"""Whole labs on Debian trixie-backports' libvirt and QEMU: playbooks/lab.yml run inside the Debian root of
tests/boot/files/newer-hv.sh (that libvirt and QEMU, trixie's ansible-core, in namespaces of their own beside the
host's libvirtd; a local connection, so no SSH into the root), with the shared CI lab's validators
(virt-host-validate, hwloc, numactl and DPDK's testpmd) and its nested guest. Then the same command again, which
must change nothing, and playbooks/teardown.yml. The lab's disks, its report and the base image are under
/var/lib/nestlab, which the root shares with the host (the image the host's CI lab uses is reused).

    .venv/bin/python bench/newer_labs.py [--lab amd|sriov] [--dir /var/cache/nestlab/tests/newer-hv] [--write]

--lab amd (the default): the default lab with iommu.model auto, which chooses AMD's vIOMMU there; saves
bench/results/amd-lab.json.
--lab sriov: the SR-IOV lab of tests/boot/test_sriov_lab.py (two nodes, an igb with two VFs on each), so that
DPDK's testpmd runs on a virtual function (the validator's default there: the last node's first VF) under QEMU
11's igb; saves bench/results/sriov-lab-newer.json.

Each result has the versions, each run's time and PLAY RECAP, and from the lab's report the vIOMMU and why, the
validators' verdicts (virt-host-validate's IOMMU lines as it printed them), what L1 boots with, DPDK's facts and
what L2 saw.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import yaml

from _report import NEWER_HV, add_write_option, newer_hv, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "roles", "guest_validate", "vars", "main.yml")) as _vars:
    DPDK_PACKAGES = yaml.safe_load(_vars)["guest_validate_packages"]["Debian"]["dpdk"]
# as the shared CI lab (tests/helpers.py SharedLab.VARS): an image with DPDK's packages, every validator
COMMON = {"base_image_iommu": "none", "base_image_extra_packages": DPDK_PACKAGES,
          "guest_validate_validators": ["virt_host_validate", "hwloc", "numactl", "dpdk"],
          "guest_validate_dpdk": {"seconds": 10}}
# --lab: (lab name, spec, result section)
LABS = {
    "amd": ("nlbench-amd", {"iommu": {"model": "auto"}}, "amd-lab"),
    "sriov": ("nlbench-sriov", {"numa": [
        {"cpus": 2, "memory": "1536MiB", "nics": 1, "nic_model": "igb", "vfs": 2, "hugepages": 64},
        {"cpus": 2, "memory": "1536MiB", "nics": 1, "nic_model": "igb", "vfs": 2, "hugepages": 64}]},
        "sriov-lab-newer"),
}
CONFIG = """[defaults]
collections_path = {stage}/collections
interpreter_python = /usr/bin/python3
stdout_callback = default
callback_result_format = yaml
retry_files_enabled = false

[connection]
pipelining = True
"""
INVENTORY = {"all": {"children": {"hypervisors": {"hosts": {"localhost": {
    "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}}}}}}


def sh(args, check=True, timeout=None):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          stdin=subprocess.DEVNULL, check=check, timeout=timeout)


def stage_collection(stage, variables):
    """The collection's tracked files (git ls-files) under STAGE/collections/ansible_collections/nestlab/pci."""
    dest = os.path.join(stage, "collections", "ansible_collections", "nestlab", "pci")
    for path in sh(["git", "-C", ROOT, "ls-files"]).stdout.split("\n"):
        if path and path.split("/")[0] in ("galaxy.yml", "meta", "plugins", "roles", "playbooks"):
            os.makedirs(os.path.dirname(os.path.join(dest, path)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, path), os.path.join(dest, path))
    with open(os.path.join(stage, "ansible.cfg"), "w") as handle:
        handle.write(CONFIG.format(stage=stage))
    with open(os.path.join(stage, "hosts.yml"), "w") as handle:
        yaml.safe_dump(INVENTORY, handle)
    with open(os.path.join(stage, "vars.json"), "w") as handle:
        json.dump(variables, handle)
    return dest


def playbook(args, stage, collection, name, log, extra=None):
    """ansible-playbook inside the root, with ``extra`` (default: the lab's variables) as its extra variables:
    (seconds, return code, {host: PLAY RECAP counts})."""
    started = time.time()
    proc = sh(["sh", NEWER_HV, "exec", args.dir, "env", "HOME=/root", "ANSIBLE_CONFIG=%s/ansible.cfg" % stage,
               "ANSIBLE_FORCE_COLOR=0", "ansible-playbook", "-i", os.path.join(stage, "hosts.yml"),
               os.path.join(collection, "playbooks", name), "-e", extra or "@%s/vars.json" % stage],
              check=False, timeout=3600)
    seconds = round(time.time() - started, 1)
    with open(log, "w") as handle:
        handle.write(proc.stdout)
    recap = dict((m.group(1), dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))))
                 for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", proc.stdout, re.M))
    return seconds, proc.returncode, recap


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/var/cache/nestlab/tests/newer-hv")
    parser.add_argument("--suite", default="trixie")
    parser.add_argument("--lab", choices=sorted(LABS), default="amd")
    add_write_option(parser)
    args = parser.parse_args()
    lab, spec, section = LABS[args.lab]
    variables = dict(COMMON, nestlab_lab_name=lab, nestlab_lab=spec)
    hv, virsh, version = newer_hv(args.dir, args.suite)
    stage = "/var/lib/nestlab/bench-%s-lab" % args.lab
    shutil.rmtree(stage, ignore_errors=True)
    collection = stage_collection(stage, variables)
    runs = []
    try:
        ansible = sh(["sh", NEWER_HV, "exec", args.dir, "ansible", "--version"]).stdout.split("\n")[0]
        for run in ("first", "again"):
            seconds, rc, recap = playbook(args, stage, collection, "lab.yml", os.path.join(stage, run + ".log"))
            runs.append({"run": run, "seconds": seconds, "returncode": rc, "recap": recap})
            print(runs[-1], flush=True)
            if rc:
                print(open(os.path.join(stage, run + ".log")).read()[-6000:])
                break
        with open(os.path.join(stage, "first.log")) as handle:
            first_log = handle.read()
        with open("/var/lib/nestlab/reports/%s.json" % lab) as handle:
            report = json.load(handle)
    finally:
        down = playbook(args, stage, collection, "teardown.yml", os.path.join(stage, "teardown.log"),
                        extra='{"nestlab_lab_name": "%s"}' % lab)
        print("teardown", down, flush=True)
        hv.kill()
        hv.wait()
    verdicts = (report.get("validators") or {}).get("verdicts") or {}
    vhv = verdicts.get("virt_host_validate") or {}
    data = {
        "versions": {"qemu": "QEMU " + version.split("Running hypervisor: QEMU ")[1].split()[0],
                     "libvirt": "libvirt " + version.split("Using library: libvirt ")[1].split()[0],
                     "ansible": ansible.strip()},
        "lab": lab, "spec": spec, "runs": runs, "teardown_returncode": down[1],
        "accel": report.get("accel"), "iommu": report.get("iommu"),
        "l1_iommu": (report.get("l1") or {}).get("iommu"),
        # guest_iommu says so when L1 already boots with the IOMMU arguments; otherwise it rebooted L1 once
        "iommu_rebooted_in_first_run": "nothing to change, no reboot" not in first_log,
        "sriov": dict((pf, {"up": v.get("up"), "vfs": ["%s %s" % (vf["address"], vf["driver"]) for vf in v["vfs"]]})
                      for pf, v in sorted(((report.get("l1") or {}).get("sriov") or {}).items())),
        "validators": dict((name, {"passed": v.get("passed"), "problems": v.get("problems"),
                                   "accepted": v.get("accepted")}) for name, v in sorted(verdicts.items())),
        "summary": (report.get("validators") or {}).get("summary"),
        "virt_host_validate_iommu": [l.strip() for l in (vhv.get("output") or "").splitlines() if "IOMMU" in l],
        "dpdk": (verdicts.get("dpdk") or {}).get("facts"),
        "l2": report.get("l2"),
    }
    save(section, data, args.write)
    ok = len(runs) == 2 and all(r["returncode"] == 0 for r in runs) and \
        not any(c.get("changed") for c in runs[1]["recap"].values())
    if ok:
        shutil.rmtree(stage, ignore_errors=True)
    else:
        print("not idempotent or failed: the logs stay in %s" % stage)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
