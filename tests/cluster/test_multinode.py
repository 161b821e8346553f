"""Instances that span several nodes (DP-attention EP16 on 8-GPU DGX H100 nodes) own every
node's DRAM, NVMe, NICs and PCIe uplinks; instances packed on one node share it; a P/D decode
pool on another GPU is counted and priced on its own node template, whole nodes. Hand
arithmetic on the DGX H100 (8 GPUs, 2 TiB DDR5, 30.72 TB NVMe, 8 NDR NICs, $55.04/h) and GB200
tray (4 GPUs, 960 GB, 4 NDR NICs, $42.00/h) templates."""

import numpy as np
import pytest

import kvmodel
import kvmodel.cluster as cl
from kvmodel import Cluster, PoolSpec, Workload, get_link, get_memory, get_node
from kvmodel.catalog.hardware import get_calibration
from kvmodel.tiers import nic_aggregate_Bps

DGX = get_node("dgx-h100")
TRAY = get_node("gb200-nvl72-tray")
NDR = get_link("ib-ndr").achieved_bw_Bps  # one 400 Gb/s NIC, achieved
DP16 = dict(model="deepseek-v3", gpu="h100-sxm", tp=1, attention_dp=True, ep=16,
            precision="fp8")
TP4 = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=4, precision="fp8")


@pytest.fixture(scope="module")
def work():
    return Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=2.0)


def _host_B(c):
    _, node, _, per_node = cl.layout(c)
    return cl._host_caps(c, node, per_node)


def test_the_templates_hold_the_numbers_the_arithmetic_uses():
    assert (DGX.gpus_per_node, DGX.nics, DGX.nic_link) == (8, 8, "ib-ndr")
    assert DGX.host_dram_B == 2 * 2**40 and DGX.nvme_capacity_B == 30.72e12
    assert DGX.price_per_s * 3600 == pytest.approx(55.04)
    assert (TRAY.gpus_per_node, TRAY.price_per_s * 3600) == (4, pytest.approx(42.0))


def test_an_ep16_instance_owns_both_nodes_dram_and_nvme():
    # EP16 on 8-GPU nodes: one instance, two whole nodes: 2 x 2 TiB, 2 x 30.72 TB
    dram, ssd = _host_B(Cluster(**DP16, instances=2))
    assert dram == 2 * 2 * 2**40 and ssd == 2 * 30.72e12
    # EP8 fills one node: one node's; two TP4 instances share a node: half each
    assert _host_B(Cluster(**{**DP16, "ep": 8}, instances=2)) == (2 * 2**40, 30.72e12)
    assert _host_B(Cluster(**TP4, instances=2)) == (2**40, 15.36e12)
    # EP12 leaves 4 GPUs of its second node idle; it still owns both nodes
    assert _host_B(Cluster(**{**DP16, "ep": 12}, instances=1))[0] == 2 * 2 * 2**40


def test_peer_bandwidth_counts_the_nics_of_every_node_an_instance_spans():
    assert cl._peer_Bps(Cluster(**DP16, instances=2), DGX) == pytest.approx(16 * NDR)
    assert cl._peer_Bps(Cluster(**{**DP16, "ep": 8}, instances=2), DGX) == pytest.approx(8 * NDR)
    assert cl._peer_Bps(Cluster(**TP4, instances=2), DGX) == pytest.approx(4 * NDR)
    hdr = get_link("ib-hdr").achieved_bw_Bps
    assert cl._peer_Bps(Cluster(**DP16, instances=2, nic="ib-hdr"), DGX) == pytest.approx(16 * hdr)


def test_node_tiers_hold_one_nodes_part_of_a_wide_instance():
    # 4 TB DRAM and 61.44 TB NVMe per EP16 instance: 2 TB and 30.72 TB per node, so the NVMe
    # path's per-GPU bandwidth is that of a node with 30.72 TB of drives, not of 61.44 TB
    c = Cluster(**DP16, instances=2, dram_B=4e12, ssd_B=2 * 30.72e12)
    t = cl._tiers(c, "dgx-h100", 1)
    assert t["dram"].capacity_B == 2e12 and t["ssd"].capacity_B == 30.72e12
    one, two = (kvmodel.node_tiers("dgx-h100", ssd_B=b)["ssd"] for b in (30.72e12, 61.44e12))
    # 30.72 TB is the node's eight 3.84 TB drives; 61.44 TB adds four 7.68 TB catalog drives
    assert t["ssd"].path.source_Bps == one.path.source_Bps == two.path.source_Bps * 8 / 12
    # array capacities take the same per-node part
    v = cl._tiers(Cluster(**DP16, instances=2, dram_B=np.array([4e12, 8e12]),
                          ssd_B=np.array([2 * 30.72e12, 4 * 30.72e12])), "dgx-h100", 1)
    np.testing.assert_allclose(v["dram"].capacity_B, [2e12, 4e12])
    np.testing.assert_allclose(v["ssd"].capacity_B, [30.72e12, 61.44e12])
    np.testing.assert_allclose(v["ssd"].path.source_Bps, [one.path.source_Bps,
                                                          two.path.source_Bps])


