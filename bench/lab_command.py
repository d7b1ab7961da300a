"""Time the lab command on this machine: from nothing (no cached image), with the image cached,
and a no-op re-run; to a verified L1 (nestlab_guest_roles=false) and through the whole chain to
a verified L2, then saving that lab and resetting it to the saved state (playbooks/snapshot.yml,
reset.yml). Whole ansible-playbook processes, wall clock. Destroys the lab it measures.

Stage ``ratios`` measures, in one run, the boots the other figures are judged against: B, L1's boot
(lab_boot's task in the new lab's command: domain start to the guest's SSH banner, from Ansible's
junit callback) and F = B + L2's boot (boot_report's start to power-off, from the lab's report), next to
a new lab (image cached), its no-op re-run under Mitogen and under linear, a save and a reset.

    .venv/bin/python bench/lab_command.py [--cold] [--stages l1,chain,ratios] [--strategy linear|mitogen]
                                          [--name benchlab] [--repeat N] [--write]

Saves bench/results/lab-command-l1.json, lab-command-chain.json, lab-command-chain-mitogen.json or
lab-command-ratios.json.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from xml.etree import ElementTree

from _report import add_write_option, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


# the Ansible strategy of every run (--strategy): linear, or Mitogen's mitogen_linear as scripts/lab.sh uses it
STRATEGY = {}


def strategy_env(name):
    if name == "linear":
        return {"ANSIBLE_STRATEGY": "linear"}
    import ansible_mitogen

    return {"ANSIBLE_STRATEGY": "mitogen_linear",
            "ANSIBLE_STRATEGY_PLUGINS": os.path.join(os.path.dirname(ansible_mitogen.__file__), "plugins", "strategy")}


def playbook(name, extra, *more, **env_more):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **dict(STRATEGY, **env_more))
    cmd = [os.path.join(BIN, "ansible-playbook"), name, "-e", "nestlab_lab_name=%s" % extra]
    for item in more:
        cmd += ["-e", item]
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=ROOT,
                          env=env, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:])
    changed = sum(int(l.split("changed=")[1].split()[0]) for l in proc.stdout.splitlines() if "changed=" in l
                  and "ok=" in l)
    return seconds, changed


def teardown(name, images=False):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    subprocess.run([os.path.join(BIN, "ansible-playbook"), "playbooks/teardown.yml", "-e", "nestlab_lab_name=%s" % name,
                    "-e", "nestlab_teardown_images=%s" % ("true" if images else "false")],
                   stdout=subprocess.DEVNULL, cwd=ROOT, env=env, check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="benchlab")
    parser.add_argument("--cold", action="store_true", help="also measure a run that builds the image")
    parser.add_argument("--stages", default="l1,chain", help="l1, chain or both (comma-separated)")
    parser.add_argument("--repeat", type=int, default=1, help="run each stage this many times (median, min and max)")
    parser.add_argument("--strategy", choices=["linear", "mitogen"], default="linear",
                        help="Ansible's linear (default) or Mitogen's mitogen_linear, as scripts/lab.sh uses it")
    add_write_option(parser)
    args = parser.parse_args()
    STRATEGY.update(strategy_env(args.strategy))
    l1_only = "nestlab_guest_roles=false"
    stages = args.stages.split(",")
    if "l1" in stages:
        runs = []
        for dummy in range(args.repeat):
            rows = []
            if args.cold:
                teardown(args.name, images=True)
                rows.append(playbook("playbooks/lab.yml", args.name, l1_only))
            teardown(args.name)
            rows.append(playbook("playbooks/lab.yml", args.name, l1_only))
            rows.append(playbook("playbooks/lab.yml", args.name, l1_only))
            teardown(args.name)
            runs.append(rows)
        names = (["L1, from nothing (image built)"] if args.cold else []) + ["L1, image cached", "L1, no-op re-run"]
        section(args, "lab-command-l1", "--stages l1" + (" --cold" if args.cold else ""), names, runs)
    if "chain" in stages:
        runs = []
        for dummy in range(args.repeat):
            teardown(args.name)
            runs.append([playbook("playbooks/lab.yml", args.name), playbook("playbooks/lab.yml", args.name),
                         playbook("playbooks/snapshot.yml", args.name), playbook("playbooks/reset.yml", args.name),
                         playbook("playbooks/lab.yml", args.name, "nested_guest_reverify=true")])
            teardown(args.name)
            # the same new lab from the image without the IOMMU arguments: one IOMMU reboot of L1
            runs[-1].append(playbook("playbooks/lab.yml", args.name, "base_image_iommu=none"))
            teardown(args.name)
        names = ["whole chain to a verified L2, image cached (new lab from the default image: no IOMMU reboot)",
                 "whole chain, no-op re-run", "save the verified lab (`playbooks/snapshot.yml`)",
                 "reset to it (`playbooks/reset.yml`: L1 back without a boot, clock set, topology checked from inside)",
                 "whole chain, re-run that boots L2 again (`nested_guest_reverify=true`)",
                 "whole chain to a verified L2, new lab from the image without the IOMMU arguments"
                 " (`base_image_iommu=none`: one IOMMU reboot of L1)"]
        if args.strategy == "linear":
            section(args, "lab-command-chain", "--stages chain", names, runs)
        else:
            section(args, "lab-command-chain-mitogen", "--stages chain --strategy mitogen", names, runs)
    if "ratios" in stages:
        save("lab-command-ratios", {"strategy": STRATEGY["ANSIBLE_STRATEGY"],
                                    "runs": [ratios_run(args.name) for dummy in range(args.repeat)]}, args.write)


# lab_vm's task that starts L1 and waits for its SSH banner (lab_boot): its time is B
L1_BOOT_TASK = "nestlab.pci.lab_vm : Start the lab (if it is not running) and wait for the guest's SSH banner"


def task_seconds(junit_dir, task):
    """Seconds of ``task`` in the junit files Ansible's junit callback wrote to ``junit_dir``."""
    found = []
    for path in glob.glob(os.path.join(junit_dir, "*.xml")):
        for case in ElementTree.parse(path).iter("testcase"):
            if case.get("name", "").split("] ", 1)[-1].split(": ", 1)[-1] == task:
                found.append(float(case.get("time")))
    if len(found) != 1:
        raise SystemExit("%s: %d results in the junit output, not one" % (task, len(found)))
    return found[0]


