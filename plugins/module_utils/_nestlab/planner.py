# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Spec -> PCI/NUMA plan. Pure code: no XML, no I/O.

The plan says which controller index, slot and bus number every owned device gets,
around what the domain already holds (``Inventory``), and what the guest will see.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import format_cpuset, nodedev_name

ALIAS_PREFIX = "ua-nestlab-"
LAB_PREFIX = ALIAS_PREFIX + "lab-"
# The seed's layout: expanders at bus 180, 200, 220 (0xb4, 0xc8, 0xdc), 20 bus numbers each.
SEED_FIRST_BUS = 180
SEED_BUS_STEP = 20
MAX_BUS = 255
# Slot 0 of pcie-root is the host bridge, 0x1f the ICH9 LPC/SATA/SMBus functions.
RESERVED_ROOT_SLOTS = frozenset([0x00, 0x1F])
ROOT_SLOTS = range(0x01, 0x1F)


def lab_alias(kind, node, port=None):
    """Stable user alias of a device that lab_topology owns."""
    if port is None:
        return "%s%s%d" % (LAB_PREFIX, kind, node)
    return "%s%s%d-%d" % (LAB_PREFIX, kind, node, port)


def stable_mac(lab, node, port, taken):
    """A locally administered-looking 52:54:00 MAC derived from lab name, node and port."""
    salt = 0
    while True:
        digest = hashlib.sha256(("%s/%d/%d/%d" % (lab, node, port, salt)).encode("utf-8")).digest()
        mac = "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])
        if mac not in taken:
            return mac
        salt += 1


class Inventory:
    """What the domain holds that this plan must work around (not owned by the plan)."""

    def __init__(self, used_indexes=(), used_root_slots=(), reserved_bus_ranges=(), root_buses=0, macs=()):
        self.used_indexes = set(used_indexes)
        self.used_root_slots = set(used_root_slots) | set(RESERVED_ROOT_SLOTS)
        # (first, last, what) bus ranges of expanders that someone else owns
        self.reserved_bus_ranges = list(reserved_bus_ranges)
        # bus numbers the firmware gives the root complex's own bridges and ports (1..root_buses)
        self.root_buses = root_buses
        # 52:54:00:4e:4c:4d is the management NIC's (see topology.MGMT_MAC)
        self.macs = set(macs) | {"52:54:00:4e:4c:4d"}


def plan_bus_numbers(needs, inventory, field="spec.numa"):
    """Return the first bus number of each expander; ``needs[i]`` = 1 + root ports of expander i.

    Keeps the seed's layout (180, 200, 220, ...) when it fits; otherwise packs the expanders
    from the top of the bus space down, skipping ranges other expanders hold.
    """
    lowest_free = inventory.root_buses + 1

    def clashes(first, last):
        if first < lowest_free or last > MAX_BUS:
            return True
        return any(not (last < r_first or first > r_last) for r_first, r_last, dummy in inventory.reserved_bus_ranges)

    seed = [SEED_FIRST_BUS + SEED_BUS_STEP * i for i in range(len(needs))]
    if all(need <= SEED_BUS_STEP for need in needs) and not any(
            clashes(first, first + need - 1) for first, need in zip(seed, needs)):
        return seed
    starts = [None] * len(needs)
    end = MAX_BUS
    for idx in reversed(range(len(needs))):
        first = end - needs[idx] + 1
        while first >= lowest_free and clashes(first, end):
            end -= 1
            first = end - needs[idx] + 1
        if first < lowest_free:
            total = sum(needs)
            raise SpecError(field, "%d NICs" % (total - len(needs)),
                            "the expander buses need %d bus numbers but only %d are free above the %d that "
                            "the root complex uses (bus numbers stop at %d); use fewer NICs"
                            % (total, MAX_BUS - lowest_free + 1 - sum(r[1] - r[0] + 1 for r in
                                                                      inventory.reserved_bus_ranges),
                               inventory.root_buses, MAX_BUS))
        starts[idx] = first
        end = first - 1
    return starts


def _take(free_iter, what):
    try:
        return next(free_iter)
    except StopIteration:
        raise SpecError("spec.numa", what, "no free %s is left in the domain" % what)


def make_plan(spec, lab, inventory):
    """Plan the lab ``spec`` (normalised) for domain ``lab`` around ``inventory``."""
    cells = spec["numa"]
    needs = [1 + len(cell["nics"]) for cell in cells]
    bus_nrs = plan_bus_numbers(needs, inventory)

    free_indexes = (i for i in range(1, 10 ** 4) if i not in inventory.used_indexes)
    free_slots = (s for s in ROOT_SLOTS if s not in inventory.used_root_slots)
    taken_macs = set(inventory.macs)
    for cell in cells:
        for nic in cell["nics"]:
            if nic["mac"]:
                taken_macs.add(nic["mac"])

    expanders = []
    for cell, bus_nr in zip(cells, bus_nrs):
        expanders.append({
            "node": cell["id"],
            "alias": lab_alias("pxb", cell["id"]),
            "index": _take(free_indexes, "controller index"),
            "slot": _take(free_slots, "slot on pcie-root for an expander bus"),
            "bus_nr": bus_nr,
            "guest_bus": "0000:%02x" % bus_nr,
            "root_ports": [],
            "hugepages": cell.get("hugepages") or 0,
        })
    for cell, expander in zip(cells, expanders):
        for port, nic in enumerate(cell["nics"]):
            mac = nic["mac"] or stable_mac(lab, cell["id"], port, taken_macs)
            taken_macs.add(mac)
            guest = {"domain": 0, "bus": expander["bus_nr"] + 1 + port, "slot": 0, "function": 0}
            expander["root_ports"].append({
                "alias": lab_alias("rp", cell["id"], port),
                "index": _take(free_indexes, "controller index"),
                "slot": port,
                "guest_bus": "0000:%02x" % guest["bus"],
                "nic": {
                    "alias": lab_alias("nic", cell["id"], port),
                    "model": nic["model"],
                    "mac": mac,
                    "vfs": nic.get("vfs", 0),
                    "guest_address": "0000:%02x:00.0" % guest["bus"],
                    "nodedev": nodedev_name(guest),
                },
            })
            if nic.get("wire"):
                expander["root_ports"][-1]["nic"]["wire"] = dict(nic["wire"])
    return {
        "vcpus": spec["vcpus"],
        "memory_kib": sum(cell["memory_kib"] for cell in cells),
        "cells": [{"id": cell["id"], "cpus": format_cpuset(cell["cpus"]), "memory_kib": cell["memory_kib"],
                   "distances": cell["distances"]} for cell in cells],
        "expanders": expanders,
        "iommu": spec["iommu"],
    }


def plan_summary(plan):
    """Per node: the expander's bus, the root ports' buses and the NICs as the guest sees them."""
    nodes = []
    for exp in plan["expanders"]:
        nodes.append({
            "node": exp["node"],
            "expander_bus": exp["guest_bus"],
            "bus_nr": exp["bus_nr"],
            "controller_index": exp["index"],
            "root_ports": [rp["guest_bus"] for rp in exp["root_ports"]],
            "nics": [dict(rp["nic"]) for rp in exp["root_ports"]],
            "hugepages": exp.get("hugepages", 0),
        })
    return nodes
