"""The README's figures are the ones the code prints.

The fidelity and parameter sections are recomputed here (the same ``run_validation`` that
``kvmodel validate`` and ``kvmodel validate --holdout`` use, and ``calibration.toml``); the speed
sections are re-rendered from the recorded ``benchmarks/results/speed.json`` (consistency with the
recorded figures, nothing is timed). A failure means: run ``python benchmarks/update_readme.py``.
"""

import copy
import importlib.util
import json

import pytest
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("update_readme",
                                               ROOT / "benchmarks" / "update_readme.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

README = (ROOT / "README.md").read_text()
FIX = "README.md is stale; run: python benchmarks/update_readme.py\n"


def test_fidelity_and_parameter_sections_match_the_code():
    new = gen.render(README, sections=gen.CODE_SECTIONS)
    assert new == README, FIX + gen.diff(README, new)


def test_speed_sections_match_the_recorded_json():
    new = gen.render(README, sections=[n for n in gen.SECTIONS if n.startswith("speed")])
    assert new == README, FIX + gen.diff(README, new)


def test_every_section_has_markers_in_the_readme():
    for name in gen.SECTIONS:
        assert gen.section_body(README, name).strip(), name


def test_replace_section_keeps_the_text_around_it():
    text = "a\n<!-- BEGIN generated:x -->\nold\n<!-- END generated:x -->\nb\n"
    assert gen.replace_section(text, "x", "new") == (
        "a\n<!-- BEGIN generated:x -->\nnew\n<!-- END generated:x -->\nb\n")


def test_missing_markers_name_the_section():
    with pytest.raises(ValueError, match="'speed-sim'.*BEGIN generated:speed-sim"):
        gen.replace_section("no markers here\n", "speed-sim", "x")


@pytest.mark.parametrize("seconds, text", [(367.2e-6, "370 µs"), (9.739e-6, "9.7 µs"),
                                           (1.25e-3, "1.2 ms"), (0.0871, "87 ms"),
                                           (0.87, "0.87 s"), (3.86, "3.9 s"), (12.4, "12 s")])
def test_time_str_hand_values(seconds, text):
    assert gen.time_str(seconds) == text


def test_rate_str_and_span():
    assert gen.rate_str(320_129) == "320k configurations/s"
    assert gen.rate_str(2.42e6) == "2.4 million configurations/s"
    assert gen.span([0.000367, 0.000417], gen.time_str) == "370–420 µs"
    assert gen.span([0.000367, 0.0012], gen.time_str) == "370 µs–1.2 ms"
    assert gen.span([0.41e-3, 0.414e-3], gen.time_str) == "410 µs"


def test_fitted_parameters_carry_their_toml_units():
    """Hand-made calibration table: the values and units of the file, µs/ms spelled at the edge."""
    model = {k: {"value": 1.0, "unit": "1"} for k in ("gemm_efficiency_factor",
                                                      "memory_efficiency_factor",
                                                      "collective_latency", "sequence_overhead")}
    model["kernel_latency"] = {"value": 9.739, "unit": "us"}
    model["request_overhead"] = {"value": 3.127, "unit": "ms"}
    text = gen.render_parameters({"calibration": {"calibration": {"model": model}}})
    text = " ".join(text.split())
    assert "`kernel_latency` 9.74 µs" in text and "`request_overhead` 3.13 ms" in text
    assert text.startswith("The 6 global parameters")


def test_speed_figures_come_from_the_json():
    """Changing one recorded figure changes exactly that figure in the rendered README."""
    speed = json.loads(gen.SPEED_JSON.read_text())
    changed = copy.deepcopy(speed)
    changed["sim"]["runs"]["16"]["wall_s"] = 123.0
    before = gen.render_speed_cluster({"speed": speed})
    after = gen.render_speed_cluster({"speed": changed})
    assert "16 instances in 120 s" in after and before != after
    recorded = gen.time_str(speed["sim"]["runs"]["16"]["wall_s"])
    assert after.replace("16 instances in 120 s", f"16 instances in {recorded}") == before


def test_speed_json_names_its_machine_and_date():
    speed = json.loads(gen.SPEED_JSON.read_text())
    assert speed["machine"]["cores"] >= 1 and speed["machine"]["cpu"]
    assert speed["date"] in README and "conservative" in speed["note"]
    assert set(gen.BENCHMARKS) <= set(speed)
