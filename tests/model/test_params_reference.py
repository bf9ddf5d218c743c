"""Parameter counts of the official presets, derived by hand from ../shared/reference/mobilevit.md.

Nothing here calls the stage plan or the cost model: the expected counts come from the reference tables and
per-layer formulas written out below, then are compared with the generated networks to the unit.
"""

import pytest

from archsearch import build_model, preset

# Published counts (reference, millions, rounded to two decimals).
PUBLISHED = {
    "mobilevit_xxs": 1.27, "mobilevit_xs": 2.32, "mobilevit_s": 5.58,
    "mobilevitv2_050": 1.37, "mobilevitv2_075": 2.87, "mobilevitv2_100": 4.90, "mobilevitv2_125": 7.48,
    "mobilevitv2_150": 10.59, "mobilevitv2_175": 14.25, "mobilevitv2_200": 18.45,
}


def ref_make_divisible(v, d=8, min_value=None):
    min_value = d if min_value is None else min_value
    new = max(min_value, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def conv_bn(c_in, c_out, k, groups=1):
    return c_out * (c_in // groups) * k * k + 2 * c_out


def mv2(c_in, c_out, e):
    hidden = ref_make_divisible(round(c_in * e), 8)
    return hidden * (c_in + c_out + 13) + 2 * c_out


def v1_params(e, c1, c2, blocks, final, classes=1000):
    """blocks: three (C, d, ffn, L) rows for layer3..5."""
    total = conv_bn(3, 16, 3) + mv2(16, c1, e) + mv2(c1, c2, e) + 2 * mv2(c2, c2, e)
    c_in = c2
    for c, d, ffn, layers in blocks:
        total += mv2(c_in, c, e)
        layer = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * ffn + ffn) + (ffn * d + d)
        total += conv_bn(c, c, 3) + c * d + layers * layer + 2 * d + conv_bn(d, c, 1) + conv_bn(2 * c, c, 3)
        c_in = c
    return total + conv_bn(c_in, final, 1) + final * classes + classes


def v2_params(alpha, classes=1000):
    stem = ref_make_divisible(min(max(32 * alpha, 16), 64), 8, 16)
    c1 = ref_make_divisible(64 * alpha, 16)
    c2 = ref_make_divisible(128 * alpha, 8)
    total = conv_bn(3, stem, 3) + mv2(stem, c1, 2) + mv2(c1, c2, 2) + mv2(c2, c2, 2)
    c_in = c2
    for c_base, d_base, layers in ((256, 128, 2), (384, 192, 4), (512, 256, 3)):
        c, d = ref_make_divisible(c_base * alpha, 8), ref_make_divisible(d_base * alpha, 8)
        ffn = (2 * d // 16) * 16
        total += mv2(c_in, c, 2)
        total += conv_bn(c, c, 3, groups=c) + c * d
        total += layers * (3 * d * d + 2 * d * ffn + 9 * d + ffn + 1) + 2 * d + conv_bn(d, c, 1)
        c_in = c
    return total + c_in * classes + classes


EXPECTED = {
    "mobilevit_xxs": v1_params(2, 16, 24, [(48, 64, 128, 2), (64, 80, 160, 4), (80, 96, 192, 3)], 320),
    "mobilevit_xs": v1_params(4, 32, 48, [(64, 96, 192, 2), (80, 120, 240, 4), (96, 144, 288, 3)], 384),
    "mobilevit_s": v1_params(4, 32, 64, [(96, 144, 288, 2), (128, 192, 384, 4), (160, 240, 480, 3)], 640),
    **{f"mobilevitv2_{round(a * 100):03d}": v2_params(a) for a in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)},
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_preset_params_match_reference_to_the_unit(name):
    model = build_model(preset(name))
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_hand_derived_counts_round_to_published(name):
    assert round(EXPECTED[name] / 1e6, 2) == pytest.approx(PUBLISHED[name])
