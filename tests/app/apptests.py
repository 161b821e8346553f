"""What the AppTest files share: the app's entry point, its formatters (``ui``, so tests compare
like with like) and ``page(name, **query)``, a page rendered once from a link's parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "app" / "streamlit_app.py"
sys.path.insert(0, str(ROOT / "app"))
import _common as ui  # noqa: E402,F401  (app/ is put on the path first)

TIMEOUT = 60


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.switch_page(f"app_pages/{name}.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()
