"""Conformance over every hardware_db entry, and bad-input errors naming file and field."""

import math

import pytest

import kvmodel
from kvmodel.base.schema import KINDS, Curve, HardwareDBError, Quantity
from kvmodel.catalog.hardware import data_dir, list_entries, raw_entry

REQUIRED_GPUS = ["a100-sxm-80gb", "a100-sxm-40gb", "h100-sxm", "h100-pcie", "h200-sxm", "h800-sxm",
                 "h20-3e", "gh200", "b200", "gb200", "l40s", "rtx-pro-6000", "mi300x", "mi325x",
                 "h20", "rtx-4090", "a10", "l4", "b300", "gb300", "mi355x"]
REQUIRED_LINKS = ["pcie3-x16", "pcie4-x16", "pcie5-x16", "pcie6-x16", "nvlink3", "nvlink4",
                  "nvlink5", "nvlink-c2c", "cxl1-x8", "cxl1-x16", "cxl2-x8", "cxl2-x16", "cxl3-x8",
                  "cxl3-x16", "ib-hdr", "ib-ndr", "ib-xdr", "roce-100g", "roce-200g", "roce-400g",
                  "roce-800g", "tcp-100g"]
SECTIONS = ["gpu", "link", "memory", "node", "framework"]


def _quantities(entry):
    for name, v in entry.items():
        if isinstance(v, Quantity):
            yield name, v
        elif isinstance(v, dict):
            for p, q in v.items():
                yield f"{name}.{p}", q


def test_required_keys_present():
    assert set(REQUIRED_GPUS) <= set(list_entries("gpu"))
    assert set(REQUIRED_LINKS) <= set(list_entries("link"))
    assert {"tensorrt-llm", "vllm", "sglang"} <= set(list_entries("framework"))
    for fam in ("ddr4", "ddr5", "lpddr5x", "cxl", "nvme"):
        assert any(kvmodel.get_memory(k).family == fam for k in list_entries("memory")), fam


@pytest.mark.parametrize("section,key", [(s, k) for s in SECTIONS + ["calibration"]
                                         for k in list_entries(s)])
def test_every_number_is_sourced(section, key):
    for name, q in _quantities(raw_entry(section, key)):
        assert q.kind in KINDS, name
        assert q.source.strip(), name
        assert q.unit, name
        assert math.isfinite(q.si), name
        if q.kind == "derived":
            assert q.derivation, name
        if q.kind == "assumed":
            assert q.reason, name
        if q.unit.startswith("USD"):
            assert q.date, name


@pytest.mark.parametrize("key", list_entries("gpu"))
def test_gpu_spec_is_physical(key):
    g = kvmodel.get_gpu(key)
    assert 1e9 < g.hbm_capacity_B < 1e12
    assert 1e11 < g.hbm_bw_Bps < 2e13
    assert 0 < g.hbm_eff <= 1
    assert "bf16" in g.peak_flops or "fp16" in g.peak_flops
    for p, eff in g.matmul_eff.items():
        assert 0 < eff <= 1, p
    # lower precision never has lower dense peak than bf16
    if "fp8" in g.peak_flops:
        assert g.peak_flops["fp8"] >= g.peak_flops["bf16"]
    assert kvmodel.get_link(g.scale_up_link).bw_Bps > 0
    assert kvmodel.get_link(g.host_link).bw_Bps > 0


@pytest.mark.parametrize("key", list_entries("link"))
def test_link_spec(key):
    link = kvmodel.get_link(key)
    assert link.bw_Bps > 0 and link.latency_s > 0
    assert link.achieved_bw_Bps <= link.bw_Bps * 1.05
    c = link.size_bandwidth
    if c is not None:
        assert isinstance(c, Curve) and len(c.x) == len(c.y)
        assert max(c.y) <= link.bw_Bps * 1.05


@pytest.mark.parametrize("key", list_entries("node"))
def test_node_references_resolve(key):
    n = kvmodel.get_node(key)
    assert kvmodel.get_gpu(n.gpu) and kvmodel.get_memory(n.host_memory)
    assert kvmodel.get_link(n.nic_link) and kvmodel.get_memory(n.nvme)
    assert n.gpus_per_node >= 1 and n.price_per_s > 0


def test_data_dir_found_from_file_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (data_dir() / "gpus.toml").is_file()


# ---- bad input ----------------------------------------------------------------------------------
GOOD = """schema_version = 1
[memory.test-ram]
name = "Test RAM"
family = "ddr5"
capacity = { value = 64, unit = "GB", kind = "datasheet", source = "s" }
read_bandwidth = { value = 38.4, unit = "GB/s", kind = "datasheet", source = "s" }
write_bandwidth = { value = 38.4, unit = "GB/s", kind = "datasheet", source = "s" }
latency = { value = 90, unit = "ns", kind = "datasheet", source = "s" }
price_per_gb = { value = 5, unit = "USD/GB", kind = "datasheet", source = "s", date = "2025-01" }
"""


