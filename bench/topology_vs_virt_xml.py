"""Apply a lab topology with ansible-playbook + nestlab.pci.lab_topology and with virt-xml, side by side.

Whole processes, wall clock, --repeat runs, each on a freshly defined base domain; and the floor, one
`virsh define` of the XML lab_topology made. Checks that both sides made the same devices. Saves
bench/results/topology-vs-virt-xml.json (--write: renders docs/benchmarks.md again).

    .venv/bin/python bench/topology_vs_virt_xml.py --repeat 3 [--write]
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
URI = "qemu:///system"
VENV_BIN = os.path.dirname(sys.executable)

LABS = {
    "seed lab (3 nodes x 3 NICs)": [
        {"cpus": 4, "memory": 4096, "nics": 3},
        {"cpus": 2, "memory": 2048, "nics": 3},
        {"cpus": 2, "memory": 2048, "nics": 3},
    ],
    "8 nodes x 16 NICs": [{"cpus": 1, "memory": 512, "nics": 16} for dummy in range(8)],
}


def base_xml(name, vcpus, memory_mib):
    return ("<domain type='qemu'><name>%s</name><memory unit='MiB'>%d</memory><vcpu>%d</vcpu>"
            "<os><type arch='x86_64' machine='q35'>hvm</type></os><features><acpi/><apic/></features>"
            "<devices><controller type='pci' index='0' model='pcie-root'/></devices></domain>"
            % (name, memory_mib, vcpus))


def virsh(*args, check=True):
    return subprocess.run(["virsh", "-q", "-c", URI] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=check)


def fresh(name, nodes):
    virsh("destroy", name, check=False)
    virsh("undefine", name, check=False)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as handle:
        handle.write(base_xml(name, sum(n["cpus"] for n in nodes), sum(n["memory"] for n in nodes)))
    virsh("define", handle.name)
    os.unlink(handle.name)
    return virsh("dumpxml", "--inactive", name).stdout


def free_from(xml):
    """Next free controller index and the free slots on pcie-root of a freshly defined domain."""
    import re
    indexes = [int(i) for i in re.findall(r"<controller type='pci' index='(\d+)'", xml)]
    used = {int(s, 16) for s in re.findall(r"bus='0x00' slot='(0x[0-9a-f]+)'", xml)} | {0, 0x1f}
    return max(indexes) + 1, [s for s in range(1, 0x1f) if s not in used]


def virt_xml_commands(name, nodes, first_index, slots):
    """The same topology as virt-xml calls: --edit --cpu for the cells, one --add-device per device."""
    cells = []
    cpu = 0
    for idx, node in enumerate(nodes):
        cells.append("numa.cell%d.id=%d,numa.cell%d.cpus=%d-%d,numa.cell%d.memory=%d" % (
            idx, idx, idx, cpu, cpu + node["cpus"] - 1, idx, node["memory"] * 1024))
        cpu += node["cpus"]
    cmds = [["--edit", "--cpu", "clearxml=yes,mode=maximum," + ",".join(cells)],
            ["--edit", "--features", "ioapic.driver=qemu"]]
    index = first_index
    pxb_index = []
    bus_nrs = [180 + 20 * i for i in range(len(nodes))] if all(n["nics"] < 20 for n in nodes) and len(nodes) <= 3 \
        else [255 - (len(nodes) - i) * 17 + 1 for i in range(len(nodes))]
    for idx, node in enumerate(nodes):
        cmds.append(["--add-device", "--controller",
                     "type=pci,index=%d,model=pcie-expander-bus,target.busNr=%d,target.node=%d,"
                     "address.type=pci,address.bus=0,address.slot=%d" % (index, bus_nrs[idx], idx, slots[idx])])
        pxb_index.append(index)
        index += 1
    ports = []
    for idx, node in enumerate(nodes):
        for port in range(node["nics"]):
            cmds.append(["--add-device", "--controller",
                         "type=pci,index=%d,model=pcie-root-port,address.type=pci,address.bus=%d,address.slot=%d"
                         % (index, pxb_index[idx], port)])
            ports.append(index)
            index += 1
    for port_index in ports:
        cmds.append(["--add-device", "--network",
                     "type=user,model=e1000e,address.type=pci,address.bus=%d,address.slot=0" % port_index])
    cmds.append(["--add-device", "--iommu", "model=intel,driver.intremap=on,driver.caching_mode=on"])
    return [["virt-xml", "--connect", URI, name] + c + ["--define"] for c in cmds]


def time_it(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_playbook(name, nodes):
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "nestlab.pci.lab_topology": {"name": name, "uri": URI,
                                     "spec": {"accel": "tcg", "numa": nodes}}, "register": "r"}, {
        "ansible.builtin.assert": {"that": ["not r.failed"], "quiet": True}}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False, dir=ROOT) as handle:
        json.dump(play, handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    try:
        proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                               "-e", "ansible_python_interpreter=" + sys.executable, handle.name],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
                              cwd=ROOT, check=False)
    finally:
        os.unlink(handle.name)
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:])
    recap = [l for l in proc.stdout.splitlines() if l.startswith("localhost") and "changed=" in l][-1]
    return int(recap.split("changed=")[1].split()[0])


def run_virt_xml(cmds):
    for cmd in cmds:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False)
        if proc.returncode:
            raise SystemExit("virt-xml failed: %s\n%s" % (" ".join(cmd), proc.stdout))


def devices(xml):
    """What "the same topology" means here: the PCI controllers (model, bus number, NUMA node), the NICs
    (model), the vIOMMU (model and switches that are on) and the NUMA cells (CPUs, memory), as a sorted list."""
    from lxml import etree
    root = etree.fromstring(xml.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    found = []
    for ctrl in root.findall("devices/controller[@type='pci']"):
        target = ctrl.find("target")
        found.append(("controller", ctrl.get("model"), target.get("busNr") if target is not None else None,
                      target.findtext("node") if target is not None else None))
    found += [("interface", (nic.find("model").get("type") if nic.find("model") is not None else None), None, None)
              for nic in root.findall("devices/interface")]
    for iommu in root.findall("devices/iommu"):
        driver = iommu.find("driver")
        switches = sorted(k for k, v in (driver.attrib.items() if driver is not None else []) if v == "on")
        found.append(("iommu", iommu.get("model"), ",".join(switches), None))
    for cell in root.findall("cpu/numa/cell"):
        memory = int(cell.get("memory")) * {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}.get(cell.get("unit", "KiB"), 1)
        found.append(("cell", cell.get("cpus"), str(memory), None))
    return sorted(found, key=lambda item: tuple(str(x) for x in item))


def define_floor(name, xml):
    """Seconds of one `virsh define` of ``xml`` (the domain undefined first: its UUID is in the XML)."""
    virsh("undefine", name, check=False)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as handle:
        handle.write(xml)
    try:
        return time_it(lambda: virsh("define", handle.name))
    finally:
        os.unlink(handle.name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    add_write_option(parser)
    args = parser.parse_args()
    name = "nlbench-topology"
    labs = []
    for label, nodes in LABS.items():
        ours, noop, theirs, floor = [], [], [], []
        cmds = virt_xml_commands(name, nodes, *free_from(fresh(name, nodes)))
        for dummy in range(args.repeat):
            fresh(name, nodes)
            ours.append(time_it(lambda: run_playbook(name, nodes)))
            changed = []
            noop.append(time_it(lambda: changed.append(run_playbook(name, nodes))))
            assert changed == [0], "the re-run changed something"
            ours_xml = virsh("dumpxml", "--inactive", name).stdout
            floor.append(define_floor(name, ours_xml))
            fresh(name, nodes)
            theirs.append(time_it(lambda: run_virt_xml(cmds)))
            theirs_xml = virsh("dumpxml", "--inactive", name).stdout
        virsh("undefine", name, check=False)
        mine, other = devices(ours_xml), devices(theirs_xml)
        difference = "" if mine == other else "lab_topology only %s; virt-xml only %s" % (
            [d for d in mine if d not in other], [d for d in other if d not in mine])
        labs.append({"label": label, "calls": len(cmds), "ours": ours, "noop": noop, "virt_xml": theirs, "floor": floor,
                     "same_devices": mine == other, "difference": difference, "devices": len(mine)})
    versions = subprocess.run(["virsh", "-c", URI, "version"], stdout=subprocess.PIPE, universal_newlines=True,
                              check=False).stdout.split("\n")
    save("topology-vs-virt-xml", {"repeat": args.repeat, "labs": labs, "versions": "; ".join(
        v.strip() for v in versions if "Running" in v or "library" in v)}, args.write)


if __name__ == "__main__":
    main()
