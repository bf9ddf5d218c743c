"""The dashboard's view of a study and its Plotly figures: the factor cube, the Pareto front, the history.

``StudyView`` is what ``dashboard.collect`` reads from a study's jobs and from ``summary.study_facts`` (its
one GP and its decision). Each builder takes a view and returns a ``plotly.graph_objects.Figure``, or
``None`` where the study has too little data for it; the GP maps and marginals are in ``figures_gp``, the
rungs figure in ``figures_rungs``. Accuracies are plotted in percent, MACs in millions; the budget is drawn
from the closed-form cost model, so it shows exactly where the search could and could not go.

Scores of different rungs are never put on one accuracy scale (each rung trains on other images for other
epochs): the cube and the history show the first rung (the search's coverage), the GP maps, marginals and
Pareto front the deciding rung, and the rungs figure each network across the rungs it reached.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import plotly.graph_objects as go

from ...model.config import ArchConfig
from ...model.cost import closed_form_cost
from ...results.decision import Decision, Scored
from ...search.fidelity import Ladder, Noise
from ...model.space import FACTORS, FactorSpace
from ...search.study import StudySettings
from ...gp.surrogate import GPSurrogate

LABELS = {"resolution": "resolution (px)", "width": "width", "mv2_depth": "MV2 depth", "vit_depth": "ViT depth"}
SHORT = {"resolution": "res", "width": "width", "mv2_depth": "MV2", "vit_depth": "ViT"}
COLORSCALE = "Viridis"
BUDGET_COLOR = "#d62728"
WINNER_COLOR = "#ff7f0e"
BASELINE_COLOR = "#1f77b4"
STRATEGY_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# The three baselines (``baselines.KINDS``) wherever they are marked.
KIND_COLORS = {"width": BASELINE_COLOR, "width_resolution": "#17becf", "compound": "#9467bd"}
KIND_LABELS = {"width": "width", "width_resolution": "width × resolution", "compound": "compound"}
KIND_SYMBOLS = {"width": "diamond", "width_resolution": "square", "compound": "triangle-up"}


@dataclass(frozen=True)
class TrialPoint:
    """One trained job, as every figure shows it."""

    number: int
    role: str  # "search" | "baseline"
    strategy: str
    config: ArchConfig
    config_id: str
    macs: int
    params: int
    accuracy: float  # top-1, 0..1
    fidelity: str  # the rung's profile name
    rung: int
    seed: int
    trained_resolution: int | None  # the side it was trained and scored at (the rung scales the config's)
    cached: bool = False
    latency: dict | None = None  # its measured latency (``latency.trial``), or None

    def hover(self, score: str | None = None, trials: str | None = None) -> str:
        """Full config, cost, score, rung, seed and trained resolution, as HTML lines for a hover label
        (``score`` and ``trials`` replace the job's own lines, for a network over several seeds)."""
        factors = " · ".join(f"{SHORT[f]} {getattr(self.config, f):g}" for f in FACTORS)
        extra = ", ".join(f"{k} {v}" for k, v in self.config.to_dict().items() if k not in FACTORS and v is not None)
        trained = f"{self.trained_resolution} px" if self.trained_resolution else "?"
        return "<br>".join([
            f"<b>{html.escape(self.config_id)}</b>",
            factors,
            extra,
            f"MACs {self.macs / 1e6:.1f}M · params {self.params / 1e6:.2f}M",
            score or f"top-1 {100 * self.accuracy:.2f} % · seed {self.seed}",
            f"rung {self.rung} ({html.escape(self.fidelity)}) · trained at {trained}",
            trials or f"trial #{self.number} ({self.role}, {html.escape(self.strategy)}"
                      f"{', cached' if self.cached else ''})",
        ])


@dataclass(frozen=True)
class NetworkMean:
    """One network at one rung: its jobs there, one per seed, shown at their mean score."""

    points: tuple[TrialPoint, ...]  # in seed order, one per seed

    @property
    def first(self) -> TrialPoint:
        return self.points[0]

    @property
    def number(self) -> int:
        return self.first.number

    @property
    def macs(self) -> int:
        return self.first.macs

    @property
    def accuracy(self) -> float:
        return float(np.mean([p.accuracy for p in self.points]))

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(p.seed for p in self.points)

    @property
    def strategy(self) -> str:
        return self.first.strategy

    def hover(self) -> str:
        """The first job's hover with the score over seeds and every trial number."""
        p = self.first
        if len(self.points) == 1:
            return p.hover()
        scores = ", ".join(f"{100 * q.accuracy:.2f}" for q in self.points)
        return p.hover(
            score=f"top-1 {100 * self.accuracy:.2f} % (mean over seeds {', '.join(map(str, self.seeds))}: {scores})",
            trials=f"trials {', '.join(f'#{q.number}' for q in self.points)} ({p.role}, {html.escape(p.strategy)})")


def networks(points: Iterable[TrialPoint]) -> list[NetworkMean]:
    """``points`` (of one rung) grouped by the network trained, in trial order; a seed counts once (its
    first job), as ``decision.scored`` counts it."""
    by_network: dict[tuple, dict[int, TrialPoint]] = {}
    for p in sorted(points, key=lambda p: p.number):
        by_network.setdefault(p.config.network_key(), {}).setdefault(p.seed, p)
    return [NetworkMean(tuple(by_seed[s] for s in sorted(by_seed))) for by_seed in by_network.values()]


@dataclass(frozen=True)
class StudyView:
    """What the dashboard shows of a study (see ``dashboard.collect``): its jobs as points, and the facts
    ``summary.study_facts`` established once (the GP, the decision, the noise)."""

    name: str
    storage: str  # redacted URL
    settings: StudySettings
    points: tuple[TrialPoint, ...]  # trained jobs of every rung, in trial order
    counts: dict[str, Any]  # summary["counts"]
    decision: Decision
    noise: tuple[Noise, ...]  # per rung
    surrogate: GPSurrogate | None
    importance: dict[str, Any]  # summary["importance"]

    @cached_property
    def space(self) -> FactorSpace:
        return self.settings.factor_space()

    @cached_property
    def ladder(self) -> Ladder:
        return self.settings.fidelity_ladder()

    @property
    def budget(self) -> int:
        return self.settings.mac_budget

    @property
    def rung(self) -> int:
        """The deciding rung: where the GP maps, marginals and Pareto front are drawn."""
        return self.decision.rung

    @property
    def winner(self) -> Scored | None:
        return self.decision.winner

    @property
    def base(self) -> ArchConfig | None:
        """Where the GP slices are taken: the winner."""
        return self.winner.config if self.winner else None

    @cached_property
    def baseline_kinds(self) -> dict[tuple, tuple[str, ...]]:
        """Network -> the baseline kinds it is at the deciding rung (one network may be two kinds)."""
        kinds: dict[tuple, tuple[str, ...]] = {}
        for m in self.decision.margins:
            if m.baseline is not None:
                key = m.baseline.config.network_key()
                kinds[key] = kinds.get(key, ()) + (m.kind,)
        return kinds

    def at(self, rung: int) -> list[TrialPoint]:
        return [p for p in self.points if p.rung == rung]

    def network(self, config: ArchConfig, rung: int) -> NetworkMean | None:
        """``config``'s network at ``rung`` (its jobs there over seeds), or None if it was not trained there."""
        key = config.network_key()
        return next((n for n in networks(self.at(rung)) if n.first.config.network_key() == key), None)

    def is_winner(self, p: TrialPoint) -> bool:
        return self.winner is not None and p.config.network_key() == self.winner.config.network_key()


# ---- pure helpers (tested directly) ----------------------------------------------------------------
Point = TypeVar("Point", TrialPoint, NetworkMean)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Points no other point beats on both accuracy (higher) and MACs (lower), by MACs ascending; one per
    (MACs, accuracy) pair (a network trained twice is one point of the front)."""
    front: list[Point] = []
    seen: set[tuple[int, float]] = set()
    for p in sorted(points, key=lambda p: (p.macs, -p.accuracy, p.number)):
        dominated = any(q.accuracy >= p.accuracy and q.macs <= p.macs and (q.accuracy > p.accuracy or q.macs < p.macs)
                        for q in points)
        if not dominated and (p.macs, p.accuracy) not in seen:
            seen.add((p.macs, p.accuracy))
            front.append(p)
    return front


def best_so_far(points: Sequence[TrialPoint], budget: int) -> list[float | None]:
    """Best feasible accuracy after each job (``None`` until the first feasible one); of one rung's jobs."""
    best, out = None, []
    for p in points:
        if p.macs <= budget and (best is None or p.accuracy > best):
            best = p.accuracy
        out.append(best)
    return out


def by_strategy(points: Iterable[Point]) -> dict[str, list[Point]]:
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.strategy, []).append(p)
    return groups


