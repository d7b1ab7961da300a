# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: storage_preflight
short_description: Stop before writing when a lab's disk images could fill their filesystem
version_added: 0.1.0
description:
  - Adds up what a lab's images can still take on each filesystem - for an image about to be made
    its whole commitment, for an existing one its commitment minus what it already allocates - and
    compares it with the filesystem's free space less a reserve.
  - Commitments come from the same arithmetic as M(nestlab.pci.disk_image_info) (for a new qcow2 image
    the capacity plus the metadata of a full image; for raw the length). An existing image with
    internal snapshots has no bounded commitment and fails the check unless it is O(images[].read_only).
  - When anything does not fit it fails, before the caller writes anything, with one line per image
    and per filesystem with the numbers. It never writes itself.
author:
  - nestlab.pci maintainers (@nestlab-pci)
options:
  images:
    description: The lab's images and scratch files, existing or about to be made.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Where the file is or will be. Its filesystem is that of the nearest existing directory.
        type: path
        required: true
      capacity:
        description:
          - Guest-visible size of an image about to be made (bytes, or with a unit such as C(10GiB)).
            Ignored when the file exists (its header says).
        type: raw
      format:
        description: Format of an image about to be made; V(file) is a scratch file or tree of O(images[].capacity) bytes.
        type: str
        choices: [qcow2, raw, file]
        default: qcow2
      cluster_size:
        description: Cluster size of a qcow2 image about to be made.
        type: int
        default: 65536
      read_only:
        description: The image is only read (a backing file), so it takes no more space.
        type: bool
        default: false
      label:
        description: A name for the message (default the path).
        type: str
  reserve:
    description:
      - Space to keep free on every filesystem, as a size (C(1GiB)) or a percentage of the filesystem (C(5%)).
      - Units follow libvirt - V(KiB), V(MiB), V(GiB) and V(K), V(M), V(G) are binary (powers of 1024), V(KB), V(MB), V(GB) decimal (powers of 1000).
    type: str
    default: 1GiB
extends_documentation_fragment:
  - nestlab.pci.read_only
"""

EXAMPLES = r"""
- name: Stop before making the overlay when the lab could fill the disk
  nestlab.pci.storage_preflight:
    images:
      - {path: /var/lib/nestlab/images/base.qcow2, read_only: true, label: base image}
      - {path: /var/lib/nestlab/labs/nestlab/disk.qcow2, capacity: 10GiB, label: lab disk overlay}
    reserve: 2GiB
"""

RETURN = r"""
fits:
  description: True when every filesystem has room (this is also why the task did not fail).
  returned: always
  type: bool
images:
  description: Per image - path, label, state (V(new), V(existing), V(read-only)), commitment, allocation, and still (what it can still take).
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /var/lib/nestlab/labs/nestlab/disk.qcow2, label: lab disk overlay, state: new,
       commitment: 10739318784, allocation: 0, still: 10739318784, mount_point: /}
