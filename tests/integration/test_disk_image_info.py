"""disk_image_info on real images made with qemu-img: the four figures of the seed's table, the
qcow2 arithmetic against qemu-img's own preallocation and qemu-img measure, and errors per path."""

import json
import os
import shutil
import struct
import pathlib
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import COLLECTIONS, module_env, run_module

MiB = 1024 * 1024
GiB = 1024 * MiB
LUKS = ["--object", "secret,id=s0,data=nestlab"]
LUKS_OPTS = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"


def qemu_img(*args):
    subprocess.run(["qemu-img"] + list(args), check=True, stdout=subprocess.DEVNULL)


def measure(capacity, opts=""):
    cmd = ["qemu-img", "measure", "--output=json", "-O", "qcow2", "--size", str(capacity)]
    if opts:
        cmd += ["-o", opts]
    return json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout)


def info(paths, **kwargs):
    return run_module("disk_image_info", dict(paths=[str(p) for p in paths], **kwargs))


def image_level(img):
    """The commitment without the filesystem's own allowance (ext4 extent-tree blocks)."""
    return img["commitment"] - img["overhead_parts"]["filesystem"]


def one(path, **kwargs):
    result = info([path], **kwargs)
    assert not result.get("failed"), result
    return result["images"][0]


def test_the_seeds_table(tmp_path):
    """The five rows of the blog post's table, every figure asserted."""
    size = 256 * MiB
    qemu_img("create", "-q", "-f", "raw", str(tmp_path / "sparse.raw"), str(size))
    qemu_img("create", "-q", "-f", "raw", "-o", "preallocation=full", str(tmp_path / "full.raw"), str(size))
    qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "grow.qcow2"), str(size))
    qemu_img("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", str(tmp_path / "meta.qcow2"), str(size))
    qemu_img("create", "-q", "-f", "qcow2", "-o", "preallocation=full", str(tmp_path / "all.qcow2"), str(size))
    names = ["sparse.raw", "full.raw", "grow.qcow2", "meta.qcow2", "all.qcow2"]
    result = info([tmp_path / n for n in names])
    assert not result.get("failed") and result["errors"] == []
    rows = dict((os.path.basename(i["path"]), i) for i in result["images"])
    overhead = measure(size)["fully-allocated"] - size
    # raw: capacity = length = commitment; sparse allocates nothing, preallocated everything
    for name in ("sparse.raw", "full.raw"):
        assert rows[name]["format"] == "raw"
        assert rows[name]["capacity"] == rows[name]["length"] == rows[name]["commitment"] == size
    assert rows["sparse.raw"]["allocation"] < MiB
    assert rows["full.raw"]["allocation"] >= size
    # qcow2: the capacity from the header, the commitment the capacity plus the metadata
    for name in ("grow.qcow2", "meta.qcow2", "all.qcow2"):
        img = rows[name]
        assert img["format"] == "qcow2" and img["capacity"] == size and img["cluster_size"] == 65536
        assert img["overhead_parts"]["metadata"] == overhead and "qemu-img measure gives the same" in img["method"]
        assert image_level(img) == size + overhead and img["commitment_bounded"] is True
        # on ext4 (4 KiB blocks): with every 64 KiB cluster its own extent, 4102 extents need 13 leaf
        # blocks of 340 and one index block above them
        if img["filesystem"]["type"] == "ext4" and os.statvfs(img["path"]).f_bsize == 4096:
            assert img["overhead_parts"]["filesystem"] == 14 * 4096
        elif img["filesystem"]["type"] != "ext4":
            assert img["overhead_parts"]["filesystem"] == 0
        assert img["allocation"] <= img["commitment"]
    # grow on demand: a few clusters long; preallocated: qemu-img itself made the file exactly
    # as long as the commitment, metadata (few blocks used) or everything
    assert rows["grow.qcow2"]["length"] < MiB and rows["grow.qcow2"]["allocation"] < MiB
    assert rows["meta.qcow2"]["length"] == image_level(rows["meta.qcow2"])
    assert rows["meta.qcow2"]["allocation"] < 4 * MiB
    assert rows["all.qcow2"]["length"] == image_level(rows["all.qcow2"])
    assert rows["all.qcow2"]["allocation"] >= size
    assert len(result["table"]) == 6 and result["table"][0].split()[:6] == [
        "Path", "Format", "Capacity", "Length", "Allocation", "Commitment"]
    assert result["total"]["commitment"] == 2 * size + sum(rows[n]["commitment"] for n in names[2:])


