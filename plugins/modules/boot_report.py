# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: boot_report
short_description: Boot a small guest to power-off and check what it saw (assigned devices present, drivers bound)
version_added: 0.1.0
description:
  - Starts a defined, shut-off domain that boots a kernel with the initramfs of
    M(nestlab.pci.probe_initramfs), waits (bounded) until it powers itself off, and reads the report
    its init printed on the serial console - NUMA nodes, PCI devices with vendor, device and the
    driver bound to each, the IOMMU kernel lines.
  - With O(expect), fails unless every expected device is there with its driver bound, and lists
    what the guest did see.
  - The domain ends shut off, as it was, so the module reports no change. A guest that does not
    power off in time is stopped, and the message ends with its console.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  console_log:
    description: The file the domain's serial console goes to.
    type: path
    required: true
  timeout:
    description: Seconds the guest has to report and power off.
    type: int
    default: 180
  stamp:
    description:
      - A file that records a passed check together with a digest of everything it depended on - the
        domain's definition (devices, kernel, command line), the kernel and initramfs files (their inode,
        size and modification time), O(expect).
      - When the digest is unchanged, the recorded result is returned (RV(reused)) and the guest is not
        booted again, unless O(reverify=true). Without it, every run boots the guest.
    type: path
  reverify:
    description: Boot the guest even when O(stamp) records a passed check for the same inputs.
    type: bool
    default: false
  expect:
    description: Devices the guest must see, each with the driver that must bind to it.
    type: list
    elements: dict
    default: []
    suboptions:
      vendor_device:
        description: C(vendor:device) in hex, such as C(8086:10d3).
        type: str
        required: true
      driver:
        description: The driver that must be bound (omit to only require the device).
        type: str
extends_documentation_fragment:
  - nestlab.pci.domain
attributes:
  check_mode:
    support: full
    description: Does not boot the guest in check mode; reports nothing seen.
  diff_mode:
    support: none
    description: Nothing persistent changes.
  idempotent:
    support: full
    description: The domain ends shut off as it was; the boot leaves nothing behind but the console log.
"""

EXAMPLES = r"""
- name: Boot L2 and check that the assigned e1000e is there with its driver
  nestlab.pci.boot_report:
    name: nestlab-l2
    console_log: /var/lib/nestlab/l2/console.log
    expect:
      - vendor_device: "8086:10d3"
        driver: e1000e
  register: l2
"""

RETURN = r"""
seen:
  description: What the guest reported (see M(nestlab.pci.guest_topology_facts) for the layout).
  returned: unless in check mode
  type: dict
  sample: {pci: {"0000:01:00.0": {vendor: "8086", device: "10d3", driver: e1000e}}}
devices:
  description: The guest's PCI devices, one line each (address, vendor:device, driver).
  returned: unless in check mode
  type: list
  elements: str
  sample: ["0000:01:00.0 8086:10d3 e1000e"]
evidence:
  description: The report lines of the guest's console, as it printed them.
  returned: unless in check mode
  type: list
  elements: str
reused:
  description: The result is the one O(stamp) recorded for the same inputs; the guest was not booted now.
  returned: always
  type: bool
  sample: false
verified_at:
  description: When the check that this result comes from ran (UTC, ISO 8601).
  returned: unless in check mode
  type: str
  sample: "2026-11-26T02:40:00Z"
seconds:
  description: From start to power-off.
  returned: unless in check mode
  type: float
  sample: 14.2
