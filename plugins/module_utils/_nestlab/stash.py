# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stash parts of a domain in the collection's own <metadata> namespace, and restore them.

libvirt keeps one namespaced child of <metadata> per namespace across redefines and treats
it as opaque, so an element moved there is "commented out" but kept:

  <metadata>
    <nlstash:stash xmlns:nlstash="urn:x-nestlab:pci:stash:1">
      <nlstash:entry key="spare-disk" kind="element">
        <nlstash:item parent="/domain/devices" index="3"><disk .../></nlstash:item>
      </nlstash:entry>
      <nlstash:entry key="notes" kind="text"><![CDATA[half-written <disk>]]></nlstash:entry>
    </nlstash:stash>
  </metadata>

Only that one element is ever written: other applications' metadata is never touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import etree, find_by_alias

NS = "urn:x-nestlab:pci:stash:1"
PREFIX = "nlstash"
XPATH_NAMESPACES = {"qemu": "http://libvirt.org/schemas/domain/qemu/1.0", PREFIX: NS}


def _q(tag):
    return "{%s}%s" % (NS, tag)


def stash_root(dom, create=False):
    metadata = dom.root.find("metadata")
    if metadata is None:
        if not create:
            return None
        metadata = etree.Element("metadata")
        anchor = None
        for tag in ("description", "title", "uuid", "name"):
            anchor = dom.root.find(tag)
            if anchor is not None:
                break
        anchor.addnext(metadata) if anchor is not None else dom.root.insert(0, metadata)
    root = metadata.find(_q("stash"))
    if root is None and create:
        root = etree.SubElement(metadata, _q("stash"), nsmap={PREFIX: NS})
    return root


def find_entry(dom, key):
    root = stash_root(dom)
    if root is None:
        return None
    for entry in root.findall(_q("entry")):
        if entry.get("key") == key:
            return entry
    return None


def _siblings(parent):
    """Element children of ``parent``, not counting <metadata> (which stashing may add or remove)."""
    return [c for c in parent if isinstance(c.tag, str) and c.tag != "metadata"]


def select(dom, xpath=None, alias=None):
    """Elements to stash, by XPath (relative to <domain>) or by device alias."""
    if alias is not None:
        return dom.root.xpath("./devices/*[alias/@name=$alias]", alias=alias)
    try:
        found = dom.root.xpath(xpath, namespaces=XPATH_NAMESPACES)
    except etree.XPathError as exc:
        raise SpecError("xpath", xpath, "not a valid XPath expression (%s)" % exc)
    if not isinstance(found, list) or any(not isinstance(e, etree._Element) for e in found):
        raise SpecError("xpath", xpath, "must select elements (not text, attributes or numbers)")
    metadata = dom.root.find("metadata")
    for elem in found:
        if elem is dom.root or (metadata is not None and (elem is metadata or metadata in elem.iterancestors()
                                                          or elem in metadata.iterancestors())):
            raise SpecError("xpath", xpath, "selects <%s>; the domain root, <metadata> and what is inside it "
                                            "cannot be stashed" % elem.tag)
        if any(elem in other.iterancestors() for other in found if other is not elem):
            raise SpecError("xpath", xpath, "selects both an element and one inside it; select either")
    return found


def stash_elements(dom, key, elements):
    """Move ``elements`` into a new entry ``key``, recording where each stood."""
    tree = dom.root.getroottree()
    positions = []
    for elem in elements:
        parent = elem.getparent()
        positions.append((tree.getpath(parent), _siblings(parent).index(elem), elem))
    root = stash_root(dom, create=True)
    entry = etree.SubElement(root, _q("entry"), key=key, kind="element")
    for parent_path, index, elem in sorted(positions, key=lambda p: (p[0], p[1])):
        item = etree.SubElement(entry, _q("item"), parent=parent_path, index=str(index))
        elem.getparent().remove(elem)
        elem.tail = None
        item.append(elem)
    return entry


