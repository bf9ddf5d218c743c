"""The dashboard's figures of a study's jobs: the 4-D factor cube, the Pareto front, the search history.

Each builder takes a ``view.StudyView`` and returns a ``plotly.graph_objects.Figure``, or ``None`` where the
study has too little data for it; the GP maps and marginals are in ``gp``, the rungs figure in ``rungs``, the
latency figures in ``latency``. Accuracies are plotted in percent, MACs in millions; the budget is drawn
from the closed-form cost model, so it shows exactly where the search could and could not go.

Scores of different rungs are never put on one accuracy scale (each rung trains on other images for other
epochs): the cube and the history show the first rung (the search's coverage), the GP maps, marginals and
Pareto front the deciding rung, and the rungs figure each network across the rungs it reached.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import plotly.graph_objects as go

from ...model.config import ArchConfig
from ...model.cost import closed_form_cost
from ...model.space import FACTORS, FactorSpace
from ...search.jobs import Entry
from ...search.networks import Network
from .view import (
    BUDGET_COLOR,
    COLORSCALE,
    KIND_COLORS,
    KIND_LABELS,
    KIND_SYMBOLS,
    LABELS,
    STRATEGY_COLORS,
    WINNER_COLOR,
    StudyView,
    symbol_of,
    with_factors,
)

# ---- pure helpers (tested directly) ----------------------------------------------------------------
T = TypeVar("T")


def pareto_front(networks: Sequence[Network]) -> list[Network]:
    """Networks no other network beats on both mean score (higher) and MACs (lower), by MACs ascending; one
    per (MACs, score) pair."""
    front: list[Network] = []
    seen: set[tuple[int, float]] = set()
    for n in sorted(networks, key=lambda n: (n.macs, -n.mean, n.trials[0])):
        dominated = any(q.mean >= n.mean and q.macs <= n.macs and (q.mean > n.mean or q.macs < n.macs)
                        for q in networks)
        if not dominated and (n.macs, n.mean) not in seen:
            seen.add((n.macs, n.mean))
            front.append(n)
    return front


def best_so_far(jobs: Sequence[Entry], budget: int) -> list[float | None]:
    """Best feasible accuracy after each job (``None`` until the first feasible one); of one rung's jobs."""
    best, out = None, []
    for e in jobs:
        if e.macs <= budget and (best is None or e.accuracy > best):
            best = e.accuracy
        out.append(best)
    return out


def by_strategy(items: Iterable[T], strategy: Callable[[T], str]) -> dict[str, list[T]]:
    groups: dict[str, list[T]] = {}
    for x in items:
        groups.setdefault(strategy(x), []).append(x)
    return groups


def _accuracy_range(jobs: Sequence[Entry]) -> tuple[float, float]:
    if not jobs:
        return 0.0, 100.0
    accs = [100 * e.accuracy for e in jobs]
    lo, hi = min(accs), max(accs)
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def _axis_range(space: FactorSpace, factor: str) -> list[float]:
    r = space.range(factor)
    pad = 0.5 * r.step
    return [r.min - pad, r.max + pad]