@pytest.mark.parametrize("cluster", [4096, 65536, 2 * MiB])
@pytest.mark.parametrize("refcount_bits", [1, 16, 64])
def test_cluster_sizes_and_refcount_widths(tmp_path, cluster, refcount_bits):
    """qemu-img's preallocation=metadata lays out every table a full image needs: its length must be
    the commitment, and the overhead must be what qemu-img measure says."""
    size = 3 * GiB + 12345 * 512
    path = tmp_path / "img.qcow2"
    opts = "cluster_size=%d,refcount_bits=%d" % (cluster, refcount_bits)
    qemu_img("create", "-q", "-f", "qcow2", "-o", opts + ",preallocation=metadata", str(path), str(size))
    img = one(path)
    rounded = -(-size // cluster) * cluster
    assert img["qcow2"]["refcount_bits"] == refcount_bits and img["cluster_size"] == cluster
    assert img["overhead_parts"]["metadata"] == measure(size, opts)["fully-allocated"] - rounded
    assert img["commitment"] == rounded + img["overhead"]
    # preallocated: the refcount table is already final, and no growth allowance is needed
    assert img["overhead_parts"]["refcount_growth"] == 0
    if cluster == 4096 and refcount_bits == 64:
        # one refcount table cluster covers 1 GiB here: qemu-img grew the table while preallocating
        # and left the old one behind as free space (a hole), so the file is longer than the commitment
        assert image_level(img) < img["length"] <= image_level(img) + 2 * MiB + 4096
        assert img["allocation"] <= img["commitment"]
    else:
        assert img["length"] == image_level(img)


def test_refcount_table_growth_is_in_the_commitment(tmp_path):
    """4 KiB clusters with 64-bit refcounts: a refcount table cluster covers 1 GiB, so a 1.25 GiB
    image written in full grows its table; the allocation stays within the commitment."""
    size = 1280 * MiB
    path = tmp_path / "grow.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,refcount_bits=64", str(path), str(size))
    img = one(path)
    assert img["qcow2"]["refcount_table_clusters"] == 1 and img["overhead_parts"]["refcount_growth"] > 0
    chunk = 128 * MiB
    commands = []
    for offset in range(0, size, chunk):
        commands += ["-c", "write -P 0x11 %d %d" % (offset, chunk)]
    subprocess.run(["qemu-io", "-f", "qcow2"] + commands + [str(path)], check=True, stdout=subprocess.DEVNULL)
    full = one(path)
    assert full["qcow2"]["refcount_table_clusters"] > 1          # the table did grow
    assert size < full["allocation"] <= img["commitment"]
    assert full["overhead_parts"]["refcount_growth"] == 0         # now it covers everything


@pytest.mark.parametrize("capacity,expected", [(GiB, 393216), (10 * GiB, 1900544), (100 * GiB, 16646144),
                                               (1024 * GiB, 168034304)])
def test_issue_figures_for_64k_clusters(tmp_path, capacity, expected):
    path = tmp_path / "img.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(path), str(capacity))
    img = one(path)
    assert img["overhead_parts"]["metadata"] == expected
    assert img["overhead_parts"]["refcount_growth"] == 0
    assert image_level(img) == capacity + expected


def test_extended_l2_and_bitmaps(tmp_path):
    size = GiB
    ext = tmp_path / "ext.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on,preallocation=metadata", str(ext), str(size))
    img = one(ext)
    assert img["qcow2"]["extended_l2"] is True and "extended_l2" in img["qcow2"]["incompatible_features"]
    assert img["overhead_parts"]["metadata"] == measure(size, "extended_l2=on")["fully-allocated"] - size
    assert img["length"] == image_level(img)
    # persistent bitmaps: data and tables for every bitmap plus the directory, as qemu-img measure
    bm = tmp_path / "bm.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(bm), str(size))
    qemu_img("bitmap", "--add", str(bm), "b0")
    qemu_img("bitmap", "--add", "-g", "4096", str(bm), "b1")
    img = one(bm)
    assert [b["name"] for b in img["qcow2"]["bitmaps"]] == ["b0", "b1"]
    theirs = json.loads(subprocess.run(["qemu-img", "measure", "--output=json", "-O", "qcow2", str(bm)],
                                       check=True, stdout=subprocess.PIPE).stdout)
    assert img["overhead_parts"]["bitmaps"] == theirs["bitmaps"]
    assert image_level(img) == theirs["fully-allocated"] + theirs["bitmaps"]


