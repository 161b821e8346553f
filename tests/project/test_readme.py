"""The README's Python examples run as written. They use only built-in traces, so they run from
any folder; this test runs them in a scratch folder so the files they write (search storage,
exports) do not land in the checkout."""

import re

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md block {i}", "exec"), {})
