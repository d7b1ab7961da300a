"""Render docs/benchmarks.md from the stored results in bench/results/*.json, and nothing else: every
figure in the page comes from a result file, and each section names the script, the command and the
file. A section whose result is not stored says so and how to make it.

    .venv/bin/python bench/render.py            # write docs/benchmarks.md
    .venv/bin/python bench/render.py --check    # exit 1 when the page is not what the results render
"""

import argparse
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import DOC, load  # noqa: E402

med = statistics.median


def source(record):
    return ["Source: `bench/results/%s.json`, written by `%s` on %s. Command: `%s`. Machine: %s%s." % (
        record["section"], record["script"], record["date"], record.get("command", "not recorded"), record["machine"],
        ", " + record["platform"] if record.get("platform") else "")]


def topology_vs_virt_xml(r):
    lines = source(r) + [
        "Median of %d runs each, whole processes, wall clock, each apply on a freshly defined base domain; %s." % (
            r["repeat"], r["versions"]),
        "",
        "| lab | virt-xml calls | ansible-playbook + lab_topology | no-op re-run | virt-xml"
        " | one `virsh define` of the same XML (floor) | speed-up over virt-xml | same devices |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lab in r["labs"]:
        ours, theirs = med(lab["ours"]), med(lab["virt_xml"])
        lines.append("| %s | %d | %.2f s | %.2f s | %.2f s | %.2f s | %.1fx | %s |" % (
            lab["label"], lab["calls"], ours, med(lab["noop"]), theirs, med(lab["floor"]), theirs / ours,
            "yes" if lab["same_devices"] else "no: " + lab["difference"]))
    each = ["%s: ours %s, no-op %s, virt-xml %s, define %s" % (
        lab["label"], fmt(lab["ours"]), fmt(lab["noop"]), fmt(lab["virt_xml"]), fmt(lab["floor"])) for lab in r["labs"]]
    lines += ["", "Each run's seconds: " + "; ".join(each) + "."]
    return lines


def fmt(values, digits=2):
    return ", ".join("%.*f" % (digits, v) for v in values)


def lab_command(r):
    lines = source(r) + ["Whole `ansible-playbook` processes (`playbooks/lab.yml` unless the row names another), wall clock, strategy %s; "
                         "packages already installed; %d run(s) of each." % (r["strategy"], len(r["runs"])), ""]
    lines += ["| run | median seconds | each run (seconds) | changed tasks |", "|---|---|---|---|"]
    for index, label in enumerate(r["labels"]):
        seconds = [run[index]["seconds"] for run in r["runs"]]
        changed = sorted(set(run[index]["changed"] for run in r["runs"]))
        lines.append("| %s | %.0f | %s | %s |" % (label, med(seconds), fmt(seconds, 0), ", ".join(map(str, changed))))
    return lines


def disk_image_info(r):
    lines = source(r) + [
        "Median of %d runs, whole module process (Python start-up included), wall clock. %d kinds of image "
        "(cluster sizes 4 KiB to 2 MiB, refcount widths 1 to 64 bits, extended L2, version 2, preallocated "
        "metadata, 8 MiB of data), copied to %d files; %s." % (r["repeat"], r["kinds"], r["images"], r["qemu_img"]),
        "",
        "| cross-check with qemu-img measure | seconds | per image | each run (seconds) |",
        "|---|---|---|---|",
    ]
    for row in r["rows"]:
        label = "on (one call per distinct kind)" if row["cross_check"] else "off"
        seconds = med(row["seconds"])
        lines.append("| %s | %.2f s | %.2f ms | %s |" % (label, seconds, seconds * 1000 / r["images"], fmt(row["seconds"])))
    lines += ["", "The call read %d bytes in all (%.1f KiB per image: headers, extensions, Python's own files) from "
                  "images that allocate %d MiB: it never reads data clusters." % (
                      r["read_bytes"], r["read_bytes"] / 1024.0 / r["images"], r["allocated_bytes"] // (1024 * 1024))]
    return lines


def scale(r):
    lines = source(r) + [
        "Median of %d runs. Plan: spec checks, bus, slot and MAC planning and the domain XML, in one process, no "
        "libvirt. Apply: the lab_topology module as its own process (Python start-up included) defining the lab on "
        "a freshly defined base domain, then the same call again (no-op)." % r["repeat"],
        "",
        "| NUMA nodes | NICs per node | NICs | controllers and NICs in the XML | XML | plan | apply | no-op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append("| %d | %d | %d | %d | %.1f KiB | %.1f ms | %.2f s | %.2f s |" % (
            row["nodes"], row["per_node"], row["nics"], row["devices"], row["xml_bytes"] / 1024.0,
            med(row["plan"]) * 1000, med(row["apply"]), med(row["noop"])))
    lines += ["", "The largest labs accepted (the planner's message for one NIC more):", ""]
    lines += ["- %d node%s: at most %d NICs per node; one more gives `%s`" % (
        m["nodes"], "" if m["nodes"] == 1 else "s", m["per_node"], m["message"]) for m in r["limits"]]
    nics = [row["nics"] for row in r["rows"]]
    plan = [med(row["plan"]) for row in r["rows"]]
    exponent = slope([math.log(n) for n in nics], [math.log(p) for p in plan])[0]
    apply_fit = slope(nics, [med(row["apply"]) for row in r["rows"]])
    noop_fit = slope(nics, [med(row["noop"]) for row in r["rows"]])
    figures = (exponent, apply_fit[1], apply_fit[0] * 1000, noop_fit[1], noop_fit[0] * 1000)
    lines += ["", "Growth (least squares over all rows): planning grows as NICs^%.2f; apply is %.2f s plus %.2f ms per "
                  "NIC, a no-op %.2f s plus %.2f ms per NIC." % figures]
    return lines


def slope(xs, ys):
    """(slope, intercept) of the least-squares line through the points."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return k, my - k * mx


def pace(r):
    return source(r) + [
        "The workload of `plugins/module_utils/_nestlab/pace.py` (best of three rounds), %d times each: on the "
        "hypervisor %s s (median %.3f s), inside the default lab's L1 under %s %s s (median %.3f s). "
        "`nested_guest_pace_reference` is the L1 median: L2's bounds were set on this machine, and grow on an L1 "
        "that runs the workload slower." % (
            len(r["l1_seconds"]), fmt(r["hypervisor_seconds"], 4), r["hypervisor_median"], r["l1_accel"].upper(),
            fmt(r["l1_seconds"], 3), r["l1_median"])]


def lab_command_ratios(r):
    lines = source(r) + [
        "%d run(s), strategy %s except where a row says linear; each run builds a new lab, so B and F are that "
        "run's own. B: L1's boot, lab_vm's start task in the new lab's command (domain start to the guest's SSH "
        "banner; Ansible's junit callback). F = B + L2's boot (boot_report: L2's start to its power-off, from the "
        "lab's report)." % (len(r["runs"]), r["strategy"]), "",
        "| run | B (s) | F (s) | new lab (s) | / F | no-op (s) | / B | no-op under linear (s) | / B | linear / Mitogen "
        "| save (s) | reset (s) | / B |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, run in enumerate(r["runs"]):
        b = run["l1_boot_seconds"]
        f = b + run["l2_boot_seconds"]
        lines.append("| %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.2f | %.1f | %.2f | %.2f | %.1f | %.1f | %.2f |" % (
            index + 1, b, f, run["new"]["seconds"], run["new"]["seconds"] / f, run["noop_mitogen"]["seconds"],
            run["noop_mitogen"]["seconds"] / b, run["noop_linear"]["seconds"], run["noop_linear"]["seconds"] / b,
            run["noop_linear"]["seconds"] / run["noop_mitogen"]["seconds"], run["save"]["seconds"],
            run["reset"]["seconds"], run["reset"]["seconds"] / b))
    changed = sorted({(key, run[key]["changed"]) for run in r["runs"] for key in ("noop_mitogen", "noop_linear")})
    lines += ["", "Changed tasks in the no-op re-runs: %s." % ", ".join("%s %d" % pair for pair in changed)]
    return lines


def slow_l1(r):
    lines = source(r) + [
        "L1 under %s, held to a quota of its CPU time per %d ms (libvirt's `global_quota`, set live); for each row "
        "the pace workload three times inside L1, then one boot of L2 (`%s`, domain start in L1 to its "
        "power-off), L1's CPU use over that boot as a share of one core, and L2's own clock at power-off (the "
        "last kernel time stamp on its console). The factors compare with the median of the rows without a "
        "hold (-1)." % (r["l1_accel"].upper(), r["period"] // 1000, r["l2"]), "",
        "| L1 held to | pace workload (s) | pace factor | L2 boot (s) | slower by | L1's CPU use | L2's clock at "
        "power-off (s) | soft lockups in L2 | L2 reported and powered off |",
        "|---|---|---|---|---|---|---|---|---|"]
    free = [row for row in r["rows"] if row["quota"] == -1]
    free_pace, free_boot = med([med(row["pace_seconds"]) for row in free]), med([row["boot_seconds"] for row in free])
    for row in r["rows"]:
        lines.append("| %s | %s | x%.2f | %.1f | x%.2f | %.0f %% | %s | %d | %s |" % (
            "no hold" if row["quota"] == -1 else "%.0f %% of a core" % (row["quota"] * 100.0 / r["period"]),
            fmt(row["pace_seconds"], 3), med(row["pace_seconds"]) / free_pace, row["boot_seconds"],
            row["boot_seconds"] / free_boot, row["l1_cpu_share"] * 100,
            "%.1f" % row["l2_kernel_seconds"] if row["l2_kernel_seconds"] is not None else "none",
            row["soft_lockups"], "yes" if row["powered_off"] and row["report_lines"] else "no"))
    return lines


def _vendor_rows(r, extra=None):
    """The candidates' table; ``extra``: (heading, function of a row) for one more column."""
    lines = ["| candidate | L1 booted | CPU flag | firmware IOMMU table | virt-host-validate's IOMMU lines "
             "| interrupt remapping | testpmd: IOMMU, socket, TX / RX packets | NIC back with |%s" % (
                 " %s |" % extra[0] if extra else ""),
             "|---|---|---|---|---|---|---|---|%s" % ("---|" if extra else "")]
    for row in r["rows"]:
        if not row["booted"]:
            error = row["error"].replace("|", "\\|")
            lines.append("| %s | no: %s | | | | | | |%s" % (row["candidate"], error, " |" if extra else ""))
            continue
        dpdk = row["dpdk"]
        lines.append("| %s%s | yes | %s | %s | %s | %s | %s, socket %s, %s / %s | %s |%s" % (
            row["candidate"], " (replugged: %s)" % ("yes" if row["replugged"] else "no") if "replugged" in row else "",
            row["cpu_flag"], ", ".join(row["iommu_tables"]) or "none",
            "<br>".join(" ".join(x.split()).replace("|", "\\|") for x in row["virt_host_validate"]) or "none",
            row["interrupt_remapping"] or "none", "IOMMU type 1" if dpdk["iommu"] else "no IOMMU", dpdk["socket"],
            dpdk["tx_packets"], dpdk["rx_packets"], dpdk["back_to_kernel_driver"],
            " %s |" % extra[1](row) if extra else ""))
    return lines


def iommu_vendors(r):
    return source(r) + [
        "Lab `%s` under %s; %s; %s. The NIC under test: the lab's last (bound to vfio-pci for testpmd, then given "
        "back). In the amd candidates the device libvirt had put in slot 1 of `pcie.0` moved to slot %s." % (
            r["lab"], r["accel"].upper(), r["qemu"], "libvirt " + r["libvirt"], r["moved_from_slot_1_to"]), ""] + \
        _vendor_rows(r)


def iommu_vendors_newer(r):
    def l2(row):
        seen = row["l2"]
        return "%s: `%s`" % (seen["state"], seen["nic"]) if seen["nic"] else "%s, no NIC line" % (seen["state"] or "no state")
    return source(r) + [
        "Lab `%s` under %s; %s and libvirt %s from Debian's %s-backports. The NIC under test: the lab's last; "
        "L2: the lab's nested guest, with the lab's NIC on the last node, started once in L1 (its init's line for "
        "the NIC: address in L2, vendor, device, class, NUMA node, driver)." % (
            r["lab"], r["accel"].upper(), r["qemu"], r["libvirt"], r["suite"]), ""] + \
        _vendor_rows(r, ("L2 with the lab's NIC", l2))


def newer_lab(r):
    def recap(run):
        return ", ".join("%s changed=%s failed=%s" % (host, c.get("changed"), c.get("failed"))
                         for host, c in sorted(run["recap"].items()))
    dpdk = r.get("dpdk") or {}
    l2 = r.get("l2") or {}
    lines = source(r) + [
        "%s, %s (Debian's trixie-backports), %s, inside that root with a local connection; L1 under %s. The spec: "
        "`%s`." % (r["versions"]["qemu"], r["versions"]["libvirt"], r["versions"]["ansible"],
                   (r.get("accel") or {}).get("accel", "?").upper(), json.dumps(r["spec"], sort_keys=True)), "",
        "| run | seconds | exit | PLAY RECAP |", "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % (run["run"], run["seconds"], run["returncode"], recap(run)) for run in r["runs"]]
    lines += ["", "The vIOMMU lab_topology chose: **%s**, because %s." % (r["iommu"]["model"], r["iommu"]["reason"]), ""]
    cmdline = (r.get("l1_iommu") or {}).get("cmdline", "").split(" ro ", 1)[-1]
    rebooted = "once" if r.get("iommu_rebooted_in_first_run") else "not at all"
    lines += ["L1 boots with `%s`; guest_iommu rebooted it %s in the first run (the image boots without IOMMU "
              "arguments, as the CI lab's)." % (cmdline, rebooted), ""]
    if r.get("sriov"):
        lines += ["Physical functions in L1: %s." % "; ".join(
            "%s %s, VFs %s" % (pf, "up" if v["up"] else "down", ", ".join(v["vfs"])) for pf, v in sorted(r["sriov"].items())),
            ""]
    lines += ["| validator | passed | what it said |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % (name, "yes" if v["passed"] else "no",
                                    "; ".join(v["problems"] or []) or (v.get("accepted") or "-"))
              for name, v in sorted(r["validators"].items())]
    lines += ["", "virt-host-validate's IOMMU lines, as it printed them:", "", "```"] + r["virt_host_validate_iommu"]
    lines += ["```", "", "DPDK: `%s` probed by %s on socket %s, mbufs on socket(s) %s, packets sent: %s." % (
        dpdk.get("device"), dpdk.get("driver"), dpdk.get("socket"), dpdk.get("mbuf_sockets"), dpdk.get("packets_sent"))]
    lines += ["", "L2 (`%s`) with `%s` (NUMA node %s in L1) saw: %s." % (
        l2.get("name"), (l2.get("device") or {}).get("name"), (l2.get("device") or {}).get("numa_node"),
        "; ".join(l2.get("seen_in_l2") or []) or "nothing")]
    return lines


# (result file, heading, renderer, how to make it, text before the figures: no figures in it)
SECTIONS = [
    ("topology-vs-virt-xml", "Topology apply: lab_topology versus virt-xml", topology_vs_virt_xml,
     ".venv/bin/python bench/topology_vs_virt_xml.py --repeat 3 --write",
     "virt-xml builds the same topology with `--edit --cpu` (cells), `--edit --features` (`ioapic driver='qemu'`, "
     "which libvirt requires for interrupt remapping) and one `--add-device` per expander, root port, NIC and the "
     "IOMMU. The floor is one `virsh define` of the XML lab_topology made: what any tool that writes the XML in one "
     "go pays at least. \"Same devices\" compares the two results' PCI controllers (model, bus number, NUMA node), "
     "NICs (model), vIOMMU (model and switches) and NUMA cells. Targets (issue \"Core\"): the seed lab at least 3x "
     "faster than virt-xml, the 8-node x 16-NIC lab at least 20x, a no-op re-run under 1.5 s."),
    ("lab-command-l1", "Lab command: default lab to a verified virtual host (L1)", lab_command,
     ".venv/bin/python bench/lab_command.py --cold --stages l1 --write",
     "`nestlab_guest_roles=false` stops the lab command after the L1 check. Targets (issue \"virtual host\"): "
     "image cached to a verified L1 under 3 minutes; no-op re-run under 45 s with nothing changed."),
    ("lab-command-chain", "Whole chain to a verified L2 (default lab, image cached)", lab_command,
     ".venv/bin/python bench/lab_command.py --stages chain --repeat 3 --write",
     "Targets (issue \"chain\"): a new lab to a verified L2 under 6 minutes with the image cached; a no-op "
     "re-run under 60 s."),
    ("lab-command-chain-mitogen", "Whole chain under Mitogen (as scripts/lab.sh runs it)", lab_command,
     ".venv/bin/python bench/lab_command.py --stages chain --strategy mitogen --write",
     "The same runs with Mitogen's `mitogen_linear` strategy, which `scripts/lab.sh` uses when it can "
     "(docs/roles-in-playbooks.md)."),
    ("lab-command-ratios", "The lab command against the boots it waits for (B and F from the same run)",
     lab_command_ratios, ".venv/bin/python bench/lab_command.py --stages ratios --strategy mitogen --repeat 2 --write",
     "Targets (issue \"Speed\"), on this machine kind: a new lab to a verified L2, image cached, at most 1.5 x F; "
     "a no-op re-run at most 0.4 x B; a reset to a verified lab at most 0.5 x B; the no-op under linear and under "
     "Mitogen side by side."),
    ("disk-image-info", "Disk image figures: qcow2 images in one disk_image_info call", disk_image_info,
     ".venv/bin/python bench/disk_image_info.py --images 1000 --repeat 5 --write",
     "Target: under 2 s for 1000 images."),
    ("scale", "Scale: planning and applying labs from 1 NIC to the largest lab", scale,
     ".venv/bin/python bench/scale.py --repeat 3 --write",
     "How the work grows with the lab, up to the largest the planner accepts: 16 NUMA nodes (the spec's limit), "
     "32 NICs per expander (its root port slots), and no more expander buses than PCI bus numbers 1 to 255 hold."),
    ("pace", "Pace: the workload that scales L2's time bounds", pace,
     ".venv/bin/python bench/pace.py --lab nestlab --write",
     "nested_guest's L2 bounds follow the machine (issue \"The chain on a slower machine\"): boot_report times "
     "a fixed workload where it runs and scales its bounds by the ratio to the reference."),
    ("slow-l1", "A slower machine: L1 held to a share of a core", slow_l1,
     ".venv/bin/python bench/slow_l1.py --lab nestlab --quota -1 --quota 60000 --quota 30000 --write",
     "The test suite proves nested_guest's bounds on a slower machine by holding the shared lab's L1 to a CPU "
     "quota while its L2 boots (`tests/helpers.py`, `SlowL2`, `SLOW_L1_QUOTA`). How much slower that makes L1, "
     "by the pace workload and by a whole L2 boot. A hold slows a whole boot more than the short workload "
     "shows; on a machine that is simply slower, both would slow alike. Inside L1 the bench starts L2 and "
     "waits for its power-off through one libvirt connection polled once a second, as boot_report does: a "
     "virsh process per poll takes a share of a held L1's quota of its own."),
    ("iommu-vendors", "CPU and IOMMU vendors: the candidates booted", iommu_vendors,
     ".venv/bin/python bench/iommu_vendors.py --lab nestlab --write",
     "Tools that decide by vendor (libvirt's virt-host-validate among them) take a CPU with vmx for Intel VT-d "
     "and look for the DMAR table, and a CPU with svm for AMD-Vi and the IVRS table. Under QEMU's TCG the lab's "
     "CPU shows svm. Each candidate is booted on the lab's own virtual host and judged by virt-host-validate, "
     "the kernel and DPDK's testpmd moving packets through the vIOMMU on a NIC behind one of the lab's PCIe "
     "expanders (bench/iommu_vendors.py says how each candidate is made)."),
    ("iommu-vendors-newer", "CPU and IOMMU vendors on a newer libvirt and QEMU", iommu_vendors_newer,
     ".venv/bin/python bench/iommu_vendors.py --lab nestlab --newer /var/cache/nestlab/tests/newer-hv --write",
     "The same judges, with the lab's L1 booted by a newer libvirt and QEMU than Debian 12's (a Debian root of "
     "their own beside the host's, tests/boot/files/newer-hv.sh): libvirt's own `<iommu model='amd'>`, once as "
     "libvirt makes it and once with QEMU's amd-iommu property `dma-remap=on`, which libvirt has no attribute "
     "for. The lab's nested guest is started in each; its line says the NIC is there and its driver bound in L2, "
     "not that the NIC's DMA works there (testpmd in L1 is the DMA check)."),
    ("sriov-lab-newer", "The SR-IOV lab on a newer libvirt and QEMU: DPDK on a virtual function", newer_lab,
     ".venv/bin/python bench/newer_labs.py --lab sriov --write",
     "The SR-IOV lab of `tests/boot/test_sriov_lab.py` (two nodes, an igb with two VFs on each), built by "
     "`lab.yml` the same way in the same root, so that QEMU 11's igb serves the VFs: DPDK's validator takes the "
     "last node's first VF. CI's SR-IOV lab runs Debian 12's backports (QEMU 10.0), whose igb VFs never finish "
     "their reset through the PF (by hand, [the guide](software-view.md)), so CI does not run DPDK on a VF."),
    ("amd-lab", "A whole lab with `iommu.model: auto` choosing AMD's vIOMMU", newer_lab,
     ".venv/bin/python bench/newer_labs.py --lab amd --write",
     "`playbooks/lab.yml` itself, with the spec's vIOMMU left to `auto`, run inside the newer root above with a "
     "local connection: the hypervisor role, the base image (the CI lab's, reused), L1, the in-guest roles, the "
     "validators including DPDK, and L2 with the lab's NIC; then the same command again, which must change "
     "nothing, and the teardown. CI runs the modules' choice there (`tests/boot/test_amd_viommu.py`), not this "
     "whole chain: it would add a second TCG lab to CI's critical path."),
]

HEAD = """# Benchmarks

<!-- rendered by bench/render.py from bench/results/*.json: do not edit by hand -->

Figures from the benchmark scripts in `bench/`, never from timed tests. Every figure on this page
comes from a stored result in `bench/results/` (raw samples, the command, the machine); the page is
rendered from those files only (`.venv/bin/python bench/render.py`), and
`tests/quality/test_benchmarks.py` checks that rendering them again changes nothing. A section
without a stored result says how to make it.
"""


def section_lines(name):
    for section, heading, renderer, make, prose in SECTIONS:
        if section == name:
            record = load(section)
            if record:
                record.setdefault("section", section)
            body = renderer(record) if record else ["No stored result yet: run `%s`." % make]
            return ["## " + heading, "", prose, ""] + body
    raise KeyError(name)


def render():
    parts = [HEAD]
    for section in SECTIONS:
        parts.append("\n".join(section_lines(section[0])) + "\n")
    return "\n".join(parts)


def write_doc(path=DOC):
    with open(path + ".tmp", "w") as handle:
        handle.write(render())
    os.rename(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/benchmarks.md differs from a fresh render")
    args = parser.parse_args()
    if args.check:
        with open(DOC) as handle:
            same = handle.read() == render()
        print("docs/benchmarks.md is %s" % ("what the stored results render" if same else "NOT what the stored results render"))
        sys.exit(0 if same else 1)
    write_doc()


if __name__ == "__main__":
    main()
