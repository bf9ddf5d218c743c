"""How good each latency predictor is, on networks it was not fitted on, and the choice of the one to keep.

The table's networks are ordered by MACs and every ``1/holdout``-th is held out (an even spread over the
whole cost range, no seed to pick a lucky split). On the rest, each kind is cross-validated (``folds`` folds,
again interleaved by MACs); the kind with the lowest cross-validated median absolute percentage error is
chosen (ties: the lower 90th percentile), without looking at the held-out networks. Every kind is then fitted
on the rest and scored on the held-out networks (median and 90th-percentile APE, Kendall's tau against the
measurements): the chosen kind's held-out score is the honest estimate of its error. The model kept is the
chosen kind refitted on every measured network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from .backends import LatencyError
from .predict import KINDS, LatencyModel, error_summary, fit_model
from .table import LatencyTable

DEFAULT_HOLDOUT = 0.25
DEFAULT_FOLDS = 5


def interleaved_split(macs: Sequence[int], fraction: float) -> tuple[list[int], list[int]]:
    """``(kept, held_out)`` indices: ordered by MACs, the ranks where the running count of ``fraction`` steps
    up are held out -- an even ``fraction`` of the cost range."""
    order = sorted(range(len(macs)), key=lambda i: (macs[i], i))
    held = [i for rank, i in enumerate(order) if math.floor((rank + 1) * fraction) > math.floor(rank * fraction)]
    held_set = set(held)
    return [i for i in order if i not in held_set], held


def table_settings(table: LatencyTable) -> dict[str, Any]:
    m = table.meta
    return {"backend": m["backend"], "batch": m["batch"], "threads": m["threads"], "device": m["device"],
            "runtime": m["runtime"], "precision": m.get("precision"), "num_classes": m["num_classes"],
            "statistic": table.statistic, "table": table.path.name, "networks": len(table.configs)}


def _fit(kind: str, table: LatencyTable, idx: Sequence[int], seed: int) -> LatencyModel:
    return fit_model(kind, table.space, table.meta["space"], table_settings(table), [table.configs[i] for i in idx],
                     [table.latency_ms[i] for i in idx], table.lut, seed)


def _predict(model: LatencyModel, table: LatencyTable, idx: Sequence[int]) -> np.ndarray:
    return model.predict_ms([table.configs[i] for i in idx])


def cross_validated(kind: str, table: LatencyTable, idx: Sequence[int], folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions for ``idx`` (interleaved by MACs into ``folds`` folds)."""
    order = sorted(idx, key=lambda i: (table.macs[i], i))
    predicted = {}
    for fold in range(folds):
        test = order[fold::folds]
        train = [i for i in order if i not in set(test)]
        for i, p in zip(test, _predict(_fit(kind, table, train, seed), table, test)):
            predicted[i] = float(p)
    return np.array([predicted[i] for i in idx])


def available_kinds(table: LatencyTable, kinds: Sequence[str] = KINDS) -> list[str]:
    """The kinds this table can fit: the lookup-table ones need every block of the table's networks."""
    if not table.lut:
        return [k for k in kinds if not k.startswith("lut")]
    try:
        fit_model("lut", table.space, table.meta["space"], table_settings(table), list(table.configs),
                  list(table.latency_ms), table.lut)
    except LatencyError:
        return [k for k in kinds if not k.startswith("lut")]
    return list(kinds)


def select_model(table: LatencyTable, kinds: Sequence[str] = KINDS, holdout: float = DEFAULT_HOLDOUT,
                 folds: int = DEFAULT_FOLDS, seed: int = 0) -> LatencyModel:
    """Evaluate every kind (module docstring), keep the best, refit it on all networks; its ``evaluation``
    records every kind's cross-validated and held-out errors, the split and the MACs-latency rank agreement."""
    n = len(table.configs)
    if not 0 < holdout < 1:
        raise LatencyError(f"--holdout: {holdout} is not a fraction in (0, 1)")
    if folds < 2:
        raise LatencyError(f"--folds: {folds} is below 2")
    kept, held = interleaved_split(table.macs, holdout)
    if len(kept) < 2 * folds or len(held) < 3:
        raise LatencyError(f"--configs: {n} measured networks are too few to hold out {holdout:.0%} and "
                           f"cross-validate {folds} folds; measure at least {max(4 * folds, math.ceil(3 / holdout))}")
    kinds = available_kinds(table, kinds)
    measured_kept = np.array([table.latency_ms[i] for i in kept])
    measured_held = np.array([table.latency_ms[i] for i in held])
    results: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        cv = error_summary(cross_validated(kind, table, kept, folds, seed), measured_kept)
        predicted_held = _predict(_fit(kind, table, kept, seed), table, held)
        results[kind] = {"cv": cv, "held_out": error_summary(predicted_held, measured_held),
                         "held_out_predicted_ms": [round(float(p), 4) for p in predicted_held]}
    chosen = min(kinds, key=lambda k: (results[k]["cv"]["median_ape"], results[k]["cv"]["p90_ape"]))
    model = _fit(chosen, table, range(n), seed)
    evaluation = {
        "chosen": chosen, "rule": "lowest cross-validated median APE on the kept networks (ties: p90)",
        "holdout": holdout, "folds": folds, "networks": n, "kept": len(kept),
        "held_out_ids": [table.configs[i].id for i in held],
        "held_out_measured_ms": [round(float(m), 4) for m in measured_held],
        "kinds": results,
        "macs_kendall_tau": float(kendalltau(table.macs, table.latency_ms).statistic),
        "repeatability": table.repeatability(),
    }
    return LatencyModel(model.kind, model.space, model.space_dict, model.settings, model.features, model.lut,
                        model.gp, evaluation)


def format_evaluation(evaluation: dict[str, Any]) -> list[str]:
    """The evaluation as printed lines: one per kind, the chosen one marked."""
    lines = [f"{'predictor':<12} {'CV median':>9} {'CV p90':>7}   {'held-out median':>15} {'p90':>6} "
             f"{'tau':>6}"]
    for kind, r in evaluation["kinds"].items():
        cv, held = r["cv"], r["held_out"]
        tau = "-" if held["kendall_tau"] is None else f"{held['kendall_tau']:.3f}"
        mark = "  <- kept" if kind == evaluation["chosen"] else ""
        lines.append(f"{kind:<12} {cv['median_ape']:>8.2f}% {cv['p90_ape']:>6.2f}%   {held['median_ape']:>14.2f}% "
                     f"{held['p90_ape']:>5.2f}% {tau:>6}{mark}")
    return lines
