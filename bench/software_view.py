"""Write docs/software-view.md, "what your software will see": the output of other people's validators
inside a real lab's virtual host (L1), read over the lab's own SSH command, and the verdicts the lab
command recorded in its report (role guest_validate). Build the lab first (bash scripts/lab.sh).

    .venv/bin/python bench/software_view.py [--lab nestlab] [--out docs/software-view.md]
"""

import argparse
import datetime
import os
import subprocess
import sys

from _report import lab_ssh, testpmd_in_l1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "collections"))
# the lines of testpmd's output that module guest_validate keeps
from ansible_collections.nestlab.pci.plugins.modules.guest_validate import _TESTPMD_LINES as TESTPMD_LINES  # noqa: E402

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


# the vendor table: what each platform gives, and where each row's proof is (no figure here: they are in
# docs/benchmarks.md, rendered from the stored results)
VENDORS = [
    "## CPU and IOMMU from one vendor", "",
    "Tools that decide by vendor take a CPU with vmx for Intel VT-d and look for the DMAR table, and a CPU",
    "with svm for AMD-Vi and the IVRS table. So the vIOMMU should match the CPU L1 shows: `iommu.model: intel`",
    "(the default) or `amd` ([lab spec](lab-spec.md)). `iommu.model: auto` chooses by the table's third",
    "column where the domain is defined: amd for an AMD-like CPU (TCG, or KVM on a host with svm) when that",
    "host's libvirt schema has the model and its QEMU's amd-iommu has `dma-remap`, else intel, and",
    "`lab_topology` returns the reason. The default stays intel: the one platform where auto and intel differ",
    "under KVM (an AMD host with a new enough libvirt and QEMU) was never booted here.", "",
    "| where L1 runs | L1's CPU shows | vIOMMU to use | virt-host-validate's IOMMU checks | checked by |",
    "|---|---|---|---|---|",
    "| TCG on Debian 12's QEMU 7.2 and libvirt 9.0 (the CI machine) | svm (QEMU's `max`) | intel: the amd model "
    "is refused there, naming the QEMU (its amd-iommu has no `dma-remap`) | WARN (looks for IVRS, finds DMAR); "
    "the lab command records it as accepted (`guest_validate_vendor_mismatch: report`) | every CI run (the "
    "shared default lab, `tests/boot/test_lab_l1.py`; the refusal, `tests/integration/test_modules_libvirt.py`); "
    "booted candidates in [benchmarks](benchmarks.md) (\"CPU and IOMMU vendors\") |",
    "| TCG on QEMU 11.1.3 and libvirt 12.9.0 (Debian trixie-backports) | svm | amd | PASS, both; DPDK moves "
    "packets through it, and L2 boots with the lab's NIC | L1 booted by `bench/iommu_vendors.py --newer` "
    "([benchmarks](benchmarks.md), \"CPU and IOMMU vendors on a newer libvirt and QEMU\"); a whole lab built by "
    "`lab.yml` there with `iommu.model: auto`, every validator passing and L2 with the lab's NIC (`bench/newer_labs.py`, "
    "[benchmarks](benchmarks.md), \"A whole lab with `iommu.model: auto` choosing AMD's vIOMMU\"); every CI run "
    "defines and starts the lab's amd definition there and has `auto` choose amd (`tests/boot/test_amd_viommu.py`) |",
    "| TCG on QEMU 10.0 and libvirt 11.3 (Debian 12's backports) | svm | intel: libvirt 11.3 has no amd model, "
    "and QEMU 10.0's amd-iommu no `dma-remap` | WARN, as on 7.2 | by hand, not stored: QEMU's amd-iommu given "
    "on the command line panicked L1's kernel early with interrupt remapping on |",
    "| KVM on an Intel host | vmx (`host-passthrough`) | intel | should pass (vmx, DMAR) | not run: the CI "
    "machine has no KVM |",
    "| KVM on an AMD host | svm (`host-passthrough`) | amd, with a libvirt and QEMU as in the second row; "
    "else intel, with the warning recorded as under TCG | as in the second row, or as in the first | not run: "
    "the CI machine has no KVM |", "",
    "What the amd model needs, and why: libvirt's `<iommu model='amd'>` (12.9.0 has it; 9.0.0 and 11.3.0 do",
    "not: libvirt refuses the definition, and nothing is written), and QEMU's amd-iommu with its `dma-remap`",
    "property, which the collection turns on with `-global amd-iommu.dma-remap=on` (libvirt has no attribute",
    "for it). Without `dma-remap`, QEMU 11.1.3's amd-iommu passed virt-host-validate and moved no DPDK packet",
    "(the device's DMA was not translated as vfio set it up); QEMU 7.2's amd-iommu, added by hand, moved none",
    "either (it keys a device behind a root port by the bus number the port had before the firmware numbered",
    "the buses), unless the NIC was unplugged and plugged again after boot, which would be needed at every start",
    "of L1 and every return to a saved state. A QEMU without `dma-remap` is refused before anything is written.", ""]


