"""transfer_seconds: golden values on round-number toy links, monotonicity, ideal = old numbers."""

import numpy as np
import pytest

from kvmodel.catalog.hardware import ConnectorSpec, LinkSpec
from kvmodel.tiers import TransferPath, node_tiers, transfer_seconds

TOY = LinkSpec("toy", "10 GB/s, 10 us", "pcie", 10e9, 10e-6, "full", 10e9, None)


def _conn(per_request=0.0, per_block=0.0, eff=1.0, streaming="layer"):
    return ConnectorSpec("t", "toy connector", "ideal", per_request, per_block, eff, streaming, False)


def test_toy_link_golden_by_hand():
    p = TransferPath("toy", (TOY,))
    # 1 GB in 1 MB descriptors, 8 in flight: 1e9 / 1e10 = 0.1 s + ceil(1000 / 8) x 10 us
    assert transfer_seconds(p, 1e9, 1e6) == pytest.approx(0.1 + 125 * 10e-6)
    # two users share the link: twice the wire time, same setup
    assert transfer_seconds(p, 1e9, 1e6, concurrent=2) == pytest.approx(0.2 + 125 * 10e-6)
    # a connector: 1 ms per request, 2 us per descriptor, 50 % of the bandwidth; posting 1000
    # descriptors (2 ms) overlaps the link's 1000 one-at-a-time setups (10 ms): the slower paces
    c = _conn(1e-3, 2e-6, 0.5)
    assert transfer_seconds(p, 1e9, 1e6, connector=c, in_flight=1) == pytest.approx(
        1e-3 + 0.2 + max(1000 * 2e-6, 1000 * 10e-6))
    # posting slower than the setups (20 us each, 8 in flight): 1000 x 20 us = 20 ms paces them
    slow_post = _conn(1e-3, 20e-6, 0.5)
    assert transfer_seconds(p, 1e9, 1e6, connector=slow_post) == pytest.approx(
        1e-3 + 0.2 + 1000 * 20e-6)
    assert transfer_seconds(p, 0.0, 1e6, connector=c) == 0.0


def test_write_uses_device_write_bandwidth():
    p = TransferPath("toy", (TOY,), source_Bps=8e9, source_write_Bps=2e9)
    assert transfer_seconds(p, 1e9, 1e9, in_flight=1) == pytest.approx(1e9 / 8e9 + 10e-6)
    assert transfer_seconds(p, 1e9, 1e9, in_flight=1, direction="write") == pytest.approx(
        1e9 / 2e9 + 10e-6)


def test_ideal_connector_is_the_path_time():
    t = node_tiers("dgx-h100", cxl_B=1e12, remote_B=1e12)
    nb, tr = np.array([1e6, 1e8, 5e9]), np.array([4096.0, 2**20, 2**24])
    for kind in ("dram", "cxl", "ssd", "remote"):
        want = t[kind].path.time_s(nb, tr)
        np.testing.assert_allclose(transfer_seconds(t[kind], nb, tr), want, rtol=1e-12)
    assert transfer_seconds(t["hbm"], 1e9, 1e6) == 0.0


def test_monotone_in_bytes_and_link_speed():
    nb = np.geomspace(1e3, 1e10, 40)
    slow = TransferPath("slow", (TOY,))
    fast = TransferPath("fast", (LinkSpec("f", "f", "pcie", 20e9, 10e-6, "full", 20e9, None),))
    c = _conn(1e-4, 1e-6, 0.7)
    ts, tf = transfer_seconds(slow, nb, 2**20, connector=c), transfer_seconds(fast, nb, 2**20, connector=c)
    assert np.all(np.diff(ts) >= 0) and np.all(tf <= ts)


@pytest.mark.parametrize("kw, match", [({"direction": "up"}, "direction"),
                                       ({"in_flight": 0}, "in_flight"),
                                       ({"concurrent": 0}, "concurrent"),
                                       ({"connector": "nope"}, "unknown connector 'nope'")])
def test_bad_arguments_name_themselves(kw, match):
    with pytest.raises((ValueError, KeyError), match=match):
        transfer_seconds(TransferPath("toy", (TOY,)), 1e9, 1e6, **kw)
    with pytest.raises(TypeError, match="tier_or_path"):
        transfer_seconds("dram", 1e9, 1e6)



def test_nvme_at_its_measured_gds_rate_and_bounce_buffers_cost_more():
    gds = node_tiers("dgx-h100")["ssd"]
    # nvme-gen4 (PM9A3) through GDS at its 6.5 / 3.5 GB/s rating (a data-center Gen4 drive reads at
    # its rating through gdsio, Solidigm D7-P5520), 8 drives shared by 8 GPUs
    assert gds.path.bandwidth_Bps() == pytest.approx(6.5e9)
    assert gds.path.bandwidth_Bps(direction="write") == pytest.approx(3.5e9)
    bounce = node_tiers("dgx-h100", gds=False)["ssd"]
    assert bounce.path.setup_s(2**20) > gds.path.setup_s(2**20)
    assert transfer_seconds(bounce, 1e9, 2**20) > transfer_seconds(gds, 1e9, 2**20)
    with pytest.raises(TypeError, match="gds"):
        node_tiers("dgx-h100", gds="yes")


