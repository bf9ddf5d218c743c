"""The GP figures: the study's one GP (``results.judge``) at the deciding rung, as maps of two factors
at a time and as marginals along one, each slice through the winner, with the jobs of that rung.

The GP pools every rung; it is asked for the deciding rung (``GPSurrogate.predict(..., rung=...)``), so the
surface and the points on it share one accuracy scale.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...gp.surrogate import JOINT_PAIRS
from ...model.config import RESOLUTION_MULTIPLE
from ...model.cost import closed_form_cost
from ...model.space import FACTORS
from .view import (
    BASELINE_COLOR,
    BUDGET_COLOR,
    COLORSCALE,
    LABELS,
    SHORT,
    WINNER_COLOR,
    StudyView,
    macs_grid,
    symbol_of,
    with_factors,
)

MARGINAL_POINTS = 41  # GP curve resolution along one factor (the GP is defined between grid points too)


def gp_slice(view: StudyView, factor_x: str, factor_y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The GP at the deciding rung over the grid values of two factors, the others at the winner's:
    ``(xs, ys, mean[ny, nx], std[ny, nx])``."""
    xs, ys = (np.asarray(view.space.range(f).values(), dtype=np.float64) for f in (factor_x, factor_y))
    configs = [with_factors(view.base, {factor_x: x, factor_y: y}) for y in ys for x in xs]
    mean, std = view.surrogate.predict(configs, rung=view.rung)
    return xs, ys, mean.reshape(len(ys), len(xs)), std.reshape(len(ys), len(xs))


