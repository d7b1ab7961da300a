"""Faults: libvirtd stopped between read and define, libvirtd killed during a define, the lab VM killed
while lab_boot waits for its SSH, a reboot that never comes back, a full disk during the base image
build; and edits of a running domain. Each ends with a clear error and no partial XML or file, and
the next run repairs what it left."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import libvirt
import pytest

import report
from helpers import (OURS, FakeSSH, Job, ansible_playbook, ensure_libvirtd, forked_module, qemu_pid, run_module,
                     stop_libvirtd)

pytestmark = pytest.mark.libvirt

SMALL = {"numa": [{"cpus": 1, "memory": 128, "nics": 0}], "accel": "tcg"}
FIGURES = {}


def xml_of(conn, name):
    return conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


def saved(name):
    """The definition libvirt keeps on disk. A restarted libvirtd may order the controllers it added
    itself differently in XMLDesc, so the file is what must stay byte-identical."""
    with open("/etc/libvirt/qemu/%s.xml" % name, "rb") as handle:
        return handle.read()


def module_with_fault(module, args, fault, after=False):
    """Run ``module`` in a child process whose DomainTarget.write first calls ``fault()`` (or, with
    ``after``, calls it once the write has returned)."""

    def prepare():
        from ansible_collections.nestlab.pci.plugins.module_utils._nestlab import target
        original = target.DomainTarget.write

        def write(self, text, expected):
            if not after:
                fault()
            written = original(self, text, expected)
            if after:
                fault()
            return written

        target.DomainTarget.write = write

    return forked_module(module, args, prepare)


@pytest.fixture
def small(conn, domain_name):
    name = domain_name("fault")
    assert run_module("lab_topology", {"name": name, "spec": SMALL})["changed"]
    return name


@pytest.mark.stops_libvirtd
def test_libvirtd_stopped_between_read_and_define(conn, small):
    before = saved(small)
    args = {"name": small, "id": "f1", "node": 0}
    try:
        result = module_with_fault("pci_expander", args, stop_libvirtd)
    finally:
        ensure_libvirtd()
    assert result.get("failed"), result
    assert small in result["msg"] and "connection to libvirtd was lost" in result["msg"], result["msg"]
    assert saved(small) == before
    again = run_module("pci_expander", args)
    assert again["changed"] and not again.get("failed"), again
    assert "ua-nestlab-pxb-f1" in xml_of(conn, small)
    FIGURES["libvirtd stopped between read and define"] = (
        result["msg"].splitlines()[0], "old XML, byte-identical", "applied (changed)")


@pytest.mark.stops_libvirtd
def test_libvirtd_stopped_right_after_the_define(conn, small):
    """The define went through and the connection is lost before the module has asked whether the
    domain runs: the message must say the new definition was written (a CI run once said "nothing
    was written" here, from the lookup after the define), and the next run has nothing to do."""
    args = {"name": small, "id": "a1", "node": 0}
    try:
        result = module_with_fault("pci_expander", args, lambda: stop_libvirtd("KILL"), after=True)
    finally:
        ensure_libvirtd()
    assert result.get("failed"), result
    assert small in result["msg"] and "connection to libvirtd was lost after the define" in result["msg"], result
    assert "the new definition was written" in result["msg"] and "nothing was written" not in result["msg"]
    after = saved(small).decode()
    assert after.count("ua-nestlab-pxb-a1") == 1 and "<model name='pxb-pcie'/>" in after
    again = run_module("pci_expander", args)
    assert again["changed"] is False and not again.get("failed"), again
    FIGURES["libvirtd killed right after the define"] = (
        result["msg"].splitlines()[0], "new XML, whole", "nothing to do (unchanged)")


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.02])
@pytest.mark.stops_libvirtd
def test_libvirtd_killed_during_a_define(conn, small, delay):
    before = saved(small)
    args = {"name": small, "id": "k1", "node": 0}

    def kill_soon():
        threading.Timer(delay, lambda: subprocess.run(["pkill", "-KILL"] + OURS + ["-x", "libvirtd"], check=False)).start()

    try:
        result = module_with_fault("pci_expander", args, kill_soon)
    finally:
        time.sleep(0.2)
        ensure_libvirtd()
    after = saved(small).decode()
    applied = "ua-nestlab-pxb-k1" in after
    # all or nothing: the old definition, byte for byte, or one with the whole new expander
    if not applied:
        assert after.encode() == before
    else:
        assert after.count("ua-nestlab-pxb-k1") == 1 and "<model name='pxb-pcie'/>" in after
    if result.get("failed"):
        assert small in result["msg"] and "connection to libvirtd was lost" in result["msg"], result["msg"]
        # what the message says about the definition is true
        if "nothing was written" in result["msg"]:
            assert not applied, result["msg"]
        if "the new definition was written" in result["msg"]:
            assert applied, result["msg"]
    again = run_module("pci_expander", args)
    assert not again.get("failed"), again
    assert again["changed"] is (not applied)
    assert "ua-nestlab-pxb-k1" in xml_of(conn, small)
    FIGURES["libvirtd killed %.0f ms into a define" % (delay * 1000)] = (
        (result["msg"].splitlines()[0] if result.get("failed") else "the define went through first"),
        "new XML, whole" if applied else "old XML, byte-identical",
        "nothing to do (unchanged)" if applied else "applied (changed)")


