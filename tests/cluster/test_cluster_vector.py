"""Array-polymorphic cluster.evaluate: element i of a vectorised evaluation equals the scalar
evaluation of configuration i (sharing modes, disaggregation, absent tiers, unstable points,
saturated networks); structural fields must stay scalars; estimate's tier mix takes array
fractions."""

import dataclasses
import math

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import Cluster, P2PSpec, PoolSpec, Workload, evaluate

NUMERIC = ("ttft_s", "ttft_p50_s", "tpot_s", "e2e_s", "ttft_p90_s", "ttft_p99_s", "tpot_p99_s",
           "output_tok_per_s", "served_rate_per_s", "goodput_per_s", "cost_usd_per_h", "cost_usd_per_mtok",
           "per_instance_rate_per_s", "imbalance")
BASE = dict(model="llama-3.1-8b", gpu="h100-sxm", tp=1, precision="fp8")


@pytest.fixture(scope="module")
def workload():
    tr = kvmodel.synthetic_trace(3000, seed=3, rate_per_s=2.0, system_prompt_tokens=4096,
                                 n_system_prompts=4, session_fraction=0.6)
    return Workload(tr, request_rate=2.0, ttft_slo_s=5.0, tpot_slo_s=0.2)


# Latencies come from kvmodel.estimate's step-time root (Illinois, stopped at a residual of
# 1e-7 of the step): an array keeps iterating until its slowest element converges, so an
# element may be a few 1e-8 (at most ~1e-7) more accurate than its scalar evaluation. Every
# other quantity matches to 1e-9.
ROOT_RTOL = 1e-9
RTOL = {k: ROOT_RTOL for k in ("ttft_s", "ttft_p50_s", "tpot_s", "e2e_s", "ttft_p90_s",
                               "ttft_p99_s", "tpot_p99_s", "goodput_per_s", "cost_usd_per_mtok")}


def _close(a, b, rtol=1e-9) -> bool:
    a, b = float(a), float(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + 1e-15


def _random_fields(rng: np.random.Generator, n: int, saturate: bool) -> dict:
    """Per-element values of every vectorised field: about a third of each capacity absent,
    element 0 with no cache at all, element 1 likewise at a high rate; ``saturate``: one thin
    pool/peer NIC and many misses to local tiers, at rates that overload it."""
    def cap(lo, hi):
        v = 10 ** rng.uniform(lo, hi, n)
        return np.where(rng.random(n) < (0.6 if saturate else 0.3), 0.0, v)
    f = dict(
        hbm_cache_fraction=np.where(rng.random(n) < 0.25, 0.0, rng.uniform(0, 0.9, n)),
        dram_B=cap(8, 12), cxl_B=cap(9, 12.5), ssd_B=cap(10, 13.5),
        servers=rng.integers(1, 6, n).astype(float), pool_dram_B=cap(9, 12.5),
        pool_ssd_B=cap(10, 13), nics=rng.integers(1, 4, n).astype(float),
        replication=rng.integers(1, 4, n).astype(float),
        lookup_latency_s=np.where(rng.random(n) < 0.5, 0.0, 10 ** rng.uniform(-6, -3, n)),
        request_rate=10 ** rng.uniform(-1, 2.7, n))  # up to ~500 req/s: many unstable points
    if saturate:
        f.update(servers=np.ones(n), nics=np.ones(n), request_rate=10 ** rng.uniform(0.5, 2.5, n),
                 pool_dram_B=10 ** rng.uniform(11, 12.5, n), hbm_cache_fraction=np.zeros(n))
    for k in ("hbm_cache_fraction", "dram_B", "cxl_B", "ssd_B", "pool_dram_B", "pool_ssd_B"):
        f[k][:2] = 0.0
    f["request_rate"][:2] = (1.0, 300.0)
    return f


def _build(struct: dict, f: dict, w: Workload, i=None):
    """The cluster and workload of element i (None: the whole arrays); ``struct["fixed"]``
    holds scalars replacing some array fields (e.g. dram_B=None, the node's share)."""
    fixed = struct.get("fixed", {})

    def g(k):
        if k in fixed:
            return fixed[k]
        v = f[k]
        return v if i is None else float(v[i])
    pool = PoolSpec(servers=g("servers"), dram_B=g("pool_dram_B"), ssd_B=g("pool_ssd_B"),
                    nics=g("nics"), nic=struct.get("pool_nic", "roce-400g"))
    p2p = P2PSpec(replication=g("replication"), lookup_latency_s=g("lookup_latency_s"))
    kw = {k: v for k, v in struct.items() if k not in ("pool_nic", "fixed")}
    c = Cluster(**BASE, **kw, hbm_cache_fraction=g("hbm_cache_fraction"), dram_B=g("dram_B"),
                cxl_B=g("cxl_B"), ssd_B=g("ssd_B"), pool=pool, p2p=p2p)
    return c, dataclasses.replace(w, request_rate=g("request_rate"))


def _assert_matches(vec, scalars, shape):
    for k in NUMERIC:
        arr = getattr(vec, k)
        assert isinstance(arr, np.ndarray) and arr.shape == shape, k
        assert not np.isnan(arr).any() and (arr >= 0).all(), k
        for i, s in enumerate(scalars):
            assert _close(arr.flat[i], getattr(s, k), RTOL.get(k, 1e-9)), (k, i, arr.flat[i],
                                                                       getattr(s, k))
    assert vec.stable.dtype == bool and vec.stable.shape == shape
    assert vec.reason.dtype == object and vec.reason.shape == shape
    for i, s in enumerate(scalars):
        assert bool(vec.stable.flat[i]) == s.stable and vec.reason.flat[i] == s.reason, i
        for name in ("hit_ratio", "utilisation"):
            vd, sd = getattr(vec, name), getattr(s, name)
            assert set(sd) <= set(vd), (name, sd, vd)
            for k, v in vd.items():
                assert v.shape == shape and not np.isnan(v).any() and (v >= 0).all()
                assert _close(v.flat[i], sd.get(k, 0.0)), (name, k, i, v.flat[i], sd.get(k))
    unstable = ~vec.stable
    assert np.isinf(vec.ttft_s[unstable]).all() and (vec.served_rate_per_s[unstable] == 0).all()
    assert (vec.goodput_per_s[unstable] == 0).all() and (vec.reason[unstable] != "").all()


def _thin(struct: dict) -> bool:
    return "tcp-25g" in struct.values()


STRUCTS = [
    dict(instances=4, sharing="none", routing="round_robin"),
    dict(instances=4, sharing="none", routing="prefix_affinity_bounded"),
    dict(instances=1, sharing="none", routing="random"),
    dict(instances=4, sharing="central_pool", routing="random"),
    dict(instances=2, sharing="central_pool", routing="least_loaded", pool_nic="tcp-25g"),
    dict(instances=4, sharing="p2p", routing="dynamo"),
    dict(instances=4, sharing="p2p", routing="round_robin", nic="tcp-25g"),
    dict(instances=4, sharing="p2p", routing="random", fixed=dict(dram_B=None, ssd_B=None)),
    dict(instances=2, sharing="central_pool", routing="round_robin",
         fixed=dict(request_rate=8.0, servers=2, lookup_latency_s=1e-4)),
    dict(prefill_instances=2, decode_instances=2, sharing="none"),
    dict(prefill_instances=1, decode_instances=3, sharing="central_pool", pool_nic="tcp-25g"),
    dict(prefill_instances=2, decode_instances=1, sharing="p2p", routing="prefix_affinity"),
]


@pytest.mark.parametrize("seed,struct", list(enumerate(STRUCTS)),
                         ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items() if k != "fixed")
                         if isinstance(s, dict) else str(s))