def _default_base(view: StudyView) -> ArchConfig:
    """The winner, else the middle grid value of every factor."""
    if view.base is not None:
        return view.base
    mid = {f: view.space.range(f).values()[len(view.space.range(f).values()) // 2] for f in FACTORS}
    return ArchConfig(view.space.family, num_classes=view.space.num_classes, variant=view.space.variants[0], **mid)


# ---- the 4-D factor cube -------------------------------------------------------------------------
CUBE_TRACES_PER_STEP = 3  # feasible grid points, budget iso-surface, jobs trained at the first rung


def cube_figure(view: StudyView) -> go.Figure:
    """Resolution x width x MV2 depth in 3-D, ViT depth on a slider. Per slider step: the grid points
    within budget (faint), the closed-form MAC iso-surface at the budget, and the jobs of the first rung
    at that ViT depth -- the search's coverage on one accuracy scale (colour = top-1 there, size = MACs,
    diamond = winner, square = width x resolution baseline candidate)."""
    space, budget, first = view.space, view.budget, view.at(0)
    base = _default_base(view)
    res, wid, mv2 = (space.range(f).values() for f in ("resolution", "width", "mv2_depth"))
    vits = space.range("vit_depth").values()
    variant = base.variant if len(space.variants) > 1 else None  # the budget surface is for one variant
    cmin, cmax = _accuracy_range(first)
    max_macs = max([e.macs for e in first] + [1])
    fig = go.Figure()
    for vit in vits:
        gx, gy, gz, value, feasible = [], [], [], [], []
        for r in res:
            for w in wid:
                for m in mv2:
                    config = with_factors(base, {"resolution": r, "width": w, "mv2_depth": m, "vit_depth": vit})
                    macs = closed_form_cost(config).macs
                    gx.append(r), gy.append(w), gz.append(m), value.append(macs)
                    if macs <= budget:
                        feasible.append((r, w, m, macs, config.id))
        fig.add_trace(go.Scatter3d(
            x=[f[0] for f in feasible], y=[f[1] for f in feasible], z=[f[2] for f in feasible], mode="markers",
            name="within budget", legendgroup="feasible", showlegend=vit == vits[0],
            marker=dict(size=3, color="#555", opacity=0.45),
            text=[f"{f[4]}<br>MACs {f[3] / 1e6:.1f}M (within budget)" for f in feasible],
            hovertemplate="%{text}<extra></extra>"))
        fig.add_trace(go.Isosurface(
            x=gx, y=gy, z=gz, value=value, isomin=budget, isomax=budget, surface_count=1,
            caps=dict(x_show=False, y_show=False, z_show=False), opacity=0.3, showscale=False,
            colorscale=[[0, BUDGET_COLOR], [1, BUDGET_COLOR]], name=f"budget {budget / 1e6:g}M MACs",
            showlegend=vit == vits[0], legendgroup="budget", hoverinfo="skip"))
        here = [e for e in first if abs(e.job.config.vit_depth - vit) < 1e-6]
        fig.add_trace(go.Scatter3d(
            x=[e.job.config.resolution for e in here], y=[e.job.config.width for e in here],
            z=[e.job.config.mv2_depth for e in here], mode="markers", name=f"trained at {view.ladder.rungs[0].name}",
            legendgroup="trained",
            showlegend=vit == vits[0], text=[view.hover(e) for e in here], hovertemplate="%{text}<extra></extra>",
            marker=dict(
                color=[100 * e.accuracy for e in here], colorscale=COLORSCALE, cmin=cmin, cmax=cmax,
                showscale=True, colorbar=dict(title=dict(text=f"top-1 % at {view.ladder.rungs[0].name}"), len=0.6),
                size=[5 + 15 * np.sqrt(e.macs / max_macs) for e in here],
                symbol=[symbol_of(view, e) for e in here], line=dict(width=1, color="#222"), opacity=0.95)))
    active = vits.index(base.vit_depth) if base.vit_depth in vits else len(vits) // 2
    steps = []
    for i, vit in enumerate(vits):
        visible = [i == j for j in range(len(vits)) for _ in range(CUBE_TRACES_PER_STEP)]
        n = sum(abs(e.job.config.vit_depth - vit) < 1e-6 for e in first)
        steps.append(dict(method="update", label=f"{vit:g}",
                          args=[{"visible": visible}, {"title.text": _cube_title(view, vit, n, variant)}]))
    for k, trace in enumerate(fig.data):
        trace.visible = k // CUBE_TRACES_PER_STEP == active
    n_active = sum(abs(e.job.config.vit_depth - vits[active]) < 1e-6 for e in first)
    fig.update_layout(
        title=dict(text=_cube_title(view, vits[active], n_active, variant)), height=720, uirevision="cube",
        margin=dict(l=0, r=0, t=50, b=0), legend=dict(x=0, y=1),
        scene=dict(xaxis=dict(title=dict(text=LABELS["resolution"]), range=_axis_range(space, "resolution")),
                   yaxis=dict(title=dict(text=LABELS["width"]), range=_axis_range(space, "width")),
                   zaxis=dict(title=dict(text=LABELS["mv2_depth"]), range=_axis_range(space, "mv2_depth")),
                   aspectmode="cube"),
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix="ViT depth "), pad=dict(t=10, l=30, r=30))])
    return fig


def _cube_title(view: StudyView, vit: float, trained: int, variant: str | None = None) -> str:
    where = f" of variant {variant}" if variant else ""
    return (f"Factor cube at ViT depth {vit:g}: {trained} trained here at rung 0 ({view.ladder.rungs[0].name}), "
            f"the search's coverage (red surface: the MAC budget{where})")