def test_wide_instances_pay_for_dram_beyond_their_nodes_not_beyond_one_node():
    hours = get_calibration()["hardware_amortization"].si
    per_B = get_memory(DGX.host_memory).price_per_B
    node_h = DGX.price_per_s * 3600
    # 2 EP16 instances: 4 nodes; 4 TB per instance is 2 TB per node, within the 2 TiB template
    c = Cluster(**DP16, instances=2, dram_B=4e12)
    assert cl.cost_per_hour(c) == pytest.approx(4 * node_h)
    # 5 TB per instance: 2.5 TB per node, 2.5e12 - 2 TiB extra on each of the 4 nodes
    c5 = Cluster(**DP16, instances=2, dram_B=5e12)
    assert cl.cost_per_hour(c5) == pytest.approx(4 * node_h + 4 * (2.5e12 - 2 * 2**40) * per_B
                                                 / hours)
    # packed instances as before: 3 TP4 instances on 2 nodes, 1.5 TB each = 3 TB per node
    p = Cluster(**TP4, instances=3, dram_B=1.5e12)
    assert cl.cost_per_hour(p) == pytest.approx(2 * node_h + 2 * (3e12 - 2 * 2**40) * per_B
                                                / hours)


def test_p2p_owner_uplinks_are_every_gpu_of_a_wide_instance(work):
    c = Cluster(**DP16, instances=2, sharing="p2p", hbm_cache_fraction=0.0, dram_B=1e11,
                ssd_B=0.0)
    r = kvmodel.evaluate(c, work)
    s, u = r.sharing, r.utilisation
    out_hot = s["peer_get_Bps"] * s["peer_hot_owner_share"]
    assert u["peer_nic_hottest"] == pytest.approx(out_hot / (16 * NDR))
    block_B = cl.block_bytes(c, work)
    own_dram = work.rate * r.hit_ratio["dram"] * work.blocks_per_request * block_B / 2
    in_hot = s["peer_put_Bps"] * s["peer_put_hot_share"]
    pcie = get_link("pcie5-x16").achieved_bw_Bps
    assert u["peer_pcie_hottest"] == pytest.approx(max(out_hot + own_dram, in_hot) / (16 * pcie))


PD = dict(TP4, prefill_instances=3, decode_instances=3, hbm_cache_fraction=0.0, dram_B=0.0,
          ssd_B=0.0)


def test_a_decode_pool_on_another_gpu_is_priced_on_its_own_nodes(work):
    # prefill: 3 TP4 instances, 2 per DGX H100 -> 2 nodes; decode: 3 TP4 on 4-GPU GB200
    # trays -> 3 trays. 2 x 55.04 + 3 x 42.00 = 236.08 $/h (before: 3 DGX nodes, 165.12)
    c = Cluster(**PD, decode_gpu="gb200")
    assert cl.cost_per_hour(c) == pytest.approx(2 * 55.04 + 3 * 42.0)
    r = kvmodel.evaluate(c, work)
    assert r.nodes == 5 and r.cost_usd_per_h == pytest.approx(236.08)
    assert r.cost_usd_per_mtok == pytest.approx(
        r.cost_usd_per_h / (r.output_tok_per_s * 3600 / 1e6))
    # the same GPU: prefill and decode instances pack the same nodes, ceil(6 / 2) = 3
    same = Cluster(**PD)
    assert cl.cost_per_hour(same) == pytest.approx(3 * 55.04)
    assert kvmodel.evaluate(same, work).nodes == 3
    assert cl.cost_per_hour(Cluster(**PD, decode_gpu="h100-sxm")) == cl.cost_per_hour(same)