filesystems:
  description: Per filesystem - mount point, free bytes, reserve, needed (sum of still), and fits.
  returned: always
  type: list
  elements: dict
  sample: [{mount_point: /, free: 75161927680, reserve: 1073741824, needed: 10739318784, fits: true}]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.diskimage import (
    ImageError,
    block_size_of,
    filesystem_allowance,
    filesystem_of,
    format_size,
    image_figures,
    qcow2_metadata_size,
    read_mounts,
    round_up,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import parse_size_bytes


def existing_dir(path):
    current = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(current):
        current = os.path.dirname(current)
    return current


def parse_size(value, field):
    try:
        return parse_size_bytes(value, default_unit="b")
    except ValueError:
        raise ImageError("%s: %r is not a size; give bytes or a size such as '10GiB'" % (field, value))


def plan_image(index, item, mounts):
    field = "images[%d]" % index
    path = item["path"]
    entry = {"path": path, "label": item.get("label") or path}
    where = path if os.path.exists(path) else existing_dir(path)
    entry["mount_point"], fstype = filesystem_of(where, mounts)
    entry["device"] = os.stat(where).st_dev
    if os.path.exists(path):
        try:
            figures = image_figures(path, "auto") if item["format"] != "file" else None
        except ImageError as exc:
            raise ImageError("%s.path: %s: %s" % (field, path, exc))
        allocation = os.stat(path).st_blocks * 512 if os.path.isfile(path) else 0
        commitment = figures["commitment"] if figures else allocation
        entry.update(allocation=allocation, commitment=commitment)
        if item["read_only"]:
            entry.update(state="read-only", still=0)
        elif commitment is None:
            raise ImageError("%s.path: %s has internal snapshots: its commitment is unbounded (%s); remove the "
                             "snapshots or mark it read_only" % (field, path, figures["reason"]))
        else:
            entry.update(state="existing", still=max(0, commitment - allocation))
        return entry
    if item.get("capacity") is None:
        raise ImageError("%s.capacity: null is not valid for %s, which does not exist yet; give its size" % (field, path))
    capacity = parse_size(item["capacity"], field + ".capacity")
    if item["format"] == "qcow2":
        cluster = item["cluster_size"]
        if cluster < 512 or cluster > 2 * 1024 * 1024 or cluster & (cluster - 1):
            raise ImageError("%s.cluster_size: %d is not valid; give a power of two from 512 to 2097152"
                             % (field, cluster))
        commitment = round_up(capacity, cluster) + qcow2_metadata_size(capacity, cluster)
        commitment += filesystem_allowance(fstype, block_size_of(where), commitment, cluster)
    else:
        commitment = capacity
    entry.update(state="new", allocation=0, commitment=commitment, still=commitment)
    return entry


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images=dict(type="list", elements="dict", required=True, options=dict(
                path=dict(type="path", required=True),
                capacity=dict(type="raw"),
                format=dict(type="str", default="qcow2", choices=["qcow2", "raw", "file"]),
                cluster_size=dict(type="int", default=65536),
                read_only=dict(type="bool", default=False),
                label=dict(type="str"),
            )),
            reserve=dict(type="str", default="1GiB"),
        ),
        supports_check_mode=True,
    )
    mounts = read_mounts()
    reserve_text = module.params["reserve"].strip()
    entries = []
    try:
        if reserve_text.endswith("%"):
            percent = float(reserve_text[:-1])
            if not 0 <= percent < 100:
                raise ValueError
        else:
            percent = None
            reserve_bytes = parse_size(reserve_text, "reserve")
        for index, item in enumerate(module.params["images"]):
            entries.append(plan_image(index, item, mounts))
    except ValueError:
        module.fail_json(msg="reserve: %r is not valid; give a size such as '1GiB' or a percentage such as '5%%'"
                         % reserve_text)
    except ImageError as exc:
        module.fail_json(msg=str(exc))
    filesystems = []
    for device in sorted(set(e["device"] for e in entries)):
        members = [e for e in entries if e["device"] == device]
        stat = os.statvfs(members[0]["path"] if os.path.exists(members[0]["path"])
                          else existing_dir(members[0]["path"]))
        free = stat.f_bavail * stat.f_frsize
        reserve = int(stat.f_blocks * stat.f_frsize * percent / 100) if percent is not None else reserve_bytes
        needed = sum(e["still"] for e in members)
        filesystems.append({"mount_point": members[0]["mount_point"], "free": free, "reserve": reserve,
                            "needed": needed, "fits": needed + reserve <= free})
    for entry in entries:
        entry.pop("device")
    fits = all(fs["fits"] for fs in filesystems)
    result = dict(changed=False, fits=fits, images=entries, filesystems=filesystems)
    if not fits:
        lines = []
        for fs in filesystems:
            if fs["fits"]:
                continue
            lines.append("%s: %s free, %s kept in reserve, the lab's images can take %s more (short by %s):"
                         % (fs["mount_point"], format_size(fs["free"]), format_size(fs["reserve"]), format_size(fs["needed"]),
                            format_size(fs["needed"] + fs["reserve"] - fs["free"])))
            for entry in entries:
                if entry["mount_point"] == fs["mount_point"]:
                    lines.append("  %s (%s): commitment %s, allocated %s, can take %s more"
                                 % (entry["label"], entry["state"], format_size(entry["commitment"] or 0),
                                    format_size(entry["allocation"]), format_size(entry["still"])))
        module.fail_json(msg="Not enough space for the lab's disk images; nothing was written.\n" + "\n".join(lines)
                         + "\nFree some space, choose another directory, or lower the reserve.", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
