"""qcow2 arithmetic without qemu-img: the issue's figures for 64 KiB clusters, and the ext4 allowance."""

import pytest

from ansible_collections.nestlab.pci.plugins.module_utils._nestlab.diskimage import (
    filesystem_allowance,
    qcow2_metadata_size,
    refcount_growth_allowance,
    refcount_table_clusters,
)

GiB = 1024 ** 3


@pytest.mark.parametrize("capacity,overhead", [(GiB, 393216), (10 * GiB, 1900544), (100 * GiB, 16646144),
                                               (1024 * GiB, 168034304)])
def test_metadata_for_64k_clusters_is_what_qemu_img_measure_gives(capacity, overhead):
    assert qcow2_metadata_size(capacity, 65536) == overhead


def test_refcount_table_and_growth():
    # 64 KiB clusters, 16-bit refcounts: one table cluster covers 8192 blocks x 32768 clusters = 16 TiB
    assert refcount_table_clusters(1024 * GiB, 65536) == 1
    assert refcount_growth_allowance(1024 * GiB, 65536, 4, False, 1) == 0
    # 4 KiB clusters, 64-bit refcounts: one table cluster covers 512 x 512 clusters = 1 GiB
    assert refcount_table_clusters(3 * GiB, 4096, 6) == 4
    assert refcount_growth_allowance(3 * GiB, 4096, 6, False, 1) == (2 * 4 + 2) * 4096
    assert refcount_growth_allowance(3 * GiB, 4096, 6, False, 4) == 0


def test_ext4_extent_tree_allowance():
    assert filesystem_allowance("xfs", 4096, 10 * GiB, 65536) == 0
    assert filesystem_allowance("ext4", 4096, 4 * 65536, 65536) == 0          # 4 extents fit in the inode
    assert filesystem_allowance("ext4", 4096, 5 * 65536, 65536) == 4096       # one leaf block
    # 163840 clusters: 482 leaves of 340 extents, 2 index blocks above them
    assert filesystem_allowance("ext4", 4096, 10 * GiB, 65536) == (482 + 2) * 4096
