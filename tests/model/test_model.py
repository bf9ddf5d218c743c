"""The generator builds real, trainable networks whose blocks compute what the reference blocks compute."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch import ArchConfig, build_model, preset
from archsearch.model.generator import (
    MultiHeadAttention,
    SeparableAttention,
    fold_patches,
    unfold_patches,
)
from archsearch.model.space import FactorSpace


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_every_resolution_of_the_space_runs(family):
    space = FactorSpace.default(family)
    base = preset("mobilevit_xxs" if family == "v1" else "mobilevitv2_050").replace(num_classes=7)
    model = build_model(base).eval()
    with torch.no_grad():
        for res in space.range("resolution").values():
            assert model(torch.randn(1, 3, res, res)).shape == (1, 7)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050"])
def test_channels_last_gives_the_same_output(name):
    torch.manual_seed(0)
    model = build_model(preset(name).replace(resolution=224)).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_model_trains(family):
    torch.manual_seed(0)
    config = ArchConfig(family, resolution=64, width=0.5, mv2_depth=0.5, vit_depth=0.5, num_classes=3,
                        variant="xxs" if family == "v1" else None)
    model = build_model(config)
    x, y = torch.randn(8, 3, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]


def test_unfold_matches_reference_patch_order():
    """The reshape/permute unfold equals F.unfold with 2x2 kernel and stride (ml-cvnets' patch order)."""
    x = torch.randn(2, 5, 8, 12)
    ref = F.unfold(x, kernel_size=2, stride=2).reshape(2, 5, 4, -1)
    torch.testing.assert_close(unfold_patches(x), ref)
    torch.testing.assert_close(fold_patches(unfold_patches(x), 8, 12), x)
    cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fold_patches(unfold_patches(cl), 8, 12), x)


def test_separable_attention_matches_definition():
    torch.manual_seed(0)
    attn = SeparableAttention(16)
    x = torch.randn(2, 16, 4, 9)
    q, k, v = attn.qkv(x).split((1, 16, 16), dim=1)
    context = (k * q.softmax(dim=-1)).sum(dim=-1, keepdim=True)
    torch.testing.assert_close(attn(x), attn.proj(F.relu(v) * context))


def test_multi_head_attention_matches_unfused():
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, heads=4)
    x = torch.randn(3, 10, 32)
    q, k, v = attn.qkv(x).reshape(3, 10, 3, 4, 8).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(8)).softmax(-1)
    ref = attn.proj((weights @ v).transpose(1, 2).reshape(3, 10, 32))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)


def test_factor_rule_acts_on_the_built_network():
    base = preset("mobilevitv2_100")
    deep = build_model(base.replace(mv2_depth=2.0, vit_depth=2.0))
    shallow = build_model(base.replace(mv2_depth=0.5, vit_depth=0.25))
    # layer2 has 2 MV2 blocks at depth 1: 4 at 2.0, 1 at 0.5; layer4 has 4 attention layers: 8 and 1.
    assert len(deep.layer2) == 4 and len(shallow.layer2) == 1
    assert len(deep.layer4[-1].transformer) == 8 and len(shallow.layer4[-1].transformer) == 1
    wide = build_model(base.replace(width=2.0))
    assert wide.layer5[-1].conv_proj.conv.out_channels == 1024


def test_ml_cvnets_initialisation():
    torch.manual_seed(0)
    model = build_model(preset("mobilevitv2_100"))
    conv = model.layer3[0].expand.conv
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            assert torch.all(m.bias == 0)
