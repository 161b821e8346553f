"""The layering of ARCHITECTURE.md, enforced: every import inside ``kvmodel`` (module level or
inside a function) goes down the flow base -> catalog -> tiers -> instance -> policies ->
workload -> cluster | sim -> search -> cli, never up, and ``cluster`` and ``sim`` never import each other.
Also: the package never imports streamlit, and ``import kvmodel`` stays light (no sympy, scipy,
optuna or plotly until a function needs them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "kvmodel"

# layer of each top-level part of kvmodel; a module may import its own part and lower layers.
LAYERS = {"base": 0, "catalog": 1, "tiers": 2, "instance": 3, "policies": 4, "workload": 5,
          "cluster": 6, "sim": 6, "search": 7, "cli": 8, "__init__": 8}
TOP = max(LAYERS.values())  # the command line and the package's lazy front door
HEAVY = ("sympy", "scipy", "optuna", "plotly", "streamlit", "pandas")


def _part(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if "_data" not in p.parts)


def _imports(path: Path):
    """(line, imported dotted name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(ROOT).with_suffix("")
    pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "kvmodel" or (node.level and not node.module):
                for a in node.names:
                    yield node.lineno, f"{mod}.{a.name}"
            else:
                yield node.lineno, mod


def _target_part(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "kvmodel" or len(parts) < 2:
        return None
    # ``from kvmodel import estimate``: a name of the top-level package (its __init__)
    return parts[1] if (PKG / parts[1]).is_dir() or (PKG / f"{parts[1]}.py").is_file() else "__init__"


def test_every_part_has_a_layer():
    parts = {_part(p.relative_to(PKG)) for p in _modules()}
    assert parts <= set(LAYERS), f"parts without a layer in LAYERS: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_flow(path):
    own = _part(path.relative_to(PKG))
    bad = []
    for line, name in _imports(path):
        tgt = _target_part(name)
        if name.split(".")[0] == "streamlit":
            bad.append(f"line {line}: kvmodel never imports streamlit")
        if tgt is None or tgt == own:
            continue
        if tgt not in LAYERS:
            bad.append(f"line {line}: {name} is in no layer")
        elif LAYERS[tgt] > LAYERS[own] or (LAYERS[tgt] == LAYERS[own] != TOP and tgt != own):
            bad.append(f"line {line}: {own} (layer {LAYERS[own]}) imports {name} "
                       f"({tgt}, layer {LAYERS[tgt]}) against the flow")
    assert not bad, f"{path.relative_to(ROOT)}: " + "; ".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path):
    f = PKG / "catalog" / "_probe_upward_import.py"
    assert not f.exists()
    try:
        f.write_text("def f():\n    from ..cluster import evaluate\n    return evaluate\n")
        with pytest.raises(AssertionError, match="against the flow"):
            test_imports_follow_the_flow(f)
    finally:
        f.unlink()


def test_import_kvmodel_is_light():
    code = ("import sys, kvmodel; kvmodel.estimate; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]", f"import kvmodel pulled in {out.stdout.strip()}"
