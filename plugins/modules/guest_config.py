# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: guest_config
short_description: Put a role's files, directories and systemd unit states in place, in one call
version_added: 0.1.0
description:
  - Makes directories, writes whole files with their mode, removes paths, and enables, disables or
    starts systemd units, each only where the host differs, all in one module call.
  - The writing counterpart of M(nestlab.pci.guest_state), and for the same reason. Under TCG every
    task costs 1.5 to 4.5 s whatever it does, so a role that would need a C(file), three C(copy)
    and a C(systemd_service) task makes one call instead.
  - Every argument is checked before anything is written. A file is written to a temporary file
    beside it and renamed into place, so a reader sees the old or the new content, never a part.
  - When a file under a systemd unit directory changed and systemd runs, the unit files are reloaded
    (C(systemctl daemon-reload)) before units are enabled or started.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  directories:
    description: Directories to make (with their parents) when they are missing. Existing ones are left as they are.
    type: list
    elements: path
    default: []
  directory_mode:
    description: The mode of the directories this call makes, as octal text.
    type: str
    default: "0755"
  files:
    description: Files that must exist with this whole content and mode. Their directory must exist or be in O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file (an absolute path).
        type: path
        required: true
      content:
        description: Its whole content.
        type: str
        required: true
      mode:
        description: Its mode, as octal text.
        type: str
        default: "0644"
  absent:
    description: Files or links to remove. A directory is refused.
    type: list
    elements: path
    default: []
  units_enabled:
    description: systemd units to enable (C(systemctl enable), one call for all that are not yet enabled).
    type: list
    elements: str
    default: []
  units_disabled:
    description: systemd units to disable.
    type: list
    elements: str
    default: []
  units_started:
    description: systemd units to start when they are not active (needs systemd running).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reads the host and reports every change it would make; writes, removes and runs nothing.
  diff_mode:
    support: full
    description: Before and after of every file it writes or removes, and of every unit state it changes.
  idempotent:
    support: full
    description: A second call with the same arguments changes nothing.
"""

EXAMPLES = r"""
- name: Set huge pages at every boot
  nestlab.pci.guest_config:
    directories: [/etc/nestlab]
    files:
      - {path: /etc/nestlab/hugepages.conf, content: "0 256\n1 128\n"}
      - {path: /usr/local/sbin/nestlab-hugepages, content: "{{ lookup('ansible.builtin.file', 'hugepages.sh') }}", mode: "0755"}
      - {path: /etc/systemd/system/nestlab-hugepages.service, content: "{{ unit_text }}"}
    units_enabled: [nestlab-hugepages.service]
"""

RETURN = r"""
changes:
  description: One line per change made (or, in check mode, that would be made), in the order made.
  returned: always
  type: list
  elements: str
  sample: ["/etc/nestlab: made", "/etc/nestlab/hugepages.conf: written", "nestlab-hugepages.service: enabled"]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import atomic_write
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guest import (
    active_units,
    file_mode,
    is_unit_file,
    mode_error,
    read_text,
    systemd_running,
    unit_enabled,
)


def check_arguments(params):
    """Every problem with the arguments, before anything is touched."""
    errors = []
    error = mode_error("directory_mode", params["directory_mode"])
    if error:
        errors.append(error)
    made = set(os.path.normpath(path) for path in params["directories"])
    for index, path in enumerate(params["directories"]):
        if not os.path.isabs(path):
            errors.append("directories[%d]: %r is not valid; give an absolute path" % (index, path))
        elif os.path.lexists(path) and not os.path.isdir(path):
            errors.append("directories[%d]: %r exists and is not a directory" % (index, path))
    for index, item in enumerate(params["files"]):
        path = item["path"]
        error = mode_error("files[%d].mode" % index, item["mode"])
        if error:
            errors.append(error)
        if not os.path.isabs(path):
            errors.append("files[%d].path: %r is not valid; give an absolute path" % (index, path))
        elif os.path.isdir(path):
            errors.append("files[%d].path: %r is a directory; give a file" % (index, path))
        elif not os.path.isdir(os.path.dirname(path)) and not any(
                os.path.dirname(path) == parent or os.path.dirname(path).startswith(parent + "/") for parent in made):
            errors.append("files[%d].path: the directory of %r does not exist; add it to directories" % (index, path))
    for index, path in enumerate(params["absent"]):
        if not os.path.isabs(path):
            errors.append("absent[%d]: %r is not valid; give an absolute path" % (index, path))
        elif os.path.isdir(path) and not os.path.islink(path):
            errors.append("absent[%d]: %r is a directory; only files and links are removed" % (index, path))
    both = set(params["units_enabled"]) & set(params["units_disabled"])
    if both:
        errors.append("units_enabled, units_disabled: %s in both; give each unit one state" % ", ".join(sorted(both)))
    if params["units_started"] and not systemd_running():
        errors.append("units_started: %s asked for, but systemd is not running on this host (no /run/systemd/system)"
                      % ", ".join(params["units_started"]))
    return errors


