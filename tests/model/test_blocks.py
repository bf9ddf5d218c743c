"""The block plan: preset plans written out by hand from ../shared/reference/mobilevit.md, and every consumer's
registry covering every block kind."""

import dataclasses

import pytest

from archsearch import ArchConfig, preset
from archsearch.export.cvnets_module import CVNETS_ENTRIES
from archsearch.export.timm import TIMM_CALLS
from archsearch.latency.blocks import LATENCY_BLOCKS
from archsearch.model.blocks import (
    KINDS,
    HeadSpec,
    MobileViTV1Spec,
    MobileViTV2Spec,
    MV2Spec,
    StemSpec,
    block_plan,
    repeats,
    stage_groups,
)
from archsearch.model.cost import CLOSED_FORM
from archsearch.model.generator import BLOCK_BUILDERS, make_block


def mv2(stage, c_in, c_out, side, stride, e):
    return MV2Spec(stage, c_in, c_out, side, stride=stride, expansion=e)


def v1(stage, c, side, d, ffn, layers):
    return MobileViTV1Spec(stage, c, c, side, dim=d, ffn_dim=ffn, depth=layers, patch=2, heads=4)


def v2(stage, c, side, d, ffn, layers):
    return MobileViTV2Spec(stage, c, c, side, dim=d, ffn_dim=ffn, depth=layers, patch=2)


# MobileViT-XXS at 256 px (reference table: expansion 2; layer1/2 16/24; layer3..5 C/d/ffn/L 48/64/128/2,
# 64/80/160/4, 80/96/192/3; final conv 320; 4 heads), sides halved by each stride-2 block.
XXS_256 = (
    StemSpec("stem", 3, 16, 256, stride=2, kernel=3),
    mv2("layer1", 16, 16, 128, 1, 2),
    mv2("layer2", 16, 24, 128, 2, 2), mv2("layer2", 24, 24, 64, 1, 2), mv2("layer2", 24, 24, 64, 1, 2),
    mv2("layer3", 24, 48, 64, 2, 2), v1("layer3", 48, 32, 64, 128, 2),
    mv2("layer4", 48, 64, 32, 2, 2), v1("layer4", 64, 16, 80, 160, 4),
    mv2("layer5", 64, 80, 16, 2, 2), v1("layer5", 80, 8, 96, 192, 3),
    HeadSpec("head", 80, 1000, 8, features=320),
)

# MobileViTv2-0.5 at 224 px: stem 16, layer1 32, layer2 64, layer3..5 C/d/ffn/L 128/64/128/2, 192/96/192/4,
# 256/128/256/3, expansion 2; layer5 reads 7x7, resizes to 8x8 and keeps it, so the head pools 8x8.
V2_050_224 = (
    StemSpec("stem", 3, 16, 224, stride=2, kernel=3),
    mv2("layer1", 16, 32, 112, 1, 2),
    mv2("layer2", 32, 64, 112, 2, 2), mv2("layer2", 64, 64, 56, 1, 2),
    mv2("layer3", 64, 128, 56, 2, 2), v2("layer3", 128, 28, 64, 128, 2),
    mv2("layer4", 128, 192, 28, 2, 2), v2("layer4", 192, 14, 96, 192, 4),
    mv2("layer5", 192, 256, 14, 2, 2), v2("layer5", 256, 7, 128, 256, 3),
    HeadSpec("head", 256, 1000, 8, features=0),
)


@pytest.mark.parametrize(("config", "expected"), [
    (preset("mobilevit_xxs"), XXS_256),
    (preset("mobilevitv2_050").replace(resolution=224), V2_050_224),
], ids=["mobilevit_xxs", "mobilevitv2_050-r224"])
def test_preset_plans_match_the_reference(config, expected):
    assert block_plan(config) == expected


def test_v1_keeps_the_odd_side_and_v2_the_even_one():
    v1 = block_plan(preset("mobilevit_s").replace(resolution=224))
    v2 = block_plan(preset("mobilevitv2_100").replace(resolution=224))
    assert (v1[-2].side, v1[-2].even_side, v1[-2].side_out, v1[-1].side) == (7, 8, 7, 7)
    assert (v2[-2].side, v2[-2].even_side, v2[-2].side_out, v2[-1].side) == (7, 8, 8, 8)


def test_plan_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        block_plan(preset("mobilevit_xs"))[1].c_out = 1


def test_stage_groups_and_repeats():
    plan = XXS_256
    assert [stage for stage, _ in stage_groups(plan)] == ["stem", "layer1", "layer2", "layer3", "layer4", "layer5",
                                                           "head"]
    layer2 = dict(stage_groups(plan))["layer2"]
    assert list(repeats(layer2)) == [(layer2[0], 3)]
    layer3 = dict(stage_groups(plan))["layer3"]
    assert list(repeats(layer3)) == [(layer3[0], 1), (layer3[1], 1)]


@pytest.mark.parametrize("registry", [BLOCK_BUILDERS, CLOSED_FORM, LATENCY_BLOCKS, CVNETS_ENTRIES],
                         ids=["generator", "cost", "latency", "cvnets"])
def test_registries_cover_every_kind(registry):
    assert set(registry) == set(KINDS)


def test_timm_covers_the_body_kinds():
    """The stem and head are fields of timm's ByoModelCfg, every other kind a block call."""
    assert set(TIMM_CALLS) == set(KINDS) - {"stem", "head"}


@pytest.mark.parametrize("config", [
    preset("mobilevit_xs"),
    ArchConfig("v1", resolution=224, width=0.75, mv2_depth=2.0, vit_depth=0.5, num_classes=10, variant="s"),
    preset("mobilevitv2_075"),
    ArchConfig("v2", resolution=160, width=1.25, mv2_depth=1.5, vit_depth=1.5, num_classes=100),
], ids=lambda c: c.id)
def test_each_block_module_has_its_closed_form_params(config):
    """Generator and cost registries agree block by block, not only in total."""
    for b in block_plan(config):
        assert sum(p.numel() for p in make_block(b).parameters()) == CLOSED_FORM[b.kind](b)[1], b
