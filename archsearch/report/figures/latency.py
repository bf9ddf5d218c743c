"""The dashboard's latency sections, from a study's view: latency against MACs (the study's measured networks,
and every grid point as its latency model predicts it, v1 and v2 where a model of each is at hand), and the
accuracy-latency Pareto front beside the accuracy-MACs one (``latency.figures`` draws both).
"""

from __future__ import annotations

import plotly.graph_objects as go

from ...latency.figures import (
    AccuracyPoint,
    LatencyPoint,
    accuracy_pareto_figure,
    grid_points,
    latency_macs_figure,
)
from ...latency.predict import find_model
from ...latency.trial import over_budget
from .view import StudyView


def _measured(view: StudyView) -> dict[tuple, tuple]:
    """network -> (config, MACs, latency attribute) of every trained network with a measured latency."""
    out = {}
    for e in view.jobs:
        if e.latency and "latency_ms" in e.latency:
            out.setdefault(e.job.config.network_key(), (e.job.config, e.macs, e.latency))
    return out


def _models(view: StudyView) -> list:
    """The study's latency model, and the other family's model for the same backend where one is at hand."""
    limit = view.settings.latency_limit()
    models = [limit.model] if limit is not None else []
    backend = limit.backend if limit is not None else view.settings.timing.backend
    for family in ("v1", "v2"):
        if not any(m.space.family == family for m in models):
            try:
                models.append(find_model(family, backend))
            except Exception:  # noqa: BLE001 -- no table measured for that family here: nothing to draw
                continue
    return models


def latency_macs(view: StudyView) -> go.Figure | None:
    timed = list(_measured(view).values())
    measured = [LatencyPoint(c.id, c.family, m, lat["latency_ms"], True) for c, m, lat in timed]
    predicted = [p for model in _models(view) for p in grid_points(model, model.space)]
    if not measured and not predicted:
        return None
    limit = view.settings.latency_limit()
    backend = timed[0][2].get("backend", "") if timed else ""
    return latency_macs_figure(predicted + measured, limit.budget_s * 1e3 if limit else None, view.budget,
                               backend)


def pareto_latency(view: StudyView) -> go.Figure | None:
    """Networks at the deciding rung (mean over seeds) with a measured latency."""
    rung, latency = view.decision.rung, _measured(view)
    labels = {view.decision.winner.config.network_key(): "winner"} if view.decision.winner else {}
    for m in view.decision.margins:
        if m.baseline is not None:
            labels.setdefault(m.baseline.config.network_key(), m.kind)
    timed = [(key, n) for key, n in view.networks(rung).items() if key in latency]
    if not timed:
        return None
    points = []
    for key, n in timed:
        config, macs, lat = latency[key]
        points.append(AccuracyPoint(config.id, n.mean, macs, lat["latency_ms"], over_budget(lat), labels.get(key, "")))
    limit = view.settings.latency_limit()
    backend = next(iter(latency.values()))[2].get("backend", "")
    return accuracy_pareto_figure(points, view.budget, limit.budget_s * 1e3 if limit else None, backend)
