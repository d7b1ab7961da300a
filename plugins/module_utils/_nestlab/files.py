# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-file writes that a reader never sees half done."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat
import tempfile

# the extended attribute that holds a file's SELinux label (what ls -Z shows)
SELINUX_XATTR = "security.selinux"


def atomic_write(path, data, mode=None):
    """Write ``data`` (bytes) to ``path`` so that a reader sees the old content or the new, never a part.

    The content goes to a temporary file in the directory of the file it replaces, then is renamed
    over it. A symbolic link is written through: its target gets the content and the link stays a
    link. A file that exists keeps its owner, group, SELinux label and mode (``mode``, when given,
    replaces the mode), as Ansible's ``atomic_move`` keeps them; a writer that may not give a file
    away (not root) leaves it owned by itself. A new file gets ``mode`` (0644 when none).

    Raises OSError (with ``filename`` set) and leaves no temporary file behind when that fails.
    """
    real = os.path.realpath(path)
    try:
        old = os.stat(real)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        old = None
    if mode is None:
        mode = stat.S_IMODE(old.st_mode) if old is not None else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(real), dir=os.path.dirname(real))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if old is not None:
            _keep_owner(tmp, old)
            _keep_label(real, tmp)
        os.chmod(tmp, mode)  # after chown, which clears set-user-ID and set-group-ID bits
        os.rename(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _keep_owner(tmp, old):
    try:
        os.chown(tmp, old.st_uid, old.st_gid)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
        try:  # not root: the group still, when the writer is in it
            os.chown(tmp, -1, old.st_gid)
        except OSError as inner:
            if inner.errno != errno.EPERM:
                raise


def _keep_label(real, tmp):
    try:
        label = os.getxattr(real, SELINUX_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    os.setxattr(tmp, SELINUX_XATTR, label)


def write_if_changed(path, data, mode=None):
    """``atomic_write`` unless the file already holds ``data``; True when it wrote."""
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                return False
    except (IOError, OSError):
        pass
    atomic_write(path, data, mode)
    return True
