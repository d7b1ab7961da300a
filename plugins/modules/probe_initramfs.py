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
  - The bytes depend only on the inputs, so the file is rewritten only when they change. The directory of
    O(dest) is made when it is missing.
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
  device_modules:
    description:
      - PCI addresses (such as V(0000:df:00.0)) of devices whose driver module is bundled too, found from
        the device's modalias with C(modprobe -R) (the first module it names).
    type: list
    elements: str
    default: []
  kernel_dest:
    description: Also copy the kernel (RV(kernel)) here, when its bytes differ.
    type: path
  kernel_pvh:
    description:
      - Write the kernel's uncompressed ELF image (vmlinux) to O(kernel_dest) instead of the bzImage. QEMU
        boots it through its PVH entry point, without the decompression that takes about 27 s of a nested
        guest's boot under TCG here.
      - Needs a kernel built with C(CONFIG_PVH) whose payload is xz, gzip or bzip2; otherwise the bzImage is
        copied and RV(kernel_format) says why.
      - The copy is checked against a manifest next to it (the source's digest, the copy's size and time), so
        a re-run does not unpack the kernel again.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Builds the image in memory and compares it; writes nothing (nor the kernel copy or the directory).
  diff_mode:
    support: full
    description: Shows the bundled modules and the image digest, and for the kernel copy its source's digest and format, before and after.
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
kernel_format:
  description: What O(kernel_dest) holds, V(elf) (uncompressed, PVH) or V(bzimage); null without O(kernel_dest).
  returned: always
  type: str
  sample: elf
kernel_note:
  description: Why O(kernel_pvh) fell back to the bzImage (empty otherwise).
  returned: always
  type: str
device_modules:
  description: For each address in O(device_modules), the module bundled for it (null when its modalias names none).
  returned: always
  type: dict
  sample: {"0000:df:00.0": e1000e}
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import write_if_changed
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.guest import read_text
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import (
    INIT_SCRIPT,
    build_initramfs,
    uncompressed_kernel,
    read_module,
    resolve_modules,
)

MANIFEST_SUFFIX = ".manifest"


