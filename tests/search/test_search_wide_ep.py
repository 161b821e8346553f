"""Search dimensions of DP attention / expert parallelism and speculative decoding: mapping to
the Cluster, conditional sampling, the MoE-only check, and the built-in space running."""

from __future__ import annotations

import optuna
import pytest

from kvmodel import search
from kvmodel.search._objectives import _cluster_kwargs, check_names

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = "wide-ep-speculative"


def _space(dims: dict, fixed: dict | None = None) -> dict:
    base = search.load_space(SPACE)
    return {"fixed": dict(base.fixed) | (fixed or {}), "dims": dims,
            "workload": dict(base.workload)}


def test_dimensions_map_to_the_cluster_fields():
    fixed = search.load_space(SPACE).fixed
    kw, derived = _cluster_kwargs(dict(fixed) | {"attention_dp": True, "tp": 1, "ep": 16,
                                                 "spec_method": "mtp", "spec_k": 3,
                                                 "spec_acceptance": 0.7})
    assert (kw["attention_dp"], kw["tp"], kw["ep"]) == (True, 1, 16)
    assert kw["speculative"] == {"method": "mtp", "k": 3, "acceptance": 0.7}
    # an EP16 group on 8-GPU nodes: one instance per node at most, 16 GPUs each
    assert (derived["gpus_per_instance"], derived["instances_per_node"]) == (16, 1)
    kw, derived = _cluster_kwargs(dict(fixed) | {"attention_dp": False, "spec_method": "none"})
    assert "speculative" not in kw and derived["gpus_per_instance"] == 8
    draft = _cluster_kwargs(dict(fixed) | {"spec_method": "draft", "spec_k": 2,
                                           "spec_acceptance": 0.6,
                                           "spec_draft_model": "llama-3.1-8b"})[0]
    assert draft["speculative"]["draft_model"] == "llama-3.1-8b"


def test_the_builtin_space_runs_and_samples_conditionally():
    st = search.run(SPACE, n_trials=24, storage=optuna.storages.InMemoryStorage(),
                    sampler="random", seed=4)
    assert sum(search.is_feasible(t) for t in st.trials) > 0
    seen = set()
    for t in st.trials:
        p, m = t.params, t.user_attrs["metrics"]
        dp = p["attention_dp"]
        assert ("ep" in p) == dp and ("tp" in p) == dp
        assert ("spec_k" in p) == (p["spec_method"] == "mtp")
        if search.is_feasible(t):
            assert ("spec_tpot_factor" in m) == (p["spec_method"] == "mtp")
            assert ("ep_alltoall_share" in m) == dp
            assert m["gpus_per_instance"] == (p["ep"] if dp else 8)
        seen.add((dp, p["spec_method"]))
    assert len(seen) == 4
    assert "attention_dp=" in search.show(st)


def test_dp_attention_on_a_dense_model_is_a_space_error():
    dims = {"attention_dp": {"choices": [False, True]}}
    s = search.load_space(_space(dims, fixed={"model": "llama-3.1-8b"}))
    with pytest.raises(search.SpaceError, match="attention_dp.*MoE.*llama-3.1-8b"):
        check_names(s)
    # conditional on the MoE models of a model dimension: fine
    both = {"model": {"choices": ["llama-3.1-8b", "deepseek-v3"]}}
    ok = {"attention_dp": {"choices": [False, True], "when": {"model": "deepseek-v3"}}}
    base = _space(both | ok)
    del base["fixed"]["model"]
    check_names(search.load_space(base))
    base = _space(both | dims)
    del base["fixed"]["model"]
    with pytest.raises(search.SpaceError, match="attention_dp"):
        check_names(search.load_space(base))
    # ep fixed to 1 (no expert parallelism) is fine on a dense model
    check_names(search.load_space(_space({}, fixed={"model": "llama-3.1-8b", "ep": 1})))


def test_speculation_parameters_need_speculation_on():
    with pytest.raises(search.SpaceError, match=r"\[dims.spec_k\].*spec_method"):
        search.load_space(_space({"spec_k": {"range": [1, 3]}}))
    with pytest.raises(search.SpaceError, match=r"\[dims.spec_k\]"):
        search.load_space(_space({"spec_method": {"choices": ["none", "mtp"]},
                                  "spec_k": {"range": [1, 3],
                                             "when": {"spec_method": ["none", "mtp"]}}}))
    with pytest.raises(search.SpaceError, match=r"spec_draft_model.*draft"):
        search.load_space(_space({"spec_draft_model": {"choices": ["llama-3.1-8b"]}},
                                 fixed={"spec_method": "mtp"}))
    with pytest.raises(search.SpaceError, match="spec_method.*'eagle'"):
        search.load_space(_space({"spec_method": {"choices": ["none", "eagle"]}}))
    with pytest.raises(search.SpaceError, match="spec_k"):
        search.load_space(_space({"spec_k": {"range": [1, 99]}}, fixed={"spec_method": "mtp"}))
    s = search.load_space(_space({"spec_draft_model": {"choices": ["no-such-model"]}},
                                 fixed={"spec_method": "draft", "spec_acceptance": 0.6}))
    with pytest.raises(search.SpaceError, match="spec_draft_model.*no-such-model"):
        check_names(s)


def test_a_malformed_point_is_an_infeasible_trial_with_its_reason():
    s = search.load_space(SPACE)
    o = search.evaluate_point(s, {"instances": 1, "attention_dp": True, "tp": 8, "ep": 12,
                                  "spec_method": "none"})
    assert not o.feasible and "multiple of tp=8" in o.reason
