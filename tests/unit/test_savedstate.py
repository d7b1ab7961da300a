"""Saved states' names, digests, records and the reasons a reset is refused."""

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import savedstate
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError


@pytest.mark.parametrize("name", ["verified", "after-l2", "v1.2_b", "9" * 64])
def test_good_names(name):
    assert savedstate.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a/b", "../up", "a b", "9" * 65, None, "é"])
def test_bad_names_say_what_is_allowed(name):
    with pytest.raises(SpecError) as err:
        savedstate.check_name(name)
    assert err.value.field == "snapshot" and "letters, digits" in err.value.msg


def test_the_digest_ignores_trailing_blanks_only():
    xml = "<domain>\n  <name>a</name>\n</domain>\n"
    assert savedstate.definition_digest(xml) == savedstate.definition_digest(xml.replace("\n", "  \n"))
    assert savedstate.definition_digest(xml) != savedstate.definition_digest(xml.replace(">a<", ">b<"))


def test_records_and_the_list(tmp_path):
    states = str(tmp_path / "states")
    savedstate.write_record(states, savedstate.make_record("one", "lab", "d1", '{"guest": {}}', now=1000))
    assert savedstate.read_record(states, "one")["report"] == '{"guest": {}}'
    assert savedstate.read_record(states, "two") is None
    (tmp_path / "states" / "bad.json").write_text("{not json")
    assert savedstate.read_record(states, "bad") is None
    listed = savedstate.describe({"by-hand": 5, "one": 1000}, states, "d1")
    assert [s["name"] for s in listed] == ["by-hand", "one"]
    assert listed[0] == {"name": "by-hand", "created": "1970-01-01 00:00:05 UTC", "saved_by_nestlab": False,
                         "resettable": False}
    assert listed[1]["resettable"] is True and listed[1]["definition_changed"] is False
    assert savedstate.describe({"one": 1000}, states, "d2")[0]["resettable"] is False
    savedstate.remove_record(states, "one")
    assert savedstate.read_record(states, "one") is None


def test_why_a_reset_is_refused(tmp_path):
    record = savedstate.make_record("one", "lab", "d1", '{"guest": {}}', now=0)
    assert savedstate.refuse_reset("lab", "one", record, "d1", {"one": 0}, "/s") is None
    missing = savedstate.refuse_reset("lab", "two", None, "d1", {"one": 0}, "/s")
    assert missing.msg == "snapshot: 'two' is not a saved state of lab; its saved states: one"
    foreign = savedstate.refuse_reset("lab", "one", None, "d1", {"one": 0}, "/s")
    assert "was not saved by nestlab.pci (no record in /s)" in foreign.msg
    changed = savedstate.refuse_reset("lab", "one", record, "d2", {"one": 0}, "/s")
    assert "saved on 1970-01-01 00:00:00 UTC with another definition of lab" in changed.msg
