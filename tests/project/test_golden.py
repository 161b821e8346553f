"""Golden results (tests/project/golden_cases.py): estimates, cluster evaluations, simulator runs and
search trials recorded before the architecture refactor must come out the same. A deliberate
change of behaviour re-records them in its own commit (``python tests/project/golden_cases.py --record``)."""

import json

import golden_cases
import pytest


@pytest.mark.parametrize("section", sorted(golden_cases.SECTIONS))
def test_golden_results_unchanged(section):
    ref = json.loads(golden_cases.GOLDEN.read_text())[section]
    now = golden_cases.SECTIONS[section]()
    n, same, rel, bad = golden_cases.compare(ref, now, section)
    assert not bad, f"{len(bad)} of {n} values changed (largest relative {rel:.3g}): " + "; ".join(bad[:10])
