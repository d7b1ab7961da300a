# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: guest_state
short_description: Compare a host with what a role would make of it, in one call
version_added: 0.1.0
description:
  - Checks files (content and mode), absent paths, directories, enabled systemd units, loaded kernel
    modules and values under C(/proc) and C(/sys) against what a role wants, and reads other such
    files for the role's report, all in one module call.
  - Meant as the first task of a role that runs on a slow guest (under TCG every task costs 1.5 to
    4.5 s): when RV(satisfied) is true the role has nothing to change and can skip its other tasks.
  - It never changes anything.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  files:
    description: Files that must exist with this content (and mode, when given).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      content:
        description: Its whole content.
        type: str
        required: true
      mode:
        description: Its mode, as octal text such as C(0644).
        type: str
  absent:
    description: Paths that must not exist.
    type: list
    elements: path
    default: []
  directories:
    description: Paths that must be directories.
    type: list
    elements: path
    default: []
  units_enabled:
    description: systemd units that must be enabled (a link in a C(.wants) directory under C(/etc/systemd/system)).
    type: list
    elements: str
    default: []
  units_disabled:
    description: systemd units that must not be enabled.
    type: list
    elements: str
    default: []
  modules_loaded:
    description: Kernel modules that must be loaded (C(/sys/module/NAME) exists).
    type: list
    elements: str
    default: []
  values:
    description: Files (under C(/proc) or C(/sys) usually), each with the value its stripped content must equal.
    type: dict
    default: {}
  read:
    description: Files to read and return in RV(read) (missing ones give null).
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: Is there anything to do?
  nestlab.pci.guest_state:
    files:
      - {path: /etc/modules-load.d/nestlab-vfio.conf, content: "vfio-pci\n", mode: "0644"}
    modules_loaded: [vfio_pci]
    read: [/proc/interrupts]
  register: vfio_state
"""

RETURN = r"""
satisfied:
  description: True when every check holds.
  returned: always
  type: bool
differences:
  description: One line per check that does not hold.
  returned: always
  type: list
  elements: str
  sample: ["/etc/nestlab/hugepages.conf: content differs", "nestlab-hugepages.service: not enabled"]
read:
  description: The files asked for in O(read), path to content (null when missing).
  returned: always
  type: dict
"""

import glob
import os
import stat

from ansible.module_utils.basic import AnsibleModule


def read_text(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def check(params):
    differences = []
    for item in params["files"]:
        content = read_text(item["path"])
        if content is None:
            differences.append("%s: missing" % item["path"])
            continue
        if content != item["content"]:
            differences.append("%s: content differs" % item["path"])
        if item.get("mode"):
            have = stat.S_IMODE(os.stat(item["path"]).st_mode)
            if have != int(item["mode"], 8):
                differences.append("%s: mode %04o, not %s" % (item["path"], have, item["mode"]))
    for path in params["absent"]:
        if os.path.lexists(path):
            differences.append("%s: present" % path)
    for path in params["directories"]:
        if not os.path.isdir(path):
            differences.append("%s: not a directory" % path)
    for unit in params["units_enabled"]:
        if not glob.glob("/etc/systemd/system/*.wants/%s" % unit):
            differences.append("%s: not enabled" % unit)
    for unit in params["units_disabled"]:
        if glob.glob("/etc/systemd/system/*.wants/%s" % unit):
            differences.append("%s: enabled" % unit)
    for module in params["modules_loaded"]:
        if not os.path.isdir("/sys/module/%s" % module.replace("-", "_")):
            differences.append("module %s: not loaded" % module)
    for path, wanted in sorted(params["values"].items()):
        have = read_text(path)
        if have is None or have.strip() != str(wanted):
            differences.append("%s: %r, not %r" % (path, None if have is None else have.strip(), str(wanted)))
    return differences


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="str"),
            )),
            absent=dict(type="list", elements="path", default=[]),
            directories=dict(type="list", elements="path", default=[]),
            units_enabled=dict(type="list", elements="str", default=[]),
            units_disabled=dict(type="list", elements="str", default=[]),
            modules_loaded=dict(type="list", elements="str", default=[]),
            values=dict(type="dict", default={}),
            read=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    for item in module.params["files"]:
        mode = item.get("mode")
        if mode is not None and (not mode.isdigit() or any(c in "89" for c in mode) or len(mode) > 4):
            module.fail_json(msg="files[].mode: %r is not valid; give octal text such as '0644'" % mode)
    differences = check(module.params)
    module.exit_json(changed=False, satisfied=not differences, differences=differences,
                     read=dict((path, read_text(path)) for path in module.params["read"]))


if __name__ == "__main__":
    main()
