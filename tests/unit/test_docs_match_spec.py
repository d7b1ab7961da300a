"""What the modules' documentation offers is what spec.py accepts (issue 14, case 10): the keys of
lab_topology's spec and their choices and defaults, and the iommu module's models. ansible-test's
validate-modules compares a module's documentation with its argument_spec; the spec's inner keys
are checked by spec.py, which it cannot see."""

import yaml

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import spec as specmod
from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.errors import SpecError
from ansible_collections.nestlab.pci.plugins.modules import iommu, lab_topology

import pytest

DOC = yaml.safe_load(lab_topology.DOCUMENTATION)["options"]["spec"]["suboptions"]
NORMAL = specmod.validate_spec({})


def test_the_documented_keys_are_the_accepted_keys():
    assert sorted(DOC) == sorted(specmod._TOP_KEYS)
    assert sorted(DOC["numa"]["suboptions"]) == sorted(specmod._NODE_KEYS)
    assert sorted(DOC["iommu"]["suboptions"]) == sorted(specmod._IOMMU_KEYS)


@pytest.mark.parametrize("path, accepted", [
    ("accel", specmod.ACCELS),
    ("nested_virt", specmod.NESTED_VIRT),
    ("nic_model", tuple(specmod.NIC_MODELS)),
    ("numa.nic_model", tuple(specmod.NIC_MODELS)),
    ("iommu.model", specmod.IOMMU_CHOICES),
])
def test_documented_choices_are_exactly_the_accepted_values(path, accepted):
    option = DOC
    for key in path.split("."):
        option = option[key] if option is DOC else option["suboptions"][key]
    assert sorted(option["choices"]) == sorted(accepted), path
    for choice in option["choices"]:  # each one really passes validation, where it sits
        raw = {path: choice} if "." not in path else (
            {"numa": [{"cpus": 1, "memory": "64MiB", "nic_model": choice}]} if path.startswith("numa")
            else {"iommu": {"model": choice}})
        specmod.validate_spec(raw)
    with pytest.raises(SpecError) as err:
        specmod.validate_spec({path.split(".")[0]: "nonsense"} if "." not in path else
                              {"iommu": {"model": "nonsense"}} if path.startswith("iommu")
                              else {"numa": [{"cpus": 1, "memory": "64MiB", "nic_model": "nonsense"}]})
    assert "nonsense" in err.value.msg


@pytest.mark.parametrize("path", ["accel", "nested_virt", "nic_model", "machine",
                                  "iommu.model", "iommu.intremap", "iommu.caching_mode", "iommu.eim"])
def test_documented_defaults_are_what_an_empty_spec_becomes(path):
    if "." in path:
        outer, inner = path.split(".")
        documented, normal = DOC[outer]["suboptions"][inner]["default"], NORMAL[outer][inner]
    else:
        documented, normal = DOC[path]["default"], NORMAL[path]
    assert documented == normal, path


def test_the_default_nodes_are_the_documented_ones():
    # "three nodes with 4, 2 and 2 CPUs, 4, 2 and 2 GiB and three NICs each"
    text = " ".join(DOC["numa"]["description"])
    assert "three nodes with 4, 2 and 2 CPUs, 4, 2 and 2 GiB and three NICs each" in text
    assert [(len(node["cpus"]), node["memory_kib"] >> 20, len(node["nics"])) for node in NORMAL["numa"]] == \
        [(4, 4, 3), (2, 2, 3), (2, 2, 3)]


def test_the_iommu_module_offers_the_spec_models():
    options = yaml.safe_load(iommu.DOCUMENTATION)["options"]
    assert sorted(options["model"]["choices"]) == sorted(specmod.IOMMU_CHOICES)
    assert options["model"]["default"] == specmod.DEFAULT_SPEC["iommu"]["model"]


def test_the_nested_virt_sample_is_what_the_default_spec_gets_under_tcg():
    # the sample once said auto hides vmx/svm under TCG; it keeps them (the role keeps KVM out)
    from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.topology import nested_virt_exposed

    sample = yaml.safe_load(lab_topology.RETURN)["nested_virt"]["sample"]
    exposed, reason = nested_virt_exposed(NORMAL, "tcg")
    assert sample == {"exposed": exposed, "reason": reason}
    text = " ".join(DOC["nested_virt"]["description"])
    assert "under KVM (the host CPU's vmx/svm, for nested KVM) and under TCG alike" in text and exposed
