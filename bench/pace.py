"""The pace calibration (plugins/module_utils/_nestlab/pace.py) on this machine and inside a running
lab's virtual host (L1): the workload's seconds, best of three, repeated. The figure inside the
default lab's L1 is the reference that nested_guest's time bounds were set with
(nested_guest_pace_reference); the result file records where it comes from.

    .venv/bin/python bench/pace.py --lab nestlab [--repeat 5] [--write]    # saves bench/results/pace.json
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

from _report import add_write_option, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACE = os.path.join(ROOT, "plugins", "module_utils", "_nestlab", "pace.py")


def run_here(python, source, prefix=()):
    """The workload's seconds through ``python`` (locally, or after the SSH command ``prefix``)."""
    program = source + "\nprint(measure())\n"
    proc = subprocess.run(list(prefix) + [python, "-"], input=program, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stdout)
    return float(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", default="nestlab", help="a running lab whose report names its SSH command")
    parser.add_argument("--repeat", type=int, default=5)
    add_write_option(parser)
    args = parser.parse_args()
    with open(PACE) as handle:
        source = handle.read()
    with open("/var/lib/nestlab/reports/%s.json" % args.lab) as handle:
        report = json.load(handle)
    ssh = shlex.split(report["ssh"]) + ["-o", "BatchMode=yes"]
    here = [run_here(sys.executable, source) for dummy in range(args.repeat)]
    l1 = [run_here("python3", source, ssh) for dummy in range(args.repeat)]
    save("pace", {"l1_accel": report.get("accel", {}).get("accel"), "hypervisor_seconds": here, "l1_seconds": l1,
                  "hypervisor_median": round(statistics.median(here), 3),
                  "l1_median": round(statistics.median(l1), 3)}, args.write)


if __name__ == "__main__":
    main()
