# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What guest_state reads and guest_config changes: files, modes and systemd unit states on a guest."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import stat

UNIT_DIRS = ("/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/", "/run/systemd/")


def read_text(path, default=None):
    """The file's text (UTF-8, undecodable bytes replaced), or ``default`` when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return default


def mode_error(field, mode):
    """None when ``mode`` is octal text such as '0644', else the message that says so."""
    if mode is None or (mode.isdigit() and not any(c in "89" for c in mode) and len(mode) <= 4):
        return None
    return "%s: %r is not valid; give octal text such as '0644'" % (field, mode)


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def unit_enabled(unit):
    """Enabled as ``systemctl enable`` leaves it: a link in a ``.wants`` directory of /etc/systemd/system."""
    return bool(glob.glob("/etc/systemd/system/*.wants/%s" % unit))


def systemd_running():
    return os.path.isdir("/run/systemd/system")


def active_units(module, units):
    """The subset of ``units`` that is active, from one ``systemctl is-active`` call."""
    if not units:
        return set()
    dummy, out, dummy2 = module.run_command(["systemctl", "is-active"] + list(units))
    states = out.split()
    return set(unit for unit, state in zip(units, states) if state == "active")


def is_unit_file(path):
    return path.startswith(UNIT_DIRS)
