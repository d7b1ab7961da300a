"""guest_config: a role's files, directories and unit states in one call; check, real, check again."""

import os

import pytest

from helpers import run_module, systemd_is_pid1

UNIT = "nltest-guest-config.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT
UNIT_TEXT = "[Unit]\nDescription=nestlab test unit\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"


def tree(root):
    """Every path under ``root`` with its mode and bytes: equal before and after means nothing was written."""
    found = {}
    for base, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(base, name)
            data = None
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    data = handle.read()
            found[path] = (os.lstat(path).st_mode, data)
    return found


@pytest.fixture
def unit():
    """A unit file of the test's own in /etc/systemd/system, disabled and removed afterwards."""
    yield UNIT_PATH
    if os.path.exists(UNIT_PATH):
        os.system("systemctl disable %s >/dev/null 2>&1" % UNIT)
        os.unlink(UNIT_PATH)


def test_check_real_check_with_diff(tmp_path, unit):
    (tmp_path / "old").write_text("left over\n")
    (tmp_path / "mode").write_text("same\n")
    os.chmod(str(tmp_path / "mode"), 0o600)
    args = {"directories": [str(tmp_path / "etc/nestlab")],
            "files": [{"path": str(tmp_path / "etc/nestlab/pages.conf"), "content": "0 256\n1 128\n"},
                      {"path": str(tmp_path / "run.sh"), "content": "#!/bin/sh\necho hi\n", "mode": "0755"},
                      {"path": str(tmp_path / "mode"), "content": "same\n", "mode": "0644"},
                      {"path": unit, "content": UNIT_TEXT}],
            "absent": [str(tmp_path / "old"), str(tmp_path / "never")],
            "units_enabled": [UNIT]}
    before = tree(tmp_path)
    pre = run_module("guest_config", args, check=True, diff=True)
    assert pre["changed"] is True and tree(tmp_path) == before and not os.path.exists(unit)
    assert pre["changes"] == ["%s: made" % (tmp_path / "etc/nestlab"), "%s: written" % (tmp_path / "etc/nestlab/pages.conf"),
                              "%s: written" % (tmp_path / "run.sh"), "%s: mode 0600 to 0644" % (tmp_path / "mode"),
                              "%s: written" % unit, "%s: removed" % (tmp_path / "old"), "%s: enabled" % UNIT]
    diff = dict((d["before_header"], d) for d in pre["diff"])
    assert diff[str(tmp_path / "old")]["before"] == "left over\n" and diff[str(tmp_path / "old")]["after"] == ""
    assert diff[str(tmp_path / "mode")]["before"] == "mode 0600\n"
    assert diff["systemd units"]["after"] == "%s: enabled\n" % UNIT
    real = run_module("guest_config", args, diff=True)
    assert real["changed"] is True and real["changes"] == pre["changes"] and real["diff"] == pre["diff"]
    assert (tmp_path / "etc/nestlab/pages.conf").read_text() == "0 256\n1 128\n"
    assert oct(os.stat(str(tmp_path / "run.sh")).st_mode & 0o777) == "0o755"
    assert oct(os.stat(str(tmp_path / "etc/nestlab")).st_mode & 0o777) == "0o755"
    assert oct(os.stat(str(tmp_path / "mode")).st_mode & 0o777) == "0o644"
    assert not os.path.exists(str(tmp_path / "old"))
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/" + UNIT)
    # written through a temporary file and a rename: nothing else is left beside them
    assert sorted(os.listdir(str(tmp_path))) == ["etc", "mode", "run.sh"]
    post = run_module("guest_config", args, check=True, diff=True)
    assert post["changed"] is False and post["changes"] == [] and post["diff"] == []
    # and guest_state, which reads the same things, agrees
    state = run_module("guest_state", {"files": args["files"], "absent": args["absent"],
                                       "directories": args["directories"], "units_enabled": [UNIT]}, check=True)
    assert state["satisfied"] is True, state["differences"]
    # a changed content and a unit to disable
    args2 = dict(args, files=[{"path": str(tmp_path / "etc/nestlab/pages.conf"), "content": "0 512\n"}],
                 units_enabled=[], units_disabled=[UNIT], absent=[])
    again = run_module("guest_config", args2, diff=True)
    assert again["changes"] == ["%s: written" % (tmp_path / "etc/nestlab/pages.conf"), "%s: disabled" % UNIT]
    assert again["diff"][0]["before"] == "0 256\n1 128\n" and again["diff"][0]["after"] == "0 512\n"
    assert not os.path.lexists("/etc/systemd/system/multi-user.target.wants/" + UNIT)
    assert run_module("guest_config", args2)["changed"] is False


