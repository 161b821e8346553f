"""Drives behind an SSD capacity: the node's own drives first (a DGX H100 ships eight 3.84 TB
drives, hardware_db/nodes.toml), catalog drives beyond them. Before, 30.72 TB was counted as four
7.68 TB drives: half the node's NVMe read bandwidth."""

import numpy as np
import pytest

from kvmodel import node_tiers
from kvmodel.catalog.hardware import get_memory, get_node
from kvmodel.tiers import ssd_drives


@pytest.mark.parametrize("tb, drives", [(0.0, 1), (3.84, 1), (3.85, 2), (30.72, 8),
                                        (30.72 + 7.68, 9), (30.72 + 7.69, 10)])
def test_dgx_h100_drive_count_by_hand(tb, drives):
    node = get_node("dgx-h100")
    mem = get_memory(node.nvme)
    assert mem.capacity_B == pytest.approx(7.68e12)  # the catalog drive model beyond the node's
    assert ssd_drives(node, mem, tb * 1e12) == drives


def test_array_matches_scalar_and_never_falls_with_capacity():
    node = get_node("dgx-h100")
    mem = get_memory(node.nvme)
    caps = np.linspace(0.0, 150e12, 301)
    arr = ssd_drives(node, mem, caps)
    assert list(arr) == [ssd_drives(node, mem, float(c)) for c in caps]
    assert np.all(np.diff(arr) >= 0)


def test_shipped_capacity_reads_as_fast_as_the_node_default():
    node = get_node("dgx-h100")
    default = node_tiers("dgx-h100")["ssd"].path.source_Bps
    explicit = node_tiers("dgx-h100", ssd_B=node.nvme_capacity_B)["ssd"].path.source_Bps
    assert explicit == pytest.approx(default)