def test_cxl_bandwidth_grows_with_expanders_each_behind_its_own_link():
    bw = [node_tiers("dgx-h100", cxl_B=n * 256e9)["cxl"].path.bandwidth_Bps() for n in (8, 16, 32)]
    # per expander min(CZ120 24 GB/s read, cxl2-x8 27.72 GB/s achieved) = 24 GB/s, over 8 GPUs
    assert bw == pytest.approx([24e9, 48e9, 55.43e9])  # 32 expanders: the GPU's PCIe Gen5 caps


def test_multi_nic_aggregation_follows_the_measurements():
    from kvmodel.catalog.hardware import get_link
    from kvmodel.tiers import nic_aggregate_Bps
    roce = get_link("roce-400g")
    assert nic_aggregate_Bps(roce, 1) == pytest.approx(47.5e9)
    assert nic_aggregate_Bps(roce, 8) == pytest.approx(190e9)   # Mooncake TE, 8 x 400G
    assert nic_aggregate_Bps(get_link("ib-ndr"), 8) == pytest.approx(8 * 49e9)
    # RoCE setup is the verbs latency, not an end-to-end framework curve (was 2.06 ms)
    assert TransferPath("r", (roce,)).setup_s(4e6) == pytest.approx(2.8e-6)


def test_queue_depth_per_tier_kind_from_the_catalog():
    t = node_tiers("dgx-h100", cxl_B=1e12, remote_B=1e12)
    # 3 copy engines (DRAM, CXL), cuFile queue depth 128 (NVMe), perftest tx depth 128 (RDMA)
    assert [t[k].path.in_flight for k in ("dram", "cxl", "ssd", "remote")] == [3.0, 3.0, 128.0, 128.0]
    p = t["dram"].path
    # 64 descriptors of 64 KiB, 3 in flight: ceil(64 / 3) = 22 setups
    want = 64 * 2**16 / p.bandwidth_Bps() + 22 * p.setup_s(2**16)
    assert transfer_seconds(t["dram"], 64 * 2**16, 2**16) == pytest.approx(want)
    assert node_tiers("dgx-h100", gds=False)["ssd"].path.in_flight == 3.0  # bounce: copy engines


def test_both_directions_at_the_measured_bidirectional_efficiency():
    half = TransferPath("toy", (LinkSpec("h", "h", "pcie", 10e9, 10e-6, "half", 10e9, None),))
    # a half-duplex 10 GB/s hop without a measurement: 5 GB/s each way; 1 GB in one descriptor
    assert transfer_seconds(half, 1e9, 1e9, direction="both") == pytest.approx(0.2 + 10e-6)
    dram = node_tiers("dgx-h100")["dram"].path
    # PCIe 5.0 x16: 55.43 GB/s one way, x 0.808 (8x H800 nvbandwidth) while the other copies too
    assert dram.bandwidth_Bps(direction="both") == pytest.approx(55.43e9 * 0.808)
    assert transfer_seconds(dram, 1e9, 2**20, direction="both") > transfer_seconds(dram, 1e9, 2**20)


def test_kernel_copies_win_for_small_blocks_dma_for_large():
    dram = node_tiers("dgx-h100")["dram"]
    nb = 2**30
    small_dma = transfer_seconds(dram, nb, 4096.0, copy="dma")
    small_kernel = transfer_seconds(dram, nb, 4096.0, copy="kernel")
    # 262,144 descriptors: DMA pays ceil(n / 3) per-copy setups; one 9 us kernel launch instead
    assert small_kernel == pytest.approx(nb / 55.43e9 + 9e-6)
    assert small_kernel < small_dma / 10
    big = 2**30  # one descriptor: the DMA setup (10.5 us) and the kernel launch (9 us) are alike
    assert transfer_seconds(dram, nb, big, copy="kernel") == pytest.approx(
        transfer_seconds(dram, nb, big, copy="dma"), rel=1e-3)
    # the NIC moves remote KV: a kernel copy changes nothing there
    rem = node_tiers("dgx-h100", remote_B=1e12)["remote"]
    assert transfer_seconds(rem, nb, 4096.0, copy="kernel") == transfer_seconds(rem, nb, 4096.0)
    with pytest.raises(ValueError, match="copy='sm'"):
        transfer_seconds(dram, nb, 4096.0, copy="sm")


def test_tcp_transport_runs_at_its_measured_share_of_the_nic():
    from kvmodel.tiers import transport_link
    rdma = node_tiers("dgx-h100", remote_B=1e12, nic="roce-400g")["remote"]
    tcp = node_tiers("dgx-h100", remote_B=1e12, nic="roce-400g", transport="tcp")["remote"]
    # Mooncake TE: 190 GB/s RDMA on 8x400G, 4.6x TCP -> 41.3 GB/s per node, 8 GPUs share it
    assert tcp.path.bandwidth_Bps() == pytest.approx(41.3e9 / 8)
    assert rdma.path.bandwidth_Bps() == pytest.approx(190e9 / 8)
    assert transfer_seconds(tcp, 1e9, 2**20) > 4 * transfer_seconds(rdma, 1e9, 2**20)
    assert transport_link("roce-200g", "tcp").key == "tcp-200g"
    with pytest.raises(ValueError, match="transport='udp'"):
        transport_link("roce-400g", "udp")
    with pytest.raises(ValueError, match="ib-ndr.*no tcp_link"):
        node_tiers("dgx-h100", remote_B=1e12, nic="ib-ndr", transport="tcp")
