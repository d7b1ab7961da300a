# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where things live in a libvirt domain, and how each concern is brought to its desired state.

Every ``ensure_*`` edits the tree only where it differs from what is wanted, so applying
the same thing twice changes nothing; owned devices are found by their ``ua-nestlab-`` alias.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.planner import ALIAS_PREFIX, Inventory
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.units import parse_cpuset, unit_factor, xml_int
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import E, etree, find_by_alias, matches

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
# QEMU's amd-iommu translates the DMA of a device that the guest gives to vfio only with dma-remap on (without
# it DPDK moved no packet through it: bench/results/iommu-vendors-newer.json); libvirt has no attribute for it
AMD_IOMMU_ARGS = ("-global", "amd-iommu.dma-remap=on")

# libvirt's own order of device kinds, so files we write read like ``virsh dumpxml``.
DEVICE_ORDER = ("emulator", "disk", "controller", "lease", "filesystem", "interface", "smartcard", "serial",
                "parallel", "console", "channel", "input", "tpm", "graphics", "sound", "audio", "video",
                "hostdev", "redirdev", "redirfilter", "hub", "watchdog", "memballoon", "rng", "shmem",
                "memory", "iommu", "vsock", "crypto", "panic")
CPU_MODES = ("host-passthrough", "host-model", "maximum", "custom")


def hexbyte(value, width=2):
    return "0x%0*x" % (width, value)


def pci_address(bus, slot, function=0, domain=0):
    return E("address", {"type": "pci", "domain": hexbyte(domain, 4), "bus": hexbyte(bus),
                         "slot": hexbyte(slot), "function": "0x%x" % function})


def new_domain(name, domain_type="qemu", machine="q35"):
    """The smallest q35 domain libvirt accepts; lab_topology fills in the rest."""
    return E("domain", {"type": domain_type}, [
        E("name", text=name),
        E("memory", {"unit": "KiB"}, text="0"),
        E("vcpu", {"placement": "static"}, text="1"),
        E("os", children=[E("type", {"arch": "x86_64", "machine": machine}, text="hvm")]),
        E("features", children=[E("acpi"), E("apic")]),
        E("devices", children=[E("controller", {"type": "pci", "index": "0", "model": "pcie-root"})]),
    ])


def controller_index(ctrl):
    """A PCI controller's index, or None where the document leaves it to libvirt (which gives it the
    lowest free index at define)."""
    text = (ctrl.get("index") or "").strip()
    return xml_int(text) if text else None


# The top-level elements of a domain in the order libvirt writes them (virDomainDefFormat)
TOP_ORDER = ("name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory", "currentMemory",
             "blkiotune", "memtune", "memoryBacking", "vcpu", "vcpus", "iothreads", "iothreadids", "defaultiothread",
             "cputune", "numatune", "resource", "sysinfo", "bootloader", "bootloader_args", "os", "idmap", "features",
             "cpu", "clock", "on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm", "perf", "devices",
             "seclabel", "keywrap", "launchSecurity")


