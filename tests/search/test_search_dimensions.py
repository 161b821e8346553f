"""Search dimensions of the routers' own parameters and of the pool's put admission; the
closed-loop / burst / session workload options of a space (kvmodel/search)."""

from __future__ import annotations

import optuna
import pytest

from kvmodel import search
from kvmodel.policies import ROUTING
from kvmodel.search._objectives import _cluster_kwargs, workload_for
from kvmodel.search._space import LOAD_MODES, ROUTING_PARAM_DIMS

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = "routers-pool-puts"


def _space(dims: dict, fixed: dict | None = None, workload: dict | None = None, **top) -> dict:
    base = search.load_space(SPACE)
    return {"fixed": dict(base.fixed) | (fixed or {}), "dims": dims,
            "workload": dict(base.workload) | (workload or {}), **top}


# ---- routing parameters --------------------------------------------------------------------
def test_every_numeric_routing_parameter_is_a_dimension_with_the_registry_range():
    for router, entry in ROUTING.items():
        for p in entry.params:
            name = f"{router}_{p.name}"
            if p.kind in (int, float) and p.name not in ("seed", "epsilon"):
                assert ROUTING_PARAM_DIMS[name] == (router, p)
                info = search.DIMENSIONS[name]
                assert info.kind is p.kind and router in info.maps_to and info.modelled
                lo, hi = search._space.BOUNDS[name]
                assert p.ok(lo) and p.ok(hi), name     # the bounds are values the policy takes
            else:
                assert name not in search.DIMENSIONS
    assert {"dynamo_overlap_score_weight", "llmd_prefix_weight", "sglang_cache_threshold",
            "sglang_balance_abs_threshold"} <= set(ROUTING_PARAM_DIMS)


def test_a_routing_parameter_must_be_conditional_on_its_router():
    dim = {"range": [0.0, 2.0], "step": 0.5}
    routing = {"routing": {"choices": ["round_robin", "dynamo"]}}
    with pytest.raises(search.SpaceError, match="dynamo_overlap_score_weight.*when"):
        search.load_space(_space(routing | {"dynamo_overlap_score_weight": dim}))
    with pytest.raises(search.SpaceError, match="dynamo_overlap_score_weight"):
        search.load_space(_space(routing | {"dynamo_overlap_score_weight":
                                            dim | {"when": {"routing": "round_robin"}}}))
    with pytest.raises(search.SpaceError, match=r"\[fixed\].llmd_prefix_weight"):
        search.load_space(_space({}, fixed={"llmd_prefix_weight": 1.0}))
    ok = search.load_space(_space({"dynamo_overlap_score_weight": dim},
                                  fixed={"routing": "dynamo"}))       # routing fixed to it
    assert ok.dim("dynamo_overlap_score_weight").when == ()


def test_a_routing_parameter_reaches_the_cluster_only_under_its_router():
    s = search.load_space(SPACE)
    p = dict(s.fixed) | {"routing": "dynamo", "dynamo_overlap_score_weight": 0.5,
                         "llmd_prefix_weight": 1.0}
    assert _cluster_kwargs(p)[0]["routing_params"] == {"overlap_score_weight": 0.5}
    assert "routing_params" not in _cluster_kwargs(p | {"routing": "round_robin"})[0]
    # the router's own closed form replays it: the parameter changes the evaluation
    m = {w: search.evaluate_point(s, {"routing": "dynamo", "dynamo_overlap_score_weight": w})
         .metrics for w in (0.0, 2.0)}
    # overlap weight 0: load only, the prefix is not followed and the pool serves what the
    # instance's own HBM would (0.31 vs 0.67 from HBM on this trace)
    assert m[2.0]["hit_hbm"] > m[0.0]["hit_hbm"] + 0.2


def test_a_study_samples_a_router_parameter_only_when_that_router_is_chosen():
    st = search.run(SPACE, n_trials=30, storage=optuna.storages.InMemoryStorage(),
                    sampler="random", seed=3)
    seen = set()
    for t in st.trials:
        for name, (router, _) in ROUTING_PARAM_DIMS.items():
            assert (name in t.params) == (t.params["routing"] == router and name in
                                          {d.name for d in search.load_space(SPACE).dims}), name
        seen |= {n for n in t.params if n in ROUTING_PARAM_DIMS}
        policy = t.params["pool_put_policy"]
        assert ("pool_put_admission" in t.params) == (policy == "fraction")
        assert ("pool_put_queue_limit" in t.params) == (policy == "throttle")
    assert len(seen) >= 3 and sum(search.is_feasible(t) for t in st.trials) > 0


