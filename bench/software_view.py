"""Write docs/software-view.md, "what your software will see": the output of other people's validators
inside a real lab's virtual host (L1), read over the lab's own SSH command, and the verdicts the lab
command recorded in its report (role guest_validate). Build the lab first (bash scripts/lab.sh).

    .venv/bin/python bench/software_view.py [--lab nestlab] [--out docs/software-view.md]
"""

import argparse
import datetime
import os
import subprocess

from _report import lab_ssh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = [
    ("virt-host-validate qemu",
     "libvirt's own check of a host for QEMU guests. Its IOMMU line is the one that matters for device "
     "assignment; the `/dev/kvm` line fails under TCG because the lab keeps KVM out of an L1 whose CPU is "
     "QEMU's emulation ([design](design.md))."),
    ("lstopo-no-graphics --no-caches --no-useless-caches",
     "hwloc, as schedulers that place work next to its devices read the machine: each NIC "
     "(`PCI ... (Ethernet)` with its `Net` name) hangs under the NUMA node of its expander bus; the management "
     "NIC and the disk sit on the machine's own host bridge, which has no node."),
    ("numactl --hardware", "The NUMA nodes, their CPUs and memory, and the distances."),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", default="nestlab")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "software-view.md"))
    args = parser.parse_args()
    report, ssh = lab_ssh(args.lab)
    found = report["validators"]
    lines = ["# What your software will see", "",
             "The lab is for software that decides by what the machine looks like: libvirt and OpenStack Nova",
             "(is there an IOMMU to assign devices with?), hwloc-based schedulers and Kubernetes' topology",
             "manager (which NUMA node is this NIC on?), DPDK (which socket's memory should its buffers come",
             "from?). So the lab command asks that software, not only its own reading of sysfs: role",
             "`guest_validate` runs libvirt's `virt-host-validate`, hwloc's `lstopo` and `numactl` inside the",
             "virtual host (L1) and fails, in their words, when one disagrees with the lab spec.", "",
             "Read from a real lab by `.venv/bin/python bench/software_view.py` on %s (lab `%s`, built with"
             % (datetime.date.today().isoformat(), args.lab),
             "`bash scripts/lab.sh`; L1 under %s)." % report["accel"]["accel"].upper(), "",
             "## The verdicts", "",
             "As the lab command's summary printed them, and as its report (`validators`) keeps them:", "", "```"]
    lines += found["summary"] + ["```", ""]
    plat = found["platform"]
    lines += ["The CPU and the IOMMU, as a vendor-minded tool sees them: %s." % plat["reason"], ""]
    if not plat["consistent"]:
        lines += [
            "That is why `virt-host-validate` warns: it takes a CPU with svm for an AMD machine and looks for",
            "AMD's IVRS table, while the lab's vIOMMU is Intel's (DMAR). The IOMMU itself works: the kernel",
            "enables it with interrupt remapping, vfio assigns devices with it, DPDK moves packets through it",
            "(the intel row below). Under TCG the CPU has to show svm (QEMU 7.2's TCG emulates AMD's SVM, not",
            "Intel's VMX, and hiding svm crashed static glibc programs in L1; [lab spec](lab-spec.md)).", "",
            "## CPU and IOMMU from one vendor: what was tried", "",
            "`bench/iommu_vendors.py` boots the lab's own L1 with each candidate and asks virt-host-validate, the",
            "kernel and DPDK; the table is in [benchmarks](benchmarks.md) (\"CPU and IOMMU vendors\"), from",
            "`bench/results/iommu-vendors.json`:", "",
            "- **intel** (the lab as it is): DPDK moves packets through the vIOMMU; virt-host-validate warns, as above.",
            "- **amd** (QEMU's `amd-iommu` instead, first on QEMU's command line so that it exists before the",
            "  other devices): an AMD-looking platform throughout. virt-host-validate passes both IOMMU checks,",
            "  the kernel enables AMD-Vi with interrupt remapping, DPDK probes the NIC on its node's socket, and",
            "  then moves no packet. The runs point to the cause: QEMU 7.2's AMD IOMMU keys a device by the bus",
            "  number its bridge had when QEMU created the device, before the firmware numbered the buses;",
            "  every lab NIC sits behind a root port, so its DMA is not translated as the guest set it up. By",
            "  hand, not stored: a NIC placed directly on `pcie.0` (no bridge) moved packets.",
            "- **amd-replugged** (the same, with the NIC unplugged and plugged again once L1 runs, so QEMU",
            "  creates it after the buses are numbered): everything passes and DPDK moves packets. But it",
            "  holds only until QEMU creates the NIC again: every start of L1, and every return to a saved",
            "  state, would need the unplug and plug again, and a lab started by hand would silently send DMA",
            "  to the wrong place. The collection does not do that.",
            "",
            "By hand, not stored: QEMU 10.0 from Debian 12's backports, started with the same command line,",
            "`amd-iommu,intremap=on`: L1's kernel panicked early in boot (\"timer doesn't work through",
            "Interrupt-remapped IO-APIC\"); with `intremap=off` the kernel disabled interrupt remapping (the",
            "IO-APIC was not in the IVRS table) and booted very slowly. libvirt 9.0 and 11.3 (the backports)",
            "have no `<iommu model='amd'>`.", "",
            "So the lab keeps Intel's vIOMMU, and `guest_validate_vendor_mismatch: report` (the default) keeps",
            "virt-host-validate's verdict false, with the reason, without stopping the run; set it to `fail`",
            "to stop on it. Not run here (this machine has no KVM): under KVM on an Intel host L1 gets the",
            "host's vmx, which with Intel's vIOMMU is one vendor; on an AMD host it gets svm, and",
            "virt-host-validate would see the same mismatch as under TCG.", ""]
    for command, what in COMMANDS:
        out = subprocess.run(ssh + [command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, universal_newlines=True, check=False)
        lines += ["## `%s`" % command, "", what, "", "```", out.stdout.rstrip(), "```", ""]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
