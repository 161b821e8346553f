"""TTFT percentiles of the open-loop closed form vs the reference simulator when prompt lengths
vary: lognormal prompts with coefficient of variation 0 / 0.5 / 1 / 1.5 (the Mooncake
conversation trace has about 1.3), Llama-3.1-8B on one H100, 50 % and 80 % of saturation.

    python benchmarks/ttft_tail.py [--n 4000]

The closed form passes ``length_cv`` to the queueing terms (Kingman), but its TTFT percentiles
add the wait quantile to the *mean* prompt's prefill time; the simulator serves each prompt's
own length. This prints both, so the gap in p90/p99 under heavy-tailed prompts is measured.
"""

from __future__ import annotations

import argparse

import numpy as np

import kvmodel
from kvmodel.sim import poisson_requests, simulate

MODEL, GPU, MEAN_IN, OUT = "llama-3.1-8b", "h100-sxm", 2048, 128


def lognormal_lengths(n: int, mean: float, cv: float, seed: int = 1) -> np.ndarray:
    if cv == 0:
        return np.full(n, int(mean))
    s2 = np.log1p(cv * cv)
    x = np.random.default_rng(seed).lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n)
    return np.clip(np.round(x), 16, 120_000).astype(int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="simulated requests per point")
    a = ap.parse_args()
    print(f"{MODEL} on {GPU}, mean prompt {MEAN_IN}, output {OUT}; TTFT in seconds "
          f"(closed form / simulator)")
    print(f"{'cv':>4} {'load':>5} {'mean':>15} {'p50':>15} {'p90':>15} {'p99':>15}")
    for cv in (0.0, 0.5, 1.0, 1.5):
        lens = lognormal_lengths(a.n, MEAN_IN, cv)
        I, cv_real = float(lens.mean()), float(lens.std() / lens.mean())
        sat = kvmodel.estimate(MODEL, GPU, input_len=round(I), output_len=OUT,
                               request_rate=1.0, length_cv=cv_real).saturation_request_rate_per_s
        for u in (0.5, 0.8):
            lam = u * sat
            e = kvmodel.estimate(MODEL, GPU, input_len=round(I), output_len=OUT,
                                 request_rate=lam, length_cv=cv_real)
            r = simulate(MODEL, GPU, poisson_requests(a.n, lam, lens, OUT, seed=2))
            cells = [f"{getattr(e, f):.3f}/{r.stat('ttft', s):.3f}" for f, s in
                     (("ttft_s", "mean"), ("ttft_p50_s", "p50"), ("ttft_p90_s", "p90"),
                      ("ttft_p99_s", "p99"))]
            print(f"{cv_real:4.2f} {u:5.0%} " + " ".join(f"{c:>15}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
