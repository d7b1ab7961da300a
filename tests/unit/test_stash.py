"""Stash: a stash then restore gives back the same XML, whatever is stashed and in what order."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import stash
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import Domain
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import parse, to_text

from unit.test_engine import LIBVIRT_FRESH_Q35


def fresh(with_metadata=False):
    dom = Domain(parse(LIBVIRT_FRESH_Q35))
    if with_metadata:
        meta = parse("<metadata><app:x xmlns:app='urn:other-app'>keep me</app:x></metadata>")
        dom.root.find("name").addnext(meta)
    return dom


def test_seed_example_disk_round_trip():
    dom = fresh()
    before = to_text(dom.root)
    stash.stash_elements(dom, "disk", stash.select(dom, "./devices/disk[target/@dev='vda']"))
    assert dom.root.find("devices/disk") is None
    text = to_text(dom.root)
    assert 'xmlns:nlstash="urn:x-nestlab:pci:stash:1"' in text and "<disk " in text
    stash.restore(dom, stash.find_entry(dom, "disk"))
    assert to_text(dom.root) == before


@pytest.mark.parametrize("prefix", ["qemu", "q"])
def test_a_namespaced_element_is_restored_where_it_stood(prefix):
    """qemu:commandline's children, under the usual prefix or another one the document chose: the
    recorded parent path names the prefix, and restoring must resolve it (it once raised 'Undefined
    namespace prefix' and left the element in <metadata>)."""
    ns = "http://libvirt.org/schemas/domain/qemu/1.0"
    dom = Domain(parse(LIBVIRT_FRESH_Q35.replace("<domain type='kvm'>", "<domain type='kvm' xmlns:%s='%s'>" % (prefix, ns))
                       .replace("</devices>", "</devices>\n  <%s:commandline><%s:arg value='-S'/><%s:arg value='-no-reboot'/>"
                                "</%s:commandline>" % ((prefix,) * 4))))
    before = to_text(dom.root)
    assert "<%s:commandline>" % prefix in before
    stash.stash_elements(dom, "arg", dom.root.xpath("./q:commandline/q:arg[1]", namespaces={"q": ns}))
    assert "value=\"-S\"" not in to_text(dom.root).split("<metadata>")[0]
    stash.restore(dom, stash.find_entry(dom, "arg"))
    assert to_text(dom.root) == before


def test_other_applications_metadata_is_untouched():
    dom = fresh(with_metadata=True)
    before = to_text(dom.root)
    stash.stash_text(dom, "note", "half <written")
    assert "keep me" in to_text(dom.root)
    stash.drop(dom, stash.find_entry(dom, "note"))
    assert to_text(dom.root) == before


def test_text_cannot_end_the_cdata():
    with pytest.raises(SpecError) as err:
        stash.stash_text(fresh(), "bad", "x ]]> y")
    assert err.value.field == "text"


@pytest.mark.parametrize("xpath", ["/domain", "./metadata", "./devices/disk/@type", "count(./devices/*)", "./devices["])
def test_bad_selections_are_refused(xpath):
    dom = fresh(with_metadata=True)
    with pytest.raises(SpecError) as err:
        stash.select(dom, xpath)
    assert err.value.field == "xpath"


DEVICE_XPATHS = ["./devices/disk", "./devices/controller[@index='2']", "./devices/interface",
                 "./devices/memballoon", "./devices/controller[@index='1']", "./os/boot", "./vcpu"]


@settings(max_examples=100, deadline=None)
@given(picks=st.lists(st.sampled_from(DEVICE_XPATHS), min_size=1, max_size=5, unique=True),
       order=st.randoms(use_true_random=False), meta=st.booleans())
def test_any_stash_then_restore_in_any_order_gives_back_the_same_xml(picks, order, meta):
    dom = fresh(with_metadata=meta)
    before = to_text(dom.root)
    for idx, xpath in enumerate(picks):
        stash.stash_elements(dom, "k%d" % idx, stash.select(dom, xpath))
    keys = ["k%d" % idx for idx in range(len(picks))]
    # restoring in any order puts every element back exactly
    order.shuffle(keys)
    for key in keys:
        stash.restore(dom, stash.find_entry(dom, key))
    assert to_text(dom.root) == before
    assert stash.describe(dom) == []
    # and the stash survives a serialise/parse cycle (what libvirt does with it)
    dom2 = Domain(parse(to_text(copy.deepcopy(dom.root))))
    stash.stash_elements(dom2, "again", stash.select(dom2, picks[0]))
    dom3 = Domain(parse(to_text(dom2.root)))
    stash.restore(dom3, stash.find_entry(dom3, "again"))
    assert to_text(dom3.root) == before
