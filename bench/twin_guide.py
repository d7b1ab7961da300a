"""Write docs/twin.md, "Twin a server", from a real run: playbooks/twin.yml on a real machine's hwloc XML
(one of hwloc's own published topologies, tests/data/hwloc/), then the twin's report (fidelity table and
comparison), hwloc's view inside the twin's virtual host (L1) and numactl's, read over the lab's SSH
command. The twin is torn down afterwards unless --keep.

    .venv/bin/python bench/twin_guide.py [--src tests/data/hwloc/96em64t-4n4d3ca2co-pci.xml] [--vcpus 4]
        [--memory 2GiB] [--lab nestlab-twin] [--keep] [--out docs/twin.md]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from _report import lab_ssh, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")


def playbook(name, extra):
    started = time.time()
    run = subprocess.run([PLAYBOOK, os.path.join(ROOT, "playbooks", name), "-e", json.dumps(extra)],
                         cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")),
                         check=False)
    if run.returncode != 0:
        sys.exit("%s failed:\n%s" % (name, run.stdout[-4000:]))
    return run.stdout, time.time() - started


def in_l1(ssh, command):
    return subprocess.run(ssh + [command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=True).stdout.rstrip("\n").splitlines()


def table(rows, keys, heads):
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        out.append("| " + " | ".join(("" if row.get(key) is None else str(row[key])).replace("|", "/")
                                     for key in keys) + " |")
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", default="tests/data/hwloc/96em64t-4n4d3ca2co-pci.xml")
    parser.add_argument("--vcpus", type=int, default=4)
    parser.add_argument("--memory", default="2GiB")
    parser.add_argument("--lab", default="nestlab-twin")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "twin.md"))
    args = parser.parse_args()
    extra = {"nestlab_lab_name": args.lab, "nestlab_twin_src": os.path.abspath(args.src),
             "nestlab_twin_vcpus": args.vcpus, "nestlab_twin_memory": args.memory, "nestlab_guest_roles": False}
    out, seconds = playbook("twin.yml", extra)
    try:
        with open("/var/lib/nestlab/reports/%s.twin.json" % args.lab) as handle:
            twin = json.load(handle)
        report, ssh = lab_ssh(args.lab)
        lstopo = in_l1(ssh, "lstopo-no-graphics --no-caches --no-useless-caches")
        numactl = in_l1(ssh, "numactl --hardware")
    finally:
        if not args.keep:
            playbook("teardown.yml", {"nestlab_lab_name": args.lab})
    summary = out[out.index("TASK [Twin summary]"):].split("PLAY RECAP")[0].strip().splitlines()
    src = os.path.relpath(os.path.abspath(args.src), ROOT)
    lines = [
        "# Twin a server", "",
        "A lab shaped like a machine you already run: the two-socket box where a NUMA-affinity bug shows up,",
        "the compute node whose NICs all sit on one socket. `playbooks/twin.yml` reads that machine's topology",
        "as hwloc writes it and builds a lab with the same NUMA nodes, the same distances and each Ethernet",
        "function on the node it is local to; then it asks hwloc inside the lab's virtual host (L1) whether",
        "the twin has the source's shape, and fails when it has not.", "",
        "## Run it", "",
        "On the machine to twin (any Linux with hwloc; `apt install hwloc-nox`, `dnf install hwloc`):", "",
        "```sh", "lstopo --of xml > server.xml", "```", "",
        "On the hypervisor (or a controller with the hypervisor in the inventory group `hypervisors`):", "",
        "```sh",
        "ansible-playbook playbooks/twin.yml -e nestlab_twin_src=server.xml \\",
        "    -e nestlab_twin_vcpus=8 -e nestlab_twin_memory=8GiB",
        "```", "",
        "The lab's vCPUs and memory (`nestlab_twin_vcpus`, `nestlab_twin_memory`) are shared out in the",
        "source's proportions, at least one vCPU and 256 MiB per node. Every variable of `lab.yml` applies",
        "(`nestlab_lab_name`, `nestlab_guest_roles`, ...), except `nestlab_lab`: the twin's spec takes its place.",
        "The module behind it, `nestlab.pci.spec_from_hwloc`, runs anywhere (it only reads the file) and",
        "returns the spec and the fidelity rows for your own playbooks.", "",
        "## What a twin keeps", "",
        "- **NUMA nodes**: one per source node (the lab spec allows 16; a bigger source is refused, naming",
        "  the limit), numbered from 0 in the order of the source's OS indexes.",
        "- **Distances**: hwloc's NUMA latency matrix (from the ACPI SLIT), copied; a matrix whose local",
        "  distance is not 10 is scaled to 10, values above 255 are clamped.",
        "- **NICs**: every Ethernet function on the node hwloc makes it local to (the nodeset of its nearest",
        "  ancestor). A function local to several nodes or to the whole machine goes to the first of them,",
        "  said in its row. QEMU's emulations keep their identity (the 82576, `8086:10c9`, is QEMU's `igb`;",
        "  the 82574L is `e1000e`); any other NIC becomes an `e1000e`, or an `igb` when it has virtual",
        "  functions (up to 7 VFs, what Linux's igb driver enables). Only models the hypervisor's QEMU has",
        "  are used: QEMU 7.2 (Debian 12) has no `igb`, so there an 82576 becomes an `e1000e`, said in its row.",
        "- **Dropped**: GPUs, storage and NVMe controllers (the lab spec has no storage devices), InfiniBand",
        "  (unless `nestlab_twin_classes` includes `infiniband`), each listed with its node.", "",
        "hwloc XML v1 (hwloc 1.x) is refused with the command that converts it: `lstopo --input OLD.xml",
        "--of xml NEW.xml` with hwloc 2.", "",
        "## A real run", "",
        "Written by `.venv/bin/python bench/twin_guide.py` on %s (%s): `playbooks/twin.yml` on `%s`, "
        % (datetime.date.today().isoformat(), machine(), src),
        "one of the real machines' topologies hwloc publishes in its test suite (an IBM System x3950 M2:",
        "4 NUMA nodes of 24 CPUs, two Broadcom NetXtreme II ports on each node, SLIT distances 10/26;",
        "[where it comes from](https://github.com/open-mpi/hwloc/tree/hwloc-2.9.3/tests/hwloc/xml)), with",
        "`nestlab_twin_vcpus=%d`, `nestlab_twin_memory=%s` and `nestlab_guest_roles=false` (the virtual host"
        % (args.vcpus, args.memory),
        "only, L1 under %s); the playbook took %.0f s." % (report["accel"]["accel"].upper(), seconds), "",
        "The source and the spec made of it:", "",
        "```json", json.dumps(twin["source"]), json.dumps(twin["spec"]), "```", "",
        "The fidelity table:", ""]
    lines += table(twin["fidelity"], ("kind", "source", "what", "node", "outcome", "twin", "why"),
                   ("kind", "source", "device", "twin node", "outcome", "in the twin", "why"))
    lines += ["", "The twin against the source (hwloc inside L1, `lstopo --of xml`):", ""]
    lines += table(twin["comparison"], ("check", "source", "twin", "ok"), ("check", "source", "twin", "ok"))
    lines += ["", "The playbook's summary:", "", "```"] + summary + ["```", ""]
    lines += ["hwloc inside the twin (`lstopo-no-graphics --no-caches --no-useless-caches`):", "", "```"]
    lines += lstopo + ["```", "", "`numactl --hardware` inside the twin:", "", "```"] + numactl + ["```", ""]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
