"""Many replayed searches and what they say: every strategy at every replay seed, judged at a few costs.

Per strategy and cost: the true top-rung accuracy of the decided winner (mean and spread over replay seeds),
how many seeds picked the table's best, and the proposals the cost bought; the design-only strategy against
the GP (and ``mf-gp`` against ``gp``) at each cost; the pick against the grid-width baseline; the cost until
a config within the tolerance of the table's best was first scored at the top rung. Printed (``render``),
plotted against cost (``figure``) and saved as JSON (``write_outputs``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..table import format_macs
from .problem import Problem
from .search import Pick, Search, Setup, search

TOLERANCE_POINTS = 0.5
DESIGN = "design"
COMPARED = (("design", "gp"), ("mf-gp", "gp"), ("mf-design", "design"))  # (a, b): a - b is reported


def default_costs(n: float) -> list[float]:
    """A quarter, a half and all of ``n`` top-rung evaluations (at least 1)."""
    return sorted({float(max(1, round(n / 4))), float(max(1, round(n / 2))), float(n)})


@dataclass
class Report:
    problem: Problem
    setup: Setup
    costs: list[float]
    seeds: list[int]
    tolerance: float  # accuracy units (0.005: half a point)
    searches: dict[str, list[Search]] = field(default_factory=dict)

    @property
    def target(self) -> float:
        return self.problem.best[1] - self.tolerance

    def picks(self, strategy: str, i: int) -> list[Pick]:
        """Every seed's pick at ``costs[i]`` (those the cost bought)."""
        return [s.picks[i] for s in self.searches[strategy] if s.picks[i].true is not None]

    def stats(self, strategy: str, i: int) -> dict[str, Any] | None:
        picks = self.picks(strategy, i)
        if not picks:
            return None
        true = [p.true for p in picks]
        return {"cost": self.costs[i], "mean": float(np.mean(true)),
                "std": float(np.std(true, ddof=1)) if len(true) > 1 else 0.0, "seeds": len(picks),
                "picked_best": sum(p.is_best for p in picks), "trials": sorted({p.trials for p in picks}),
                "spent": float(np.mean([p.spent for p in picks]))}

    def difference(self, a: str, b: str) -> list[float | None]:
        """Mean true accuracy of ``a``'s picks minus ``b``'s, at each cost."""
        out = []
        for i in range(len(self.costs)):
            sa, sb = self.stats(a, i), self.stats(b, i)
            out.append(sa["mean"] - sb["mean"] if sa and sb else None)
        return out

    def costs_to_target(self, strategy: str) -> list[float | None]:
        top = len(self.problem.rungs) - 1
        return [s.cost_to(self.target, top) for s in self.searches[strategy]]

    def to_dict(self) -> dict[str, Any]:
        p = self.problem
        base = p.baseline
        out: dict[str, Any] = {
            "mac_budget": p.budget, "points": len(p.points), "left_out": p.left_out, "costs": self.costs,
            "seeds": self.seeds, "tolerance_points": round(100 * self.tolerance, 6),
            "setup": {"promote": self.setup.promote, "top_seeds": self.setup.top_seeds, "noisy": self.setup.noisy},
            "cost_model": p.cost_model, "rungs": [rung_dict(p, r) for r in range(len(p.rungs))],
            "table_best": {"config_id": p.best[0].id, "true": p.best[1], "macs": p.costs[p.points.index(p.best[0])]},
            "baseline": {"config_id": base[0].id, "true": base[1]} if base else None,
            "compared": {f"{a} - {b}": self.difference(a, b) for a, b in COMPARED
                         if a in self.searches and b in self.searches},
            "strategies": {},
        }
        for name, searches in self.searches.items():
            out["strategies"][name] = {
                "picks": [self.stats(name, i) for i in range(len(self.costs))],
                "costs_to_target": self.costs_to_target(name),
                "median_cost_to_target": median(self.costs_to_target(name)),
                "searches": [{"seed": s.seed, "picks": [vars(k) for k in s.picks], "jobs": [vars(j) for j in s.jobs],
                              "infeasible": s.infeasible, "repeats": s.repeats, "stuck": s.stuck} for s in searches],
            }
        return out


