"""Latency figures from plain data: latency against MACs (measured and predicted, per family), and the
accuracy-latency Pareto front beside the accuracy-MACs one.

The builders take lists of small frozen records, not studies, so the dashboard, a benchmark script or a
notebook can feed them; ``grid_points`` and ``table_points`` make those records from a latency model and a
latency table. Latencies are plotted in ms, MACs in millions, both on log axes (a space spans three decades).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..model.cost import distinct_networks
from ..model.space import FactorSpace
from .predict import LatencyModel
from .table import LatencyTable

FAMILY_COLORS = {"v1": "#1f77b4", "v2": "#d62728"}
BUDGET_COLOR = "#7f7f7f"
FLAG_COLOR = "#d62728"


@dataclass(frozen=True)
class LatencyPoint:
    """One network's latency: measured (a table row, a trial) or predicted (a grid point)."""

    config_id: str
    family: str
    macs: int
    latency_ms: float
    measured: bool


@dataclass(frozen=True)
class AccuracyPoint:
    """One trained config: accuracy, MACs, its measured latency, and whether that broke the latency budget."""

    config_id: str
    accuracy: float  # top-1, 0..1
    macs: int
    latency_ms: float
    over_budget: bool = False
    label: str = ""  # "winner", "baseline", ...


def grid_points(model: LatencyModel, space: FactorSpace) -> list[LatencyPoint]:
    """The model's prediction for every distinct network of ``space``."""
    networks = list(distinct_networks(space))
    predicted = model.predict_ms([c for c, _ in networks])
    return [LatencyPoint(c.id, c.family, m, float(p), False) for (c, m), p in zip(networks, predicted)]


def table_points(table: LatencyTable) -> list[LatencyPoint]:
    """The measured networks of a latency table."""
    return [LatencyPoint(c.id, c.family, m, t, True) for c, m, t in zip(table.configs, table.macs, table.latency_ms)]


def pareto_front(points: Sequence[AccuracyPoint], cost: Callable[[AccuracyPoint], float]) -> list[AccuracyPoint]:
    """Points no other beats on both accuracy (higher) and ``cost`` (lower), by cost ascending."""
    front: list[AccuracyPoint] = []
    best = float("-inf")
    for p in sorted(points, key=lambda p: (cost(p), -p.accuracy)):
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front


def latency_macs_figure(points: Sequence[LatencyPoint], latency_budget_ms: float | None = None,
                        mac_budget: int | None = None, backend: str = "") -> go.Figure:
    """Latency against MACs: predicted grid points faint, measured networks solid, one colour per family;
    the budgets as lines. Networks of equal MACs spread vertically by how far MACs mislead."""
    fig = go.Figure()
    for family in sorted({p.family for p in points}):
        for measured in (False, True):
            group = [p for p in points if p.family == family and p.measured == measured]
            if not group:
                continue
            fig.add_trace(go.Scatter(
                x=[p.macs / 1e6 for p in group], y=[p.latency_ms for p in group], mode="markers",
                name=f"{family} {'measured' if measured else 'predicted (grid)'}",
                marker=dict(color=FAMILY_COLORS.get(family, "#2ca02c"), size=8 if measured else 4,
                            opacity=0.9 if measured else 0.25, line=dict(width=1 if measured else 0, color="black")),
                text=[html.escape(p.config_id) for p in group],
                hovertemplate="%{text}<br>%{x:.1f}M MACs · %{y:.3f} ms<extra></extra>"))
    _budget_lines(fig, points, latency_budget_ms, mac_budget)
    fig.update_layout(title=dict(text=f"Latency vs MACs{' on ' + backend if backend else ''}: measured and predicted"),
                      xaxis=dict(title=dict(text="MACs (M, batch 1)"), type="log"),
                      yaxis=dict(title=dict(text="latency (ms)"), type="log"), height=520)
    return fig


