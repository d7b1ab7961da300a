# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: stash
short_description: Comment out parts of a libvirt domain by stashing them in its metadata
version_added: 0.1.0
description:
  - libvirt drops XML comments, so a disk or device cannot be "commented out" in a domain. This
    module moves elements (selected by XPath or by device alias) into the collection's own
    C(<metadata>) namespace, where libvirt keeps them untouched, and later puts them back where
    they stood. A stash then restore gives back the same definition.
  - It can also keep raw text (half-written XML, notes) as a CDATA section, and list what is stashed.
  - Only the collection's own metadata element (namespace C(urn:x-nestlab:pci:stash:1)) is ever
    written; other applications' metadata is left alone.
author:
  - nestlab.pci maintainers (@nestlab-pci)
extends_documentation_fragment:
  - nestlab.pci.target
  - nestlab.pci.target.attributes
options:
  key:
    description: Name of the stash entry. Required unless O(state=listed).
    type: str
  xpath:
    description:
      - XPath, relative to C(<domain>), of the elements to stash, for example
        C(./devices/disk[target/@dev='vdb']). The prefix C(qemu) is bound to libvirt's QEMU namespace.
      - With O(state=stashed), one of O(xpath), O(alias) and O(text) is required.
    type: str
  alias:
    description: Stash the device with this C(<alias name>) (for example C(ua-nestlab-lab-nic0-0)).
    type: str
  text:
    description: Raw text to stash as CDATA; it cannot contain C(]]>).
    type: str
  state:
    description:
      - V(stashed) moves the selection into entry O(key); when the entry exists nothing changes.
      - V(restored) puts the entry's elements back and removes the entry; nothing changes when there is no such entry.
      - V(absent) removes the entry without restoring it.
      - V(listed) only returns RV(stashes).
    type: str
    choices: [stashed, restored, absent, listed]
    default: stashed
"""

EXAMPLES = r"""
- name: Comment out the second disk
  nestlab.pci.stash:
    name: mylab
    key: spare-disk
    xpath: "./devices/disk[target/@dev='vdb']"

- name: Put it back
  nestlab.pci.stash:
    name: mylab
    key: spare-disk
    state: restored

- name: Keep a note that is not valid XML yet
  nestlab.pci.stash:
    name: mylab
    key: todo
    text: "<hostdev mode='subsystem' ... finish me"
"""

RETURN = r"""
stashes:
  description: What is stashed after the run.
  returned: success
  type: list
  elements: dict
  sample:
    - {key: spare-disk, kind: element, items: [{parent: /domain/devices, index: 2, element: "<disk ...>"}]}
    - {key: todo, kind: text, text: "<hostdev mode='subsystem' ... finish me"}
reboot_required:
  description: True when the domain is running and its persistent definition changed.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import stash
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.runner import (
    TARGET_MODULE_KWARGS,
    DomainEditModule,
    target_argument_spec,
)


class Stash(DomainEditModule):

    def prepare(self):
        state = self.params["state"]
        if state != "listed" and not self.params["key"]:
            raise SpecError("key", None, "required when state is %s" % state)
        chosen = [k for k in ("xpath", "alias", "text") if self.params[k] is not None]
        if state == "stashed" and len(chosen) != 1:
            raise SpecError("xpath", None, "state=stashed needs exactly one of xpath, alias and text (got %s)"
                            % (", ".join(chosen) or "none"))

    def edit(self, dom):
        state = self.params["state"]
        key = self.params["key"]
        entry = stash.find_entry(dom, key) if key else None
        if state == "stashed" and entry is None:
            if self.params["text"] is not None:
                stash.stash_text(dom, key, self.params["text"])
            else:
                found = stash.select(dom, self.params["xpath"], self.params["alias"])
                if not found:
                    field = "xpath" if self.params["xpath"] is not None else "alias"
                    raise SpecError(field, self.params[field], "matches nothing in domain %r; nothing was changed"
                                    % dom.name)
                stash.stash_elements(dom, key, found)
        elif state == "restored" and entry is not None:
            stash.restore(dom, entry)
        elif state == "absent" and entry is not None:
            stash.drop(dom, entry)

    def finish(self, dom, changed):
        self.result["stashes"] = stash.describe(dom)


def main():
    module = AnsibleModule(
        argument_spec=target_argument_spec(
            key=dict(type="str", no_log=False),
            xpath=dict(type="str"),
            alias=dict(type="str"),
            text=dict(type="str"),
            state=dict(type="str", choices=["stashed", "restored", "absent", "listed"], default="stashed"),
        ),
        mutually_exclusive=[("xpath", "alias", "text")],
        **TARGET_MODULE_KWARGS
    )
    Stash(module).run()


if __name__ == "__main__":
    main()
