"""lab_snapshot against a real libvirtd, on a small running domain of its own (a qcow2 disk, no OS: the
firmware looks for a boot disk and waits): save (check, real, check), list, return to it, refuse to
return when the definition changed (nothing written), remove (check, real, check)."""

import json
import os
import shutil
import subprocess
import tempfile

import libvirt
import pytest

from helpers import remove_domain, run_module

pytestmark = pytest.mark.libvirt

DOMAIN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""

REPORT = {"name": "x", "spec": {"numa": [{"cpus": 1}]}, "plan": [{"node": 0}], "guest": {"nodes": [{"node": 0}]}}
REPORT_TEXT = json.dumps(REPORT, indent=4, sort_keys=True) + "\n"  # as lab.yml writes it


@pytest.fixture
def running(conn, domain_name, tmp_path):
    name = domain_name("snap")
    # QEMU runs as its own user: the disk lives where it can reach it
    where = tempfile.mkdtemp(prefix="nltest-snap-")
    os.chmod(where, 0o755)
    disk = os.path.join(where, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
    dom = conn.defineXML(DOMAIN.format(name=name, disk=disk))
    try:
        dom.create()
        (tmp_path / "report.json").write_text(REPORT_TEXT)
        yield name, dom, {"name": name, "snapshot": "verified", "state_dir": str(tmp_path / "states"),
                          "report": str(tmp_path / "report.json")}
    finally:
        remove_domain(conn, name)
        shutil.rmtree(where, ignore_errors=True)


def inactive(dom):
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def test_save_list_return_and_remove(running, tmp_path):
    name, dom, args = running
    pre = run_module("lab_snapshot", args, check=True, diff=True)
    assert pre["changed"] is True and pre["diff"]["after"]["snapshots"] == ["verified"], pre
    assert dom.snapshotNum(0) == 0 and not os.path.exists(args["state_dir"])  # check mode saved nothing
    real = run_module("lab_snapshot", args, diff=True)
    assert real["changed"] is True and dom.snapshotNum(0) == 1, real
    assert [s["name"] for s in real["snapshots"]] == ["verified"] and real["snapshots"][0]["resettable"] is True
    record = json.loads((tmp_path / "states" / "verified.json").read_text())
    assert json.loads(record["report"]) == REPORT and oct(os.stat(str(tmp_path / "states" / "verified.json")).st_mode & 0o777) == "0o600"
    post = run_module("lab_snapshot", args, check=True, diff=True)
    assert post["changed"] is False and post["diff"]["before"] == post["diff"]["after"], post
    listed = run_module("lab_snapshot", {"name": name, "state": "listed", "state_dir": args["state_dir"]})
    assert listed["changed"] is False and [s["name"] for s in listed["snapshots"]] == ["verified"]

    # return to it: check mode does nothing, the real run puts the saved report back; it is an action,
    # never "unchanged"
    (tmp_path / "report.json").write_text("{}")
    back = dict(args, state="reverted")
    pre = run_module("lab_snapshot", back, check=True, diff=True)
    assert pre["changed"] is True and json.loads((tmp_path / "report.json").read_text()) == {}, pre
    real = run_module("lab_snapshot", back, diff=True)
    assert real["changed"] is True and real["report"] == REPORT, real
    assert dom.isActive() and (tmp_path / "report.json").read_text() == REPORT_TEXT  # byte for byte

    # the definition changes: the return is refused and nothing is written
    desc = inactive(dom)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "changed by hand", None, None,
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    changed = inactive(dom)
    assert changed != desc
    refused = run_module("lab_snapshot", back)
    assert refused.get("failed") and refused["field"] == "snapshot", refused
    assert "'verified' of %s was saved on " % name in refused["msg"] and "with another definition" in refused["msg"]
    assert "nothing was done" in refused["msg"]
    assert inactive(dom) == changed
    listed = run_module("lab_snapshot", {"name": name, "state": "listed", "state_dir": args["state_dir"]})
    assert listed["snapshots"][0]["definition_changed"] is True and listed["snapshots"][0]["resettable"] is False

    # a state that is not there is named with the ones that are
    missing = run_module("lab_snapshot", dict(back, snapshot="other"))
    assert missing.get("failed") and "'other' is not a saved state of %s; its saved states: verified" % name \
        in missing["msg"], missing

    gone = dict(args, state="absent")
    pre = run_module("lab_snapshot", gone, check=True, diff=True)
    assert pre["changed"] is True and dom.snapshotNum(0) == 1 and pre["diff"]["after"]["snapshots"] == []
    real = run_module("lab_snapshot", gone)
    assert real["changed"] is True and dom.snapshotNum(0) == 0 and real["snapshots"] == []
    assert not (tmp_path / "states" / "verified.json").exists()
    post = run_module("lab_snapshot", gone, check=True)
    assert post["changed"] is False


def test_a_state_needs_a_running_verified_lab(running, conn, tmp_path):
    name, dom, args = running
    # no report of a verified lab: refused, nothing saved
    (tmp_path / "report.json").write_text(json.dumps({"name": "x"}))
    refused = run_module("lab_snapshot", args)
    assert refused.get("failed") and refused["field"] == "report" and "not the report of a verified lab" in refused["msg"]
    assert dom.snapshotNum(0) == 0
    # a snapshot made by hand is listed, and not returned to
    dom.snapshotCreateXML("<domainsnapshot><name>by-hand</name></domainsnapshot>", 0)
    listed = run_module("lab_snapshot", {"name": name, "state": "listed", "state_dir": args["state_dir"]})
    assert listed["snapshots"] == [dict(listed["snapshots"][0], name="by-hand", saved_by_nestlab=False, resettable=False)]
    refused = run_module("lab_snapshot", dict(args, snapshot="by-hand", state="reverted"))
    assert refused.get("failed") and "was not saved by nestlab.pci" in refused["msg"], refused
    # a lab that is not running: refused
    dom.destroy()
    (tmp_path / "report.json").write_text(REPORT_TEXT)
    refused = run_module("lab_snapshot", args)
    assert refused.get("failed") and refused["field"] == "name" and "is not running" in refused["msg"], refused
    # a bad name: refused before libvirt is asked
    refused = run_module("lab_snapshot", dict(args, snapshot="../up"))
    assert refused.get("failed") and refused["field"] == "snapshot" and "letters, digits" in refused["msg"]
    assert dom.snapshotNum(0) == 1