def _load(tmp_path, text):
    p = tmp_path / "user.toml"
    p.write_text(text)
    return kvmodel.load_hardware(p), p


def test_user_file_adds_entries(tmp_path, fresh_catalog):
    added, _ = _load(tmp_path, GOOD)
    assert "memory.test-ram" in added
    assert kvmodel.get_memory("test-ram").capacity_B == 64e9


def test_env_var_adds_user_file(tmp_path, monkeypatch, fresh_catalog):
    p = tmp_path / "env.toml"
    p.write_text(GOOD)
    monkeypatch.setenv("KVMODEL_HARDWARE", str(p))
    kvmodel.catalog.hardware.reset_catalog()
    assert kvmodel.get_memory("test-ram").read_bw_Bps == pytest.approx(38.4e9)


@pytest.mark.parametrize("old,new,match", [
    ('family = "ddr5"', 'family = "ddr5"\ncolour = "red"', r"unknown field.*colour"),
    ('kind = "datasheet", source = "s" }\nread', 'kind = "datasheet" }\nread', r"capacity: missing 'source'"),
    ('value = 64, unit = "GB"', 'value = 64', r"capacity: missing 'unit'"),
    ('value = 64, unit = "GB"', 'value = -64, unit = "GB"', r"capacity: must be > 0"),
    ('value = 64, unit = "GB"', 'value = 0, unit = "GB"', r"capacity: must be > 0"),
    ('value = 64, unit = "GB"', 'value = 64, unit = "Gigs"', r"capacity: unknown unit 'Gigs'"),
    ('value = 64, unit = "GB"', 'value = 64, unit = "GB/s"', r"capacity: unit 'GB/s' is a bandwidth"),
    ('value = 64, unit = "GB", kind = "datasheet"', 'value = 64, unit = "GB", kind = "guess"',
     r"kind 'guess'"),
    ('value = 64, unit = "GB", kind = "datasheet"', 'value = 64, unit = "GB", kind = "derived"',
     r"needs 'derivation'"),
    ('value = 64, unit = "GB", kind = "datasheet"', 'value = 64, unit = "GB", kind = "assumed"',
     r"needs 'reason'"),
    (', date = "2025-01"', '', r"price_per_gb: prices need 'date'"),
    ("schema_version = 1", "schema_version = 2", r"schema_version must be 1"),
    ("[memory.test-ram]", "[memori.test-ram]", r"unknown section \[memori\]"),
    ('latency = { value = 90, unit = "ns", kind = "datasheet", source = "s" }\n', '',
     r"latency: missing required field"),
])
def test_bad_entries_name_file_and_field(tmp_path, fresh_catalog, old, new, match):
    assert old in GOOD
    with pytest.raises(HardwareDBError, match=match) as exc:
        _load(tmp_path, GOOD.replace(old, new))
    assert "user.toml" in str(exc.value)
    assert "test-ram" in str(exc.value) or "schema_version" in str(exc.value) or "section" in str(exc.value)


def test_bad_reference_named(tmp_path, fresh_catalog):
    text = open(data_dir() / "nodes.toml").read().split("[node.", 2)
    entry = "[node." + text[1]
    bad = "schema_version = 1\n" + entry.replace(entry.split("\n")[0], "[node.my-node]")
    bad = bad.replace('gpu = "', 'gpu = "nonexistent-', 1)
    with pytest.raises(HardwareDBError, match=r"\[node.my-node\].gpu: unknown gpu"):
        _load(tmp_path, bad)


def test_invalid_toml(tmp_path, fresh_catalog):
    with pytest.raises(HardwareDBError, match="not valid TOML"):
        _load(tmp_path, "schema_version = 1\n[gpu.x\n")


def test_specs_are_frozen():
    g = kvmodel.get_gpu("h100-sxm")
    with pytest.raises(AttributeError):
        g.hbm_bw_Bps = 1.0
    with pytest.raises(TypeError):
        g.peak_flops["bf16"] = 1.0


def test_rejected_file_leaves_catalog_usable(tmp_path, fresh_catalog):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("[memory.test-ram]", "[memory.bad-ram]").replace(
        'family = "ddr5"', 'family = "ddr5"\n') + '\n[node.bad-node]\nname = "x"\n')
    with pytest.raises(HardwareDBError):
        kvmodel.load_hardware(bad)
    with pytest.raises(KeyError):
        kvmodel.get_memory("bad-ram")
    added, _ = _load(tmp_path, GOOD)  # a later good file still loads
    assert "memory.test-ram" in added
