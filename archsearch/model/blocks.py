"""The block plan: a config expanded once into the ordered blocks of its network, as data.

``block_plan(config)`` walks the stage plan (``ArchConfig.stages()``) into the blocks the network is made
of, in forward order: the conv stem, every MV2 block, each stage's MobileViT block and the classifier head.
Each block is a frozen dataclass that carries everything its consumers need (channels, stride, the side of
the map it reads, expansion, transformer dims and depth), so the generator (modules), the cost model (closed
form), the latency model (lookup-table blocks) and the timm and ml-cvnets exports all read one expansion
instead of each walking the stages their own way. Each consumer maps ``block.kind`` to what it makes of a
block through a small registry, as timm's model files do.

No torch here: light commands (counting, latency tables, exports) import this module.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from .config import PATCH_SIZE, V1_HEADS, ArchConfig, make_divisible

KINDS = ("stem", "mv2", "mobilevit_v1", "mobilevit_v2", "head")  # the keys of every consumer's registry


@dataclass(frozen=True)
class BlockSpec:
    """What every block has: the stage (module) it is built into, its channels and the side it reads."""

    kind: ClassVar[str]
    stage: str  # "stem", "layer1".."layer5" or "head"
    c_in: int
    c_out: int
    side: int  # side of the square map the block reads, px

    @property
    def side_out(self) -> int:
        return self.side


@dataclass(frozen=True)
class StemSpec(BlockSpec):
    """k x k conv, BatchNorm, SiLU on the RGB input."""

    kind: ClassVar[str] = "stem"
    stride: int
    kernel: int

    @property
    def side_out(self) -> int:
        return self.side // self.stride


@dataclass(frozen=True)
class MV2Spec(BlockSpec):
    """MV2 block: 1x1 expand to ``hidden``, 3x3 depthwise with the stride, 1x1 project."""

    kind: ClassVar[str] = "mv2"
    stride: int
    expansion: int

    @property
    def hidden(self) -> int:
        return make_divisible(round(self.c_in * self.expansion), 8)

    @property
    def side_out(self) -> int:
        return self.side // self.stride


@dataclass(frozen=True)
class AttentionSpec(BlockSpec):
    """A MobileViT block (stride 1, ``c_in == c_out``): ``depth`` attention layers of width ``dim`` over
    ``patch`` x ``patch`` patches, after resizing an odd-sided map to ``even_side``."""

    dim: int
    ffn_dim: int
    depth: int
    patch: int

    @property
    def even_side(self) -> int:
        """The side the attention layers see: the input side rounded up to a multiple of the patch."""
        return -(-self.side // self.patch) * self.patch


@dataclass(frozen=True)
class MobileViTV1Spec(AttentionSpec):
    """v1: multi-head attention, concat and fusion conv; resizes its reduced map and back (side kept)."""

    kind: ClassVar[str] = "mobilevit_v1"
    heads: int


@dataclass(frozen=True)
class MobileViTV2Spec(AttentionSpec):
    """v2: separable attention, no fusion; resizes its input to the even side and keeps it."""

    kind: ClassVar[str] = "mobilevit_v2"

    @property
    def side_out(self) -> int:
        return self.even_side


@dataclass(frozen=True)
class HeadSpec(BlockSpec):
    """Optional 1x1 expansion conv to ``features`` channels (v1; 0 = none, v2), pool, FC to ``c_out``
    classes."""

    kind: ClassVar[str] = "head"
    features: int

    @property
    def pooled(self) -> int:
        """Channels that are pooled and fed to the FC."""
        return self.features or self.c_in


@functools.lru_cache(maxsize=4096)
def block_plan(config: ArchConfig) -> tuple[BlockSpec, ...]:
    """Every block of ``config``'s network in forward order (one entry per MobileViT block, not per layer).
    Cached: latency tables and grid sweeps expand the same config many times."""
    stem, *layers = config.stages()
    blocks: list[BlockSpec] = [StemSpec("stem", 3, stem.out_channels, config.resolution, stem.stride, kernel=3)]
    side, c_in = blocks[0].side_out, stem.out_channels
    for spec in layers:
        c = spec.out_channels
        for i in range(spec.mv2_blocks):
            blocks.append(MV2Spec(spec.name, c_in if i == 0 else c, c, side, spec.stride if i == 0 else 1,
                                  spec.mv2_expansion))
            side, c_in = blocks[-1].side_out, c
        if spec.attn_layers:
            dims = {"dim": spec.attn_dim, "ffn_dim": spec.ffn_dim, "depth": spec.attn_layers, "patch": PATCH_SIZE}
            if config.family == "v1":
                blocks.append(MobileViTV1Spec(spec.name, c, c, side, **dims, heads=V1_HEADS))
            else:
                blocks.append(MobileViTV2Spec(spec.name, c, c, side, **dims))
            side = blocks[-1].side_out
    blocks.append(HeadSpec("head", c_in, config.num_classes, side, features=config.head_channels()))
    return tuple(blocks)


def stage_groups(plan: Sequence[BlockSpec]) -> Iterator[tuple[str, tuple[BlockSpec, ...]]]:
    """``(stage name, its blocks)`` in order: the stages the generator names modules after."""
    for stage, blocks in itertools.groupby(plan, key=lambda b: b.stage):
        yield stage, tuple(blocks)


def repeats(blocks: Sequence[BlockSpec]) -> Iterator[tuple[BlockSpec, int]]:
    """Runs of same-kind blocks in a stage as ``(first block, count)``: the ``d`` / ``num_blocks`` form of
    timm and ml-cvnets, where the first block of a run holds its stride and input channels."""
    for _, run in itertools.groupby(blocks, key=lambda b: b.kind):
        first, *rest = run
        yield first, 1 + len(rest)
