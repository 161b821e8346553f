"""A hybrid model's cached prefix is resumed only where a state snapshot exists: the instance
knows of one at the prefix's end, so ``prefix_policy="split"`` (load part, recompute the rest)
recomputes a hybrid model's whole prompt; attention-only models still split."""

import kvmodel

KW = dict(input_len=32_768, output_len=128, cached_prefix_len=30_720, cache_tier="ssd",
          concurrency=1)


def test_hybrid_split_loads_nothing_and_equals_recompute():
    split = kvmodel.estimate("qwen3.5-9b", "h100-sxm", prefix_policy="split", **KW)
    rec = kvmodel.estimate("qwen3.5-9b", "h100-sxm", prefix_policy="recompute", **KW)
    assert float(split.prefix_loaded_tokens) == 0.0
    assert split.ttft_s == rec.ttft_s
    load = kvmodel.estimate("qwen3.5-9b", "h100-sxm", prefix_policy="load", **KW)
    assert float(load.prefix_loaded_tokens) == KW["cached_prefix_len"]  # a whole hit loads


def test_attention_only_models_still_split():
    split = kvmodel.estimate("llama-3.1-8b", "h100-sxm", prefix_policy="split", **KW)
    assert 0 < float(split.prefix_loaded_tokens) < KW["cached_prefix_len"]
