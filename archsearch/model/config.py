"""Architecture configs: a MobileViT as a point of the four global factors, and how the factors act.

A config names a family (``v1``: multi-head attention; ``v2``: separable attention) and four factors:
``resolution`` (input side, px), ``width`` (channel multiplier), ``mv2_depth`` (inverted-residual block
multiplier) and ``vit_depth`` (attention-layer multiplier). ``stages()`` turns a config into the exact
per-stage plan; ``blocks.block_plan`` expands it into the blocks that the generator builds, the closed-form
cost model prices, the latency model looks up and the exports write out.

The factor rule (ml-cvnets conventions; also documented in README.md):

* width ``w``. v2: the official formulas with alpha = w -- stem ``make_divisible(clip(32w, 16, 64), 8, 16)``,
  layer1 ``make_divisible(64w, 16)``, layer2..5 ``make_divisible({128, 256, 384, 512}w, 8)``, attention dims
  ``make_divisible({128, 192, 256}w, 8)``. v1: every channel count ``c`` of the base variant (XXS / XS / S,
  stem 16 included) becomes ``make_divisible(c*w, 8)``; the attention dim likewise; the final 1x1 conv has
  ``min(4*C5, 960)`` channels. FFN width: v1 ``2d``; v2 ``floor(2d/16)*16``.
* MV2 depth ``m``: each stage's number of inverted-residual blocks ``n`` becomes ``max(1, floor(n*m + 1/2))``;
  the first block of a stage keeps the stage's stride, the added ones have stride 1 and a residual.
* ViT depth ``a``: each MobileViT block's number of attention layers ``L`` becomes ``max(1, floor(L*a + 1/2))``.
* resolution ``r``: the input is ``r x r``; ``r`` must be a multiple of 32 (five stride-2 stages) and >= 64.
  Where a MobileViT block's feature map has an odd side (e.g. 7x7 at 224 px) it is resized bilinearly as in
  ml-cvnets: a v1 block resizes its reduced map to the next even side for the 2x2 patches and back; a v2
  block resizes its input to the next even side and keeps that size (so the head sees 8x8 at 224 px).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tomllib
from dataclasses import dataclass
from typing import Any

FAMILIES = ("v1", "v2")
V1_VARIANTS = ("xxs", "xs", "s")
MIN_RESOLUTION = 64
MAX_RESOLUTION = 1024
RESOLUTION_MULTIPLE = 32
MAX_MULTIPLIER = 4.0
PATCH_SIZE = 2
V1_HEADS = 4
V1_CLASSIFIER_DROPOUT = 0.1  # v1's head: pool, dropout, FC (v2's has none; no block has any)
V1_HEAD_CHANNELS_CAP = 960


class ConfigError(ValueError):
    """A config or factor value outside what the generator can build; the message names the field."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (ml-cvnets/MobileNet rule, never below 90 %)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_count(base: int, multiplier: float) -> int:
    """Scale a block or layer count: round half up, at least 1."""
    return max(1, math.floor(base * multiplier + 0.5))


@dataclass(frozen=True)
class V1Base:
    """The hand-designed v1 variant that ``width`` scales (channels, attention dims, MV2 expansion)."""

    mv2_expansion: int
    stem: int
    channels: tuple[int, int, int, int, int]  # layer1..layer5
    attn_dims: tuple[int, int, int]  # layer3..layer5


V1_BASES: dict[str, V1Base] = {
    "xxs": V1Base(2, 16, (16, 24, 48, 64, 80), (64, 80, 96)),
    "xs": V1Base(4, 16, (32, 48, 64, 80, 96), (96, 120, 144)),
    "s": V1Base(4, 16, (32, 64, 96, 128, 160), (144, 192, 240)),
}
V1_MV2_BLOCKS = (1, 3, 1, 1, 1)
V2_MV2_BLOCKS = (1, 2, 1, 1, 1)
ATTN_LAYERS = (2, 4, 3)  # layer3..layer5, both families
V2_MV2_EXPANSION = 2


@dataclass(frozen=True)
class StageSpec:
    """One stage of the network as built: stem (a conv), layer1..5 (MV2 blocks, then a MobileViT block)."""

    name: str
    out_channels: int
    stride: int
    mv2_blocks: int = 0
    mv2_expansion: int = 0
    attn_dim: int = 0
    ffn_dim: int = 0
    attn_layers: int = 0


