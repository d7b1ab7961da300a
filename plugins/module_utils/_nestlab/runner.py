# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to run every XML module: read, edit a copy, compare, write once (or not, in check mode)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import copy
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import Domain
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import (
    ConflictError,
    NestlabError,
    SpecError,
    TargetError,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    make_target,
)
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import (
    HAS_LXML,
    LXML_IMPORT_ERROR,
    diff,
    parse,
    to_text,
)

MAX_ATTEMPTS = 5


def target_argument_spec(**extra):
    """Options every XML module shares: a libvirt domain (uri + name) or a file (path)."""
    spec = dict(
        name=dict(type="str"),
        uri=dict(type="str", default="qemu:///system"),
        path=dict(type="path"),
    )
    spec.update(extra)
    return spec


TARGET_MODULE_KWARGS = dict(required_one_of=[("name", "path")], supports_check_mode=True)


class DomainEditModule:
    """Base of the XML modules. Subclasses define ``edit`` (and maybe ``prepare``/``new_domain``)."""

    can_create = False

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.target = None
        self.result = {}
        self.conflicts = 0

    # hooks ------------------------------------------------------------------
    def prepare(self):
        """Validate parameters before anything is read; raise SpecError."""

    def new_domain(self):
        raise TargetError("%s: the domain does not exist; this module edits existing domains "
                          "(create it with nestlab.pci.lab_topology or virsh define)" % self.target.label)

    def edit(self, dom):
        raise NotImplementedError

    def finish(self, dom, changed):
        """Add results from the final document (``dom`` is what is now, or would be, defined)."""

    # engine -----------------------------------------------------------------
    def _missing_requirements(self):
        if not HAS_LXML:
            return "lxml", LXML_IMPORT_ERROR
        if not self.params.get("path") and not HAS_LIBVIRT:
            return "libvirt-python", LIBVIRT_IMPORT_ERROR
        return None

    def run(self):
        missing = self._missing_requirements()
        if missing:
            self.module.fail_json(msg=missing_required_lib(missing[0]), exception=str(missing[1]))
        try:
            self.prepare()
            self.target = make_target(self.params)
            self._run()
        except SpecError as exc:
            self.module.fail_json(msg=exc.msg, error=exc.details, **self.result)
        except NestlabError as exc:
            self.module.fail_json(msg=exc.msg, error=exc.details, **self.result)
        except Exception as exc:  # pylint: disable=broad-except
            self.module.fail_json(msg="unexpected error: %s" % exc, exception=traceback.format_exc())
        self.module.exit_json(**self.result)

    def _unique_aliases(self, root):
        # the collection finds its devices by alias: with two of one alias it would edit one and miss the
        # other (libvirt refuses such a domain too)
        # libvirt writes the first serial port's console as a second element with the serial's alias
        names = root.xpath("./devices/*[not(self::console)]/alias/@name")
        serials = set(root.xpath("./devices/serial/alias/@name"))
        names += [name for name in root.xpath("./devices/console/alias/@name") if name not in serials]
        seen = set()
        for name in names:
            if name in seen:
                raise TargetError("%s has more than one device with alias %r, which libvirt refuses (non unique "
                                  "alias): remove or rename all but one, then run again" % (self.target.label, name))
            seen.add(name)

    def _same_name(self, root):
        # on a file, a name that is not the document's would re-derive every name-seeded value (the
        # NICs' MACs) while <name> stays: one name per document, the one it has
        name, has = self.params.get("name"), root.findtext("name")
        if name and name != has:
            raise SpecError("name", name, "%s is the document of domain %r: on a file target, name only names a "
                                          "new document; leave name out or give %r" % (self.target.label, has, has))

    def _run(self):
        check = self.module.check_mode
        lock = contextlib.nullcontext() if check else self.target.lock()
        with lock:
            for dummy in range(MAX_ATTEMPTS):
                before = self.target.read()
                root = parse(before, self.target.label) if before is not None else self.new_domain()
                if before is not None:
                    self._unique_aliases(root)
                    if self.target.kind == "file":
                        self._same_name(root)
                work = copy.deepcopy(root)
                dom = Domain(work)
                self.edit(dom)
                before_text = to_text(root) if before is not None else None
                after_text = to_text(work)
                changed = before_text != after_text
                if changed and not check:
                    try:
                        written = self.target.write(after_text, expected=before)
                    except ConflictError:
                        self.conflicts += 1
                        continue
                    after_text = to_text(parse(written)) if written is not None else after_text
                    dom = Domain(parse(after_text))
                break
            else:
                raise ConflictError("%s kept changing under us: gave up after %d attempts"
                                    % (self.target.label, MAX_ATTEMPTS))
        self.result["changed"] = changed
        self.result["reboot_required"] = bool(changed and self.target.is_active())
        if self.conflicts:
            self.result["conflicts"] = self.conflicts
        self.finish(dom, changed)
        if self.module._diff:
            self.result["diff"] = diff(before_text, after_text, self.target.label)
