# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: disk_image_info
short_description: Capacity, length, allocation and commitment of raw and qcow2 disk images
version_added: 0.1.0
description:
  - Reports the four sizes of each disk image, as in the blog post "The surprisingly complicated
    world of disk image sizes" - C(capacity) (what the guest sees), C(length) (the highest byte
    offset of the file), C(allocation) (what the host filesystem really uses) and C(commitment)
    (the most the allocation can grow to).
  - For raw files the commitment is the length. For qcow2 it is the capacity, rounded up to whole
    clusters, plus the metadata of a fully written image - the header cluster, every L2 table,
    the L1 table, the refcount blocks and table that count all of these clusters, a LUKS header
    and the persistent bitmaps. The module reads the header and its extensions itself (qcow2
    versions 2 and 3, cluster bits, refcount order, extended L2 entries, the LUKS header size, the
    bitmap directory); it never reads data clusters.
  - An image with internal snapshots has no bounded commitment - each snapshot can keep its own copy
    of every cluster and the VM state - so it gets C(commitment=null), C(commitment_bounded=false)
    and the reason.
  - Where C(qemu-img) exists, the metadata figure is checked against C(qemu-img measure) for the same
    capacity, cluster size, refcount width and L2 entry size (one call per distinct combination),
    and RV(images[].method) says which method gave the figure.
  - A path that cannot be read as an image gets its own error; the other paths are still reported.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  paths:
    description: Image files to read.
    type: list
    elements: path
    required: true
  format:
    description:
      - V(auto) tells qcow2 from raw by the qcow2 magic, refuses other formats by name, and refuses a
        file whose length is not a whole number of 512-byte sectors as not a disk image.
      - V(raw) reads every file as raw; V(qcow2) refuses files without the qcow2 magic.
    type: str
    choices: [auto, raw, qcow2]
    default: auto
  chain:
    description:
      - Also report each qcow2 image's backing files, down the whole chain (relative names are
        resolved from the image's directory, as QEMU does). RV(images[].chain) lists the paths.
    type: bool
    default: false
  cross_check:
    description:
      - Check the qcow2 metadata figure against C(qemu-img measure) when C(qemu-img) is installed.
        When the two differ the larger figure is used and RV(images[].method) says so.
    type: bool
    default: true
  on_error:
    description:
      - V(fail) fails the task when any path has an error (the other paths are still in RV(images));
        V(report) only lists the errors in RV(errors).
    type: str
    choices: [fail, report]
    default: fail
extends_documentation_fragment:
  - nestlab.pci.read_only
notes:
  - Allocation is C(st_blocks) x 512. XFS may preallocate speculatively and btrfs shares blocks
    between files, so on those filesystems RV(images[].notes) says that the figures are approximate.
seealso:
  - name: qcow2 format specification
    description: The header fields this module reads.
    link: https://www.qemu.org/docs/master/interop/qcow2.html
"""

EXAMPLES = r"""
- name: The four sizes of the lab's images
  nestlab.pci.disk_image_info:
    paths:
      - /var/lib/nestlab/labs/nestlab/disk.qcow2
    chain: true
  register: images

- name: Show the recipe's summary table
  ansible.builtin.debug:
    msg: "{{ images.table }}"

- name: Read many images, listing the unreadable ones instead of failing
  nestlab.pci.disk_image_info:
    paths: "{{ query('ansible.builtin.fileglob', '/var/lib/libvirt/images/*') }}"
    on_error: report
  register: all_images