# ---- accuracy vs MACs ----------------------------------------------------------------------------
def pareto_figure(view: StudyView) -> go.Figure | None:
    """The networks trained at the deciding rung (mean over seeds) by MACs and top-1, the non-dominated
    front, the budget, the winner and every baseline trained there."""
    nets = list(view.networks(view.rung).values())
    if not nets:
        return None
    rung = view.ladder.rungs[view.rung].name
    fig = go.Figure()
    groups = by_strategy(nets, lambda n: view.strategy(view.job(n.trials[0])))
    for k, (strategy, group) in enumerate(groups.items()):
        fig.add_trace(go.Scatter(
            x=[n.macs / 1e6 for n in group], y=[100 * n.mean for n in group], mode="markers",
            name=f"trained at {rung} ({strategy})" if len(groups) > 1 else f"trained at {rung}",
            marker=dict(size=9, color=STRATEGY_COLORS[k % len(STRATEGY_COLORS)], opacity=0.75),
            text=[view.network_hover(n) for n in group], hovertemplate="%{text}<extra></extra>"))
    front = pareto_front(nets)
    fig.add_trace(go.Scatter(
        x=[n.macs / 1e6 for n in front], y=[100 * n.mean for n in front], mode="lines+markers",
        name="Pareto front", line=dict(color="black", width=1.5, shape="hv"), marker=dict(size=5, color="black"),
        text=[view.network_hover(n) for n in front], hovertemplate="%{text}<extra></extra>"))
    accs = [100 * n.mean for n in nets]
    pad = max(0.5, 0.05 * (max(accs) - min(accs)))
    fig.add_trace(go.Scatter(x=[view.budget / 1e6] * 2, y=[min(accs) - pad, max(accs) + pad], mode="lines",
                             name=f"MAC budget {view.budget / 1e6:g}M", hoverinfo="name",
                             line=dict(color=BUDGET_COLOR, dash="dash", width=2)))
    marked = [("winner", view.winner, "star", WINNER_COLOR, 20)]
    marked += [(f"{KIND_LABELS[m.kind]} baseline", m.baseline, KIND_SYMBOLS[m.kind], KIND_COLORS[m.kind], 18 - 2 * i)
               for i, m in enumerate(view.decision.margins)]  # smaller on top: one network may be two kinds
    for label, decided, symbol, color, size in marked:
        network = view.network(decided.config, view.rung) if decided is not None else None
        if network is not None:
            fig.add_trace(go.Scatter(
                x=[network.macs / 1e6], y=[100 * network.mean], mode="markers", name=label,
                marker=dict(size=size, symbol=symbol, color=color, line=dict(width=1.5, color="black")),
                text=[view.network_hover(network)], hovertemplate=f"<b>{label}</b><br>%{{text}}<extra></extra>"))
    fig.update_layout(title=dict(text=f"Accuracy vs MACs at rung {view.rung} ({rung}), the deciding rung (mean over "
                                      "seeds): Pareto front, budget, winner and baselines"),
                      xaxis=dict(title=dict(text="MACs (M, batch 1)")), yaxis=dict(title=dict(text="top-1 %")),
                      height=520)
    return fig


# ---- search history ------------------------------------------------------------------------------
def history_figure(view: StudyView) -> go.Figure | None:
    """Best feasible top-1 at the first rung after each of its jobs (where the strategy explores): one line
    per strategy, each job's score as a dot."""
    first = view.at(0)
    if not first:
        return None
    rung = view.ladder.rungs[0].name
    fig = go.Figure()
    for k, (strategy, jobs) in enumerate(by_strategy(first, view.strategy).items()):
        color = STRATEGY_COLORS[k % len(STRATEGY_COLORS)]
        x = list(range(1, len(jobs) + 1))
        best = best_so_far(jobs, view.budget)
        fig.add_trace(go.Scatter(
            x=x, y=[None if b is None else 100 * b for b in best], mode="lines", name=f"best feasible ({strategy})",
            legendgroup=strategy, line=dict(color=color, width=3, shape="hv"),
            hovertemplate="after %{x} trained: best %{y:.2f} %<extra>" + html.escape(strategy) + "</extra>"))
        fig.add_trace(go.Scatter(
            x=x, y=[100 * e.accuracy for e in jobs], mode="markers", name=f"each job ({strategy})",
            legendgroup=strategy, marker=dict(color=color, size=7, opacity=0.45),
            text=[view.hover(e) for e in jobs], hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=dict(text=f"Search history at rung 0 ({rung}): best feasible accuracy per trained job"),
                      xaxis=dict(title=dict(text=f"jobs trained at {rung} (baseline candidates included)"),
                                 dtick=1 if len(first) <= 30 else None),
                      yaxis=dict(title=dict(text=f"top-1 % at {rung}")), height=440)
    return fig
