"""Device time of the sampler in one engine step: top-k / top-p over the whole vocabulary.

Every step samples one token for each sequence that produces logits (``logits`` in
:func:`kvmodel.instance._roofline.step_ops`: the decoding sequences and the prompts that finish
in the step). A greedy request (temperature 0) takes an argmax of its row, which the LM-head
op's logit bytes already cover. A request with temperature > 0 and top-k / top-p runs the
engine's filter over its full vocabulary row on every tensor-parallel rank (vLLM V1 gathers
the logits to all ranks and each samples the same tokens), and that filter is expensive on
some engines' paths: vLLM's PyTorch-native one sorts each row, masks, and scatters it back in
vocabulary order (``apply_top_k_top_p``), and on an Ascend NPU the sort and the scatter take
milliseconds per step at serving batches.

Two inputs, both data: the framework entry's ``sampling_time`` (``hardware_db/frameworks.toml``)
is its sampler's device time per sampled sequence per vocabulary entry; the calibration
parameter ``sampled_sequence_share`` (``hardware_db/calibration.toml``) is the share of
sequences that sample with top-k / top-p (0: all greedy, what ``vllm bench serve`` sends unless
told otherwise). A framework without ``sampling_time`` is charged nothing (its sampler's cost is
taken as covered by the step's fixed costs), and so is every framework at a share of 0: the
term then leaves every estimate as it was.
"""

from __future__ import annotations

from typing import Any, Mapping

from kvmodel.catalog.hardware import FrameworkSpec

__all__ = ["TIME", "SHARE", "per_entry_s", "sampling_op"]

TIME = "sampling_time"              # frameworks.toml: s per sampled sequence per vocab entry
SHARE = "sampled_sequence_share"    # calibration.toml: share of sequences sampling with top-k/p


def per_entry_s(fw: FrameworkSpec, cal: Mapping[str, float]) -> float:
    """Mean sampler time per scheduled sequence per vocabulary entry (s): the framework's
    ``sampling_time`` x the calibration's ``sampled_sequence_share``; 0 where the framework
    has no ``sampling_time`` or the share is 0."""
    share = float(cal.get(SHARE, 0.0))
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"calibration {SHARE}={share!r}: the share of sequences that sample "
                         "with top-k / top-p; allowed: 0 to 1")
    q = fw.quantities.get(TIME)
    return 0.0 if q is None or share == 0.0 else share * q.si


def sampling_op(s: Any, logits) -> dict[str, Any]:
    """The step's sampler as an op entry of :func:`~kvmodel.instance._roofline.step_ops`:
    ``logits`` sampled rows x the model's vocabulary x ``s.sample_s`` (from
    :func:`per_entry_s`). Its time is on the device after the last pipeline stage, once per
    step; no FLOPs or bytes are attributed (the measured time stands for them)."""
    return {"flops": 0.0, "bytes": 0.0, "time_s": logits * s.model.vocab_size * s.sample_s}
