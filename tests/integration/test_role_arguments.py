"""Every role validates its variables through meta/argument_specs.yml before it does anything."""

import pytest
import yaml

from helpers import ROOT, ansible_playbook

ROLES = ["hypervisor", "base_image", "lab_vm", "topology_probe", "guest_iommu", "guest_vfio",
         "guest_hugepages", "guest_nested_virt", "nested_guest"]

BAD = {
    "hypervisor": ("hypervisor_accel", "warp"),
    "base_image": ("base_image_source", "usb-stick"),
    "lab_vm": ("lab_vm_boot_attempts", "many"),
    "topology_probe": ("topology_probe_timeout", "soon"),
    "guest_iommu": ("guest_iommu_model", "arm-smmu"),
    "guest_vfio": ("guest_vfio_unsafe_interrupts", "sometimes"),
    "guest_hugepages": ("guest_hugepages_per_node", "lots"),
    "guest_nested_virt": ("guest_nested_virt_default_network", "nat"),
    "nested_guest": ("nested_guest_boot_timeout", "later"),
}


def test_every_role_has_an_argument_spec_for_each_default():
    import os
    for role in ROLES:
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as handle:
            options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
            defaults = yaml.safe_load(handle) or {}
        undocumented = sorted(set(defaults) - set(options))
        assert not undocumented, "%s: defaults without an argument spec: %s" % (role, undocumented)


@pytest.mark.parametrize("role", ROLES)
def test_a_bad_variable_stops_the_role_before_it_does_anything(role, tmp_path):
    var, value = BAD[role]
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Use the role from a larger playbook\n"
        "      ansible.builtin.include_role:\n        name: nestlab.pci.%s\n"
        "      vars:\n        %s: %s\n" % (role, var, value))
    run = ansible_playbook(str(play))
    assert run.returncode != 0
    assert "Validating arguments against arg spec" in run.stdout, run.stdout[-2000:]
    assert var in run.stdout, run.stdout[-2000:]
    # nothing ran after the validation
    assert run.stdout.count("TASK [") == 1 + run.stdout.count("TASK [Use the role"), run.stdout[-2000:]
