"""What a config costs: parameters and multiply-accumulates (MACs), by fvcore tracing or in closed form.

``count(config, method="fvcore")`` traces the generated model with fvcore, adding the handle fvcore lacks
for ``aten::scaled_dot_product_attention`` (v1 attention). Every op fvcore still leaves uncounted is
reported and must be one of ``ELEMENTWISE_OPS``: ops that do no multiply-add (activations, residual adds,
broadcast products, softmax). ``method="closed_form"`` prices the same network from its block plan alone,
with fvcore's own conventions (a conv or linear MAC per weight use; BatchNorm 2 per element in eval mode;
LayerNorm/GroupNorm 5 per element; bilinear resize 4 per output element; average pool 1 per input element),
so both methods agree to the unit; the closed form is thousands of times faster and sweeps whole grids.
``CLOSED_FORM`` maps each block kind of the plan (``blocks.block_plan``) to its closed-form price.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .blocks import (
    AttentionSpec,
    BlockSpec,
    HeadSpec,
    MobileViTV1Spec,
    MobileViTV2Spec,
    MV2Spec,
    StemSpec,
    block_plan,
    stage_groups,
)
from .config import ArchConfig
from .space import FactorSpace

STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4", "layer5", "head")
METHODS = ("fvcore", "closed_form")
# Ops that fvcore neither counts nor ignores, and which do no multiply-add.
ELEMENTWISE_OPS = frozenset({"aten::silu", "aten::relu", "aten::add", "aten::mul", "aten::softmax"})


@dataclass(frozen=True)
class StageCost:
    name: str
    channels: int
    blocks: int  # MV2 blocks (stem and head: 1 conv or classifier)
    attn_dim: int  # 0 where the stage has no MobileViT block
    attn_layers: int
    macs: int
    params: int


@dataclass(frozen=True)
class Cost:
    config: ArchConfig
    params: int
    macs: int
    method: str
    stages: tuple[StageCost, ...]
    uncounted_ops: dict[str, int] = field(default_factory=dict)  # fvcore only: op -> occurrences

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "config_id": self.config.id,
            "params": self.params,
            "macs": self.macs,
            "method": self.method,
            "stages": [s.__dict__ for s in self.stages],
            "uncounted_ops": dict(self.uncounted_ops),
        }


def count(config: ArchConfig, method: str = "fvcore") -> Cost:
    """Params, MACs and the per-stage breakdown of ``config`` at batch 1 and its own resolution."""
    if method == "fvcore":
        return fvcore_cost(config)
    if method == "closed_form":
        return closed_form_cost(config)
    raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")


# ---- fvcore ----------------------------------------------------------------------------------------
def _sdpa_macs(inputs, outputs) -> int:
    """softmax(QK^T)V: N*S*E MACs for the scores plus N*S*Ev for the weighted sum, per batch-and-head."""
    # local: fvcore loads torch, which closed-form counts never need
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def check_uncounted(ops: dict[str, int]) -> None:
    """Fail loudly if fvcore skipped an op that may do multiply-adds: its MACs would be missing."""
    unknown = sorted(set(ops) - ELEMENTWISE_OPS)
    if unknown:
        raise RuntimeError(f"fvcore left op(s) uncounted that may do multiply-adds: {', '.join(unknown)}")


def fvcore_cost(config: ArchConfig) -> Cost:
    # local: torch and fvcore load only when a model is traced, never for closed-form counts
    import torch
    from fvcore.nn import FlopCountAnalysis

    from .generator import build_model

    model = build_model(config).eval()
    x = torch.zeros(1, 3, config.resolution, config.resolution)
    analysis = FlopCountAnalysis(model, x).set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        per_module = analysis.by_module()
    uncounted = dict(Counter(analysis.unsupported_ops()))
    check_uncounted(uncounted)
    rows = {stage: _stage_row(blocks) for stage, blocks in stage_groups(block_plan(config))}
    stages = tuple(
        StageCost(
            name, *rows[name],
            macs=int(per_module.get(name, 0)),
            params=sum(p.numel() for p in getattr(model, name).parameters()),
        )
        for name in STAGE_NAMES
    )
    return Cost(
        config,
        params=sum(p.numel() for p in model.parameters()),
        macs=int(analysis.total()),
        method="fvcore",
        stages=stages,
        uncounted_ops=uncounted,
    )


def _stage_row(blocks: tuple[BlockSpec, ...]) -> tuple[int, int, int, int]:
    """channels, blocks (MV2 blocks, else 1), attention dim and layers of a stage, for the breakdown."""
    last = blocks[-1]
    channels = last.pooled if isinstance(last, HeadSpec) else last.c_out
    mv2 = sum(b.kind == "mv2" for b in blocks) or 1
    if isinstance(last, AttentionSpec):  # a stage's MobileViT block is its last block
        return channels, mv2, last.dim, last.depth
    return channels, mv2, 0, 0


# ---- closed form -----------------------------------------------------------------------------------
# Each helper returns (macs, params) at batch 1 (square maps of output side ``s_out``).
def _conv_bn(c_in: int, c_out: int, k: int, s_out: int, groups: int = 1) -> tuple[int, int]:
    weights = c_out * (c_in // groups) * k * k
    return weights * s_out * s_out + 2 * c_out * s_out * s_out, weights + 2 * c_out


def _stem(b: StemSpec) -> tuple[int, int]:
    return _conv_bn(b.c_in, b.c_out, b.kernel, b.side_out)


def _mv2(b: MV2Spec) -> tuple[int, int]:
    """1x1 expand + BN at the input side; 3x3 depthwise + BN and 1x1 project + BN at the output side."""
    hidden, c_in, c_out, s_in, s_out = b.hidden, b.c_in, b.c_out, b.side, b.side_out
    macs = (hidden * c_in + 2 * hidden) * s_in * s_in + (11 * hidden + c_out * hidden + 2 * c_out) * s_out * s_out
    return macs, hidden * (c_in + c_out + 13) + 2 * c_out


def _v1_block(b: MobileViTV1Spec) -> tuple[int, int]:
    """v1 resizes the d-channel map to an even side and back: 4 MACs per output element each way."""
    c, d, ffn, layers, s = b.c_in, b.dim, b.ffn_dim, b.depth, b.side
    area = b.even_side**2  # pixels after resizing to an even side: P * N with P = 4
    tokens = area // 4
    local = _conv_bn(c, c, 3, s)
    proj = _conv_bn(d, c, 1, s)
    fusion = _conv_bn(2 * c, c, 3, s)
    layer_macs = (
        2 * 5 * d * area  # two LayerNorms
        + 3 * d * d * area + d * d * area  # qkv and output projections
        + 2 * area * tokens * d  # QK^T and AV: 4 patch positions x heads x N x N x head_dim, twice
        + 2 * d * ffn * area  # FFN
    )
    layer_params = 4 * d * d + 2 * d * ffn + 4 * d + 4 * d + ffn + d
    resize = 4 * d * (area + s * s) if s % 2 else 0
    macs = local[0] + c * d * s * s + resize + layers * layer_macs + 5 * d * area + proj[0] + fusion[0]
    params = local[1] + c * d + layers * layer_params + 2 * d + proj[1] + fusion[1]
    return macs, params


def _v2_block(b: MobileViTV2Spec) -> tuple[int, int]:
    """v2 resizes its C-channel input to an even side (4 MACs per output element) and keeps that side."""
    c, d, ffn, layers = b.c_in, b.dim, b.ffn_dim, b.depth
    s = b.even_side
    resize = 4 * c * s * s if b.side % 2 else 0
    area = s * s
    local = _conv_bn(c, c, 3, s, groups=c)
    proj = _conv_bn(d, c, 1, s)
    layer_macs = (
        2 * 5 * d * area  # two GroupNorms
        + (1 + 2 * d) * d * area  # q, k, v projection
        + d * area  # context vector: sum over patches of k * softmax(q)
        + d * d * area  # output projection
        + 2 * d * ffn * area  # FFN
    )
    layer_params = 3 * d * d + 2 * d * ffn + 9 * d + ffn + 1
    macs = resize + local[0] + c * d * area + layers * layer_macs + 5 * d * area + proj[0]
    params = local[1] + c * d + layers * layer_params + 2 * d + proj[1]
    return macs, params


def _head(b: HeadSpec) -> tuple[int, int]:
    """Optional 1x1 expansion conv + BN, average pool (1 MAC per input element), FC."""
    macs, params = _conv_bn(b.c_in, b.features, 1, b.side) if b.features else (0, 0)
    features, s = b.pooled, b.side
    return macs + features * s * s + features * b.c_out, params + (features + 1) * b.c_out


# kind -> (macs, params) of one block of the plan
CLOSED_FORM: dict[str, Callable[[Any], tuple[int, int]]] = {
    "stem": _stem, "mv2": _mv2, "mobilevit_v1": _v1_block, "mobilevit_v2": _v2_block, "head": _head,
}


def distinct_networks(space: FactorSpace) -> Iterator[tuple[ArchConfig, int]]:
    """``(config, closed-form MACs)`` for each distinct network of the space's grid (the first grid point
    that builds it): grid points such as v2 MV2 depth 0.75 and 1.0 build the same network."""
    seen = set()
    for config in space.grid():
        key = config.network_key()
        if key not in seen:
            seen.add(key)
            yield config, closed_form_cost(config).macs


def closed_form_cost(config: ArchConfig) -> Cost:
    """``config``'s cost priced block by block from its block plan (no model is built)."""
    stages = []
    for stage, blocks in stage_groups(block_plan(config)):
        macs = params = 0
        for b in blocks:
            m, p = CLOSED_FORM[b.kind](b)
            macs, params = macs + m, params + p
        stages.append(StageCost(stage, *_stage_row(blocks), macs=macs, params=params))
    return Cost(
        config,
        params=sum(s.params for s in stages),
        macs=sum(s.macs for s in stages),
        method="closed_form",
        stages=tuple(stages),
    )
