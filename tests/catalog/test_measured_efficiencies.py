"""Component efficiencies of the newer GPUs come from their own measurements where one is published,
and the held-out serving table only names catalog entries."""

import csv
import re

import pytest

import kvmodel
from kvmodel.catalog.hardware import data_dir, list_entries, raw_entry


def _achieved(gpu, precision):
    return raw_entry("gpu", gpu)["achieved_matmul_flops"][precision]


@pytest.mark.parametrize("gpu", ["b200", "gb300"])
def test_fp4_rate_is_the_gpus_own_measurement(gpu):
    q = _achieved(gpu, "fp4")
    g = kvmodel.get_gpu(gpu)
    assert q.kind == "measured" and q.source.strip()
    assert g.matmul_eff["fp4"] == pytest.approx(q.si / g.peak_flops["fp4"])
    # a measured FP4 rate is not the FP8 ratio it used to borrow
    assert g.matmul_eff["fp4"] != pytest.approx(g.matmul_eff["fp8"], abs=1e-3)


def test_gb200_fp4_is_b200s_kernel_at_the_one_harness_fp8_ratio():
    """GB200's FP4 GEMM rate is B200's measured one (the same die and kernel) x the two GPUs'
    fp8 MAMF rates from one benchmark: 5702 x 3615.6 / 3432.5 = 6006.2 TFLOP/s. The ratio
    stays between the measured bf16 one and the dense-peak one (10000 / 9000)."""
    q, b = _achieved("gb200", "fp4"), _achieved("b200", "fp4")
    assert q.kind == "derived" and "5702 x 3615.6 / 3432.5" in q.derivation
    want = b.si * _achieved("gb200", "fp8").si / _achieved("b200", "fp8").si
    assert q.si == pytest.approx(want, rel=1e-4) and q.si == pytest.approx(6006.2e12, rel=1e-6)
    ratio = q.si / b.si
    bf16 = _achieved("gb200", "bf16").si / _achieved("b200", "bf16").si
    assert bf16 < ratio < 10000 / 9000
    g = kvmodel.get_gpu("gb200")
    assert g.matmul_eff["fp4"] == pytest.approx(6006.2 / 10000)


def test_measured_precisions_override_the_sibling_fallback():
    g, e = kvmodel.get_gpu("gb300"), raw_entry("gpu", "gb300")
    fallback = e["matmul_efficiency"].si
    assert g.matmul_eff["bf16"] == pytest.approx(fallback)
    assert g.matmul_eff["fp8"] == pytest.approx(3308.5 / 5000)
    assert g.matmul_eff["fp4"] == pytest.approx(8640.3 / 15000)


def test_hgx_b300_fp4_scales_the_gb300_measurement_by_peak():
    """No FP4 GEMM was measured on HGX B300: it takes GB300's (the same die) x the dense-peak
    ratio 13500 / 15000 = 0.9, as its attention rates do, not the fp8 ratio it borrowed, which
    put it above GB300 (0.745 x 13500 = 10059.9 > 8640.3 TFLOP/s)."""
    q, sib = _achieved("b300", "fp4"), _achieved("gb300", "fp4")
    assert q.kind == "derived" and q.si == pytest.approx(sib.si * 13500 / 15000, rel=1e-5)
    assert q.si == pytest.approx(7776.3e12, rel=1e-6)
    g, gb = kvmodel.get_gpu("b300"), kvmodel.get_gpu("gb300")
    rate = g.peak_flops["fp4"] * g.matmul_eff["fp4"]
    assert rate == pytest.approx(q.si) and rate < gb.peak_flops["fp4"] * gb.matmul_eff["fp4"]
    assert g.matmul_eff["fp4"] == pytest.approx(gb.matmul_eff["fp4"], rel=1e-5)


def test_mi355x_hbm_efficiency_is_measured():
    e = raw_entry("gpu", "mi355x")
    assert "hbm_efficiency" not in e and e["achieved_hbm_bandwidth"].kind == "measured"
    assert kvmodel.get_gpu("mi355x").hbm_eff == pytest.approx(5690.42 / 8000, rel=1e-4)


def _holdout_rows():
    with open(data_dir() / "measurements" / "holdout_serving.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_holdout_ids_are_unique_hex():
    ids = [r["id"] for r in _holdout_rows()]
    assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_holdout_rows_name_catalog_entries():
    gpus, models = set(list_entries("gpu")), set(kvmodel.list_models())
    for r in _holdout_rows():
        assert r["gpu"] in gpus, r["id"]
        assert r["model"] in models, r["id"]
        assert r["source"].strip(), r["id"]