class Domain:
    """A libvirt domain document (an lxml element) with the collection's vocabulary."""

    def __init__(self, root):
        if root.tag != "domain":
            raise SpecError("xml", root.tag, "the document's root element must be <domain>")
        self.root = root

    # ----------------------------------------------------------------- reading
    @property
    def name(self):
        return (self.root.findtext("name") or "").strip()

    @property
    def machine(self):
        elem = self.root.find("os/type")
        return elem.get("machine", "") if elem is not None else ""

    @property
    def is_q35(self):
        machine = self.machine
        return machine == "q35" or machine.startswith("pc-q35")

    @property
    def devices(self):
        devices = self.root.find("devices")
        if devices is None:
            devices = E("devices")
            self.root.append(devices)
        return devices

    def controllers(self, model=None):
        out = self.root.xpath("./devices/controller[@type='pci']")
        return [c for c in out if model is None or c.get("model") == model]

    def controllers_by_index(self):
        """{index: controller} of the PCI controllers that have an index (in a definition libvirt has read
        back, all of them: it numbers those without one at define)."""
        return dict((index, c) for index, c in ((controller_index(c), c) for c in self.controllers())
                    if index is not None)

    def controller_by_index(self, index):
        for ctrl in self.controllers():
            if controller_index(ctrl) == index:
                return ctrl
        return None

    @staticmethod
    def address_of(elem):
        addr = elem.find("address")
        if addr is None or addr.get("type") != "pci":
            return None
        return {key: xml_int(addr.get(key, "0")) for key in ("domain", "bus", "slot", "function")}

    @staticmethod
    def alias_of(elem):
        alias = elem.find("alias")
        return alias.get("name") if alias is not None else None

    def owned(self, prefix=ALIAS_PREFIX):
        return [elem for elem in self.devices if (self.alias_of(elem) or "").startswith(prefix)]

    def expander_ranges(self, exclude_prefix=None):
        """(first, last, alias) bus ranges of the expanders: busNr .. busNr + root ports."""
        ranges = []
        for pxb in self.controllers("pcie-expander-bus") + self.controllers("pci-expander-bus"):
            alias = self.alias_of(pxb) or ""
            if exclude_prefix and alias.startswith(exclude_prefix):
                continue
            target = pxb.find("target")
            if target is None or target.get("busNr") is None:
                continue
            first = xml_int(target.get("busNr"))
            index = controller_index(pxb)
            ports = len(self.children_of(index)) if index is not None else 0
            ranges.append((first, first + ports, alias or "index %s" % pxb.get("index")))
        return sorted(ranges)

    def children_of(self, index):
        """Controllers and devices whose PCI address sits on the bus of controller ``index``."""
        out = []
        for elem in self.devices:
            addr = self.address_of(elem)
            if addr is not None and addr["bus"] == index:
                out.append(elem)
        return out

    def root_bus_count(self, exclude_prefix=None):
        """Bus numbers the firmware gives bridges and ports of the root complex (not behind expanders)."""
        by_index = self.controllers_by_index()
        count = 0
        for ctrl in self.controllers():
            index = controller_index(ctrl)
            if index == 0 or ctrl.get("model") in ("pcie-expander-bus", "pci-expander-bus", "pci-root", "pcie-root"):
                continue
            if exclude_prefix and (self.alias_of(ctrl) or "").startswith(exclude_prefix):
                continue
            parent = ctrl
            seen = set()
            while parent is not None and id(parent) not in seen:
                seen.add(id(parent))
                addr = self.address_of(parent)
                if addr is None:
                    # libvirt assigns it on the root complex
                    count += 1
                    break
                parent = by_index.get(addr["bus"])
                if parent is None or parent.get("model") == "pcie-root":
                    count += 1
                    break
                if parent.get("model") in ("pcie-expander-bus", "pci-expander-bus"):
                    break
        return count

    def inventory(self, owned_prefix, obstacles=()):
        """What a planner owning ``owned_prefix`` must work around; ``obstacles``: aliases under that
        prefix that the planner does not place (such as a virtio vIOMMU's), which count as in the way."""
        used_indexes = set()
        used_slots = set()
        macs = set()
        for elem in self.devices:
            alias = self.alias_of(elem) or ""
            if alias.startswith(owned_prefix) and alias not in obstacles:
                continue
            if elem.tag == "controller" and elem.get("type") == "pci":
                used_indexes.add(controller_index(elem))
            addr = self.address_of(elem)
            if addr is not None and addr["bus"] == 0:
                used_slots.add(addr["slot"])
            mac = elem.find("mac")
            if elem.tag == "interface" and mac is not None and mac.get("address"):
                macs.add(mac.get("address").lower())
        used_indexes.discard(None)
        used_indexes.add(0)
        return Inventory(used_indexes=used_indexes, used_root_slots=used_slots,
                         reserved_bus_ranges=self.expander_ranges(exclude_prefix=owned_prefix),
                         root_buses=self.root_bus_count(exclude_prefix=owned_prefix), macs=macs)

    def numa_node_ids(self):
        return [xml_int(cell.get("id")) for cell in self.root.xpath("./cpu/numa/cell")]

    # ----------------------------------------------------------------- writing
    def insert_device(self, elem):
        """Append ``elem`` after the last device of its kind (libvirt's order for new kinds)."""
        devices = self.devices

        def rank(child):
            kind = DEVICE_ORDER.index(child.tag) if child.tag in DEVICE_ORDER else len(DEVICE_ORDER)
            # PCI controllers in index order, as libvirt writes them; one without an index (libvirt
            # gives it the lowest free one at define) keeps its place after those that have one
            index = -1
            if child.tag == "controller" and child.get("type") == "pci":
                index = controller_index(child)
                index = float("inf") if index is None else index
            return (kind, index)

        position = len(devices)
        for idx, child in enumerate(devices):
            if isinstance(child.tag, str) and rank(child) > rank(elem):
                position = idx
                break
        devices.insert(position, elem)

    def ensure_device(self, alias, desired):
        """Make the device with user alias ``alias`` match ``desired``. True when the tree changed."""
        if desired.find("alias") is None:
            address = desired.find("address")
            alias_elem = E("alias", {"name": alias})
            desired.append(alias_elem) if address is None else address.addprevious(alias_elem)
        actual = find_by_alias(self.root, alias)
        if actual is None:
            self.insert_device(desired)
            return True
        if matches(desired, actual):
            return False
        actual.getparent().replace(actual, desired)
        return True

    def remove_device(self, alias):
        actual = find_by_alias(self.root, alias)
        if actual is None:
            return False
        actual.getparent().remove(actual)
        return True

    def set_text(self, path, text, attrib=None):
        elem = self._ensure_path(path)
        changed = (elem.text or "").strip() != str(text)
        if changed:
            elem.text = str(text)
        for key, value in (attrib or {}).items():
            if elem.get(key) != value:
                elem.set(key, value)
                changed = True
        return changed

    def _ensure_path(self, path):
        elem = self.root
        for part in path.split("/"):
            child = elem.find(part)
            if child is None:
                child = E(part)
                if elem is self.root and part in TOP_ORDER:
                    # where libvirt writes it: before the first element that libvirt writes after it
                    rank = TOP_ORDER.index(part)
                    later = [c for c in elem if isinstance(c.tag, str) and c.tag in TOP_ORDER
                             and TOP_ORDER.index(c.tag) > rank]
                    later[0].addprevious(child) if later else elem.append(child)
                else:
                    elem.append(child)
            elem = child
        return elem

    def memory_kib(self, path="memory"):
        elem = self.root.find(path)
        if elem is None or not (elem.text or "").strip():
            return None
        return int(elem.text.strip()) * unit_factor(elem.get("unit")) // 1024

    # ------------------------------------------------------------- concerns
    def ensure_domain_type(self, domain_type):
        if self.root.get("type") != domain_type:
            self.root.set("type", domain_type)
            return True
        return False

    def ensure_cpu_mode(self, mode):
        cpu = self._ensure_path("cpu")
        if cpu.get("mode") == mode:
            return False
        cpu.set("mode", mode)
        for attr in ("match", "check", "migratable"):
            cpu.attrib.pop(attr, None)
        if mode != "custom":
            for tag in ("model", "vendor"):
                for elem in cpu.findall(tag):
                    cpu.remove(elem)
        return True

    def ensure_cpu_features_disabled(self, names, disabled):
        """Have (``disabled``) or not have a C(<feature policy='disable'>) for each of ``names``."""
        cpu = self._ensure_path("cpu")
        changed = False
        for name in names:
            have = [f for f in cpu.findall("feature") if f.get("name") == name]
            if disabled and not (len(have) == 1 and have[0].get("policy") == "disable"):
                for elem in have:
                    cpu.remove(elem)
                feature = E("feature", {"policy": "disable", "name": name})
                numa = cpu.find("numa")
                cpu.append(feature) if numa is None else numa.addprevious(feature)
                changed = True
            elif not disabled:
                for elem in have:
                    if elem.get("policy") == "disable":
                        cpu.remove(elem)
                        changed = True
        return changed

    def ensure_numa(self, cells, vcpus, vcpus_field="vcpus"):
        """Cells: [{'id', 'cpus' (libvirt cpuset text), 'memory_kib', 'distances'}]; totals follow, and so
        does the socket count of a <cpu><topology> (``vcpus_field`` names the count in an error)."""
        changed = False
        cpu = self._ensure_path("cpu")
        numa = cpu.find("numa")
        if numa is None:
            numa = E("numa")
            topology = cpu.find("topology")
            cpu.append(numa) if topology is None else topology.addnext(numa)
            changed = True
        existing = numa.findall("cell")
        if len(existing) != len(cells) or not all(
                _cell_matches(want, have) for want, have in zip(cells, existing)):
            for old in existing:
                numa.remove(old)
            for cell in cells:
                numa.append(_cell_element(cell))
            changed = True
        old_total = self.memory_kib("memory")
        total = sum(cell["memory_kib"] for cell in cells)
        if old_total != total:
            changed |= self.set_text("memory", total, {"unit": "KiB"})
        # currentMemory follows a total it equalled, and never stays above it; compared as numbers, so
        # that a value already right is left as written (with its unit or without)
        current = self.memory_kib("currentMemory")
        if current is not None and current != total and (current == old_total or current > total):
            changed |= self.set_text("currentMemory", total, {"unit": "KiB"})
        vcpu = self.root.find("vcpu")
        if vcpu is None or (vcpu.text or "").strip() != str(vcpus):
            changed |= self.set_text("vcpu", vcpus)
            vcpu = self.root.find("vcpu")
            if vcpu.get("current") is not None and int(vcpu.get("current")) > vcpus:
                vcpu.attrib.pop("current")
        changed |= self._fit_cpu_topology(vcpus, vcpus_field)
        return changed

    def _fit_cpu_topology(self, vcpus, field):
        """A <cpu><topology> must multiply out to the vCPU count (libvirt's QEMU driver refuses the domain
        otherwise): the shape of a socket (dies, clusters, cores, threads) is kept and the socket count
        follows; a count that no whole number of sockets gives is refused."""
        topology = self.root.find("cpu/topology")
        if topology is None:
            return False
        shape = [(key, topology.get(key)) for key in ("dies", "clusters", "cores", "threads") if topology.get(key)]
        try:
            per_socket = 1
            for dummy, value in shape:
                per_socket *= xml_int(value)
            sockets = xml_int(topology.get("sockets") or "1")
        except (TypeError, ValueError):
            raise SpecError(field, vcpus, "the domain's <cpu><topology> has values that are not whole numbers (%s)"
                            % " ".join("%s=%r" % item for item in topology.attrib.items()))
        if sockets * per_socket == vcpus:
            return False
        if per_socket < 1 or vcpus % per_socket:
            raise SpecError(field, vcpus, "the domain's <cpu><topology> has %d vCPUs per socket (%s): give a vCPU count "
                                          "that is a multiple of %d, or remove the topology from the domain"
                            % (per_socket, ", ".join("%s=%s" % item for item in shape), per_socket))
        topology.set("sockets", str(vcpus // per_socket))
        return True

    def ensure_ioapic_qemu(self):
        features = self._ensure_path("features")
        ioapic = features.find("ioapic")
        if ioapic is not None and ioapic.get("driver") == "qemu":
            return False
        if ioapic is None:
            ioapic = E("ioapic")
            features.append(ioapic)
        ioapic.set("driver", "qemu")
        return True

    def ensure_iommu(self, iommu, alias, field=""):
        """``iommu``: {'model', 'intremap', 'caching_mode', 'eim'} or None for none of ours; ``field``: the
        prefix of the error fields ('spec.iommu.').

        A domain has one vIOMMU at most, so one that is there is adopted, not duplicated. One the
        collection added (an alias with its prefix) is made exactly as asked; only ``alias`` is removed. On one the collection did not add, the switches the
        spec wants on are turned on and nothing else changes: a switch its owner turned on stays on, and
        its other driver attributes (aw_bits, iotlb, ...), address and alias stay; it gets no alias of
        ours, so it is never removed as ours either. One of another model that the collection did not
        add is refused, not replaced: replacing it would drop its settings and its place on the bus."""
        existing = self.root.find("devices/iommu")
        if iommu is None:
            if existing is not None and self.alias_of(existing) == alias:
                self.remove_iommu(existing)
                return True
            return False
        if iommu["model"] in ("intel", "amd") and not self.is_q35:
            bad = [key for key in ("intremap", "caching_mode") if iommu[key]]
            raise SpecError(field + (bad[0] if bad else "model"), True if bad else iommu["model"],
                            "the %s vIOMMU needs a q35 machine; domain %r is machine %r"
                            % (iommu["model"], self.name, self.machine))
        switches = dict((key, bool(iommu.get(key))) for key in IOMMU_SWITCHES)
        # the collection's own (any ua-nestlab- alias: lab_topology's or the iommu module's) is made as asked
        ours = existing is not None and (self.alias_of(existing) or "").startswith(ALIAS_PREFIX)
        if existing is not None and existing.get("model") != iommu["model"] and not ours:
            raise SpecError(field + "model", iommu["model"],
                            "the domain has a vIOMMU of model %r that nestlab.pci did not add (%s), and a domain has "
                            "one at most: give %r to adopt it, or remove it from the domain first; it is not replaced, "
                            "which would drop its settings and its address"
                            % (existing.get("model"), _iommu_text(existing), existing.get("model")))
        changed = False
        if existing is None or existing.get("model") != iommu["model"]:
            # a new one, or ours in another model: a device of its own (the old model's settings go)
            driver = dict((key, "on") for key, on in switches.items() if on)
            desired = E("iommu", {"model": iommu["model"]}, [E("driver", driver) if driver else None,
                                                             E("alias", {"name": alias})])
            if existing is None:
                self.insert_device(desired)
            else:
                existing.getparent().replace(existing, desired)
            changed = True
        elif ours:
            changed |= _set_iommu_switches(existing, switches)
        else:
            changed |= _set_iommu_switches(existing, dict((key, True) for key, on in switches.items() if on))
        if iommu.get("intremap"):
            changed |= self.ensure_ioapic_qemu()
        changed |= self.ensure_qemu_args(AMD_IOMMU_ARGS, iommu["model"] == "amd")
        return changed

    def remove_iommu(self, iommu):
        """Remove the domain's vIOMMU ``iommu``, and the QEMU arguments the collection gives the AMD one."""
        self.devices.remove(iommu)
        self.ensure_qemu_args(AMD_IOMMU_ARGS, False)

    def qemu_args(self):
        """The <qemu:arg> elements of the domain's <qemu:commandline>, in order."""
        commandline = self.root.find("{%s}commandline" % QEMU_NS)
        return commandline.findall("{%s}arg" % QEMU_NS) if commandline is not None else []

    def replace_qemu_args(self, old, values):
        """Remove the <qemu:arg> elements ``old`` and append arguments ``values`` to <qemu:commandline>, which is
        made when it is missing and removed when nothing is left in it."""
        commandline = self.root.find("{%s}commandline" % QEMU_NS)
        for elem in old:
            commandline.remove(elem)
        if values and commandline is None:
            commandline = etree.SubElement(self.root, "{%s}commandline" % QEMU_NS, nsmap={"qemu": QEMU_NS})
        for value in values:
            etree.SubElement(commandline, "{%s}arg" % QEMU_NS, value=value)
        if commandline is not None and len(commandline) == 0:
            self.root.remove(commandline)

    def ensure_qemu_args(self, args, wanted):
        """Make the consecutive QEMU arguments ``args`` be in the domain's <qemu:commandline> once
        (``wanted``) or not at all. Returns whether anything changed."""
        elems = self.qemu_args()
        values = [elem.get("value") for elem in elems]
        at = [i for i in range(len(values) - len(args) + 1) if tuple(values[i:i + len(args)]) == tuple(args)]
        if (wanted and len(at) == 1) or (not wanted and not at):
            return False
        old = []
        for i in at:
            old.extend(elem for elem in elems[i:i + len(args)] if elem not in old)
        self.replace_qemu_args(old, args if wanted else ())
        return True


# the vIOMMU's driver attributes that a spec sets (on, or not on); libvirt knows more (aw_bits, iotlb,
# dma_translation, xtsup), which the collection leaves as they are
IOMMU_SWITCHES = ("intremap", "caching_mode", "eim")


def _set_iommu_switches(iommu, switches):
    driver = iommu.find("driver")
    changed = False
    for key, on in switches.items():
        have = driver.get(key) if driver is not None else None
        if on and have != "on":
            if driver is None:
                driver = E("driver")
                iommu.insert(0, driver)
            driver.set(key, "on")
            changed = True
        elif not on and have == "on":
            del driver.attrib[key]
            changed = True
    if driver is not None and not driver.attrib and len(driver) == 0:
        iommu.remove(driver)
    return changed


def _iommu_text(iommu):
    driver = iommu.find("driver")
    parts = ["%s=%s" % item for item in (driver.attrib.items() if driver is not None else [])]
    address = iommu.find("address")
    if address is not None:
        parts.append("address %s" % " ".join("%s=%s" % item for item in address.attrib.items()))
    return ", ".join(parts) or "no settings"


def _cell_element(cell):
    children = []
    if cell.get("distances"):
        children.append(E("distances", children=[
            E("sibling", {"id": str(idx), "value": str(value)}) for idx, value in enumerate(cell["distances"])]))
    return E("cell", {"id": str(cell["id"]), "cpus": cell["cpus"], "memory": str(cell["memory_kib"]),
                      "unit": "KiB"}, children)


def _cell_matches(want, have):
    try:
        if xml_int(have.get("id")) != want["id"]:
            return False
        if parse_cpuset(have.get("cpus", "")) != parse_cpuset(want["cpus"]):
            return False
        memory = int(have.get("memory")) * unit_factor(have.get("unit")) // 1024
    except (TypeError, ValueError):
        return False
    if memory != want["memory_kib"]:
        return False
    have_dist = [(xml_int(s.get("id")), xml_int(s.get("value"))) for s in have.findall("distances/sibling")]
    want_dist = list(enumerate(want.get("distances") or []))
    return sorted(have_dist) == want_dist


def free_index(dom, above=0):
    """Lowest PCI controller index above ``above`` that no controller uses."""
    used = set(controller_index(c) for c in dom.controllers()) - {None}
    index = above + 1
    while index in used:
        index += 1
    return index


def free_slot(dom, bus, slots):
    """First slot of ``slots`` on PCI bus ``bus`` (a controller index) that no device uses."""
    used = set()
    for elem in dom.devices:
        addr = dom.address_of(elem)
        if addr is not None and addr["bus"] == bus:
            used.add(addr["slot"])
    for slot in slots:
        if slot not in used:
            return slot
    return None


def find_controller_by_alias(dom, alias):
    for ctrl in dom.controllers():
        if dom.alias_of(ctrl) == alias:
            return ctrl
    return None
