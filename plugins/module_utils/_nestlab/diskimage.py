# -*- coding: utf-8 -*-
# Copyright: nestlab.pci contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The four sizes of a disk image: capacity, length, allocation and commitment.

Capacity is what the guest sees, length the highest byte offset of the file, allocation what
the host filesystem really uses for it, and commitment the most the allocation can grow to.
For qcow2 the commitment is the capacity plus the metadata a fully written image needs: one
header cluster, L2 tables for every guest cluster, the L1 table, the refcount blocks and table
that count all of those clusters (themselves included), a LUKS header and persistent bitmaps.
The header and its extensions give every parameter; no data cluster is read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct

QCOW2_MAGIC = b"QFI\xfb"
# Formats this module recognises by their first bytes, to refuse them by name.
OTHER_MAGICS = (
    (b"QFI\xfb", "qcow (version 1)"),
    (b"KDMV", "vmdk"),
    (b"# Disk DescriptorFile", "vmdk (descriptor)"),
    (b"conectix", "vpc/vhd"),
    (b"vhdxfile", "vhdx"),
    (b"QED\x00", "qed"),
    (b"LUKS\xba\xbe", "luks"),
    (b"WithoutFreeSpace", "parallels"),
    (b"ParallelsDiskImage", "parallels"),
)
VDI_MAGIC_OFFSET, VDI_MAGIC = 0x40, b"\x7f\x10\xda\xbe"

HEADER_V2_LENGTH = 72
INCOMPAT_BITS = {0: "dirty", 1: "corrupt", 2: "external_data_file", 3: "compression_type", 4: "extended_l2"}
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_LUKS = 0x0537BE77
EXT_DATA_FILE = 0x44415441
L1E_SIZE = 8
L2E_SIZE = 8
L2E_SIZE_EXTENDED = 16
REFTABLE_ENTRY_SIZE = 8
BITMAP_TABLE_ENTRY_SIZE = 8
MAX_HEADER_READ = 1 << 20


class ImageError(Exception):
    """A path that cannot be read as a disk image; the message says why."""


SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(value):
    """1073741824 -> '1.00 GiB'; None (an unbounded commitment) -> 'unbounded'."""
    if value is None:
        return "unbounded"
    size = float(value)
    for unit in SIZE_UNITS:
        if abs(size) < 1024 or unit == SIZE_UNITS[-1]:
            return ("%d %s" % (size, unit)) if unit == "B" else ("%.2f %s" % (size, unit))
        size /= 1024.0
    return str(value)


def block_size_of(path):
    """The filesystem block size at ``path``; 0 when it cannot be read."""
    try:
        return os.statvfs(path).f_bsize
    except OSError:
        return 0


