"""Study: KV sharing — none vs central pool vs P2P — across cluster sizes (4-64 DGX H100
instances, the Mooncake conversation trace's rate scaled with the cluster: 0.85 requests/s per
instance) and network speeds (100-800 Gb/s RoCE), with routing and its load bound searched too
(built-in space ``kv-sharing``). One study per cluster size; for each, the best goodput per $ of
each sharing architecture and NIC.

    python studies/search_kv_sharing.py [--trials 150] [--sizes 4 8 16 32 64]

Writes one journal + CSV + HTML per size and kv_sharing_summary.csv under
studies/results/search_kv_sharing/.
"""

from __future__ import annotations

import argparse
import dataclasses

from kvmodel import search
from search_common import HERE, run_and_export, write_rows

PER_INSTANCE_RATE = 0.85


def summary(st, n: int) -> list[dict]:
    rows = {}
    for t in st.trials:
        if not search.is_feasible(t):
            continue
        key = (t.params["sharing"], t.params["nic"])
        if key not in rows or t.values[0] > rows[key]["goodput_per_dollar"]:
            rows[key] = dict(instances=n, sharing=key[0], nic=key[1],
                             goodput_per_dollar=t.values[0], routing=t.params["routing"],
                             ttft_p99_s=t.user_attrs["metrics"]["ttft_p99_s"])
    return sorted(rows.values(), key=lambda r: (r["sharing"], r["nic"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    a = ap.parse_args()
    base = search.load_space("kv-sharing")
    rows = []
    for n in a.sizes:
        space = dataclasses.replace(
            base, name=f"kv-sharing-{n}", fixed=base.fixed | {"instances": n},
            dims=tuple(d for d in base.dims if d.name != "instances"),
            workload=base.workload | {"request_rate": PER_INSTANCE_RATE * n})
        st = run_and_export(space, f"search_kv_sharing/n{n}", a.trials)
        rows += summary(st, n)
    out = HERE / "results" / "search_kv_sharing" / "kv_sharing_summary.csv"
    write_rows(out, rows)
    for r in rows:
        print(f"  n={r['instances']:3d} {r['sharing']:13s} {r['nic']:10s} "
              f"{r['goodput_per_dollar']:8.2f} req/$  ({r['routing']})")


if __name__ == "__main__":
    main()
