"""DP-attention with wide expert parallelism (DeepSeek/Kimi-style DP×EP deployments).

An EP group of ``ep`` GPUs (possibly spanning several nodes) serves ``ep / tp`` attention
ranks of ``tp`` GPUs each (``tp = 1`` is the usual DP-attention): every rank holds its own
requests and their KV (an MLA latent is therefore not replicated across ranks), and the
attention, dense-MLP, embedding and shared-expert weights are replicated on every rank; the
routed experts are sharded over the ``ep`` GPUs, ``ceil(E / ep)`` on the busiest one.

Per MoE layer every token's hidden state is dispatched to its top-k experts and the k results
combined back (DeepEP's dispatch / combine). On one GPU, per MoE layer, with ``T`` tokens on
its attention rank:

    bytes_dispatch = T/tp · k · h · B_dispatch        (fp8 where the GPU has it)
    bytes_combine  = T/tp · k · h · B_combine         (the 16-bit activation type)

Of the ``ep`` destinations ``g - 1`` share the GPU's node (NVLink, ``g = min(gpus_per_node,
ep)``), ``ep - g`` are on other nodes (the node's NICs; one GPU's share is ``nics /
gpus_per_node`` of them), one is the GPU itself. Each all-to-all is an alpha-beta term,
the two domains moving in parallel:

    t = α + max(bytes·(g-1)/ep / (bw_nvlink·η_nvlink), bytes·(ep-g)/ep / (bw_nic·η_rdma))

with α the calibrated collective latency, plus the NIC's latency when the group spans nodes;
η are DeepEP's published bottleneck bandwidths over the links' maxima (``hardware_db/
calibration.toml``: ``ep_alltoall_nvlink_efficiency``, ``ep_alltoall_rdma_efficiency``).
The expected routed-expert weights read per GPU and step are its local experts hit by the
whole group's ``T·ep/tp`` tokens: ``ceil(E/ep)·(1 - (1 - k/E)^(T·ep/tp))`` experts.
Not modelled: expert-load imbalance across ranks (uniform routing is assumed; redundant
experts and EPLB are what real deployments use against it) and attention-rank imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import GPUSpec, NodeSpec, get_link, get_node
from kvmodel.catalog.models import BYTES_PER_ELEMENT, ModelSpec
from kvmodel.instance.seam import num
from kvmodel.tiers import default_node_for_gpu

__all__ = ["WideEP", "wide_ep_arg", "wide_parallelism", "wide_ep_summary", "FORMULA"]

FORMULA = ("per MoE layer and GPU: bytes = tokens/tp * top_k * hidden * (B_dispatch + "
           "B_combine); t = 2*alpha + sum over dispatch, combine of max(bytes*(g-1)/ep / "
           "(bw_nvlink*eta_nvlink), bytes*(ep-g)/ep / (bw_nic*nics/gpus_per_node*eta_rdma)), "
           "g = min(gpus_per_node, ep)")
_KEYS = ("dispatch", "combine")


@dataclass(frozen=True)
class WideEP:
    """Resolved constants of the EP group's all-to-all (SI). ``ep`` may be an array."""

    ep: Any
    gpus_per_node: float
    dispatch_B: float     # bytes per element of a dispatched hidden state
    combine_B: float      # bytes per element of a combined expert output
    nvl_Bps: float        # one GPU's effective NVLink bandwidth for all-to-all
    net_Bps: float        # one GPU's effective share of the node's NICs for all-to-all
    alpha_s: float        # latency of one all-to-all inside the node
    net_alpha_s: float    # extra latency when the group spans nodes (one NIC hop)

    @property
    def local(self):
        """GPUs of the group on one node."""
        return xp.minimum(self.gpus_per_node, self.ep)

    def expert_read(self, m: ModelSpec, tokens, tp):
        """Routed-expert weight elements one GPU reads in a step (its local experts hit by the
        group's ``tokens·ep/tp`` tokens under uniform top-k routing)."""
        e, k = m.num_experts, m.experts_per_token
        hit = 1.0 - xp.power(1.0 - k / e, tokens * self.ep / tp)
        return xp.ceil(e / self.ep) * hit * m.expert_params

    def expert_weights(self, m: ModelSpec, tp):
        """Routed experts on the busiest GPU plus its TP share of the shared experts."""
        return xp.ceil(m.num_experts / self.ep) * m.expert_params + m.shared_expert_params / tp

    def alltoall(self, m: ModelSpec, tokens, tp, moe_layers) -> dict[str, Any]:
        """The ``ep_alltoall`` op of a step: dispatch + combine in every MoE layer."""
        per = tokens / tp * m.experts_per_token * m.hidden_size
        f_nvl = (self.local - 1.0) / self.ep
        f_net = (self.ep - self.local) / self.ep
        alpha = self.alpha_s + xp.where(f_net > 0, self.net_alpha_s, 0.0)
        t_nvl, t_net = 0.0, 0.0
        for size in (self.dispatch_B, self.combine_B):
            t_nvl = t_nvl + per * size * f_nvl / self.nvl_Bps
            t_net = t_net + per * size * f_net / self.net_Bps
        t = 2.0 * alpha + _both_max(self, per, f_nvl, f_net)
        on = xp.where(self.ep > 1, 1.0, 0.0)
        nbytes = per * (self.dispatch_B + self.combine_B) * (1.0 - 1.0 / self.ep)
        return {"flops": 0.0, "bytes": on * nbytes * moe_layers, "time_s": on * t * moe_layers,
                "nvlink_s": on * t_nvl * moe_layers, "network_s": on * t_net * moe_layers}


