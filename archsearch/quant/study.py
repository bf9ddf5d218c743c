"""Quantize a study's deciding networks (``archsearch run --quantize``) and keep the results in the study.

Each network trained at the deciding rung (finalists, repeats and baselines) is quantized from the weights
the run kept, with one method at one bit width, calibrated on ``quantize_network``'s 32 training images and scored on the full
validation set (``evaluate.quantize_network``). Each result is stored as soon as it is measured (study
attribute ``quantized``, by trial number), so an interrupted run loses at most the network in hand, and a
re-run quantizes only what is missing.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import optuna

from ..results.quantized import (
    RESULTS_ATTR,
    SETTINGS_ATTR,
    QuantizeSettings,
    results_of,
)
from ..search.jobs import Ledger
from .evaluate import quantize_network


def quantize_deciding(study: optuna.Study, top: int, settings: QuantizeSettings, data: str | None, folder: Path,
                      progress: bool = True, latency_runs: int = 30) -> int:
    """Quantize every deciding job that has weights and no result for ``settings`` yet; how many were."""
    study.set_user_attr(SETTINGS_ATTR, asdict(settings))
    results = {n: q for n, q in results_of(study).items()  # another method's or width's are measured again
               if (q["method"], q["bits"]) == (settings.method, settings.bits)}
    ledger = Ledger(study.get_trials(deepcopy=False))
    count = 0
    for entry in sorted(ledger.at(top), key=lambda e: e.number):
        weights = entry.record.get("weights")
        if entry.number in results or not weights:
            continue
        if not Path(weights).is_file():
            print(f"trial {entry.number}: its weights {weights} are gone; not quantized", file=sys.stderr)
            continue
        report = quantize_network(weights, (settings.method,), (settings.bits,), data=data,
                                  out=folder / f"trial{entry.number}", latency_runs=latency_runs, progress=progress)
        outcome = report.outcomes[0]
        results[entry.number] = {**asdict(outcome), "float_top1_measured": report.float_top1,
                                 "float_latency_ms": (report.float_latency or {}).get("latency_ms"),
                                 "model": str(folder / f"trial{entry.number}" / f"{settings.method}-int8.onnx")
                                 if settings.bits == 8 else None}
        study.set_user_attr(RESULTS_ATTR, {str(k): v for k, v in results.items()})
        count += 1
    return count
