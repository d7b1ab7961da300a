"""Make ``ansible_collections.nestlab.pci`` importable from the checkout; shared fixtures."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import helpers  # noqa: E402


class _Connection(object):
    """A libvirt connection that opens itself again (starting libvirtd) when the old one died: the
    fault tests stop and kill libvirtd, and later tests still hold this object."""

    def __init__(self):
        self._conn = helpers.ensure_libvirtd()

    def __getattr__(self, name):
        import libvirt

        attr = getattr(self._conn, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return getattr(self._conn, name)(*args, **kwargs)
            except libvirt.libvirtError as exc:
                # isAlive() stays true until a call fails: reconnect once when the daemon went away
                if exc.get_error_domain() != libvirt.VIR_FROM_RPC:
                    raise
                self._conn = helpers.ensure_libvirtd()
                return getattr(self._conn, name)(*args, **kwargs)
        return call


@pytest.fixture(scope="session")
def conn():
    """A connection to a real libvirtd (started here when it does not answer); old test domains removed."""
    connection = _Connection()
    for dom in connection.listAllDomains():
        if dom.name().startswith(helpers.PREFIX):
            helpers.remove_domain(connection, dom.name())
    yield connection
    connection.close()


@pytest.fixture
def domain_name(conn):
    """A fresh domain name; whatever domain gets that name is removed afterwards."""
    names = []

    def make(tag="dom"):
        name = helpers.unique_name(tag)
        names.append(name)
        return name

    yield make
    for name in names:
        helpers.remove_domain(conn, name)
        helpers.remove_domain(conn, name + "-nestlab-probe")
        # the probe's console log stays for the user to read; a test removes its own
        log = "/var/cache/nestlab/probe/%s-nestlab-probe.console.log" % name
        if os.path.exists(log):
            os.unlink(log)


@pytest.fixture(scope="session")
def kernel():
    """Debian's x86_64 kernel image (vmlinuz only), fetched once into the probe cache."""
    import subprocess

    cache = "/var/cache/nestlab/probe"
    path = os.path.join(cache, "vmlinuz")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        fetch = os.path.join(ROOT, "roles", "topology_probe", "files", "fetch-kernel.sh")
        subprocess.run(["sh", fetch, "linux-image-amd64", path], check=True)
    return path
