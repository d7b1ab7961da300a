"""guest_state: one call that says whether a role has anything to do."""

import os

from helpers import run_module


def test_satisfied_only_when_every_check_holds(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("x 1\n")
    os.chmod(str(conf), 0o644)
    (tmp_path / "d").mkdir()
    args = {"files": [{"path": str(conf), "content": "x 1\n", "mode": "0644"}],
            "absent": [str(tmp_path / "gone")], "directories": [str(tmp_path / "d")],
            "values": {str(conf): "x 1"}, "read": [str(conf), str(tmp_path / "none")]}
    ok = run_module("guest_state", args, check=True)
    assert ok["satisfied"] is True and ok["differences"] == [] and ok["changed"] is False
    assert ok["read"] == {str(conf): "x 1\n", str(tmp_path / "none"): None}
    (tmp_path / "gone").write_text("")
    os.chmod(str(conf), 0o600)
    bad = run_module("guest_state", dict(args, files=[{"path": str(conf), "content": "x 2\n", "mode": "0644"}],
                                         modules_loaded=["nestlab_no_such_module"],
                                         units_enabled=["nestlab-no-such.service"]))
    assert bad["satisfied"] is False
    assert bad["differences"] == [
        "%s: content differs" % conf, "%s: mode 0600, not 0644" % conf, "%s: present" % (tmp_path / "gone"),
        "nestlab-no-such.service: not enabled", "module nestlab_no_such_module: not loaded"]
    assert run_module("guest_state", {"files": [{"path": str(conf), "content": "", "mode": "rw"}]})["msg"].startswith(
        "files[].mode: 'rw' is not valid")


def test_packages_units_modules_text_stat_and_kernel_log(tmp_path):
    cfg = tmp_path / "grub.cfg"
    cfg.write_text("linux /vmlinuz ro intel_iommu=on iommu=pt\n")
    args = {"packages": ["python3", "nestlab-no-such-package"],
            "modules_absent": ["nestlab_no_such_module"],
            "contains": [{"path": str(cfg), "text": " intel_iommu=on iommu=pt"},
                         {"path": str(cfg), "text": " amd_iommu=on"}],
            "stat": [str(cfg), str(tmp_path / "none"), "/dev/null"],
            "kernel_log": {"any": ".", "never": "nestlab-no-such-line-[0-9]{40}"}}
    got = run_module("guest_state", args, check=True)
    # python3 is installed on every machine that runs these tests; the other package exists nowhere
    assert got["differences"] == ["package nestlab-no-such-package: not installed",
                                  "%s: lacks ' amd_iommu=on'" % cfg]
    assert got["stat"][str(cfg)]["type"] == "file" and got["stat"][str(tmp_path / "none")] is None
    assert got["stat"]["/dev/null"] == {"type": "char", "mode": "0666", "owner": "root", "group": "root"}
    assert got["kernel_log"]["never"] is None
    assert got["kernel_log"]["any"] and not got["kernel_log"]["any"].startswith("[")
    assert run_module("guest_state", {"kernel_log": {"bad": "("}})["msg"].startswith(
        "kernel_log.bad: '(' is not a valid regular expression")
    loaded = sorted(os.listdir("/sys/module"))[0]
    assert run_module("guest_state", {"modules_absent": [loaded]})["differences"] == ["module %s: loaded" % loaded]
