"""A tabular benchmark of the factor space (issue 8): a space-filling sample of configs, each scored once.

``archsearch bench-table`` writes the table (``scoring.generate_table`` trains the sample); ``tables.py``
reads tables (exact rows only, seeds pooled, rank agreement between fidelities); ``archsearch replay``
(``replay/``) runs the search strategies against them instead of training.

* Sample (``select_configs``): the distinct networks of the space (``ArchConfig.network_key``, the first grid
  point of each, as ``feasible_grid`` does) whose closed-form MACs lie in ``[min_macs, max_macs]``. The
  grid-width baselines of ``BASELINE_BUDGETS`` (``grid_width_baseline``) that lie in that range come first,
  so that a replay's "winner vs baseline" is exact. Then greedy maximin in the encoded unit cube, round-robin
  over ``STRATA`` equal bands of log-MACs: each pick is the free candidate of the next band farthest from
  everything picked (ties: a seeded order). The bands give every replay budget its share of the points (the
  grid's distinct networks crowd at the top of the MAC range). The sequence does not depend on ``n``: a
  larger ``--configs`` extends it.
* Table: a CSV with one row per config (``COLUMNS``), appended and flushed as soon as the config is scored, so
  an interrupted run loses at most the config in progress and re-running the command skips the rows already
  there -- except rows whose ``trained_resolution`` is not today's exact one (tables scored before the exact
  resolution): those configs are scored again, and ``tables.load_table`` reads the new row. Beside the table,
  ``<table>.json`` records how it was made: space, sample settings, the fidelity profile with every field,
  training seed, data path and fingerprint, device, version. Resuming with other settings, or on another
  kind of device, is an error.
* Profiles: a name of ``training.PROFILES`` or JSON overrides on one, inline or in a ``.json`` file:
  ``{"base": "smoke", "name": "smoke2", "epochs": 2}``. (A halved smoke profile, 2 epochs of 80 images a
  class, was tried on the CPU and dropped: its train loss stayed at ln 10 and its top-1 at 10-14 %.)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..model.config import ArchConfig, ConfigError
from ..model.cost import closed_form_cost, distinct_networks
from ..model.space import DEFAULT_SPACES, FactorSpace, read_space_toml
from ..train.recipe import PROFILES, get_profile, is_profile_name, train_resolution

BASELINE_BUDGETS = (150_000_000, 300_000_000, 600_000_000)  # the budgets RESULTS.md replays
STRATA = 10
COLUMNS = ("config_id", "family", "resolution", "width", "mv2_depth", "vit_depth", "macs", "params", "top1",
           "top5", "train_loss", "wall_s", "status", "profile", "seed", "data", "device", "archsearch_version",
           "reason", "trained_resolution", "val_correct", "curve")


# ---- the sample ------------------------------------------------------------------------------------------
def distinct_in_range(space: FactorSpace, min_macs: int, max_macs: int) -> tuple[list[ArchConfig], list[int]]:
    """One config per distinct network (the first in grid order) with closed-form MACs in the range."""
    chosen = [(config, cost) for config, cost in distinct_networks(space) if min_macs <= cost <= max_macs]
    return [c for c, _ in chosen], [m for _, m in chosen]


def grid_width_baseline(space: FactorSpace, budget: int) -> ArchConfig | None:
    """The widest *grid* width at 256 px and depths 1.0 within ``budget``: the sample's first points since
    issue 8 (kept so that existing tables extend the same sequence; the search's baselines are finer,
    ``baselines.py``)."""
    resolution = min(space.range("resolution").values(), key=lambda r: abs(r - 256))
    best = None
    for width in space.range("width").values():
        config = ArchConfig(space.family, resolution=resolution, width=width, num_classes=space.num_classes,
                            variant=space.variants[0])
        if closed_form_cost(config).macs <= budget:
            best = config
    return best


def baseline_configs(space: FactorSpace, budgets: Iterable[int] = BASELINE_BUDGETS) -> list[ArchConfig]:
    """The grid-width baseline of each budget (``grid_width_baseline``), distinct."""
    out: list[ArchConfig] = []
    for budget in budgets:
        config = grid_width_baseline(space, budget)
        if config is not None and config.network_key() not in {c.network_key() for c in out}:
            out.append(config)
    return out


def select_configs(space: FactorSpace, n: int, min_macs: int, max_macs: int, seed: int = 0,
                   include: Iterable[ArchConfig] = (), strata: int = STRATA) -> list[tuple[ArchConfig, int]]:
    """``n`` configs with their MACs: those of ``include`` whose MACs lie in the range first, then stratified
    greedy maximin (module docstring)."""
    if not 0 < min_macs <= max_macs:
        raise ConfigError(f"--min-macs/--max-macs: need 0 < min <= max, got {min_macs} and {max_macs}")
    configs, macs = distinct_in_range(space, min_macs, max_macs)
    chosen: list[tuple[ArchConfig, int]] = []
    taken_keys: set = set()
    for config in include:
        key, cost = config.network_key(), closed_form_cost(config).macs
        if key not in taken_keys and len(chosen) < n and min_macs <= cost <= max_macs:
            chosen.append((config, cost))
            taken_keys.add(key)
    if not configs:
        return chosen
    x = space.encode(configs)
    free = np.array([c.network_key() not in taken_keys for c in configs])
    nearest = np.full(len(configs), np.inf)
    for config, _ in chosen:
        nearest = np.minimum(nearest, np.sqrt(((x - space.encode([config])) ** 2).sum(1)))
    span = math.log(max_macs) - math.log(min_macs)
    band = np.array([min(strata - 1, int(strata * (math.log(m) - math.log(min_macs)) / span)) if span > 0 else 0
                     for m in macs])
    order = np.random.default_rng(seed).permutation(len(configs))
    rank = np.empty(len(configs), dtype=np.int64)
    rank[order] = np.arange(len(configs))
    stratum = 0
    while len(chosen) < n and free.any():
        for _ in range(strata):  # the next band that still has a free candidate
            if (free & (band == stratum)).any():
                break
            stratum = (stratum + 1) % strata
        pool = np.flatnonzero(free & (band == stratum))
        # farthest from everything chosen; ties (and the very first pick): the seeded order
        pick = int(pool[np.lexsort((rank[pool], -nearest[pool]))[0]])
        chosen.append((configs[pick], macs[pick]))
        free[pick] = False
        nearest = np.minimum(nearest, np.sqrt(((x - x[pick]) ** 2).sum(1)))
        stratum = (stratum + 1) % strata
    return chosen


# ---- profiles ---------------------------------------------------------------------------------------------
def resolve_profile(spec: str):
    """A ``training.Profile`` from a name or JSON overrides on one (inline or a file)."""
    if is_profile_name(spec):
        return get_profile(spec)
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if path.suffix != ".json":
            raise ConfigError(f"--profile: unknown {spec!r}; choose from {', '.join(PROFILES)}, "
                              "NAME-eK (NAME stopped after epoch K), or give JSON overrides")
        try:
            text = path.read_text()
        except OSError:
            raise ConfigError(f"--profile: cannot read {path}") from None
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--profile: not valid JSON ({err})") from None
    if not isinstance(overrides, dict):
        raise ConfigError("--profile: JSON overrides must be an object, e.g. {\"base\": \"smoke\", \"epochs\": 2}")
    base = overrides.pop("base", "smoke")
    overrides.setdefault("name", f"{base}-custom")
    for key in ("train_per_class", "val_per_class"):  # JSON lists would break the frozen profile's hash
        if isinstance(overrides.get(key), list):
            raise ConfigError(f"--profile: {key} must be a number or null")
    if isinstance(overrides.get("crop_scale"), list):
        overrides["crop_scale"] = tuple(overrides["crop_scale"])
    try:
        return get_profile(base, **overrides)
    except ConfigError as err:
        raise ConfigError(f"--profile: {err}") from None
    except TypeError as err:
        raise ConfigError(f"--profile: {err}") from None


def default_table_path(profile_name: str, family: str = "v2") -> Path:
    """``benchmarks/table_FAMILY_PROFILE.csv`` under the current directory (the repository's own tables when
    run from its root; an installed package has no source tree to write into)."""
    return Path.cwd() / "benchmarks" / f"table_{family}_{profile_name}.csv"


def meta_path(table: str | Path) -> Path:
    return Path(table).with_suffix(".json")


# ---- reading and appending rows ---------------------------------------------------------------------------
def read_rows(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    """One row, written with one ``write`` and flushed to disk (the header first if the file is new)."""
    path = Path(path)
    buffer = io.StringIO()
    new = not path.exists() or path.stat().st_size == 0
    columns = COLUMNS if new else _header(path)  # a table begun by an older version keeps its columns
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    if new:
        writer.writeheader()
    writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    with open(path, "a", newline="") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _header(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def make_row(config: ArchConfig, record: Any, profile_name: str, seed: int, data_name: str) -> dict[str, Any]:
    """A table row from the space's config (id, factors, MACs at the space's class count) and a record."""
    cost = closed_form_cost(config)
    get = record.get if isinstance(record, dict) else lambda k, d=None: getattr(record, k, d)
    return {
        "config_id": config.id, "family": config.family, "resolution": config.resolution, "width": config.width,
        "mv2_depth": config.mv2_depth, "vit_depth": config.vit_depth, "macs": cost.macs, "params": cost.params,
        "top1": get("top1"), "top5": get("top5"), "train_loss": get("train_loss"), "wall_s": get("wall_s"),
        "status": get("status"), "profile": profile_name, "seed": seed, "data": data_name,
        "device": get("device"), "archsearch_version": __version__, "reason": get("reason"),
        "trained_resolution": get("resolution"), "val_correct": get("val_correct"),
        "curve": json.dumps([round(h["val_top1"], 6) for h in get("history") or []]) if get("history") else None,
    }


def row_config(row: dict[str, Any], space: FactorSpace) -> ArchConfig:
    try:
        return ArchConfig(row["family"], resolution=int(row["resolution"]), width=float(row["width"]),
                          mv2_depth=float(row["mv2_depth"]), vit_depth=float(row["vit_depth"]),
                          num_classes=space.num_classes)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"table row {row.get('config_id', '?')!r}: {err}") from None


def exact_resolution(row: dict[str, Any], config: ArchConfig, profile) -> bool:
    """True when the row was trained at today's exact side, ``training.train_resolution`` (rows scored
    before commit 4d68ef5 rounded it to a multiple of 32: see ``tables``)."""
    try:
        return int(row.get("trained_resolution") or 0) == train_resolution(config, profile.resolution_scale)
    except ValueError:
        return False


def load_space(space_file: str | Path | None) -> tuple[FactorSpace, dict]:
    """The space and its parsed TOML (stored in the sidecar, so a replay needs no file)."""
    path = space_file or DEFAULT_SPACES["v2"]
    data = read_space_toml(path)
    return FactorSpace.from_dict(data, source=str(path)), data


def format_macs(macs: float) -> str:
    return f"{macs / 1e9:g}G" if macs >= 1e9 and macs % 1e8 == 0 else f"{macs / 1e6:g}M"


def sample_lines(sample: list[tuple[ArchConfig, int]], baselines: list[ArchConfig]) -> Iterable[str]:
    base = {c.network_key() for c in baselines}
    for i, (config, macs) in enumerate(sample, 1):
        note = "  (uniform baseline)" if config.network_key() in base else ""
        yield f"{i:>4} {config.id:<34} {macs / 1e6:>8.1f}M{note}"
