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
  - A boot that stops making progress - nothing new on its console for O(stall_timeout) seconds,
    as when a guest under TCG hangs early - is stopped and started again, O(attempts) boots in all.
    A kernel panic ends the check at once (booting again would panic again). The message says what
    each boot did, and RV(boots) returns it.
  - With O(pace_reference), the time bounds follow the machine the module runs on (for a nested
    guest that is its virtual host) a fixed workload is timed here and the bounds are multiplied by
    how many times longer it took than O(pace_reference) seconds, at least 1 (the bounds as given are
    the floor) and at most 8 times (the ceiling). RV(bounds) returns the bounds used.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  console_log:
    description: The file the domain's serial console goes to.
    type: path
    required: true
  timeout:
    description:
      - Seconds one boot has to report and power off (on the machine O(pace_reference) was measured on).
    type: int
    default: 180
  stall_timeout:
    description:
      - Seconds without new console output after which a boot counts as stuck, is stopped and, while
        O(attempts) allow, started again. C(0) turns the check off. Give the guest a kernel command line
        that prints as it boots (no C(quiet), no low C(loglevel)), or a normal boot may look stuck.
    type: int
    default: 0
  attempts:
    description: How many boots to try when a boot gets stuck or does not power off in time.
    type: int
    default: 1
  pace_reference:
    description:
      - Seconds the module's calibration workload (200000 rounds of integer arithmetic in Python, best of
        three) took on the machine O(timeout) and O(stall_timeout) were set for. With it, both are scaled to
        this machine (see the description). Without it, they are used as given.
      - The role C(nestlab.pci.nested_guest) passes the figure measured inside the default lab's virtual host
        on the machine its defaults were set on.
    type: float
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
  description: From start to power-off, of the boot that reported.
  returned: unless in check mode
  type: float
  sample: 14.2
