"""The AMD vIOMMU (spec iommu.model amd) as a libvirt and a QEMU that have it judge it: Debian trixie-backports'
libvirt and QEMU, in a Debian root of their own beside this host's (tests/boot/files/newer-hv.sh, built once
into CACHE), define the lab's definition with `virsh define --validate` (libvirt's RELAX NG schema and its
own checks) and start it: QEMU's amd-iommu with interrupt remapping and dma-remap on, as QEMU itself lists
its properties. The guest has no disk: the domain is destroyed again once QEMU runs it.

This host's own QEMU 7.2 has no dma-remap, and the modules refuse the model there
(tests/integration/test_modules_libvirt.py). That the device then works in a booted lab (virt-host-validate,
interrupt remapping, DPDK moving packets through it, L2 with the lab's NIC) is bench/iommu_vendors.py --newer
(bench/results/iommu-vendors-newer.json), which boots the lab's L1 on the same root."""

import os
import re
import subprocess
import time

import pytest

from helpers import ROOT, unique_name

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import Domain, new_domain
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import apply_lab
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import to_text

pytestmark = [pytest.mark.slow]

SCRIPT = os.path.join(ROOT, "tests", "boot", "files", "newer-hv.sh")
CACHE = "/var/cache/nestlab/tests/newer-hv"
# the Debian release after this host's (bookworm), whose backports have libvirt's <iommu model='amd'>
SUITE = "trixie"
SPEC = {"iommu": {"model": "amd"},
        "numa": [{"cpus": 1, "memory": "256MiB", "nics": 1}, {"cpus": 1, "memory": "256MiB", "nics": 1}]}


def _run(args, timeout=120):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          universal_newlines=True, timeout=timeout, check=False)


def test_a_libvirt_and_qemu_with_the_amd_viommu_take_the_labs_definition_and_start_it():
    built = _run(["sh", SCRIPT, "build", CACHE, SUITE], timeout=1800)
    assert built.returncode == 0, built.stdout[-3000:]
    name = unique_name("amd")
    dom = Domain(new_domain(name, "qemu"))
    apply_lab(dom, validate_spec(SPEC), name, "tcg")
    path = "/var/lib/nestlab/%s.xml" % name       # /var/lib/nestlab is the root's too
    with open(path, "w") as handle:
        handle.write(to_text(dom.root))
    hv = subprocess.Popen(["sh", SCRIPT, "run", CACHE], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    virsh = None
    try:
        for dummy in range(60):
            children = _run(["pgrep", "-P", str(hv.pid)]).stdout.split()
            if children:
                virsh = ["nsenter", "-t", children[0], "-m", "-p", "chroot", os.path.join(CACHE, "root"), "virsh"]
                if _run(virsh + ["version"]).returncode == 0:
                    break
            time.sleep(1)
        version = _run(virsh + ["version"])
        assert version.returncode == 0, version.stdout
        defined = _run(virsh + ["define", "--validate", path])
        assert defined.returncode == 0, defined.stdout
        started = _run(virsh + ["start", name])
        assert started.returncode == 0, started.stdout
        xml = _run(virsh + ["dumpxml", name]).stdout
        iommu = re.search(r"<iommu model='amd'>.*?</iommu>", xml, re.S)
        assert iommu and "<driver intremap='on'/>" in iommu.group(0), xml
        # QEMU's own view of the device it made (HMP info qtree): interrupt remapping and dma-remap on
        qtree = _run(virsh + ["qemu-monitor-command", name, "--hmp", "info qtree"]).stdout
        device = qtree.split('dev: amd-iommu, id ""', 1)
        assert len(device) == 2, qtree[-3000:]
        props = device[1].split("dev: ", 1)[0]
        assert re.search(r"dma-remap = true", props) and re.search(r'intremap = "on"', props), props
        print("%s took the lab's AMD vIOMMU; QEMU's amd-iommu:%s" % (
            " ".join(version.stdout.split()), " ".join(props.split())))
    finally:
        if virsh:
            _run(virsh + ["destroy", name])
            _run(virsh + ["undefine", name])
        hv.kill()
        hv.wait()
        os.unlink(path)
