"""The planner: the seed's buses for the seed's lab; for any spec, bus ranges that never overlap."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import Inventory, make_plan
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import validate_spec


def test_seed_lab_gets_the_seed_buses():
    plan = make_plan(validate_spec(None), "nestlab", Inventory())
    assert [e["bus_nr"] for e in plan["expanders"]] == [180, 200, 220]
    assert [e["guest_bus"] for e in plan["expanders"]] == ["0000:b4", "0000:c8", "0000:dc"]
    guests = [[rp["nic"]["guest_address"][5:7] for rp in e["root_ports"]] for e in plan["expanders"]]
    assert guests == [["b5", "b6", "b7"], ["c9", "ca", "cb"], ["dd", "de", "df"]]
    assert plan["expanders"][2]["root_ports"][2]["nic"]["nodedev"] == "pci_0000_df_00_0"
    # expanders first, then their root ports, like the seed
    assert [e["index"] for e in plan["expanders"]] == [1, 2, 3]
    assert [rp["index"] for e in plan["expanders"] for rp in e["root_ports"]] == list(range(4, 13))


def test_plan_works_around_what_the_domain_has():
    inv = Inventory(used_indexes={0, 1, 2, 3}, used_root_slots={1, 2, 3}, root_buses=3)
    plan = make_plan(validate_spec(None), "nestlab", inv)
    assert [e["index"] for e in plan["expanders"]] == [4, 5, 6]
    assert [e["slot"] for e in plan["expanders"]] == [4, 5, 6]


def test_macs_are_stable_and_distinct():
    one = make_plan(validate_spec(None), "lab-a", Inventory())
    two = make_plan(validate_spec(None), "lab-a", Inventory())
    other = make_plan(validate_spec(None), "lab-b", Inventory())
    macs = [rp["nic"]["mac"] for e in one["expanders"] for rp in e["root_ports"]]
    assert macs == [rp["nic"]["mac"] for e in two["expanders"] for rp in e["root_ports"]]
    assert len(set(macs)) == 9
    assert set(macs).isdisjoint(rp["nic"]["mac"] for e in other["expanders"] for rp in e["root_ports"])
    assert all(m.startswith("52:54:00:") for m in macs)


def test_big_lab_packs_from_the_top():
    spec = validate_spec({"numa": [{"cpus": 1, "memory": 512, "nics": 16} for dummy in range(8)]})
    plan = make_plan(spec, "big", Inventory(root_buses=2))
    starts = [e["bus_nr"] for e in plan["expanders"]]
    assert starts == sorted(starts)
    assert starts[-1] + 16 == 255


def test_too_many_nics_for_the_bus_space():
    spec = validate_spec({"numa": [{"cpus": 1, "memory": 512, "nics": 32} for dummy in range(8)]})
    with pytest.raises(SpecError) as err:
        make_plan(spec, "huge", Inventory(root_buses=2))
    assert err.value.field == "spec.numa"
    assert "bus numbers" in err.value.msg


node = st.fixed_dictionaries({"cpus": st.integers(1, 4), "memory": st.sampled_from([256, 512, "1GiB"]),
                              "nics": st.integers(0, 32)})


@settings(max_examples=300, deadline=None)
@given(nodes=st.lists(node, min_size=1, max_size=16), root_buses=st.integers(0, 40),
       reserved=st.lists(st.integers(1, 250), max_size=3), used_slots=st.sets(st.integers(1, 30), max_size=8))
def test_bus_ranges_never_overlap(nodes, root_buses, reserved, used_slots):
    spec = validate_spec({"numa": nodes})
    inv = Inventory(used_indexes={0, 1, 2}, used_root_slots=used_slots, root_buses=root_buses,
                    reserved_bus_ranges=[(r, r + 3, "other") for r in reserved])
    try:
        plan = make_plan(spec, "prop", inv)
    except SpecError as err:
        assert err.field == "spec.numa"
        return
    ranges = sorted((e["bus_nr"], e["bus_nr"] + len(e["root_ports"])) for e in plan["expanders"])
    for (a_first, a_last), (b_first, dummy) in zip(ranges, ranges[1:]):
        assert a_last < b_first
    for first, last in ranges:
        assert root_buses < first and last <= 255
        for r in reserved:
            assert last < r or first > r + 3
    indexes = [e["index"] for e in plan["expanders"]]
    indexes += [rp["index"] for e in plan["expanders"] for rp in e["root_ports"]]
    assert len(indexes) == len(set(indexes)) and not set(indexes) & {0, 1, 2}
    slots = [e["slot"] for e in plan["expanders"]]
    assert len(set(slots)) == len(slots) and not set(slots) & set(used_slots) and 0 not in slots
    guest = [rp["nic"]["guest_address"] for e in plan["expanders"] for rp in e["root_ports"]]
    assert len(guest) == len(set(guest))