"""

RETURN = r"""
images:
  description: One entry per image read (the backing files follow their image when O(chain=true)).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The image file.
      type: str
    format:
      description: V(raw) or V(qcow2).
      type: str
    capacity:
      description: Bytes the guest sees.
      type: int
    length:
      description: The file's length in bytes (its highest byte offset).
      type: int
    allocation:
      description: Bytes the host filesystem uses for the file (C(st_blocks) x 512).
      type: int
    commitment:
      description: The most the allocation can grow to, in bytes; null when unbounded.
      type: int
    commitment_bounded:
      description: False for an image with internal snapshots.
      type: bool
    reason:
      description: Why the commitment is unbounded, or what it leaves out (an external data file).
      type: str
      returned: when there is one
    overhead:
      description: Commitment minus the capacity rounded to clusters (qcow2 metadata, LUKS header, bitmaps).
      type: int
    overhead_parts:
      description:
        - The overhead by kind - V(metadata) (header, L1, L2, refcounts; what C(qemu-img measure) gives),
          V(luks_header), V(bitmaps), and V(refcount_growth).
        - V(refcount_growth) is non-zero when the refcount table must still grow before the image is full
          (small clusters with wide refcounts); QEMU then writes a new table and frees the old one, which
          stays allocated until reused. It is bounded by twice the final table plus two refcount blocks.
      type: dict
      returned: for qcow2
    method:
      description: How the commitment was found, and whether C(qemu-img measure) agreed.
      type: str
    cluster_size:
      description: Bytes per cluster (qcow2); null for raw.
      type: int
    qcow2:
      description:
        - The header facts used - version, cluster_bits, refcount_order, refcount_bits, extended_l2,
          crypt_method, luks_header_size, bitmaps (name, granularity), nb_snapshots, l1_size,
          incompatible_features, compression_type, backing_file, backing_format, data_file.
      type: dict
    chain:
      description: The backing files below this image, nearest first.
      type: list
      elements: str
      returned: when O(chain=true)
    filesystem:
      description: Mount point and filesystem type that hold the file.
      type: dict
    notes:
      description: Caveats for this image (filesystem over-allocation, a dirty image).
      type: list
      elements: str
  sample:
    - path: /var/lib/nestlab/labs/nestlab/disk.qcow2
      format: qcow2
      capacity: 10737418240
      length: 9764864
      allocation: 9768960
      commitment: 10739318784
      commitment_bounded: true
      overhead: 1900544
      method: "header formula; qemu-img measure gives the same metadata size (1900544 bytes)"
errors:
  description: Paths that could not be read, each with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{path: /tmp/notes.txt, msg: "not a disk image: 13 bytes is not a whole number of 512-byte sectors"}]
total:
  description: Sums over RV(images); the commitment is null when any image is unbounded.
  returned: always
  type: dict
  sample: {capacity: 10737418240, length: 9764864, allocation: 9768960, commitment: 10739318784}
table:
  description:
    - The recipe's summary table (format, capacity, length, allocation, commitment), one line per image after a
      header line; the last column is the part of the commitment beyond the capacity.
  returned: always
  type: list
  elements: str
