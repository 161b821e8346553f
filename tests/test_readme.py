"""The README's Python examples run as written (from a folder holding the Mooncake trace)."""

import re
import shutil

import pytest

from conftest import ROOT

TRACE = ROOT.parent / "shared" / "traces" / "conversation_trace.jsonl"


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    if not TRACE.is_file():
        pytest.skip("shared Mooncake trace not present")
    shutil.copy(TRACE, tmp_path / TRACE.name)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md block {i}", "exec"), {})
