# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules that drive domains share: libvirt present, a domain by name, a console's
last lines, waiting for a guest to power itself off."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import (  # noqa: F401 (re-exported)
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    libvirt,
)


def require_libvirt(module):
    """Fail the module when libvirt-python cannot be imported by the Python running it."""
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=str(LIBVIRT_IMPORT_ERROR))


def open_domain(module, uri, name):
    """(connection, domain) or a failed module that names the domain and the URI."""
    require_libvirt(module)
    try:
        conn = libvirt.open(uri)
        return conn, conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="name: cannot find domain %r at %s: %s" % (name, uri, exc))


def console_tail(path, lines=40, empty="(nothing on the console)"):
    """The last ``lines`` lines of a console log, or ``empty``."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return empty
    return "\n".join(text.splitlines()[-lines:]) or empty


def console_size(path):
    """Bytes in a console log (0 while it is not there)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def console_written(path):
    """When a console log was last written (now while it is not there)."""
    try:
        return os.path.getmtime(path)
    except OSError:
        return time.time()


class ConsoleProgress(object):
    """Whether a booting guest's console log still grows: ``grew()`` (once per poll) says whether it grew
    since the last look; ``stalled()`` whether it has not grown for ``seconds`` (never when 0).
    ``size``: the size to count growth from (by default the log's size now). ``grace``: for a guest
    whose silence began before this watch (found running, not answering), the console counts as silent
    since it was last written, but with at least this many seconds left to show life (None: silent
    from now)."""

    def __init__(self, path, seconds, size=None, grace=None):
        self.path, self.seconds = path, seconds
        self.size = console_size(path) if size is None else size
        self.since = time.time()
        if grace is not None:
            self.since = min(self.since, max(console_written(path), self.since - seconds + grace))

    def grew(self):
        size = console_size(self.path)
        if size == self.size:
            return False
        self.size, self.since = size, time.time()
        return True

    def stalled(self):
        return bool(self.seconds) and time.time() - self.since > self.seconds

    def stopped(self):
        """Look again, then ``stalled()``."""
        self.grew()
        return self.stalled()


def wait_until_off(is_active, timeout, poll=0.5):
    """Poll ``is_active()`` until it is false (True) or ``timeout`` seconds pass (False)."""
    deadline = time.time() + timeout
    while is_active():
        if time.time() > deadline:
            return False
        time.sleep(poll)
    return True


def domain_argument_spec(**options):
    """The argument spec of a module that acts on one domain (doc fragment nestlab.pci.domain), plus ``options``."""
    spec = dict(name=dict(type="str", required=True), uri=dict(type="str", default="qemu:///system"))
    spec.update(options)
    return spec
