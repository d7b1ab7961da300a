# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The XML engine: safe parse, canonical text, find by alias, subset match, diff."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

try:
    from lxml import etree
    HAS_LXML = True
    LXML_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    etree = None
    HAS_LXML = False
    LXML_IMPORT_ERROR = exc

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import XMLSafetyError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import xml_int

_DECL = re.compile(r"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_SECRET_ATTRS = ("passwd", "password", "secret")


def _parser():
    # No DTD, no entity expansion, no network, no huge trees: libvirt XML needs none of them.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=False, strip_cdata=False)


def _plain_doctype(name):
    # the one line a tool such as hwloc writes: a name and a system identifier, no internal subset
    return re.compile(r'\A(\s*<\?xml[^>]*\?>)?\s*<!DOCTYPE\s+%s\s+SYSTEM\s+"[^"<>\[\]]*"\s*>' % re.escape(name))


def parse(text, what="domain XML", doctype=None):
    """Parse ``text`` safely; DTDs and entity declarations are refused outright.

    ``doctype`` names the one plain ``<!DOCTYPE name SYSTEM "file">`` line that is accepted (and
    ignored: nothing is loaded from it) at the start of the document, as hwloc writes it.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if doctype and text:
        text = _plain_doctype(doctype).sub(lambda m: m.group(1) or "", text, count=1)
    if _DECL.search(text or ""):
        raise XMLSafetyError("%s: refusing XML with a DTD or entity declarations (<!DOCTYPE>/<!ENTITY>); %s"
                             % (what, 'only a plain <!DOCTYPE %s SYSTEM "..."> line is accepted' % doctype
                                if doctype else "libvirt XML never needs them"))
    try:
        root = etree.fromstring(text.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        raise XMLSafetyError("%s: not well-formed XML: %s" % (what, exc))
    if root.getroottree().docinfo.doctype:
        raise XMLSafetyError("%s: refusing XML with a DOCTYPE" % what)
    return root


def reindent(root):
    """Return a copy of ``root`` laid out the way ``virsh dumpxml`` does (two spaces)."""
    root = copy.deepcopy(root)
    for elem in root.iter():
        if len(elem) and elem.text is not None and not elem.text.strip():
            elem.text = None
        if elem.tail is not None and not elem.tail.strip():
            elem.tail = None
    etree.indent(root, space="  ")
    return root


def to_text(root):
    """Canonical text of a document: what we write and what we compare."""
    return etree.tostring(reindent(root), encoding="unicode") + "\n"


def E(tag, attrib=None, children=(), text=None):
    """Build an element: E('target', {'busNr': '180'}, [E('node', text='0')])."""
    elem = etree.Element(tag, dict((k, str(v)) for k, v in (attrib or {}).items() if v is not None))
    if text is not None:
        elem.text = str(text)
    for child in children:
        if child is not None:
            elem.append(child)
    return elem


def _same_value(want, have):
    if want == have:
        return True
    try:
        return xml_int(want) == xml_int(have)
    except (TypeError, ValueError):
        return False


def matches(desired, actual):
    """True when every attribute, child and text of ``desired`` is present in ``actual``.

    libvirt adds defaults (models, targets, addresses) to what it is given: whatever
    ``desired`` does not mention is not compared, so re-runs are no-ops.
    """
    if desired.tag != actual.tag:
        return False
    for key, value in desired.attrib.items():
        if key not in actual.attrib or not _same_value(value, actual.attrib[key]):
            return False
    want_text = (desired.text or "").strip()
    if want_text and want_text != (actual.text or "").strip():
        return False
    used = set()
    for child in desired:
        for idx, candidate in enumerate(actual):
            if idx not in used and matches(child, candidate):
                used.add(idx)
                break
        else:
            return False
    return True


def find_by_alias(root, alias):
    found = root.xpath("./devices/*[alias/@name=$alias]", alias=alias)
    return found[0] if found else None


def mask_secrets(text):
    """Hide passwords (graphics passwd=...) in text meant for people."""
    for attr in _SECRET_ATTRS:
        text = re.sub(r'(\s%s=)(["\'])[^"\']*\2' % attr, r"\1\2********\2", text)
    return text


def diff(before, after, name):
    """Ansible's diff dict for two texts (either may be None for 'absent')."""
    return {
        "before": mask_secrets(before or ""),
        "after": mask_secrets(after or ""),
        "before_header": "%s (before)" % name,
        "after_header": "%s (after)" % name,
    }
