"""Study: how much DRAM (and SSD) per node a TTFT SLO needs -- the smallest local DRAM prefix
cache per DGX H100 node (and, alone, the smallest local SSD) at which 8 instances of
Llama-3.1-70B fp8 TP8 serving the Mooncake conversation trace meet p99 TTFT <= SLO and p99 TPOT
<= 50 ms, for three SLOs, three request rates and three routers (bounded prefix affinity,
SGLang's cache-aware rule, round robin), no KV sharing.

SLOs. p99 TTFT contains the p99 prompt's own prefill, so an SLO at or below the no-queue
floor (:func:`floor_p99`: the smallest p99 TTFT any router reaches with the largest DRAM at
a near-idle 0.01 requests/s per instance, about 2.3 s here) is never met at any rate. The
default SLOs are that floor x ``--slo-factors`` (1.6, 1.75, 2.0: about 3.7 / 4.0 / 4.6 s,
printed), where the study's rates put the p99 of the good configurations (1.45-1.6 x the
floor at 1.0-1.6 requests/s) and of the bad ones (2-2.8 x) on either side; ``--slos``
gives them in seconds instead.

Method (public API, vectorised: one :func:`kvmodel.evaluate` per router and rate evaluates the
whole DRAM x SSD grid as numpy arrays in ``Cluster.dram_B`` / ``Cluster.ssd_B``):

1. Grid: DRAM per node 0 and 48 log-spaced sizes from 8 GB to 4096 GB (about 14 % apart);
   SSD per node 0 and 1.92-61.44 TB (drives of 1.92 TB up; the tier's bandwidth grows with its
   drives). HBM prefix-cache share at its default (0.3).
2. Per (router, rate, SLO): the smallest DRAM with no SSD, the smallest SSD with no DRAM, the
   hit ratio there, and p99 TTFT with the largest DRAM (if that misses, no DRAM size helps).
3. Flip: per (router, SLO), the largest rate at the SLO with no DRAM and with 4 TB of DRAM
   (``max_rate_at_slo`` elementwise): only rates between the two need DRAM, and how much.

    python studies/dram_for_slo.py [--quick] [--slo-factors F F F | --slos S S S]

Writes studies/results/dram_for_slo/: grid.csv (every point), need.csv, rate_range.csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import kvmodel
from kvmodel.cluster import max_rate_at_slo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_common import HERE, write_rows  # noqa: E402

OUT = HERE / "results" / "dram_for_slo"
MODEL, GPU, INSTANCES = "llama-3.1-70b", "h100-sxm", 8
DRAM_B = np.concatenate([[0.0], np.geomspace(8e9, 4096e9, 48)])
SSD_B = np.array([0.0, 1.92e12, 3.84e12, 7.68e12, 15.36e12, 30.72e12, 61.44e12])
SLO_FACTORS = (1.6, 1.75, 2.0)       # p99 TTFT SLOs as multiples of the no-queue floor
IDLE_RATE = 0.01                     # requests/s per instance at which the floor is read
TPOT_SLO = 0.05                      # p99 TPOT, s
RATES = (1.0, 1.3, 1.6)              # requests/s per instance
ROUTERS = (("prefix_affinity_bounded", 0.1), ("sglang", 0.25), ("round_robin", 0.25))


def cluster(routing: str, eps: float, dram_B=DRAM_B[:, None], ssd_B=SSD_B[None, :]) -> kvmodel.Cluster:
    return kvmodel.Cluster(MODEL, GPU, instances=INSTANCES, routing=routing, epsilon=eps,
                           dram_B=dram_B, ssd_B=ssd_B)


def grid(w: kvmodel.Workload, routers=ROUTERS, rates=RATES) -> list[dict]:
    """Every (router, rate, DRAM, SSD) point: p99 TTFT/TPOT, hit ratio by tier, stability."""
    rows = []
    for routing, eps in routers:
        for per in rates:
            r = kvmodel.evaluate(cluster(routing, eps), w.with_rate(per * INSTANCES))
            for i, j in np.ndindex(r.ttft_p99_s.shape):
                rows.append(dict(routing=routing, rate_per_instance=per, dram_GB=DRAM_B[i] / 1e9,
                                 ssd_TB=SSD_B[j] / 1e12, stable=bool(r.stable[i, j]),
                                 ttft_p99_s=float(r.ttft_p99_s[i, j]),
                                 tpot_p99_s=float(r.tpot_p99_s[i, j]),
                                 hit=float(sum(v[i, j] for v in r.hit_ratio.values())),
                                 hit_dram=float(r.hit_ratio["dram"][i, j]),
                                 hit_ssd=float(r.hit_ratio["ssd"][i, j])))
    return rows


def _ok(r: dict, slo: float, tpot_slo: float = TPOT_SLO) -> bool:
    return r["stable"] and r["ttft_p99_s"] <= slo and r["tpot_p99_s"] <= tpot_slo


def floor_p99(w: kvmodel.Workload, routers=ROUTERS) -> float:
    """No-queue p99 TTFT floor: the smallest p99 TTFT any router reaches with the largest DRAM
    (no SSD) at ``IDLE_RATE`` requests/s per instance, where nothing queues: the p99 prompt's
    own prefill (and its cache loads). No SLO at or below it is met at any rate."""
    best = np.inf
    for routing, eps in routers:
        r = kvmodel.evaluate(cluster(routing, eps, dram_B=DRAM_B[-1], ssd_B=0.0),
                             w.with_rate(IDLE_RATE * INSTANCES))
        best = min(best, float(r.ttft_p99_s))
    return best


def slos_of(a: argparse.Namespace, w: kvmodel.Workload) -> tuple[float, ...]:
    """The p99 TTFT SLOs (s): ``--slos`` as given, else the no-queue floor x
    ``--slo-factors`` (each > 1: at the floor nothing meets the SLO); printed."""
    if a.slos:
        if any(not (x > 0 and np.isfinite(x)) for x in a.slos):
            raise SystemExit(f"--slos {a.slos}: each must be a finite number of seconds > 0")
        print(f"p99 TTFT SLOs (given): {', '.join(f'{x:g} s' for x in a.slos)}")
        return tuple(a.slos)
    if any(not (x > 1 and np.isfinite(x)) for x in a.slo_factors):
        raise SystemExit(f"--slo-factors {a.slo_factors}: each must be a finite number > 1 "
                         "(the floor itself is never met)")
    fl, slos = floor_p99(w), default_slos(w, a.slo_factors)
    print(f"no-queue p99 TTFT floor {fl:.2f} s (best router, {DRAM_B[-1] / 1e9:.0f} GB DRAM, "
          f"{IDLE_RATE} req/s per instance); SLOs = floor x "
          f"{', '.join(f'{f:g}' for f in a.slo_factors)} = {', '.join(f'{x:.2f} s' for x in slos)}")
    return slos


def default_slos(w: kvmodel.Workload, factors=SLO_FACTORS) -> tuple[float, ...]:
    """The default p99 TTFT SLOs (s): the no-queue floor x ``factors``, to 10 ms."""
    fl = floor_p99(w)
    return tuple(round(fl * f, 2) for f in factors)


def workload() -> kvmodel.Workload:
    return kvmodel.Workload(kvmodel.load_trace("mooncake-conversation"), tpot_slo_s=TPOT_SLO)


def need(rows: list[dict], slos: tuple[float, ...] | None = None) -> list[dict]:
    """Per (router, rate, SLO): the smallest DRAM (no SSD) and the smallest SSD (no DRAM) that
    meet p99 TTFT <= SLO with p99 TPOT <= ``TPOT_SLO``, and (``*_ttft_only``) the TTFT SLO alone:
    where p99 TPOT binds, no DRAM size meets both, and the TTFT-only column still says what the
    DRAM buys for TTFT. ``slos`` None: :func:`default_slos` of the study's workload."""
    slos = default_slos(workload()) if slos is None else slos
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["routing"], r["rate_per_instance"]), []).append(r)
    out = []
    for (routing, per), rs in groups.items():
        dram = sorted((r for r in rs if r["ssd_TB"] == 0), key=lambda r: r["dram_GB"])
        ssd = sorted((r for r in rs if r["dram_GB"] == 0), key=lambda r: r["ssd_TB"])
        for slo in slos:
            d = next((r for r in dram if _ok(r, slo)), None)
            s = next((r for r in ssd if _ok(r, slo)), None)
            dt = next((r for r in dram if _ok(r, slo, np.inf)), None)
            st = next((r for r in ssd if _ok(r, slo, np.inf)), None)
            out.append(dict(routing=routing, rate_per_instance=per, ttft_p99_slo_s=slo,
                            min_dram_GB=d["dram_GB"] if d else np.inf,
                            hit_at_min_dram=d["hit"] if d else np.nan,
                            min_ssd_TB=s["ssd_TB"] if s else np.inf,
                            min_dram_GB_ttft_only=dt["dram_GB"] if dt else np.inf,
                            hit_at_min_dram_ttft_only=dt["hit"] if dt else np.nan,
                            min_ssd_TB_ttft_only=st["ssd_TB"] if st else np.inf,
                            ttft_p99_no_dram_s=dram[0]["ttft_p99_s"],
                            ttft_p99_max_dram_s=dram[-1]["ttft_p99_s"],
                            tpot_p99_no_dram_s=dram[0]["tpot_p99_s"],
                            tpot_p99_max_dram_s=dram[-1]["tpot_p99_s"],
                            hit_no_dram=dram[0]["hit"], hit_max_dram=dram[-1]["hit"]))
    return out


