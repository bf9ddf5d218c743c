"""Reading scored tables (``bench-table``'s CSVs) for replays and for comparing fidelities.

* **Exact rows only.** Since commit 4d68ef5 a config trains at exactly ``round(resolution * scale)`` px
  (``training.train_resolution``). Tables scored before rounded that side to a multiple of 32, so at smoke's
  half scale 160 px trained at 64 like 128 px, and 224 and 288 px at 128 like 256 px: such a row measured a
  twin of another resolution's network, not the network its id names. ``load_table`` leaves out every row
  whose ``trained_resolution`` is not today's exact one (or is not recorded) and counts them
  (``BenchTable.inexact``), so no replay or comparison inherits a twin; ``exact_only=False`` keeps them, to
  reproduce figures made before. Where a table holds both rows of a network (``bench-table`` re-scores the
  inexact ones on resume), the exact row counts.
* **Seeds.** A table holds one training seed. Tables of one profile and sample with other seeds are a group:
  a config's score is its mean over the tables that scored it (``pooled``).
* **Rank agreement** of two fidelities (``rank_agreement``), and along a chain of them (``chain_agreement``:
  each consecutive pair, then the first against the last).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from ..model.config import ArchConfig, ConfigError
from ..model.cost import closed_form_cost
from ..model.space import FACTORS, FactorSpace
from ..train.recipe import PROFILES, Profile
from .table import exact_resolution, load_space, meta_path, read_rows, row_config


@dataclass(frozen=True)
class BenchTable:
    """A scored table: configs (the space's, MACs by the closed-form model), their top-1 (None: failed) and
    training wall time; ``inexact`` rows had another trained resolution than today's (left out unless
    ``exact_only`` is False)."""

    path: Path
    space: FactorSpace
    space_dict: dict
    configs: list[ArchConfig]
    macs: list[int]
    top1: list[float | None]
    wall_s: list[float | None]
    fidelity: dict
    seed: int
    data: str
    meta: dict
    inexact: int = 0
    exact_only: bool = True

    @property
    def profile(self) -> Profile | None:
        return profile_of(self.fidelity)

    def index(self) -> dict[tuple, int]:
        return {c.network_key(): i for i, c in enumerate(self.configs)}


def profile_of(fidelity: dict) -> Profile | None:
    """The training profile a table records (every field, from its settings file), or the known profile of
    that name; None when neither."""
    fields = {f.name for f in dataclasses.fields(Profile)}
    if set(fidelity) == fields:
        return Profile(**{**fidelity, "crop_scale": tuple(fidelity["crop_scale"])})
    return PROFILES.get(fidelity.get("name"))


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in ("", None) else None
    except ValueError:
        return None


def load_table(path: str | Path, space_file: str | Path | None = None, exact_only: bool = True) -> BenchTable:
    """Read a table (and its settings file, if any: else ``space_file`` or the default v2 space)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--table: no such file {path}")
    side = meta_path(path)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    if meta.get("space") and not space_file:
        space_dict = meta["space"]
        space = FactorSpace.from_dict(space_dict)
    else:
        space, space_dict = load_space(space_file)
    try:
        rows = read_rows(path)
    except (csv.Error, UnicodeDecodeError) as err:
        raise ConfigError(f"--table: {path} is not a readable CSV ({err})") from None
    if not rows:
        raise ConfigError(f"--table: {path} has no rows")
    missing = [c for c in ("family", *FACTORS, "top1", "status") if c not in rows[0]]
    if missing:
        raise ConfigError(f"--table: {path} lacks column(s) {', '.join(missing)}")
    for column in ("profile", "seed", "data"):
        values = {r.get(column) for r in rows}
        if len(values) > 1:
            raise ConfigError(f"--table: {path} mixes {column}s {sorted(map(str, values))}; one table, one {column}")
    fidelity = meta.get("profile") or {"name": rows[0].get("profile") or "table"}
    profile = profile_of(fidelity)
    if profile is None and exact_only:
        raise ConfigError(f"--table: {path} has no settings file and its profile {fidelity['name']!r} is not a known "
                          "one, so its trained resolutions cannot be checked; pass --all-rows to use every row")
    chosen: dict[tuple, tuple[ArchConfig, dict[str, str], bool]] = {}
    inexact = 0
    for row in rows:
        config = row_config(row, space)
        try:
            space.check(config)
        except ConfigError as err:
            raise ConfigError(f"--table: row {config.id} is not a point of the space ({err})") from None
        exact = profile is not None and exact_resolution(row, config, profile)
        inexact += not exact
        key = config.network_key()
        if (exact or not exact_only) and (key not in chosen or (exact and not chosen[key][2])):
            chosen[key] = (config, row, exact)  # the first row counts, but an exact one beats an inexact one
    if not chosen:
        raise ConfigError(f"--table: none of the {len(rows)} rows of {path} was trained at today's exact resolution; "
                          "re-score them (bench-table resumes and scores them again) or pass --all-rows")
    configs = [c for c, _, _ in chosen.values()]
    ok = [r["status"] == "ok" and r["top1"] not in ("", None) for _, r, _ in chosen.values()]
    top1 = [float(r["top1"]) if good else None for (_, r, _), good in zip(chosen.values(), ok)]
    wall = [_number(r.get("wall_s")) for _, r, _ in chosen.values()]
    seed = int(meta.get("seed", rows[0].get("seed") or 0))
    data = meta.get("data_fingerprint") or rows[0].get("data") or "table"
    return BenchTable(path, space, space_dict, configs, [closed_form_cost(c).macs for c in configs], top1, wall,
                      fidelity, seed, str(data), meta, inexact, exact_only)


