# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How fast the machine a module runs on runs code, against the machine a time bound was set on.

A guest booted under TCG takes as many times longer as the machine that emulates it is slower, so a
bound set on one machine is too short on a slower one. A module that waits for such a guest times
a small fixed workload (WORKLOAD_LOOPS rounds of integer arithmetic in Python, best of three) on the
machine it runs on - for L2 that is L1, whose speed is what L2's emulation gets - and multiplies
its bounds by measured / reference, where reference is what the same workload took where the
bounds were set. Never below the bounds as given (the floor), never above PACE_MAX times them
(the ceiling)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

WORKLOAD_LOOPS = 200000
PACE_MAX = 8.0


def workload(loops=WORKLOAD_LOOPS):
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1000003
    return total


def measure(rounds=3, loops=WORKLOAD_LOOPS):
    """Seconds the workload takes here: the best of ``rounds`` (the others include interruptions)."""
    best = None
    for dummy in range(rounds):
        began = time.time()
        workload(loops)
        took = time.time() - began
        best = took if best is None else min(best, took)
    return best


def pace(measured, reference, ceiling=PACE_MAX):
    """How many times longer bounds should be here: measured / reference, between 1 and ``ceiling``."""
    if not reference or reference <= 0:
        return 1.0
    return round(min(max(measured / reference, 1.0), ceiling), 2)


def scaled(seconds, factor):
    """``seconds`` times ``factor``, in whole seconds (0 stays 0: a bound that is off stays off)."""
    return int(round(seconds * factor)) if seconds else 0