@dataclass(frozen=True)
class ArchConfig:
    """One MobileViT: family, factors and class count. Frozen and hashable: it keys trial caches."""

    family: str
    resolution: int = 256
    width: float = 1.0
    mv2_depth: float = 1.0
    vit_depth: float = 1.0
    num_classes: int = 1000
    variant: str | None = None  # v1 only: the base variant ("xxs", "xs", "s") that width scales

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"family: {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.family == "v1" and self.variant not in V1_VARIANTS:
            raise ConfigError(f"variant: v1 needs one of {', '.join(V1_VARIANTS)}, got {self.variant!r}")
        if self.family == "v2" and self.variant is not None:
            raise ConfigError(f"variant: v2 has no variant, got {self.variant!r}")
        res = self.resolution
        if (
            isinstance(res, bool)
            or not isinstance(res, int)
            or not MIN_RESOLUTION <= res <= MAX_RESOLUTION
            or res % RESOLUTION_MULTIPLE
        ):
            raise ConfigError(
                f"resolution: {res!r} is not a multiple of {RESOLUTION_MULTIPLE} "
                f"in {MIN_RESOLUTION}..{MAX_RESOLUTION}"
            )
        for name in ("width", "mv2_depth", "vit_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_MULTIPLIER:
                raise ConfigError(f"{name}: {value!r} is not a number in (0, {MAX_MULTIPLIER:g}]")
            object.__setattr__(self, name, round(float(value), 6))
        classes = self.num_classes
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ConfigError(f"num_classes: {classes!r} is not a positive integer")

    @property
    def id(self) -> str:
        """Canonical short id, e.g. ``v2-r256-w0.5-m1-a1-c1000`` or ``v1xxs-r256-w1-m1-a1-c1000``."""
        family = self.family + (self.variant or "")
        return (
            f"{family}-r{self.resolution}-w{self.width:g}-m{self.mv2_depth:g}"
            f"-a{self.vit_depth:g}-c{self.num_classes}"
        )

    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)

    # ---- the stage plan (model.blocks expands it into blocks) ----------------------------------
    def stages(self) -> tuple[StageSpec, ...]:
        """Stem and layer1..layer5, with every channel, block and layer count resolved."""
        return _stage_plan(self.family, self.variant, self.width, self.mv2_depth, self.vit_depth)

    def network_key(self) -> tuple:
        """Equal for configs that build the same network (for v2, MV2 depth 0.75 and 1.0 do): the key
        under which searches deduplicate candidates and trial results are cached."""
        return (self.family, self.variant, self.resolution, self.num_classes, self.stages())

    def head_channels(self) -> int:
        """Channels of v1's final 1x1 expansion conv (0 for v2, which has none)."""
        if self.family == "v2":
            return 0
        return min(4 * self.stages()[-1].out_channels, V1_HEAD_CHANNELS_CAP)

    # ---- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["variant"] is None:
            del data["variant"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        if "family" not in data:
            raise ConfigError("family: missing")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        return cls.from_dict(json.loads(text))

    def to_toml(self) -> str:
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in self.to_dict().items())

    @classmethod
    def from_toml(cls, text: str) -> ArchConfig:
        return cls.from_dict(tomllib.loads(text))



@functools.lru_cache(maxsize=4096)
def _stage_plan(
    family: str, variant: str | None, width: float, mv2_depth: float, vit_depth: float
) -> tuple[StageSpec, ...]:
    """The stage plan depends on neither resolution nor class count: cached across a grid sweep."""
    if family == "v2":
        stem = make_divisible(min(max(32 * width, 16), 64), 8, 16)
        channels = (
            make_divisible(64 * width, 16),
            *(make_divisible(c * width, 8) for c in (128, 256, 384, 512)),
        )
        attn_dims = tuple(make_divisible(d * width, 8) for d in (128, 192, 256))
        ffn_dims = tuple(2 * d // 16 * 16 for d in attn_dims)
        base_blocks, expansion = V2_MV2_BLOCKS, V2_MV2_EXPANSION
    else:
        base = V1_BASES[variant]  # type: ignore[index]
        stem = make_divisible(base.stem * width, 8)
        channels = tuple(make_divisible(c * width, 8) for c in base.channels)
        attn_dims = tuple(make_divisible(d * width, 8) for d in base.attn_dims)
        ffn_dims = tuple(2 * d for d in attn_dims)
        base_blocks, expansion = V1_MV2_BLOCKS, base.mv2_expansion
    specs = [StageSpec("stem", stem, stride=2)]
    for i, (c, n) in enumerate(zip(channels, base_blocks)):
        attn = {}
        if i >= 2:
            attn = dict(
                attn_dim=attn_dims[i - 2],
                ffn_dim=ffn_dims[i - 2],
                attn_layers=scale_count(ATTN_LAYERS[i - 2], vit_depth),
            )
        specs.append(
            StageSpec(
                f"layer{i + 1}",
                c,
                stride=1 if i == 0 else 2,
                mv2_blocks=scale_count(n, mv2_depth),
                mv2_expansion=expansion,
                **attn,
            )
        )
    return tuple(specs)


def _v2(width: float) -> ArchConfig:
    return ArchConfig("v2", resolution=256, width=width)


PRESETS: dict[str, ArchConfig] = {
    "mobilevit_xxs": ArchConfig("v1", variant="xxs"),
    "mobilevit_xs": ArchConfig("v1", variant="xs"),
    "mobilevit_s": ArchConfig("v1", variant="s"),
    **{f"mobilevitv2_{round(w * 100):03d}": _v2(w) for w in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)},
}


def preset(name: str) -> ArchConfig:
    """The official architecture ``name`` (see ``PRESETS``) as a config at 256 px and 1000 classes."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"preset: unknown {name!r}; choose from {', '.join(PRESETS)}") from None