def _both_max(w: WideEP, per, f_nvl, f_net):
    """Transfer time of dispatch + combine, each bounded by the slower of its two domains."""
    out = 0.0
    for size in (w.dispatch_B, w.combine_B):
        out = out + xp.maximum(per * size * f_nvl / w.nvl_Bps, per * size * f_net / w.net_Bps)
    return out


def wide_ep_arg(attention_dp: Any) -> dict[str, str] | None:
    """``attention_dp`` checked: False/None (off), True (fp8 dispatch where the GPU has fp8,
    16-bit combine) or a mapping with keys among ``dispatch``, ``combine`` (precisions)."""
    if attention_dp is None or attention_dp is False:
        return None
    if attention_dp is True:
        return {}
    if not isinstance(attention_dp, Mapping):
        raise ValueError(f"attention_dp={attention_dp!r}: expected True, False or a mapping "
                         f"with keys among {list(_KEYS)}")
    unknown = sorted(set(attention_dp) - set(_KEYS))
    if unknown:
        raise ValueError(f"attention_dp: unknown key(s) {unknown}; allowed: {list(_KEYS)}")
    for key, p in attention_dp.items():
        if p not in BYTES_PER_ELEMENT:
            raise ValueError(f"attention_dp[{key!r}]={p!r}; allowed: {sorted(BYTES_PER_ELEMENT)}")
    return dict(attention_dp)


def wide_parallelism(m: ModelSpec, tp, pp, ep, num_gpus):
    """Validated (tp, pp, ep, num_gpus, attention ranks) of a DP-attention deployment:
    ``tp`` is the attention TP size, ``ep`` the EP group (default ``num_gpus``)."""
    if not m.is_moe:
        raise ValueError(f"attention_dp=True needs an MoE model (experts sharded over ep); "
                         f"{m.key} is dense")
    tp, pp = num("tp", tp), num("pp", pp)
    if xp.any_true(pp != 1):
        raise ValueError(f"pp={pp}: attention_dp supports pp=1 only")
    ep = num("ep", ep)
    if num_gpus is not None and not xp.any_true(ep > 1):
        ep = num("num_gpus", num_gpus)  # ep left at 1: the whole group is the EP group
    if xp.any_true(ep % tp != 0):
        raise ValueError(f"tp={tp} (attention TP) must divide ep={ep} with attention_dp")
    ngpu = ep if num_gpus is None else num("num_gpus", num_gpus)
    if xp.any_true(ngpu % ep != 0):
        raise ValueError(f"num_gpus={num_gpus} must be a multiple of ep={ep} (whole EP groups)")
    return tp, pp, ep, ngpu, ngpu / tp


def wide_ep(g: GPUSpec, ep, node: "str | NodeSpec | None", opts: Mapping[str, str],
            cal: Mapping[str, float], act_B: float) -> WideEP:
    """The all-to-all constants of an EP group of ``ep`` GPUs of ``g`` on ``node``, a node key
    or a :class:`NodeSpec` (e.g. a template with another ``nic_link``, as a Cluster's ``nic``
    builds it; default: the first node template built from the GPU)."""
    key = node if node is not None else default_node_for_gpu(g.key)
    if key is None:
        raise ValueError(f"attention_dp: no node template has gpu {g.key!r}; pass node= a node "
                         "key (kvmodel hardware node) for its GPUs per node and NICs")
    n = get_node(key)
    nic = get_link(n.nic_link)
    disp = opts.get("dispatch", "fp8" if g.supports("fp8") else None)
    return WideEP(
        ep=ep, gpus_per_node=float(n.gpus_per_node),
        dispatch_B=act_B if disp is None else BYTES_PER_ELEMENT[disp],
        combine_B=BYTES_PER_ELEMENT[opts["combine"]] if "combine" in opts else act_B,
        nvl_Bps=g.scale_up_bw_Bps * cal["ep_alltoall_nvlink_efficiency"],
        net_Bps=nic.bw_Bps * n.nics / n.gpus_per_node * cal["ep_alltoall_rdma_efficiency"],
        alpha_s=cal["collective_latency"], net_alpha_s=nic.latency_s)


def wide_ep_summary(w: WideEP, ops: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Result entries of the decode (or mixed) step: all-to-all bytes and time per GPU, the
    NVLink and network parts, and the all-to-all's share of the step."""
    a2a = ops["ep_alltoall"]
    total = 0.0
    for op in ops.values():
        total = total + op["time_s"]
    return {"ep": w.ep, "gpus_per_node": w.gpus_per_node, "dispatch_B": w.dispatch_B,
            "combine_B": w.combine_B, "alltoall_B_per_gpu": a2a["bytes"],
            "alltoall_s": a2a["time_s"], "nvlink_s": a2a["nvlink_s"],
            "network_s": a2a["network_s"],
            "alltoall_share": a2a["time_s"] / xp.where(total > 0, total, 1.0),
            "formula": FORMULA}
