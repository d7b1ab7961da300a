# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: lab_snapshot
short_description: Save a verified lab's running virtual host, list its saved states, and return to one
version_added: 0.1.0
description:
  - Runs on the hypervisor. O(state=present) saves the running lab domain as a libvirt snapshot of its
    memory and disks (kept inside the lab's qcow2 overlay), with a record beside it in O(state_dir) that
    holds the report of the verified lab (O(report)) and a digest of the domain's persistent definition.
  - O(state=reverted) returns the domain to a saved state, running, without a boot, and puts the saved
    report back at O(report). It is refused, with nothing done, when the domain's persistent definition
    changed since the save (libvirt would bring the old definition back with the old memory), and for a
    snapshot the collection did not save.
  - A saved state is the guest's memory as it was, so its clock stands at the time of the save, and connections
    opened since are gone. C(playbooks/reset.yml) sets the guest's clock, drops Ansible's old connection and
    checks the guest's topology from inside again.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  snapshot:
    description:
      - The saved state's name (1 to 64 letters, digits, C(.), C(_) or C(-)). Required unless O(state=listed).
    type: str
  state:
    description:
      - V(present) saves the running domain under O(snapshot); nothing changes when a state of that name exists.
      - V(absent) removes the saved state and its record; nothing changes when there is none.
      - V(reverted) returns the domain to the saved state. It always changes the domain (the guest's memory
        and disks go back), as a reboot does, so it is never reported unchanged.
      - V(listed) only returns RV(snapshots).
    type: str
    choices: [present, absent, reverted, listed]
    default: present
  state_dir:
    description: The directory of the records of the saved states (the lab's own directory on the hypervisor).
    type: path
    required: true
  report:
    description:
      - The report of the verified lab (written by C(playbooks/lab.yml)). Required for O(state=present), which
        refuses a lab without one; O(state=reverted) writes the saved report back to it.
    type: path
extends_documentation_fragment:
  - nestlab.pci.domain
attributes:
  check_mode:
    support: full
    description: Says what it would save, remove or return to, and does none of it.
  diff_mode:
    support: full
    description: The names of the saved states before and after; for V(reverted), the state the domain returns to.
  idempotent:
    support: partial
    description: V(present), V(absent) and V(listed) are; V(reverted) is an action and always changes the domain.
"""

EXAMPLES = r"""
- name: Save the verified lab
  nestlab.pci.lab_snapshot:
    name: nestlab
    snapshot: verified
    state_dir: /var/lib/nestlab/labs/nestlab/snapshots
    report: /var/lib/nestlab/reports/nestlab.json

- name: Return to it
  nestlab.pci.lab_snapshot:
    name: nestlab
    snapshot: verified
    state: reverted
    state_dir: /var/lib/nestlab/labs/nestlab/snapshots
    report: /var/lib/nestlab/reports/nestlab.json
"""

RETURN = r"""
snapshots:
  description: The domain's saved states after the run, oldest first.
  returned: success
  type: list
  elements: dict
  sample:
    - {name: verified, created: "2026-11-29 17:02:11 UTC", saved_by_nestlab: true, definition_changed: false, resettable: true}
report:
  description: The report saved with the state (O(state=reverted)), as it was put back at O(report).
  returned: when O(state=reverted)
  type: dict
seconds:
  description: How long libvirt took to save or return to the state.
  returned: when something was saved or returned to
  type: float
  sample: 4.2
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import files, savedstate
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import NestlabError, SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.virt import (
    domain_argument_spec,
    libvirt,
    open_domain,
    require_libvirt,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import HAS_LXML, LXML_IMPORT_ERROR, parse as parse_xml

SNAPSHOT_XML = ("<domainsnapshot><name>%s</name><description>nestlab.pci saved state of a verified lab (record: %s)"
                "</description></domainsnapshot>")


def snapshots_of(dom):
    """name -> creation time (seconds) of every snapshot of ``dom``."""
    out = {}
    for snap in dom.listAllSnapshots(0):
        root = parse_xml(snap.getXMLDesc(0))
        out[snap.getName()] = int(root.findtext("creationTime") or 0)
    return out


def free_bytes_for(inactive):
    """(the first writable file disk of the definition ``inactive``, bytes free on its filesystem), or (None, None)."""
    root = parse_xml(inactive)
    for disk in root.findall("./devices/disk"):
        source = disk.find("source")
        if disk.get("device", "disk") != "disk" or disk.find("readonly") is not None or source is None:
            continue
        path = source.get("file")
        if path:
            stat = os.statvfs(os.path.dirname(path))
            return path, stat.f_bavail * stat.f_frsize
    return None, None


def save(module, dom, p, result, snapshots, inactive, digest):
    if not dom.isActive():
        raise NestlabError("name: %s is not running; a saved state is of a running, verified lab (build or start"
                           " it with lab.yml)" % p["name"], field="name")
    report = read_report(p["report"])
    disk, free = free_bytes_for(inactive)
    memory = dom.info()[2] * 1024
    if free is not None and free < memory:
        raise NestlabError("name: the filesystem of %s has %d MiB free; saving the memory of %s (up to %d MiB) needs"
                           " more, so nothing was saved" % (disk, free >> 20, p["name"], memory >> 20), field="name")
    result["changed"] = True
    result["diff"]["after"]["snapshots"] = sorted(list(snapshots) + [p["snapshot"]])
    if module.check_mode:
        return
    started = time.time()
    dom.snapshotCreateXML(SNAPSHOT_XML % (p["snapshot"], savedstate.record_path(p["state_dir"], p["snapshot"])),
                          libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
    result["seconds"] = round(time.time() - started, 1)
    savedstate.write_record(p["state_dir"], savedstate.make_record(p["snapshot"], p["name"], digest, report))


def read_report(path):
    if not path:
        raise SpecError("report", path, "the path of the verified lab's report (lab.yml writes it)")
    try:
        with open(path) as handle:
            text = handle.read()
        report = json.loads(text)
    except (IOError, OSError, ValueError) as exc:
        raise NestlabError("report: %s cannot be read (%s); a saved state is of a lab that lab.yml verified, and"
                           " its report is the proof" % (path, exc), field="report")
    if not isinstance(report, dict) or not report.get("guest"):
        raise NestlabError("report: %s is not the report of a verified lab (no 'guest' section)" % path, field="report")
    return text


def revert(module, dom, p, result, snapshots, digest):
    record = savedstate.read_record(p["state_dir"], p["snapshot"])
    refusal = savedstate.refuse_reset(p["name"], p["snapshot"], record, digest, snapshots, p["state_dir"])
    if refusal is not None:
        raise refusal
    result["changed"] = True
    result["report"] = json.loads(record["report"])
    result["diff"]["before"]["state"] = "as it is"
    result["diff"]["after"]["state"] = "saved state %s of %s" % (p["snapshot"], savedstate.when(record["saved"]))
    if module.check_mode:
        return
    started = time.time()
    dom.revertToSnapshot(dom.snapshotLookupByName(p["snapshot"], 0), libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    result["seconds"] = round(time.time() - started, 1)
    if p["report"]:
        parent = os.path.dirname(p["report"])
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        # byte for byte as lab.yml wrote it: its next run finds nothing to change
        files.atomic_write(p["report"], record["report"].encode("utf-8"), mode=0o644)


def run(module):
    p = module.params
    if p["state"] != "listed":
        if p["snapshot"] is None:
            raise SpecError("snapshot", None, "required when state is %s" % p["state"])
        savedstate.check_name(p["snapshot"])
    dummy, dom = open_domain(module, p["uri"], p["name"])
    inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    digest = savedstate.definition_digest(inactive)
    snapshots = snapshots_of(dom)
    result = {"changed": False, "diff": {"before": {"snapshots": sorted(snapshots)}, "after": {"snapshots": sorted(snapshots)}}}
    name = p["snapshot"]
    if p["state"] == "present" and name not in snapshots:
        save(module, dom, p, result, snapshots, inactive, digest)
    elif p["state"] == "absent" and (name in snapshots or savedstate.read_record(p["state_dir"], name) is not None):
        result["changed"] = True
        result["diff"]["after"]["snapshots"] = sorted(s for s in snapshots if s != name)
        if not module.check_mode:
            if name in snapshots:
                dom.snapshotLookupByName(name, 0).delete(0)
            savedstate.remove_record(p["state_dir"], name)
    elif p["state"] == "reverted":
        revert(module, dom, p, result, snapshots, digest)
    if not module._diff:
        result.pop("diff")
    after = snapshots if module.check_mode else snapshots_of(dom)
    result["snapshots"] = savedstate.describe(after, p["state_dir"], digest)
    return result


def main():
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            snapshot=dict(type="str"),
            state=dict(type="str", choices=["present", "absent", "reverted", "listed"], default="present"),
            state_dir=dict(type="path", required=True),
            report=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if not HAS_LXML:
        module.fail_json(msg=missing_required_lib("lxml"), exception=str(LXML_IMPORT_ERROR))
    require_libvirt(module)
    failure = None
    try:
        result = run(module)
    except NestlabError as exc:
        failure = dict(msg=exc.msg, **exc.details)
    except libvirt.libvirtError as exc:
        failure = dict(msg="name: libvirt refused it for %s: %s" % (module.params["name"], exc))
    if failure is not None:  # outside the handler: a refusal is not a crash, so no traceback
        module.fail_json(**failure)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