def test_vector_equals_scalar_elementwise(workload, seed, struct):
    rng = np.random.default_rng(seed)
    n = 40
    f = _random_fields(rng, n, saturate=_thin(struct))
    c, w = _build(struct, f, workload)
    vec = evaluate(c, w)
    scalars = [evaluate(*_build(struct, f, workload, i)) for i in range(n)]
    _assert_matches(vec, scalars, (n,))


def test_vector_covers_edge_cases(workload):
    # the random draws above reach every regime this test names
    seen = {"stable": 0, "unstable": 0, "saturated": 0, "no_hits": 0}
    for seed, struct in enumerate(STRUCTS):
        rng = np.random.default_rng(seed)
        f = _random_fields(rng, 40, saturate=_thin(struct))
        r = evaluate(*_build(struct, f, workload))
        seen["stable"] += int(r.stable.sum())
        seen["unstable"] += int((~r.stable).sum())
        saturated = np.char.startswith(r.reason.astype(str), "network saturated")
        seen["saturated"] += int(saturated.sum())
        seen["no_hits"] += int((sum(r.hit_ratio.values()) == 0).sum())
    assert all(v > 0 for v in seen.values()), seen


def test_broadcast_shapes_and_scalar_types(workload):
    dram = np.array([[0.0, 1e10, 1e11, 1e12]])            # (1, 4)
    rate = np.array([[0.5], [2.0], [400.0]])                # (3, 1)
    c = Cluster(**BASE, instances=4, sharing="p2p", dram_B=dram)
    r = evaluate(c, dataclasses.replace(workload, request_rate=rate))
    assert r.ttft_s.shape == r.hit_ratio["peer"].shape == r.stable.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            s = evaluate(dataclasses.replace(c, dram_B=float(dram[0, j])),
                         dataclasses.replace(workload, request_rate=float(rate[i, 0])))
            assert _close(r.ttft_s[i, j], s.ttft_s, ROOT_RTOL) and r.reason[i, j] == s.reason
    s = evaluate(Cluster(**BASE, instances=4, sharing="p2p", dram_B=1e10), workload)
    assert type(s.ttft_s) is float and type(s.ttft_p50_s) is float and type(s.stable) is bool
    assert type(s.reason) is str and all(type(v) is float for v in s.hit_ratio.values())
    assert s.ttft_p50_s <= s.ttft_p90_s <= s.ttft_p99_s
    # vector results hold every level of the sharing mode, zeros where the scalar has none
    no_dram = evaluate(Cluster(**BASE, instances=4, sharing="p2p", dram_B=0.0),
                       dataclasses.replace(workload, request_rate=np.array([1.0, 2.0])))
    assert (no_dram.hit_ratio["peer"] == 0).all()
    assert (no_dram.utilisation["peer_nic_hottest"] == 0).all()
    assert "peer" not in evaluate(Cluster(**BASE, instances=4, sharing="p2p", dram_B=0.0),
                                  workload).hit_ratio
    # 0-d arrays and lists are accepted; 0-d evaluates as a scalar
    z = evaluate(Cluster(**BASE, instances=4, sharing="p2p", dram_B=np.array(1e10)), workload)
    assert z.ttft_s == s.ttft_s
    lst = evaluate(Cluster(**BASE, instances=4, sharing="p2p", dram_B=[1e10, 1e11]), workload)
    assert lst.ttft_s.shape == (2,) and _close(lst.ttft_s[0], s.ttft_s, ROOT_RTOL)


