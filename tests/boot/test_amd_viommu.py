"""The AMD vIOMMU (spec iommu.model amd) as a libvirt and a QEMU that have it judge it: Debian trixie-backports'
libvirt and QEMU, in a Debian root of their own beside this host's (tests/boot/files/newer-hv.sh, built once
into CACHE), define the lab's definition with `virsh define --validate` (libvirt's RELAX NG schema and its
own checks) and start it: QEMU's amd-iommu with interrupt remapping and dma-remap on, as QEMU itself lists
its properties. The guest has no disk: the domain is destroyed again once QEMU runs it.

The collection's modules run there too, under that root's own Python, libvirt bindings and ansible-core: lab_topology with
iommu.model auto chooses the amd vIOMMU for L1's TCG CPU (AuthenticAMD), check-real-check, and the iommu
module's auto agrees. This host's own QEMU 7.2 and libvirt 9.0 lack the model: the modules refuse amd there
and auto chooses intel (tests/integration/test_modules_libvirt.py). That the device then works in a booted lab (virt-host-validate,
interrupt remapping, DPDK moving packets through it, L2 with the lab's NIC) is bench/iommu_vendors.py --newer
(bench/results/iommu-vendors-newer.json), which boots the lab's L1 on the same root."""

import json
import os
import re
import shutil
import subprocess
import time
import uuid

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


VIRSH = ["sh", SCRIPT, "exec", CACHE, "virsh"]


@pytest.fixture(scope="module")
def newer_hv():
    """The root built (or reused) and its libvirtd running; yields `virsh version` there."""
    built = _run(["sh", SCRIPT, "build", CACHE, SUITE], timeout=1800)
    assert built.returncode == 0, built.stdout[-3000:]
    hv = subprocess.Popen(["sh", SCRIPT, "run", CACHE], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        for dummy in range(60):
            version = _run(VIRSH + ["version"])
            if version.returncode == 0:
                break
            time.sleep(1)
        assert version.returncode == 0, version.stdout
        yield " ".join(version.stdout.split())
    finally:
        hv.kill()
        hv.wait()


def test_a_libvirt_and_qemu_with_the_amd_viommu_take_the_labs_definition_and_start_it(newer_hv):
    name = unique_name("amd")
    dom = Domain(new_domain(name, "qemu"))
    apply_lab(dom, validate_spec(SPEC), name, "tcg")
    path = "/var/lib/nestlab/%s.xml" % name       # /var/lib/nestlab is the root's too
    with open(path, "w") as handle:
        handle.write(to_text(dom.root))
    try:
        defined = _run(VIRSH + ["define", "--validate", path])
        assert defined.returncode == 0, defined.stdout
        started = _run(VIRSH + ["start", name])
        assert started.returncode == 0, started.stdout
        xml = _run(VIRSH + ["dumpxml", name]).stdout
        iommu = re.search(r"<iommu model='amd'>.*?</iommu>", xml, re.S)
        assert iommu and "<driver intremap='on'/>" in iommu.group(0), xml
        # QEMU's own view of the device it made (HMP info qtree): interrupt remapping and dma-remap on
        qtree = _run(VIRSH + ["qemu-monitor-command", name, "--hmp", "info qtree"]).stdout
        device = qtree.split('dev: amd-iommu, id ""', 1)
        assert len(device) == 2, qtree[-3000:]
        props = device[1].split("dev: ", 1)[0]
        assert re.search(r"dma-remap = true", props) and re.search(r'intremap = "on"', props), props
        print("%s took the lab's AMD vIOMMU; QEMU's amd-iommu:%s" % (newer_hv, " ".join(props.split())))
    finally:
        _run(VIRSH + ["destroy", name])
        _run(VIRSH + ["undefine", name])
        os.unlink(path)


@pytest.fixture
def modules_inside():
    """The collection's modules where the root's Python finds them (its plugins under /var/lib/nestlab, which
    the root shares), run with the root's own ansible-core (Debian's) as a target runs them. Yields
    run(module, args, check) -> the module's JSON result."""
    stage = "/var/lib/nestlab/nltest-py-%s" % uuid.uuid4().hex[:8]
    shutil.copytree(os.path.join(ROOT, "plugins"), os.path.join(stage, "ansible_collections", "nestlab", "pci",
                                                                "plugins"), ignore=shutil.ignore_patterns("__pycache__"))

    def run(module, args, check=False):
        with open(os.path.join(stage, "args.json"), "w") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}, handle)
        proc = _run(["sh", SCRIPT, "exec", CACHE, "env", "PYTHONPATH=" + stage, "python3", "-m",
                     "ansible_collections.nestlab.pci.plugins.modules." + module, os.path.join(stage, "args.json")])
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError("module %s printed no JSON:\n%s" % (module, proc.stdout[-3000:]))

    try:
        yield run
    finally:
        shutil.rmtree(stage)


def test_auto_chooses_the_amd_viommu_where_libvirt_and_qemu_have_it(newer_hv, modules_inside):
    """lab_topology with iommu.model auto, run by the root's Python against the root's libvirtd: L1 under TCG
    shows an AMD CPU, and this libvirt and QEMU have the amd vIOMMU, so it is chosen, with dma-remap;
    check-real-check, and the iommu module's auto agrees."""
    name = unique_name("auto")
    args = {"name": name, "spec": dict(SPEC, iommu={"model": "auto"})}
    try:
        runs = [modules_inside("lab_topology", args, check=True), modules_inside("lab_topology", args),
                modules_inside("lab_topology", args, check=True)]
        assert [r.get("failed") for r in runs] == [None] * 3, runs
        assert [r["changed"] for r in runs] == [True, True, False], runs
        assert runs[1]["accel"]["accel"] == "tcg", runs[1]["accel"]
        assert runs[1]["iommu"]["model"] == "amd" and "matches it" in runs[1]["iommu"]["reason"], runs[1]["iommu"]
        xml = _run(VIRSH + ["dumpxml", "--inactive", name]).stdout
        assert "<iommu model='amd'>" in xml and "amd-iommu.dma-remap=on" in xml, xml
        again = modules_inside("iommu", {"name": name, "model": "auto"}, check=True)
        assert (again.get("changed"), again.get("iommu", {}).get("model")) == (False, "amd"), again
        print("%s: %s" % (newer_hv, runs[1]["iommu"]["reason"]))
    finally:
        _run(VIRSH + ["undefine", name])
