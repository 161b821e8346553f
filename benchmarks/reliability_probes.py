"""The reliability audit's reproductions (issue 15), replayed: each probe prints its verdict (the
error message, or the result that is now correct) and how long it took.

    python benchmarks/reliability_probes.py [--markdown]

App-page probes (items 2, 3, 8, 13) are Streamlit AppTests in tests/app/; signal handling of
workers (item 5) is tests/search/test_search_robust.py; the torn journal at every byte (item 6)
tests/search/test_journal_recovery.py. The probes here run the library and the command line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import kvmodel
from kvmodel import search

ROOT = Path(__file__).resolve().parents[1]
SMALL = (Path(search.__file__).parent / "spaces" / "tier-sizing-small.toml").read_text()


def _cli(*args: str, timeout: float = 60) -> str:
    out = subprocess.run([sys.executable, "-m", "kvmodel.cli", *args], capture_output=True,
                         text=True, timeout=timeout, cwd=ROOT)
    text = (out.stderr.strip() or out.stdout.strip()).splitlines()
    return f"exit {out.returncode}: {text[-1] if text else ''}"


def _space(tmp: Path, text: str, name: str = "probe.toml") -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def _estimate_rate() -> str:
    e = kvmodel.estimate("llama-2-13b", "h100-sxm", tp=1, precision="bf16", input_len=10532,
                         output_len=40, request_rate=1.45)
    ok = e.output_tok_per_s <= 1.45 * 40 * (1 + 1e-9)
    return (f"stable={e.stable}, saturation {e.saturation_request_rate_per_s:.3f} req/s, "
            f"output {e.output_tok_per_s:.1f} <= λ·O = 58.0: {ok}; reason {e.reason!r}")


def _mono_bw() -> str:
    g = kvmodel.get_gpu("h100-sxm")
    kw = dict(tp=1, precision="bf16", input_len=8192, output_len=16, concurrency=64)
    a = kvmodel.estimate("llama-3.1-8b", g, **kw)
    fast = kvmodel.catalog.GPUSpec(**{**g.__dict__, "hbm_bw_Bps": 2 * g.hbm_bw_Bps})
    b = kvmodel.estimate("llama-3.1-8b", fast, **kw)
    return (f"2x HBM: E2E {a.e2e_s:.2f} -> {b.e2e_s:.2f} s, TPOT {1e3 * a.tpot_s:.1f} -> "
            f"{1e3 * b.tpot_s:.1f} ms (documented: more prefill chunks per step)")


def _cluster_infeasible() -> str:
    w = kvmodel.Workload(kvmodel.synthetic_trace(200, seed=1))
    r = kvmodel.evaluate(kvmodel.Cluster("llama-3.1-70b", "a100-sxm-80gb", precision="fp8"), w)
    return f"stable={r.stable}, reason {r.reason!r}"


def _probes(tmp: Path) -> list[tuple[str, str, Callable[[], Any]]]:
    nan = SMALL.replace("ttft_s = ", "ttft_s = nan #", 1)
    other = (Path(search.__file__).parent / "spaces" / "tier-sizing.toml").read_text()
    torn = tmp / "torn.journal"
    return [
        ("1", "space with ttft_s = nan", lambda: _cli(
            "search", "--space", _space(tmp, nan), "--n-trials", "5", "--storage",
            str(tmp / "nan.journal"))),
        ("2", "cluster A100 + fp8 (infeasible)", _cluster_infeasible),
        ("4", "resume a study with another space", lambda: (
            search.run(_space(tmp, SMALL, "a.toml"), n_trials=2, storage=str(tmp / "mix.journal"),
                       study_name="s"),
            search.run(_space(tmp, other.replace('name = "tier-sizing"', 'name = "x"'), "b.toml"),
                       n_trials=2, storage=str(tmp / "mix.journal"), study_name="s"))),
        ("6", "journal with a torn last line", lambda: (
            search.run("tier-sizing-small", n_trials=2, storage=str(torn)),
            torn.open("a").write('{"op_code":4,"wor'),
            f"repaired; the study goes on to "
            f"{len(search.run('tier-sizing-small', n_trials=4, storage=str(torn)).trials)} trials")[-1]),
        ("7", "instances = [0, -4]", lambda: search.space_from_dict(
            {**_dict(SMALL), "dims": {"instances": {"choices": [0, -4]}}})),
        ("7", "fixed tp = 0", lambda: search.space_from_dict(
            {**_dict(SMALL), "fixed": {**_dict(SMALL).get("fixed", {}), "tp": 0}})),
        ("8", "Cluster(instances=10_000)", lambda: kvmodel.evaluate(
            kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=10_000, tp=1),
            kvmodel.Workload(kvmodel.synthetic_trace(50, seed=1)))),
        ("8", "synthetic_trace(5000, output_tokens_mean=1e9)",
         lambda: kvmodel.synthetic_trace(5000, output_tokens_mean=1e9)),
        ("9", "open loop below saturation (llama-2-13b, 1.45 req/s)", _estimate_rate),
        ("10", "closed loop, HBM bandwidth x2", _mono_bw),
        ("11", "kvmodel cluster --json on an unstable load", lambda: _json_cli(tmp)),
        ("11", "negative SLO", lambda: kvmodel.evaluate(
            kvmodel.Cluster("llama-3.1-8b", "h100-sxm", tp=1),
            kvmodel.Workload(kvmodel.synthetic_trace(10), ttft_slo_s=-1.0))),
        ("11", "HF config num_attention_heads = 0", lambda: kvmodel.load_hf_config(_hf(tmp))),
        ("11", "--storage bogus://x", lambda: _cli("search", "show", "--storage", "bogus://x")),
        ("11", "kvmodel app --port -1", lambda: _cli("app", "--port", "-1")),
        ("11", "mismatched array shapes", lambda: kvmodel.estimate(
            "llama-3.1-8b", "h100-sxm", input_len=np.ones(3) * 512, output_len=np.ones(4) * 64)),
        ("11", "input_len = 1e107", lambda: kvmodel.estimate("llama-3.1-8b", "h100-sxm",
                                                              input_len=1e107)),
        ("11", "1e-300 TB/s HBM in a hardware file", lambda: kvmodel.Catalog.default().with_file(
            _hw(tmp))),
        ("12", "--n-trials -5", lambda: _cli("search", "--space", "tier-sizing-small",
                                             "--n-trials", "-5")),
        ("12", "estimate --batch 4 --concurrency 4", lambda: _cli(
            "estimate", "--batch", "4", "--concurrency", "4")),
    ]


def _dict(text: str) -> dict:
    import tomllib
    return tomllib.loads(text)


def _hf(tmp: Path) -> str:
    p = tmp / "config.json"
    p.write_text(json.dumps({"hidden_size": 4096, "num_hidden_layers": 32,
                             "num_attention_heads": 0, "num_key_value_heads": 8,
                             "intermediate_size": 14336, "vocab_size": 128256}))
    return str(p)


def _hw(tmp: Path) -> str:
    """The bundled h100-sxm entry as a new GPU with an HBM bandwidth of 1e-300 TB/s."""
    text = (kvmodel.catalog.data_dir() / "gpus.toml").read_text()
    start = text.index("[gpu.h100-sxm]")
    end = text.find("\n[", start + 1)
    entry = text[start:end if end > 0 else None].replace("[gpu.h100-sxm]", "[gpu.slow-h100]")
    lines = [('hbm_bandwidth = { value = 1e-300, unit = "TB/s", kind = "assumed", '
              'source = "probe", reason = "probe" }') if ln.startswith("hbm_bandwidth") else ln
             for ln in entry.splitlines()]
    p = tmp / "hw.toml"
    p.write_text("schema_version = 1\n" + "\n".join(lines) + "\n")
    return str(p)


def _json_cli(tmp: Path) -> str:
    cfg = (ROOT / "studies" / "configs" / "p2p_16x_h100.toml").read_text()
    p = tmp / "unstable.toml"
    p.write_text(cfg.replace("request_rate = 6.0", "request_rate = 1e6"))
    out = subprocess.run([sys.executable, "-m", "kvmodel.cli", "cluster", "--config", str(p),
                          "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    bad = "Infinity" in out.stdout or "NaN" in out.stdout
    stable = json.loads(out.stdout).get("stable") if out.returncode == 0 else None
    return f"exit {out.returncode}, stable={stable}, Infinity/NaN in the JSON: {bad}"


def run() -> list[tuple[str, str, str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for item, name, fn in _probes(Path(d)):
            t0 = time.perf_counter()
            try:
                res = fn()
                verdict = res if isinstance(res, str) else f"result: {res!r}"[:160]
            except Exception as e:  # the verdict is the message a user would read
                verdict = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            rows.append((item, name, verdict[:220], time.perf_counter() - t0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = ap.parse_args()
    rows = run()
    if a.markdown:
        print("| item | probe | verdict | s |\n|---|---|---|---|")
        for item, name, verdict, s in rows:
            print(f"| {item} | {name} | {verdict.replace('|', '/')} | {s:.2f} |")
    else:
        for item, name, verdict, s in rows:
            print(f"[{item:>2}] {name:50s} {s:6.2f} s  {verdict}")


if __name__ == "__main__":
    main()
