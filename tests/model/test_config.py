"""Configs: validation, canonical ids, serialisation, hashing; the factor space and its grid."""

import json
import math

import pytest

from archsearch import PRESETS, ArchConfig, ConfigError, preset
from archsearch.model.config import make_divisible
from archsearch.model.space import FACTORS, FactorSpace


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(family="v3"), "family"),
        (dict(family="v1"), "variant"),
        (dict(family="v2", variant="xs"), "variant"),
        (dict(family="v2", resolution=100), "resolution"),
        (dict(family="v2", resolution=32), "resolution"),
        (dict(family="v2", resolution=256.0), "resolution"),
        (dict(family="v2", width=0), "width"),
        (dict(family="v2", width=9.0), "width"),
        (dict(family="v2", mv2_depth=-1), "mv2_depth"),
        (dict(family="v2", vit_depth="1"), "vit_depth"),
        (dict(family="v2", num_classes=0), "num_classes"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        ArchConfig(**kwargs)


def test_round_trips_and_hashing():
    for config in [*PRESETS.values(), ArchConfig("v2", 192, 0.625, 1.25, 0.75, num_classes=10)]:
        assert ArchConfig.from_json(config.to_json()) == config
        assert ArchConfig.from_toml(config.to_toml()) == config
        assert hash(ArchConfig.from_dict(json.loads(config.to_json()))) == hash(config)
    assert ArchConfig("v2", width=0.5) == ArchConfig("v2", width=0.5000000001)
    assert len({preset("mobilevitv2_050"), ArchConfig("v2", width=0.5)}) == 1
    with pytest.raises(ConfigError, match="unknown config field"):
        ArchConfig.from_dict({"family": "v2", "depth": 2})


def test_ids_are_canonical_and_distinct():
    ids = {c.id for c in PRESETS.values()}
    assert len(ids) == len(PRESETS)
    assert preset("mobilevitv2_050").id == "v2-r256-w0.5-m1-a1-c1000"
    assert preset("mobilevit_xs").id.startswith("v1xs-")


def test_make_divisible_rule():
    for v in [3.0, 16.0, 23.9, 44.0, 64 * 0.625, 128 * 1.375, 250.0]:
        out = make_divisible(v, 8)
        assert out % 8 == 0 and out >= 8 and out >= 0.9 * v
        assert abs(out - v) <= 8


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_depth_rule_on_every_grid_multiplier(family):
    """Blocks per stage scale as max(1, floor(n*m + 1/2)) from the base counts of the reference layout."""
    space = FactorSpace.default(family)
    base_mv2 = (1, 3, 1, 1, 1) if family == "v1" else (1, 2, 1, 1, 1)
    base = preset("mobilevit_xxs" if family == "v1" else "mobilevitv2_100")
    for m in space.range("mv2_depth").values():
        for a in space.range("vit_depth").values():
            layers = base.replace(mv2_depth=m, vit_depth=a).stages()[1:]
            assert [s.mv2_blocks for s in layers] == [max(1, math.floor(n * m + 0.5)) for n in base_mv2]
            assert [s.attn_layers for s in layers[2:]] == [max(1, math.floor(n * a + 0.5)) for n in (2, 4, 3)]


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_space_grid_sample_and_presets(family):
    space = FactorSpace.default(family)
    sizes = [len(space.range(f).values()) for f in FACTORS]
    grid = list(space.grid())
    assert len(grid) == len(space) == math.prod(sizes) * len(space.variants)
    assert len(set(grid)) == len(grid)
    for name, config in PRESETS.items():
        if config.family == family:
            assert space.contains(config), name
    sample = space.sample(50, seed=7)
    assert sample == space.sample(50, seed=7) and sample != space.sample(50, seed=8)
    assert len(set(sample)) == 50 and all(space.contains(c) for c in sample)
    encoded = space.encode(sample)
    assert encoded.shape == (50, space.dims) and encoded.min() >= 0 and encoded.max() <= 1


def test_space_check_names_the_factor(tmp_path):
    space = FactorSpace.default("v2")
    with pytest.raises(ConfigError, match=r"^width: 0.3 is not in the space \(0.25..2 step 0.125\)"):
        space.check(ArchConfig("v2", width=0.3))
    with pytest.raises(ConfigError, match="^family"):
        space.check(preset("mobilevit_xxs"))
    bad = tmp_path / "bad.toml"
    bad.write_text('family = "v2"\n[resolution]\nmin = 128\n')
    with pytest.raises(ConfigError, match=r"\[resolution\] needs min, max and step"):
        FactorSpace.load(bad)
    bad.write_text("family = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FactorSpace.load(bad)
    with pytest.raises(ConfigError, match="no such file"):
        FactorSpace.load(tmp_path / "missing.toml")
