"""DP-attention clusters whose EP group spans nodes: the central pool's racks and the per-node
tier traffic count nodes (an EP16 instance is two 8-GPU nodes), a P/D decode pool on another
GPU gets its own node template, and ``Cluster.nic`` reaches the wide-EP all-to-all."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, PoolSpec, Workload, estimate, get_node
from kvmodel.cluster import _instance_kv_tokens, _sharing, parallel_kw, tier_traffic
from kvmodel.workload import placement


@pytest.fixture(scope="module")
def work():
    return Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=2.0)


DP16 = dict(model="deepseek-v3", gpu="h100-sxm", tp=1, attention_dp=True, ep=16,
            precision="fp8")


def test_rack_pools_count_the_nodes_of_wide_instances(work, monkeypatch):
    # 2 instances of EP16 on 8-GPU nodes: 4 nodes, two racks of 2 nodes
    seen = []
    real = _sharing.pool_racks
    monkeypatch.setattr(_sharing, "pool_racks", lambda c, nodes: seen.append(nodes) or real(c, nodes))
    c = Cluster(**DP16, instances=2, sharing="central_pool", hbm_cache_fraction=0.0, dram_B=0.0,
                ssd_B=0.0, pool=PoolSpec(servers=1, dram_B=1e12, scope="rack", rack_nodes=2))
    kvmodel.evaluate(c, work)
    assert seen and set(seen) == {4}
    assert real(c, 4) == 2


def test_tier_traffic_is_per_node_for_wide_instances(work, monkeypatch):
    seen = {}
    real = placement.place

    def spy(profile, chain, **kw):
        seen.update(chain=chain, **kw)
        return real(profile, chain, **kw)
    monkeypatch.setattr(placement, "place", spy)
    c = Cluster(**DP16, instances=2, hbm_cache_fraction=0.5)
    tier_traffic(c, work)
    blocks = float(np.mean(work.trace.blocks_per_request))
    assert seen["block_rate"] == pytest.approx(work.rate * blocks / 4)  # 4 nodes, not 2
    m = kvmodel.get_model("deepseek-v3")
    hbm = 0.5 * _instance_kv_tokens(c, work) * m.kv_bytes_per_token("fp8")
    assert seen["chain"][0].capacity_B == pytest.approx(hbm / 2)


def test_plain_tp_tier_traffic_keeps_one_node_per_instance_group(work, monkeypatch):
    seen = {}
    real = placement.place
    monkeypatch.setattr(placement, "place",
                        lambda profile, chain, **kw: seen.update(kw) or real(profile, chain, **kw))
    c = Cluster(model="llama-3.1-70b", gpu="h100-sxm", tp=4, instances=4, precision="fp8")
    tier_traffic(c, work)
    blocks = float(np.mean(work.trace.blocks_per_request))
    assert seen["block_rate"] == pytest.approx(work.rate * blocks / 2)  # 2 per 8-GPU node


def test_dp_decode_pool_on_another_gpu_gets_its_node(work):
    c = Cluster(**DP16, prefill_instances=1, decode_instances=1, decode_gpu="gb200",
                hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0, routing="round_robin")
    assert parallel_kw(c)["node"] == "dgx-h100"
    assert parallel_kw(c, "gb200")["node"] == "gb200-nvl72-tray"
    d = kvmodel.evaluate(c, work).instances["decode"]
    # 4 GPUs per GB200 tray: 12 of 16 EP destinations leave the node (8 with dgx-h100's 8)
    assert d.wide_ep["gpus_per_node"] == 4.0
    I, O = round(work.input_len), round(work.output_len)
    want = estimate("deepseek-v3", "gb200", tp=1, precision="fp8", input_len=I, output_len=O,
                    request_rate=work.rate, framework=c.framework,
                    prefix_classes=[(1.0, I - 1, "hbm")], attention_dp=True, ep=16,
                    num_gpus=16, node="gb200-nvl72-tray")
    assert d.tpot_s == want.tpot_s and d.wide_ep["alltoall_s"] == want.wide_ep["alltoall_s"]


def test_cluster_nic_reaches_the_wide_ep_alltoall(work):
    base = dict(DP16, instances=1, hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0)
    ndr = kvmodel.evaluate(Cluster(**base), work).instances["instance"]
    hdr = kvmodel.evaluate(Cluster(**base, nic="ib-hdr"), work).instances["instance"]
    # half the NIC bandwidth (200 vs 400 Gb/s): the inter-node all-to-all part per byte doubles
    # (but for the links' latencies); before, Cluster.nic left the template's 400 Gb/s NICs in
    # place. Per byte: the slower steps gather more prompts, so the busy step carries more tokens
    def per_byte(r):
        return r.wide_ep["network_s"] / r.wide_ep["alltoall_B_per_gpu"]
    assert per_byte(hdr) == pytest.approx(2 * per_byte(ndr), rel=0.01)
    assert hdr.tpot_s > ndr.tpot_s
    node = dataclasses.replace(get_node("dgx-h100"), nic_link="ib-hdr")
    kw = parallel_kw(Cluster(**base, nic="ib-hdr"))
    assert kw["node"] == node
    # the same NIC link as the node template's: the node key as before (bit-identical)
    assert parallel_kw(Cluster(**base))["node"] == "dgx-h100"
