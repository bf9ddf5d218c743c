"""Configs as Optuna sees them: a config is a trial's parameters (one per factor, and the v1 variant).

Strategies propose parameters, the loop turns them back into configs; both read the same distributions, so
every strategy searches the same grid.
"""

from __future__ import annotations

from typing import Any

import optuna

from ..model.config import ArchConfig
from ..model.space import FACTORS, FactorSpace


def distributions(space: FactorSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The factors as Optuna sees them: stepped floats (ordered, so TPE and NSGA-III can use the order)."""
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for r in space.ranges:
        if r.name == "resolution":
            dists[r.name] = optuna.distributions.IntDistribution(int(r.min), int(r.max), step=int(r.step))
        else:
            dists[r.name] = optuna.distributions.FloatDistribution(r.min, r.max, step=r.step)
    if len(space.variants) > 1:
        dists["variant"] = optuna.distributions.CategoricalDistribution(list(space.variants))
    return dists


def config_params(config: ArchConfig, space: FactorSpace) -> dict[str, Any]:
    params: dict[str, Any] = {name: getattr(config, name) for name in FACTORS}
    if len(space.variants) > 1:
        params["variant"] = config.variant
    return params


def config_from_params(params: dict[str, Any], space: FactorSpace) -> ArchConfig:
    return space.config(params, params.get("variant"))
