"""Cluster model: sharing identities, network saturation, monotonicity, config files."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel.cli import main
from kvmodel.cluster import Cluster, P2PSpec, PoolSpec, Workload, evaluate, load_cluster_config


@pytest.fixture(scope="module")
def workload():
    tr = kvmodel.synthetic_trace(3000, seed=3, rate_per_s=2.0, system_prompt_tokens=4096,
                                 n_system_prompts=4, session_fraction=0.6)
    return Workload(tr, request_rate=2.0, ttft_slo_s=5.0, tpot_slo_s=0.2)


BASE = dict(model="llama-3.1-8b", gpu="h100-sxm", instances=4, tp=1, precision="fp8")


def test_every_sharing_and_routing_evaluates(workload):
    for sharing in ("none", "central_pool", "p2p"):
        for routing in ("random", "round_robin", "least_loaded", "prefix_affinity",
                        "prefix_affinity_bounded", "dynamo", "llmd", "sglang", "mooncake"):
            r = evaluate(Cluster(**BASE, sharing=sharing, routing=routing), workload)
            assert r.stable, (sharing, routing, r.reason)
            assert np.isfinite([r.ttft_s, r.tpot_s, r.e2e_s]).all()
            assert 0 <= sum(r.hit_ratio.values()) <= 1
            assert r.goodput_per_s <= r.served_rate_per_s + 1e-12
            assert r.cost_usd_per_h > 0 and r.cost_usd_per_mtok > 0


def test_p2p_unreplicated_equals_one_pooled_cache(workload):
    # no local caching, pool capacity = sum of the peers' DRAM: same total hit ratio
    dram = 50e9
    p2p = Cluster(**BASE, sharing="p2p", hbm_cache_fraction=0.0, dram_B=dram, ssd_B=0.0,
                  p2p=P2PSpec(replication=1, lookup_latency_s=0.0))
    pool = Cluster(**BASE, sharing="central_pool", hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0,
                   pool=PoolSpec(servers=1, dram_B=4 * dram, nic="roce-800g", nics=64))
    a, b = evaluate(p2p, workload), evaluate(pool, workload)
    assert sum(a.hit_ratio.values()) == pytest.approx(sum(b.hit_ratio.values()), abs=1e-9)
    assert a.ttft_s == pytest.approx(b.ttft_s, rel=0.02)


def test_saturated_pool_nic_caps_throughput(workload):
    tiny = Cluster(**BASE, sharing="central_pool", hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0,
                   pool=PoolSpec(servers=1, nics=1, nic="tcp-25g", dram_B=1e12))
    r = evaluate(tiny, dataclasses.replace(workload, request_rate=40.0))
    assert not r.stable and "network saturated" in r.reason and r.served_rate_per_s == 0
    assert r.utilisation["pool_nic"] >= 1


def test_more_nic_bandwidth_never_raises_ttft(workload):
    ttft = []
    for nic in ("roce-100g", "roce-200g", "roce-400g", "roce-800g"):
        c = Cluster(**BASE, sharing="central_pool", hbm_cache_fraction=0.0, dram_B=0.0,
                    ssd_B=0.0, nic=nic, pool=PoolSpec(servers=1, nics=1, nic=nic))
        ttft.append(evaluate(c, workload).ttft_s)
    assert all(b <= a + 1e-12 for a, b in zip(ttft, ttft[1:]))


def test_more_instances_never_lower_capacity(workload):
    rates = [0.5, 1, 2, 4, 8, 16]
    def capacity(n):
        return max([r for r in rates if evaluate(Cluster(**{**BASE, "instances": n}),
                                                 dataclasses.replace(workload, request_rate=r)).stable],
                   default=0)
    caps = [capacity(n) for n in (1, 2, 4)]
    assert caps == sorted(caps)


def test_disaggregated_pools(workload):
    c = Cluster(model="llama-3.1-8b", gpu="h100-sxm", tp=1, precision="fp8", prefill_instances=2,
                decode_instances=2)
    r = evaluate(c, workload)
    assert r.stable and r.ttft_s > 0 and r.tpot_s > 0
    assert r.instances["kv_transfer_s"] > 0


@pytest.mark.parametrize("text,match", [
    ("[cluster]\nmodel='llama-3.1-8b'\ngpu='h100-sxm'\nsharing='mesh'\n", "sharing='mesh'"),
    ("[cluster]\nmodel='llama-3.1-8b'\ngpu='h100-sxm'\ninstancez=3\n", r"unknown key\(s\) \['instancez'\]"),
    ("[cluster]\nmodel='llama-3.1-8b'\ngpu='h100-sxm'\ntp='eight'\n", r"\[cluster\].tp: expected int"),
    ("[cluster]\ngpu='h100-sxm'\n", r"\[cluster\].model: missing"),
    ("[cluster]\nmodel='llama-3.1-8b'\ngpu='h100-sxm'\n[cluster.pool]\nservers=0\n", "servers"),
    ("[clusters]\n", "needs a \\[cluster\\] table"),
])
def test_bad_cluster_files(tmp_path, text, match):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_cluster_config(p)


def test_cli_cluster(tmp_path, capsys):
    tr = tmp_path / "t.jsonl"
    tr.write_text("\n".join('{"timestamp": %d, "input_length": 1024, "output_length": 64, '
                            '"hash_ids": [0, %d]}' % (i * 500, i % 7 + 1) for i in range(200)))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[cluster]\nmodel='llama-3.1-8b'\ngpu='h100-sxm'\ninstances=2\ntp=1\n"
                   "sharing='p2p'\ndram_GB=100\n[cluster.p2p]\nlookup_latency_us=50\n"
                   "[workload]\ntrace='t.jsonl'\nrequest_rate=1.0\n")
    assert main(["cluster", "--config", str(cfg)]) == 0
    assert "hit ratio by tier" in capsys.readouterr().out
    assert main(["cluster", "--config", str(cfg), "--json"]) == 0
    assert '"goodput_per_s"' in capsys.readouterr().out


def test_more_pool_hits_never_raise_ttft(workload):
    # regression: chunked prefill time must account for the cached context consistently
    ttft = []
    for gb in (5, 20, 80, 320):
        c = Cluster(**BASE, sharing="central_pool", hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0,
                    pool=PoolSpec(servers=2, dram_B=gb * 1e9, nic="roce-400g", nics=8))
        ttft.append(evaluate(c, workload).ttft_s)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(ttft, ttft[1:]))


def test_capacity_cache_sees_hardware_changes(tmp_path, toy_gpu):
    """The per-instance KV capacity is memoised per catalog: redefining the GPU
    (load_hardware) changes it."""
    from conftest import TOY_GPU

    from kvmodel import cluster
    args = ("llama-3.1-8b", "toy", 1, "bf16", 1024, 128, "tensorrt-llm")
    small = cluster.kv_capacity_tokens(*args)
    assert cluster.kv_capacity_tokens(*args) == small
    p = tmp_path / "bigger.toml"
    p.write_text(TOY_GPU.replace("value = 100, unit = \"GB\"", "value = 200, unit = \"GB\""))
    kvmodel.load_hardware(p)
    assert cluster.kv_capacity_tokens(*args) > 1.5 * small


@pytest.mark.parametrize("eviction", ["lru", "fifo", "lfu", "s3fifo", "arc", "lru-admit-reuse"])
def test_eviction_policy_sets_the_hit_ratio(workload, eviction):
    """One instance, DRAM as the only cache tier: its hit ratio is the policy's curve at the
    DRAM capacity (LRU: the analytic curve; others: the exact replay, interpolated)."""
    tr = workload.trace
    block_B = tr.block_tokens * kvmodel.get_model("llama-3.1-8b").kv_bytes_per_token("fp8")
    for blocks in (300, 3000):
        c = Cluster(**(BASE | dict(instances=1)), hbm_cache_fraction=0.0, dram_B=blocks * block_B,
                    ssd_B=0.0, eviction=eviction)
        hit = evaluate(c, workload).hit_ratio["dram"]
        method = "analytic" if eviction == "lru" else "exact"
        ref = kvmodel.hit_ratio_curve(tr, [blocks], method=method, eviction=eviction)[0]
        # interpolation between replayed capacities: <= 0.05 on this short synthetic trace
        # (<= 0.003 on the Mooncake trace, benchmarks/policy_curve.py)
        assert hit == pytest.approx(ref, abs=0 if eviction == "lru" else 0.05)
    with pytest.raises(ValueError, match="eviction='mru'"):
        evaluate(Cluster(**BASE, eviction="mru"), workload)


def test_tier_traffic_reports_reads_writes_and_fit_per_tier(workload):
    from kvmodel.cluster import tier_traffic, tier_utilisation
    c = Cluster(**BASE, dram_B=2e11, ssd_B=4e12)
    rows = tier_traffic(c, workload)
    assert [r["tier"] for r in rows] == ["hbm", "dram", "ssd"]
    assert all(r["read_Bps"] >= 0 and r["write_Bps"] >= 0 for r in rows)
    assert rows[1]["write_Bps"] > 0 and rows[1]["sustainable"]
    assert max(r["utilisation"] for r in rows) == pytest.approx(
        tier_utilisation(c, workload, "through", True))
    half = tier_traffic(c, workload, admit=0.5)
    assert half[2]["write_Bps"] == pytest.approx(rows[2]["write_Bps"] / 2)