# ---- pool put admission --------------------------------------------------------------------
def test_pool_put_dimensions_map_to_the_pool_spec():
    s = search.load_space(SPACE)
    p = dict(s.fixed) | {"pool_put_policy": "throttle", "pool_put_queue_limit": 4,
                         "pool_put_admission": 0.3}
    pool = _cluster_kwargs(p)[0]["pool"]
    assert (pool.put_policy, pool.put_queue_limit, pool.put_admission) == ("throttle", 4, 0.3)
    with pytest.raises(search.SpaceError, match="pool_put_policy.*'drop'"):
        search.load_space(_space({"pool_put_policy": {"choices": ["all", "drop"]}}))
    with pytest.raises(search.SpaceError, match="pool_put_admission"):
        search.load_space(_space({"pool_put_admission": {"range": [0.0, 1.0]}}))


def test_throttling_a_saturated_put_path_makes_it_feasible():
    # gpt-j-6b (448 KiB of KV a token) into one pool server whose single drive writes 10 GB/s
    fixed = {"model": "gpt-j-6b", "precision": "bf16", "dram_GB_per_node": 0.0,
             "ssd_TB_per_node": 0.0, "pool_servers": 1, "pool_ssd_TB": 3.84,
             "pool_nic": "roce-400g", "pool_dram_GB": 1024.0, "routing": "round_robin"}
    s = search.load_space(_space({}, fixed=fixed, workload={"request_rate": 30.0}))
    full = search.evaluate_point(s, {"pool_put_policy": "all"})
    thr = search.evaluate_point(s, {"pool_put_policy": "throttle", "pool_put_queue_limit": 8})
    assert not full.metrics["stable"] and "pool_ssd_write" in full.reason
    assert thr.metrics["stable"] and 0 < thr.metrics["hit_pool"] < full.metrics["hit_pool"]
    assert thr.values[0] > full.values[0] == 0.0


# ---- workload modes: options of the space, not dimensions ----------------------------------
def test_load_modes_are_workload_options_never_dimensions():
    for k in LOAD_MODES:
        assert k not in search.DIMENSIONS
        with pytest.raises(search.SpaceError, match=f"unknown dimension '{k}'"):
            search.load_space(_space({k: {"choices": [1, 2]}}))
    wl = {"concurrency": 64, "think_time_s": 1.0, "session_mode": "closed"}
    base = dict(search.load_space(SPACE).workload)
    base.pop("request_rate")
    s = search.load_space(_space({}) | {"workload": base | wl,
                                        "objective": {"metrics": ["goodput_per_dollar"]}})
    w = workload_for(s)
    assert (w.concurrency, w.think_time_s, w.session_mode) == (64, 1.0, "closed")
    assert workload_for(search.load_space(SPACE)).concurrency is None   # cached per options


def test_load_mode_options_are_checked():
    base = dict(search.load_space(SPACE).workload)
    bad = [({"concurrency": 8}, "request_rate"),
           ({"concurrency": 0}, "concurrency"),
           ({"burst": 4, "concurrency": 4, "request_rate": None}, "at most one"),
           ({"session_mode": "batch"}, "session_mode")]
    for extra, match in bad:
        wl = {k: v for k, v in (base | extra).items() if v is not None}
        with pytest.raises(search.SpaceError, match=match):
            search.load_space(_space({}) | {"workload": wl})
    closed = {k: v for k, v in base.items() if k != "request_rate"} | {"concurrency": 32}
    with pytest.raises(search.SpaceError, match="throughput_at_slo"):
        search.load_space(_space({}) | {"workload": closed,
                                        "objective": {"metrics": ["throughput_at_slo"]}})


def test_a_closed_loop_space_runs_and_its_grid_goes_point_by_point():
    base = {k: v for k, v in search.load_space(SPACE).workload.items() if k != "request_rate"}
    s = search.load_space(_space({"pool_dram_GB": {"choices": [256.0, 1024.0]}},
                                 fixed={"routing": "round_robin", "pool_nic": "roce-400g",
                                        "pool_put_policy": "all"})
                          | {"workload": base | {"concurrency": 48, "think_time_s": 0.5},
                             "objective": {"metrics": ["goodput_per_dollar"]}})
    g = search.grid_search(s)
    for i, v in enumerate(g.values[:, 0]):
        one = search.evaluate_point(s, g.points[i])
        assert one.values[0] == pytest.approx(v, rel=1e-9)
        m = one.metrics                  # the closed loop's rate: Little's law over the clients
        assert m["served_rate_per_s"] == pytest.approx(48 / (m["e2e_s"] + 0.5), rel=1e-9)
