# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: guest_validate
short_description: Run other people's validators inside a lab's virtual host and judge them against the lab
version_added: 0.1.0
description:
  - Runs inside the guest (L1) the tools that the software a lab is for relies on, and compares what they
    say with the lab spec and plan. It does not read sysfs itself (M(nestlab.pci.guest_topology_facts)
    does that); the verdicts are the tools' own.
  - V(virt_host_validate) runs libvirt's C(virt-host-validate qemu); its two IOMMU checks
    ("device assignment IOMMU support", "IOMMU is enabled by kernel") must say PASS.
  - V(hwloc) runs C(lstopo --of xml); every lab NIC must be a PCI function under exactly the NUMA node the
    plan gives it (the nodeset of its nearest ancestor, as hwloc-based schedulers read it), with as many other
    functions on its bus, under the same node, as the plan gives it SR-IOV virtual functions.
  - V(numactl) runs C(numactl --hardware); the nodes, each node's CPUs, its memory (less what firmware and
    kernel keep, at most 15 % or 192 MiB) and, when the spec gives them, the distances must be the spec's.
  - Fails with the tools' own words when one disagrees. Nothing is changed (V(dpdk) gives its NIC back to the driver it had).
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  validators:
    description: Which validators to run.
    type: list
    elements: str
    choices: [virt_host_validate, hwloc, numactl, dpdk]
    default: [virt_host_validate, hwloc, numactl]
  dpdk:
    description:
      - For V(dpdk) in O(validators) - DPDK's C(dpdk-testpmd) on one lab NIC - bound to C(vfio-pci) with
        C(dpdk-devbind.py), C(--tx-first) for O(dpdk.seconds), then given back to the driver it had.
        DPDK must say C(Using IOMMU type 1), probe the NIC on the socket of its NUMA node, take its packet
        buffers (mbufs) from that socket's huge pages and send packets.
      - Skipped in check mode (it binds the NIC to another driver for the run).
    type: dict
    default: {}
    suboptions:
      device:
        description:
          - The PCI address in the guest of a lab NIC or of one of its SR-IOV virtual functions.
          - Default - the first NIC of the plan's last node, or its first virtual function when it has them (a PF
            with VFs keeps its driver, which the VFs need).
        type: str
      cores:
        description: The lcores for testpmd (C(-l)). Default - two CPUs of the NIC's node (with one, that CPU and another).
        type: str
      seconds:
        description: How long testpmd runs.
        type: int
        default: 20
  vendor_mismatch:
    description:
      - What to do when virt-host-validate's IOMMU checks fail because the CPU and the IOMMU come from two
        vendors (the CPU shows svm, so the tool looks for AMD's IVRS table, and the firmware has Intel's DMAR).
        Under QEMU's TCG the lab's CPU is AMD-like while its vIOMMU is Intel's (see the vendor table in the
        guide "What your software will see").
      - V(fail) fails like any other disagreement. V(report) keeps C(passed) of RV(verdicts) C(.virt_host_validate) false,
        gives the reason in its C(accepted) and does not fail.
      - Only that case is reported - the support check names the table the CPU made it look for, and the kernel
        check, when printed, passes. Any other failure of the IOMMU checks fails either way.
    type: str
    choices: [fail, report]
    default: fail
extends_documentation_fragment:
  - nestlab.pci.expectations
attributes:
  check_mode:
    support: partial
    description: The validators only read and run the same in check mode, except one.
    details: V(dpdk) is skipped in check mode (it binds the NIC to vfio-pci for its run).
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything; DPDK's NIC goes back to the driver it had.
notes:
  - The tools must be installed in the guest (Debian packages C(libvirt-clients), C(hwloc-nox), C(numactl);
    for DPDK C(dpdk), C(dpdk-dev) and the PMD of the NIC, such as C(librte-net-e1000-23) for e1000e, igb and igb's
    virtual functions, with C(librte-mempool-ring23));
    the role M(nestlab.pci.guest_validate) installs the missing ones from the guest's own package sources.
"""

EXAMPLES = r"""
- name: Ask libvirt, hwloc and numactl whether the virtual host is what the lab promises
  nestlab.pci.guest_validate:
    expect_spec: "{{ nestlab_spec }}"
    expect_plan: "{{ nestlab_plan }}"
  register: verdicts
