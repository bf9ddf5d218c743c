"""The dashboard's Plotly figures, built from a study's trained trials, its settings and the fitted GP.

Each builder takes a ``StudyView`` (what ``dashboard.collect`` reads from a study) and returns a
``plotly.graph_objects.Figure``, or ``None`` where the study has too little data for it (no GP maps or
marginals below two trained trials; no Pareto front or history without any). Accuracies are plotted in
percent, MACs in millions; the budget is drawn from the closed-form cost model, so it shows exactly where
the search could and could not go.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .config import ArchConfig
from .cost import closed_form_cost
from .space import FACTORS, FactorSpace
from .study import StudySettings
from .surrogate import JOINT_PAIRS, GPSurrogate

LABELS = {"resolution": "resolution (px)", "width": "width", "mv2_depth": "MV2 depth", "vit_depth": "ViT depth"}
SHORT = {"resolution": "res", "width": "width", "mv2_depth": "MV2", "vit_depth": "ViT"}
COLORSCALE = "Viridis"
BUDGET_COLOR = "#d62728"
WINNER_COLOR = "#ff7f0e"
BASELINE_COLOR = "#1f77b4"
STRATEGY_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MARGINAL_POINTS = 41  # GP curve resolution along one factor (the GP is defined between grid points too)


@dataclass(frozen=True)
class TrialPoint:
    """One trained trial, as every figure shows it."""

    number: int
    role: str  # "search" | "baseline"
    strategy: str
    config: ArchConfig
    config_id: str
    macs: int
    params: int
    accuracy: float  # top-1, 0..1
    fidelity: str
    cached: bool = False

    def hover(self) -> str:
        """Full config, cost, accuracy and fidelity, as HTML lines for a hover label."""
        factors = " · ".join(f"{SHORT[f]} {getattr(self.config, f):g}" for f in FACTORS)
        extra = ", ".join(f"{k} {v}" for k, v in self.config.to_dict().items() if k not in FACTORS and v is not None)
        return "<br>".join([
            f"<b>{html.escape(self.config_id)}</b>",
            factors,
            extra,
            f"MACs {self.macs / 1e6:.1f}M · params {self.params / 1e6:.2f}M",
            f"top-1 {100 * self.accuracy:.2f} % · fidelity {html.escape(self.fidelity)}",
            f"trial #{self.number} ({self.role}, {html.escape(self.strategy)}{', cached' if self.cached else ''})",
        ])


@dataclass
class StudyView:
    """What the dashboard reads from a study (see ``dashboard.collect``)."""

    name: str
    storage: str  # redacted URL
    settings: StudySettings
    points: list[TrialPoint]  # trained trials, in trial order
    counts: dict[str, int]
    winner: TrialPoint | None
    baseline: TrialPoint | None
    surrogate: GPSurrogate | None
    space: FactorSpace = field(init=False)

    def __post_init__(self) -> None:
        self.space = self.settings.factor_space()

    @property
    def budget(self) -> int:
        return self.settings.mac_budget

    @property
    def base(self) -> ArchConfig | None:
        """Where the GP slices are taken: the winner (the best trained config)."""
        return self.winner.config if self.winner else None


# ---- pure helpers (tested directly) ----------------------------------------------------------------
def pareto_front(points: Sequence[TrialPoint]) -> list[TrialPoint]:
    """Trials no other trial beats on both accuracy (higher) and MACs (lower), by MACs ascending; one per
    (MACs, accuracy) pair (a network trained twice is one point of the front)."""
    front: list[TrialPoint] = []
    seen: set[tuple[int, float]] = set()
    for p in sorted(points, key=lambda p: (p.macs, -p.accuracy, p.number)):
        dominated = any(q.accuracy >= p.accuracy and q.macs <= p.macs and (q.accuracy > p.accuracy or q.macs < p.macs)
                        for q in points)
        if not dominated and (p.macs, p.accuracy) not in seen:
            seen.add((p.macs, p.accuracy))
            front.append(p)
    return front


def best_so_far(points: Sequence[TrialPoint], budget: int) -> list[float | None]:
    """Best feasible accuracy after each trial (``None`` until the first feasible one)."""
    best, out = None, []
    for p in points:
        if p.macs <= budget and (best is None or p.accuracy > best):
            best = p.accuracy
        out.append(best)
    return out


def by_strategy(points: Iterable[TrialPoint]) -> dict[str, list[TrialPoint]]:
    groups: dict[str, list[TrialPoint]] = {}
    for p in points:
        groups.setdefault(p.strategy, []).append(p)
    return groups


def macs_grid(base: ArchConfig, factor_x: str, xs: Sequence[float], factor_y: str, ys: Sequence[float]) -> np.ndarray:
    """Closed-form MACs over a 2-D slice through ``base``: ``[len(ys), len(xs)]``."""
    return np.array([[closed_form_cost(_with(base, {factor_x: x, factor_y: y})).macs for x in xs] for y in ys],
                    dtype=np.float64)


def _with(base: ArchConfig, values: dict[str, float]) -> ArchConfig:
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
CUBE_TRACES_PER_STEP = 3  # feasible grid points, budget iso-surface, trained trials


def cube_figure(view: StudyView) -> go.Figure:
    """Resolution x width x MV2 depth in 3-D, ViT depth on a slider. Per slider step: the grid points
    within budget (faint), the closed-form MAC iso-surface at the budget, and the trials trained at that
    ViT depth (colour = top-1, size = MACs, diamond = winner, square = baseline)."""
    space, budget = view.space, view.budget
    base = _default_base(view)
    res, wid, mv2 = (space.range(f).values() for f in ("resolution", "width", "mv2_depth"))
    vits = space.range("vit_depth").values()
    variant = base.variant if len(space.variants) > 1 else None  # the budget surface is for one variant
    cmin, cmax = _accuracy_range(view.points)
    max_macs = max([p.macs for p in view.points] + [1])
    fig = go.Figure()
    for vit in vits:
        gx, gy, gz, value, feasible = [], [], [], [], []
        for r in res:
            for w in wid:
                for m in mv2:
                    config = _with(base, {"resolution": r, "width": w, "mv2_depth": m, "vit_depth": vit})
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
        here = [p for p in view.points if abs(p.config.vit_depth - vit) < 1e-6]
        fig.add_trace(go.Scatter3d(
            x=[p.config.resolution for p in here], y=[p.config.width for p in here],
            z=[p.config.mv2_depth for p in here], mode="markers", name="trained", legendgroup="trained",
            showlegend=vit == vits[0], text=[p.hover() for p in here], hovertemplate="%{text}<extra></extra>",
            marker=dict(
                color=[100 * p.accuracy for p in here], colorscale=COLORSCALE, cmin=cmin, cmax=cmax,
                showscale=True, colorbar=dict(title=dict(text="top-1 %"), len=0.6),
                size=[5 + 15 * np.sqrt(p.macs / max_macs) for p in here],
                symbol=[_symbol(view, p) for p in here], line=dict(width=1, color="#222"), opacity=0.95)))
    active = vits.index(base.vit_depth) if base.vit_depth in vits else len(vits) // 2
    steps = []
    for i, vit in enumerate(vits):
        visible = [i == j for j in range(len(vits)) for _ in range(CUBE_TRACES_PER_STEP)]
        n = sum(abs(p.config.vit_depth - vit) < 1e-6 for p in view.points)
        steps.append(dict(method="update", label=f"{vit:g}",
                          args=[{"visible": visible}, {"title.text": _cube_title(vit, n, variant)}]))
    for k, trace in enumerate(fig.data):
        trace.visible = k // CUBE_TRACES_PER_STEP == active
    n_active = sum(abs(p.config.vit_depth - vits[active]) < 1e-6 for p in view.points)
    fig.update_layout(
        title=dict(text=_cube_title(vits[active], n_active, variant)), height=720, uirevision="cube",
        margin=dict(l=0, r=0, t=50, b=0), legend=dict(x=0, y=1),
        scene=dict(xaxis=dict(title=dict(text=LABELS["resolution"]), range=_axis_range(space, "resolution")),
                   yaxis=dict(title=dict(text=LABELS["width"]), range=_axis_range(space, "width")),
                   zaxis=dict(title=dict(text=LABELS["mv2_depth"]), range=_axis_range(space, "mv2_depth")),
                   aspectmode="cube"),
        sliders=[dict(active=active, steps=steps, currentvalue=dict(prefix="ViT depth "), pad=dict(t=10, l=30, r=30))])
    return fig


def _cube_title(vit: float, trained: int, variant: str | None = None) -> str:
    where = f" of variant {variant}" if variant else ""
    return f"Factor cube at ViT depth {vit:g}: {trained} trained here (red surface: the MAC budget{where})"


def _symbol(view: StudyView, p: TrialPoint) -> str:
    if view.winner is not None and p.number == view.winner.number:
        return "diamond"
    return "square" if p.role == "baseline" else "circle"


# ---- GP maps of the joint factors ----------------------------------------------------------------
GP_MAP_TRACES_PER_PAIR = 4  # GP mean heatmap, budget contour, trained points, winner


def gp_maps_figure(view: StudyView) -> go.Figure | None:
    """The GP's predicted top-1 over each pair of ``JOINT_PAIRS`` (other factors at the winner's values),
    uncertainty on hover, the budget as a constraint contour (over-budget side shaded), trained points."""
    gp, base = view.surrogate, view.base
    if gp is None or base is None:
        return None
    titles = [f"{LABELS[x]} × {LABELS[y]}" for x, y in JOINT_PAIRS]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.1, vertical_spacing=0.14)
    for i, (fx, fy) in enumerate(JOINT_PAIRS):
        row, col = i // 2 + 1, i % 2 + 1
        xs, ys, mean, std = gp.slice2d(fx, fy, base=base)
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
            x=[getattr(p.config, fx) for p in view.points], y=[getattr(p.config, fy) for p in view.points],
            mode="markers", name="trained (projected)", legendgroup="trained", showlegend=i == 0,
            marker=dict(size=8, color="rgba(255,255,255,0.85)", line=dict(width=1.2, color="black")),
            text=[p.hover() for p in view.points], hovertemplate="%{text}<extra></extra>"), row=row, col=col)
        fig.add_trace(go.Scatter(
            x=[getattr(base, fx)], y=[getattr(base, fy)], mode="markers", name="winner", legendgroup="winner",
            showlegend=i == 0,
            marker=dict(size=15, symbol="star", color=WINNER_COLOR, line=dict(width=1, color="black")),
            text=[view.winner.hover()], hovertemplate="%{text}<extra></extra>"), row=row, col=col)
        fig.update_xaxes(title_text=LABELS[fx], row=row, col=col)
        fig.update_yaxes(title_text=LABELS[fy], row=row, col=col)
    fig.update_layout(
        title=dict(text="GP maps of joint factors (others held at the winner's values; shaded: over budget)"),
        height=860, coloraxis=dict(colorscale=COLORSCALE, colorbar=dict(title=dict(text="GP top-1 %"))),
        legend=dict(orientation="h", y=-0.08), margin=dict(t=80))
    return fig


# ---- 1-D marginals -------------------------------------------------------------------------------
MARGINAL_TRACES_PER_FACTOR = 4  # band upper edge, band lower edge (filled), GP mean, trained points


def marginals_figure(view: StudyView) -> go.Figure | None:
    """The GP along each factor (others at the winner's values): mean and 95 % band, trained points, the
    over-budget part of the axis shaded."""
    gp, base = view.surrogate, view.base
    if gp is None or base is None:
        return None
    fig = make_subplots(rows=1, cols=4, subplot_titles=[LABELS[f] for f in FACTORS], horizontal_spacing=0.06,
                        shared_yaxes=True)
    for i, factor in enumerate(FACTORS):
        col = i + 1
        values, mean, std = gp.marginal(factor, base=base, n=MARGINAL_POINTS)
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
            x=[getattr(p.config, factor) for p in view.points], y=[100 * p.accuracy for p in view.points],
            mode="markers", name="trained (projected)", legendgroup="trained", showlegend=first,
            marker=dict(size=7, color="rgba(0,0,0,0.55)", symbol=[_symbol(view, p) for p in view.points]),
            text=[p.hover() for p in view.points], hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        over = _over_budget_from(view, factor)
        if over is not None:
            fig.add_vrect(x0=over, x1=view.space.range(factor).max, row=1, col=col, fillcolor=BUDGET_COLOR,
                          opacity=0.08, line_width=0)
        fig.update_xaxes(title_text=LABELS[factor], row=1, col=col)
    fig.update_yaxes(title_text="top-1 %", row=1, col=1)
    fig.update_layout(title=dict(text="Marginals: the GP along one factor (others at the winner's values; "
                                      "red tint: over budget)"),
                      height=430, legend=dict(orientation="h", y=-0.25), margin=dict(t=80))
    return fig


def _over_budget_from(view: StudyView, factor: str) -> float | None:
    """Where along ``factor`` (others at the winner's) the config first exceeds the budget: the midpoint
    between the last grid value within budget and the first over it (``None`` if all fit)."""
    values = view.space.range(factor).values()
    fits = [closed_form_cost(_with(view.base, {factor: v})).macs <= view.budget for v in values]
    for k, ok in enumerate(fits):
        if not ok:
            return values[0] if k == 0 else (values[k - 1] + values[k]) / 2
    return None


# ---- accuracy vs MACs ----------------------------------------------------------------------------
def pareto_figure(view: StudyView) -> go.Figure | None:
    """Every trained trial by MACs and top-1, the non-dominated front, the budget, winner and baseline."""
    if not view.points:
        return None
    fig = go.Figure()
    groups = by_strategy(view.points)
    for k, (strategy, points) in enumerate(groups.items()):
        fig.add_trace(go.Scatter(
            x=[p.macs / 1e6 for p in points], y=[100 * p.accuracy for p in points], mode="markers",
            name=f"trained ({strategy})" if len(groups) > 1 else "trained",
            marker=dict(size=9, color=STRATEGY_COLORS[k % len(STRATEGY_COLORS)], opacity=0.75),
            text=[p.hover() for p in points], hovertemplate="%{text}<extra></extra>"))
    front = pareto_front(view.points)
    fig.add_trace(go.Scatter(
        x=[p.macs / 1e6 for p in front], y=[100 * p.accuracy for p in front], mode="lines+markers",
        name="Pareto front", line=dict(color="black", width=1.5, shape="hv"), marker=dict(size=5, color="black"),
        text=[p.hover() for p in front], hovertemplate="%{text}<extra></extra>"))
    accs = [100 * p.accuracy for p in view.points]
    pad = max(0.5, 0.05 * (max(accs) - min(accs)))
    fig.add_trace(go.Scatter(x=[view.budget / 1e6] * 2, y=[min(accs) - pad, max(accs) + pad], mode="lines",
                             name=f"MAC budget {view.budget / 1e6:g}M", hoverinfo="name",
                             line=dict(color=BUDGET_COLOR, dash="dash", width=2)))
    for label, point, symbol, color in (("winner", view.winner, "star", WINNER_COLOR),
                                        ("uniform-scaling baseline", view.baseline, "diamond", BASELINE_COLOR)):
        if point is not None:
            fig.add_trace(go.Scatter(
                x=[point.macs / 1e6], y=[100 * point.accuracy], mode="markers", name=label,
                marker=dict(size=18, symbol=symbol, color=color, line=dict(width=1.5, color="black")),
                text=[point.hover()], hovertemplate=f"<b>{label}</b><br>%{{text}}<extra></extra>"))
    fig.update_layout(title=dict(text="Accuracy vs MACs: Pareto front, budget, winner and baseline"),
                      xaxis=dict(title=dict(text="MACs (M, batch 1)")), yaxis=dict(title=dict(text="top-1 %")),
                      height=520)
    return fig


# ---- search history ------------------------------------------------------------------------------
def history_figure(view: StudyView) -> go.Figure | None:
    """Best feasible top-1 after each trained trial: one line per strategy, each trial's accuracy as a dot."""
    if not view.points:
        return None
    fig = go.Figure()
    for k, (strategy, points) in enumerate(by_strategy(view.points).items()):
        color = STRATEGY_COLORS[k % len(STRATEGY_COLORS)]
        x = list(range(1, len(points) + 1))
        best = best_so_far(points, view.budget)
        fig.add_trace(go.Scatter(
            x=x, y=[None if b is None else 100 * b for b in best], mode="lines", name=f"best feasible ({strategy})",
            legendgroup=strategy, line=dict(color=color, width=3, shape="hv"),
            hovertemplate="after %{x} trained: best %{y:.2f} %<extra>" + html.escape(strategy) + "</extra>"))
        fig.add_trace(go.Scatter(
            x=x, y=[100 * p.accuracy for p in points], mode="markers", name=f"each trial ({strategy})",
            legendgroup=strategy, marker=dict(color=color, size=7, opacity=0.45),
            text=[p.hover() for p in points], hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=dict(text="Search history: best feasible accuracy per trained trial"),
                      xaxis=dict(title=dict(text="trained trials (baseline included)"), dtick=1 if
                                 len(view.points) <= 30 else None),
                      yaxis=dict(title=dict(text="top-1 %")), height=440)
    return fig


def build_figures(view: StudyView) -> dict[str, go.Figure]:
    """Every figure the study has data for, by section id, in page order."""
    builders = (("cube", cube_figure), ("gp-maps", gp_maps_figure), ("marginals", marginals_figure),
                ("pareto", pareto_figure), ("history", history_figure))
    figures = {}
    for key, build in builders:
        fig = build(view)
        if fig is not None:
            figures[key] = fig
    return figures