def rung_dict(problem: Problem, r: int) -> dict[str, Any]:
    rung = problem.rungs[r]
    keys = [c.network_key() for c in problem.points]
    return {"profile": rung.name, "job_cost": problem.weights[r], "noise": rung.noise.to_dict(),
            "points_with_seeds": sum(len(rung.scores[k]) > 1 for k in keys),
            "tables": [{"path": str(t.path), "seed": t.seed, "inexact_rows": t.inexact, "exact_only": t.exact_only}
                       for t in rung.tables]}


def replay(problem: Problem, strategies: Sequence[str], costs: Sequence[float], seeds: int, setup: Setup,
           tolerance_points: float = TOLERANCE_POINTS, progress: Callable[[str], None] | None = None) -> Report:
    """Every strategy (the design-only one always among them) at replay seeds ``0..seeds-1``; ``progress``
    is called with "STRATEGY seed S" after each search."""
    strategies = list(dict.fromkeys([*strategies, DESIGN]))
    report = Report(problem, setup, sorted(set(map(float, costs))), list(range(seeds)), tolerance_points / 100)
    for strategy in strategies:
        report.searches[strategy] = []
        for seed in report.seeds:
            report.searches[strategy].append(search(problem, strategy, seed, report.costs, setup))
            if progress:
                progress(f"{strategy} seed {seed}")
    return report


