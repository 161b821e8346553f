"""``Estimate.ttft_mixture`` and ``Estimate.wait_parts`` are fields: ``dataclasses.replace``
keeps them, so the cluster's routed wait law reads the same instance on a replaced estimate
(as attributes set after construction, a replaced estimate lost them and the routed law fell
back to the one-part law and the scaled class offsets)."""

import dataclasses

import pytest

import kvmodel
from kvmodel.cluster import _combine
from kvmodel.cluster._routing_queue import routed_law, routed_percentiles

TWO = (0.0, 1.0)  # every request joins the shorter of two queues
CLASSES = [(0.6, 3000.0, "hbm", 4000.0), (0.4, 0.0, "hbm", 4000.0)]  # (p, cached, tier, L)


@pytest.fixture(scope="module")
def est():
    return kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=4000, output_len=300,
                            request_rate=6.0, length_cv=1.0,
                            prefix_classes=[(0.6, 3000, "hbm"), (0.4, 0, "hbm")])


def _routed(e) -> dict:
    m = _combine({"instance": e})
    w2, p2 = routed_law(TWO, m["wait"], m["pwait"], 1.5, m["util"], m["parts"])
    return dict(routed_percentiles(m, w2, p2, CLASSES), law=(w2, p2))


def test_replace_keeps_the_mixture_and_the_parts(est):
    assert est.ttft_mixture is not None and est.wait_parts is not None
    names = {f.name for f in dataclasses.fields(kvmodel.Estimate)}
    assert {"ttft_mixture", "wait_parts"} <= names
    e2 = dataclasses.replace(est, inputs=dict(est.inputs))
    assert e2.ttft_mixture is est.ttft_mixture and e2.wait_parts is est.wait_parts
    assert "ttft_mixture" not in repr(est) and est == e2  # not in repr or comparisons


def test_routed_law_same_on_a_replaced_estimate(est):
    e2 = dataclasses.replace(est, inputs=dict(est.inputs))
    a, b = _routed(est), _routed(e2)
    assert a.keys() == b.keys()
    for k in ("ttft", "ttft50", "ttft90", "ttft99", "wait", "pwait", "law"):
        assert a[k] == pytest.approx(b[k], rel=1e-15), k
    # the fields matter: without them the law reads another wait (the test can fail)
    bare = dataclasses.replace(est, ttft_mixture=None, wait_parts=None)
    c = _routed(bare)
    assert any(c[k] != pytest.approx(a[k], rel=1e-6) for k in ("ttft50", "ttft99", "law"))


def test_plain_estimates_have_none():
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=100, batch=8)
    assert e.ttft_mixture is None and e.wait_parts is None
    d = e.to_dict()
    assert d["ttft_mixture"] is None and d["wait_parts"] is None
