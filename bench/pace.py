"""The pace calibration (plugins/module_utils/_nestlab/pace.py) on this machine and inside a running
lab's virtual host (L1): the workload's seconds, best of three, repeated. The figure inside the
default lab's L1 is the reference that nested_guest's time bounds were set with
(nested_guest_pace_reference); the result file records where it comes from.

    .venv/bin/python bench/pace.py --lab nestlab [--repeat 5]    # writes bench/results/pace.json
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACE = os.path.join(ROOT, "plugins", "module_utils", "_nestlab", "pace.py")
RESULT = os.path.join(ROOT, "bench", "results", "pace.json")


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
    args = parser.parse_args()
    with open(PACE) as handle:
        source = handle.read()
    with open("/var/lib/nestlab/reports/%s.json" % args.lab) as handle:
        report = json.load(handle)
    ssh = shlex.split(report["ssh"]) + ["-o", "BatchMode=yes"]
    here = [run_here(sys.executable, source) for dummy in range(args.repeat)]
    l1 = [run_here("python3", source, ssh) for dummy in range(args.repeat)]
    result = {
        "script": "bench/pace.py", "date": datetime.date.today().isoformat(),
        "machine": "%s, %d cores" % (platform.machine(), os.cpu_count()),
        "l1_accel": report.get("accel", {}).get("accel"),
        "hypervisor_seconds": here, "l1_seconds": l1,
        "hypervisor_median": round(statistics.median(here), 3), "l1_median": round(statistics.median(l1), 3),
    }
    os.makedirs(os.path.dirname(RESULT), exist_ok=True)
    with open(RESULT, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
