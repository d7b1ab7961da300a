"""Write docs/guest-view.md, "how the guest sees it", from a real lab: the PCI tree, the NUMA
picture, the IOMMU groups and what libvirt inside L1 reports, read over the lab's own SSH command
(from its report in /var/lib/nestlab/reports). Build the lab first (bash scripts/lab.sh).

    .venv/bin/python bench/guest_view.py [--lab nestlab] [--out docs/guest-view.md]
"""

import argparse
import datetime
import os
import subprocess

from _report import lab_ssh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = [
    ("numactl --hardware", "The NUMA nodes: CPUs, memory and distances, as the seed's `numactl --hardware`."),
    ("lspci -tv", "The PCI tree: one PCIe expander bus per NUMA node, a root port and an e1000e (82574L) behind "
                  "each port."),
    ("for d in /sys/bus/pci/devices/*; do c=$(cat $d/class); case $c in 0x0200*) printf '%s node %s group %s driver %s\\n' "
     "${d##*/} $(cat $d/numa_node) $(basename $(readlink $d/iommu_group)) $(basename $(readlink $d/driver)) ;; esac; done",
     "Each NIC's NUMA node, IOMMU group and driver, from sysfs."),
    ("dmesg | grep -E 'DMAR: Intel\\(R\\) Virtualization|DMAR-IR: Enabled IRQ remapping'",
     "The IOMMU and interrupt remapping, as the kernel reports them."),
    ("tr ' ' '\\n' </proc/cmdline | grep -E 'iommu'", "The IOMMU arguments guest_iommu put on the command line."),
    ("virsh nodedev-dumpxml pci_0000_df_00_0",
     "libvirt inside L1 on the last NIC: NUMA node 2, its own IOMMU group (the seed's check)."),
    ("for n in /sys/devices/system/node/node*; do printf '%s %s\\n' ${n##*/} "
     "$(cat $n/hugepages/hugepages-2048kB/nr_hugepages); done", "2 MiB huge pages per node (guest_hugepages)."),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", default="nestlab")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "guest-view.md"))
    args = parser.parse_args()
    report, ssh = lab_ssh(args.lab)
    lines = ["# How the guest sees it", "",
             "What the default lab's virtual host (L1) shows from inside, read from a real lab by",
             "`.venv/bin/python bench/guest_view.py` on %s (lab `%s`, built with `bash scripts/lab.sh`)."
             % (datetime.date.today().isoformat(), args.lab), "",
             "The lab spec asks for 3 NUMA nodes (CPUs 0-3, 4-5, 6-7; 4, 2 and 2 GiB), one PCIe expander bus",
             "per node at bus 180, 200 and 220 (`0000:b4`, `0000:c8`, `0000:dc`), three root ports with an",
             "e1000e on each expander, and the Intel vIOMMU with interrupt remapping. The planner puts NIC `j`",
             "of node `i` at bus `busNr_i + 1 + j`, so the guest's addresses follow from the spec alone.", ""]
    for command, what in COMMANDS:
        out = subprocess.run(ssh + [command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, check=False)
        shown = command if len(command) < 90 else command.split(";", maxsplit=1)[0] + "; ..."
        lines += ["## `%s`" % shown.replace("`", "'"), "", what, "", "```", out.stdout.rstrip(), "```", ""]
    l2 = report.get("l2") or {}
    if l2:
        lines += ["## The nested guest (L2)", "",
                  "`nested_guest` gave %s (%s, NUMA node %s, IOMMU group %s) to %s; inside L2:"
                  % (l2["device"]["name"], l2["device"]["vendor_device"], l2["device"]["numa_node"],
                     l2["device"]["iommu_group"], l2["name"]), "", "```"]
        lines += l2.get("seen_in_l2", [])
        lines += ["```", ""]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