def gp_marginal(view: StudyView, factor: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The GP at the deciding rung along one factor, the others at the winner's: ``(values, mean, std)``.
    ``MARGINAL_POINTS`` values over the factor's range; for the resolution every multiple of 32 in it
    (the only sides a config has)."""
    r = view.space.range(factor)
    if factor == "resolution":
        start = -(-int(r.min) // RESOLUTION_MULTIPLE) * RESOLUTION_MULTIPLE
        values = np.arange(start, int(r.max) + 1, RESOLUTION_MULTIPLE, dtype=np.float64)
    else:
        values = np.linspace(r.min, r.max, MARGINAL_POINTS)
    mean, std = view.surrogate.predict([with_factors(view.base, {factor: v}) for v in values], rung=view.rung)
    return values, mean, std


# ---- GP maps of the joint factors ----------------------------------------------------------------
GP_MAP_TRACES_PER_PAIR = 4  # GP mean heatmap, budget contour, the deciding rung's jobs, winner


def gp_maps_figure(view: StudyView) -> go.Figure | None:
    """The GP's predicted top-1 at the deciding rung over each pair of ``JOINT_PAIRS`` (other factors at
    the winner's values), uncertainty on hover, the budget as a constraint contour (over-budget side
    shaded), the jobs trained at that rung."""
    gp, base = view.surrogate, view.base
    if gp is None or base is None:
        return None
    points, rung = view.at(view.rung), view.ladder.rungs[view.rung].name
    winner = view.network(base, view.rung)
    titles = [f"{LABELS[x]} × {LABELS[y]}" for x, y in JOINT_PAIRS]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.1, vertical_spacing=0.14)
    for i, (fx, fy) in enumerate(JOINT_PAIRS):
        row, col = i // 2 + 1, i % 2 + 1
        xs, ys, mean, std = gp_slice(view, fx, fy)
        macs = macs_grid(base, fx, xs, fy, ys)
        fig.add_trace(go.Heatmap(
            x=xs, y=ys, z=100 * mean, customdata=np.dstack([100 * std, macs / 1e6]), coloraxis="coloraxis",
            name="GP mean", hovertemplate=(f"{SHORT[fx]} %{{x:g}} · {SHORT[fy]} %{{y:g}}<br>"
                                           "GP top-1 %{z:.2f} % ± %{customdata[0]:.2f} (1 s.d.)<br>"
                                           "MACs %{customdata[1]:.1f}M<extra></extra>")), row=row, col=col)
        fig.add_trace(go.Contour(
            x=xs, y=ys, z=macs, name=f"MAC budget {view.budget / 1e6:g}M", showscale=False, hoverinfo="skip",
            contours=dict(type="constraint", operation="<=", value=view.budget, showlabels=True,
                          labelformat=".3s", labelfont=dict(color="white")),
            line=dict(color="white", width=2.5), fillcolor="rgba(255,255,255,0.45)",
            legendgroup="budget", showlegend=i == 0), row=row, col=col)
        fig.add_trace(go.Scatter(
            x=[getattr(e.job.config, fx) for e in points], y=[getattr(e.job.config, fy) for e in points],
            mode="markers", name=f"trained at {rung} (projected)", legendgroup="trained", showlegend=i == 0,
            marker=dict(size=8, color="rgba(255,255,255,0.85)", line=dict(width=1.2, color="black")),
            text=[view.hover(e) for e in points], hovertemplate="%{text}<extra></extra>"), row=row, col=col)
        fig.add_trace(go.Scatter(
            x=[getattr(base, fx)], y=[getattr(base, fy)], mode="markers", name="winner", legendgroup="winner",
            showlegend=i == 0,
            marker=dict(size=15, symbol="star", color=WINNER_COLOR, line=dict(width=1, color="black")),
            text=[view.network_hover(winner)], hovertemplate="%{text}<extra></extra>"), row=row, col=col)
        fig.update_xaxes(title_text=LABELS[fx], row=row, col=col)
        fig.update_yaxes(title_text=LABELS[fy], row=row, col=col)
    fig.update_layout(
        title=dict(text=f"GP maps of joint factors at rung {view.rung} ({rung}), the deciding rung (others held at "
                        "the winner's values; shaded: over budget)"),
        height=860, coloraxis=dict(colorscale=COLORSCALE,
                                   colorbar=dict(title=dict(text=f"GP top-1 % at {rung}"))),
        legend=dict(orientation="h", y=-0.08), margin=dict(t=80))
    return fig


# ---- 1-D marginals -------------------------------------------------------------------------------
MARGINAL_TRACES_PER_FACTOR = 4  # band upper edge, band lower edge (filled), GP mean, the rung's jobs


def marginals_figure(view: StudyView) -> go.Figure | None:
    """The GP at the deciding rung along each factor (others at the winner's values): mean and 95 % band,
    the jobs trained at that rung, the over-budget part of the axis shaded."""
    if view.surrogate is None or view.base is None:
        return None
    points, rung = view.at(view.rung), view.ladder.rungs[view.rung].name
    fig = make_subplots(rows=1, cols=4, subplot_titles=[LABELS[f] for f in FACTORS], horizontal_spacing=0.06,
                        shared_yaxes=True)
    for i, factor in enumerate(FACTORS):
        col = i + 1
        values, mean, std = gp_marginal(view, factor)
        upper, lower = 100 * (mean + 1.96 * std), 100 * (mean - 1.96 * std)
        first = i == 0
        fig.add_trace(go.Scatter(x=values, y=upper, mode="lines", line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup="band", name="95 % upper"), row=1, col=col)
        fig.add_trace(go.Scatter(x=values, y=lower, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(31,119,180,0.22)", name="GP 95 % band", legendgroup="band",
                                 showlegend=first, hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(x=values, y=100 * mean, mode="lines", line=dict(color=BASELINE_COLOR, width=2.5),
                                 name="GP mean", legendgroup="mean", showlegend=first, customdata=100 * 1.96 * std,
                                 hovertemplate=f"{SHORT[factor]} %{{x:.3g}}<br>GP top-1 %{{y:.2f}} % "
                                               "± %{customdata:.2f} (95 %)<extra></extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=[getattr(e.job.config, factor) for e in points], y=[100 * e.accuracy for e in points],
            mode="markers", name=f"trained at {rung} (projected)", legendgroup="trained", showlegend=first,
            marker=dict(size=7, color="rgba(0,0,0,0.55)", symbol=[symbol_of(view, e) for e in points]),
            text=[view.hover(e) for e in points], hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        over = _over_budget_from(view, factor)
        if over is not None:
            fig.add_vrect(x0=over, x1=view.space.range(factor).max, row=1, col=col, fillcolor=BUDGET_COLOR,
                          opacity=0.08, line_width=0)
        fig.update_xaxes(title_text=LABELS[factor], row=1, col=col)
    fig.update_yaxes(title_text="top-1 %", row=1, col=1)
    fig.update_layout(title=dict(text=f"Marginals at rung {view.rung} ({rung}): the GP along one factor (others at "
                                      "the winner's values; red tint: over budget)"),
                      height=430, legend=dict(orientation="h", y=-0.25), margin=dict(t=80))
    return fig


def _over_budget_from(view: StudyView, factor: str) -> float | None:
    """Where along ``factor`` (others at the winner's) the config first exceeds the budget: the midpoint
    between the last grid value within budget and the first over it (``None`` if all fit)."""
    values = view.space.range(factor).values()
    fits = [closed_form_cost(with_factors(view.base, {factor: v})).macs <= view.budget for v in values]
    for k, ok in enumerate(fits):
        if not ok:
            return values[0] if k == 0 else (values[k - 1] + values[k]) / 2
    return None
