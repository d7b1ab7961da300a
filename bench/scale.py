"""How planning and applying a lab grow with its size: from 1 node with 1 NIC to the largest lab
the collection accepts (16 NUMA nodes, and as many NICs per node as the PCI bus numbers allow).

- plan: validate the spec, plan buses, slots and MACs, and build the domain XML (in this process,
  no libvirt; median of --repeat runs);
- apply: the lab_topology module as its own process (Python start-up included) defining the
  lab on a freshly defined base domain on qemu:///system, then the same call again (a no-op).

    .venv/bin/python bench/scale.py [--repeat 5] [--write [FILE]]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _report import add_write_option, emit, machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "collections"))

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.domain import Domain, new_domain  # noqa: E402
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError  # noqa: E402
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import MAX_NODES, validate_spec  # noqa: E402
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import apply_lab  # noqa: E402
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import to_text  # noqa: E402

URI = "qemu:///system"
NAME = "nltest-bench-scale"


def spec_for(nodes, nics):
    return {"accel": "tcg", "numa": [{"cpus": 1, "memory": 256, "nics": nics} for dummy in range(nodes)]}


def plan_xml(spec):
    dom = Domain(new_domain(NAME))
    apply_lab(dom, validate_spec(spec), "nestlab", "tcg")
    return to_text(dom.root)


def largest_nics(nodes):
    """The most NICs per node a lab of ``nodes`` nodes can have, and the planner's message for one more."""
    best = 0
    for nics in range(1, 65):
        try:
            plan_xml(spec_for(nodes, nics))
        except SpecError as exc:
            return best, exc.msg
        best = nics
    return best, "(no limit found up to 64)"


def run_module(args):
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "collections"))
    try:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.nestlab.pci.plugins.modules.lab_topology",
                               handle.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              env=env, check=False)
        seconds = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("failed"):
        raise SystemExit("lab_topology failed: %s" % result.get("msg"))
    return seconds, result["changed"]


def virsh(*args):
    return subprocess.run(["virsh", "-q", "-c", URI] + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False)


def fresh_domain():
    virsh("undefine", NAME)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as handle:
        handle.write(to_text(new_domain(NAME)))
    virsh("define", handle.name)
    os.unlink(handle.name)


def measure(nodes, nics, repeat):
    spec = spec_for(nodes, nics)
    plans = []
    for dummy in range(repeat):
        started = time.perf_counter()
        xml = plan_xml(spec)
        plans.append(time.perf_counter() - started)
    applies, noops = [], []
    for dummy in range(repeat):
        fresh_domain()
        seconds, changed = run_module({"name": NAME, "uri": URI, "spec": spec})
        assert changed, "the first apply changed nothing"
        applies.append(seconds)
        seconds, changed = run_module({"name": NAME, "uri": URI, "spec": spec})
        assert not changed, "the second apply changed the domain"
        noops.append(seconds)
    virsh("undefine", NAME)
    return {"nodes": nodes, "nics": nics, "devices": xml.count("<controller") + xml.count("<interface"),
            "xml_kib": len(xml.encode("utf-8")) / 1024.0, "plan": statistics.median(plans),
            "apply": statistics.median(applies), "noop": statistics.median(noops)}


def fit(xs, ys):
    """Least squares y = a + b x: (a, b)."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def growth(rows):
    """How the times grow with the number of NICs: the exponent of plan time (a log-log fit), and
    a fixed cost plus a cost per NIC for apply and no-op."""
    nics = [row["nodes"] * row["nics"] for row in rows]
    dummy, exponent = fit([math.log(n) for n in nics], [math.log(row["plan"]) for row in rows])
    fixed_apply, per_apply = fit(nics, [row["apply"] for row in rows])
    fixed_noop, per_noop = fit(nics, [row["noop"] for row in rows])
    return ("Growth (least squares over all rows): planning grows as NICs^%.2f; apply is %.2f s plus %.2f ms"
            " per NIC, a no-op %.2f s plus %.2f ms per NIC (the fixed part is mostly Python start-up and the"
            " libvirt connection; each NIC brings a root port too)."
            % (exponent, fixed_apply, per_apply * 1000, fixed_noop, per_noop * 1000))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    add_write_option(parser)
    args = parser.parse_args()
    sizes, limits = [], []
    for nodes in (1, 2, 4, 8, MAX_NODES):
        most, reason = largest_nics(nodes)
        limits.append("- %d node%s: at most %d NICs per node; one more gives `%s`"
                      % (nodes, "" if nodes == 1 else "s", most, reason))
        sizes += [(nodes, nics) for nics in sorted(set(n for n in (1, 4, most) if n <= most))]
    rows = [measure(nodes, nics, args.repeat) for nodes, nics in sizes]
    lines = ["Command: `.venv/bin/python bench/scale.py --repeat %d`; median of %d runs. Plan: spec checks, bus,"
             " slot and MAC planning and the domain XML, in one process, no libvirt. Apply: the lab_topology module"
             " as its own process (Python start-up included) defining the lab on a freshly defined base domain,"
             " then the same call again (no-op). Machine: %s. Run on %s."
             % (args.repeat, args.repeat, machine(), time.strftime("%Y-%m-%d")), "",
             "| NUMA nodes | NICs per node | NICs | controllers and NICs in the XML | XML | plan | apply | no-op |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| %d | %d | %d | %d | %.1f KiB | %.1f ms | %.2f s | %.2f s |" % (
            row["nodes"], row["nics"], row["nodes"] * row["nics"], row["devices"], row["xml_kib"],
            row["plan"] * 1000, row["apply"], row["noop"]))
    lines += ["", "The largest labs accepted (the planner's message for one NIC more):", ""] + limits
    lines += ["", growth(rows)]
    emit(lines, "scale", args.write)


if __name__ == "__main__":
    main()
