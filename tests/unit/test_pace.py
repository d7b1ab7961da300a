"""The pace factor that scales boot time bounds: measured / reference, never below 1 (the bounds as
given) nor above the ceiling."""

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import pace


def test_the_factor_stays_between_the_floor_and_the_ceiling():
    assert pace.pace(0.3, 0.15) == 2.0
    assert pace.pace(0.05, 0.15) == 1.0          # a faster machine keeps the bounds as given
    assert pace.pace(10.0, 0.15) == pace.PACE_MAX == 8.0
    assert pace.pace(0.4, 0.15, ceiling=2.5) == 2.5
    assert pace.pace(0.3, None) == 1.0 and pace.pace(0.3, 0) == 1.0
    assert pace.scaled(300, 2.7) == 810 and pace.scaled(0, 8.0) == 0 and pace.scaled(60, 1.0) == 60


def test_the_workload_is_the_same_work_every_time():
    assert pace.workload(1000) == pace.workload(1000) != pace.workload(999)
    assert pace.measure(rounds=2, loops=1000) > 0
