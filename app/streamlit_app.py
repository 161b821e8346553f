"""kvmodel explorer: ``streamlit run app/streamlit_app.py`` (or ``kvmodel app``).

Thin pages over the public ``kvmodel`` API; every input lives in the URL's query parameters.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
# Pages live in app_pages/, not pages/: a pages/ folder next to the entry switches on
# Streamlit's legacy multipage routing, which on a fresh server runs a deep link such as
# /cluster?... without this script (no st.navigation, no page config).
if str(APP_DIR) not in sys.path:  # pages import app/_common.py
    sys.path.insert(0, str(APP_DIR))
import _common as ui  # noqa: E402  (needs the path above)

PAGES = [
    ("estimate.py", "Estimate", "estimate", ":material/speed:"),
    ("tiers.py", "Tiers & reuse", "tiers", ":material/layers:"),
    ("cluster.py", "Cluster", "cluster", ":material/hub:"),
    ("search.py", "Search", "search", ":material/travel_explore:"),
    ("validation.py", "Validation", "validation", ":material/fact_check:"),
    ("formulas.py", "Formulas", "formulas", ":material/function:"),
    ("hardware.py", "Hardware", "hardware", ":material/memory:"),
]

st.set_page_config(page_title="kvmodel explorer", page_icon=":material/speed:", layout="wide")
nav = st.navigation([st.Page(APP_DIR / "app_pages" / f, title=t, url_path=u, icon=i,
                             default=(u == "estimate")) for f, t, u, i in PAGES])
with ui.session_catalog():  # this browser session's hardware catalog, for every page
    nav.run()
