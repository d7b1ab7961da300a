# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the domain XML lives: a libvirt domain or a plain file.

Both read the persistent (inactive) definition and write it with compare-and-swap: under a
per-target lock the current text is read again right before the write, and the write only
happens when it still equals what the edit was planned from. Otherwise ConflictError, and
the caller re-plans from the new text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import subprocess
import tempfile

try:
    import libvirt
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = exc

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import ConflictError, SpecError, TargetError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import atomic_write
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import parse
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import NIC_MODELS, chosen_iommu

LOCK_DIRS = ("/run/lock/nestlab", os.path.join(tempfile.gettempdir(), "nestlab-locks"))


@contextlib.contextmanager
def file_lock(key):
    """Exclusive lock shared by every nestlab process on this host for ``key``."""
    name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".lock"
    last = None
    for directory in LOCK_DIRS:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT, 0o600)
            break
        except OSError as exc:
            last = exc
    else:
        raise TargetError("cannot create a lock file in %s: %s" % (" or ".join(LOCK_DIRS), last))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def virt_vendor(flags):
    """'Intel' for a CPU with vmx, 'AMD' for one with svm, else None: the vendor as virt-host-validate judges
    a CPU, by its virtualization extension (so a Hygon CPU, with svm and AMD-Vi, counts as AMD)."""
    return "Intel" if "vmx" in flags else "AMD" if "svm" in flags else None