# the rows of the tests below that stand in for a real lab VM say so: they take seconds, and lab_boot
# only sees the domain's state, its console log and the forwarded port. The same faults on the real L1
# of the run's shared lab (QEMU killed during the first SSH wait; an IOMMU reboot that never comes back,
# then the same command again) are checked by tests/boot/test_lab_l1.py::check_real_faults; the real
# L1's hang (boots paused: reset on a stopped console, given up, lab removed) is
# tests/boot/test_lab_l1.py::test_a_boot_that_hangs_is_reset_and_a_guest_that_never_answers_leaves_no_lab.
STAND_IN = " (stand-in: a 1-vCPU domain with no disk or kernel, SSH a Python socket on 127.0.0.1)"


def test_the_lab_vm_killed_while_waiting_for_ssh(conn, small, tmp_path):
    """QEMU ending under lab_boot (a SIGKILL here; Debian 12's QEMU 7.2 also segfaults now and then
    under TCG, and libvirt reports both as 'crashed'): started again as the next attempt; on the last
    attempt the module fails at once with the console's last lines, and the next run starts it."""
    fake = FakeSSH()
    fake.up = False
    console = tmp_path / "console.log"
    console.write_text("[    1.0] booting\n")

    def boot_and_kill(attempts, answer_after_kill):
        """lab_boot with QEMU killed 4 s in (and SSH answering 3 s after that, if asked); (result, seconds)."""
        def kill():
            os.kill(qemu_pid(small), signal.SIGKILL)
            if answer_after_kill:
                threading.Timer(3, lambda: setattr(fake, "up", True)).start()
        killer = threading.Timer(4, kill)
        killer.start()
        began = time.time()
        out = run_module("lab_boot", {"name": small, "ssh_port": fake.port, "timeout": 120, "attempts": attempts,
                                      "console_log": str(console)})
        killer.join()
        return out, time.time() - began

    try:
        restarted, restart_seconds = boot_and_kill(2, True)
        assert not restarted.get("failed") and restarted["log"] == [
            "started", "the emulator ended on attempt 1 (crashed or killed): start again", "started",
            "SSH answers (attempt 2)"], restarted
        assert conn.lookupByName(small).isActive()
        conn.lookupByName(small).destroy()
        # on the last attempt: no start again
        fake.up = False
        result, seconds = boot_and_kill(1, False)
        assert result["failed"] and result["msg"].startswith(
            "%s stopped while waiting for its SSH (killed, crashed or powered off); the next run starts it again"
            % small), result
        assert result["msg"].endswith("[    1.0] booting")
        assert seconds < 60
        assert not conn.lookupByName(small).isActive()
        fake.up = True
        again = run_module("lab_boot", {"name": small, "ssh_port": fake.port, "timeout": 30})
        assert again["changed"] and again["log"] == ["started", "SSH answers (attempt 1)"], again
    finally:
        fake.close()
        if conn.lookupByName(small).isActive():
            conn.lookupByName(small).destroy()
    FIGURES["the lab VM's QEMU killed while lab_boot waits for SSH" + STAND_IN] = (
        "started again as attempt 2 (SSH after %.0f s in all)" % restart_seconds, "definition untouched",
        "nothing to do")
    FIGURES["the lab VM's QEMU killed on lab_boot's last attempt" + STAND_IN] = (
        result["msg"].splitlines()[0][:110] + " (after %.0f s)" % seconds, "definition untouched",
        "started, SSH answers")


