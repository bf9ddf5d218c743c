"""A network as a sequence of blocks: the unit of the latency lookup table and of the regression's features.

``network_blocks(config)`` reads the block plan that ``model.MobileViT`` is built from (``model.blocks``): the
stem, every MV2 block, each MobileViT block split into its shell (local convs, projections, patch unfold/fold
and, for v1, the concat and fusion conv) and its attention layers, and the classifier head; ``LATENCY_BLOCKS``
maps each plan kind to its latency blocks. A block is identified by its
kind and the shapes that fix its cost, so the same block in two networks is one lookup-table entry:
``("mv2", (c_in, c_out, stride, expansion, side))``, ``("v1-layer", (d, ffn, even side))`` and so on (sides
are the block's input side; ``even`` the side after the resize to an even side where the map is odd).

``build_block`` makes the module and its input shape, from the generator's own classes; ``block_features``
prices a block by op class (dense and depthwise MACs, attention matmuls, elements written, normalised
elements, one count) for the feature regression.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..model.blocks import (
    AttentionSpec,
    BlockSpec,
    HeadSpec,
    MV2Spec,
    StemSpec,
    block_plan,
)
from ..model.config import V1_HEADS, ArchConfig, make_divisible

KINDS = ("stem", "mv2", "v1-shell", "v1-layer", "v2-shell", "v2-layer", "head")
FEATURE_CLASSES = ("dense", "dw", "attn", "elems", "norm", "count")


@dataclass(frozen=True, order=True)
class Block:
    kind: str
    shape: tuple[int, ...]

    @property
    def key(self) -> str:
        """Canonical text key, e.g. ``mv2:16,24,2,2,64`` (a lookup-table row)."""
        return f"{self.kind}:{','.join(map(str, self.shape))}"

    @classmethod
    def from_key(cls, key: str) -> Block:
        kind, _, shape = key.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown block kind {kind!r}")
        return cls(kind, tuple(int(v) for v in shape.split(",")))


def _attention(b: AttentionSpec, family: str) -> list[Block]:
    """A MobileViT block as its shell at the input side, then its layers at the even side."""
    shell = Block(f"{family}-shell", (b.c_in, b.dim, b.side))
    return [shell] + [Block(f"{family}-layer", (b.dim, b.ffn_dim, b.even_side))] * b.depth


def _stem(b: StemSpec) -> list[Block]:
    return [Block("stem", (b.c_out, b.side))]


def _mv2(b: MV2Spec) -> list[Block]:
    return [Block("mv2", (b.c_in, b.c_out, b.stride, b.expansion, b.side))]


def _head(b: HeadSpec) -> list[Block]:
    return [Block("head", (b.c_in, b.features, b.side, b.c_out))]


# plan kind (``model.blocks``) -> the latency blocks of one block of the plan
LATENCY_BLOCKS: dict[str, Callable[[Any], list[Block]]] = {
    "stem": _stem,
    "mv2": _mv2,
    "mobilevit_v1": lambda b: _attention(b, "v1"),
    "mobilevit_v2": lambda b: _attention(b, "v2"),
    "head": _head,
}


def plan_blocks(spec: BlockSpec) -> list[Block]:
    """The latency blocks of one block spec of the plan."""
    return LATENCY_BLOCKS[spec.kind](spec)


def network_blocks(config: ArchConfig) -> list[Block]:
    """Every block of ``config``'s network in forward order (attention layers once per layer)."""
    return [block for spec in block_plan(config) for block in plan_blocks(spec)]


def distinct_blocks(configs: Iterable[ArchConfig]) -> list[Block]:
    """The blocks the networks of ``configs`` are made of, each once, sorted."""
    return sorted({b for c in configs for b in network_blocks(c)})