PBKDF_TIMING = "Unable to get accurate CPU usage"


def qemu_img_luks(args):
    """stdout of a qemu-img command with LUKS options, or None when qemu-img cannot time PBKDF2 on this
    machine: it measures the thread's CPU time, which stays at 0 here now and then, and then gives up
    with "Unable to get accurate CPU usage" (20 tries)."""
    for dummy in range(20):
        proc = subprocess.run(["qemu-img"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        if proc.returncode == 0:
            return proc.stdout
        assert PBKDF_TIMING in proc.stderr, proc.stderr
    return None


def add_luks_extension(path, offset, length):
    """Turn a plain qcow2 v3 header into one that says LUKS (crypt_method 2) with a full-disk-encryption
    header extension of ``length`` bytes at ``offset``, ahead of the extensions already there."""
    with open(path, "r+b") as handle:
        header = bytearray(handle.read(65536))
        header_length = struct.unpack_from(">I", header, 100)[0]
        ext = struct.pack(">IIQQ", 0x0537BE77, 16, offset, length)
        rest = bytes(header[header_length:65536 - len(ext)])
        header[header_length:] = ext + rest
        struct.pack_into(">I", header, 32, 2)
        handle.seek(0)
        handle.write(bytes(header))


def test_luks_header_is_in_the_commitment(tmp_path):
    size = GiB
    # what the parser reads: the full-disk-encryption extension's length, in whole clusters
    fde = tmp_path / "fde.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(fde), str(size))
    add_luks_extension(str(fde), 3 * 65536, 2068480)
    img = one(fde)
    assert img["qcow2"]["crypt_method"] == "luks" and img["qcow2"]["luks_header_size"] == 2068480
    assert img["overhead_parts"]["luks_header"] == 2097152
    assert image_level(img) == size + img["overhead_parts"]["metadata"] + 2097152


def test_a_luks_image_from_qemu_img_matches_qemu_img_measure(tmp_path):
    """A real encrypted image from qemu-img, and qemu-img measure's figure for it. qemu-img times its key
    derivation with the thread's CPU time, which stays at 0 on some machines: then this test says so
    and is skipped (the header arithmetic is proven above on a header with the LUKS extension)."""
    size = GiB
    luks = tmp_path / "luks.qcow2"
    if qemu_img_luks(["create", "-q", "-f", "qcow2"] + LUKS + ["-o", LUKS_OPTS, str(luks), str(size)]) is None:
        pytest.skip("qemu-img could not time PBKDF2 on this machine (%s), 20 tries" % PBKDF_TIMING)
    img = one(luks)
    assert img["qcow2"]["crypt_method"] == "luks" and img["qcow2"]["luks_header_size"] > 0
    assert img["overhead_parts"]["luks_header"] % 65536 == 0 and img["overhead_parts"]["luks_header"] > 0
    assert img["allocation"] <= img["commitment"]
    measured = qemu_img_luks(["measure", "--output=json", "-O", "qcow2", "--size", str(size)] + LUKS
                             + ["-o", LUKS_OPTS])
    if measured is None:
        pytest.skip("qemu-img made the image but could not time PBKDF2 for measure (%s), 20 tries" % PBKDF_TIMING)
    assert img["overhead_parts"]["metadata"] + img["overhead_parts"]["luks_header"] == \
        json.loads(measured)["fully-allocated"] - size


def test_backing_chain_and_internal_snapshot(tmp_path):
    base = tmp_path / "base.raw"
    mid = tmp_path / "mid.qcow2"
    top = tmp_path / "sub" / "top.qcow2"
    top.parent.mkdir()
    qemu_img("create", "-q", "-f", "raw", str(base), str(64 * MiB))
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", str(mid))
    qemu_img("create", "-q", "-f", "qcow2", "-b", "../mid.qcow2", "-F", "qcow2", str(top), str(128 * MiB))
    result = info([top], chain=True)
    assert [os.path.basename(i["path"]) for i in result["images"]] == ["top.qcow2", "mid.qcow2", "base.raw"]
    first = result["images"][0]
    # relative backing names resolve from each image's own directory, as QEMU does
    # (lexically, as QEMU joins them; the OS resolves the '..')
    assert [os.path.realpath(p) for p in first["chain"]] == [str(mid), str(base)]
    assert first["chain"][0] == os.path.join(str(top.parent), "../mid.qcow2")
    assert first["qcow2"]["backing_file"] == "../mid.qcow2" and first["qcow2"]["backing_format"] == "qcow2"
    assert first["capacity"] == 128 * MiB and result["images"][1]["capacity"] == 64 * MiB
    assert result["total"]["commitment"] == sum(i["commitment"] for i in result["images"])
    # without chain only the image named
    assert [i["path"] for i in info([top])["images"]] == [str(top)]
    # an internal snapshot: no bound, and the total is unbounded too
    snap = tmp_path / "snap.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(snap), str(64 * MiB))
    qemu_img("snapshot", "-c", "before", str(snap))
    result = info([snap, base])
    img = result["images"][0]
    assert img["commitment"] is None and img["commitment_bounded"] is False
    assert img["qcow2"]["nb_snapshots"] == 1 and "internal snapshot" in img["reason"]
    assert result["total"]["commitment"] is None and result["total"]["commitment_bounded"] is False
    assert "unbounded" in result["table"][1]


def write_header(path, data, offset=0):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_bad_files_get_their_own_error_and_the_rest_is_reported(tmp_path):
    good = tmp_path / "good.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(good), str(64 * MiB))
    corrupt = tmp_path / "corrupt.qcow2"
    shutil.copy(str(good), str(corrupt))
    write_header(str(corrupt), struct.pack(">I", 40), 20)            # cluster_bits 40
    version = tmp_path / "version.qcow2"
    shutil.copy(str(good), str(version))
    write_header(str(version), struct.pack(">I", 9), 4)
    truncated = tmp_path / "truncated.qcow2"
    with open(str(good), "rb") as src, open(str(truncated), "wb") as dst:
        dst.write(src.read(50))
    text = tmp_path / "notes.txt"
    text.write_text("not a disk\n")
    vmdk = tmp_path / "disk.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", str(vmdk), str(MiB))
    directory = tmp_path / "dir"
    directory.mkdir()
    paths = [good, corrupt, version, truncated, text, vmdk, tmp_path / "missing.qcow2", directory]
    before = dict((str(p), open(str(p), "rb").read()) for p in paths if os.path.isfile(str(p)))
    failed = info(paths)
    assert failed["failed"] is True
    assert [i["path"] for i in failed["images"]] == [str(good)]       # the good one is still reported
    errors = dict((os.path.basename(e["path"]), e["msg"]) for e in failed["errors"])
    assert errors == {
        "corrupt.qcow2": "corrupt qcow2 header: cluster_bits 40 (qcow2 allows 9 to 21: 512 B to 2 MiB)",
        "version.qcow2": "corrupt qcow2 header: version 9 (qcow2 has versions 2 and 3)",
        "truncated.qcow2": "truncated: the qcow2 header (72 bytes at offset 0) lies past the end of the file",
        "notes.txt": "not a disk image: 11 bytes is not a whole number of 512-byte sectors "
                     "(give format: raw to read it as a raw image anyway)",
        "disk.vmdk": "format vmdk is not supported (raw and qcow2 are)",
        "missing.qcow2": "cannot read: No such file or directory",
        "dir": "not a regular file (give image files; block devices and directories are not read)",
    }
    for path, msg in errors.items():
        assert "%s: %s" % (tmp_path / path, msg) in failed["msg"]
    reported = info(paths, on_error="report")
    assert not reported.get("failed") and len(reported["errors"]) == 7
    # only read: every file is byte-identical
    assert before == dict((p, open(p, "rb").read()) for p in before)
    # format: qcow2 refuses a raw file; format: raw reads the text file as a raw image
    assert "no qcow2 magic" in info([text], format="qcow2")["errors"][0]["msg"]
    text.write_text("x" * 1000)
    assert one(text, format="raw")["capacity"] == 1000


@pytest.fixture
def open_dir():
    """A directory that nobody may enter (pytest's tmp_path is under a 0700 directory)."""
    path = tempfile.mkdtemp(prefix="nltest-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


def test_unreadable_file(open_dir):
    """A file the reading user may not open: run the module as nobody."""
    tmp_path = open_dir
    img = tmp_path / "secret.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(img), str(MiB))
    os.chmod(str(img), 0o600)
    os.chmod(str(tmp_path), 0o755)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"paths": [str(img)], "on_error": "report"}}))
    os.chmod(str(args), 0o644)
    # the venv's interpreter lives under /root (0700): nobody runs the system python3 on the same
    # site-packages (both Debian 12's 3.11)
    env = dict(module_env(), PYTHONPATH=os.pathsep.join([COLLECTIONS] + [p for p in sys.path if "site-packages" in p]))
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                           "/usr/bin/python3", "-m", "ansible_collections.nestlab.pci.plugins.modules.disk_image_info",
                           str(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/",
                          universal_newlines=True, check=False)
    assert proc.stdout, proc.stderr
    out = json.loads(proc.stdout)
    assert out["images"] == [] and out["errors"] == [{"path": str(img), "msg": "cannot read: Permission denied"}]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cluster_bits=st.sampled_from([12, 16, 21]), refcount_bits=st.sampled_from([1, 16, 64]),
       writes=st.lists(st.tuples(st.sampled_from(["write -P 0x5a", "write -z", "discard"]),
                                 st.integers(0, 255), st.integers(1, 64)), min_size=1, max_size=40),
       extended_l2=st.booleans())
