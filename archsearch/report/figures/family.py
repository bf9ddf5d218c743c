"""The dashboard's family section (``run --mac-budget 75M,150M,...``), against MACs: the accuracy of the searched
family and of the width and compound families with intervals, each factor of each budget's winner with the law
across the budgets, and the factor importance at each budget."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...model.space import FACTORS
from ...search.networks import Network
from ...search.noise import Z95
from .view import (
    KIND_COLORS,
    KIND_LABELS,
    KIND_SYMBOLS,
    LABELS,
    WINNER_COLOR,
    StudyView,
)

FACTOR_COLORS = {"resolution": "#1f77b4", "width": "#ff7f0e", "mv2_depth": "#2ca02c", "vit_depth": "#9467bd"}


def half_width(n: Network, noise_std: float) -> float:
    """A network's 95 % half-width at the deciding rung: its seeds' training noise and the validation sample."""
    images = max((len(h) for h in n.hits.values()), default=0)
    sampling = n.mean * (1 - n.mean) / images if images else 0.0
    return Z95 * math.sqrt(noise_std**2 / len(n.scores) + sampling)


def family_figure(view: StudyView) -> go.Figure | None:
    family = view.family
    if not family or not view.verdicts:
        return None
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.09, row_heights=[0.4, 0.3, 0.3], subplot_titles=(
        "top-1 at the deciding rung (bars: 95 %, seeds and validation images)",
        "each budget's winner, factor by factor (relative to its value at the largest budget); dashed: the law",
        "factor importance at each budget (Shapley share of the GP mean's variance; bars: 95 % over posterior "
        "draws; faint: declined)"))
    _frontier(fig, view)
    _trajectory(fig, view, family)
    _importance(fig, family)
    budgets = [b / 1e6 for b, _ in view.verdicts]
    for row in (1, 2):
        fig.update_xaxes(type="log", title_text="MACs (M)", tickvals=budgets, row=row, col=1)
    fig.update_yaxes(title_text="top-1 %", row=1, col=1)
    fig.update_yaxes(title_text="factor / its value at the largest budget", type="log", row=2, col=1)
    fig.update_yaxes(title_text="Shapley share", row=3, col=1)
    fig.update_layout(template="plotly_white", height=1100, margin={"t": 50}, barmode="group")
    return fig


def _frontier(fig: go.Figure, view: StudyView) -> None:
    """The searched family (each budget's winner) and the width and compound baselines of each budget."""
    lines: dict[str, list[Network]] = {"searched": [], "width": [], "compound": []}
    for _, decision in view.verdicts:
        if decision.winner is not None:
            lines["searched"].append(decision.winner)
        for m in decision.margins:
            if m.kind in lines and m.baseline is not None:
                lines[m.kind].append(m.baseline)
    noise = view.noise[view.decision.rung].std
    for kind, networks in lines.items():
        if not networks:
            continue
        searched = kind == "searched"
        fig.add_trace(go.Scatter(
            x=[n.macs / 1e6 for n in networks], y=[100 * n.mean for n in networks], mode="lines+markers",
            name="searched family" if searched else f"{KIND_LABELS[kind]} family",
            text=[n.config.id for n in networks], hovertemplate="%{text}<br>%{x:.1f}M MACs<br>%{y:.2f} %",
            line={"color": WINNER_COLOR if searched else KIND_COLORS[kind], "dash": "solid" if searched else "dot"},
            marker={"symbol": "star" if searched else KIND_SYMBOLS[kind], "size": 11 if searched else 9},
            error_y={"type": "data", "array": [100 * half_width(n, noise) for n in networks]}), row=1, col=1)


def _trajectory(fig: go.Figure, view: StudyView, family: dict) -> None:
    """Each factor of each budget's winner, over its value at the largest budget (so the four share one axis);
    the law's fitted line where it was not declined (where it was: each factor it carries alone)."""
    winners = [(b, d.winner) for b, d in view.verdicts if d.winner is not None]
    if not winners:
        return
    formula = view.formula or {}
    law = formula.get("fitted") if formula.get("declined") else formula or None
    drawn = [f for f, rule in (law or {}).get("factors", {}).items() if not formula.get("declined") or rule["carried"]]
    top = winners[-1][1].config
    for f in FACTORS:
        fig.add_trace(go.Scatter(
            x=[w.macs / 1e6 for _, w in winners], y=[getattr(w.config, f) / getattr(top, f) for _, w in winners],
            mode="lines+markers", name=LABELS[f], legendgroup=f, line={"color": FACTOR_COLORS[f]},
            text=[w.config.id for _, w in winners], hovertemplate="%{text}<br>%{y:.2f} x"), row=2, col=1)
        if f in drawn:
            rule = law["factors"][f]
            xs = [b for b, _ in winners]
            at_top = rule["at_budget"]
            fig.add_trace(go.Scatter(
                x=[b / 1e6 for b in xs], y=[(b / law["budget"]) ** rule["exponent"] * at_top / getattr(top, f)
                                            for b in xs],
                mode="lines", showlegend=False, legendgroup=f, line={"color": FACTOR_COLORS[f], "dash": "dash"},
                hovertemplate=f"law: MACs^{rule['exponent']:.2f}"), row=2, col=1)


def _importance(fig: go.Figure, family: dict) -> None:
    """Grouped bars: one group per budget, one bar per factor, faint where that budget's ranking is declined."""
    by_budget = family.get("importance") or {}
    budgets = sorted(by_budget, key=int)
    for f in FACTORS:
        shares, lows, highs, opacity = [], [], [], []
        for b in budgets:
            imp = by_budget[b]
            share = (imp.get("shapley") or {}).get(f)
            interval = ((imp.get("intervals_95") or {}).get("shapley") or {}).get(f)
            shares.append(share)
            lows.append(share - interval[0] if share is not None and interval else 0)
            highs.append(interval[1] - share if share is not None and interval else 0)
            opacity.append(0.3 if imp.get("declined") else 1.0)
        fig.add_trace(go.Bar(
            x=[f"{int(b) / 1e6:g}M" for b in budgets], y=shares, name=LABELS[f], legendgroup=f, showlegend=False,
            marker={"color": FACTOR_COLORS[f], "opacity": opacity},
            error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows}), row=3, col=1)
