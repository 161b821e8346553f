"""KV-path fidelity report: the bundled component CSV loads, every row with a stated path is
predicted, the split is fixed in the data, errors name the line and column, and the CLI prints
the tables by connector, path and split."""

import pytest

from kvmodel.cli import main
from kvmodel.tiers.fidelity import (
    COLUMNS,
    connector_transfer_s,
    load_component_rows,
    path_from_spec,
    run_tier_validation,
)


def test_bundled_rows_are_well_formed_and_split_by_source():
    rows = load_component_rows()
    assert len(rows) >= 40 and len({r["id"] for r in rows}) == len(rows)
    assert {r["split"] for r in rows} == {"calibration", "holdout"}
    by_source = {}
    for r in rows:  # one source never feeds both sides
        by_source.setdefault(r["source"].split(":")[0], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_source.values()), by_source


def test_report_covers_every_row_with_a_path():
    rep = run_tier_validation()
    assert rep.total == len(load_component_rows())
    assert len(rep.rows) + sum(rep.skipped.values()) == rep.total
    assert all(r["predicted"] > 0 and r["ape"] >= 0 for r in rep.rows)
    assert {"calibration", "holdout"} <= set(rep.groups("split"))


def test_path_spec_and_write_direction():
    p = path_from_spec("memory:nvme-gen4>link:pcie4-x16", "write")
    assert len(p.links) == 1 and p.source_Bps > 0
    assert path_from_spec("memory:nvme-gen4", "read").source_Bps > p.source_Bps
    with pytest.raises(ValueError, match="hop 'disk:x'"):
        path_from_spec("disk:x")
    with pytest.raises(ValueError, match="direction='up'"):
        path_from_spec("link:pcie5-x16", "up")


def test_more_concurrency_is_never_faster():
    p = path_from_spec("link:pcie5-x16")
    t = [connector_transfer_s(p, 1e9, 1e6, connector="vllm-offload-dma", concurrent=c)
         for c in (1.0, 2.0, 4.0)]
    assert t[0] < t[1] < t[2]


def test_bad_csv_names_line_and_column(tmp_path):
    f = tmp_path / "x.csv"
    good = "pcie,link:pcie5-x16,1,ideal,1e6,1e9,1,read,seconds,0.02,calibration,me"
    f.write_text(",".join(COLUMNS) + "\n" + good.replace("seconds", "minutes") + "\n")
    with pytest.raises(ValueError, match="line 2: metric='minutes'"):
        load_component_rows(f)
    f.write_text(",".join(COLUMNS) + "\n" + good.replace(",1e9,", ",-1,") + "\n")
    with pytest.raises(ValueError, match="line 2: nbytes='-1'"):
        load_component_rows(f)
    f.write_text("id,path\n")
    with pytest.raises(ValueError, match="missing column"):
        load_component_rows(f)


def test_cli_validate_tiers(capsys):
    assert main(["validate", "--tiers", "--rows"]) == 0
    out = capsys.readouterr().out
    for s in ("absolute % error by connector", "by path", "holdout: n=", "pcie5-h2d-h200"):
        assert s in out


def _row(rid):
    return next(r for r in load_component_rows() if r["id"] == rid)


def test_lanes_get_their_share_of_the_measured_nic_aggregate():
    from kvmodel.tiers.fidelity import predict_row
    # 8 x 400G RoCE used together: the model's aggregate (190 GB/s, Mooncake TE), not 8 x 47.5
    assert predict_row(_row("te-rdma-8x400g")) == pytest.approx(190e9, rel=0.01)
    # one NIC: unchanged
    one = dict(_row("te-rdma-8x400g"), lanes="1", nbytes="5e9")
    assert predict_row(one) == pytest.approx(47.5e9, rel=0.01)


def test_batched_dma_per_descriptor_cost_is_not_counted_twice():
    from kvmodel.tiers.fidelity import predict_row
    # 4096 copies of 4 KB: posting 4096 x 2.56 us = 10.5 ms overlaps the engines' setups
    # (512 x 13.1 us = 6.7 ms); plus 16.8 MB at 55.4 GB/s = 0.3 ms -> 10.8 ms (measured 10.5 ms)
    assert predict_row(_row("dma-batch-4k-mi300x")) == pytest.approx(4096 * 2.56e-6 + 0.3e-3, rel=0.02)


def test_rows_on_an_unnamed_drive_have_no_path():
    for rid in ("gds-cpuonly-read", "gds-cpuonly-write", "gds-bounce-read", "gds-bounce-write"):
        assert _row(rid)["path"] == ""
