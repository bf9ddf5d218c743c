"""The measured latency a trained trial records: its config on the study's backend, outside the training timer.

A study measures on the backend, batch and threads of its ``LatencySettings`` (a budget's are those of its
latency model); one without latency options on the defaults (``ort-cpu``, batch 1, one thread), so every
study can draw the accuracy-latency front. Untrained weights time as trained ones do, so a network is
measured once per study (per worker process; another trial of the same network reuses the measurement and
says which). A failed measurement is recorded as an error and never fails the trial: the accuracy is the
trial's result.
"""

from __future__ import annotations

from typing import Any

from ..model.config import ArchConfig
from .budget import LatencySettings, check_latency
from .measure import measure_latency


def measure_trial(config: ArchConfig, latency: LatencySettings | None,
                  known: dict[tuple, dict] | None = None) -> dict[str, Any]:
    """The ``latency`` attribute of a trial of ``config``: the harness's summary (``latency_ms`` is the median
    of 30 runs after 10 warm-up runs), with ``budget_ms`` and ``within_budget`` where the study has a latency
    budget. ``known`` maps ``(network, backend, batch, threads)`` to a measurement already taken."""
    how = latency or LatencySettings()
    key = (config.network_key(), how.backend, how.batch, how.threads)
    if known is not None and key in known:
        out = {**known[key], "reused": True}
    else:
        try:
            out = measure_latency(config, how.backend, how.batch, how.threads).summary()
        except Exception as err:  # noqa: BLE001 -- a timing that fails must not lose the trained result
            return {"backend": how.backend, "batch": how.batch, "threads": how.threads,
                    "error": f"{type(err).__name__}: {err}"[:300]}
        if known is not None:
            known[key] = out
    return checked(out, how.budget_s) if how.budget_s is not None else out


def checked(attr: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """A measured ``latency`` attribute with ``budget_ms`` and ``within_budget`` against ``budget_s`` (a family's
    verdict checks it again against each member's own budget)."""
    check = check_latency(attr["latency_ms"] / 1e3, float(budget_s))
    return {**attr, "budget_ms": round(check.budget_s * 1e3, 4), "within_budget": check.within}


def over_budget(attr: dict | None) -> bool:
    """Whether a trial's ``latency`` attribute says it was measured over the study's latency budget."""
    return bool(attr) and attr.get("within_budget") is False
