"""The wheel carries hardware_db and the built-in traces and works outside the checkout."""

import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_wheel_ships_hardware_db_and_runs_outside_checkout(tmp_path):
    pytest.importorskip("hatchling")
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-w", str(out), "-q"], check=True)
    wheel = next(out.glob("kvmodel-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "kvmodel/_hardware_db/gpus.toml" in names
    assert "kvmodel/_hardware_db/models/llama-3.1-70b.toml" in names
    assert "kvmodel/_hardware_db/measurements/serving_calibration.csv" in names
    for f in ("conversation_trace.jsonl", "synthetic_trace.jsonl", "AzureLLMInferenceTrace_code.csv",
              "AzureLLMInferenceTrace_conv.csv", "LICENSE-APACHE", "README.md"):
        assert f"kvmodel/_data/traces/{f}" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import kvmodel, pathlib; e = kvmodel.estimate('llama-3.1-8b', 'h100-sxm'); "
            "assert e.feasible; d = kvmodel.catalog.hardware.data_dir(); "
            "assert '_hardware_db' in str(d), d; "
            "assert len(kvmodel.load_trace('mooncake-conversation')) == 12031; "
            "print(len(kvmodel.validate().rows))")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.strip()) > 100