def ratios_run(name):
    """One run of the ratios stage: a new lab (image cached), its no-ops, a save and a reset; B and L2's boot."""
    teardown(name)
    junit = tempfile.mkdtemp(prefix="nlbench-junit-")
    try:
        new = playbook("playbooks/lab.yml", name, ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit",
                       JUNIT_OUTPUT_DIR=junit, JUNIT_HIDE_TASK_ARGUMENTS="true")
        l1_boot = task_seconds(junit, L1_BOOT_TASK)
    finally:
        shutil.rmtree(junit, ignore_errors=True)
    with open("/var/lib/nestlab/reports/%s.json" % name) as handle:
        boots = json.load(handle)["l2"]["boots"]
    row = {"new": new, "noop_mitogen": playbook("playbooks/lab.yml", name, **strategy_env("mitogen")),
           "noop_linear": playbook("playbooks/lab.yml", name, **strategy_env("linear")),
           "save": playbook("playbooks/snapshot.yml", name), "reset": playbook("playbooks/reset.yml", name)}
    teardown(name)
    row = {key: {"seconds": round(value[0], 1), "changed": value[1]} for key, value in row.items()}
    row.update(l1_boot_seconds=round(l1_boot, 1), l2_boot_seconds=boots[-1]["seconds"], l2_boots=len(boots))
    return row


def section(args, name, options, names, runs):
    """Save each run's seconds and changed tasks, per kind of run."""
    save(name, {"strategy": STRATEGY["ANSIBLE_STRATEGY"], "labels": names,
                "runs": [[{"seconds": round(seconds, 1), "changed": changed} for seconds, changed in run] for run in runs]},
         args.write)


if __name__ == "__main__":
    main()
