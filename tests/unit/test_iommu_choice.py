"""iommu.model auto: the vIOMMU of the vendor L1's CPU shows, where this host's libvirt and QEMU can give it
(target.choose_iommu_model and what it is fed: the CPU vendor, libvirt's own schema). The same choice made by
the modules on real libvirtds: tests/integration/test_modules_libvirt.py (this host) and
tests/boot/test_amd_viommu.py (Debian trixie-backports' libvirt 12.9.0 and QEMU 11.1.3)."""

import os

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.target import (
    LIBVIRT_SCHEMA_DIRS,
    amd_iommu_support,
    choose_iommu_model,
    libvirt_iommu_models,
    virt_vendor,
)

YES = (True, "libvirt knows <iommu model='amd'> and QEMU's amd-iommu has dma-remap")
NO = (False, "the QEMU on this host has an amd-iommu without dma-remap")
UNKNOWN = (None, "cannot tell whether the libvirt and QEMU there have it")


@pytest.mark.parametrize("accel, vendor, support, model, words", [
    ("tcg", None, YES, "amd", "QEMU's emulation, which shows AuthenticAMD"),
    ("tcg", "Intel", YES, "amd", "matches it"),                 # under TCG the host's CPU does not show
    ("tcg", None, NO, "intel", "without dma-remap: intel instead, and tools that judge"),
    ("tcg", None, UNKNOWN, "intel", "cannot tell"),
    ("kvm", "Intel", None, "intel", "this host's Intel CPU to L1: the intel vIOMMU (VT-d, DMAR)"),
    ("kvm", "AMD", YES, "amd", "the amd vIOMMU (AMD-Vi, IVRS) matches it"),
    ("kvm", "AMD", NO, "intel", "will warn"),
    ("kvm", None, None, "intel", "(vendor unknown)"),
])
def test_the_model_follows_the_vendor_l1s_cpu_shows(accel, vendor, support, model, words):
    chosen, reason = choose_iommu_model(accel, vendor, support)
    assert (chosen, words in reason) == (model, True), reason


def test_libvirt_judges_the_models_by_its_own_schema(tmp_path):
    rng = ('<grammar xmlns="http://relaxng.org/ns/structure/1.0"><define name="iommu"><element name="iommu">'
           '<attribute name="model"><choice><value>intel</value><value>%s</value></choice></attribute>'
           '</element></define><define name="other"><attribute name="model"><value>e1000</value></attribute>'
           '</define></grammar>')
    for models in (("virtio",), ("amd",)):
        (tmp_path / "domaincommon.rng").write_text(rng % models)
        assert libvirt_iommu_models((str(tmp_path / "absent"), str(tmp_path))) == {"intel"} | set(models)
    assert libvirt_iommu_models((str(tmp_path / "absent"),)) is None
    (tmp_path / "domaincommon.rng").write_text('<!DOCTYPE g [<!ENTITY x "y">]><g/>')
    with pytest.raises(Exception, match="DTD or entity"):
        libvirt_iommu_models((str(tmp_path),))


def test_this_hosts_libvirt_schema_is_read_when_there_is_one():
    models = libvirt_iommu_models()
    present = any(os.path.exists(os.path.join(d, "domaincommon.rng")) for d in LIBVIRT_SCHEMA_DIRS)
    assert (models is not None) == present
    if present:
        assert "intel" in models, models


def test_a_libvirt_without_the_amd_model_is_named_whatever_qemu_says(tmp_path):
    able, why = amd_iommu_support(str(tmp_path / "no-such-qemu"), {"intel", "virtio"})
    assert able is False and "no <iommu model='amd'> (its schema allows intel, virtio" in why
    able, why = amd_iommu_support(None, None)
    assert able is None and "no libvirt schema" in why


def test_the_cpu_vendor_is_judged_by_its_virtualization_extension_as_virt_host_validate_does():
    assert virt_vendor({"fpu", "vmx"}) == "Intel"
    assert virt_vendor({"fpu", "svm"}) == "AMD"       # AMD's, and Hygon's, whose IOMMU is AMD-Vi too
    assert virt_vendor({"fpu"}) is None
