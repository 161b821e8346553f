"""DP attention with wide expert parallelism and speculative decoding as Cluster fields: every
instance is the instance model's estimate with the same arguments, nodes are counted whole,
and malformed settings are errors naming the field."""

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload, estimate, get_node
from kvmodel.cluster import gpus_per_instance, load_cluster_config
from kvmodel.cluster._classes import trace_bands, with_lengths


@pytest.fixture(scope="module")
def work():
    return Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=2.0)


def _no_cache(**kw):
    """No prefix cache anywhere: every request is a miss, so each instance sees exactly the
    trace's prompt-length bands at its share of the rate (round robin: imbalance 1)."""
    return Cluster(**{"routing": "round_robin", "hbm_cache_fraction": 0.0, "dram_B": 0.0,
                      "ssd_B": 0.0, "precision": "fp8", **kw})


def _direct(c, w, **kw):
    """The instance estimate the cluster should build, called by hand (round robin: each
    instance takes every N-th Poisson arrival, Erlang-N, inter-arrival CV 1/sqrt(N); the
    trace's output-length law for the TPOT percentiles)."""
    I, O = round(w.input_len), round(w.output_len)
    kw.setdefault("arrival_cv", (1.0 / c.instances) ** 0.5)
    # round robin is length-blind: it steers no prompt work (the router-dependent TPOT law)
    kw.setdefault("work_smoothing", 0.0 if c.instances > 1 else None)
    bands = trace_bands(w.trace.input_len, output_len=w.trace.output_len)  # each band's output
    classes = with_lengths([(1.0, 0, "hbm")], bands, w.input_len, O=O)
    return estimate(c.model, c.gpu, tp=c.tp, precision=c.precision, input_len=I, output_len=O,
                    request_rate=w.rate / c.instances, framework=c.framework,
                    prefix_classes=classes, length_cv=0.0, output_law=w.output_law, **kw)


def test_deepseek_v3_dp16_ep16_cluster_equals_the_instance_estimate(work):
    c = _no_cache(model="deepseek-v3", gpu="h100-sxm", instances=2, tp=1, attention_dp=True,
                  ep=16)
    r = kvmodel.evaluate(c, work)
    assert r.stable, r.reason
    e = r.instances["instance"]
    want = _direct(c, work, attention_dp=True, ep=16, num_gpus=16, node="dgx-h100")
    for f in ("ttft_s", "ttft_p99_s", "tpot_s", "tpot_p99_s", "saturation_request_rate_per_s",
              "kv_capacity_tokens", "weights_B_per_gpu"):
        assert getattr(e, f) == getattr(want, f), f
    assert e.wide_ep["alltoall_s"] == want.wide_ep["alltoall_s"] > 0
    assert e.inputs["num_gpus"] == 16 and e.inputs["ep"] == 16
    # the cluster's own figures are the instance's (no sharing, no cache: no extra delay)
    assert (r.tpot_s, r.ttft_s) == (e.tpot_s, e.ttft_s)
    # each EP16 group spans two 8-GPU nodes: 2 instances on 4 nodes
    assert gpus_per_instance(c) == 16
    node = get_node("dgx-h100")
    assert r.cost_usd_per_h == pytest.approx(4 * node.price_per_s * 3600.0)


def test_dp_attention_capacity_counts_every_rank(work):
    # EP8 of attention TP2: 4 ranks, each its own KV pool; the prefix cache is their sum
    c = Cluster(model="deepseek-v3", gpu="h200-sxm", instances=1, tp=2, attention_dp=True,
                ep=8, precision="fp8", dram_B=0.0, ssd_B=0.0)
    per_rank = estimate("deepseek-v3", "h200-sxm", tp=2, ep=8, num_gpus=8, attention_dp=True,
                        precision="fp8", input_len=round(work.input_len),
                        output_len=round(work.output_len), node="dgx-h200").kv_capacity_tokens
    from kvmodel.cluster import _instance_kv_tokens
    assert _instance_kv_tokens(c, work) == 4 * per_rank


def test_speculative_cluster_equals_the_instance_estimate(work):
    spec = {"method": "mtp", "k": 2}
    c = _no_cache(model="deepseek-v3", gpu="h200-sxm", instances=2, tp=8, speculative=spec)
    r = kvmodel.evaluate(c, work)
    e, want = r.instances["instance"], _direct(c, work, speculative=spec)
    assert e.tpot_s == want.tpot_s and e.ttft_s == want.ttft_s
    assert e.speculative["tpot_factor"] == want.speculative["tpot_factor"] < 1.0
    plain = kvmodel.evaluate(_no_cache(model="deepseek-v3", gpu="h200-sxm", instances=2, tp=8),
                             work)
    assert r.tpot_s < plain.tpot_s  # MTP at the published acceptance shortens TPOT
    assert np.ndim(r.stable) == 0