def plan(module, params):
    """(changes, diffs, work): what differs, and the steps that would bring the host to it."""
    changes, diffs, work = [], [], []
    for path in params["directories"]:
        if not os.path.isdir(path):
            changes.append("%s: made" % path)
            diffs.append({"before_header": path, "after_header": path, "before": "absent\n", "after": "directory\n"})
            work.append(("mkdir", path, None))
    for item in params["files"]:
        path, content, mode = item["path"], item["content"], int(item["mode"], 8)
        have = read_text(path) if os.path.isfile(path) else None
        if have != content:
            changes.append("%s: written" % path)
            diffs.append({"before_header": path, "after_header": path, "before": have or "", "after": content})
            work.append(("write", path, item))
        elif file_mode(path) != mode:
            have_mode = "%04o" % file_mode(path)
            changes.append("%s: mode %s to %s" % (path, have_mode, item["mode"]))
            diffs.append({"before_header": path, "after_header": path,
                          "before": "mode %s\n" % have_mode, "after": "mode %s\n" % item["mode"]})
            work.append(("chmod", path, item))
    for path in params["absent"]:
        if os.path.lexists(path):
            changes.append("%s: removed" % path)
            diffs.append({"before_header": path, "after_header": path,
                          "before": read_text(path, ""), "after": ""})
            work.append(("remove", path, None))
    if systemd_running() and any(kind != "mkdir" and is_unit_file(path) for kind, path, dummy in work):
        work.append(("systemctl", None, ["daemon-reload"]))
    for verb, units, test in (("enable", params["units_enabled"], lambda unit: not unit_enabled(unit)),
                              ("disable", params["units_disabled"], unit_enabled)):
        todo = [unit for unit in units if test(unit)]
        if todo:
            changes.extend("%s: %sd" % (unit, verb) for unit in todo)
            diffs.append({"before_header": "systemd units", "after_header": "systemd units",
                          "before": "".join("%s: %s\n" % (unit, "disabled" if verb == "enable" else "enabled")
                                            for unit in todo),
                          "after": "".join("%s: %sd\n" % (unit, verb) for unit in todo)})
            work.append(("systemctl", None, [verb] + todo))
    if params["units_started"]:
        active = active_units(module, params["units_started"])
        todo = [unit for unit in params["units_started"] if unit not in active]
        if todo:
            changes.extend("%s: started" % unit for unit in todo)
            diffs.append({"before_header": "systemd units", "after_header": "systemd units",
                          "before": "".join("%s: inactive\n" % unit for unit in todo),
                          "after": "".join("%s: active\n" % unit for unit in todo)})
            work.append(("systemctl", None, ["start"] + todo))
    return changes, diffs, work


def apply(module, params, work):
    """Carry out the steps in order; a failure names the step and says whether earlier ones were made."""
    directory_mode = int(params["directory_mode"], 8)
    for done, (kind, path, arg) in enumerate(work):
        try:
            if kind == "mkdir":
                os.makedirs(path, directory_mode)
            elif kind == "write":
                atomic_write(path, arg["content"].encode("utf-8"), int(arg["mode"], 8))
            elif kind == "chmod":
                os.chmod(path, int(arg["mode"], 8))
            elif kind == "remove":
                os.unlink(path)
            else:
                rc, out, err = module.run_command(["systemctl"] + arg)
                if rc != 0:
                    module.fail_json(msg="systemctl %s failed (rc %d): %s; %d earlier step(s) were made"
                                     % (" ".join(arg), rc, (err or out).strip(), done), changed=done > 0)
        except (IOError, OSError) as exc:
            module.fail_json(msg="%s (%s): %s; %d earlier step(s) were made" % (path, kind, exc.strerror or exc, done),
                             changed=done > 0)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="path", default=[]),
            directory_mode=dict(type="str", default="0755"),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="str", default="0644"),
            )),
            absent=dict(type="list", elements="path", default=[]),
            units_enabled=dict(type="list", elements="str", default=[]),
            units_disabled=dict(type="list", elements="str", default=[]),
            units_started=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    errors = check_arguments(params)
    if errors:
        module.fail_json(msg="; ".join(errors), errors=errors)
    changes, diffs, work = plan(module, params)
    if work and not module.check_mode:
        apply(module, params, work)
    result = dict(changed=bool(changes), changes=changes)
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
