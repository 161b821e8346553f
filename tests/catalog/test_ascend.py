"""Huawei Ascend 910B / 910C as a non-NVIDIA example: the schema takes vendor 'huawei' and the
HCCS link family, the entries carry no FP8, and estimates run on them (or say why not)."""

import pytest

import kvmodel


@pytest.mark.parametrize("key", ["ascend-910b", "ascend-910c"])
def test_ascend_entries(key):
    g = kvmodel.get_gpu(key)
    assert g.vendor == "huawei"
    assert "fp8" not in g.peak_flops and "fp4" not in g.peak_flops
    assert g.peak_flops["bf16"] == g.peak_flops["fp16"]
    assert kvmodel.get_link(g.scale_up_link).family == "hccs"


def test_910c_is_two_910b_dies():
    b, c = kvmodel.get_gpu("ascend-910b"), kvmodel.get_gpu("ascend-910c")
    assert c.peak_flops["bf16"] == 2 * b.peak_flops["bf16"]
    assert c.hbm_capacity_B == 2 * b.hbm_capacity_B and c.hbm_bw_Bps == 2 * b.hbm_bw_Bps


def test_estimate_on_ascend_and_fp8_refused():
    e = kvmodel.estimate("llama-3.1-8b", "ascend-910b", tp=1, precision="bf16", input_len=2048,
                         output_len=256)
    assert bool(e.feasible) and e.tpot_s > 0
    e8 = kvmodel.estimate("llama-3.1-8b", "ascend-910b", tp=1, precision="fp8", input_len=2048,
                          output_len=256)
    assert not bool(e8.feasible) and "fp8" in str(e8.reason)


def test_mi355x_has_its_own_fabric():
    g = kvmodel.get_gpu("mi355x")
    link = kvmodel.get_link(g.scale_up_link)
    assert g.scale_up_link == "infinity-fabric-mi355x"
    assert link.bw_Bps == pytest.approx(g.scale_up_bw_Bps)


def test_unknown_vendor_is_an_error(tmp_path, fresh_catalog):
    text = (tmp_path / "x.toml")
    src = (kvmodel.catalog.hardware.data_dir() / "gpus.toml").read_text()
    block = src[src.index("[gpu.ascend-910b]"):src.index("[gpu.ascend-910c]")]
    text.write_text("schema_version = 1\n" + block.replace("ascend-910b", "x-npu")
                    .replace('vendor = "huawei"', 'vendor = "acme"'))
    with pytest.raises(kvmodel.HardwareDBError, match="acme"):
        kvmodel.load_hardware(text)
