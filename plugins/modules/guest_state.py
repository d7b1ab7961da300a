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
    4.5 s); when RV(satisfied) is true, the role has nothing to change and can skip its other tasks.
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
  units_active:
    description: systemd units that must be active (one C(systemctl is-active) call for all of them).
    type: list
    elements: str
    default: []
  modules_loaded:
    description: Kernel modules that must be loaded (C(/sys/module/NAME) exists).
    type: list
    elements: str
    default: []
  modules_absent:
    description: Kernel modules that must not be loaded.
    type: list
    elements: str
    default: []
  packages:
    description:
      - Packages that must be installed, read from the dpkg status file where there is one,
        otherwise from one C(rpm -q) call.
    type: list
    elements: str
    default: []
  contains:
    description: Files that must contain a piece of text (each given literally).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      text:
        description: The text it must contain.
        type: str
        required: true
  values:
    description: Files (under C(/proc) or C(/sys) usually), each with the value its stripped content must equal.
    type: dict
    default: {}
  read:
    description: Files to read and return in RV(read) (missing ones give null).
    type: list
    elements: path
    default: []
  stat:
    description: Paths to describe in RV(stat) (type, mode, owner and group; nothing is checked).
    type: list
    elements: path
    default: []
  kernel_log:
    description:
      - Names, each with a regular expression; RV(kernel_log) gives the first line of the kernel log
        (C(dmesg)) that matches it, without its time stamp, or null. Nothing is checked.
    type: dict
    default: {}
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
stat:
  description: The paths asked for in O(stat); null for a path that does not exist.
  returned: always
  type: dict
  sample: {"/dev/kvm": {"type": "char", "mode": "0660", "owner": "root", "group": "kvm"}}
kernel_log:
  description: For each name in O(kernel_log), the first matching kernel log line or null.
  returned: always
  type: dict
  sample: {"dmar": "DMAR: Intel(R) Virtualization Technology for Directed I/O"}
"""

import grp
import os
import pwd
import re
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guest import (
    active_units,
    file_mode,
    mode_error,
    read_text,
    unit_enabled,
)


def installed_packages(module, names):
    """The subset of ``names`` that is installed (dpkg status file, else rpm)."""
    if not names:
        return set()
    status = read_text("/var/lib/dpkg/status")
    if status is not None:
        found = set()
        for stanza in status.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
            if fields.get("Status", "").endswith(" installed"):
                found.add(fields.get("Package"))
        return found & set(names)
    rc, out, dummy = module.run_command(["rpm", "-q", "--qf", "%{NAME}\\n"] + list(names))
    # a missing package gives a sentence ("package X is not installed"), an installed one its name
    return set(line.strip() for line in out.splitlines() if " " not in line.strip()) & set(names)


def describe(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    kinds = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISFIFO, "fifo"))
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"type": next((name for test, name in kinds if test(st.st_mode)), "other"),
            "mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": owner, "group": group}


def kernel_log(module, patterns):
    if not patterns:
        return {}
    rc, out, err = module.run_command(["dmesg"])
    if rc != 0:
        module.warn("dmesg failed (%s): kernel_log is null for every name" % (err.strip() or rc))
        out = ""
    lines = [re.sub(r"^\[[ 0-9.]*\] ", "", line) for line in out.splitlines()]
    return dict((name, next((line for line in lines if regex.search(line)), None))
                for name, regex in patterns.items())


def check(module, params):
    differences = []
    for item in params["files"]:
        content = read_text(item["path"])
        if content is None:
            differences.append("%s: missing" % item["path"])
            continue
        if content != item["content"]:
            differences.append("%s: content differs" % item["path"])
        if item.get("mode"):
            have = file_mode(item["path"])
            if have != int(item["mode"], 8):
                differences.append("%s: mode %04o, not %s" % (item["path"], have, item["mode"]))
    for path in params["absent"]:
        if os.path.lexists(path):
            differences.append("%s: present" % path)
    for path in params["directories"]:
        if not os.path.isdir(path):
            differences.append("%s: not a directory" % path)
    for unit in params["units_enabled"]:
        if not unit_enabled(unit):
            differences.append("%s: not enabled" % unit)
    for unit in params["units_disabled"]:
        if unit_enabled(unit):
            differences.append("%s: enabled" % unit)
    for name in params["modules_loaded"]:
        if not os.path.isdir("/sys/module/%s" % name.replace("-", "_")):
            differences.append("module %s: not loaded" % name)
    for name in params["modules_absent"]:
        if os.path.isdir("/sys/module/%s" % name.replace("-", "_")):
            differences.append("module %s: loaded" % name)
    active = active_units(module, params["units_active"])
    for unit in params["units_active"]:
        if unit not in active:
            differences.append("%s: not active" % unit)
    installed = installed_packages(module, params["packages"])
    for name in params["packages"]:
        if name not in installed:
            differences.append("package %s: not installed" % name)
    for item in params["contains"]:
        content = read_text(item["path"])
        if content is None:
            differences.append("%s: missing" % item["path"])
        elif item["text"] not in content:
            differences.append("%s: lacks %r" % (item["path"], item["text"]))
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
            units_active=dict(type="list", elements="str", default=[]),
            modules_loaded=dict(type="list", elements="str", default=[]),
            modules_absent=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            contains=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                text=dict(type="str", required=True),
            )),
            values=dict(type="dict", default={}),
            read=dict(type="list", elements="path", default=[]),
            stat=dict(type="list", elements="path", default=[]),
            kernel_log=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    for item in module.params["files"]:
        error = mode_error("files[].mode", item.get("mode"))
        if error:
            module.fail_json(msg=error)
    patterns = {}
    for name, regex in module.params["kernel_log"].items():
        try:
            patterns[name] = re.compile(str(regex))
        except re.error as exc:
            module.fail_json(msg="kernel_log.%s: %r is not a valid regular expression (%s)" % (name, regex, exc))
    differences = check(module, module.params)
    module.exit_json(changed=False, satisfied=not differences, differences=differences,
                     read=dict((path, read_text(path)) for path in module.params["read"]),
                     stat=dict((path, describe(path)) for path in module.params["stat"]),
                     kernel_log=kernel_log(module, patterns))


if __name__ == "__main__":
    main()
