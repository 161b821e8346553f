"""Rerun time of the explorer's Estimate page (target <= 300 ms), measured with Streamlit's
AppTest (script execution without a browser), per mode.

    python benchmarks/app_rerun.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"


def rerun_ms(mode: str | None, repeats: int = 7) -> float:
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    at.switch_page("app_pages/estimate.py")
    at.run()
    if mode is not None:
        at.radio(key="mode").set_value(mode).run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    at = AppTest.from_file(str(ENTRY), default_timeout=60)
    at.switch_page("app_pages/estimate.py")
    at.run()
    modes = [None] + [m for m in at.radio(key="mode").options if m]
    for mode in modes:
        print(f"Estimate page rerun, mode {mode or 'default':22s} {rerun_ms(mode):7.1f} ms (median)")


if __name__ == "__main__":
    main()