# ---- groups of seeds ----------------------------------------------------------------------------------------
def check_group(tables: Sequence[BenchTable], option: str) -> None:
    """Tables pooled as the seeds of one fidelity: one profile, space and data set, distinct seeds."""
    first, seeds = tables[0], {tables[0].seed: tables[0].path}
    for t in tables[1:]:
        same = (t.profile == first.profile) if t.profile and first.profile else t.fidelity == first.fidelity
        if not same:
            raise ConfigError(f"{option}: {t.path} is profile {t.fidelity.get('name')!r}, {first.path} is "
                              f"{first.fidelity.get('name')!r}: pool only tables of one profile")
        if t.space_dict != first.space_dict or t.data != first.data:
            raise ConfigError(f"{option}: {t.path} and {first.path} differ in factor space or data")
        if t.seed in seeds:
            raise ConfigError(f"{option}: {t.path} and {seeds[t.seed]} both hold seed {t.seed}")
        seeds[t.seed] = t.path


def pooled(tables: Sequence[BenchTable]) -> tuple[dict[tuple, ArchConfig], dict[tuple, float]]:
    """Every network some table scored (first table's order, then the others'), and its mean top-1 over the
    tables where it succeeded (absent where it failed in all)."""
    configs: dict[tuple, ArchConfig] = {}
    scores: dict[tuple, list[float]] = {}
    for t in tables:
        for config, top1 in zip(t.configs, t.top1):
            configs.setdefault(config.network_key(), config)
            if top1 is not None:
                scores.setdefault(config.network_key(), []).append(top1)
    return configs, {k: float(np.mean(v)) for k, v in scores.items()}


def label(tables: Sequence[BenchTable]) -> str:
    return "+".join(str(t.path) for t in tables)


# ---- rank agreement ---------------------------------------------------------------------------------------
def rank_agreement(a: Sequence[BenchTable], b: Sequence[BenchTable]) -> dict[str, Any]:
    """Kendall's tau (and Spearman's rho) of top-1 between two fidelities (each a group of seed tables, top-1
    averaged over seeds) over the networks both scored; None where it is undefined (fewer than two configs,
    or one side's accuracies all equal). Also the mean absolute difference of top-1 and each side's best
    config among the shared ones: does the cheap fidelity pick the same winner?"""
    configs, mean_a = pooled(a)
    _, mean_b = pooled(b)
    pairs = [(mean_a[k], mean_b[k], configs[k].id) for k in configs if k in mean_a and k in mean_b]
    result: dict[str, Any] = {"a": label(a), "b": label(b), "a_profile": a[0].fidelity.get("name"),
                              "b_profile": b[0].fidelity.get("name"), "a_seeds": [t.seed for t in a],
                              "b_seeds": [t.seed for t in b], "configs": len(pairs),
                              "kendall_tau": None, "p_value": None, "spearman_rho": None,
                              "mean_abs_diff": None, "a_best": None, "b_best": None}
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    if pairs:
        result.update(mean_abs_diff=float(np.mean(np.abs(np.subtract(x, y)))),
                      a_best=max(pairs, key=lambda p: p[0])[2], b_best=max(pairs, key=lambda p: p[1])[2])
    if len(pairs) >= 2 and len(set(x)) > 1 and len(set(y)) > 1:  # else undefined: None
        tau = kendalltau(x, y)
        result.update(kendall_tau=float(tau.statistic), p_value=float(tau.pvalue),
                      spearman_rho=float(spearmanr(x, y).statistic))
    return result


def chain_agreement(chain: Sequence[Sequence[BenchTable]]) -> list[dict[str, Any]]:
    """Rank agreement along fidelities ordered cheapest first: each consecutive pair, then (for three or
    more) the first against the last; each result says which (``pair``)."""
    out = [{**rank_agreement(a, b), "pair": f"{i + 1} vs {i + 2}"} for i, (a, b) in enumerate(zip(chain, chain[1:]))]
    if len(chain) > 2:
        out.append({**rank_agreement(chain[0], chain[-1]), "pair": f"1 vs {len(chain)} (first vs last)"})
    return out