def test_allocation_never_exceeds_commitment(tmp_path, cluster_bits, refcount_bits, writes, extended_l2):
    """Random writes, zero writes and discards through qemu-io (random offsets and lengths, in 64 KiB
    steps over a 64 MiB image), then the whole image written: the allocation never passes the
    commitment."""
    path = tmp_path / ("w%d-%d-%d.qcow2" % (cluster_bits, refcount_bits, extended_l2))
    if path.exists():
        path.unlink()
    opts = "cluster_size=%d,refcount_bits=%d" % (1 << cluster_bits, refcount_bits)
    if extended_l2 and cluster_bits >= 14:
        opts += ",extended_l2=on"
    size = 64 * MiB
    qemu_img("create", "-q", "-f", "qcow2", "-o", opts, str(path), str(size))
    commands = []
    for operation, start, length in writes:
        unit = 256 * 1024
        length = min(length * unit // 4, size - start * unit)
        commands += ["-c", "%s %d %d" % (operation, start * unit, length)]
    subprocess.run(["qemu-io", "-f", "qcow2"] + commands + [str(path)], check=True, stdout=subprocess.DEVNULL)
    img = one(path)
    assert img["allocation"] <= img["commitment"], (opts, writes, img)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x33 0 %d" % size, str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    full = one(path)
    assert size <= full["allocation"] <= full["commitment"] == img["commitment"], (opts, full)
    # a discard punches a hole that stays inside the file (the post's TRIM case): the length can then
    # pass the commitment, the allocation cannot
    if not any(operation == "discard" for operation, dummy, dummy2 in writes):
        assert full["length"] <= full["commitment"]


def test_the_example_playbook_prints_the_table(tmp_path):
    from helpers import ansible_playbook
    base = tmp_path / "base.qcow2"
    disk = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8G")
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(disk))
    run = ansible_playbook("playbooks/disk-sizes.yml", {"nestlab_disk_images": [str(disk)]})
    assert run.returncode == 0, run.stdout[-3000:]
    lines = [line.strip() for line in run.stdout.splitlines()]
    header = [line for line in lines if line.startswith("Path ")]
    assert header and header[0].split()[:6] == ["Path", "Format", "Capacity", "Length", "Allocation", "Commitment"]
    rows = [line.split() for line in lines if line.startswith(str(tmp_path))]
    # the lab's disk first, then its backing file, each 8 GiB to the guest and committed to 8 GiB
    # plus 1.5 MiB of metadata (and the ext4 allowance)
    assert [r[0] for r in rows[:2]] == [str(disk), str(base)]
    assert all(r[1] == "qcow2" and r[5:7] == ["8.00", "GiB"] for r in rows[:2])
    assert "%s: header formula; qemu-img measure gives the same metadata size (1572864 bytes)" % disk in lines
    assert any(line.startswith("/") and " has free: " in line for line in lines)
