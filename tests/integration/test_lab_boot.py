"""lab_boot on this machine's libvirt: bad input, check mode, and a guest that never answers SSH."""

import pytest

from helpers import FakeSSH, run_module

pytestmark = pytest.mark.libvirt

SMALL = {"numa": [{"cpus": 1, "memory": 128, "nics": 0}], "accel": "tcg"}


@pytest.fixture
def shut_off(conn, domain_name):
    name = domain_name("boot")
    made = run_module("lab_topology", {"name": name, "spec": SMALL})
    assert made["changed"], made
    return name


@pytest.mark.parametrize("args,needle", [
    ({"ssh_port": 0}, "ssh_port: 0 is not valid; a TCP port, 1-65535"),
    ({"ssh_port": 70000}, "ssh_port: 70000 is not valid"),
    ({"ssh_port": 40022, "attempts": 0}, "attempts: 0 is not valid; a whole number, 1 or more"),
])
def test_bad_input_names_the_field(conn, shut_off, args, needle):
    result = run_module("lab_boot", dict(args, name=shut_off))
    assert result["failed"] and needle in result["msg"]
    assert not conn.lookupByName(shut_off).isActive()


def test_a_missing_domain_is_named():
    result = run_module("lab_boot", {"name": "nltest-no-such-domain", "ssh_port": 40022})
    assert result["failed"] and result["msg"].startswith("name: cannot find domain 'nltest-no-such-domain'")


def test_check_mode_says_it_would_start_and_starts_nothing(conn, shut_off):
    result = run_module("lab_boot", {"name": shut_off, "ssh_port": 40022}, check=True)
    assert result["changed"] is True and result["log"] == ["would start"]
    assert not conn.lookupByName(shut_off).isActive()


def test_a_guest_without_ssh_is_reset_then_given_up(conn, shut_off, tmp_path):
    console = tmp_path / "console.log"
    console.write_text("line one\nlast line\n")
    result = run_module("lab_boot", {"name": shut_off, "ssh_port": 1, "timeout": 2, "attempts": 2,
                                     "console_log": str(console)})
    assert result["failed"] and result["msg"].startswith("no SSH after 2 attempts of 2 s")
    assert result["msg"].endswith("line one\nlast line")
    assert result["log"][:2] == ["started", "no SSH after 2 s on attempt 1: reset"]
    conn.lookupByName(shut_off).destroy()


def test_after_reboot_waits_for_ssh_to_go_and_come_back(conn, shut_off):
    import threading
    conn.lookupByName(shut_off).create()
    fake = FakeSSH()
    try:
        down = threading.Timer(2, lambda: setattr(fake, "up", False))
        back = threading.Timer(6, lambda: setattr(fake, "up", True))
        down.start()
        back.start()
        result = run_module("lab_boot", {"name": shut_off, "ssh_port": fake.port, "after_reboot": True, "timeout": 30})
        assert result.get("failed") is not True, result
        assert result["log"] == ["SSH stopped answering (the guest is rebooting)", "SSH answers (attempt 1)"]
        assert result["changed"] is False
        # a guest that never goes down did not reboot: said so, after the timeout
        never = run_module("lab_boot", {"name": shut_off, "ssh_port": fake.port, "after_reboot": True, "timeout": 3})
        assert never["failed"] and never["msg"] == (
            "SSH on port %d still answers 3 s after the reboot was asked for: %s did not reboot" % (fake.port, shut_off))
        assert conn.lookupByName(shut_off).isActive()
    finally:
        fake.close()
        conn.lookupByName(shut_off).destroy()


def test_a_console_that_stops_is_a_hang_and_one_that_grows_is_not(conn, shut_off, tmp_path):
    import threading
    import time

    # a console that never grows: no progress, reset after the stall bound, given up on the last attempt
    console = tmp_path / "console.log"
    console.write_text("SeaBIOS\n")
    began = time.time()
    result = run_module("lab_boot", {"name": shut_off, "ssh_port": 1, "timeout": 120, "attempts": 2,
                                     "stall_timeout": 2, "console_log": str(console)})
    assert result["failed"] and result["msg"].startswith(
        "no SSH after 2 attempts; the last stopped making progress (no console output for 2 s)"), result["msg"]
    assert result["log"] == ["started", "no console output for 2 s and no SSH on attempt 1: reset", "started",
                             "no console output for 2 s and no SSH on attempt 2: given up"], result["log"]
    assert time.time() - began < 60, "the 120 s timeout was waited for"
    conn.lookupByName(shut_off).destroy()
    # a console that keeps growing is a boot in progress: only the timeout ends it
    stop = threading.Event()

    def grow():
        with open(str(console), "a") as handle:
            while not stop.wait(0.5):
                handle.write("[    1.0] still booting\n")
                handle.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        result = run_module("lab_boot", {"name": shut_off, "ssh_port": 1, "timeout": 6, "attempts": 1,
                                         "stall_timeout": 2, "console_log": str(console)})
    finally:
        stop.set()
        writer.join()
    assert result["failed"] and result["msg"].startswith("no SSH after 1 attempts of 6 s"), result["msg"]
    conn.lookupByName(shut_off).destroy()


def test_a_guest_found_silent_since_before_the_run_is_reset_after_a_short_grace(conn, shut_off, tmp_path):
    """A running guest with no SSH whose console was last written long ago (it hung before this run)
    counts as silent since then: with a 300 s stall bound it is given up (reset, when attempts are left)
    after the 10 s grace, before the 13 s timeout ends; a console written just now gets the whole
    stall bound, so the timeout ends it."""
    import os
    import time

    console = tmp_path / "console.log"
    console.write_text("[    2.0] the last line before the hang\n")
    long_ago = time.time() - 600
    os.utime(str(console), (long_ago, long_ago))
    conn.lookupByName(shut_off).create()
    try:
        args = {"name": shut_off, "ssh_port": 1, "timeout": 13, "attempts": 1, "stall_timeout": 300,
                "console_log": str(console)}
        result = run_module("lab_boot", args)
        assert result["failed"] and result["log"] == [
            "no console output for 300 s and no SSH on attempt 1: given up"], result
        # the same guest, its console written now: not silent for 300 s, so the timeout ends the wait
        console.write_text("[    2.5] a line just now\n")
        result = run_module("lab_boot", args)
        assert result["failed"] and result["msg"].startswith("no SSH after 1 attempts of 13 s"), result
    finally:
        conn.lookupByName(shut_off).destroy()