def macs_grid(base: ArchConfig, factor_x: str, xs: Sequence[float], factor_y: str, ys: Sequence[float]) -> np.ndarray:
    """Closed-form MACs over a 2-D slice through ``base``: ``[len(ys), len(xs)]``."""
    return np.array([[closed_form_cost(with_factors(base, {factor_x: x, factor_y: y})).macs for x in xs] for y in ys],
                    dtype=np.float64)


def with_factors(base: ArchConfig, values: dict[str, float]) -> ArchConfig:
    values = {k: (int(round(v)) if k == "resolution" else float(v)) for k, v in values.items()}
    return base.replace(**values)


def _accuracy_range(points: Sequence[TrialPoint]) -> tuple[float, float]:
    if not points:
        return 0.0, 100.0
    accs = [100 * p.accuracy for p in points]
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
    max_macs = max([p.macs for p in first] + [1])
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
        here = [p for p in first if abs(p.config.vit_depth - vit) < 1e-6]
        fig.add_trace(go.Scatter3d(
            x=[p.config.resolution for p in here], y=[p.config.width for p in here],
            z=[p.config.mv2_depth for p in here], mode="markers", name=f"trained at {view.ladder.rungs[0].name}",
            legendgroup="trained",
            showlegend=vit == vits[0], text=[p.hover() for p in here], hovertemplate="%{text}<extra></extra>",
            marker=dict(
                color=[100 * p.accuracy for p in here], colorscale=COLORSCALE, cmin=cmin, cmax=cmax,
                showscale=True, colorbar=dict(title=dict(text=f"top-1 % at {view.ladder.rungs[0].name}"), len=0.6),
                size=[5 + 15 * np.sqrt(p.macs / max_macs) for p in here],
                symbol=[symbol_of(view, p) for p in here], line=dict(width=1, color="#222"), opacity=0.95)))
    active = vits.index(base.vit_depth) if base.vit_depth in vits else len(vits) // 2
    steps = []
    for i, vit in enumerate(vits):
        visible = [i == j for j in range(len(vits)) for _ in range(CUBE_TRACES_PER_STEP)]
        n = sum(abs(p.config.vit_depth - vit) < 1e-6 for p in first)
        steps.append(dict(method="update", label=f"{vit:g}",
                          args=[{"visible": visible}, {"title.text": _cube_title(view, vit, n, variant)}]))
    for k, trace in enumerate(fig.data):
        trace.visible = k // CUBE_TRACES_PER_STEP == active
    n_active = sum(abs(p.config.vit_depth - vits[active]) < 1e-6 for p in first)
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