@pytest.mark.parametrize("where,field", [
    ("cluster", "instances"), ("cluster", "tp"), ("cluster", "epsilon"), ("cluster", "sharing"),
    ("cluster", "prefill_instances"), ("pool", "nic"), ("p2p", "placement"),
    ("workload", "ttft_slo_s"),
])
def test_structural_arrays_rejected(workload, where, field):
    c, w = Cluster(**BASE, instances=2), workload
    bad = np.array([1, 2]) if field not in ("sharing", "nic", "placement") else np.array(["a", "b"])
    if where == "cluster":
        c = dataclasses.replace(c, **{field: bad})
    elif where == "pool":
        c = dataclasses.replace(c, pool=dataclasses.replace(c.pool, **{field: bad}))
    elif where == "p2p":
        c = dataclasses.replace(c, p2p=dataclasses.replace(c.p2p, **{field: bad}))
    else:
        w = dataclasses.replace(w, **{field: bad})
    with pytest.raises(ValueError, match=rf"{field} must be a scalar"):
        evaluate(c, w)


def test_bad_array_values_rejected(workload):
    with pytest.raises(ValueError, match=r"hbm_cache_fraction=1\.5 \(element 1"):
        evaluate(Cluster(**BASE, hbm_cache_fraction=np.array([0.1, 1.5])), workload)
    with pytest.raises(ValueError, match="dram_B=.*must be a finite number"):
        evaluate(Cluster(**BASE, dram_B=np.array([1e9, np.nan])), workload)
    with pytest.raises(ValueError, match="pool: servers"):
        evaluate(Cluster(**BASE, pool=PoolSpec(servers=np.array([1, 0]))), workload)
    with pytest.raises(ValueError, match="do not broadcast"):
        evaluate(Cluster(**BASE, dram_B=np.ones(3) * 1e9, cxl_B=np.ones(2) * 1e9), workload)


KW = dict(model="llama-3.1-8b", gpu="h100-sxm", tp=1, precision="fp8", input_len=8192,
          output_len=128, node="dgx-h100")


def test_estimate_tier_mix_takes_array_fractions():
    f = np.array([0.0, 0.25, 0.5, 1.0])
    P = np.array([4096.0, 4096.0, 0.0, 8000.0])
    mix = kvmodel.estimate(**KW, request_rate=1.0, cached_prefix_len=P,
                           cache_tier=[("dram", f), ("ssd", 1.0 - f)])
    for i in range(4):
        parts = [(t, float(x)) for t, x in (("dram", f[i]), ("ssd", 1.0 - f[i])) if x > 0]
        one = kvmodel.estimate(**KW, request_rate=1.0, cached_prefix_len=float(P[i]),
                               cache_tier=parts)
        for k in ("ttft_s", "tpot_s", "ttft_p99_s", "saturation_request_rate_per_s"):
            assert _close(getattr(mix, k)[i], getattr(one, k), ROOT_RTOL), (k, i)
    # a zero prefix inside an array behaves like no prefix at all
    none = kvmodel.estimate(**KW, request_rate=1.0)
    for k in ("ttft_s", "tpot_s", "e2e_s", "ttft_p50_s", "ttft_p99_s", "saturation_request_rate_per_s"):
        assert _close(getattr(mix, k)[2], getattr(none, k), ROOT_RTOL), k
    with pytest.raises(ValueError, match="cache_tier fractions must be >= 0 and sum to 1"):
        kvmodel.estimate(**KW, cached_prefix_len=4096, cache_tier=[("dram", f), ("ssd", 0.5)])
    with pytest.raises(ValueError, match="cache_tier fractions"):
        kvmodel.estimate(**KW, cached_prefix_len=4096,
                         cache_tier=[("dram", np.array([1.5, 0.5])),
                                     ("ssd", np.array([-0.5, 0.5]))])
