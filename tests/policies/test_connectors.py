"""Connector registry: every catalog connector is a registered policy, its parameters are the
catalog's numbers with units and checked ranges, the closed form is the transfer model with the
connector's costs (golden values by hand on a round-number toy path), Cluster/search accept it,
and bad names or files give errors naming the field."""

import math

import numpy as np
import pytest

import kvmodel
from kvmodel import search
from kvmodel.catalog.hardware import Catalog, HardwareDBError, LinkSpec, get_connector, list_entries
from kvmodel.policies import CONNECTOR, FAMILIES, PolicyRef
from kvmodel.tiers import TransferPath

NAMES = list(CONNECTOR)


def _toy_path(bw=10e9):
    """One 10 GB/s full-duplex hop with no setup cost (latency 0)."""
    link = LinkSpec("toy", "toy", "pcie", bw, 0.0, "full", bw, None)
    return TransferPath("toy", (link,))


def test_registry_follows_the_catalog():
    assert "connector" in FAMILIES and FAMILIES["connector"] is CONNECTOR
    assert set(NAMES) == set(list_entries("connector"))


@pytest.mark.parametrize("name", NAMES)
def test_entry_params_are_the_catalog_numbers(name):
    c, e = get_connector(name), CONNECTOR[name]
    assert e.defaults() == {"per_request_s": c.per_request_s, "per_block_s": c.per_block_s,
                            "bandwidth_efficiency": c.bandwidth_efficiency}
    assert e.closed_form == f"transfer_seconds/{c.streaming}" and c.family in e.tags
    ref = CONNECTOR.make(name)
    assert isinstance(ref, PolicyRef) and CONNECTOR.name_of(ref) == name


@pytest.mark.parametrize("name", NAMES)
def test_closed_form_by_hand_on_a_toy_path(name):
    """1 GB in 1 MB transfers over 10 GB/s: per_request + 1000 x per_block + 0.1 s / eff."""
    c = get_connector(name)
    fn = CONNECTOR[name].closed_form_function()
    t = fn(_toy_path(), 1e9, 1e6, connector=name)
    assert t == pytest.approx(c.per_request_s + 1000 * c.per_block_s + 0.1 / c.bandwidth_efficiency)


@pytest.mark.parametrize("name", NAMES)
def test_monotone_in_concurrency_and_bandwidth(name):
    fn = CONNECTOR[name].closed_form_function()
    conc = np.array([1.0, 2.0, 4.0])
    t = fn(_toy_path(), 1e9, 1e6, connector=name, concurrent=conc)
    assert np.all(np.diff(t) > 0)
    assert fn(_toy_path(20e9), 1e9, 1e6, connector=name) <= fn(_toy_path(), 1e9, 1e6, connector=name)


def test_two_concurrent_loads_on_one_link_take_twice_as_long():
    fn = CONNECTOR["ideal"].closed_form_function()
    assert fn(_toy_path(), 1e9, 1e9, connector="ideal", concurrent=2.0) == pytest.approx(0.2)


def test_bad_names_and_params_name_the_field():
    with pytest.raises(ValueError, match="connector='nope'.*unknown policy"):
        CONNECTOR.get_entry("nope")
    with pytest.raises(ValueError, match="bandwidth_efficiency=1.5"):
        CONNECTOR.make("ideal", bandwidth_efficiency=1.5)
    with pytest.raises(ValueError, match="connector.*unknown policy"):
        kvmodel.evaluate(kvmodel.Cluster(model="llama-3.1-8b", gpu="h100-sxm", instances=2, tp=1,
                                         connector="nope"),
                         kvmodel.Workload(kvmodel.synthetic_trace(5)))


