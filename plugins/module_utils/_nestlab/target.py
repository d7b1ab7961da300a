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

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import ConflictError, TargetError
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.files import atomic_write
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.xmlengine import parse
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.spec import NIC_MODELS

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


def iommu_model_lacking(model, emulator):
    """Why ``emulator`` cannot give the vIOMMU ``model`` as the collection makes it, or None (also when it
    cannot tell). Only the AMD one needs more than any QEMU with q35 has: amd-iommu with dma-remap."""
    if model != "amd" or not emulator or not os.path.exists(emulator):
        return None
    props = qemu_device_properties(emulator, "amd-iommu")
    if props is None:
        return None
    if "dma-remap" in props:
        return None
    return ("the QEMU on this host (%s) has %s; the amd vIOMMU needs its dma-remap property to translate the DMA of "
            "devices a guest gives to vfio (QEMU 7.2 and 10.0 have none; 11.1.3 was tested): use model intel, or a "
            "newer QEMU" % (emulator, "an amd-iommu without dma-remap" if props else "no amd-iommu device"))


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

    def accel_probe(self):
        """KVM only when libvirt offers it *and* the host CPU has vmx/svm: a /dev/kvm alone proves nothing."""
        try:
            caps = parse(self.conn.getCapabilities(), "libvirt capabilities")
        except libvirt.libvirtError as exc:
            raise TargetError("cannot read capabilities of %s: %s" % (self.uri, exc.get_error_message()))
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