def plan_kernel_copy(module, kernel, dest, pvh):
    """(before, after, format, note, bytes to write or None) for the kernel copy; ``after`` is also the
    manifest to write with the copy, completed with its size and time.

    The manifest next to the copy records the source's digest, the format asked for and the one
    written, and the copy's size and time: a re-run that finds them all unchanged neither reads the
    copy nor unpacks the kernel again."""
    try:
        with open(kernel, "rb") as handle:
            source = handle.read()
    except (IOError, OSError) as exc:
        module.fail_json(msg="kernel_dest: cannot read the kernel %s to copy: %s" % (kernel, exc))
    head = "source %s sha256 %s\nwanted %s\n" % (kernel, hashlib.sha256(source).hexdigest(), "elf" if pvh else "bzimage")
    recorded = read_text(dest + MANIFEST_SUFFIX, "")
    try:
        stat = os.stat(dest)
        current = "size %d mtime %d\n" % (stat.st_size, stat.st_mtime_ns)
    except OSError:
        current = None
    lines = recorded.splitlines(True)
    if current is not None and len(lines) == 5 and "".join(lines[:2]) == head and lines[4] == current:
        fmt = lines[2].split()[1]
        note = lines[3][5:].strip()
        shown = "".join(lines[:4])
        return shown, shown, fmt, note, None
    data, fmt, note = source, "bzimage", ""
    if pvh:
        elf, why = uncompressed_kernel(source)
        if elf is not None:
            data, fmt = elf, "elf"
        else:
            note = "kernel_pvh: %s is copied as it is: %s" % (kernel, why)
            module.warn(note)
    planned = head + "format %s\nnote %s\n" % (fmt, note)
    before = "".join(lines[:4]) if current is not None else ""
    if before == planned:
        before += "(the copy was changed since)\n"
    return before, planned, fmt, note, data


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            modules=dict(type="list", elements="str", default=[]),
            kernel_release=dict(type="str"),
            modules_dir=dict(type="path", default="/lib/modules"),
            busybox=dict(type="path", default="/bin/busybox"),
            device_modules=dict(type="list", elements="str", default=[]),
            kernel_dest=dict(type="path"),
            kernel_pvh=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    release = params["kernel_release"] or os.uname()[2]
    moddir = os.path.join(params["modules_dir"], release)
    if not os.path.isfile(params["busybox"]):
        module.fail_json(msg="busybox: %s is not a file; install busybox-static or give a static busybox"
                             % params["busybox"])
    device_modules = {}
    for address in params["device_modules"]:
        alias = read_text("/sys/bus/pci/devices/%s/modalias" % address)
        if alias is None:
            module.fail_json(msg="device_modules: no PCI device %r here (no /sys/bus/pci/devices/%s/modalias)"
                                 % (address, address))
        rc, out, err = module.run_command(["modprobe", "-S", release, "-R", alias.strip()])
        device_modules[address] = out.split()[0] if rc == 0 and out.split() else None
    wanted = list(params["modules"]) + [name for name in device_modules.values() if name and name not in params["modules"]]
    bundled = []
    if wanted:
        dep_text = read_text(os.path.join(moddir, "modules.dep"))
        if dep_text is None:
            module.fail_json(msg="kernel_release: no modules.dep in %s; is %r the release of an installed kernel?"
                                 % (moddir, release))
        try:
            bundled = resolve_modules(wanted, dep_text,
                                      read_text(os.path.join(moddir, "modules.builtin"), ""))
        except ValueError as exc:
            module.fail_json(msg="modules: %s (release %s)" % (exc, release))
    try:
        files = [(os.path.basename(path).replace(".xz", "").replace(".gz", ""),
                  read_module(os.path.join(moddir, path))) for path in bundled]
    except (IOError, OSError, ValueError) as exc:
        module.fail_json(msg="modules: cannot read a module file: %s" % exc)
    # the bytes follow from the inputs: when the manifest names the same inputs and the file is the one
    # it describes, the image is not built again (gzip is slow on an emulated CPU)
    with open(params["busybox"], "rb") as handle:
        inputs = hashlib.sha256(handle.read())
    inputs.update(INIT_SCRIPT.encode("utf-8"))
    for name, blob in files:
        inputs.update(name.encode("utf-8") + b"\0" + blob)
    dest = params["dest"]
    listing = "".join("module %s\n" % path for path in bundled)
    old = None
    recorded = ""
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            old_digest = hashlib.sha256(handle.read()).hexdigest()
        recorded = read_text(dest + MANIFEST_SUFFIX, "")
        old = recorded.split("inputs ", 1)[0]
        if not old.startswith("sha256 %s\n" % old_digest):
            old, recorded = "sha256 %s\n" % old_digest, ""
    if recorded.endswith("%sinputs %s\n" % (listing, inputs.hexdigest())):
        data, digest = None, old.split()[1]
    else:
        data = build_initramfs(params["busybox"], modules=files)
        digest = hashlib.sha256(data).hexdigest()
    manifest = "sha256 %s\n%s" % (digest, listing)
    record = "%sinputs %s\n" % (manifest, inputs.hexdigest())
    kernel = os.path.join("/boot", "vmlinuz-" + release)
    kernel_data = None
    kernel_before = kernel_after = ""
    kernel_format = kernel_note = None
    if params["kernel_dest"]:
        kernel_before, kernel_after, kernel_format, kernel_note, kernel_data = plan_kernel_copy(
            module, kernel, params["kernel_dest"], params["kernel_pvh"])
    changed = old != manifest or kernel_before != kernel_after
    if changed and not module.check_mode:
        for path in (dest, params["kernel_dest"]):
            directory = os.path.dirname(path or "")
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
        if data is not None:
            write_if_changed(dest, data)
        if kernel_data is not None:
            write_if_changed(params["kernel_dest"], kernel_data)
            stat = os.stat(params["kernel_dest"])
            write_if_changed(params["kernel_dest"] + MANIFEST_SUFFIX, (
                kernel_after + "size %d mtime %d\n" % (stat.st_size, stat.st_mtime_ns)).encode("utf-8"))
    if not module.check_mode and data is not None:
        # bookkeeping only (the inputs behind the bytes): also after an upgrade that added the inputs line
        write_if_changed(dest + MANIFEST_SUFFIX, record.encode("utf-8"))
    result = dict(changed=changed, dest=dest, kernel_release=release, bundled=bundled, sha256=digest,
                  kernel=kernel, device_modules=device_modules, kernel_format=kernel_format,
                  kernel_note=kernel_note or "")
    if module._diff:
        result["diff"] = {"before": (old or "") + kernel_before, "after": manifest + kernel_after,
                          "before_header": dest, "after_header": dest}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
