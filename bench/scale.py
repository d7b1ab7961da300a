"""How planning and applying a lab grow with its size: from 1 node with 1 NIC to the largest lab
the collection accepts (16 NUMA nodes, and as many NICs per node as the PCI bus numbers allow).

- plan: validate the spec, plan buses, slots and MACs, and build the domain XML (in this process,
  no libvirt; median of --repeat runs);
- apply: the lab_topology module as its own process (Python start-up included) defining the
  lab on a freshly defined base domain on qemu:///system, then the same call again (a no-op).

    .venv/bin/python bench/scale.py [--repeat 5] [--write]      # saves bench/results/scale.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _report import add_write_option, save

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
    return {"nodes": nodes, "per_node": nics, "nics": nodes * nics,
            "devices": xml.count("<controller") + xml.count("<interface"), "xml_bytes": len(xml.encode("utf-8")),
            "plan": [round(x, 6) for x in plans], "apply": [round(x, 4) for x in applies],
            "noop": [round(x, 4) for x in noops]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    add_write_option(parser)
    args = parser.parse_args()
    sizes, limits = [], []
    for nodes in (1, 2, 4, 8, MAX_NODES):
        most, reason = largest_nics(nodes)
        limits.append({"nodes": nodes, "per_node": most, "message": reason})
        sizes += [(nodes, nics) for nics in sorted(set(n for n in (1, 4, most) if n <= most))]
    rows = [measure(nodes, nics, args.repeat) for nodes, nics in sizes]
    save("scale", {"repeat": args.repeat, "rows": rows, "limits": limits}, args.write)


if __name__ == "__main__":
    main()