def rate_range(w: kvmodel.Workload, routers, slos: tuple[float, ...]) -> list[dict]:
    """Per (router, SLO): the max rate at the SLO with no DRAM and with the largest DRAM, with
    p99 TPOT <= ``TPOT_SLO`` and (``*_ttft_only``) at the TTFT SLO alone."""
    out = []
    for routing, eps in routers:
        c = cluster(routing, eps, dram_B=np.array([0.0, DRAM_B[-1]]), ssd_B=0.0)
        for slo in slos:
            lo, hi = max_rate_at_slo(c, w.with_rate(1.0 * INSTANCES), ttft_slo_s=slo,
                                     tpot_slo_s=TPOT_SLO)
            lo_t, hi_t = max_rate_at_slo(c, w.with_rate(1.0 * INSTANCES), ttft_slo_s=slo,
                                         tpot_slo_s=np.inf)
            out.append(dict(routing=routing, ttft_p99_slo_s=slo,
                            max_rate_per_instance_no_dram=lo / INSTANCES,
                            max_rate_per_instance_max_dram=hi / INSTANCES,
                            max_rate_per_instance_no_dram_ttft_only=lo_t / INSTANCES,
                            max_rate_per_instance_max_dram_ttft_only=hi_t / INSTANCES))
    return out