def build_block(block: Block, batch: int = 1) -> tuple[Any, tuple[int, ...]]:
    """``(module, input shape)`` of one block, built from the generator's classes (fresh weights)."""
    # local: torch loads only when a block is built, not for tables, features or predictions
    from torch import nn

    from ..model.generator import (
        ClassifierHead,
        ConvNormAct,
        InvertedResidual,
        LinearTransformerLayer,
        MobileViTBlock,
        MobileViTV2Block,
        TransformerLayer,
        init_weights,
    )

    s = block.shape
    if block.kind == "stem":
        module, shape = ConvNormAct(3, s[0], 3, stride=2), (batch, 3, s[1], s[1])
    elif block.kind == "mv2":
        module, shape = InvertedResidual(s[0], s[1], s[2], s[3]), (batch, s[0], s[4], s[4])
    elif block.kind in ("v1-shell", "v2-shell"):
        cls = MobileViTBlock if block.kind == "v1-shell" else MobileViTV2Block
        module, shape = cls(s[0], s[1], 2 * s[1], layers=0), (batch, s[0], s[2], s[2])
    elif block.kind == "v1-layer":  # tokens [B * 4 patch positions, N patches, d]
        module, shape = TransformerLayer(s[0], s[1], V1_HEADS), (batch * 4, s[2] * s[2] // 4, s[0])
    elif block.kind == "v2-layer":  # [B, d, 4 patch positions, N patches]
        module, shape = LinearTransformerLayer(s[0], s[1]), (batch, s[0], 4, s[2] * s[2] // 4)
    elif block.kind == "head":
        module, shape = ClassifierHead(s[0], s[1], s[3]), (batch, s[0], s[2], s[2])
    else:
        raise ValueError(f"unknown block kind {block.kind!r}")
    module = nn.Sequential(module)
    init_weights(module)
    return module.eval(), shape


def block_features(block: Block) -> dict[str, float]:
    """Batch-1 work of one block by op class: dense MACs (full convs, linears), depthwise MACs, attention
    matmul MACs, elements written, normalised elements (Layer/Group/BatchNorm outside fused convs) and 1."""
    s = block.shape
    f = dict.fromkeys(FEATURE_CLASSES, 0.0)
    f["count"] = 1.0
    if block.kind == "stem":
        c, side = s[0], s[1] // 2
        f["dense"], f["elems"] = 27 * c * side**2, 2 * c * side**2
    elif block.kind == "mv2":
        c_in, c_out, stride, expansion, side = s
        hidden, out = make_divisible(round(c_in * expansion), 8), side // stride
        f["dense"] = hidden * c_in * side**2 + c_out * hidden * out**2
        f["dw"] = 9 * hidden * out**2
        f["elems"] = 2 * hidden * side**2 + 2 * hidden * out**2 + c_out * out**2 * (2 if stride == 1 and c_in == c_out
                                                                                     else 1)
    elif block.kind in ("v1-shell", "v2-shell"):
        c, d, side = s
        even = side + side % 2
        resized = side != even
        if block.kind == "v1-shell":
            f["dense"] = 9 * c * c * side**2 + 2 * c * d * side**2 + 18 * c * c * side**2
            f["elems"] = (6 * c + d) * side**2 + 3 * d * even**2 + (2 * d * (even**2 + side**2) if resized else 0)
        else:
            f["dw"] = 9 * c * even**2
            f["dense"] = 2 * c * d * even**2
            f["elems"] = (3 * c + 3 * d) * even**2 + (c * even**2 if resized else 0)
        f["norm"] = d * even**2
    elif block.kind == "v1-layer":
        d, ffn, even = s
        area, tokens = even**2, even**2 // 4
        f["dense"] = 4 * d * d * area + 2 * d * ffn * area
        f["attn"] = 2 * area * tokens * d
        f["elems"] = (8 * d + 2 * ffn) * area + 2 * V1_HEADS * 4 * tokens**2
        f["norm"] = 2 * d * area
    elif block.kind == "v2-layer":
        d, ffn, even = s
        area = even**2
        f["dense"] = (1 + 2 * d) * d * area + d * d * area + 2 * d * ffn * area
        f["attn"] = d * area
        f["elems"] = (1 + 7 * d + 2 * ffn) * area
        f["norm"] = 2 * d * area
    elif block.kind == "head":
        c, head, side, classes = s
        f["dense"] = head * c * side**2 + (head or c) * classes
        f["elems"] = 2 * head * side**2 + (head or c) + classes
    return f


def feature_names() -> list[str]:
    return [f"{kind}:{cls}" for kind in KINDS for cls in FEATURE_CLASSES]


def network_features(config: ArchConfig) -> dict[str, float]:
    """``block_features`` summed per block kind: ``{"mv2:dense": ..., "v2-layer:count": ...}``."""
    total: Counter[str] = Counter()
    for block, n in Counter(network_blocks(config)).items():
        for cls, value in block_features(block).items():
            total[f"{block.kind}:{cls}"] += n * value
    return {name: float(total.get(name, 0.0)) for name in feature_names()}
