import json

from kvmodel.cli import main


def test_estimate_default_runs(capsys):
    assert main(["estimate"]) == 0
    out = capsys.readouterr().out
    assert "llama-3.1-70b" in out and "decode step" in out and "tp_allreduce" in out


def test_estimate_json_has_contract_fields(capsys):
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpu", "h200-sxm", "--tp", "1",
                 "--input-len", "512", "--output-len", "64", "--batch", "max", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for f in ("ttft_s", "tpot_s", "e2e_s", "output_tok_per_s", "batch", "feasible", "reason",
              "breakdown", "interval"):
        assert f in d
    assert d["feasible"] is True and d["output_tok_per_s"] > 0


def test_bad_input_is_a_clear_error(capsys):
    assert main(["estimate", "--gpu", "nope"]) == 2
    assert "unknown gpu 'nope'" in capsys.readouterr().err
    assert main(["estimate", "--input-len", "0"]) == 2
    assert "input_len" in capsys.readouterr().err


def test_infeasible_is_reported(capsys):
    assert main(["estimate", "--tp", "3"]) == 0
    assert "INFEASIBLE: tp=3" in capsys.readouterr().out


def test_validate_hardware_models(capsys):
    assert main(["validate"]) == 0
    assert "absolute % error by metric" in capsys.readouterr().out
    assert main(["hardware", "gpu", "h100-sxm"]) == 0
    assert "hbm_bandwidth" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert "deepseek-v3" in capsys.readouterr().out


def test_open_loop_cli(capsys):
    assert main(["estimate", "--request-rate", "2"]) == 0
    out = capsys.readouterr().out
    assert "p50/p90/p99" in out and "stable" in out
    assert main(["estimate", "--request-rate", "500"]) == 0
    assert "UNSTABLE" in capsys.readouterr().out


def test_estimate_refuses_two_modes(capsys):
    """--batch used to be dropped silently next to --concurrency (the API raises)."""
    assert main(["estimate", "--batch", "4", "--concurrency", "4"]) == 2
    assert "not two" in capsys.readouterr().err
    assert main(["estimate", "--batch", "max", "--request-rate", "1"]) == 2
    assert main(["estimate", "--concurrency", "4"]) == 0