"""

RETURN = r"""
verdicts:
  description:
    - Per validator that ran, whether it agrees with the lab, what disagrees, the command and its output (hwloc's
      as one line per lab NIC with the nodes hwloc puts it under; numactl's without the free memory lines).
  returned: always
  type: dict
  sample:
    hwloc: {passed: true, problems: [], command: "lstopo-no-graphics --of xml -", output: "0000:df:00.0 node 2"}
    virt_host_validate:
      passed: false
      accepted: "the CPU shows svm, so tools look for the IVRS table (AMD-Vi), but the firmware has DMAR (Intel VT-d)"
      problems: ["virt-host-validate: Checking for device assignment IOMMU support: WARN (No ACPI IVRS table found, ...)"]
report:
  description:
    - RV(verdicts) as a lab's report keeps them, the same from one run of an unchanged lab to the next - for
      V(dpdk), C(facts.packets_sent) instead of testpmd's packet counters, and its output without the counter lines.
  returned: always
  type: dict
  sample:
    dpdk: {passed: true, problems: [], facts: {device: "0000:dd:00.0", node: 2, socket: 2, packets_sent: true}}
summary:
  description: One line per validator - passed, or not and why it was accepted.
  returned: always
  type: list
  elements: str
  sample: ["hwloc: passed", "numactl: passed", "virt_host_validate: NOT passed (accepted: the CPU shows svm, ...)"]
platform:
  description: The CPU's virtualization flag, the firmware's IOMMU tables, and whether a vendor-minded tool finds them consistent.
  returned: always
  type: dict
  sample: {cpu_flag: svm, iommu_tables: [DMAR], consistent: false, reason: "the CPU shows svm, ..."}
"""

import os
import re
import shutil
import subprocess

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import validators as v
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import xmlengine
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import NestlabError, SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guestview import expectations_from_plan
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec

# per validator: the programs that can run it (the first found), their arguments, the package that has them
TOOLS = {
    "virt_host_validate": (("virt-host-validate",), ["qemu"], "libvirt-clients"),
    "hwloc": (("lstopo-no-graphics", "lstopo"), ["--of", "xml", "-"], "hwloc-nox"),
    "numactl": (("numactl",), ["--hardware"], "numactl"),
}


def _run(name):
    programs, args, package = TOOLS[name]
    found = next(filter(None, map(shutil.which, programs)), None)
    if found is None:
        return None, "%s is not installed (Debian package %s)" % (" or ".join(programs), package)
    proc = subprocess.run([found] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, env=dict(os.environ, LC_ALL="C"))
    return (os.path.basename(found) + " " + " ".join(args), proc.stdout), None


def _cpu_flags(path="/proc/cpuinfo"):
    with open(path) as handle:
        for line in handle:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _acpi_tables(path="/sys/firmware/acpi/tables"):
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


DPDK_PACKAGES = "dpdk, dpdk-dev, librte-mempool-ring23 and the NIC's PMD (librte-net-e1000-23 for e1000e and igb)"
_TESTPMD_LINES = re.compile(r"EAL: (Using IOMMU|Probe PCI|VFIO)|mbuf pool|Configuring Port|Port \d+: |link state|"
                            r"Forward statistics|TX-packets|RX-packets")


def _driver(device):
    link = "/sys/bus/pci/devices/%s/driver" % device
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def _virtual_functions(pf, sysfs="/sys/bus/pci/devices"):
    """The addresses of ``pf``'s SR-IOV virtual functions, in VF order (virtfn0, virtfn1, ...)."""
    links = [name for name in os.listdir(os.path.join(sysfs, pf)) if name.startswith("virtfn")] \
        if os.path.isdir(os.path.join(sysfs, pf)) else []
    return [os.path.basename(os.readlink(os.path.join(sysfs, pf, name)))
            for name in sorted(links, key=lambda name: int(name[len("virtfn"):]))]


def _down_pf(vf, sysfs="/sys/bus/pci/devices"):
    """The network interface of ``vf``'s physical function when that interface is down, else None (also for a
    device that is not a VF)."""
    net = os.path.join(sysfs, vf, "physfn", "net")
    for name in sorted(os.listdir(net)) if os.path.isdir(net) else []:
        try:
            with open(os.path.join(net, name, "flags")) as handle:
                if not int(handle.read().strip(), 16) & 1:     # IFF_UP
                    return name
        except (IOError, ValueError):
            continue
    return None


def _dpdk(opts, exp, spec):
    """(command, problems, shown, facts): testpmd on one lab NIC, or one of its virtual functions, given back
    to its driver afterwards."""
    nics = dict((nic["address"], nic["node"]) for nic in exp["nics"])
    vfs = dict((nic["address"], _virtual_functions(nic["address"])) for nic in exp["nics"] if nic.get("vfs"))
    for pf, addresses in vfs.items():
        nics.update((vf, nics[pf]) for vf in addresses)
    last = [nic for nic in exp["nics"] if nic["node"] == exp["nics"][-1]["node"]] if exp["nics"] else [{}]
    # a PF with virtual functions stays with its driver (taking it would take the VFs away): its first VF
    first = last[0].get("address")
    first = (vfs.get(first) or [first])[0]
    device = opts.get("device") or first
    if device not in nics:
        return None, ["dpdk.device: %r is not a NIC of the lab or one of its virtual functions (%s)"
                      % (device, ", ".join(sorted(nics)))], "", {}
    node = nics[device]
    cpus = next(cell["cpus"] for cell in spec["numa"] if cell["id"] == node)
    # testpmd's main lcore and a forwarding one: two CPUs of the node, or its one CPU and another
    other = next(cpu for cell in spec["numa"] for cpu in cell["cpus"] if cpu != cpus[0]) if len(cpus) == 1 else cpus[-1]
    cores = opts.get("cores") or "%d,%d" % (cpus[0], other)
    testpmd, devbind = shutil.which("dpdk-testpmd"), shutil.which("dpdk-devbind.py")
    if not testpmd or not devbind:
        return None, ["dpdk-testpmd or dpdk-devbind.py is not installed (Debian packages %s)" % DPDK_PACKAGES], "", {}
    command = ["timeout", "-s", "INT", str(opts.get("seconds") or 20), testpmd] + v.testpmd_args(cores, device)
    before = _driver(device)
    subprocess.run(["modprobe", "vfio-pci"], check=False)
    bind = subprocess.run([devbind, "-b", "vfio-pci", device], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    try:
        out = bind.stdout if bind.returncode else subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False).stdout
    finally:
        subprocess.run([devbind, "-b", before, device] if before else [devbind, "-u", device],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    seen = v.parse_testpmd(out, device)
    problems = v.judge_testpmd(seen, device, node, _driver(device), before)
    if bind.returncode:
        problems.insert(0, "dpdk-devbind.py could not bind %s to vfio-pci: %s" % (device, bind.stdout.strip()))
    down = _down_pf(device) if problems else None
    if down:
        problems.append("the interface of %s's physical function, %s, is down: a VF resets through its PF's mailbox, "
                        "which the PF's driver answers only while it is up (role guest_sriov brings it up)"
                        % (device, down))
    shown = "\n".join(line for line in out.splitlines() if _TESTPMD_LINES.search(line))
    return " ".join(command[4:]), problems, shown, dict(seen, device=device, node=node)


def _judge(name, text, spec, exp, plat):
    if name == "virt_host_validate":
        return v.judge_virt_host_validate(v.parse_virt_host_validate(text), plat), text
    if name == "hwloc":
        seen = v.parse_hwloc(text)
        addrs = [addr for nic in exp["nics"] for addr in [nic["address"].lower()] + v.virtual_functions(seen, nic["address"])]
        shown = "\n".join("%s node %s" % (addr, ",".join(str(n) for n in seen["pci"].get(addr, {}).get("nodes", [])) or "-")
                          for addr in addrs)
        return v.judge_hwloc(seen, exp["nics"]), shown
    # without the free memory of each node, which changes from one run to the next (the report stays the same)
    shown = "\n".join(line for line in text.splitlines() if not re.match(r"^node \d+ free:", line))
    return v.judge_numactl(v.parse_numactl(text), spec["numa"]), shown


# testpmd's counters, which differ from one run to the next
_COUNTERS = re.compile(r"(RX|TX)-(packets|missed|errors|dropped|total|bytes)|[RT]x-[pb]ps")
# the port's MAC: a VF whose PF assigned it none takes a random one at each reset
_PORT_MAC = re.compile(r"^Port \d+: ([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")


def _for_report(verdicts):
    """The verdicts as a lab's report keeps them: the same from one run of an unchanged lab to the next, so
    DPDK's packet counters become whether packets were sent (its check already required that they were), and
    the port's MAC line goes (a VF's changes at every reset)."""
    kept = dict(verdicts)
    dpdk = verdicts.get("dpdk")
    if dpdk and dpdk.get("facts"):
        facts = dict((k, v) for k, v in dpdk["facts"].items() if k not in ("tx_packets", "rx_packets"))
        facts["packets_sent"] = bool(dpdk["facts"].get("tx_packets"))
        lines = [line for line in dpdk["output"].splitlines() if not _COUNTERS.search(line) and not _PORT_MAC.match(line)]
        kept["dpdk"] = dict(dpdk, facts=facts, output="\n".join(lines))
    return kept


def _said(verdict):
    if verdict["passed"]:
        return "passed"
    if "skipped" in verdict:
        return "skipped (%s)" % verdict["skipped"]
    return "NOT passed (accepted: %s)" % verdict["accepted"] if "accepted" in verdict else "NOT passed"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            expect_spec=dict(type="dict"),
            expect_plan=dict(type="list", elements="dict"),
            validators=dict(type="list", elements="str", choices=sorted(TOOLS) + ["dpdk"],
                            default=["virt_host_validate", "hwloc", "numactl"]),
            dpdk=dict(type="dict", default={}, options=dict(
                device=dict(type="str"), cores=dict(type="str"), seconds=dict(type="int", default=20))),
            vendor_mismatch=dict(type="str", choices=["fail", "report"], default="fail"),
        ),
        supports_check_mode=True,
    )
    if not xmlengine.HAS_LXML:
        module.fail_json(msg=missing_required_lib("lxml"), exception=str(xmlengine.LXML_IMPORT_ERROR))
    error = None
    if module.params["expect_plan"] is None:
        module.fail_json(msg="expect_plan: None is not valid; give the plan that lab_topology returned "
                             "(the validators judge the lab's NICs by it)")
    try:
        spec = validate_spec(module.params["expect_spec"] or {}, "expect_spec")
        exp = expectations_from_plan(spec, module.params["expect_plan"])
    except SpecError as exc:
        error = exc.msg
    except KeyError as exc:
        error = "expect_plan: an entry has no %s; give the plan that lab_topology returned" % exc
    except TypeError as exc:
        error = "expect_plan: not a plan that lab_topology returned (%s)" % exc
    if error:
        module.fail_json(msg=error)
    plat = v.platform(_cpu_flags(), _acpi_tables())
    verdicts, failing = {}, []
    for name in module.params["validators"]:
        if name == "dpdk":
            if module.check_mode:
                verdicts[name] = {"passed": None, "skipped": "check mode: DPDK binds the NIC to vfio-pci for its run",
                                  "problems": [], "command": None, "output": ""}
                continue
            command, problems, shown, facts = _dpdk(module.params["dpdk"], exp, spec)
            verdicts[name] = {"command": command, "passed": not problems, "problems": problems, "output": shown,
                              "facts": facts}
            if problems:
                failing.append(name)
            continue
        ran, missing = _run(name)
        verdict = {"command": ran[0] if ran else None}
        try:
            problems, shown = ([missing], "") if missing else _judge(name, ran[1], spec, exp, plat)
        except (NestlabError, ValueError) as exc:
            problems, shown = ["%s: cannot read its output: %s" % (verdict["command"], getattr(exc, "msg", exc))], ran[1]
        verdict.update(passed=not problems, problems=problems, output=shown)
        if (problems and name == "virt_host_validate" and not missing and module.params["vendor_mismatch"] == "report"
                and v.only_the_vendor_mismatch(v.parse_virt_host_validate(ran[1]), plat)):
            verdict["accepted"] = plat["reason"]
        elif problems:
            failing.append(name)
        verdicts[name] = verdict
    summary = ["%s: %s" % (name, _said(verdict)) for name, verdict in sorted(verdicts.items())]
    result = {"changed": False, "verdicts": verdicts, "platform": plat, "summary": summary,
              "report": _for_report(verdicts)}
    if failing:
        module.fail_json(msg="the virtual host is not what the lab promises, say its validators:\n- %s"
                             % "\n- ".join(p for name in failing for p in verdicts[name]["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
