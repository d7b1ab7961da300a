# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The target every XML module edits: a libvirt domain or a domain XML file.
    DOCUMENTATION = r"""
options:
  name:
    description:
      - Name of the libvirt domain to edit on O(uri).
      - With O(path), a document that exists is edited under its own C(<name>). O(name) may be left
        out; when given it must be that C(<name>), or the module refuses and writes nothing (a name
        seeds values such as the NICs' MACs, so a second name would change them while C(<name>) stays).
      - Only M(nestlab.pci.lab_topology) creates a document that does not exist yet, and names it O(name).
        The other modules refuse a O(path) that does not exist.
      - One of O(name) and O(path) is required.
    type: str
  uri:
    description:
      - libvirt connection URI of the hypervisor that holds the domain.
      - Ignored when O(path) is given.
    type: str
    default: qemu:///system
  path:
    description:
      - Edit this domain XML file instead of a libvirt domain.
      - The file is replaced atomically (temporary file, fsync, rename) and is
        written in the layout C(virsh dumpxml) uses.
      - A file that exists keeps its owner, group, mode and SELinux label. A symbolic link stays a
        link; the file it points to gets the new content.
    type: path
notes:
  - The persistent (inactive) definition is edited. A running domain keeps running
    unchanged; RV(reboot_required) says when a restart is needed for an edit to take effect.
  - Writes are compare-and-swap. Under a lock shared by every nestlab.pci process on the
    host, the definition is read again right before it is written; if someone else changed
    it meanwhile, the edit is planned again from the new definition (at most 5 attempts).
  - XML is parsed with DTDs, entities and network access disabled; documents that declare
    any are refused.
requirements:
  - lxml
  - libvirt-python (for libvirt domains)
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Check mode plans and compares exactly as a real run does, and writes nothing.
  diff_mode:
    support: full
    description: The diff shows the whole definition before and after, as libvirt normalises it.
  idempotent:
    support: full
    description: Owned devices are matched by their C(ua-nestlab-) alias; a second run reports no change.
"""