def stash_text(dom, key, text):
    if "]]>" in text:
        raise SpecError("text", "...]]>...", "the text cannot contain ']]>' (it would end the CDATA section)")
    root = stash_root(dom, create=True)
    entry = etree.SubElement(root, _q("entry"), key=key, kind="text")
    entry.text = etree.CDATA(text)
    return entry


def restore(dom, entry):
    """Put an element entry's items back where they stood, then drop the entry.

    An item's index counts the siblings as they were when it was stashed, so the entries stashed after
    this one are put back first (last one first), and stashed again, in their order, once this one is
    back: entries can be restored in any order and the domain comes out as it was."""
    if entry.get("kind") != "element":
        raise SpecError("state", "restored", "stash %r holds raw text, which has no place in the domain; read it "
                                             "from the 'stashes' result or drop it with state=absent" % entry.get("key"))
    for item in entry.findall(_q("item")):
        for elem in item:
            for name in elem.xpath("./alias/@name"):
                if find_by_alias(dom.root, name) is not None:
                    raise SpecError("key", entry.get("key"),
                                    "cannot restore: the domain has a device with alias %r again (made after the "
                                    "stash, for example by lab_topology), and libvirt refuses two devices with one "
                                    "alias; remove that device first, or drop the stashed one with state=absent"
                                    % name)
    entries = entry.getparent().findall(_q("entry"))
    later = entries[entries.index(entry) + 1:]
    unwound = []
    for other in reversed(later):
        if other.get("kind") == "element":
            unwound.append((other.get("key"), _put_back(dom, other)))
        else:
            other.getparent().remove(other)
            unwound.append((None, other))
    _put_back(dom, entry)
    for key, kept in reversed(unwound):
        if key is None:
            stash_root(dom, create=True).append(kept)
        else:
            stash_elements(dom, key, kept)


def _prefixes(dom):
    """The namespace prefixes a recorded parent path may use: those the document declares anywhere (a
    path such as /domain/qemu:commandline was written with them) and the collection's own."""
    found = dict(XPATH_NAMESPACES)
    for elem in dom.root.iter():
        if isinstance(elem.tag, str):
            found.update((prefix, uri) for prefix, uri in elem.nsmap.items() if prefix)
    return found


def _put_back(dom, entry):
    """Put an element entry's items back at their recorded indices, drop the entry; the elements put back."""
    tree = dom.root.getroottree()
    placed = []
    items = entry.findall(_q("item"))
    for item in sorted(items, key=lambda i: int(i.get("index"))):
        parents = tree.xpath(item.get("parent"), namespaces=_prefixes(dom))
        if len(parents) != 1:
            raise SpecError("key", entry.get("key"),
                            "cannot restore: the element's parent %s is no longer in the domain" % item.get("parent"))
        parent = parents[0]
        for elem in list(item):
            elem = copy.deepcopy(elem)
            siblings = _siblings(parent)
            index = min(int(item.get("index")), len(siblings))
            if index < len(siblings):
                siblings[index].addprevious(elem)
            else:
                parent.append(elem)
            placed.append(elem)
    drop(dom, entry)
    return placed


def drop(dom, entry):
    root = entry.getparent()
    root.remove(entry)
    if len(root) == 0:
        metadata = root.getparent()
        metadata.remove(root)
        if len(metadata) == 0 and not (metadata.text or "").strip():
            metadata.getparent().remove(metadata)


def describe(dom):
    """The 'stashes' result: one dict per entry."""
    root = stash_root(dom)
    out = []
    for entry in (root.findall(_q("entry")) if root is not None else []):
        info = {"key": entry.get("key"), "kind": entry.get("kind")}
        if entry.get("kind") == "text":
            info["text"] = entry.text or ""
        else:
            info["items"] = [{"parent": item.get("parent"), "index": int(item.get("index")),
                              "element": etree.tostring(item[0], encoding="unicode", with_tail=False) if len(item) else ""}
                             for item in entry.findall(_q("item"))]
        out.append(info)
    return out
