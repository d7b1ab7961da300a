# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """What a module that looks from inside a lab's virtual host judges it against."""

    DOCUMENTATION = r"""
options:
  expect_spec:
    description: The lab spec the guest was built from (omitted keys take the defaults, as for lab_topology).
    type: dict
  expect_plan:
    description: The C(plan) that M(nestlab.pci.lab_topology) returned for the lab (its expanders and NICs, each with its node).
    type: list
    elements: dict
"""