"""

import hashlib
import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import atomic_write
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import BEGIN, END, parse_report
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import (
    console_tail,
    domain_argument_spec,
    libvirt,
    open_domain,
    require_libvirt,
    wait_until_off,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import parse, to_text


def check_expectations(seen, expect):
    """Every expected device present with its driver bound -> [] ; otherwise the problems, in words."""
    problems = []
    for want in expect:
        ids = want["vendor_device"].lower()
        matches = [(addr, dev) for addr, dev in sorted(seen["pci"].items())
                   if "%s:%s" % (dev["vendor"], dev["device"]) == ids]
        if not matches:
            problems.append("no device %s in the guest" % ids)
            continue
        if want.get("driver") and not any(dev["driver"] == want["driver"] for dummy, dev in matches):
            problems.append("device %s at %s has driver %s, not %s" % (
                ids, matches[0][0], matches[0][1]["driver"] or "(none)", want["driver"]))
    for failed in seen.get("insmod_failed", []):
        problems.append("the guest could not load the module %s" % failed)
    return problems


def inputs_digest(dom, expect):
    """A digest of what the check depends on: the definition, the files it boots, the expectations."""
    root = parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    # libvirt re-saves a definition when the domain starts and may reorder the controllers it
    # added itself: the devices count as a set, not a sequence
    devices = root.find("devices")
    parts = sorted(to_text(child) for child in devices) if devices is not None else []
    if devices is not None:
        root.remove(devices)
    digest = hashlib.sha256(to_text(root).encode("utf-8"))
    for part in parts:
        digest.update(part.encode("utf-8"))
    for tag in ("kernel", "initrd"):
        path = root.findtext("os/" + tag)
        if path:
            # the file's identity (device, inode, size, modification time), not its bytes: hashing a
            # 66 MB uncompressed kernel costs seconds under TCG, and every writer here replaces a
            # file by renaming a new one into place, which changes the inode and the time
            try:
                st = os.stat(path)
                digest.update(("%s %d %d %d %d\n" % (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)).encode())
            except (IOError, OSError):
                digest.update(b"missing " + path.encode("utf-8"))
    digest.update(json.dumps(expect, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def read_stamp(path, digest):
    try:
        with open(path) as handle:
            stamp = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return stamp.get("result") if stamp.get("digest") == digest else None


def main():
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            console_log=dict(type="path", required=True),
            timeout=dict(type="int", default=180),
            stamp=dict(type="path"),
            reverify=dict(type="bool", default=False),
            expect=dict(type="list", elements="dict", default=[], options=dict(
                vendor_device=dict(type="str", required=True),
                driver=dict(type="str"),
            )),
        ),
        supports_check_mode=True,
    )
    require_libvirt(module)
    p = module.params
    for idx, want in enumerate(p["expect"]):
        if not re.match(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$", want["vendor_device"]):
            module.fail_json(msg="expect[%d].vendor_device: %r is not valid; vendor:device in hex, such as 8086:10d3"
                                 % (idx, want["vendor_device"]))
    if p["timeout"] < 1:
        module.fail_json(msg="timeout: %r is not valid; a number of seconds, 1 or more" % p["timeout"])
    dummy, dom = open_domain(module, p["uri"], p["name"])
    if dom.isActive():
        module.fail_json(msg="name: domain %s is running; the report boot needs it shut off" % p["name"])
    digest = inputs_digest(dom, p["expect"]) if p["stamp"] else None
    if digest and not p["reverify"]:
        recorded = read_stamp(p["stamp"], digest)
        if recorded is not None:
            module.exit_json(changed=False, reused=True, **recorded)
    if module.check_mode:
        module.exit_json(changed=False, skipped_boot=True, reused=False)
    # a boot that fails must not leave an earlier pass on record
    for stale in (p["stamp"], p["console_log"]):
        if stale and os.path.exists(stale):
            os.unlink(stale)
    started = time.time()
    try:
        dom.create()
    except libvirt.libvirtError as exc:
        module.fail_json(msg="cannot start %s: %s" % (p["name"], exc))
    if not wait_until_off(dom.isActive, p["timeout"]):
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        module.fail_json(msg="%s did not report and power off within %d s, so it was stopped; last console lines:\n%s"
                             % (p["name"], p["timeout"], console_tail(p["console_log"])))
    seconds = round(time.time() - started, 1)
    text = console_tail(p["console_log"], lines=10 ** 6, empty="")
    try:
        seen = parse_report(text)
    except ValueError as exc:
        module.fail_json(msg="%s powered off without a full report (%s); last console lines:\n%s"
                             % (p["name"], exc, console_tail(p["console_log"])), seconds=seconds)
    evidence = [line.strip("\r") for line in text.split(BEGIN, 1)[1].split(END, 1)[0].splitlines() if line.strip()]
    devices = ["%s %s:%s %s" % (addr, dev["vendor"], dev["device"], dev["driver"] or "-")
               for addr, dev in sorted(seen["pci"].items())]
    result = dict(changed=False, reused=False, seen=seen, devices=devices, evidence=evidence, seconds=seconds,
                  verified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
    problems = check_expectations(seen, p["expect"])
    if problems:
        module.fail_json(msg="%s does not see what it should: %s. Its PCI devices: %s"
                             % (p["name"], "; ".join(problems), ", ".join(devices) or "(none)"), **result)
    if digest:
        recorded = dict((k, v) for k, v in result.items() if k not in ("changed", "reused"))
        atomic_write(p["stamp"], json.dumps({"digest": digest, "result": recorded}).encode("utf-8"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