def test_a_reboot_that_never_comes_back(conn, small, tmp_path):
    conn.lookupByName(small).create()
    fake = FakeSSH()
    console = tmp_path / "console.log"
    console.write_text("reboot: Restarting system\n")
    try:
        threading.Timer(1, lambda: setattr(fake, "up", False)).start()
        result = run_module("lab_boot", {"name": small, "ssh_port": fake.port, "after_reboot": True, "timeout": 4,
                                         "attempts": 2, "console_log": str(console)})
        assert result["failed"] and result["msg"].startswith("no SSH after 2 attempts of 4 s"), result
        assert result["msg"].endswith("reboot: Restarting system")
        assert result["log"] == ["SSH stopped answering (the guest is rebooting)",
                                 "no SSH after 4 s on attempt 1: reset", "started"], result["log"]
        fake.up = True
        again = run_module("lab_boot", {"name": small, "ssh_port": fake.port, "timeout": 30})
        assert not again.get("failed") and again["log"][-1].startswith("SSH answers"), again
    finally:
        fake.close()
        if conn.lookupByName(small).isActive():
            conn.lookupByName(small).destroy()
    FIGURES["a reboot that never comes back" + STAND_IN] = (result["msg"].splitlines()[0], "definition untouched",
                                                            "SSH answers")


def test_edits_of_a_running_domain_go_to_the_persistent_definition_only(conn, small):
    dom = conn.lookupByName(small)
    dom.create()
    try:
        live_before = dom.XMLDesc(0)
        result = run_module("pci_expander", {"name": small, "id": "r1", "node": 0}, diff=True)
        assert result["changed"] and result["reboot_required"] is True, result
        assert dom.XMLDesc(0) == live_before
        assert "ua-nestlab-pxb-r1" in xml_of(conn, small) and "ua-nestlab-pxb-r1" not in live_before
        again = run_module("pci_expander", {"name": small, "id": "r1", "node": 0})
        assert again["changed"] is False and again["reboot_required"] is False
    finally:
        dom.destroy()
    FIGURES["an edit of a running domain"] = ("changed, reboot_required: true", "live XML byte-identical",
                                              "a re-run: unchanged, reboot_required: false")


def fill_when_the_build_starts(directory, ended, leave=16 << 20):
    """Once the image build has written its first log line, take all but ``leave`` bytes of the
    filesystem (fallocate: no data is written), so that the build runs out of space midway. When the
    run ends (``ended`` is set) before a build starts, fill nothing."""
    deadline = time.time() + 600
    while not glob.glob(os.path.join(directory, "build-*", "build.log")) and time.time() < deadline:
        if ended.wait(0.2):
            return
    time.sleep(2)  # debootstrap is under way
    chunk, size = 64 << 20, 0
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.posix_fallocate(fd, size, chunk)
            except OSError:
                if chunk == 1 << 20:
                    break
                chunk //= 2
                continue
            size += chunk
        os.ftruncate(fd, max(0, size - leave))
    finally:
        os.close(fd)


