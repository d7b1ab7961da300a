"""Time the lab command on this machine: from nothing (no cached image), with the image cached,
and a no-op re-run; to a verified L1 (nestlab_guest_roles=false) and through the whole chain to
a verified L2. Whole ansible-playbook processes, wall clock. Destroys the lab it measures.

    .venv/bin/python bench/lab_command.py [--cold] [--name benchlab] [--out FILE]
"""

import argparse
import os
import subprocess
import sys
import time

from _report import emit, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def playbook(name, extra, *more):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
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
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = []
    l1_only = "nestlab_guest_roles=false"
    if args.cold:
        teardown(args.name, images=True)
        rows.append(("L1, from nothing (image built)",) + playbook("playbooks/lab.yml", args.name, l1_only))
    stages = args.stages.split(",")
    teardown(args.name)
    if "l1" in stages:
        rows.append(("L1, image cached",) + playbook("playbooks/lab.yml", args.name, l1_only))
        rows.append(("L1, no-op re-run",) + playbook("playbooks/lab.yml", args.name, l1_only))
        teardown(args.name)
    if "chain" in stages:
        rows.append(("whole chain to a verified L2, image cached",) + playbook("playbooks/lab.yml", args.name))
        rows.append(("whole chain, no-op re-run",) + playbook("playbooks/lab.yml", args.name))
        rows.append(("whole chain, re-run that boots L2 again",)
                    + playbook("playbooks/lab.yml", args.name, "nested_guest_reverify=true"))
        teardown(args.name)
    lines = ["## Lab command: default lab to a verified virtual host (L1) and to a verified L2", "",
             "Command: `.venv/bin/python bench/lab_command.py%s --stages %s`; one run each, wall clock, whole"
             " `ansible-playbook playbooks/lab.yml` processes; packages already installed. Machine: %s, TCG."
             % (" --cold" if args.cold else "", args.stages, machine()), "",
             "| run | seconds | changed tasks |", "|---|---|---|"]
    lines += ["| %s | %.0f | %d |" % row for row in rows]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
