"""kvmodel.Catalog: user hardware in a catalog of its own (never in anyone else's), passed to the
library; caches keyed on the catalog; calibration as an argument; the import rule of the
_instance seam; per-session custom hardware in the app."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import kvmodel
from kvmodel import cluster
from kvmodel.catalog.hardware import Catalog, current, use_catalog

ROOT = Path(__file__).resolve().parents[2]


def _q(value: float, unit: str) -> str:
    return (f'{{ value = {value}, unit = "{unit}", kind = "assumed", source = "test", '
            f'reason = "round numbers" }}')


def gpu_toml(key: str, hbm_GB: float = 100, hbm_TBps: float = 1) -> str:
    """A GPU with round numbers (1000 TFLOP/s bf16, 2000 fp8, efficiencies 1)."""
    return "\n".join([
        "schema_version = 1", f"[gpu.{key}]", 'name = "round numbers"', 'vendor = "nvidia"',
        'architecture = "toy"', f"hbm_capacity = {_q(hbm_GB, 'GB')}",
        f"hbm_bandwidth = {_q(hbm_TBps, 'TB/s')}", f"peak_flops.bf16 = {_q(1000, 'TFLOP/s')}",
        f"peak_flops.fp8 = {_q(2000, 'TFLOP/s')}", f"matmul_efficiency = {_q(1, '1')}",
        f"hbm_efficiency = {_q(1, '1')}", 'scale_up_link = "nvlink4"',
        f"scale_up_bandwidth = {_q(450, 'GB/s')}", 'host_link = "pcie5-x16"',
        f"host_bandwidth = {_q(64, 'GB/s')}", f"tdp = {_q(700, 'W')}", ""])


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


ARGS = dict(tp=8, precision="fp8", input_len=2048, output_len=128, batch=1)


# ---- the Catalog object --------------------------------------------------------------------------
def test_with_file_returns_a_new_catalog_and_leaves_the_old_one(tmp_path, fresh_catalog):
    base = Catalog.default()
    cat = base.with_file(write(tmp_path, "slow.toml", gpu_toml("h100-sxm", hbm_TBps=1)))
    assert cat is not base and cat.version != base.version
    assert cat.added == ("gpu.h100-sxm",)
    assert kvmodel.get_gpu("h100-sxm", catalog=cat).hbm_bw_Bps == 1e12
    assert kvmodel.get_gpu("h100-sxm").hbm_bw_Bps == pytest.approx(3.35e12)  # default untouched
    assert Catalog.default() is base


def test_rejected_file_changes_no_catalog(tmp_path, fresh_catalog):
    cat = Catalog.default().with_file(write(tmp_path, "toy.toml", gpu_toml("toy")))
    bad = write(tmp_path, "bad.toml", gpu_toml("toy2").replace('"nvlink4"', '"no-such-link"'))
    with pytest.raises(kvmodel.HardwareDBError, match="no-such-link"):
        cat.with_file(bad)
    with pytest.raises(kvmodel.HardwareDBError):
        kvmodel.load_hardware(bad)
    assert "toy" in cat.entries("gpu") and "toy2" not in cat.entries("gpu")
    assert "toy2" not in kvmodel.list_entries("gpu")
    later = cat.with_file(write(tmp_path, "toy3.toml", gpu_toml("toy3")))  # still usable
    assert {"toy", "toy3"} <= set(later.entries("gpu"))


def test_load_hardware_and_reset_act_on_the_default_catalog(tmp_path, fresh_catalog):
    before = Catalog.default()
    assert kvmodel.load_hardware(write(tmp_path, "toy.toml", gpu_toml("toy"))) == ["gpu.toy"]
    assert Catalog.default() is not before and "toy" in kvmodel.list_entries("gpu")
    assert "toy" not in before.entries("gpu")
    kvmodel.catalog.hardware.reset_catalog()
    assert "toy" not in kvmodel.list_entries("gpu")


def test_estimate_takes_a_catalog(tmp_path, fresh_catalog):
    slow = Catalog.default().with_file(write(tmp_path, "slow.toml", gpu_toml("h100-sxm")))
    base = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS)
    mine = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, catalog=slow)
    again = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS)
    # decode of a 70B fp8 model is mostly HBM-bound: 3.18 TB/s achieved vs 1 TB/s
    assert mine.tpot_s > 1.3 * base.tpot_s
    assert again.tpot_s == base.tpot_s
    with use_catalog(slow):
        assert kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS).tpot_s == mine.tpot_s
    assert current() is Catalog.default()
    with pytest.raises(TypeError, match="catalog"):
        kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, catalog="default")


def _cluster_case():
    trace = kvmodel.synthetic_trace(300, seed=1)
    c = kvmodel.Cluster(model="llama-3.1-8b", gpu="h100-sxm", instances=2, tp=1, precision="fp8")
    return c, kvmodel.Workload(trace, request_rate=2.0)


def test_evaluate_and_its_caches_are_per_catalog(tmp_path, fresh_catalog):
    """The memoised KV capacity and node tiers live in each catalog: evaluating with another
    catalog between two default evaluations changes neither of them."""
    big = Catalog.default().with_file(write(tmp_path, "big.toml", gpu_toml("h100-sxm", hbm_GB=200)))
    c, w = _cluster_case()
    first = kvmodel.evaluate(c, w)
    other = kvmodel.evaluate(c, w, catalog=big)
    second = kvmodel.evaluate(c, w)
    assert second.to_dict() == first.to_dict()
    assert other.tpot_s != first.tpot_s
    args = (c.model, c.gpu, c.tp, c.precision, 1024, 128)
    with use_catalog(big):
        more = cluster.kv_capacity_tokens(*args)
    assert more > 1.5 * cluster.kv_capacity_tokens(*args)


def test_catalogs_in_threads_do_not_mix(tmp_path, fresh_catalog):
    slow = Catalog.default().with_file(write(tmp_path, "slow.toml", gpu_toml("h100-sxm")))
    want = {None: kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS).tpot_s,
            slow: kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, catalog=slow).tpot_s}
    got: dict = {None: set(), slow: set()}

    def work(cat):
        for _ in range(50):
            with use_catalog(cat):
                got[cat].add(kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS).tpot_s)
    threads = [threading.Thread(target=work, args=(cat,)) for cat in (None, slow)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {k: {v} for k, v in want.items()}


# ---- calibration as an argument ------------------------------------------------------------------
def test_calibration_argument_overrides_without_state():
    base = kvmodel.catalog.hardware.get_calibration()
    e0 = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS)
    same = {"memory_efficiency_factor": base["memory_efficiency_factor"].si}
    assert kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, calibration=same).tpot_s == e0.tpot_s
    half = {"memory_efficiency_factor": 0.5 * base["memory_efficiency_factor"].si}
    slower = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, calibration=half)
    assert slower.tpot_s > 1.1 * e0.tpot_s
    assert kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS).tpot_s == e0.tpot_s
    with pytest.raises(ValueError, match="unknown parameter.*allowed"):
        kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, calibration={"gemm_eff": 1.0})
    with pytest.raises(TypeError, match="calibration"):
        kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS, calibration=[("x", 1.0)])


def test_validation_passes_trial_calibration_explicitly():
    from kvmodel.instance import _estimate
    from kvmodel.instance import calibration as _validate
    rows = _validate.load_rows()[:40]
    ref = _validate.run_validation(rows=rows)
    trial = {"kernel_latency": 10 * kvmodel.catalog.hardware.get_calibration()["kernel_latency"].si}
    moved = _validate.run_validation(rows=rows, calibration=trial)
    assert [r["predicted"] for r in moved.rows] != [r["predicted"] for r in ref.rows]
    assert [r["predicted"] for r in _validate.run_validation(rows=rows).rows] == \
        [r["predicted"] for r in ref.rows]
    assert not hasattr(_estimate, "_OVERRIDE")


# ---- public cluster functions --------------------------------------------------------------------
def test_max_rate_at_slo_lives_in_the_cluster_layer():
    from kvmodel import search
    c, w = _cluster_case()
    space = search.load_space("tier-sizing-small")
    slo = space.slo
    w = kvmodel.Workload(w.trace, request_rate=2.0, ttft_slo_s=slo["ttft_s"], tpot_slo_s=slo["tpot_s"])
    rate = cluster.max_rate_at_slo(c, w, slo["ttft_percentile"], slo["tpot_percentile"], iters=6)
    assert rate > 0
    assert search.max_rate_at_slo(c, w, space, iters=6) == rate
    assert cluster.meets_slo(c, w, rate, slo["ttft_percentile"], slo["tpot_percentile"])
    with pytest.raises(ValueError, match="ttft_percentile.*allowed"):
        cluster.meets_slo(c, w, rate, ttft_percentile="p42")


def test_workload_with_rate_shares_the_trace_statistics():
    c, w = _cluster_case()
    w.top_block_share, w.input_len  # noqa: B018  (computed once)
    w2 = w.with_rate(np.array([1.0, 3.0]))
    assert w2.profile is w.profile and w2.top_block_share == w.top_block_share
    assert w2.rate.tolist() == [1.0, 3.0] and w.rate == 2.0


def test_cost_and_layout_are_public():
    c, w = _cluster_case()
    key, node, n, per_node = cluster.layout(c)
    assert (key, n, per_node) == (node.key, 2, node.gpus_per_node)
    assert cluster.cost_per_hour(c) == kvmodel.evaluate(c, w).cost_usd_per_h
    inc = cluster.inclusive_tiers(dataclass_with(c, dram_B=2e11, ssd_B=1e12), w)
    assert inc.ssd_B == pytest.approx(1e12 - 2e11)


def dataclass_with(c, **kw):
    import dataclasses
    return dataclasses.replace(c, **kw)


# ---- the seam's import rule ----------------------------------------------------------------------
# underscore names still shared outside the seam, owned by other work (kvmodel._reuse_*,
# routing names of the registries): the list may only shrink
KNOWN = {("sim/__init__.py", "_cached_prefix"), ("sim/__init__.py", "_serve"),
         ("cluster/__init__.py", "_assignment"), ("workload/_policy_curve.py", "_assignment"),
         ("workload/_policy_curve.py", "_check")}


def _private_uses(path: Path) -> set[tuple[str, str]]:
    """Underscore names this module takes from another kvmodel module (by import or through
    an imported module), except from the seam kvmodel.instance.seam."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT / "kvmodel").as_posix()
    modules, out = set(), set()
    for n in ast.walk(tree):
        if not (isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("kvmodel"))):
            continue
        for a in n.names:
            if _is_module(path, n, a.name):  # from . import _estimate: the module itself
                modules.add(a.asname or a.name)
            elif a.name.startswith("_") and not (n.module or "").endswith(".seam"):
                out.add((rel, a.name))
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id in modules and n.attr.startswith("_") and not n.attr.startswith("__")):
            out.add((rel, n.attr))
    return out


