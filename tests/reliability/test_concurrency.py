"""8 processes edit different concerns of one domain at once, 100 rounds: no edit is lost.

Each worker process imports the collection once, then runs its module for every round in a forked
child, exactly as the module runs under Ansible (arguments from a file, JSON on stdout), without
paying Python's start-up 800 times. After each round the test reads the domain and checks that every
worker's edit of that round is there."""

import multiprocessing
import time

import libvirt
import pytest

import report
from helpers import forked_module, remove_domain, run_module, unique_name

pytestmark = pytest.mark.libvirt

ROUNDS = 100
SMALL = {"numa": [{"cpus": 1, "memory": 256, "nics": 0}, {"cpus": 1, "memory": 256, "nics": 0}], "accel": "tcg"}
PACKAGE = "ansible_collections.nestlab.pci.plugins.modules."


def jobs(name, rnd):
    """The 8 edits of round ``rnd``: (module, arguments, text the domain XML must then contain or lack)."""
    even = rnd % 2 == 0
    memory = 260 + 4 * (rnd % 5)
    return [
        ("pci_expander", {"name": name, "id": "cc1", "node": 0, "bus_nr": 60,
                          "state": "present" if even else "absent"}, ("ua-nestlab-pxb-cc1", even)),
        ("pci_expander", {"name": name, "id": "cc2", "node": 1, "bus_nr": 90,
                          "state": "absent" if even else "present"}, ("ua-nestlab-pxb-cc2", not even)),
        ("iommu", {"name": name, "eim": even}, ("eim='on'", even)),
        ("stash", {"name": name, "key": "memo1", "text": "memo one", "state": "stashed" if even else "absent"},
         ("memo one", even)),
        ("stash", {"name": name, "key": "memo2", "text": "memo two", "state": "absent" if even else "stashed"},
         ("memo two", not even)),
        ("hostdev", {"name": name, "address": "0000:00:00.0", "id": "cc6",
                     "state": "present" if even else "absent"}, ("ua-nestlab-hostdev-cc6", even)),
        ("numa", {"name": name, "cells": [{"cpus": 1, "memory": 256}, {"cpus": 1, "memory": memory}]},
         ("memory='%d'" % (memory * 1024), True)),
        ("root_port", {"name": name, "id": "cc8", "expander": "pcie-root",
                       "state": "absent" if even else "present"}, ("ua-nestlab-rp-cc8", not even)),
    ]


def worker(index, name, start, done, results):
    # the imports every module needs, once per worker
    for module in ("pci_expander", "iommu", "stash", "hostdev", "numa", "root_port"):
        __import__(PACKAGE + module)
    for rnd in range(ROUNDS):
        start.wait()
        module, args, dummy = jobs(name, rnd)[index]
        began = time.time()
        result = forked_module(module, args)
        results.put((index, rnd, bool(result.get("failed")), result.get("msg", ""), result.get("conflicts", 0),
                     time.time() - began))
        done.wait()


def test_eight_processes_one_domain_100_rounds_no_lost_edit(conn):
    name = unique_name("conc")
    made = run_module("lab_topology", {"name": name, "spec": SMALL})
    assert made["changed"], made
    ctx = multiprocessing.get_context("fork")
    start, done = ctx.Barrier(9), ctx.Barrier(9)
    results = ctx.Queue()
    workers = [ctx.Process(target=worker, args=(i, name, start, done, results)) for i in range(8)]
    lost = []
    failures = []
    rows = []
    began = time.time()
    try:
        for proc in workers:
            proc.start()
        for rnd in range(ROUNDS):
            start.wait(timeout=120)
            round_rows = [results.get(timeout=120) for dummy in range(8)]
            rows += round_rows
            failures += [row for row in round_rows if row[2]]
            xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            for index, (module, dummy, (needle, present)) in enumerate(jobs(name, rnd)):
                if (needle in xml) != present:
                    lost.append((rnd, index, module, needle, present))
            done.wait(timeout=120)
        for proc in workers:
            proc.join(timeout=60)
    finally:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
        remove_domain(conn, name)
    seconds = time.time() - began
    edits = len(rows)
    assert sum(row[4] for row in rows) == 0  # the lock covers read, plan and write
    slowest = max(row[5] for row in rows) if rows else 0
    assert edits == 8 * ROUNDS
    assert not failures, failures[:5]
    assert not lost, lost[:10]
    report.write_section("Concurrency: 8 processes, one domain", "tests/reliability/test_concurrency.py", [
        "| rounds | processes | edits | failed | lost edits | wall clock | slowest edit |",
        "|---|---|---|---|---|---|---|",
        "| %d | 8 | %d | %d | %d | %.0f s | %.2f s |" % (ROUNDS, edits, len(failures), len(lost), seconds, slowest),
        "",
        "Each round every process makes one edit of its own concern, all at once: two expanders, a hostdev"
        " and a root port added or removed, the vIOMMU's eim turned on or off, two stash entries made or"
        " dropped, a NUMA cell's memory changed; then the domain XML is"
        " read and each of the 8 edits of that round must be there. Edits of one domain are serialised"
        " by a host-wide lock, so none of these edits ever meets a changed definition. A write also checks"
        " that the definition is still the one it was planned from, for editors outside this collection,"
        " and plans again when it is not: test_a_writer_outside_the_lock_makes_the_module_plan_again"
        " makes such an editor write between the module's read and its write."])


def test_a_writer_outside_the_lock_makes_the_module_plan_again(conn):
    """An editor that does not take the collection's lock (virsh, virt-manager) changes the domain after
    the module read it and before it writes: the write sees a definition other than the one it planned
    from, the module reads and plans again, and both edits are in the domain."""
    from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import target

    name = unique_name("cas")
    made = run_module("lab_topology", {"name": name, "spec": SMALL})
    assert made["changed"] and not made.get("failed"), made

    def outside_writer_after_the_first_read():
        read = target.DomainTarget.read
        calls = []

        def read_then_edit(self):
            text = read(self)
            calls.append(1)
            if len(calls) == 1:
                # the first read is the one the module plans from: another editor writes now
                other = libvirt.open("qemu:///system")
                xml = other.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                other.defineXML(xml.replace("</name>", "</name>\n  <description>edited outside</description>", 1))
                other.close()
            return text

        target.DomainTarget.read = read_then_edit

    try:
        result = forked_module("pci_expander", {"name": name, "id": "cas1", "node": 0, "bus_nr": 60},
                               prepare=outside_writer_after_the_first_read)
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] and result["conflicts"] == 1, result
        xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert "<description>edited outside</description>" in xml and "ua-nestlab-pxb-cas1" in xml
        again = forked_module("pci_expander", {"name": name, "id": "cas1", "node": 0, "bus_nr": 60})
        assert again["changed"] is False and "conflicts" not in again, again
    finally:
        remove_domain(conn, name)
