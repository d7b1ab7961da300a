# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: probe_initramfs
short_description: A small initramfs, made from this host's busybox and kernel modules, that reports what a guest sees
version_added: 0.1.0
description:
  - Writes a gzip'd cpio initramfs with a static busybox, the chosen kernel modules of this host
    (with their dependencies, in load order) and an init that loads them, prints the guest's NUMA
    nodes, PCI devices (with driver and IOMMU group) and IOMMU kernel lines between markers on the
    serial console, and powers off.
  - Together with the matching kernel (RV(kernel)) it boots a nested guest directly, so nothing
    has to be downloaded; the nested_guest role uses it for L2.
  - The bytes depend only on the inputs, so the file is rewritten only when they change.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  dest:
    description: Where to write the initramfs.
    type: path
    required: true
  modules:
    description: Kernel modules to bundle and load at boot (for example the driver of an assigned device).
    type: list
    elements: str
    default: []
  kernel_release:
    description: The kernel release whose modules are bundled; by default the running kernel's.
    type: str
  modules_dir:
    description: Where the kernel modules live.
    type: path
    default: /lib/modules
  busybox:
    description: A statically linked busybox binary.
    type: path
    default: /bin/busybox
attributes:
  check_mode:
    support: full
    description: Builds the image in memory and compares it; writes nothing.
  diff_mode:
    support: full
    description: Shows the bundled modules and the image digest before and after.
  idempotent:
    support: full
    description: Same inputs, same bytes; an unchanged image is not rewritten.
"""

EXAMPLES = r"""
- name: An initramfs for L2 that loads e1000e
  nestlab.pci.probe_initramfs:
    dest: /var/lib/nestlab/l2/initrd.gz
    modules: [e1000e]
  register: initrd
"""

RETURN = r"""
dest:
  description: The initramfs.
  returned: always
  type: str
  sample: /var/lib/nestlab/l2/initrd.gz
kernel:
  description: The kernel image of O(kernel_release) under C(/boot), when it is there.
  returned: always
  type: str
  sample: /boot/vmlinuz-6.1.0-28-amd64
kernel_release:
  description: The kernel release whose modules were bundled.
  returned: always
  type: str
  sample: 6.1.0-28-amd64
bundled:
  description: Module files in load order, relative to the release's module directory.
  returned: always
  type: list
  elements: str
  sample: [kernel/drivers/pps/pps_core.ko, kernel/drivers/ptp/ptp.ko, kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko]
sha256:
  description: Digest of the initramfs.
  returned: always
  type: str
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import (
    build_initramfs,
    read_module,
    resolve_modules,
    write_if_changed,
)

MANIFEST_SUFFIX = ".manifest"


def _read_text(path, default=None):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            modules=dict(type="list", elements="str", default=[]),
            kernel_release=dict(type="str"),
            modules_dir=dict(type="path", default="/lib/modules"),
            busybox=dict(type="path", default="/bin/busybox"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    release = params["kernel_release"] or os.uname()[2]
    moddir = os.path.join(params["modules_dir"], release)
    if not os.path.isfile(params["busybox"]):
        module.fail_json(msg="busybox: %s is not a file; install busybox-static or give a static busybox"
                             % params["busybox"])
    bundled = []
    if params["modules"]:
        dep_text = _read_text(os.path.join(moddir, "modules.dep"))
        if dep_text is None:
            module.fail_json(msg="kernel_release: no modules.dep in %s; is %r the release of an installed kernel?"
                                 % (moddir, release))
        try:
            bundled = resolve_modules(params["modules"], dep_text,
                                      _read_text(os.path.join(moddir, "modules.builtin"), ""))
        except ValueError as exc:
            module.fail_json(msg="modules: %s (release %s)" % (exc, release))
    try:
        files = [(os.path.basename(path).replace(".xz", "").replace(".gz", ""),
                  read_module(os.path.join(moddir, path))) for path in bundled]
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg="modules: cannot read a module file: %s" % exc)
    data = build_initramfs(params["busybox"], modules=files)
    digest = hashlib.sha256(data).hexdigest()
    dest = params["dest"]
    manifest = "sha256 %s\n%s" % (digest, "".join("module %s\n" % path for path in bundled))
    old = None
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            old_digest = hashlib.sha256(handle.read()).hexdigest()
        old = _read_text(dest + MANIFEST_SUFFIX, "")
        if not old.startswith("sha256 %s\n" % old_digest):
            old = "sha256 %s\n" % old_digest
    changed = old != manifest
    if changed and not module.check_mode:
        directory = os.path.dirname(dest)
        if directory and not os.path.isdir(directory):
            module.fail_json(msg="dest: directory %s does not exist" % directory)
        write_if_changed(dest, data)
        write_if_changed(dest + MANIFEST_SUFFIX, manifest.encode("utf-8"))
    result = dict(changed=changed, dest=dest, kernel_release=release, bundled=bundled, sha256=digest,
                  kernel=os.path.join("/boot", "vmlinuz-" + release))
    if module._diff:
        result["diff"] = {"before": old or "", "after": manifest, "before_header": dest, "after_header": dest}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