def symbol_of(view: StudyView, p: TrialPoint) -> str:
    if view.is_winner(p):
        return "diamond"
    return "square" if p.role == "baseline" else "circle"


# ---- accuracy vs MACs ----------------------------------------------------------------------------
def pareto_figure(view: StudyView) -> go.Figure | None:
    """The networks trained at the deciding rung (mean over seeds) by MACs and top-1, the non-dominated
    front, the budget, the winner and every baseline trained there."""
    nets = networks(view.at(view.rung))
    if not nets:
        return None
    rung = view.ladder.rungs[view.rung].name
    fig = go.Figure()
    groups = by_strategy(nets)
    for k, (strategy, group) in enumerate(groups.items()):
        fig.add_trace(go.Scatter(
            x=[n.macs / 1e6 for n in group], y=[100 * n.accuracy for n in group], mode="markers",
            name=f"trained at {rung} ({strategy})" if len(groups) > 1 else f"trained at {rung}",
            marker=dict(size=9, color=STRATEGY_COLORS[k % len(STRATEGY_COLORS)], opacity=0.75),
            text=[n.hover() for n in group], hovertemplate="%{text}<extra></extra>"))
    front = pareto_front(nets)
    fig.add_trace(go.Scatter(
        x=[n.macs / 1e6 for n in front], y=[100 * n.accuracy for n in front], mode="lines+markers",
        name="Pareto front", line=dict(color="black", width=1.5, shape="hv"), marker=dict(size=5, color="black"),
        text=[n.hover() for n in front], hovertemplate="%{text}<extra></extra>"))
    accs = [100 * n.accuracy for n in nets]
    pad = max(0.5, 0.05 * (max(accs) - min(accs)))
    fig.add_trace(go.Scatter(x=[view.budget / 1e6] * 2, y=[min(accs) - pad, max(accs) + pad], mode="lines",
                             name=f"MAC budget {view.budget / 1e6:g}M", hoverinfo="name",
                             line=dict(color=BUDGET_COLOR, dash="dash", width=2)))
    marked = [("winner", view.winner, "star", WINNER_COLOR, 20)]
    marked += [(f"{KIND_LABELS[m.kind]} baseline", m.baseline, KIND_SYMBOLS[m.kind], KIND_COLORS[m.kind], 18 - 2 * i)
               for i, m in enumerate(view.decision.margins)]  # smaller on top: one network may be two kinds
    for label, scored, symbol, color, size in marked:
        network = view.network(scored.config, view.rung) if scored is not None else None
        if network is not None:
            fig.add_trace(go.Scatter(
                x=[network.macs / 1e6], y=[100 * network.accuracy], mode="markers", name=label,
                marker=dict(size=size, symbol=symbol, color=color, line=dict(width=1.5, color="black")),
                text=[network.hover()], hovertemplate=f"<b>{label}</b><br>%{{text}}<extra></extra>"))
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
    for k, (strategy, points) in enumerate(by_strategy(first).items()):
        color = STRATEGY_COLORS[k % len(STRATEGY_COLORS)]
        x = list(range(1, len(points) + 1))
        best = best_so_far(points, view.budget)
        fig.add_trace(go.Scatter(
            x=x, y=[None if b is None else 100 * b for b in best], mode="lines", name=f"best feasible ({strategy})",
            legendgroup=strategy, line=dict(color=color, width=3, shape="hv"),
            hovertemplate="after %{x} trained: best %{y:.2f} %<extra>" + html.escape(strategy) + "</extra>"))
        fig.add_trace(go.Scatter(
            x=x, y=[100 * p.accuracy for p in points], mode="markers", name=f"each job ({strategy})",
            legendgroup=strategy, marker=dict(color=color, size=7, opacity=0.45),
            text=[p.hover() for p in points], hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=dict(text=f"Search history at rung 0 ({rung}): best feasible accuracy per trained job"),
                      xaxis=dict(title=dict(text=f"jobs trained at {rung} (baseline candidates included)"),
                                 dtick=1 if len(first) <= 30 else None),
                      yaxis=dict(title=dict(text=f"top-1 % at {rung}")), height=440)
    return fig