def _is_module(path: Path, node: ast.ImportFrom, name: str) -> bool:
    if node.level:
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        base = base.joinpath(*(node.module or "").split(".")) if node.module else base
    else:
        base = ROOT.joinpath(*(node.module or "").split("."))
    return (base / f"{name}.py").is_file() or (base / name).is_dir()


def test_no_module_imports_another_modules_private_names():
    found = set()
    for path in sorted((ROOT / "kvmodel").rglob("*.py")):
        found |= {u for u in _private_uses(path) if u[0] != "instance/seam.py"}
    assert found <= KNOWN, sorted(found - KNOWN)


def test_import_kvmodel_stays_light():
    code = "import sys, kvmodel, kvmodel.instance.seam; print(sorted(m for m in ('optuna', " \
           "'streamlit', 'plotly') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.strip() == "[]"


# ---- the app: custom hardware per browser session ------------------------------------------------
def _app():
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    sys.path.insert(0, str(ROOT / "app"))
    import _common as ui

    def page(name: str):
        at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=60)
        at.switch_page(f"app_pages/{name}.py")
        return at.run()
    return page, ui


def _metric(at, label: str) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return next(m.value for m in at.metric if m.label == label)


def _paste(at, text: str):
    at.text_area(key="hw_paste").input(text)
    at.button(key="hw_paste_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return " | ".join(str(e.value) for e in at.success), " | ".join(str(e.value) for e in at.error)


def test_custom_h100_in_one_session_leaves_another_sessions_estimate(fresh_catalog):
    page, ui = _app()
    a, b = page("hardware"), page("estimate")
    before = _metric(b, "TPOT (ms)")
    ok, err = _paste(a, gpu_toml("h100-sxm"))
    assert "gpu.h100-sxm" in ok and not err
    a.switch_page("app_pages/estimate.py").run()
    b.run()
    default = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS)
    custom = kvmodel.estimate("llama-3.1-70b", "h100-sxm", **ARGS,
                              catalog=a.session_state[ui.CATALOG])
    assert _metric(b, "TPOT (ms)") == before == ui.fmt_ms(default.tpot_s)
    assert _metric(a, "TPOT (ms)") == ui.fmt_ms(custom.tpot_s) != before
    assert _metric(page("estimate"), "TPOT (ms)") == before  # a new session: bundled h100


def test_rejected_file_in_one_session_keeps_another_sessions_gpu(fresh_catalog):
    page, ui = _app()
    a, b = page("hardware"), page("hardware")
    assert "gpu.toy" in _paste(a, gpu_toml("toy"))[0]
    assert "rejected" in _paste(b, "schema_version = 1\n[link.x]\nname = 1\n")[1]
    a.switch_page("app_pages/estimate.py").run()
    a.selectbox(key="gpu").set_value("toy").run()
    e = kvmodel.estimate("llama-3.1-70b", "toy", **ARGS, catalog=a.session_state[ui.CATALOG])
    assert _metric(a, "TPOT (ms)") == ui.fmt_ms(e.tpot_s)
    b.switch_page("app_pages/estimate.py").run()
    assert "toy" not in b.selectbox(key="gpu").options