def test_pd_decode_pool_gets_dp_attention_and_speculation(work, monkeypatch):
    import kvmodel.cluster as cl
    calls, real = [], cl.estimate
    monkeypatch.setattr(cl, "estimate", lambda *a, **k: calls.append(k) or real(*a, **k))
    c = Cluster(model="deepseek-v3", gpu="h200-sxm", tp=1, attention_dp=True, ep=8,
                prefill_instances=1, decode_instances=1, precision="fp8",
                speculative={"method": "mtp", "k": 1})
    kvmodel.evaluate(c, work)
    for k in calls[-2:]:
        assert (k["attention_dp"], k["ep"], k["num_gpus"]) == (True, 8, 8)
        assert k["speculative"] == {"method": "mtp", "k": 1}


def test_plain_clusters_pass_nothing_new(work, monkeypatch):
    import kvmodel.cluster as cl
    calls, real = [], cl.estimate
    monkeypatch.setattr(cl, "estimate", lambda *a, **k: calls.append(k) or real(*a, **k))
    kvmodel.evaluate(Cluster(model="llama-3.1-8b", gpu="h100-sxm", instances=2, tp=1), work)
    assert not {"attention_dp", "ep", "num_gpus", "speculative", "node"} & set(calls[-1])


@pytest.mark.parametrize("kw, match", [
    (dict(model="llama-3.1-8b", attention_dp=True, ep=8), "MoE model.*dense"),
    (dict(model="llama-3.1-8b", ep=2), "MoE model.*dense"),
    (dict(model="deepseek-v3", tp=8, attention_dp=True, ep=12), "multiple of tp=8"),
    (dict(model="deepseek-v3", tp=8, ep=16), "must divide tp=8"),
    (dict(model="deepseek-v3", attention_dp="yes"), "attention_dp='yes'"),
    (dict(model="llama-3.1-8b", attention_dp=np.bool_(True)), "MoE model.*dense"),
    (dict(model="deepseek-v3", attention_dp={"dispatch": "int3"}), "dispatch"),
    (dict(model="deepseek-v3", ep=0), "Cluster.ep=0"),
    (dict(model="deepseek-v3", ep=np.array([8, 16])), "Cluster.ep"),
    (dict(model="deepseek-v3", speculative={"method": "eagle"}), "Cluster.speculative.*eagle"),
    (dict(model="deepseek-v3", speculative={"method": "draft", "k": 2}), "Cluster.speculative"),
    (dict(model="deepseek-v3", speculative={"k": 99}), "Cluster.speculative"),
])
def test_malformed_parallel_fields_name_the_field(work, kw, match):
    c = Cluster(**{"gpu": "h200-sxm", "instances": 1, "tp": 8, "precision": "fp8", **kw})
    with pytest.raises(ValueError, match=match):
        kvmodel.evaluate(c, work)


def test_cluster_file_takes_the_parallel_fields(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[cluster]\nmodel = "deepseek-v3"\ngpu = "h200-sxm"\ntp = 1\n'
                 'attention_dp = true\nep = 16\n[cluster.speculative]\nmethod = "mtp"\nk = 2\n')
    c, _ = load_cluster_config(p)
    assert (c.attention_dp, c.ep, c.speculative) == (True, 16, {"method": "mtp", "k": 2})
    assert gpus_per_instance(c) == 16
    p.write_text('[cluster]\nmodel = "llama-3.1-8b"\ngpu = "h100-sxm"\nattention_dp = true\n')
    with pytest.raises(ValueError, match="MoE"):
        load_cluster_config(p)


def test_vectorised_evaluation_equals_each_scalar_one(work):
    import dataclasses
    c = Cluster(model="deepseek-v3", gpu="h200-sxm", instances=2, tp=1, attention_dp=True,
                ep=8, precision="fp8", speculative={"method": "mtp", "k": 2},
                hbm_cache_fraction=np.array([0.05, 0.4]))
    r = kvmodel.evaluate(c, work)
    for i, f in enumerate((0.05, 0.4)):
        one = kvmodel.evaluate(dataclasses.replace(c, hbm_cache_fraction=f), work)
        for name in ("ttft_s", "ttft_p99_s", "tpot_s", "served_rate_per_s", "cost_usd_per_h"):
            assert getattr(r, name)[i] == pytest.approx(getattr(one, name), rel=1e-9), name


def test_load_aware_router_levels_are_the_dp_instance(work):
    # a load-aware router's level loads come from the same instance the cluster evaluates:
    # its saturation rate is the DP16/EP16 estimate's, not a plain TP1 instance's
    from kvmodel.cluster._routing_load import level_loads
    c = _no_cache(model="deepseek-v3", gpu="h100-sxm", instances=2, tp=1, attention_dp=True,
                  ep=16, routing="least_loaded")
    sat, _ = level_loads(c, work, 2)
    want = estimate("deepseek-v3", "h100-sxm", tp=1, precision="fp8", attention_dp=True, ep=16,
                    num_gpus=16, node="dgx-h100", input_len=round(work.input_len),
                    output_len=round(work.output_len), request_rate=1e-6)
    assert sat == pytest.approx(float(want.saturation_request_rate_per_s), rel=1e-12)
    spec = _no_cache(model="deepseek-v3", gpu="h100-sxm", instances=2, tp=1, attention_dp=True,
                     ep=16, routing="least_loaded", speculative={"method": "mtp", "k": 2})
    assert level_loads(spec, work, 2)[0] != sat  # the speculative instance is another key