def test_bad_connector_file_names_the_field(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('schema_version = 1\n[connector.mine]\nname = "x"\nfamily = "lmcache"\n'
                   'per_request = { value = 1, unit = "ms", kind = "assumed", source = "me", '
                   'reason = "test" }\nper_block = { value = 0, unit = "s", kind = "assumed", '
                   'source = "me", reason = "test" }\nbandwidth_efficiency = { value = 2, '
                   'unit = "1", kind = "assumed", source = "me", reason = "test" }\n'
                   'streaming = "layer"\nsave = "async"\n')
    with pytest.raises(HardwareDBError, match="connector.mine.bandwidth_efficiency"):
        get_connector("mine", catalog=Catalog.default().with_file(bad))


def test_cluster_reports_the_connector_closed_form():
    w = kvmodel.Workload(kvmodel.synthetic_trace(60, seed=3), request_rate=1.0)
    c = kvmodel.Cluster(model="llama-3.1-8b", gpu="h100-sxm", instances=2, tp=1,
                        connector="lmcache-cpu")
    r = kvmodel.evaluate(c, w)
    assert r.closed_forms["connector"] == "transfer_seconds/before_prefill"
    assert kvmodel.evaluate(kvmodel.Cluster(model="llama-3.1-8b", gpu="h100-sxm", instances=2,
                                            tp=1), w).closed_forms["connector"] == "transfer_seconds/layer"


def test_search_dimension_takes_registered_connectors():
    w = {"trace": "synthetic"}
    fixed = {"model": "llama-3.1-8b", "gpu": "h100-sxm"}
    sp = search.space_from_dict({"workload": w, "fixed": fixed,
                                 "dims": {"connector": {"choices": NAMES}}})
    assert sp.dims[0].choices == tuple(NAMES)
    with pytest.raises(search.SpaceError, match="connector.*'nope'"):
        search.space_from_dict({"workload": w, "dims": {"connector": {"choices": ["nope"]}}})


def test_every_entry_has_a_sourced_number_not_all_assumed():
    for name in NAMES:
        if name == "ideal":
            continue
        q = get_connector(name).quantities
        kinds = {q[f]["kind"] if isinstance(q[f], dict) else q[f].kind
                 for f in ("per_request", "per_block", "bandwidth_efficiency")}
        assert kinds - {"assumed"}, name
        assert math.isfinite(get_connector(name).per_request_s)


def test_second_pass_entries_and_their_categories():
    """Mooncake Store (direct and as HiCache L3) and NIXL over UCX TCP: sourced costs, and all
    three load the whole KV before the prefill (engine code), saving asynchronously."""
    for name in ("mooncake-store", "sglang-hicache-l3-mooncake", "nixl-ucx-tcp"):
        c = get_connector(name)
        assert name in NAMES and c.streaming == "before_prefill" and not c.save_sync
    assert get_connector("mooncake-store").per_request_s == pytest.approx(2 * 0.473e-3, rel=0.01)
    assert get_connector("sglang-hicache-l3-mooncake").family == "sglang-hicache"


def test_ucx_tcp_is_an_order_slower_than_rdma_on_the_same_wire():
    """A 1 GB pull in 64 KB descriptors: the descriptor cost is shared, the bandwidth share is
    0.065 of the TCP link over UCX TCP vs 1.0 over RDMA, so TCP takes > 10x as long."""
    fn = CONNECTOR["nixl-ucx-tcp"].closed_form_function()
    rdma = fn(_toy_path(), 1e9, 65536, connector="nixl-ucx-rdma")
    tcp = fn(_toy_path(), 1e9, 65536, connector="nixl-ucx-tcp")
    assert tcp / rdma > 10
    assert tcp == pytest.approx(1e9 / 65536 * 3.9e-6 + 0.1 / 0.065)


def test_store_master_rpcs_dominate_a_small_load():
    """64 KB from the store over 10 GB/s: 6.6 us of bytes, 0.95 ms of master RPCs."""
    fn = CONNECTOR["mooncake-store"].closed_form_function()
    t = fn(_toy_path(), 65536, 65536, connector="mooncake-store")
    assert t == pytest.approx(0.95e-3 + 65536 / 10e9, rel=0.01)
    assert t > 100 * fn(_toy_path(), 65536, 65536, connector="ideal")


def test_ucx_tcp_rows_of_the_component_data():
    """The calibration row (nixlbench UCX TCP) is reproduced; the held-out one (ucx_perftest
    over IPoIB, never fitted) is predicted within 35%."""
    from kvmodel.tiers.fidelity import load_component_rows, predict_row
    rows = {r["id"]: r for r in load_component_rows()}
    for rid, tol in (("nixlbench-ucx-tcp-a3", 0.02), ("ucx-perftest-tcp-ipoib-edr", 0.35)):
        r = rows[rid]
        assert r["connector"] == "nixl-ucx-tcp"
        assert predict_row(r) == pytest.approx(float(r["value"]), rel=tol)
    assert rows["ucx-perftest-tcp-ipoib-edr"]["split"] == "holdout"


THIRD_PASS = ("lmcache-disk", "lmcache-remote", "lmcache-p2p", "sglang-hicache-l3-file",
              "dynamo-kvbm-g2", "dynamo-kvbm-g3", "dynamo-kvbm-g4")


def test_third_pass_entries_and_their_categories():
    """LMCache disk / remote / P2P, HiCache L3 file and Dynamo KVBM G2-G4: all load the whole KV
    before the prefill and save asynchronously (engine code and docs); LMCache copies with its
    CPU->GPU kernel, KVBM with cudaMemcpyAsync."""
    for name in THIRD_PASS:
        c = get_connector(name)
        assert name in NAMES and c.streaming == "before_prefill" and not c.save_sync, name
    assert {get_connector(n).family for n in THIRD_PASS} == {"lmcache", "sglang-hicache",
                                                            "dynamo-kvbm"}
    assert all(get_connector(n).copy == "kernel" for n in THIRD_PASS if n.startswith("lmcache"))
    assert all(get_connector(n).copy == "dma" for n in THIRD_PASS if n.startswith("dynamo"))


def test_lmcache_disk_pays_a_file_per_chunk():
    """1 GB in 32 MiB chunk files (a 256-token chunk of an 8B model) over 10 GB/s:
    ceil(1e9 / 2**25) = 30 files x 2.56 ms + 0.1 s of bytes."""
    fn = CONNECTOR["lmcache-disk"].closed_form_function()
    t = fn(_toy_path(), 1e9, 2**25, connector="lmcache-disk")
    assert t == pytest.approx(30 * 2.56e-3 + 0.1, rel=1e-3)


def test_kvbm_g2_unbatched_copies_cost_more_per_block_than_batched_dma():
    """KVBM issues one cudaMemcpyAsync per block (3.55 us); vLLM batches its swaps (2.56 us):
    a fragmented 4 KB-block load is slower through KVBM, a large-block one the same."""
    fn = CONNECTOR["dynamo-kvbm-g2"].closed_form_function()
    small = [fn(_toy_path(), 1e8, 4096, connector=n) for n in ("dynamo-kvbm-g2", "vllm-offload-dma")]
    assert small[0] > small[1]
    big = [fn(_toy_path(), 1e9, 1e9, connector=n) for n in ("dynamo-kvbm-g2", "vllm-offload-dma")]
    assert big[0] == pytest.approx(big[1], rel=1e-3)


def test_lmcache_remote_on_the_object_tier_adds_lookup_and_first_byte():
    """LMCache's 2.1 ms lookup and the S3 tier's 30 ms existence check both precede the GETs."""
    from kvmodel.tiers import node_tiers, transfer_seconds
    t = node_tiers("dgx-h100", object_B=1e15)["object"]
    ideal = transfer_seconds(t, 1e6, 1e6)
    remote = transfer_seconds(t, 1e6, 1e6, connector="lmcache-remote")
    assert ideal >= 30e-3 and remote - ideal >= 2.1e-3


def test_lmcache_p2p_rows_of_the_component_data():
    """LMCache PR #4432's P2P reads over 100 GbE RoCE (one > 4 GiB destination registration,
    the production L1) are the source of lmcache-p2p's share, so they are reproduced."""
    from kvmodel.tiers.fidelity import load_component_rows, predict_row
    rows = [r for r in load_component_rows() if r["connector"] == "lmcache-p2p"]
    assert len(rows) == 3 and all(r["split"] == "calibration" for r in rows)
    for r in rows:
        assert predict_row(r) == pytest.approx(float(r["value"]), rel=0.02)
