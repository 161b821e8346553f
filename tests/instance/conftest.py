"""Shared fixture: the default catalog with a test's own TOML entries added for the test."""

import contextlib

import pytest

from kvmodel.catalog.hardware import Catalog, use_catalog


@pytest.fixture
def catalog_with(tmp_path):
    """``catalog_with(text)`` writes ``text`` to a file, makes the default catalog plus that
    file current until the test ends, and returns it."""
    with contextlib.ExitStack() as stack:
        def load(text: str, name: str = "extra.toml") -> Catalog:
            p = tmp_path / name
            p.write_text(text)
            return stack.enter_context(use_catalog(Catalog.default().with_file(p)))
        yield load
