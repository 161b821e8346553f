"""Prefix transfers of models with mixed layer kinds move what each layer holds: a sliding
layer at most its window of the prefix, a linear-attention layer its state snapshot; models
whose layers all attend to every token keep the per-token rate."""

import numpy as np
import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance._prefix import kv_bytes_per_token_gpu, prefix_bytes_gpu
from kvmodel.instance.seam import params, setup


def _setup(model, tp=1.0):
    return setup(get_model(model), get_gpu("h100-sxm"), get_framework("vllm"), tp, 1.0, 1.0,
                 "bf16", "bf16", params())


def test_full_attention_keeps_the_per_token_rate():
    s = _setup("llama-3.1-8b")
    P = np.array([0.0, 1.0, 4096.0, 100_000.0])
    assert np.array_equal(prefix_bytes_gpu(s, P), P * kv_bytes_per_token_gpu(s))


def test_gpt_oss_sliding_layers_hold_their_window():
    """gpt-oss-20b: 12 full + 12 sliding layers (window 128), 8 KV heads x 64, bf16: a prefix
    of P tokens moves (12 P + 12 min(P, 128)) x 8 x 64 x 2 x 2 bytes on one GPU."""
    s = _setup("gpt-oss-20b")
    m = s.model
    assert m.layer_counts["full"] == m.layer_counts["sliding"] == 12 and m.sliding_window == 128
    for P in (64.0, 128.0, 8192.0):
        want = (12 * P + 12 * min(P, 128.0)) * 8 * 64 * 2 * 2
        assert prefix_bytes_gpu(s, P) == pytest.approx(want, rel=1e-12)
    assert prefix_bytes_gpu(s, 8192.0) < 8192.0 * kv_bytes_per_token_gpu(s)


def test_requests_split_the_tokens_before_the_window_applies():
    s = _setup("gpt-oss-20b")
    one = prefix_bytes_gpu(s, 8192.0)
    assert prefix_bytes_gpu(s, 4 * 8192.0, requests=4.0) == pytest.approx(4 * one, rel=1e-12)
    assert prefix_bytes_gpu(s, 0.0) == 0.0


def test_hybrid_linear_layers_add_a_state_snapshot():
    s = _setup("qwen3-next-80b-a3b", tp=2.0)
    m = s.model
    small, large = prefix_bytes_gpu(s, 16.0), prefix_bytes_gpu(s, 16_000.0)
    state = m.kv_bytes_rank(0.0, s.kv_B, s.tp)  # recurrent state only
    assert state > 0 and small > state and large > small
    assert prefix_bytes_gpu(s, 16_000.0) == pytest.approx(
        m.kv_bytes_rank(16_000.0, s.kv_B, s.tp), rel=1e-12)