@pytest.mark.parametrize("args, message", [
    ({"files": [{"path": "relative.conf", "content": ""}]},
     "files[0].path: 'relative.conf' is not valid; give an absolute path"),
    ({"files": [{"path": "{tmp}/a", "content": "", "mode": "rw"}]},
     "files[0].mode: 'rw' is not valid; give octal text such as '0644'"),
    ({"files": [{"path": "{tmp}/a", "content": ""}, {"path": "{tmp}/no/such/b", "content": ""}]},
     "files[1].path: the directory of '{tmp}/no/such/b' does not exist; add it to directories"),
    ({"files": [{"path": "{tmp}/sub", "content": ""}]},
     "files[0].path: '{tmp}/sub' is a directory; give a file"),
    ({"directories": ["{tmp}/file"]}, "directories[0]: '{tmp}/file' exists and is not a directory"),
    ({"directory_mode": "u+rwx", "directories": ["{tmp}/new"]},
     "directory_mode: 'u+rwx' is not valid; give octal text such as '0644'"),
    ({"absent": ["{tmp}/sub"]}, "absent[0]: '{tmp}/sub' is a directory; only files and links are removed"),
    ({"units_enabled": ["a.service", "b.service"], "units_disabled": ["b.service"]},
     "units_enabled, units_disabled: b.service in both; give each unit one state"),
])
def test_bad_input_is_named_and_nothing_is_written(tmp_path, args, message):
    (tmp_path / "sub").mkdir()
    (tmp_path / "file").write_text("x\n")
    args = fill(args, str(tmp_path))
    # a valid file and directory beside the bad argument: they must not be made either
    args["files"] = args.get("files", []) + [{"path": str(tmp_path / "valid.conf"), "content": "ok\n"}]
    args["directories"] = args.get("directories", []) + [str(tmp_path / "valid.d")]
    message = fill(message, str(tmp_path))
    before = tree(tmp_path)
    got = run_module("guest_config", args)
    assert got.get("failed") is True and message in got["msg"], (message, got)
    assert tree(tmp_path) == before


def fill(value, tmp):
    """``value`` with every "{tmp}" in its strings replaced by the test's directory."""
    if isinstance(value, dict):
        return dict((key, fill(item, tmp)) for key, item in value.items())
    if isinstance(value, list):
        return [fill(item, tmp) for item in value]
    return value.replace("{tmp}", tmp) if isinstance(value, str) else value


def test_units_started_needs_systemd(tmp_path):
    got = run_module("guest_config", {"units_started": ["nltest-none.service"],
                                      "files": [{"path": str(tmp_path / "a"), "content": "a\n"}]})
    if systemd_is_pid1():
        # systemd runs: the unit does not exist, so systemctl start fails and says so
        assert got["failed"] is True and got["msg"].startswith("systemctl start nltest-none.service failed")
        assert got["changed"] is True  # the file before it was written
    else:
        assert got["failed"] is True and got["msg"] == (
            "units_started: nltest-none.service asked for, but systemd is not running on this host (no /run/systemd/system)")
        assert not (tmp_path / "a").exists()
