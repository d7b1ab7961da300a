"""The PVH kernel copy: an uncompressed ELF with the Xen PVH entry note is found inside a bzImage."""

import bz2
import gzip
import lzma
import struct

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.probe import has_pvh_note, uncompressed_kernel


def elf_with_notes(notes):
    """A minimal 64-bit little-endian ELF image with one PT_NOTE segment holding ``notes`` [(name, type)]."""
    body = b""
    for name, n_type in notes:
        desc = b"\x00" * 4
        padded = name + b"\x00" * (-len(name) % 4)
        body += struct.pack("<III", len(name), len(desc), n_type) + padded + desc
    phoff, phentsize = 64, 56
    fields = (2, 62, 1, 0, phoff, 0, 0, 64, phentsize, 1, 0, 0, 0)
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + struct.pack("<HHIQQQIHHHHHH", *fields)
    offset = phoff + phentsize
    phdr = struct.pack("<IIQQQQQQ", 4, 4, offset, 0, 0, len(body), len(body), 4)
    return header + phdr + body + b"\x00" * 64


PVH = elf_with_notes([(b"GNU\x00", 3), (b"Xen\x00", 18)])
NO_PVH = elf_with_notes([(b"Xen\x00", 7)])


def bzimage(payload):
    return b"\x00" * 200 + b"HdrS" + b"\x11" * 300 + payload + b"\x00" * 500


def test_the_note_is_found_only_with_its_name_and_type():
    assert has_pvh_note(PVH) and not has_pvh_note(NO_PVH) and not has_pvh_note(b"MZ" + PVH)


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress, bz2.compress], ids=["xz", "gzip", "bzip2"])
def test_the_elf_inside_a_bzimage_is_returned(compress):
    out, why = uncompressed_kernel(bzimage(compress(PVH)))
    assert out == PVH and why is None


def test_a_kernel_without_pvh_or_without_a_known_payload_is_said_so():
    assert uncompressed_kernel(bzimage(lzma.compress(NO_PVH))) == (
        None, "its uncompressed image has no PVH entry note (a kernel built without CONFIG_PVH)")
    assert uncompressed_kernel(bzimage(b"\x28\xb5\x2f\xfd" + b"zstd data"))[1] == (
        "no xz, gzip or bzip2 payload with an ELF image inside was found")