boots:
  description:
    - Each boot this run made, in order, with how it ended - C(reported) (powered off with its report),
      C(stalled) (no new console output for the stall bound), C(timeout) (did not power off in time),
      C(panic) (the guest's kernel panicked) or C(stopped) (powered off without a full report) - after
      how many seconds, and how many bytes its console had.
  returned: when the guest was booted (from the record when RV(reused))
  type: list
  elements: dict
  sample: [{attempt: 1, outcome: stalled, seconds: 61.0, console_bytes: 0}, {attempt: 2, outcome: reported, seconds: 48.2, console_bytes: 20311}]
bounds:
  description:
    - The bounds this run used - O(timeout) and O(stall_timeout) scaled to this machine, O(attempts) - with
      the pace factor, the calibration workload's seconds here and the reference seconds.
  returned: when the guest was booted (from the record when RV(reused))
  type: dict
  sample: {timeout: 300, stall_timeout: 90, attempts: 2, pace: 1.0, workload_seconds: 0.38, reference_seconds: 0.41}
"""

import hashlib
import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import pace
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import atomic_write
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import BEGIN, END, parse_report
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import (
    ConsoleProgress,
    console_size,
    console_tail,
    domain_argument_spec,
    libvirt,
    open_domain,
    require_libvirt,
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


PANIC = "Kernel panic - not syncing"


def watch(dom, console_log, timeout, stall_timeout, poll=0.5):
    """Wait for a started guest. How it ended - 'off' (it powered itself off), 'panic', 'stalled' (no
    new console output for ``stall_timeout`` s) or 'timeout' - and after how many seconds."""
    started = time.time()
    progress = ConsoleProgress(console_log, stall_timeout, size=0)
    while dom.isActive():
        now = time.time()
        if progress.grew() and PANIC in console_tail(console_log, lines=10 ** 6, empty=""):
            return "panic", now - started
        if progress.stalled():
            return "stalled", now - started
        if now - started > timeout:
            return "timeout", now - started
        time.sleep(poll)
    return "off", time.time() - started


def describe(boot, bounds):
    """One boot that did not report, in words."""
    said = {
        "stalled": "printed nothing new for %d s" % bounds["stall_timeout"],
        "timeout": "did not report and power off within %d s" % bounds["timeout"],
        "panic": "panicked (%s)" % boot.get("panic", PANIC),
    }[boot["outcome"]]
    return "boot %d %s (after %.0f s, %d bytes on the console)" % (
        boot["attempt"], said, boot["seconds"], boot["console_bytes"])


def decide_bounds(params):
    """The bounds of this run: the given ones, scaled to this machine when a reference is given."""
    reference = params["pace_reference"]
    measured = pace.measure() if reference else None
    factor = pace.pace(measured, reference) if reference else 1.0
    return dict(timeout=pace.scaled(params["timeout"], factor), stall_timeout=pace.scaled(params["stall_timeout"], factor),
                attempts=params["attempts"], pace=factor, workload_seconds=round(measured, 3) if measured else None,
                reference_seconds=reference)


def say_bounds(bounds):
    text = "%d s a boot, %s, %d boot%s" % (
        bounds["timeout"], ("%d s without console output" % bounds["stall_timeout"]) if bounds["stall_timeout"]
        else "no stall check", bounds["attempts"], "" if bounds["attempts"] == 1 else "s")
    if bounds["reference_seconds"]:
        text += " (x%.2f for this machine: its workload took %.2f s, %.2f s where the bounds were set)" % (
            bounds["pace"], bounds["workload_seconds"], bounds["reference_seconds"])
    return text


def boot(module, dom, params, bounds):
    """Boot until one boot powers itself off (the boots, and when that one started and how long it ran) or
    fail with all of them."""
    boots = []
    for attempt in range(1, bounds["attempts"] + 1):
        if os.path.exists(params["console_log"]):
            os.unlink(params["console_log"])
        started = time.time()
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            module.fail_json(msg="cannot start %s: %s" % (params["name"], exc), boots=boots, bounds=bounds)
        outcome, seconds = watch(dom, params["console_log"], bounds["timeout"], bounds["stall_timeout"])
        record = dict(attempt=attempt, outcome="reported" if outcome == "off" else outcome,
                      seconds=round(seconds, 1), console_bytes=console_size(params["console_log"]))
        boots.append(record)
        if outcome == "off":
            return boots, started, seconds
        tail = console_tail(params["console_log"])
        if outcome == "panic":
            # the panic line without the kernel's time stamp
            record["panic"] = re.sub(r"^.*?(?=%s)" % PANIC, "", [line for line in tail.splitlines() if PANIC in line][-1]).strip()
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        if outcome == "panic":
            break
    done = "it was stopped" if boots[-1]["outcome"] != "panic" else "it was stopped; a panic is not retried"
    if len(boots) == 1 and boots[0]["outcome"] == "timeout":
        # the one-boot wording that callers and users know
        what = "did not report and power off within %d s, so it was stopped" % bounds["timeout"]
    else:
        what = "did not report and power off: %s; %s" % ("; ".join(describe(b, bounds) for b in boots), done)
    module.fail_json(msg="%s %s. Bounds: %s. Last console lines:\n%s"
                         % (params["name"], what, say_bounds(bounds), tail), boots=boots, bounds=bounds)


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
            stall_timeout=dict(type="int", default=0),
            attempts=dict(type="int", default=1),
            pace_reference=dict(type="float"),
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
    if p["stall_timeout"] < 0:
        module.fail_json(msg="stall_timeout: %r is not valid; a number of seconds, 0 (off) or more" % p["stall_timeout"])
    if not 1 <= p["attempts"] <= 10:
        module.fail_json(msg="attempts: %r is not valid; 1 to 10" % p["attempts"])
    if p["pace_reference"] is not None and not p["pace_reference"] > 0:
        module.fail_json(msg="pace_reference: %r is not valid; seconds, more than 0 (or leave it out)"
                             % p["pace_reference"])
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
    if p["stamp"] and os.path.exists(p["stamp"]):
        os.unlink(p["stamp"])
    bounds = decide_bounds(p)
    boots, started, seconds = boot(module, dom, p, bounds)
    seconds = round(seconds, 1)
    text = console_tail(p["console_log"], lines=10 ** 6, empty="")
    try:
        seen = parse_report(text)
    except ValueError as exc:
        boots[-1]["outcome"] = "stopped"
        module.fail_json(msg="%s powered off without a full report (%s); last console lines:\n%s"
                             % (p["name"], exc, console_tail(p["console_log"])), seconds=seconds, boots=boots,
                         bounds=bounds)
    evidence = [line.strip("\r") for line in text.split(BEGIN, 1)[1].split(END, 1)[0].splitlines() if line.strip()]
    devices = ["%s %s:%s %s" % (addr, dev["vendor"], dev["device"], dev["driver"] or "-")
               for addr, dev in sorted(seen["pci"].items())]
    result = dict(changed=False, reused=False, seen=seen, devices=devices, evidence=evidence, seconds=seconds,
                  boots=boots, bounds=bounds,
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
