"""Every role validates its variables through meta/argument_specs.yml before it does anything."""

import os

import yaml

from helpers import ROOT

ROLES = sorted(os.listdir(os.path.join(ROOT, "roles")))


def test_every_role_has_an_argument_spec_for_each_default():
    assert len(ROLES) >= 10
    for role in ROLES:
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as handle:
            specs = yaml.safe_load(handle)["argument_specs"]
        # documented by the entry point that uses it (lab_vm's snapshot and reset have variables of their own)
        options = set(specs["main"]["options"]).union(*(set(spec.get("options", {})) for spec in specs.values()))
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
            defaults = yaml.safe_load(handle) or {}
        undocumented = sorted(set(defaults) - set(options))
        assert not undocumented, "%s: defaults without an argument spec: %s" % (role, undocumented)


# a bad variable of each role stops it before any task: tests/reliability/test_bad_input.py
