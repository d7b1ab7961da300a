"""The hypervisor role and the KVM probe on this machine."""

import os

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.accel import decide
from helpers import ROOT, ansible_playbook, systemd_is_pid1

pytestmark = pytest.mark.libvirt
KERNEL = "/var/cache/nestlab/probe/vmlinuz"


def recap(output):
    line = [l for l in output.splitlines() if l.startswith("localhost") and "ok=" in l][-1]
    return dict((k, int(v)) for k, v in (part.split("=") for part in line.split()[2:]))


@pytest.fixture
def playbook(tmp_path):
    path = tmp_path / "hypervisor.yml"
    path.write_text("- hosts: localhost\n  gather_facts: true\n  roles:\n    - nestlab.pci.hypervisor\n")
    return str(path)


def test_role_is_idempotent_and_says_how_daemons_run(conn, playbook):
    first = ansible_playbook(playbook)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "Accelerator: " in first.stdout
    # the role's own message says the one that is true of this machine, and not the other
    said = [line for line in first.stdout.splitlines() if '"msg": ' in line or "msg: " in line]
    said = [line for line in said if "libvirt runs under systemd" in line or "systemd is not PID 1;" in line]
    assert len(said) == 1, first.stdout[-3000:]
    assert ("libvirt runs under systemd" in said[0]) == systemd_is_pid1(), said
    second = ansible_playbook(playbook)
    assert second.returncode == 0 and recap(second.stdout)["changed"] == 0, second.stdout[-3000:]


def test_preflight_names_the_missing_feature_and_versions(conn, playbook):
    import subprocess
    devices = subprocess.run(["qemu-system-x86_64", "-nodefaults", "-machine", "none", "-device", "help"],
                             stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    if 'name "igb"' in devices:
        pytest.skip("this QEMU has igb; the refusal is shown on hosts whose QEMU lacks it")
    sources = sorted(os.listdir("/etc/apt/sources.list.d"))
    run = ansible_playbook(playbook, {"hypervisor_nic_model": "igb"})
    assert run.returncode != 0
    assert ("missing: the igb NIC (82576 with SR-IOV virtual functions), in QEMU >= 8.0 and libvirt >= 9.3"
            in run.stdout), run.stdout[-3000:]
    assert "(needed >= 7.1.0)" in run.stdout and "QEMU " in run.stdout
    assert "Nothing was changed. With hypervisor_upgrade_source: backports" in run.stdout
    assert recap(run.stdout)["changed"] == 0
    assert sorted(os.listdir("/etc/apt/sources.list.d")) == sources


def test_kvm_probe_is_not_fooled_by_a_dev_kvm(kernel_for_probe, tmp_path):
    """Claim vmx in the CPU flags: only a guest that really boots under KVM makes the answer KVM."""
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx\n")
    plain = tmp_path / "cpuinfo-plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic\n")
    args = ("/usr/bin/qemu-system-x86_64", kernel_for_probe, "/bin/busybox")
    # no vmx/svm: TCG, whatever device there is, and nothing is booted
    none = decide(*args, timeout=15, cpuinfo=str(plain), dev="/dev/null")
    assert none["accel"] == "tcg" and "no vmx/svm" in none["reason"] and "probe_seconds" not in none
    # vmx but no device: TCG, the device named, nothing booted
    gone = decide(*args, timeout=15, cpuinfo=str(fake), dev=str(tmp_path / "kvm"))
    assert gone["accel"] == "tcg" and "there is no %s" % (tmp_path / "kvm") in gone["reason"]
    assert "probe_seconds" not in gone and not gone["verified"]
    # vmx and a device (this host's /dev/kvm, or a stand-in where it has none, which QEMU cannot use):
    # a test boot is tried, and KVM is the answer exactly when the test guest booted under it
    real = decide(*args, timeout=15, cpuinfo=str(fake), dev="/dev/kvm" if os.path.exists("/dev/kvm") else "/dev/null")
    assert real["cpu_flag"] == "vmx" and "probe_seconds" in real
    assert real["accel"] == ("kvm" if real["verified"] else "tcg"), real
    assert ("booted under KVM" in real["reason"]) == real["verified"], real
    assert real["verified"] or "did not boot under KVM" in real["reason"], real
    if not os.path.exists("/dev/kvm"):
        assert not real["verified"]


@pytest.fixture(scope="session")
def kernel_for_probe():
    import subprocess
    if not os.path.exists(KERNEL):
        os.makedirs(os.path.dirname(KERNEL), exist_ok=True)
        subprocess.run(["sh", os.path.join(ROOT, "roles", "topology_probe", "files", "fetch-kernel.sh"),
                        "linux-image-amd64", KERNEL], check=True)
    return KERNEL


def test_kvm_on_an_emulated_cpu_is_not_chosen_by_default(tmp_path):
    """Inside a lab's L1 the CPU is QEMU's TCG emulation with svm; nested KVM on it hung L1 here."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: QEMU TCG CPU version 2.5+\nflags\t\t: fpu svm\n")
    dev = tmp_path / "kvm"
    dev.write_text("")
    result = decide(cpuinfo=str(cpuinfo), dev=str(dev))
    assert result["accel"] == "tcg" and result["cpu_model"] == "QEMU TCG CPU version 2.5+"
    assert "QEMU's TCG emulation" in result["reason"] and "emulated_cpu_ok" in result["reason"]
    trusted = decide(cpuinfo=str(cpuinfo), dev=str(dev), emulated_cpu_ok=True)
    assert trusted["accel"] == "kvm" and not trusted["verified"] and trusted["nested_module"] == "kvm_amd"
