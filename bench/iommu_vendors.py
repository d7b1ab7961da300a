"""CPU and IOMMU from one vendor? The candidates booted on a running lab's virtual host (L1), each judged by
what other people's software says inside it: libvirt's virt-host-validate (its IOMMU checks), the kernel's
interrupt remapping line, and DPDK's testpmd moving packets through the vIOMMU on the lab's last NIC
(bound to vfio-pci, 25 s with --tx-first). The lab's definition is put back and L1 started again at the end.

    .venv/bin/python bench/iommu_vendors.py --lab nestlab [--write]

Candidates (the lab as built is the first):
  intel          the lab's own vIOMMU (libvirt <iommu model='intel'>)
  amd            no <iommu>; QEMU's amd-iommu (intremap=on) as the first argument of the lab's QEMU
                 command line, so that QEMU creates it before libvirt's devices; the device libvirt put
                 in slot 1 of pcie.0 moved to a free slot (amd-iommu takes slot 1)
  amd-replugged  as amd, then the NIC under test unplugged and plugged again (virsh detach-device and
                 attach-device --live) once L1 runs

DPDK comes from L1's own package sources when it is missing (apt-get in L1). Saves bench/results/iommu-vendors.json.

With --newer DIR the candidates run on a newer libvirt and QEMU than the host's: those of SUITE's backports
(--suite, default trixie) in a Debian root of their own (tests/boot/files/newer-hv.sh, built in DIR once), run in
namespaces beside the host's libvirtd. The lab's L1 is shut down on the host and boots there from a qcow2
overlay on its disk (its own disk is not written), as domain <lab>-newer:
  amd-libvirt            libvirt's own <iommu model='amd'> with <driver intremap='on'/>
  amd-libvirt-dma-remap  the same, with QEMU's amd-iommu property dma-remap=on (-global: libvirt has no
                         attribute for it)
and in each, L1's nested guest (the lab's L2, which has the lab's NIC on the last node) is started once and
its console read: the NIC's line from L2's init and its driver. Saves bench/results/iommu-vendors-newer.json;
the overlay and the domain are removed and L1 started on the host again at the end.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from lxml import etree

from _report import add_write_option, lab_ssh, newer_hv, save, testpmd_in_l1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import validators, xmlengine  # noqa: E402

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DPDK_PACKAGES = "dpdk-dev librte-net-e1000-23 librte-mempool-ring23"
SSH_WAIT = 600


def sh(args, check=True, **kwargs):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          stdin=subprocess.DEVNULL, check=check, **kwargs)


def in_l1(ssh, command, timeout=300):
    return subprocess.run(ssh + [command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          universal_newlines=True, timeout=timeout, check=False)


def boot(lab, xml, ssh, virsh=("virsh",)):
    """Define ``xml`` for ``lab``, start it, wait for SSH: seconds to SSH, or None. ``virsh``: the command
    that runs virsh on the hypervisor in question (the file it defines from is under /var/lib/nestlab)."""
    virsh = list(virsh)
    sh(virsh + ["destroy", lab], check=False)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", dir="/var/lib/nestlab") as handle:
        handle.write(xml)
        handle.flush()
        sh(virsh + ["define", handle.name])
    began = time.time()
    started = sh(virsh + ["start", lab], check=False)
    if started.returncode:
        return None, started.stdout.strip()
    while time.time() - began < SSH_WAIT:
        try:
            if in_l1(ssh + ["-o", "ConnectTimeout=10"], "true", timeout=30).returncode == 0:
                return round(time.time() - began, 1), ""
        except subprocess.TimeoutExpired:
            pass
        time.sleep(5)
    return None, "no SSH within %d s" % SSH_WAIT


def amd_xml(original):
    root = xmlengine.parse(original)
    for iommu in root.findall("devices/iommu"):
        iommu.getparent().remove(iommu)
    used = set(int(a.get("slot"), 16) for a in root.iter("address")
               if a.get("type") == "pci" and int(a.get("bus", "0"), 16) == 0)
    moved = None
    for addr in root.iter("address"):
        if addr.get("type") == "pci" and int(addr.get("bus", "0"), 16) == 0 and int(addr.get("slot"), 16) == 1:
            free = next(s for s in range(2, 0x1f) if s not in used)
            addr.set("slot", "0x%02x" % free)
            used.add(free)
            moved = "0x%02x" % free
    cmdline = root.find("{%s}commandline" % QEMU_NS)
    if cmdline is None:
        cmdline = etree.SubElement(root, "{%s}commandline" % QEMU_NS)
    for position, value in enumerate(("-device", "amd-iommu,intremap=on")):
        arg = etree.Element("{%s}arg" % QEMU_NS)
        arg.set("value", value)
        cmdline.insert(position, arg)
    return xmlengine.to_text(root), moved


def replug(lab, alias, address, ssh):
    live = xmlengine.parse(sh(["virsh", "dumpxml", lab]).stdout)
    nic = xmlengine.find_by_alias(live, alias)
    text = etree.tostring(nic, encoding="unicode")
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as handle:
        handle.write(text)
        handle.flush()
        sh(["virsh", "detach-device", lab, handle.name, "--live"])
        for dummy in range(60):
            if in_l1(ssh, "test -e /sys/bus/pci/devices/%s" % address).returncode:
                break
            time.sleep(2)
        sh(["virsh", "attach-device", lab, handle.name, "--live"])
        for dummy in range(60):
            if in_l1(ssh, "test -e /sys/bus/pci/devices/%s/driver" % address).returncode == 0:
                return True
            time.sleep(2)
    return False


def judge(ssh, dev, cores):
    row = {}
    flags = in_l1(ssh, "grep -m1 '^flags' /proc/cpuinfo").stdout.split()
    row["cpu_flag"] = "vmx" if "vmx" in flags else "svm" if "svm" in flags else None
    row["iommu_tables"] = in_l1(ssh, "cd /sys/firmware/acpi/tables && ls -d DMAR IVRS 2>/dev/null").stdout.split()
    vhv = in_l1(ssh, "virt-host-validate qemu").stdout
    row["virt_host_validate"] = [line.split("QEMU:", 1)[1].strip() for line in vhv.splitlines() if "IOMMU" in line]
    row["interrupt_remapping"] = in_l1(ssh, "dmesg | grep -E 'AMD-Vi: Interrupt remapping enabled|DMAR-IR: Enabled IRQ"
                                            " remapping' | sed 's/^\\[[ 0-9.]*\\] //'").stdout.strip()
    out, driver = testpmd_in_l1(ssh, dev, cores, "nlvendor")
    seen = validators.parse_testpmd(out, dev)
    row["dpdk"] = {"device": dev, "iommu": seen["iommu"], "socket": seen["socket"],
                   "tx_packets": seen["tx_packets"], "rx_packets": seen["rx_packets"], "back_to_kernel_driver": driver}
    return row


def newer_xml(original, name, overlay, port, old_port, dma_remap):
    """The lab's definition for the newer hypervisor: renamed, its disk an overlay, SSH on ``port``, and
    libvirt's own AMD IOMMU instead of Intel's (with QEMU's dma-remap when asked)."""
    root = xmlengine.parse(original)
    root.find("name").text = name
    for path in ("uuid", "devices/iommu", "devices/disk/backingStore"):
        for element in root.findall(path):
            element.getparent().remove(element)
    root.find("devices/disk/source").set("file", overlay)
    iommu = etree.SubElement(root.find("devices"), "iommu", model="amd")
    etree.SubElement(iommu, "driver", intremap="on")
    cmdline = root.find("{%s}commandline" % QEMU_NS)
    for arg in cmdline:
        arg.set("value", arg.get("value").replace("127.0.0.1:%s-" % old_port, "127.0.0.1:%s-" % port))
    for position, value in enumerate(("-global", "amd-iommu.dma-remap=on") if dma_remap else ()):
        arg = etree.Element("{%s}arg" % QEMU_NS)
        arg.set("value", value)
        cmdline.insert(position, arg)
    return xmlengine.to_text(root)


def l2_check(ssh, l2):
    """Start L1's nested guest once (it powers off by itself after its report) and read its console."""
    out = in_l1(ssh, "f=$(virsh dumpxml %s | grep -o \"<source path='[^']*'\" | head -1 | cut -d\"'\" -f2); : > \"$f\";"
                     " virsh start %s >/dev/null && for i in $(seq 1 120); do virsh domstate %s | grep -q 'shut off' && break;"
                     " sleep 5; done; virsh domstate %s; grep '^NL pci' \"$f\"" % ((l2,) * 4), timeout=900).stdout
    lines = out.splitlines()
    nics = [line for line in lines[1:] if " 0x020000 " in line]
    return {"state": lines[0].strip() if lines else "", "nic": nics[0] if nics else None}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def newer(args, report, ssh, dev, cores):
    """The candidates on SUITE's backports (see the module's text): a list of rows, and the versions."""
    hv, virsh, version = newer_hv(args.newer, args.suite)
    lab, name = args.lab, args.lab + "-newer"
    overlay = "/var/lib/nestlab/labs/%s/newer-overlay.qcow2" % lab
    old_port = ssh[ssh.index("-p") + 1]
    port = free_port()
    newer_ssh = [a if a != old_port else str(port) for a in ssh] + ["-o", "HostKeyAlias=[127.0.0.1]:%s" % old_port]
    rows, versions = [], {}
    try:
        versions = {"qemu": "QEMU " + version.split("Running hypervisor: QEMU ")[1].split()[0],
                    "libvirt": version.split("Using library: libvirt ")[1].split()[0]}
        original = sh(["virsh", "dumpxml", "--inactive", lab]).stdout
        sh(["virsh", "shutdown", lab], check=False)
        for dummy in range(120):
            if "shut off" in sh(["virsh", "domstate", lab], check=False).stdout:
                break
            time.sleep(2)
        disk = xmlengine.parse(original).find("devices/disk/source").get("file")
        for candidate, dma_remap in (("amd-libvirt", False), ("amd-libvirt-dma-remap", True)):
            # each candidate from the lab's disk as it is (its L1 the lab's), the host's lab untouched
            sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", disk, "-F", "qcow2", overlay])
            sh(["chmod", "0666", overlay])
            seconds, error = boot(name, newer_xml(original, name, overlay, port, old_port, dma_remap), newer_ssh, virsh)
            row = {"candidate": candidate, "booted": seconds is not None, "seconds_to_ssh": seconds, "error": error}
            if seconds is not None:
                row.update(judge(newer_ssh, dev, cores))
                row["l2"] = l2_check(newer_ssh, report["l2"].get("name") or "nestlab-l2")
            print(json.dumps(row, sort_keys=True), flush=True)
            rows.append(row)
            sh(virsh + ["destroy", name], check=False)
            sh(virsh + ["undefine", name], check=False)
            os.unlink(overlay)
    finally:
        hv.kill()
        hv.wait()
        if os.path.exists(overlay):
            os.unlink(overlay)
        seconds, error = boot(lab, sh(["virsh", "dumpxml", "--inactive", lab]).stdout, ssh)
        if seconds is None:
            print("L1 did not answer on the host again: %s" % error, file=sys.stderr)
    return rows, versions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", default="nestlab", help="a running lab whose report names its SSH command")
    parser.add_argument("--newer", metavar="DIR", help="run the amd-libvirt candidates on SUITE's backports (root in DIR)")
    parser.add_argument("--suite", default="trixie", help="the Debian release whose backports --newer uses")
    add_write_option(parser)
    args = parser.parse_args()
    report, ssh = lab_ssh(args.lab)
    last = report["plan"][-1]
    nic, node = last["nics"][-1], last["node"]
    dev, alias = nic["guest_address"], nic["alias"]
    cpus = report["guest"]["nodes"][str(node)]["cpus"].split("-")
    cores = "%s,%s" % (cpus[0], cpus[-1])
    install = in_l1(ssh, "command -v dpdk-testpmd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
                         " --no-install-recommends %s" % DPDK_PACKAGES, timeout=1800)
    if install.returncode:
        raise SystemExit("DPDK could not be installed in L1: %s" % install.stdout[-2000:])
    if args.newer:
        rows, versions = newer(args, report, ssh, dev, cores)
        save("iommu-vendors-newer", dict(versions, lab=args.lab, accel=report["accel"]["accel"], suite=args.suite,
                                         rows=rows), args.write)
        return
    original = sh(["virsh", "dumpxml", "--inactive", args.lab]).stdout
    amd, moved = amd_xml(original)
    rows = []
    try:
        for name, xml, plug in (("intel", original, False), ("amd", amd, False), ("amd-replugged", amd, True)):
            seconds, error = boot(args.lab, xml, ssh)
            row = {"candidate": name, "booted": seconds is not None, "seconds_to_ssh": seconds, "error": error}
            if seconds is not None:
                if plug:
                    row["replugged"] = replug(args.lab, alias, dev, ssh)
                row.update(judge(ssh, dev, cores))
            print(json.dumps(row, sort_keys=True), flush=True)
            rows.append(row)
    finally:
        seconds, error = boot(args.lab, original, ssh)
        if seconds is None:
            print("the lab's own definition is back but L1 did not answer: %s" % error, file=sys.stderr)
    qemu = sh(["qemu-system-x86_64", "--version"]).stdout.splitlines()[0]
    libvirt = sh(["virsh", "--version"]).stdout.strip()
    save("iommu-vendors", {"lab": args.lab, "accel": report["accel"]["accel"], "qemu": qemu, "libvirt": libvirt,
                           "moved_from_slot_1_to": moved, "rows": rows}, args.write)


if __name__ == "__main__":
    main()
