# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Saved states of a verified lab: a libvirt snapshot of the running virtual host (memory and disks,
inside its qcow2 overlay) and a record beside it, kept by the collection, with the report of the
verified lab and a digest of the domain's persistent definition at the time of the save."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import time

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import files
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import NestlabError, SpecError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RECORD_VERSION = 1


def check_name(value):
    """A saved state's name, or SpecError naming what is allowed."""
    if not isinstance(value, str) or not NAME.match(value):
        raise SpecError("snapshot", value, "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def definition_digest(xml):
    """sha256 of a persistent definition as libvirt gives it (whitespace at line ends ignored)."""
    text = "\n".join(line.rstrip() for line in xml.strip().splitlines())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_path(state_dir, name):
    return os.path.join(state_dir, "%s.json" % name)


def read_record(state_dir, name):
    """The record of saved state ``name`` (a dict), or None when the collection did not save it."""
    try:
        with open(record_path(state_dir, name)) as handle:
            record = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def make_record(name, lab, digest, report, now=None):
    """``report``: the verified lab's report as its file holds it (text), to be put back byte for byte."""
    return {"version": RECORD_VERSION, "name": name, "lab": lab, "saved": int(time.time() if now is None else now),
            "definition_sha256": digest, "report": report}


def write_record(state_dir, record):
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o700)
    files.atomic_write(record_path(state_dir, record["name"]), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"),
                       mode=0o600)


def remove_record(state_dir, name):
    try:
        os.unlink(record_path(state_dir, name))
    except OSError:
        pass


def when(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def describe(snapshots, state_dir, digest):
    """What the saved states are: one dict per libvirt snapshot of the domain (``snapshots``: name ->
    creation time), in the order they were made."""
    out = []
    for name, created in sorted(snapshots.items(), key=lambda item: (item[1], item[0])):
        record = read_record(state_dir, name)
        entry = {"name": name, "created": when(created), "saved_by_nestlab": record is not None}
        if record is not None:
            entry["definition_changed"] = record["definition_sha256"] != digest
            entry["resettable"] = not entry["definition_changed"]
        else:
            entry["resettable"] = False
        out.append(entry)
    return out


def refuse_reset(lab, name, record, digest, snapshots, state_dir):
    """NestlabError when ``lab`` cannot return to saved state ``name``; None when it can."""
    if name not in snapshots:
        return NestlabError("snapshot: %r is not a saved state of %s; its saved states: %s" % (
            name, lab, ", ".join(sorted(snapshots)) or "none (save one with state=present)"), field="snapshot")
    if record is None:
        return NestlabError("snapshot: %r of %s was not saved by nestlab.pci (no record in %s); only a state saved"
                            " with state=present, with the report of a verified lab, can be reset to"
                            % (name, lab, state_dir), field="snapshot")
    if record["definition_sha256"] != digest:
        return NestlabError("snapshot: %r of %s was saved on %s with another definition of %s than it has now; a"
                            " reset would bring the old definition back with the old memory, so nothing was done."
                            " Save the lab again after lab.yml (under a new name), or remove %r (state=absent)"
                            % (name, lab, when(record["saved"]), lab, name), field="snapshot")
    return None
