"""The cost model: fvcore with attention counted, the closed form equal to it, and the guard on skipped ops."""

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from archsearch import PRESETS, count, preset
from archsearch.model.cost import ELEMENTWISE_OPS, STAGE_NAMES, check_uncounted
from archsearch.model.space import FactorSpace

# Reference MACs at 256 px in G (../shared/reference/mobilevit.md), quoted to two decimals.
PUBLISHED_GMACS = {
    "mobilevit_xxs": 0.42, "mobilevit_xs": 1.05, "mobilevit_s": 2.03,
    "mobilevitv2_050": 0.48, "mobilevitv2_075": 1.05, "mobilevitv2_100": 1.84, "mobilevitv2_125": 2.86,
    "mobilevitv2_150": 4.09, "mobilevitv2_175": 5.54, "mobilevitv2_200": 7.22,
}


@pytest.mark.parametrize("name", list(PUBLISHED_GMACS))
def test_preset_macs_match_published(name):
    cost = count(preset(name))
    assert cost.macs / 1e9 == pytest.approx(PUBLISHED_GMACS[name], abs=0.006)
    assert cost.params == sum(s.params for s in cost.stages)
    assert cost.macs == sum(s.macs for s in cost.stages)
    assert [s.name for s in cost.stages] == list(STAGE_NAMES)


def test_attention_matmuls_are_counted():
    """Without a handle for scaled_dot_product_attention fvcore reads v1-S as 1.86 G (reference)."""
    model = __import__("archsearch").build_model(preset("mobilevit_s")).eval()
    plain = FlopCountAnalysis(model, torch.zeros(1, 3, 256, 256))
    plain.unsupported_ops_warnings(False)
    assert plain.total() / 1e9 == pytest.approx(1.86, abs=0.006)
    assert "aten::scaled_dot_product_attention" in plain.unsupported_ops()
    assert count(preset("mobilevit_s")).macs / 1e9 == pytest.approx(2.03, abs=0.006)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050"])
def test_uncounted_ops_are_reported_and_elementwise(name):
    cost = count(preset(name).replace(resolution=224))  # odd 7x7 maps: the bilinear resize path too
    assert cost.uncounted_ops, "fvcore always skips the activations; the report must list them"
    assert set(cost.uncounted_ops) <= ELEMENTWISE_OPS
    assert "aten::scaled_dot_product_attention" not in cost.uncounted_ops


def test_guard_rejects_a_skipped_reduction():
    """A weighted sum written as mul + sum would hide d*N MACs from fvcore: the guard must refuse it."""

    class HiddenMatmul(nn.Module):
        def forward(self, k, w):
            return (k * w).sum(-1)

    analysis = FlopCountAnalysis(HiddenMatmul(), (torch.ones(2, 8, 16), torch.ones(2, 1, 16)))
    analysis.unsupported_ops_warnings(False)
    assert analysis.total() == 0
    with pytest.raises(RuntimeError, match="aten::sum"):
        check_uncounted(dict(analysis.unsupported_ops()))


def _configs(n_per_family):
    """A random sample of each family's space and its two corners (every factor at its least and its most)."""
    for family in ("v1", "v2"):
        space = FactorSpace.default(family)
        yield from space.sample(n_per_family, seed=2026)
        yield space.config(space.lower_corner())
        yield space.config({r.name: r.values()[-1] for r in space.ranges})


@pytest.mark.parametrize("config", list(_configs(30)), ids=lambda c: c.id)
def test_closed_form_equals_fvcore(config):
    traced, closed = count(config, "fvcore"), count(config, "closed_form")
    assert (closed.params, closed.macs) == (traced.params, traced.macs)
    assert [(s.macs, s.params) for s in closed.stages] == [(s.macs, s.params) for s in traced.stages]


def test_closed_form_tracks_class_count():
    base = preset("mobilevitv2_100")
    few, many = count(base.replace(num_classes=10), "closed_form"), count(base, "closed_form")
    features = base.stages()[-1].out_channels
    assert many.params - few.params == (features + 1) * 990
    assert many.macs - few.macs == features * 990


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        count(PRESETS["mobilevit_xxs"], method="magic")