def full_disk_scenario():
    """The storage preflight passes (the space is there when the build starts), then the disk fills up
    midway; then the build again with the space back. What happened, for the test to judge: this runs
    as a background job (FULL_DISK), so it asserts nothing itself."""
    work = tempfile.mkdtemp(prefix="nltest-full-disk-")
    backing, images = os.path.join(work, "fs.img"), os.path.join(work, "images")
    os.mkdir(images)
    subprocess.run(["truncate", "-s", "20G", backing], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", backing], check=True)
    subprocess.run(["mount", "-o", "loop", backing, images], check=True)
    play = os.path.join(work, "image.yml")
    with open(play, "w") as handle:
        handle.write("- hosts: localhost\n  gather_facts: true\n  roles:\n    - nestlab.pci.base_image\n")
    # the smallest package list the build script can make a bootable image of: the same build, in
    # about half the time of the lab's
    small_image = {"base_image_dir": images, "base_image_packages": [
        "systemd", "systemd-sysv", "openssh-server", "linux-image-amd64", "grub-pc"]}
    seen = {}
    try:
        ended = threading.Event()
        filler = threading.Thread(target=fill_when_the_build_starts, args=(images, ended))
        filler.start()
        seen["full"] = ansible_playbook(play, small_image)
        ended.set()
        filler.join()
        seen["left"] = sorted(os.listdir(images))
        if os.path.exists(os.path.join(images, "filler")):
            os.unlink(os.path.join(images, "filler"))
        seen["again"] = ansible_playbook(play, small_image)
        seen["built"] = [name for name in os.listdir(images) if name != "lost+found"]
        if len(seen["built"]) == 1:
            seen["check"] = subprocess.run(["qemu-img", "check", os.path.join(images, seen["built"][0])],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                           check=False)
    finally:
        subprocess.run(["umount", images], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return seen


# two image builds of minutes that need no libvirt: run from the libvirt tier on, beside the rest, at the
# lowest CPU priority (helpers.Job), and judged by the test below when it comes
FULL_DISK = Job("a full disk during the image build", full_disk_scenario)


@pytest.mark.slow
@pytest.mark.background(FULL_DISK)
def test_a_full_disk_during_the_image_build():
    """The run says why, leaves no build tree nor a part of the image, and the next run, with the space
    back, builds the image."""
    seen = FULL_DISK.result()
    run, again = seen["full"], seen["again"]
    assert run.returncode != 0, run.stdout[-3000:]
    said = [line for line in run.stdout.splitlines() if "The base image build failed" in line]
    assert said and "MiB free where it writes" in said[0] and ": the disk is full" in said[0], run.stdout[-4000:]
    assert seen["left"] == ["filler", "lost+found"], seen["left"]
    assert again.returncode == 0, again.stdout[-4000:]
    built = seen["built"]
    assert len(built) == 1 and built[0].startswith("nestlab-base-") and built[0].endswith(".qcow2"), built
    check = seen["check"]
    assert check.returncode == 0 and "No errors were found on the image." in check.stdout, check.stdout
    message = said[0][said[0].index("The base image build failed"):].split(" The end of its output:")[0]
    FIGURES["a full disk during the base image build"] = (
        message + " (then the build's last lines and '... MiB free where it writes (...): the disk is full')",
        "no build tree, no part of the image", "the image is built (qemu-img check: no errors)")


# the rows the fault tests above add to FIGURES (the QEMU kill under lab_boot adds two)
FAULT_ROWS = 12


@pytest.mark.slow  # after the full-disk test, which runs in the boot tier
@pytest.mark.background(FULL_DISK)  # so sorted with it, after it
def test_zz_the_fault_figures_are_written_to_docs():
    if len(FIGURES) != FAULT_ROWS:
        pytest.skip("only %d of %d fault rows were made (a partial run keeps the last full figures)"
                    % (len(FIGURES), FAULT_ROWS))
    lines = ["| fault | what the run said | the definition afterwards | the next run |", "|---|---|---|---|"]
    lines += ["| %s | %s | %s | %s |" % ((name,) + tuple(v.replace("|", "\\|") for v in row))
              for name, row in FIGURES.items()]
    lines += ["", "A build that cannot fit at all is stopped before it starts by the storage preflight"
              " (tests/integration/test_storage_preflight.py); the full disk above comes after it passed.",
              "", "Rows marked stand-in run lab_boot on a domain that boots nothing. The same faults on a real"
              " L1 are in the section \"Faults of a real L1\": its QEMU killed during the first SSH wait, and"
              " an IOMMU reboot that never comes back, then the same command again. A real L1 whose boots"
              " hang (each paused as it starts: reset when its console stops, given up on the last attempt,"
              " the half-made lab removed) is tests/boot/test_lab_l1.py::"
              "test_a_boot_that_hangs_is_reset_and_a_guest_that_never_answers_leaves_no_lab."]
    report.write_section("Faults", "tests/reliability/test_faults.py", lines)
