"""SGLang's cache-aware router and a local DRAM prefix cache (studies/dram_for_slo.md: sglang's
p99 TTFT rose 3.59 -> 3.72 s from 0 to 100 GB of DRAM at 1.6 requests/s per instance).

Referee (stop 24, 8 x Llama-3.1-70B fp8 TP8, the whole Mooncake conversation trace, DRAM-only
local cache on both sides, ``benchmarks/cluster_vs_sim.py --local-dram-GB``'s mapping): the
simulator running sglang's rule on a router-side prefix tree that never evicts (SGLang's
router: ``sgl-router/src/policies/cache_aware.rs``, eviction only above ``max_tree_size``;
the closed form's replay, :mod:`kvmodel.workload._routing_closed`) gives p99 TTFT 5.46 / 5.48
/ 4.84 / 4.79 / 4.43 / 4.30 s at 0 / 25 / 100 / 200 / 400 / 4096 GB at 1.3 requests/s per
instance (its decisions do not change with the DRAM: 51.8 % by affinity, 34.6 % with one
load choice at every size); the closed form 5.09 / 4.27 / 3.46 / 3.68 / 3.68 / 3.65 s.
"""

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload

DRAM_B = np.array([0.0, 8e9, 25e9, 50e9, 100e9, 200e9, 400e9, 1000e9, 4096e9])


def _study(routing: str, dram_B, hbm: float = 0.3):
    w = Workload(kvmodel.load_trace("mooncake-conversation"), tpot_slo_s=0.05)
    c = Cluster("llama-3.1-70b", "h100-sxm", instances=8, routing=routing, epsilon=0.25,
                hbm_cache_fraction=hbm, dram_B=dram_B, ssd_B=0.0)
    return kvmodel.evaluate(c, w.with_rate(1.6 * 8))


def test_sglang_decisions_do_not_see_the_dram():
    """The closed form replays sglang on the router's own never-evicting tree, as SGLang's
    router does: its load share (imbalance) and the wait law's choice mix are the same at
    every DRAM size, while the hit ratio and the mean TTFT move with it."""
    r = _study("sglang", DRAM_B)
    hit = sum(r.hit_ratio.values())
    assert np.all(np.diff(hit) > 0) and np.all(np.diff(r.ttft_s) < 0)
    assert np.ptp(np.asarray(r.imbalance, float)) == 0.0


@pytest.mark.xfail(strict=True, reason=(
    "artefact of the routed percentile shift (kvmodel.cluster._routing_queue."
    "routed_percentiles), not of the router: the class mixture's service scale b_q is fitted "
    "per quantile to the instance's p99, which mixes wait and service, so the no-wait service "
    "of the p99 length band it implies moves with the wait (3.50 s at 0 GB, 3.715 s at "
    "100 GB); where the routed wait is small the p99 lands on that band's no-wait atom and the "
    "jump shows: 3.588 -> 3.715 s (the unrouted instance's p99 falls 4.020 -> 3.715). Needs "
    "the instance's own class offsets (Estimate's classes and ttft_common) in the routed law"))
def test_sglang_p99_never_rises_with_dram():
    """More DRAM never lengthens sglang's p99 TTFT on the study's cluster (1.6 requests/s per
    instance, HBM share 0.3): the router's decisions do not change with it (test above) and
    the simulator's p99 falls with it (module docstring); 0.5 % slack as
    tests/project/test_studies.py allows the instance law."""
    p99 = np.asarray(_study("sglang", DRAM_B).ttft_p99_s)
    assert np.all(p99[1:] <= p99[:-1] * 1.005), p99


def test_unrouted_instance_p99_falls_with_dram():
    """The same cluster behind round robin (no routed wait law): its p99 falls with the DRAM,
    so the rise above is the routed law's."""
    p99 = np.asarray(_study("round_robin", DRAM_B).ttft_p99_s)
    assert np.all(p99[1:] <= p99[:-1] * 1.005) and p99[-1] < p99[0], p99