def print_summary(needs: list[dict], ranges: list[dict]) -> None:
    def gb(x):
        return "never" if not np.isfinite(x) else f"{x:.0f} GB"

    def tb(x):
        return "never" if not np.isfinite(x) else f"{x:.2f} TB"
    def hit(x):  # the hit ratio where the SLO is first met; none where it never is
        return f"(hit {x:.3f})" if np.isfinite(x) else ""
    print(f"\nsmallest DRAM per node (no SSD) | smallest SSD (no DRAM) meeting p99 TTFT <= SLO "
          f"and p99 TPOT <= {TPOT_SLO * 1e3:g} ms || the same for the TTFT SLO alone")
    for x in needs:
        print(f"  {x['routing']:24s} {x['rate_per_instance']:.1f}/inst SLO {x['ttft_p99_slo_s']:.2f} s: "
              f"{gb(x['min_dram_GB']):>8s} {hit(x['hit_at_min_dram']):11s} | {tb(x['min_ssd_TB']):>8s}"
              f" || {gb(x['min_dram_GB_ttft_only']):>8s} {hit(x['hit_at_min_dram_ttft_only']):11s} | "
              f"{tb(x['min_ssd_TB_ttft_only']):>8s}"
              f"   p99 TTFT {x['ttft_p99_no_dram_s']:.2f} -> {x['ttft_p99_max_dram_s']:.2f} s, "
              f"p99 TPOT {x['tpot_p99_no_dram_s'] * 1e3:.1f} -> {x['tpot_p99_max_dram_s'] * 1e3:.1f} ms"
              " (no DRAM -> 4 TB)")
    print("\nmax rate per instance at the SLO: no DRAM -> 4 TB DRAM || TTFT SLO alone")
    for x in ranges:
        print(f"  {x['routing']:24s} SLO {x['ttft_p99_slo_s']:.2f} s: "
              f"{x['max_rate_per_instance_no_dram']:.2f} -> {x['max_rate_per_instance_max_dram']:.2f}"
              f" || {x['max_rate_per_instance_no_dram_ttft_only']:.2f} -> "
              f"{x['max_rate_per_instance_max_dram_ttft_only']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="bounded affinity only, one rate")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--slo-factors", type=float, nargs="+", default=list(SLO_FACTORS),
                    metavar="F", help="p99 TTFT SLOs as multiples (> 1) of the no-queue floor "
                    f"(default {' '.join(map(str, SLO_FACTORS))})")
    ap.add_argument("--slos", type=float, nargs="+", metavar="S",
                    help="p99 TTFT SLOs in seconds (instead of --slo-factors)")
    a = ap.parse_args()
    routers, rates = (ROUTERS[:1], RATES[1:2]) if a.quick else (ROUTERS, RATES)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    w = workload()
    slos = slos_of(a, w)
    rows = grid(w, routers, rates)
    needs, ranges = need(rows, slos), rate_range(w, routers, slos)
    for name, table in (("grid", rows), ("need", needs), ("rate_range", ranges)):
        write_rows(out / f"{name}.csv", table)
    print_summary(needs, ranges)
    print(f"\nwrote {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
