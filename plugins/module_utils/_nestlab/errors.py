# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors that name the field, the value and what would be valid."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class NestlabError(Exception):
    """Base class: every error the collection raises on purpose."""

    def __init__(self, msg, **details):
        super(NestlabError, self).__init__(msg)
        self.msg = msg
        self.details = details


class SpecError(NestlabError):
    """Bad input: ``field`` is a dotted path such as ``spec.numa[1].memory``."""

    def __init__(self, field, value, allowed):
        # a value that is missing is said so, not shown as None
        msg = "%s: not given; %s" % (field, allowed) if value is None else "%s: %r is not valid; %s" % (field, value, allowed)
        super(SpecError, self).__init__(msg, field=field, value=_plain(value), allowed=allowed)
        self.field = field


class XMLSafetyError(NestlabError):
    """Input XML that uses DTDs or entities, or is not well formed."""


class ConflictError(NestlabError):
    """Somebody else changed the target between our read and our write."""


class TargetError(NestlabError):
    """The target (libvirt domain or file) could not be read or written."""


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