def median(values: Sequence[float | None]) -> float | None:
    """Median over seeds, a seed that never got there counting as infinite (None when half or more never did)."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return None if math.isinf(value) else float(value)


# ---- text ---------------------------------------------------------------------------------------------------
def _pct(value: float | None, sign: bool = False) -> str:
    return "-" if value is None else f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"


def _g(value: float) -> str:
    return f"{value:.3g}"


def describe(report: Report) -> list[str]:
    """The problem: points, rungs and their tables, cost model, noise model, best and baseline."""
    p, setup = report.problem, report.setup
    lines = [f"replay at {format_macs(p.budget)} MACs: {len(p.points)} configs within the budget scored at every "
             f"rung" + (f" ({p.left_out} more left out: not scored at every rung)" if p.left_out else "")]
    for r, rung in enumerate(p.rungs):
        tables = ", ".join(f"{t.path.name} (seed {t.seed}" + (f", {t.inexact} inexact rows left out)" if t.inexact
                                                              and t.exact_only else ")") for t in rung.tables)
        lines.append(f"rung {r} {rung.name}: {tables}; a job costs {_g(p.weights[r])} top-rung evaluation(s)")
    if any(t.inexact and t.exact_only for rung in p.rungs for t in rung.tables):
        lines.append("inexact: trained at the old rounded resolution, a twin of another resolution's network")
    lines.append("cost: top-rung-equivalent evaluations, " + (
        "by images seen (epochs x training images a class x resolution scale^2)" if p.cost_model == "images"
        else "by the rungs' median training wall time"))
    if setup.noisy:
        for r, rung in enumerate(p.rungs):
            d = rung_dict(p, r)
            n = rung.noise
            why = (f"the profile's prior {100 * n.prior:.2f} pooled with {n.repeats_df} degree(s) of freedom of the "
                   "tables' seed repeats" if n.repeats_df and n.prior is not None else n.source)
            rest = len(p.points) - d["points_with_seeds"]
            lines.append(f"noise at {rung.name}: {d['points_with_seeds']} of {len(p.points)} configs draw one of their "
                         "table seeds" + (f"; the other {rest} score their one table score + N(0, "
                                          f"{100 * n.std:.2f} points): {why}" if rest else ""))
    else:
        lines.append("noise: off (every job scores the config's mean over its table seeds)")
    lines.append(f"table best (top rung, mean over seeds): {p.best[0].id} {100 * p.best[1]:.2f}%" + (
        f"; grid-width baseline {p.baseline[0].id} {_pct(p.baseline[1])}%" if p.baseline and p.baseline[1] is not None
        else "; grid-width baseline not among the points"))
    lines.append(f"{len(report.seeds)} replay seed(s); promote {setup.promote:.3g}, {setup.top_seeds} top seed(s)")
    return lines


def render(report: Report) -> str:
    names = list(report.searches)
    width = max(18, *(len(n) + 2 for n in names))
    lines = describe(report) + [
        "", "true top-1 of the decided winner (%), mean ± std over seeds; [n]: seeds that picked the table's best",
        f"{'cost':>6} " + " ".join(f"{n:>{width}}" for n in names)]
    for i, cost in enumerate(report.costs):
        cells = []
        for n in names:
            st = report.stats(n, i)
            cells.append(f"{_pct(st['mean'])} ± {100 * st['std']:.2f} [{st['picked_best']}]" if st else "-")
        lines.append(f"{_g(cost):>6} " + " ".join(f"{c:>{width}}" for c in cells))
    at = " / ".join(_g(c) for c in report.costs)
    multi = [n for n in names if len(report.problem.rungs) > 1 and n.startswith("mf-")]
    for n in multi:
        counts = [",".join(map(str, st["trials"])) if (st := report.stats(n, i)) else "-"
                  for i in range(len(report.costs))]
        lines.append(f"{n}: proposals at rung 0 for cost {at}: {' / '.join(counts)}")
    lines.append("")
    for a, b in COMPARED:
        if a in report.searches and b in report.searches:
            diffs = " / ".join(_pct(d, sign=True) for d in report.difference(a, b))
            lines.append(f"{a} - {b}: {diffs} points at cost {at}")
    base = report.problem.baseline
    if base and base[1] is not None:
        last = len(report.costs) - 1
        cells = [f"{n} {_pct(st['mean'] - base[1], sign=True)}" for n in names if (st := report.stats(n, last))]
        lines.append(f"pick - grid-width baseline at cost {_g(report.costs[-1])}: {', '.join(cells)} points")
    lines += ["", f"cost until a config within {100 * report.tolerance:g} points of the table's best was scored at "
                  "the top rung (median over seeds; per seed, - : never):"]
    for n in names:
        costs = report.costs_to_target(n)
        mid = median(costs)
        stuck = sum(s.stuck for s in report.searches[n])
        lines.append(f"  {n:<10} {_g(mid) if mid is not None else '> ' + _g(report.costs[-1]):>6} "
                     f"({sum(c is not None for c in costs)}/{len(costs)} seeds; "
                     f"{' '.join('-' if c is None else _g(c) for c in costs)})"
                     + (f"; stuck in {stuck} seed(s)" if stuck else ""))
    return "\n".join(lines)


# ---- plot ---------------------------------------------------------------------------------------------------
COLOURS = {"gp": "#1f77b4", "mf-gp": "#9467bd", "design": "#ff7f0e", "tpe": "#2ca02c", "random": "#7f7f7f",
           "nsga3": "#d62728"}


def figure(report: Report):
    """True accuracy of the pick against cost per strategy (band: ± one std over seeds), with the table's
    best and the grid-width baseline as horizontal lines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in report.searches:
        stats = [(c, st) for i, c in enumerate(report.costs) if (st := report.stats(name, i))]
        if not stats:
            continue
        xs = [c for c, _ in stats]
        mean = [100 * st["mean"] for _, st in stats]
        upper = [100 * (st["mean"] + st["std"]) for _, st in stats]
        lower = [100 * (st["mean"] - st["std"]) for _, st in stats]
        colour = COLOURS.get(name, "#8c564b")
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], fill="toself", line={"width": 0},
                                 fillcolor=colour, opacity=0.15, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=xs, y=mean, mode="lines+markers", name=name, line={"color": colour}))
    p = report.problem
    fig.add_hline(y=100 * p.best[1], line_dash="dot", annotation_text=f"table best {p.best[0].id}",
                  annotation_position="top left")
    if p.baseline and p.baseline[1] is not None:
        fig.add_hline(y=100 * p.baseline[1], line_color="#bcbd22", annotation_text=f"grid-width baseline "
                      f"{p.baseline[0].id}", annotation_position="bottom right")
    rungs = ">".join(r.name for r in p.rungs)
    fig.update_layout(title=f"Replay at {format_macs(p.budget)} MACs over {rungs}, {len(report.seeds)} seeds"
                            + ("" if report.setup.noisy else ", no noise"),
                      xaxis_title=f"cost (top-rung evaluations, by {p.cost_model})",
                      yaxis_title="true top-1 of the decided winner (%)", template="plotly_white",
                      legend_title="strategy")
    return fig


def write_outputs(report: Report, folder: Path) -> tuple[Path, Path]:
    """``replay-<top table>-<budget>.html`` (self-contained: plotly.js embedded) and ``.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"replay-{report.problem.top.tables[0].path.stem}-{format_macs(report.problem.budget)}"
    html, data = folder / f"{stem}.html", folder / f"{stem}.json"
    figure(report).write_html(html, include_plotlyjs=True, full_html=True)
    data.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    return html, data
