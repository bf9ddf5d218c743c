"""The MobileViT generator: ``build_model(config)`` turns any point of the factor space into a trainable network.

One readable module for both families. v1 blocks use multi-head self-attention (through
``F.scaled_dot_product_attention``) with a concat + fusion conv; v2 blocks use separable linear attention.
Patches are unfolded and folded by reshape/permute, so the 2x2 patch split costs no copy in the graph and
works with ``channels_last`` inputs. Module names (``stem``, ``layer1`` .. ``layer5``, ``head``) are the
stage names of the cost breakdown. The network is built from the block plan (``blocks.block_plan``):
``BLOCK_BUILDERS`` maps each block kind to its module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BlockSpec, block_plan, stage_groups
from .config import (
    PATCH_SIZE,
    V1_CLASSIFIER_DROPOUT,
    V1_HEADS,
    ArchConfig,
    make_divisible,
)


class ConvNormAct(nn.Sequential):
    """k x k conv without bias, BatchNorm, optional SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        if act:
            self.act = nn.SiLU()


class InvertedResidual(nn.Module):
    """MV2 block: 1x1 expand, 3x3 depthwise (stride), 1x1 project; residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = make_divisible(round(c_in * expansion), 8)
        self.expand = ConvNormAct(c_in, hidden, 1)
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvNormAct(hidden, c_out, 1, act=False)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_residual else y


def _to_even(x: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Resize a map with an odd side to the next even side (bilinear), as ml-cvnets does before patching."""
    h, w = x.shape[-2:]
    if h % PATCH_SIZE == 0 and w % PATCH_SIZE == 0:
        return x
    size = (h + h % PATCH_SIZE, w + w % PATCH_SIZE)  # PATCH_SIZE is 2: the next even side
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def unfold_patches(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, P, N]: P = 4 pixels of each 2x2 patch, N = HW/4 patches."""
    b, c, h, w = x.shape
    p = PATCH_SIZE
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c, p * p, (h // p) * (w // p))


def fold_patches(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``unfold_patches``: [B, C, P, N] -> [B, C, H, W]."""
    b, c = x.shape[:2]
    p = PATCH_SIZE
    x = x.reshape(b, c, p, p, h // p, w // p).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c, h, w)


# ---- v1: multi-head self-attention -----------------------------------------------------------------
class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer on [B*P, N, d] tokens."""

    def __init__(self, dim: int, ffn_dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """v1 block: local conv, global attention over patches, projection, concat with input, fusion conv."""

    def __init__(self, channels: int, dim: int, ffn_dim: int, layers: int, heads: int = V1_HEADS):
        super().__init__()
        self.conv_kxk = ConvNormAct(channels, channels, 3)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*(TransformerLayer(dim, ffn_dim, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvNormAct(dim, channels, 1)
        self.conv_fusion = ConvNormAct(2 * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fm = _to_even(self.conv_1x1(self.conv_kxk(x)))
        he, we = fm.shape[-2:]
        patches = unfold_patches(fm)
        b, d, p, n = patches.shape
        tokens = self.norm(self.transformer(patches.permute(0, 2, 3, 1).reshape(b * p, n, d)))
        fm = fold_patches(tokens.reshape(b, p, n, d).permute(0, 3, 1, 2), he, we)
        if (he, we) != (h, w):
            fm = F.interpolate(fm, size=(h, w), mode="bilinear", align_corners=False)
        return self.conv_fusion(torch.cat((x, self.conv_proj(fm)), dim=1))


# ---- v2: separable self-attention ------------------------------------------------------------------
class SeparableAttention(nn.Module):
    """Linear-cost attention on [B, d, P, N]: softmax scores over patches weight one context vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.qkv = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).split((1, self.dim, self.dim), dim=1)
        scores = q.softmax(dim=-1)  # [B, 1, P, N]
        # context = sum_N k * scores, written as a matmul so that it is counted as the d*N MACs it is
        context = torch.matmul(k.transpose(1, 2), scores.permute(0, 2, 3, 1)).transpose(1, 2)  # [B, d, P, 1]
        return self.proj(F.relu(v) * context)


class LinearTransformerLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.attn = SeparableAttention(dim)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, ffn_dim, 1), nn.SiLU(), nn.Conv2d(ffn_dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTV2Block(nn.Module):
    """v2 block: depthwise local conv, separable attention over patches, projection (no fusion)."""

    def __init__(self, channels: int, dim: int, ffn_dim: int, layers: int):
        super().__init__()
        self.conv_kxk = ConvNormAct(channels, channels, 3, groups=channels)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*(LinearTransformerLayer(dim, ffn_dim) for _ in range(layers)))
        self.norm = nn.GroupNorm(1, dim)
        self.conv_proj = ConvNormAct(dim, channels, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _to_even(x, align_corners=True)  # ml-cvnets v2 resizes the block input and keeps the even size
        h, w = x.shape[-2:]
        fm = self.conv_1x1(self.conv_kxk(x))
        fm = fold_patches(self.norm(self.transformer(unfold_patches(fm))), h, w)
        return self.conv_proj(fm)


# ---- the network -----------------------------------------------------------------------------------
class ClassifierHead(nn.Module):
    """v1: 1x1 expansion conv, pool, dropout 0.1, FC. v2: pool, FC."""

    def __init__(self, c_in: int, expansion_channels: int, num_classes: int):
        super().__init__()
        self.conv_exp = ConvNormAct(c_in, expansion_channels, 1) if expansion_channels else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(V1_CLASSIFIER_DROPOUT) if expansion_channels else nn.Identity()
        self.fc = nn.Linear(expansion_channels or c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.conv_exp(x)).flatten(1)))


# kind -> the module of one block of the plan (the spec classes of ``blocks``)
BLOCK_BUILDERS: dict[str, Callable[[Any], nn.Module]] = {
    "stem": lambda b: ConvNormAct(b.c_in, b.c_out, b.kernel, stride=b.stride),
    "mv2": lambda b: InvertedResidual(b.c_in, b.c_out, b.stride, b.expansion),
    "mobilevit_v1": lambda b: MobileViTBlock(b.c_in, b.dim, b.ffn_dim, b.depth, b.heads),
    "mobilevit_v2": lambda b: MobileViTV2Block(b.c_in, b.dim, b.ffn_dim, b.depth),
    "head": lambda b: ClassifierHead(b.c_in, b.features, b.c_out),
}


def make_block(spec: BlockSpec) -> nn.Module:
    """The module of one block spec (fresh, default-initialised weights)."""
    return BLOCK_BUILDERS[spec.kind](spec)


class MobileViT(nn.Module):
    """Stem and head as single modules; each of layer1..layer5 an ``nn.Sequential`` of its blocks."""

    def __init__(self, config: ArchConfig):
        super().__init__()
        self.config = config
        stem, *body, head = block_plan(config)
        self.stem = make_block(stem)
        for stage, blocks in stage_groups(body):
            setattr(self, stage, nn.Sequential(*map(make_block, blocks)))
        self.head = make_block(head)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in ("layer1", "layer2", "layer3", "layer4", "layer5"):
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def init_weights(model: nn.Module) -> None:
    """ml-cvnets init: convs kaiming-normal (fan-out), linears xavier-uniform, zero biases, unit norms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(m.weight)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def build_model(config: ArchConfig) -> MobileViT:
    """A freshly initialised MobileViT for ``config`` (expects ``config.resolution``-sized RGB input)."""
    return MobileViT(config)
