"""File and object tiers (issue 14 part 4): Lustre, WEKA, 3FS, NFS over RDMA and S3-class stores
as ``hardware_db`` memory entries of family ``file`` / ``object``, reached over a client link.

Golden values by hand on round-number toy paths: a load costs bytes / client bandwidth plus the
per-request metadata cost (open / lookup / first byte), which transfers in flight never hide.
"""

import io
from contextlib import redirect_stdout

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import Catalog, HardwareDBError, LinkSpec, list_entries, use_catalog
from kvmodel.tiers import (
    STORAGE_TIER_KINDS,
    TIER_KINDS,
    Tier,
    TransferPath,
    node_tiers,
    storage_tier,
    transfer_seconds,
)

STORAGE = [k for k in list_entries("memory") if kvmodel.get_memory(k).family in STORAGE_TIER_KINDS]


def _toy(request_s=2e-3, src=5e9):
    """A 10 GB/s hop with no setup cost behind a 5 GB/s source with a metadata cost."""
    link = LinkSpec("toy", "toy", "tcp", 10e9, 0.0, "full", 10e9, None)
    return TransferPath("toy", (link,), src, 0.0, request_s=request_s)


# ---- golden arithmetic ------------------------------------------------------------------------
def test_file_load_is_bytes_over_bandwidth_plus_metadata():
    """1 GB in 1 MB reads from a 5 GB/s source: 0.2 s + 2 ms of open/lookup."""
    assert transfer_seconds(_toy(), 1e9, 1e6) == pytest.approx(0.2 + 2e-3)
    assert _toy().time_s(1e9, 1e6) == pytest.approx(0.202)


def test_metadata_is_paid_per_request_and_adds_to_the_connector():
    """Three requests' loads pay three opens; a connector's own per-request cost adds on top:
    lmcache-remote (2.1 ms lookup, 0.55 of the bandwidth) over the toy store."""
    assert transfer_seconds(_toy(), 1e9, 1e6, requests=3.0) == pytest.approx(0.2 + 3 * 2e-3)
    t = transfer_seconds(_toy(), 1e9, 1e6, connector="lmcache-remote")
    assert t == pytest.approx(2.1e-3 + 2e-3 + 0.2 / 0.55)


def test_nothing_loaded_costs_nothing():
    t = transfer_seconds(_toy(), np.array([0.0, 1e9]), 1e6)
    assert t[0] == 0.0 and t[1] == pytest.approx(0.202)


TOY_FS = """schema_version = 1
[memory.toy-fs]
name = "Toy file system"
family = "file"
capacity = { value = 1000, unit = "TB", kind = "assumed", source = "test", reason = "toy" }
read_bandwidth = { value = 8, unit = "GB/s", kind = "assumed", source = "test", reason = "toy" }
write_bandwidth = { value = 4, unit = "GB/s", kind = "assumed", source = "test", reason = "toy" }
latency = { value = 1, unit = "us", kind = "assumed", source = "test", reason = "toy" }
metadata_latency = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "toy" }
queue_depth = { value = 16, unit = "count", kind = "assumed", source = "test", reason = "toy" }
client_link = "tcp-100g"
price_per_gb = { value = 1, unit = "USD/GB", kind = "assumed", source = "t", reason = "t", date = "2025-01" }
"""


@pytest.fixture
def toy_catalog(tmp_path):
    p = tmp_path / "toy.toml"
    p.write_text(TOY_FS)
    return Catalog.default().with_file(p)


def test_toy_entry_on_a_node_by_hand(toy_catalog):
    """dgx-h100 (8 GPUs, 8 NICs): the client's 8 GB/s read (4 GB/s write) is below 8 x 12.5 GB/s
    of tcp-100g, so each GPU gets 1 GB/s (0.5 GB/s); 1 GB then takes 1 s + setup + 1 ms."""
    with use_catalog(toy_catalog):
        t = storage_tier("toy-fs", 1e12, node="dgx-h100")
        assert (t.kind, t.capacity_B, t.device) == ("file", 1e12, "toy-fs")
        assert t.path.source_Bps == pytest.approx(1e9)
        assert t.path.source_write_Bps == pytest.approx(0.5e9)
        assert t.write_Bps == pytest.approx(4e9)
        assert (t.path.request_s, t.path.in_flight) == (pytest.approx(1e-3), 16.0)
        assert [l.key for l in t.path.links] == ["tcp-100g", "pcie5-x16"]
        load = transfer_seconds(t, 1e9, 1e9)
        assert load - t.path.setup_s(1e9) == pytest.approx(1.0 + 1e-3)


def test_node_tiers_lists_file_and_object_with_zero_default_capacity():
    tiers = node_tiers("dgx-h100")
    assert {"file", "object"} <= set(tiers) and set(STORAGE_TIER_KINDS) <= set(TIER_KINDS)
    assert tiers["file"].capacity_B == 0 and tiers["object"].capacity_B == 0
    assert tiers["file"].device == "fs-3fs" and tiers["object"].device == "s3-standard"


def test_3fs_entry_arithmetic():
    """3FS: 40 GiB/s per client (README), NIC-capped at 8 x ib-ndr, split over 8 GPUs."""
    t = node_tiers("dgx-h100", file_B=1e15)["file"]
    assert t.path.source_Bps == pytest.approx(40 * 2**30 / 8)
    assert t.path.request_s == pytest.approx(0.95e-3)