def host_cpu_flags(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except IOError:
        pass
    return set()


def qemu_device_names(emulator):
    """Device names ``emulator -device help`` lists (empty set when it cannot be run)."""
    try:
        out = subprocess.run([emulator, "-nodefaults", "-machine", "none", "-device", "help"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False,
                             universal_newlines=True).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(re.findall(r'^name "([^"]+)"', out, re.MULTILINE))


def qemu_device_properties(emulator, device):
    """Property names ``emulator -device DEVICE,help`` lists: None when it cannot be run, an empty set when
    it has no such device."""
    try:
        proc = subprocess.run([emulator, "-nodefaults", "-machine", "none", "-device", device + ",help"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False,
                              universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(re.findall(r"^\s+([A-Za-z0-9_.-]+)=<", proc.stdout, re.MULTILINE))


# where libvirt's RelaxNG schemas are (its own data directory, under /usr or /usr/local)
LIBVIRT_SCHEMA_DIRS = ("/usr/share/libvirt/schemas", "/usr/local/share/libvirt/schemas")
RELAXNG_NS = "http://relaxng.org/ns/structure/1.0"


def libvirt_iommu_models(schema_dirs=LIBVIRT_SCHEMA_DIRS):
    """The <iommu model> values libvirt's own domain schema on this host allows (libvirt0's
    domaincommon.rng, which libvirt validates definitions with), or None when no schema is found.
    Domain capabilities do not list the models (libvirt 12.9.0)."""
    for directory in schema_dirs:
        path = os.path.join(directory, "domaincommon.rng")
        try:
            with open(path, "rb") as handle:
                root = parse(handle.read(), path)
        except (IOError, OSError):
            continue
        values = root.xpath("./r:define[@name='iommu']//r:attribute[@name='model']//r:value/text()",
                            namespaces={"r": RELAXNG_NS})
        return set(v.strip() for v in values)
    return None


def amd_iommu_support(emulator, libvirt_models):
    """Can this host give the amd vIOMMU as the collection makes it? (True, why), (False, why) or (None, why)
    when it cannot tell. It needs libvirt's <iommu model='amd'> (``libvirt_models``, from libvirt_iommu_models)
    and QEMU's amd-iommu with its dma-remap property (``emulator``)."""
    props = qemu_device_properties(emulator, "amd-iommu") if emulator and os.path.exists(emulator) else None
    lacks = []
    if libvirt_models is not None and "amd" not in libvirt_models:
        lacks.append("the libvirt on this host has no <iommu model='amd'> (its schema allows %s; 12.9.0 has it, "
                     "9.0.0 and 11.3.0 do not)" % ", ".join(sorted(libvirt_models)))
    if props is not None and "dma-remap" not in props:
        lacks.append("the QEMU on this host (%s) has %s; the amd vIOMMU needs its dma-remap property to translate "
                     "the DMA of devices a guest gives to vfio (QEMU 7.2 and 10.0 have none; 11.1.3 was tested)"
                     % (emulator, "an amd-iommu without dma-remap" if props else "no amd-iommu device"))
    if lacks:
        return False, "; and ".join(lacks)
    if libvirt_models is None or props is None:
        return None, "cannot tell whether the libvirt and QEMU there have it (%s)" % (
            "no libvirt schema on this host" if libvirt_models is None else "QEMU could not be asked")
    return True, "libvirt knows <iommu model='amd'> and QEMU's amd-iommu (%s) has dma-remap" % emulator


def iommu_model_lacking(model, emulator, target):
    """Why ``target``'s host cannot give the vIOMMU ``model`` as the collection makes it, or None (also when it
    cannot tell). Only the AMD one needs more than any QEMU with q35 has (amd_iommu_support)."""
    if model != "amd":
        return None
    able, why = amd_iommu_support(emulator, target.iommu_models())
    return why + ": use model intel, or a newer libvirt and QEMU" if able is False else None


def l1_cpu_vendor(accel, host_vendor):
    """(vendor, why): the vendor L1's CPU shows. KVM passes the host's CPU through; under TCG L1's CPU is QEMU's
    'maximum' emulation, which shows AuthenticAMD with svm."""
    if accel == "kvm":
        return host_vendor, "KVM passes this host's %s CPU to L1" % (host_vendor or "(vendor unknown)")
    return "AMD", "under TCG L1's CPU is QEMU's emulation, which shows AuthenticAMD with svm"


def resolve_iommu(target, iommu, accel, emulator, field):
    """(settings, reason): the vIOMMU ``iommu`` (validated settings) on ``target`` for a guest under ``accel``;
    model auto is chosen here (choose_iommu_model), a model asked for stays, or a SpecError on ``field`` says
    what this host lacks for it (iommu_model_lacking)."""
    if iommu["model"] != "auto":
        lacking = iommu_model_lacking(iommu["model"], emulator, target)
        if lacking:
            raise SpecError(field, iommu["model"], lacking)
        return iommu, "asked for in %s" % field
    host_vendor = target.cpu_vendor() if accel == "kvm" else None
    support = None
    if l1_cpu_vendor(accel, host_vendor)[0] == "AMD":
        support = amd_iommu_support(emulator, target.iommu_models())
    model, why = choose_iommu_model(accel, host_vendor, support)
    return chosen_iommu(iommu, model), why


def choose_iommu_model(accel, host_vendor, amd_support):
    """iommu.model auto: (model, reason). The vIOMMU of the vendor L1's CPU shows, so that tools that judge the
    IOMMU by the CPU's vendor (virt-host-validate: vmx means DMAR, svm means IVRS) find the table they look for;
    intel where the amd one cannot be had (``amd_support``: amd_iommu_support's answer)."""
    vendor, source = l1_cpu_vendor(accel, host_vendor)
    if vendor == "Intel":
        return "intel", source + ": the intel vIOMMU (VT-d, DMAR) matches it"
    if vendor != "AMD":
        return "intel", source + ": intel, the vIOMMU every q35 QEMU has"
    able, why = amd_support
    if able:
        return "amd", "%s: the amd vIOMMU (AMD-Vi, IVRS) matches it; %s" % (source, why)
    return "intel", ("%s, but %s: intel instead, and tools that judge the IOMMU by the CPU's vendor "
                     "(virt-host-validate) will warn" % (source, why))


def missing_nic_models(models, emulator):
    """Models among ``models`` whose QEMU device ``emulator`` lacks ([] when it cannot tell)."""
    if not models or not emulator or not os.path.exists(emulator):
        return []
    names = qemu_device_names(emulator)
    if not names:
        return []
    return [m for m in models if NIC_MODELS.get(m, m) not in names]


class FileTarget:
    """A domain XML file, written atomically (files.atomic_write: through a symbolic link, keeping owner,
    group, mode and SELinux label)."""

    kind = "file"

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.label = self.path

    def lock(self):
        # two names of one file (a symbolic link and its target) share one lock
        return file_lock("file:" + os.path.realpath(self.path))

    def read(self):
        try:
            with open(self.path, "rb") as handle:
                return handle.read().decode("utf-8")
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise TargetError("path: cannot read %s: %s" % (self.path, exc.strerror))

    def write(self, text, expected):
        if self.read() != expected:
            raise ConflictError("%s changed while it was being edited" % self.path)
        try:
            atomic_write(self.path, text.encode("utf-8"))
        except OSError as exc:
            folder = os.path.dirname(os.path.abspath(self.path))
            why = ("its directory %s does not exist" % folder if not os.path.isdir(folder)
                   else exc.strerror or str(exc))
            raise TargetError("path: %s cannot be written: %s" % (self.path, why))
        return text

    def is_active(self):
        return False

    def accel_probe(self):
        flags = host_cpu_flags()
        usable = ("vmx" in flags or "svm" in flags) and os.access("/dev/kvm", os.R_OK | os.W_OK)
        return ("kvm", "this host's CPU has %s and /dev/kvm is usable" % ("vmx" if "vmx" in flags else "svm")) \
            if usable else ("tcg", "this host's CPU flags show no vmx/svm: no hardware virtualization")

    def emulator(self):
        for path in ("/usr/bin/qemu-system-x86_64", "/usr/libexec/qemu-kvm"):
            if os.path.exists(path):
                return path
        return None

    def cpu_vendor(self):
        return virt_vendor(host_cpu_flags())

    def iommu_models(self):
        return libvirt_iommu_models()

    def nodedev_exists(self, name):
        return None  # cannot tell for a file: the caller says so


LOST = {
    "before": "nothing was written",
    "during": "the definition is the old one or the new one, never a mix",
    "after": "the new definition was written",
}


def lost(exc, when="before"):
    """What to say when a libvirt call failed because the connection to libvirtd went away
    (``when``: before, during or after the define)."""
    if exc.get_error_domain() != libvirt.VIR_FROM_RPC:
        return ""
    return ("; the connection to libvirtd was lost%s (libvirtd stopped or restarted): %s; start libvirtd and run"
            " again" % (" during the define" if when == "during" else " after the define" if when == "after" else "",
                        LOST[when]))


class DomainTarget:
    """A persistent libvirt domain, ``name`` on ``uri``."""

    kind = "domain"

    def __init__(self, uri, name):
        if not HAS_LIBVIRT:
            raise TargetError("the libvirt Python binding (libvirt-python) is not importable by %s: %s"
                              % ("this Python", LIBVIRT_IMPORT_ERROR))
        self.uri = uri
        self.name = name
        self.label = "%s on %s" % (name, uri)
        self._conn = None
        # set once a define went through: a connection lost after that must not say "nothing was written"
        self._defined = False

    @property
    def conn(self):
        if self._conn is None:
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise TargetError("uri: cannot connect to %s: %s (is libvirtd running?)"
                                  % (self.uri, exc.get_error_message()))
        return self._conn

    def lock(self):
        return file_lock("domain:%s:%s" % (self.uri, self.name))

    def _stage(self):
        """Before or after the define, for what a lost connection message says of the definition."""
        return "after" if self._defined else "before"

    def _lookup(self):
        try:
            return self.conn.lookupByName(self.name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise TargetError("cannot look up domain %s: %s%s"
                              % (self.label, exc.get_error_message(), lost(exc, self._stage())))

    def read(self):
        dom = self._lookup()
        if dom is None:
            return None
        # SECURE: keep passwords, so that writing back does not drop them (diffs mask them)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        try:
            return dom.XMLDesc(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise TargetError("cannot read domain %s: %s%s"
                              % (self.label, exc.get_error_message(), lost(exc, self._stage())))

    def write(self, text, expected):
        current = self.read()
        if current != expected:
            raise ConflictError("domain %s changed while it was being edited" % self.label)
        if expected is not None:
            # a rename through XML would define a second domain: refuse it
            name = parse(text).findtext("name")
            if name != self.name:
                raise TargetError("name: the edited XML names %r, not %r" % (name, self.name))
        try:
            self.conn.defineXMLFlags(text, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            if exc.get_error_domain() == libvirt.VIR_FROM_RPC:
                raise TargetError("defining %s failed: %s%s" % (self.label, exc.get_error_message(), lost(exc, "during")))
            raise TargetError("libvirt refused the new definition of %s: %s" % (self.label, exc.get_error_message()))
        self._defined = True
        return self.read()

    def is_active(self):
        dom = self._lookup()
        if dom is None:
            return False
        try:
            return bool(dom.isActive())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise TargetError("cannot tell whether domain %s is running: %s%s"
                              % (self.label, exc.get_error_message(), lost(exc, self._stage())))

    def _capabilities(self):
        try:
            return parse(self.conn.getCapabilities(), "libvirt capabilities")
        except libvirt.libvirtError as exc:
            raise TargetError("cannot read capabilities of %s: %s" % (self.uri, exc.get_error_message()))

    def cpu_vendor(self):
        """'Intel', 'AMD' or None: the host CPU's vendor by its virtualization extension (virt_vendor)."""
        return virt_vendor(set(self._capabilities().xpath("./host/cpu/feature/@name")))

    def iommu_models(self):
        """The <iommu> models of libvirt's schema here (None for a libvirt on another host)."""
        return libvirt_iommu_models() if self.is_local() else None

    def accel_probe(self):
        """KVM only when libvirt offers it *and* the host CPU has vmx/svm: a /dev/kvm alone proves nothing."""
        caps = self._capabilities()
        kvm = caps.xpath("./guest[arch/@name='x86_64']/arch/domain[@type='kvm']")
        features = set(caps.xpath("./host/cpu/feature/@name"))
        flags = ({"vmx", "svm"} & features)
        if kvm and flags:
            return "kvm", "libvirt offers KVM and the host CPU has %s" % sorted(flags)[0]
        if kvm:
            return "tcg", "libvirt lists KVM but the host CPU shows no vmx/svm: hardware virtualization is not usable"
        return "tcg", "libvirt on %s offers no KVM domains" % self.uri

    def emulator(self):
        if not self.is_local():
            return None
        try:
            caps = parse(self.conn.getDomainCapabilities(None, "x86_64", "q35", "qemu"), "domain capabilities")
        except libvirt.libvirtError:
            return None
        return caps.findtext("path")

    def is_local(self):
        return re.match(r"^[a-z0-9+]+:///", self.uri or "") is not None

    def nodedev_exists(self, name):
        try:
            self.conn.nodeDeviceLookupByName(name)
            return True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NODE_DEVICE:
                return False
            raise TargetError("cannot look up node device %s on %s: %s" % (name, self.uri, exc.get_error_message()))

    def pci_nodedevs(self):
        try:
            return sorted(dev.name() for dev in self.conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV))
        except libvirt.libvirtError:
            return []


def make_target(params):
    """A target from module parameters: ``path``, or ``uri`` + ``name``."""
    if params.get("path"):
        return FileTarget(params["path"])
    return DomainTarget(params.get("uri") or "qemu:///system", params["name"])
