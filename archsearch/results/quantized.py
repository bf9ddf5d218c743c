"""A study's deciding networks once quantized: the accuracy a device will see.

``archsearch run --quantize int8`` (or ``6``) quantizes every network trained at the deciding rung
(``quant.study``) and keeps each result in the study (attribute ``quantized``, by trial number), beside how
(attribute ``quantize``: bits, method and the objective). With ``--objective quantized`` the verdict is taken
on those results: ``quantized_ledger`` is the study's ledger with each deciding job's score and per-image hits
replaced by its quantized network's, so the decision, its margins and P(best) are computed exactly as for the
float scores, on the quantized ones. No torch here: the judge reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import optuna

from ..search.jobs import Ledger

SETTINGS_ATTR = "quantize"
RESULTS_ATTR = "quantized"
OBJECTIVES = ("float", "quantized")


@dataclass(frozen=True)
class QuantizeSettings:
    bits: int
    method: str
    objective: str = "float"  # "quantized": the verdict is taken on the quantized networks

    @property
    def label(self) -> str:
        return f"{self.method} {'int8' if self.bits == 8 else f'{self.bits}-bit (simulated)'}"


def settings_of(study: optuna.Study) -> QuantizeSettings | None:
    stored = study.user_attrs.get(SETTINGS_ATTR)
    return QuantizeSettings(**stored) if stored else None


def results_of(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> its network's quantized outcome (``quant.evaluate.Outcome`` as a dict, with ``bits``)."""
    return {int(k): v for k, v in study.user_attrs.get(RESULTS_ATTR, {}).items()}


def quantized_ledger(ledger: Ledger, top: int, results: dict[int, dict[str, Any]]) -> Ledger:
    """``ledger`` with each job at rung ``top`` scored as its quantized network (score and per-image hits);
    a deciding job without a quantized result is left out: it cannot be compared on the objective. A network
    with a measured int8 latency is timed by it, against the study's latency budget (``within_budget``)."""
    int8 = {e.job.config.network_key(): results[e.number]["latency"]["latency_ms"] for e in ledger.at(top)
            if e.number in results and (results[e.number].get("latency") or {}).get("latency_ms")}
    entries = []
    for e in ledger.entries:
        key = e.job.config.network_key()
        if e.latency and key in int8:
            timed = {**e.latency, "latency_ms": int8[key], "precision": "int8"}
            if e.latency.get("budget_ms") is not None:
                timed["within_budget"] = int8[key] <= e.latency["budget_ms"]
            e = dataclasses.replace(e, latency=timed)
        if e.job.rung != top or e.state != "done":
            entries.append(e)
            continue
        q = results.get(e.number)
        if q is None:
            continue
        record = {**e.record, "top1": q["top1"], "val_correct": q["val_correct"], "float_top1": e.accuracy}
        entries.append(dataclasses.replace(e, accuracy=q["top1"], record=record))
    return Ledger.of(entries)


def rows(ledger: Ledger, top: int, results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Float and quantized score of every deciding job that was quantized, for the summary and the dashboard."""
    out = []
    for e in sorted(ledger.at(top), key=lambda e: e.number):
        q = results.get(e.number)
        if q is None:
            continue
        float_top1 = e.record.get("float_top1", e.accuracy)
        latency = q.get("latency") or {}
        out.append({"trial": e.number, "config_id": e.job.config.id, "role": e.job.role, "seed": e.job.seed,
                    "macs": e.macs, "float_top1": float_top1, "quantized_top1": q["top1"], "drop": q["drop"],
                    "drop_interval": q["drop_interval"], "method": q["method"], "bits": q["bits"],
                    "executed": q["executed"], "latency_ms": latency.get("latency_ms"),
                    "float_latency_ms": q.get("float_latency_ms"), "size_bytes": q.get("size_bytes")})
    return out