# ---- reachable from estimate and the connectors ------------------------------------------------
def test_estimate_takes_a_storage_tier_and_object_is_slower_than_file():
    kw = dict(tp=8, precision="bf16", input_len=8192 + 512, output_len=64,
              cached_prefix_len=8192, prefix_policy="load")
    f = kvmodel.estimate("llama-3.1-70b", "h100-sxm", cache_tier=storage_tier(
        "fs-3fs", 1e15, node="dgx-h100"), **kw)
    o = kvmodel.estimate("llama-3.1-70b", "h100-sxm", cache_tier=storage_tier(
        "s3-standard", 1e15, node="dgx-h100"), **kw)
    assert f.feasible and o.feasible and o.ttft_s > f.ttft_s > 0


def test_connector_over_a_file_tier_pays_both_costs():
    """HiCache L3 file backend on the 3FS tier: the tier's 0.95 ms open plus 80 us per page."""
    t = node_tiers("dgx-h100", file_B=1e15)["file"]
    meta, bytes_s = t.path.request_s, 1e9 / t.path.bandwidth_Bps()
    setups = transfer_seconds(t, 1e9, 1e6) - meta - bytes_s
    assert setups >= 0
    conn = transfer_seconds(t, 1e9, 1e6, connector="sglang-hicache-l3-file")
    assert conn == pytest.approx(meta + 1000 * 80e-6 + bytes_s / 0.35 + setups)


@pytest.mark.parametrize("kind", STORAGE_TIER_KINDS)
def test_more_concurrent_loads_are_slower_faster_network_never_slower(kind):
    t = node_tiers("dgx-h100", **{f"{kind}_B": 1e15})[kind]
    conc = np.array([1.0, 2.0, 4.0])
    assert np.all(np.diff(transfer_seconds(t, 1e9, 1e6, concurrent=conc)) > 0)
    fast = node_tiers("dgx-h100", nic="roce-800g", **{f"{kind}_B": 1e15})[kind]
    assert transfer_seconds(fast, 1e9, 1e6) <= transfer_seconds(t, 1e9, 1e6) * (1 + 1e-9)


# ---- conformance over every file / object entry ----------------------------------------------
@pytest.mark.parametrize("key", STORAGE)
def test_every_storage_entry_builds_a_tier(key):
    m = kvmodel.get_memory(key)
    q = m.quantities
    assert 0 <= q["metadata_latency"].si < 1.0 and 0 < m.latency_s < 1.0
    assert kvmodel.get_link(q["client_link"]).bw_Bps > 0
    t = storage_tier(key, 1e15, node="dgx-h100")
    assert isinstance(t, Tier) and t.kind == m.family
    assert 0 < t.path.source_Bps <= m.read_bw_Bps / 8 * (1 + 1e-9)
    assert 0 < t.path.source_write_Bps <= m.write_bw_Bps / 8 * (1 + 1e-9)
    assert t.path.request_s == pytest.approx(q["metadata_latency"].si)
    assert np.isfinite(transfer_seconds(t, 1e9, 1e6))
    assert t.price_per_B > 0


def test_every_family_has_an_entry_and_hardware_lists_them():
    assert {"file", "object"} <= {kvmodel.get_memory(k).family for k in STORAGE}
    from kvmodel.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        main(["hardware", "memory"])
    assert set(STORAGE) <= set(out.getvalue().split())
    out = io.StringIO()
    with redirect_stdout(out):
        main(["hardware", "memory", "s3-standard"])
    assert "metadata_latency" in out.getvalue() and "client_link" in out.getvalue()


# ---- bad input names the field ------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"file_system": "nope"}, r"file_system='nope': unknown file entry; known: .*fs-3fs"),
    ({"object_store": "fs-3fs"}, r"object_store='fs-3fs' has family 'file', not 'object'"),
    ({"file_system": "s3-standard"}, r"file_system='s3-standard' has family 'object'"),
    ({"file_B": -1.0}, r"file_B=-1.0: must be a finite number >= 0"),
    ({"object_B": float("nan")}, r"object_B=nan"),
])
def test_bad_node_tier_arguments_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        node_tiers("dgx-h100", **kwargs)


def test_bad_storage_tier_and_cache_tier_names():
    with pytest.raises(ValueError, match=r"system='ddr5-4800': not a file system or object store"):
        storage_tier("ddr5-4800", 1e12, node="dgx-h100")
    with pytest.raises(ValueError, match=r"cache_tier='file': the node template has no file"):
        kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=4096, output_len=16,
                         cached_prefix_len=2048, cache_tier="file")


@pytest.mark.parametrize("old,new,match", [
    ('metadata_latency = { value = 1, unit = "ms", kind = "assumed", source = "test", '
     'reason = "toy" }\n', "", r"\[memory.toy-fs\].metadata_latency: required for family 'file'"),
    ('client_link = "tcp-100g"\n', "", r"\[memory.toy-fs\].client_link: required"),
    ('client_link = "tcp-100g"', 'client_link = "tcp-9000g"', r"client_link: unknown link 'tcp-9000g'"),
    ('family = "file"', 'family = "nfs"', r"toy-fs\].family: 'nfs' not one of"),
    ('value = 1, unit = "ms"', 'value = 1, unit = "GB"', r"metadata_latency: unit 'GB' is a bytes"),
])
def test_bad_storage_entries_name_the_field(tmp_path, old, new, match):
    assert old in TOY_FS
    p = tmp_path / "bad.toml"
    p.write_text(TOY_FS.replace(old, new))
    with pytest.raises(HardwareDBError, match=match):
        Catalog.default().with_file(p)