def _budget_lines(fig: go.Figure, points: Sequence[LatencyPoint], latency_budget_ms: float | None,
                  mac_budget: int | None) -> None:
    if not points:
        return
    macs = [p.macs / 1e6 for p in points]
    times = [p.latency_ms for p in points]
    if latency_budget_ms is not None:
        fig.add_trace(go.Scatter(x=[min(macs), max(macs)], y=[latency_budget_ms] * 2, mode="lines",
                                 name=f"latency budget {latency_budget_ms:g} ms", hoverinfo="name",
                                 line=dict(color=BUDGET_COLOR, dash="dash")))
    if mac_budget is not None:
        fig.add_trace(go.Scatter(x=[mac_budget / 1e6] * 2, y=[min(times), max(times)], mode="lines",
                                 name=f"MAC budget {mac_budget / 1e6:g}M", hoverinfo="name",
                                 line=dict(color=BUDGET_COLOR, dash="dot")))


def accuracy_pareto_figure(points: Sequence[AccuracyPoint], mac_budget: int | None = None,
                           latency_budget_ms: float | None = None, backend: str = "") -> go.Figure:
    """Two panels sharing the accuracy axis: accuracy against MACs and against measured latency, each with its
    Pareto front and budget; configs whose measured latency broke the budget are crossed out in red."""
    on = f" ({backend})" if backend else ""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("accuracy vs MACs", f"accuracy vs measured latency{on}"))
    panels = ((1, lambda p: p.macs / 1e6, mac_budget / 1e6 if mac_budget else None, "MACs (M)"),
              (2, lambda p: p.latency_ms, latency_budget_ms, "latency (ms)"))
    accs = [100 * p.accuracy for p in points] or [0.0, 100.0]
    for col, x_of, budget, title in panels:
        ok = [p for p in points if not p.over_budget]
        flagged = [p for p in points if p.over_budget]
        for group, name, marker in ((ok, "trained", dict(size=9, color="#2ca02c", opacity=0.8)),
                                    (flagged, "measured over the latency budget",
                                     dict(size=11, color=FLAG_COLOR, symbol="x"))):
            if group:
                fig.add_trace(go.Scatter(
                    x=[x_of(p) for p in group], y=[100 * p.accuracy for p in group], mode="markers", name=name,
                    legendgroup=name, showlegend=col == 1, marker=marker, text=[_hover(p) for p in group],
                    hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        front = pareto_front(points, x_of)
        fig.add_trace(go.Scatter(
            x=[x_of(p) for p in front], y=[100 * p.accuracy for p in front], mode="lines+markers",
            name="Pareto front", legendgroup="front", showlegend=col == 1,
            line=dict(color="black", width=1.5, shape="hv"), marker=dict(size=5, color="black"),
            text=[_hover(p) for p in front], hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        for p in points:
            if p.label:
                fig.add_trace(go.Scatter(x=[x_of(p)], y=[100 * p.accuracy], mode="markers+text", text=[p.label],
                                         textposition="top center", showlegend=False, hoverinfo="skip",
                                         marker=dict(size=16, symbol="star-open", color="black")), row=1, col=col)
        if budget is not None:
            fig.add_trace(go.Scatter(x=[budget] * 2, y=[min(accs) - 0.5, max(accs) + 0.5], mode="lines",
                                     name=f"budget {budget:g}", showlegend=False, hoverinfo="name",
                                     line=dict(color=BUDGET_COLOR, dash="dash")), row=1, col=col)
        fig.update_xaxes(title_text=title, row=1, col=col)
    fig.update_yaxes(title_text="top-1 %", row=1, col=1)
    fig.update_layout(title=dict(text="Pareto fronts: accuracy against MACs and against measured latency"),
                      height=520)
    return fig


def _hover(p: AccuracyPoint) -> str:
    flag = "<br><b>measured over the latency budget</b>" if p.over_budget else ""
    return (f"<b>{html.escape(p.config_id)}</b><br>top-1 {100 * p.accuracy:.2f} %<br>{p.macs / 1e6:.1f}M MACs · "
            f"{p.latency_ms:.3f} ms{flag}")
