"""A slower machine, as the test suite makes one: a running lab's virtual host (L1) held to a share of
one core (libvirt's global CPU quota, set live, as tests/helpers.py SlowL2 does during the shared lab's
L2 boot), and what that does to the two things that matter for nested_guest's bounds: the pace
workload inside L1 (what boot_report scales its bounds by) and a whole boot of L2 (domain start in L1
to its power-off). The lab must have run its chain, so that L1 holds L2's definition, shut off.

    .venv/bin/python bench/slow_l1.py --lab nestlab [--quota -1 --quota 60000 --quota 30000] [--repeat 1] [--write]

A quota of -1 is no hold. Saves bench/results/slow-l1.json.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import time

from _report import add_write_option, save
from pace import run_here

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACE = os.path.join(ROOT, "plugins", "module_utils", "_nestlab", "pace.py")
PERIOD = 100000
# one L2 boot, start to power-off, inside an L1 at the smallest quota measured, may take this long
BOOT_LIMIT = 1800
# in L1: start L2 and wait for its power-off, through one libvirt connection polled once a second as
# boot_report does (a virsh process per poll would take a share of a held L1's quota of its own)
BOOT = """
import time
import libvirt
dom = libvirt.open("qemu:///system").lookupByName(%r)
dom.create()
while dom.isActive():
    time.sleep(1)
"""


def hold(lab, quota):
    subprocess.run(["virsh", "-q", "schedinfo", lab, "--live", "global_period=%d" % PERIOD, "global_quota=%d" % quota],
                   stdout=subprocess.DEVNULL, check=True)


def l1_cpu_seconds(lab):
    out = subprocess.run(["virsh", "-q", "domstats", lab, "--cpu-total"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return int(re.search(r"cpu\.time=(\d+)", out).group(1)) / 1e9


def in_l1(ssh, command, stdin=None, timeout=None):
    proc = subprocess.run(ssh + [command], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout, check=False)
    if proc.returncode:
        raise SystemExit("in L1: %s: %s" % (command, proc.stdout))
    return proc.stdout


def measure(lab, ssh, l2, console, quota, source):
    """One row: the pace workload three times in L1, then one boot of L2, all with L1 held to ``quota``."""
    hold(lab, quota)
    try:
        pace = [run_here("python3", source, ssh) for dummy in range(3)]
        cpu, began = l1_cpu_seconds(lab), time.time()
        in_l1(ssh, "python3 -", BOOT % l2, timeout=BOOT_LIMIT)
        seconds = time.time() - began
        cpu = l1_cpu_seconds(lab) - cpu
    finally:
        hold(lab, -1)
    log = in_l1(ssh, "cat %s" % shlex.quote(console))
    stamps = re.findall(r"^\[\s*([0-9]+\.[0-9]+)\]", log, re.M)
    return {"quota": quota, "pace_seconds": pace, "boot_seconds": round(seconds, 1),
            "l1_cpu_share": round(cpu / seconds, 3), "l2_kernel_seconds": float(stamps[-1]) if stamps else None,
            "powered_off": "reboot: Power down" in log, "report_lines": log.count("NESTLAB-REPORT-END"),
            "soft_lockups": log.count("soft lockup")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", default="nestlab", help="a running lab whose report names its SSH command")
    parser.add_argument("--quota", type=int, action="append",
                        help="L1's global CPU quota in microseconds per %d (-1: no hold); repeatable" % PERIOD)
    parser.add_argument("--repeat", type=int, default=1)
    add_write_option(parser)
    args = parser.parse_args()
    quotas = args.quota or [-1, 60000, 30000]
    with open(PACE) as handle:
        source = handle.read()
    with open("/var/lib/nestlab/reports/%s.json" % args.lab) as handle:
        report = json.load(handle)
    ssh = shlex.split(report["ssh"]) + ["-o", "BatchMode=yes"]
    l2 = report["l2"]["name"]
    console = "/var/lib/nestlab/l2/console.log"
    rows = []
    for dummy in range(args.repeat):
        for quota in quotas:
            row = measure(args.lab, ssh, l2, console, quota, source)
            print(json.dumps(row, sort_keys=True), flush=True)
            rows.append(row)
    save("slow-l1", {"l1_accel": report.get("accel", {}).get("accel"), "period": PERIOD, "l2": l2, "rows": rows},
         args.write)


if __name__ == "__main__":
    main()