def test_a_decode_pool_without_a_node_template_is_an_error():
    with pytest.raises(ValueError, match="decode_gpu='h20'.*no node template"):
        cl.cost_per_hour(Cluster(**PD, decode_gpu="h20"))


def test_decode_nodes_buy_their_own_extra_dram():
    hours = get_calibration()["hardware_amortization"].si
    c = Cluster(**{**PD, "dram_B": 1.5e12}, decode_gpu="gb200")
    # DGX: 2 instances x 1.5 TB = 3 TB per node vs 2 TiB, on 2 nodes; tray: 1.5 TB vs 960 GB
    want = (2 * 55.04 + 3 * 42.0
            + 2 * (3e12 - 2 * 2**40) * get_memory(DGX.host_memory).price_per_B / hours
            + 3 * (1.5e12 - TRAY.host_dram_B) * get_memory(TRAY.host_memory).price_per_B / hours)
    assert TRAY.host_dram_B == 960e9
    assert cl.cost_per_hour(c) == pytest.approx(want)


def test_handoff_to_another_gpus_nodes_leaves_the_node_at_the_slower_end():
    # 1 + 1 TP4 instances would share one DGX node over NVLink; a GB200 decode pool is on its
    # own trays: the handoff goes over the NICs, each end's per-GPU share, the slower one's
    same = Cluster(**{**PD, "prefill_instances": 1, "decode_instances": 1})
    link, per_gpu = cl._handoff_link(same, DGX)
    assert link.key == kvmodel.get_gpu("h100-sxm").scale_up_link
    c = Cluster(**{**PD, "prefill_instances": 1, "decode_instances": 1}, decode_gpu="gb200")
    link, per_gpu = cl._handoff_link(c, DGX)
    ndr = get_link("ib-ndr")
    assert link.key == "ib-ndr"
    assert per_gpu == pytest.approx(min(nic_aggregate_Bps(ndr, 8) / 8,
                                        nic_aggregate_Bps(ndr, TRAY.nics) / 4))


def test_rack_pools_count_the_prefill_nodes_of_a_separate_decode_pool(work):
    # one pool per node of the prefill pool (2 DGX nodes), none for the GB200 decode trays
    pool = PoolSpec(servers=1, dram_B=1e12, scope="rack", rack_nodes=1)
    c = Cluster(**PD, decode_gpu="gb200", sharing="central_pool", pool=pool)
    r = kvmodel.evaluate(c, work)
    assert r.sharing["pool_racks"] == 2
    hours = get_calibration()["hardware_amortization"].si
    pools = cl._sharing.pool_cost_per_hour(c, 2, hours)
    assert pools == pytest.approx(2 * cl._sharing.pool_cost_per_hour(c, 1, hours))
    assert r.cost_usd_per_h == pytest.approx(2 * 55.04 + 3 * 42.0 + pools)


def test_search_per_node_capacities_cover_every_node_of_a_wide_instance():
    from kvmodel.search._objectives import _cluster_kwargs
    base = {"model": "deepseek-v3", "gpu": "h100-sxm", "tp": 1, "instances": 2,
            "dram_GB_per_node": 1000.0, "ssd_TB_per_node": 10.0}
    kw, _ = _cluster_kwargs(base | {"attention_dp": True, "ep": 16})
    # 1,000 GB per node on both nodes of an EP16 instance: 2 TB per instance, 1 TB per node
    assert (kw["dram_B"], kw["ssd_B"]) == (2e12, 20e12)
    assert cl._tiers(Cluster(**kw), "dgx-h100", 1)["dram"].capacity_B == 1e12
    kw, _ = _cluster_kwargs(base | {"attention_dp": True, "ep": 4})  # 2 per node: half each
    assert (kw["dram_B"], kw["ssd_B"]) == (500e9, 5e12)


def test_a_wide_decode_pool_spans_its_own_templates_nodes():
    # EP16 prefill instance: 2 DGX nodes; EP16 decode instance on 4-GPU GB200 trays: 4 trays.
    # 2 x 55.04 + 4 x 42.00 = 278.08 $/h (before: 4 DGX nodes, 220.16)
    c = Cluster(**DP16, prefill_instances=1, decode_instances=1, decode_gpu="gb200")
    assert cl.cost_per_hour(c) == pytest.approx(2 * 55.04 + 4 * 42.0)
    assert cl._node_count(c) == 6
    same = Cluster(**DP16, prefill_instances=1, decode_instances=1)
    assert cl.cost_per_hour(same) == pytest.approx(4 * 55.04)