# what DPDK did on an SR-IOV lab's VF, tried once by hand (not in CI, no stored result)
VF_NOTE = [
    "In an SR-IOV lab the validator takes the last node's first NIC's first virtual function (taking the PF",
    "from igb would take its VFs away). Tried by hand, not stored, with the SR-IOV lab of",
    "`tests/boot/test_sriov_lab.py`: its L1 under QEMU 10.0's igb (Debian 12's backports, as CI runs it), and",
    "the same disk booted once under QEMU 11.1.3's (Debian trixie-backports, the root of",
    "`tests/boot/files/newer-hv.sh`). A VF resets through its PF's mailbox, which Linux's igb answers only",
    "while the PF's interface is up:",
    "",
    "- with the PF down, as the lab left it then, Linux's igbvf said \"PF still in reset state. Is the PF",
    "  interface up?\" and took a random MAC, and DPDK's igbvf PMD (`net_e1000_igb_vf`) saw the link down and",
    "  sent nothing (\"dpdk-testpmd sent no packet through 0000:c9:10.0 (TX-packets: 0)\"), under both QEMUs;",
    "- with the PF up, under QEMU 11.1.3 igbvf got its reset answer from the PF and testpmd moved packets",
    "  through the VF both ways; under QEMU 10.0 nothing changed: the PF's mailbox interrupt did not fire",
    "  when the VF reset, and testpmd's TX ring filled without a descriptor being sent (`--forward-mode=txonly`).",
    "",
    "So role `guest_sriov` now brings every PF with VFs up, at once and at every boot, and the validator",
    "names a VF's PF when it is down. DPDK on a VF needs QEMU 11 (11.1.3 tested) as well; CI's SR-IOV lab",
    "runs QEMU 10.0, so CI does not run DPDK on a VF. The SR-IOV lab built by `lab.yml` under QEMU 11.1.3, with",
    "the PFs up (`bench/newer_labs.py --lab sriov`, [benchmarks](benchmarks.md), \"The SR-IOV lab on a newer",
    "libvirt and QEMU\"): DPDK's testpmd on VF `0000:c9:10.0`, hwloc and numactl passed, and virt-host-validate",
    "warned about the IOMMU as on any lab with Intel's vIOMMU under TCG.",
    "",
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
             "virtual host (L1), and DPDK's `dpdk-testpmd` when asked, and fails, in their words, when one",
             "disagrees with the lab spec.", "",
             "Read from a real lab by `.venv/bin/python bench/software_view.py` on %s (lab `%s`, built with"
             % (datetime.date.today().isoformat(), args.lab),
             "`bash scripts/lab.sh%s`; L1 under %s)." % (
                 " -e '{\"guest_validate_validators\": [\"virt_host_validate\", \"hwloc\", \"numactl\", \"dpdk\"]}'"
                 if "dpdk" in found["verdicts"] else "", report["accel"]["accel"].upper()), "",
             "## The verdicts", "",
             "As the lab command's summary printed them, and as its report (`validators`) keeps them:", "", "```"]
    lines += found["summary"] + ["```", ""]
    plat = found["platform"]
    lines += ["The CPU and the IOMMU, as a vendor-minded tool sees them: %s." % plat["reason"], ""]
    if not plat["consistent"]:
        lines += [
            "That is why `virt-host-validate` warns: it takes a CPU with svm for an AMD machine and looks for",
            "AMD's IVRS table, while this lab's vIOMMU is Intel's (DMAR). The IOMMU itself works: the kernel",
            "enables it with interrupt remapping, vfio assigns devices with it, DPDK moves packets through it",
            "(below). Under TCG the CPU has to show svm (QEMU's TCG emulates AMD's SVM, not Intel's VMX, and",
            "hiding svm crashed static glibc programs in L1 under QEMU 7.2; [lab spec](lab-spec.md)).", ""]
    lines += VENDORS
    for command, what in COMMANDS:
        out = subprocess.run(ssh + [command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, universal_newlines=True, check=False)
        lines += ["## `%s`" % command, "", what, "", "```", out.stdout.rstrip(), "```", ""]
    dpdk = found["verdicts"].get("dpdk")
    if dpdk and dpdk.get("command"):
        # testpmd again, as the lab command ran it, for the counters that its report leaves out
        words = dpdk["command"].split()
        cores = words[words.index("-l") + 1]
        out, driver = testpmd_in_l1(ssh, dpdk["facts"]["device"], cores, "nlguide", seconds=20)
        shown = [line for line in out.splitlines() if TESTPMD_LINES.search(line)]
        lines += ["## `%s`" % " ".join(["dpdk-testpmd"] + words[1:]), "",
                  "DPDK, as the lab command runs it (`guest_validate_validators` with `dpdk`): %s bound to vfio-pci "
                  "(`dpdk-devbind.py`), probed on the socket of its node, its packet buffers from that node's huge "
                  "pages, packets sent through the vIOMMU with `--tx-first` for 20 s, then the NIC given back to "
                  "its kernel driver (here: `%s`). The lines of testpmd's output that the module keeps:"
                  % (dpdk["facts"]["device"], driver), "", "```"] + shown + ["```", ""] + VF_NOTE
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
