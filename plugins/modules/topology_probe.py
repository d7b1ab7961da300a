# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: topology_probe
short_description: Boot a diskless copy of a lab domain and check what its guest sees
version_added: 0.1.0
description:
  - Copies the persistent definition of the lab domain into a transient probe domain
    (same CPUs, NUMA cells, expander buses, root ports, NICs and vIOMMU; no disks, no
    host devices, no QEMU pass-through arguments), boots a kernel directly with a small
    busybox initramfs, and reads the guest's own sysfs and kernel log from its serial console.
  - >-
    Checks that the guest sees what the definition promises - the NUMA nodes and their CPUs,
    every expander bus, every NIC behind an expander at the bus address the firmware gives
    it with its vendor and device IDs and its C(numa_node), an IOMMU group per NIC, and for the
    intel vIOMMU the kernel's C(Intel(R) Virtualization Technology for Directed I/O) and
    C(DMAR-IR: Enabled IRQ remapping) lines - and fails with a list of every mismatch.
  - The lab domain itself is not touched and may be running. The probe domain is gone when the
    module returns.
  - Under TCG the default lab's probe boot takes about 12 seconds on a 2-core host.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  kernel:
    description: A Linux kernel image for x86_64 (for example from Debian's linux-image package).
    type: path
    required: true
  busybox:
    description: A statically linked busybox binary for the initramfs.
    type: path
    default: /bin/busybox
  workdir:
    description: Directory for the initramfs and the console log; readable by the QEMU user.
    type: path
    default: /var/lib/nestlab/probe
  timeout:
    description: Seconds to wait for the probe to report and power off.
    type: int
    default: 300
  verify:
    description: Fail when the guest does not see what the domain definition promises.
    type: bool
    default: true
extends_documentation_fragment:
  - nestlab.pci.domain
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: Prove the lab's topology from inside a guest
  nestlab.pci.topology_probe:
    name: nestlab
    kernel: /var/cache/nestlab/kernel/boot/vmlinuz-6.1.0-28-amd64
  register: probe

- name: Show the guest's NUMA nodes
  ansible.builtin.debug:
    var: probe.facts.nodes
"""

RETURN = r"""
facts:
  description: What the guest saw.
  returned: when the probe reported
  type: dict
  sample:
    nodes: {"0": {cpus: [0, 1, 2, 3], memory_kib: 3995304}}
    buses: ["0000:00", "0000:b4", "0000:b5"]
    pci: {"0000:df:00.0": {vendor: "8086", device: "10d3", numa_node: 2, iommu_group: 14, driver: null}}
    dmesg: ["DMAR-IR: Enabled IRQ remapping in xapic mode"]
expected:
  description: What the domain definition promises (nodes, expanders, NICs with guest addresses, vIOMMU).
  returned: always
  type: dict
  sample: {nics: [{address: "0000:df:00.0", node: 2, model: e1000e}]}
summary:
  description: The stable part of RV(facts) (no timings or free-memory figures), per NIC with its node device name.
  returned: when the probe reported
  type: dict
  sample:
    nodes: {"2": {cpus: "6-7"}}
    expander_buses: ["0000:b4", "0000:c8", "0000:dc"]
    nics: [{address: "0000:df:00.0", node: 2, ids: "8086:10d3", iommu_group: 14, nodedev: pci_0000_df_00_0}]
    iommu_active: true
    interrupt_remapping: true
problems:
  description: Every mismatch between RV(expected) and RV(facts); empty when all is well.
  returned: when the probe reported
  type: list
  elements: str
  sample: []
seconds:
  description: Wall-clock seconds from probe start to power-off.
  returned: when the probe reported
  type: float
  sample: 12.4
console:
  description: The last lines of the probe's serial console.
  returned: always
  type: str
  sample: "[    3.7] reboot: Power down"
"""

import copy
import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import Domain
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import NestlabError, TargetError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import write_if_changed
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guestview import check, expectations, summary
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import (
    build_initramfs,
    kernel_cmdline,
    parse_report,
    probe_domain,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import DomainTarget, libvirt
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import (
    console_tail,
    domain_argument_spec,
    wait_until_off,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import HAS_LXML, LXML_IMPORT_ERROR, parse, to_text


def _destroy(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()
    except libvirt.libvirtError:
        pass


def run(module):
    params = module.params
    target = DomainTarget(params["uri"], params["name"])
    text = target.read()
    if text is None:
        raise TargetError("name: domain %r does not exist on %s" % (params["name"], params["uri"]))
    lab = Domain(parse(text))
    expected = expectations(lab)
    result = {"changed": False, "expected": expected, "console": ""}
    for path, what in ((params["kernel"], "kernel"), (params["busybox"], "busybox")):
        if not os.path.isfile(path):
            raise TargetError("%s: %s does not exist or is not a file" % (what, path))
    workdir = params["workdir"]
    os.makedirs(workdir, mode=0o755, exist_ok=True)
    initrd = os.path.join(workdir, "probe-initrd.gz")
    write_if_changed(initrd, build_initramfs(params["busybox"]))
    probe_name = "%s-nestlab-probe" % params["name"]
    console = os.path.join(workdir, "%s.console.log" % probe_name)
    if os.path.exists(console):
        os.unlink(console)
    probe = probe_domain(Domain(copy.deepcopy(lab.root)), probe_name, params["kernel"], initrd, console,
                         kernel_cmdline(expected["iommu"]))
    conn = target.conn
    _destroy(conn, probe_name)
    started = time.time()
    try:
        conn.createXML(to_text(probe.root), 0)
    except libvirt.libvirtError as exc:
        raise TargetError("libvirt could not start the probe domain %s: %s" % (probe_name, exc.get_error_message()))

    def alive():
        try:
            return conn.lookupByName(probe_name).isActive()
        except libvirt.libvirtError:
            return False

    try:
        if not wait_until_off(alive, params["timeout"]):
            result["console"] = console_tail(console, empty="")
            raise TargetError("the probe of %s did not power off within %d s; last console lines:\n%s"
                              % (params["name"], params["timeout"], result["console"]))
    finally:
        _destroy(conn, probe_name)
    result["seconds"] = round(time.time() - started, 1)
    with open(console, "rb") as handle:
        report = handle.read().decode("utf-8", "replace")
    result["console"] = console_tail(console, empty="")
    try:
        facts = parse_report(report)
    except ValueError as exc:
        raise TargetError("%s; last console lines:\n%s" % (exc, result["console"]))
    result["facts"] = facts
    result["summary"] = summary(facts, expected)
    result["problems"] = check(facts, expected)
    if params["verify"] and result["problems"]:
        module.fail_json(msg="the guest does not see what %s promises:\n- %s"
                             % (params["name"], "\n- ".join(result["problems"])), **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            kernel=dict(type="path", required=True),
            busybox=dict(type="path", default="/bin/busybox"),
            workdir=dict(type="path", default="/var/lib/nestlab/probe"),
            timeout=dict(type="int", default=300),
            verify=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    if not HAS_LXML:
        module.fail_json(msg=missing_required_lib("lxml"), exception=str(LXML_IMPORT_ERROR))
    try:
        result = run(module)
    except NestlabError as exc:
        module.fail_json(msg=exc.msg)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
