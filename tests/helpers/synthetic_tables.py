"""Test helper: scored tables as bench-table writes them, over the real sample, with known accuracies."""

from __future__ import annotations

import json
import zlib

import numpy as np

from archsearch.bench.table import (
    append_row,
    baseline_configs,
    load_space,
    make_row,
    meta_path,
    select_configs,
)
from archsearch.train.recipe import Profile, get_profile, train_resolution

M = 1_000_000
BUDGET = 300 * M
SPACE, _ = load_space(None)
SAMPLE = select_configs(SPACE, 60, 100 * M, 1000 * M, 0, baseline_configs(SPACE))
_FEASIBLE = [c for c, m in SAMPLE if m <= BUDGET]
STAR = _FEASIBLE[int(np.argmin(((SPACE.encode(_FEASIBLE) - [0.4, 0.3, 0.5, 0.5]) ** 2).sum(1)))]
STAR_X = SPACE.encode([STAR])[0]
SMOKE = get_profile("smoke")
# A rung a tenth of smoke's images: 1 epoch of 60 images a class (images-seen cost 0.1 of smoke's).
CHEAP = get_profile("smoke", name="cheap", epochs=1, train_per_class=60)


def bowl(config) -> float:
    """A smooth accuracy surface: a quadratic bowl in the encoded cube around one feasible table point."""
    return 0.8 - 0.3 * float(((SPACE.encode([config])[0] - STAR_X) ** 2).sum())


def write_table(path, accuracy=bowl, sample=SAMPLE, profile: Profile | str = SMOKE, seed=0, resolution=None,
                sidecar=True):
    """A table as bench-table writes it: ``accuracy(config)`` None: the config failed (diverged);
    ``resolution(config)`` the trained side (default: today's exact one); a settings file with the profile."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    for config, _ in sample:
        top1 = accuracy(config)
        side = resolution(config) if resolution else train_resolution(config, profile.resolution_scale)
        record = ({"status": "ok", "top1": top1, "top5": 1.0, "device": "cpu", "resolution": side, "wall_s": 10.0}
                  if top1 is not None else {"status": "failed", "reason": "diverged", "device": "cpu",
                                            "resolution": side, "wall_s": 10.0})
        append_row(path, make_row(config, record, profile.name, seed, "synthetic"))
    if sidecar:
        meta_path(path).write_text(json.dumps({"profile": profile.to_dict(), "seed": seed}))
    return path


def jitter(seed: int, scale: float = 0.01):
    """A seed's deviation from ``bowl``: fixed per (config, seed)."""
    def accuracy(config) -> float:
        rng = np.random.default_rng(zlib.crc32(f"{config.id}/{seed}".encode()))
        return bowl(config) + scale * float(rng.standard_normal())
    return accuracy