def round_up(value, unit):
    return -(-value // unit) * unit


def div_round_up(value, unit):
    return -(-value // unit)


# ------------------------------------------------------------------ qcow2 arithmetic
def refcount_metadata_clusters(clusters, cluster_size, refcount_order):
    """Refcount blocks + refcount table clusters needed to count ``clusters`` clusters and
    themselves: the smallest fixed point of blocks = ceil(all / per_block), table = ceil(blocks /
    per_table)."""
    per_block = cluster_size * 8 // (1 << refcount_order)
    per_table = cluster_size // REFTABLE_ENTRY_SIZE
    blocks = table = 0
    while True:
        new_blocks = div_round_up(clusters + blocks + table, per_block)
        new_table = div_round_up(new_blocks, per_table)
        if (new_blocks, new_table) == (blocks, table):
            return blocks + table
        blocks, table = new_blocks, new_table


def refcount_table_clusters(capacity, cluster_size, refcount_order=4, extended_l2=False):
    """Clusters of the refcount table of a fully allocated image (the fixed point of qcow2_metadata_size)."""
    per_block = cluster_size * 8 // (1 << refcount_order)
    per_table = cluster_size // REFTABLE_ENTRY_SIZE
    total = (qcow2_metadata_size(capacity, cluster_size, refcount_order, extended_l2)
             + round_up(capacity, cluster_size)) // cluster_size
    return div_round_up(div_round_up(total, per_block), per_table)


def refcount_growth_allowance(capacity, cluster_size, refcount_order, extended_l2, current_table_clusters):
    """Bytes a grow-on-demand image may hold beyond qcow2_metadata_size when its refcount table
    must still grow: QEMU then writes a larger table (and refcount blocks for it) elsewhere and
    frees the old one, which stays allocated until a later cluster reuses it. Bounded by twice the
    final table plus two refcount blocks; zero when the current table already covers a full image."""
    final = refcount_table_clusters(capacity, cluster_size, refcount_order, extended_l2)
    if current_table_clusters >= final:
        return 0
    return (2 * final + 2) * cluster_size


def qcow2_metadata_size(capacity, cluster_size, refcount_order=4, extended_l2=False):
    """Bytes of metadata of a fully allocated qcow2 image of ``capacity`` (no LUKS, no bitmaps, no
    snapshots): header cluster, L2 tables, L1 table, refcount structures. This is what
    ``qemu-img measure`` reports as fully-allocated minus the capacity."""
    data = round_up(capacity, cluster_size)
    l2e_size = L2E_SIZE_EXTENDED if extended_l2 else L2E_SIZE
    meta = cluster_size                                     # the header cluster
    l2_entries = round_up(data // cluster_size, cluster_size // l2e_size)
    meta += l2_entries * l2e_size                           # every L2 table, whole clusters
    l1_entries = round_up(l2_entries * l2e_size // cluster_size, cluster_size // L1E_SIZE)
    meta += l1_entries * L1E_SIZE                           # the L1 table, whole clusters
    meta += refcount_metadata_clusters((meta + data) // cluster_size, cluster_size,
                                       refcount_order) * cluster_size
    return meta


def bitmaps_size(capacity, cluster_size, granularities, directory_size):
    """Bytes of persistent dirty bitmaps when every bit is set: per bitmap its data clusters and its
    table, plus the bitmap directory."""
    total = round_up(directory_size, cluster_size) if granularities else 0
    for granularity in granularities:
        data_bytes = div_round_up(div_round_up(capacity, granularity), 8)
        data_clusters = div_round_up(data_bytes, cluster_size)
        total += data_clusters * cluster_size
        total += round_up(data_clusters * BITMAP_TABLE_ENTRY_SIZE, cluster_size)
    return total


# ------------------------------------------------------------------ reading
def _u32(buf, off):
    return struct.unpack_from(">I", buf, off)[0]


def _u64(buf, off):
    return struct.unpack_from(">Q", buf, off)[0]


def _read_at(handle, offset, size, what):
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise ImageError("truncated: %s (%d bytes at offset %d) lies past the end of the file"
                         % (what, size, offset))
    return data


def sniff_format(head, length):
    """'qcow2', 'raw' or ImageError naming the format this module does not read."""
    if head[:4] == QCOW2_MAGIC:
        if len(head) < 8:
            raise ImageError("truncated: a qcow2 magic but no header after it")
        version = _u32(head, 4)
        if version in (2, 3):
            return "qcow2"
        if version == 1:
            raise ImageError("format qcow (version 1) is not supported: convert it with qemu-img convert -O qcow2")
        raise ImageError("corrupt qcow2 header: version %d (qcow2 has versions 2 and 3)" % version)
    for magic, name in OTHER_MAGICS:
        if head.startswith(magic):
            raise ImageError("format %s is not supported (raw and qcow2 are)" % name)
    if head[VDI_MAGIC_OFFSET:VDI_MAGIC_OFFSET + 4] == VDI_MAGIC:
        raise ImageError("format vdi is not supported (raw and qcow2 are)")
    if length % 512:
        raise ImageError("not a disk image: %d bytes is not a whole number of 512-byte sectors "
                         "(give format: raw to read it as a raw image anyway)" % length)
    return "raw"


def parse_qcow2_header(handle, file_length):
    """The header facts of a qcow2 image, with its extensions (backing format, bitmaps, LUKS, data file)."""
    head = _read_at(handle, 0, HEADER_V2_LENGTH, "the qcow2 header")
    version = _u32(head, 4)
    cluster_bits = _u32(head, 20)
    if not 9 <= cluster_bits <= 21:
        raise ImageError("corrupt qcow2 header: cluster_bits %d (qcow2 allows 9 to 21: 512 B to 2 MiB)"
                         % cluster_bits)
    cluster_size = 1 << cluster_bits
    facts = {
        "version": version,
        "cluster_bits": cluster_bits,
        "cluster_size": cluster_size,
        "capacity": _u64(head, 24),
        "crypt_method": {0: None, 1: "aes", 2: "luks"}.get(_u32(head, 32), "unknown (%d)" % _u32(head, 32)),
        "l1_size": _u32(head, 36),
        "l1_table_offset": _u64(head, 40),
        "refcount_table_offset": _u64(head, 48),
        "refcount_table_clusters": _u32(head, 56),
        "nb_snapshots": _u32(head, 60),
        "snapshots_offset": _u64(head, 64),
        "refcount_order": 4,
        "header_length": HEADER_V2_LENGTH,
        "incompatible_features": [],
        "compression_type": "zlib",
        "backing_file": None,
        "backing_format": None,
        "data_file": None,
        "luks_header_size": 0,
        "bitmaps": [],
        "bitmap_directory_size": 0,
    }
    backing_offset, backing_size = _u64(head, 8), _u32(head, 16)
    if version >= 3:
        v3 = _read_at(handle, HEADER_V2_LENGTH, 32, "the qcow2 version 3 header")
        incompatible = _u64(v3, 0)
        facts["refcount_order"] = _u32(v3, 24)
        facts["header_length"] = _u32(v3, 28)
        if facts["refcount_order"] > 6:
            raise ImageError("corrupt qcow2 header: refcount_order %d (at most 6: 64-bit refcounts)"
                             % facts["refcount_order"])
        if facts["header_length"] < 104 or facts["header_length"] > cluster_size:
            raise ImageError("corrupt qcow2 header: header_length %d (104 to the cluster size, %d)"
                             % (facts["header_length"], cluster_size))
        facts["incompatible_features"] = [INCOMPAT_BITS.get(bit, "unknown bit %d" % bit)
                                          for bit in range(64) if incompatible >> bit & 1]
        if "compression_type" in facts["incompatible_features"] and facts["header_length"] > 104:
            kind = _read_at(handle, 104, 1, "the compression type")[0]
            facts["compression_type"] = {0: "zlib", 1: "zstd"}.get(kind, "unknown (%d)" % kind)
    facts["extended_l2"] = "extended_l2" in facts["incompatible_features"]
    facts["refcount_bits"] = 1 << facts["refcount_order"]
    if facts["capacity"] and facts["l1_size"] * (cluster_size // (16 if facts["extended_l2"] else 8)) \
            * cluster_size < facts["capacity"]:
        raise ImageError("corrupt qcow2 header: an L1 table of %d entries cannot map a capacity of %d bytes"
                         % (facts["l1_size"], facts["capacity"]))
    _read_extensions(handle, facts, cluster_size, file_length)
    if backing_offset:
        if backing_size > 1023:
            raise ImageError("corrupt qcow2 header: backing file name of %d bytes (at most 1023)" % backing_size)
        name = _read_at(handle, backing_offset, backing_size, "the backing file name")
        facts["backing_file"] = name.decode("utf-8", "replace")
    return facts


def _read_extensions(handle, facts, cluster_size, file_length):
    offset = facts["header_length"]
    end = min(cluster_size, MAX_HEADER_READ)
    while offset + 8 <= end:
        ext_head = _read_at(handle, offset, 8, "a header extension")
        kind, length = _u32(ext_head, 0), _u32(ext_head, 4)
        if kind == EXT_END:
            return
        if offset + 8 + length > end:
            raise ImageError("corrupt qcow2 header: extension 0x%08x of %d bytes runs past the header cluster"
                             % (kind, length))
        data = _read_at(handle, offset + 8, length, "header extension 0x%08x" % kind)
        if kind == EXT_BACKING_FORMAT:
            facts["backing_format"] = data.decode("utf-8", "replace")
        elif kind == EXT_DATA_FILE:
            facts["data_file"] = data.decode("utf-8", "replace")
        elif kind == EXT_LUKS and length >= 16:
            facts["luks_header_size"] = _u64(data, 8)
        elif kind == EXT_BITMAPS and length >= 24:
            _read_bitmap_directory(handle, facts, _u32(data, 0), _u64(data, 8), _u64(data, 16), file_length)
        offset += 8 + round_up(length, 8)


def _read_bitmap_directory(handle, facts, count, dir_size, dir_offset, file_length):
    if dir_offset + dir_size > file_length or dir_size > MAX_HEADER_READ:
        raise ImageError("corrupt qcow2 bitmaps extension: a directory of %d bytes at offset %d, file length %d"
                         % (dir_size, dir_offset, file_length))
    directory = _read_at(handle, dir_offset, dir_size, "the bitmap directory")
    facts["bitmap_directory_size"] = dir_size
    pos = 0
    for dummy in range(count):
        if pos + 24 > dir_size:
            raise ImageError("corrupt qcow2 bitmap directory: %d bitmaps do not fit in %d bytes" % (count, dir_size))
        granularity_bits = directory[pos + 17]
        name_size = struct.unpack_from(">H", directory, pos + 18)[0]
        extra = _u32(directory, pos + 20)
        name = directory[pos + 24 + extra:pos + 24 + extra + name_size].decode("utf-8", "replace")
        facts["bitmaps"].append({"name": name, "granularity": 1 << granularity_bits})
        pos += round_up(24 + extra + name_size, 8)


def allocation_of(stat_result):
    return getattr(stat_result, "st_blocks", 0) * 512


def read_mounts(mountinfo="/proc/self/mountinfo"):
    """[(mount point, filesystem type)] from mountinfo; [] when it cannot be read."""
    mounts = []
    try:
        with open(mountinfo) as handle:
            for line in handle:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                mounts.append((fields[4].replace("\\040", " "), line.split(" - ", 1)[1].split()[0]))
    except (IOError, OSError):
        pass
    return mounts


def filesystem_of(path, mounts):
    """(mount point, filesystem type) holding ``path``: the longest mount point that contains it."""
    real = os.path.realpath(path)
    best = ("/", None)
    for point, fstype in mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype)
    return best


# ext4 keeps a file's extents in the inode (4) and then in tree blocks of (block size - 12) / 12
# entries, and counts those blocks in st_blocks.
EXT4_INODE_EXTENTS = 4
EXT4_EXTENT_ENTRY = 12


def filesystem_allowance(fstype, block_size, file_bytes, cluster_size):
    """Bytes the filesystem itself may add to the allocation of a file of ``file_bytes`` written in
    units of ``cluster_size``: for ext4 the extent tree when every unit is its own extent."""
    if fstype != "ext4" or not block_size:
        return 0
    extents = div_round_up(file_bytes, max(cluster_size, block_size))
    per_block = (block_size - EXT4_EXTENT_ENTRY) // EXT4_EXTENT_ENTRY
    blocks = 0
    while extents > EXT4_INODE_EXTENTS:
        extents = div_round_up(extents, per_block)
        blocks += extents
    return blocks * block_size


OVERALLOCATING = {
    "xfs": "XFS may preallocate speculatively: allocation can exceed the figures by a little",
    "ext4": "ext4 counts its extent-tree blocks in the allocation: a fragmented file uses up to one block "
            "per (block size / 12) extents beyond its data",
    "btrfs": "btrfs shares blocks between copies: allocations of several files can overlap, and "
             "copy-on-write can need more than the commitment while a write is in flight",
}


def image_figures(path, fmt="auto", mounts=None):
    """The four figures and the header facts of one image file. Raises ImageError."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageError("cannot read: %s" % (exc.strerror or exc))
    if not os.path.isfile(path):
        raise ImageError("not a regular file (give image files; block devices and directories are not read)")
    try:
        handle = open(path, "rb")
    except (IOError, OSError) as exc:
        raise ImageError("cannot read: %s" % (exc.strerror or exc))
    with handle:
        head = handle.read(4096)
        detected = sniff_format(head, info.st_size) if fmt == "auto" else fmt
        if fmt == "qcow2" and head[:4] != QCOW2_MAGIC:
            raise ImageError("not a qcow2 image: no qcow2 magic at offset 0 (format: qcow2 was asked for)")
        facts = parse_qcow2_header(handle, info.st_size) if detected == "qcow2" else None
    mount, fstype = filesystem_of(path, read_mounts() if mounts is None else mounts)
    out = {
        "path": path,
        "format": detected,
        "length": info.st_size,
        "allocation": allocation_of(info),
        "filesystem": {"mount_point": mount, "type": fstype},
        "notes": [],
    }
    if fstype in OVERALLOCATING:
        out["notes"].append(OVERALLOCATING[fstype])
    if detected == "raw":
        out.update(capacity=info.st_size, commitment=info.st_size, commitment_bounded=True,
                   cluster_size=None, qcow2=None, overhead=0,
                   method="raw: the commitment is the length")
        return out
    out.update(_qcow2_commitment(facts, fstype, block_size_of(path)))
    out["capacity"] = facts["capacity"]
    out["cluster_size"] = facts["cluster_size"]
    out["qcow2"] = facts
    if "dirty" in facts["incompatible_features"] or "corrupt" in facts["incompatible_features"]:
        out["notes"].append("the image is marked %s: qemu-img check can repair leaked clusters"
                            % " and ".join(f for f in ("dirty", "corrupt") if f in facts["incompatible_features"]))
    return out


def _qcow2_commitment(facts, fstype=None, block_size=0):
    capacity, cluster = facts["capacity"], facts["cluster_size"]
    meta = qcow2_metadata_size(capacity, cluster, facts["refcount_order"], facts["extended_l2"])
    luks = round_up(facts["luks_header_size"], cluster)
    bitmaps = bitmaps_size(capacity, cluster, [b["granularity"] for b in facts["bitmaps"]],
                           facts["bitmap_directory_size"])
    growth = refcount_growth_allowance(capacity, cluster, facts["refcount_order"], facts["extended_l2"],
                                       facts["refcount_table_clusters"])
    parts = {"metadata": meta, "luks_header": luks, "bitmaps": bitmaps, "refcount_growth": growth}
    data = 0 if facts["data_file"] else round_up(capacity, cluster)
    parts["filesystem"] = filesystem_allowance(fstype, block_size, data + meta + luks + bitmaps + growth, cluster)
    extra = luks + bitmaps + growth + parts["filesystem"]
    out = {"overhead": meta + extra, "overhead_parts": parts}
    if facts["nb_snapshots"]:
        out.update(commitment=None, commitment_bounded=False,
                   reason="%d internal snapshot(s): each can keep its own copy of every cluster and the "
                          "VM state, so the image can grow without a bound" % facts["nb_snapshots"])
        return out
    out.update(commitment=data + meta + extra, commitment_bounded=True)
    if facts["data_file"]:
        out["reason"] = ("guest data lives in the external data file %s (its commitment is the capacity); "
                         "this file holds the metadata only" % facts["data_file"])
    return out


def backing_path(image_path, backing_file):
    """The backing file's path as QEMU resolves it: relative to the image's directory."""
    if backing_file.startswith(("json:", "nbd:", "http:", "https:", "iscsi:", "rbd:")) or "://" in backing_file:
        return None
    if os.path.isabs(backing_file):
        return backing_file
    return os.path.join(os.path.dirname(image_path), backing_file)