"""

import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.diskimage import (
    ImageError,
    backing_path,
    format_size,
    image_figures,
    read_mounts,
)


class Measure(object):
    """qemu-img measure's metadata figure per (capacity, cluster size, refcount bits, extended L2)."""

    def __init__(self, module, enabled):
        self.module = module
        self.enabled = enabled
        self.binary = module.get_bin_path("qemu-img") if enabled else None
        self.cache = {}

    def metadata(self, capacity, cluster_size, refcount_order, extended_l2):
        key = (capacity, cluster_size, refcount_order, extended_l2)
        if key not in self.cache:
            self.cache[key] = self._run(*key)
        return self.cache[key]

    def _run(self, capacity, cluster_size, refcount_order, extended_l2):
        opts = "cluster_size=%d,refcount_bits=%d" % (cluster_size, 1 << refcount_order)
        if extended_l2:
            opts += ",extended_l2=on"
        cmd = [self.binary, "measure", "--output=json", "-O", "qcow2", "-o", opts, "--size", str(capacity)]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                  check=False, timeout=60)
            if proc.returncode:
                return None, proc.stderr.strip()
            full = json.loads(proc.stdout)["fully-allocated"]
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
            return None, str(exc)
        return full - -(-capacity // cluster_size) * cluster_size, None


def cross_check(entry, measure):
    facts = entry["qcow2"]
    mine = entry["overhead_parts"]["metadata"]
    if not measure.binary:
        entry["method"] = "header formula (qemu-img not found: not cross-checked)" if measure.enabled \
            else "header formula (cross-check turned off)"
        return
    theirs, err = measure.metadata(facts["capacity"], facts["cluster_size"], facts["refcount_order"],
                                   facts["extended_l2"])
    if theirs is None:
        entry["method"] = "header formula (qemu-img measure failed: %s)" % err
    elif theirs == mine:
        entry["method"] = "header formula; qemu-img measure gives the same metadata size (%d bytes)" % mine
    else:
        bigger = max(mine, theirs)
        entry["method"] = ("header formula gives %d bytes of metadata, qemu-img measure %d: the larger is used"
                           % (mine, theirs))
        grow = bigger - mine
        entry["overhead_parts"]["metadata"] = bigger
        entry["overhead"] += grow
        if entry["commitment"] is not None:
            entry["commitment"] += grow


def table_lines(images):
    rows = [("Path", "Format", "Capacity", "Length", "Allocation", "Commitment", "(overhead)")]
    for img in images:
        label = img["format"]
        if img.get("qcow2"):
            label += " (%d KiB clusters%s)" % (img["cluster_size"] // 1024,
                                               ", %d snapshots" % img["qcow2"]["nb_snapshots"]
                                               if img["qcow2"]["nb_snapshots"] else "")
        rows.append((img["path"], label, format_size(img["capacity"]), format_size(img["length"]),
                     format_size(img["allocation"]), format_size(img["commitment"]),
                     "(%s)" % format_size(img["overhead"]) if img["overhead"] else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            format=dict(type="str", default="auto", choices=["auto", "raw", "qcow2"]),
            chain=dict(type="bool", default=False),
            cross_check=dict(type="bool", default=True),
            on_error=dict(type="str", default="fail", choices=["fail", "report"]),
        ),
        supports_check_mode=True,
    )
    measure = Measure(module, module.params["cross_check"])
    mounts = read_mounts()
    images, errors, reported = [], [], set()

    def read(path, fmt):
        """The entry for ``path`` (added to images once, however many chains share it), or None."""
        try:
            entry = image_figures(path, fmt, mounts)
        except ImageError as exc:
            errors.append({"path": path, "msg": str(exc)})
            return None
        if entry["format"] == "qcow2":
            cross_check(entry, measure)
        if os.path.realpath(path) not in reported:
            reported.add(os.path.realpath(path))
            images.append(entry)
        return entry

    for path in module.params["paths"]:
        entry = read(path, module.params["format"])
        if entry is None or not module.params["chain"] or entry["format"] != "qcow2":
            continue
        top, visited = entry, set([os.path.realpath(path)])
        top["chain"] = []
        while entry is not None and entry["format"] == "qcow2" and entry["qcow2"]["backing_file"]:
            backing = entry["qcow2"]["backing_file"]
            resolved = backing_path(entry["path"], backing)
            if resolved is None:
                errors.append({"path": entry["path"], "msg": "backing file %r is not a local file" % backing})
                break
            if os.path.realpath(resolved) in visited:
                errors.append({"path": entry["path"], "msg": "the backing chain loops back to %s" % resolved})
                break
            visited.add(os.path.realpath(resolved))
            top["chain"].append(resolved)
            entry = read(resolved, {"raw": "raw", "qcow2": "qcow2"}.get(entry["qcow2"]["backing_format"], "auto"))
    bounded = all(img["commitment_bounded"] for img in images)
    total = dict((key, sum(img[key] for img in images)) for key in ("capacity", "length", "allocation"))
    total["commitment"] = sum(img["commitment"] for img in images) if bounded else None
    total["commitment_bounded"] = bounded
    result = dict(changed=False, images=images, errors=errors, total=total, table=table_lines(images))
    if errors and module.params["on_error"] == "fail":
        module.fail_json(msg="; ".join("%s: %s" % (err["path"], err["msg"]) for err in errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
