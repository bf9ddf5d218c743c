"""Replays (issue 8): the search strategies run against a scored table (``bench.py``) instead of training.

Each (strategy, seed) is a real ``search.run_trials`` search on its own in-memory Optuna study
(``optuna.storages.InMemoryStorage``, no heartbeat, no result cache), with ``TableEvaluator`` looking the
accuracy up in the table. The space is restricted to the table's points within the budget:

* ``gp`` gets exactly those points as its candidates (``GPSampler``).
* ``tpe``, ``random`` and ``nsga3`` propose on the whole factor grid as in ``run``; ``SnapToTable`` turns a
  proposal within the budget into the nearest table point within the budget *not yet evaluated* in this
  search (Euclidean distance in the encoded unit cube, ties: the first in table order; the nearest of all
  once every point is evaluated), and the study stores the snapped point, so the strategy learns from what
  was evaluated. Not yet evaluated: on the full grid a proposal next to an evaluated config is a new config,
  but a table holds only tens of points per budget, so the nearest point would be re-proposed again and
  again and a concentrating strategy (TPE) would stall on free repeats. A proposal over the budget is left
  as it is: ``run_trials`` skips it as infeasible, as in ``run``; it is never evaluated.

An evaluation is a distinct network evaluated (what ``run --trials`` counts): re-proposals of a network
already evaluated and over-budget proposals cost nothing, but a strategy that makes ``MAX_WASTED_STREAK`` of
them in a row is stopped ("stuck"); its curve then stays at its last value. The uniform width-multiplier
baseline is *not* enqueued (unlike ``run``): the curves measure the strategies alone, and the baseline is
reported beside them from the table. ``random`` runs to ``2 N`` evaluations when ``gp`` is replayed too, for
"GP at N against random at 2N". Trials are capped at the number of table points within the budget. Rows
that failed in the table (diverged, out of memory) are left out of replays and counted in the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from .bench import BenchTable, format_macs
from .config import ArchConfig, ConfigError
from .cost import closed_form_cost
from .bench import grid_width_baseline as uniform_baseline
from .search import BudgetError, run_trials
from .space import FactorSpace
from .study import STRATEGIES, StudySettings, config_from_params, config_params, distributions, open_study

TOLERANCE_POINTS = 0.5


class TableEvaluator:
    """The ``search.Evaluator`` of a replay: the table's record of the config's network; never trains."""

    def __init__(self, table: BenchTable):
        self.table = table
        self.fidelity = dict(table.fidelity)
        self.data_fingerprint = table.data
        self.seed = table.seed
        self._index = table.index()
        self.calls: list[ArchConfig] = []

    def __call__(self, config: ArchConfig, heartbeat: Callable[[], None] = lambda: None) -> dict:
        i = self._index.get(config.network_key())
        if i is None:
            raise LookupError(f"{config.id} is not in the table {self.table.path}")
        self.calls.append(config)
        top1 = self.table.top1[i]
        return {"status": "ok" if top1 is not None else "failed", "top1": top1,
                "reason": None if top1 is not None else "failed in the table", "config_id": config.id,
                "fidelity": self.fidelity, "seed": self.seed, "dataset": "table", "wall_s": 0.0}


class SnapToTable(optuna.samplers.BaseSampler):
    """A strategy's proposals within the budget moved to the nearest table point within the budget."""

    def __init__(self, base: optuna.samplers.BaseSampler, space: FactorSpace, points: Sequence[ArchConfig],
                 budget: int):
        self.base, self.space, self.points, self.budget = base, space, list(points), budget
        self._x = space.encode(self.points)
        self._dists = distributions(space)

    def snap(self, config: ArchConfig, taken: set[tuple] = frozenset()) -> ArchConfig:
        """The nearest point not in ``taken`` (network keys), or the nearest of all when every one is."""
        if closed_form_cost(config).macs > self.budget:
            return config  # over budget: run_trials skips it, as in a real run
        d = ((self._x - self.space.encode([config])) ** 2).sum(1)
        free = np.array([p.network_key() not in taken for p in self.points])
        if free.any():
            d = np.where(free, d, np.inf)
        return self.points[int(np.argmin(d))]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._dists

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.system_attrs.get("fixed_params"):  # enqueued: brings its own
            return {}
        inner = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, inner)) if inner else {}
        for name, dist in self._dists.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, dist)
        taken = {ArchConfig.from_dict(t.user_attrs["config"]).network_key()
                 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                  TrialState.RUNNING))
                 if t.number != trial.number and "config" in t.user_attrs}
        return config_params(self.snap(config_from_params(params, self.space), taken), self.space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


@dataclass
class Curve:
    """One replayed search: the best feasible accuracy after each evaluation (None before any succeeded)."""

    strategy: str
    seed: int
    best: list[float | None]
    evaluated: list[str]  # config ids, in order
    infeasible: int = 0  # proposals over the budget (skipped)
    repeats: int = 0  # proposals of a network already evaluated (free)
    stuck: bool = False

    def at(self, k: int) -> float | None:
        """Best after ``k`` evaluations; past the end of a short (stuck) curve, its last value."""
        if k < 1 or not self.best:
            return None
        return self.best[min(k, len(self.best)) - 1]

    def evals_to(self, target: float) -> int | None:
        return next((i + 1 for i, b in enumerate(self.best) if b is not None and b >= target - 1e-12), None)


@dataclass(frozen=True)
class Problem:
    """A table at one budget: its feasible points, best and baseline."""

    table: BenchTable
    budget: int
    points: list[ArchConfig]
    costs: list[int]
    best: tuple[ArchConfig, float]
    baseline: tuple[ArchConfig, float | None, bool] | None  # config, its accuracy, whether in the table

    failed: int = 0  # table rows within the budget that failed (diverged, out of memory): left out

    @classmethod
    def at(cls, table: BenchTable, budget: int) -> Problem:
        within = [i for i, m in enumerate(table.macs) if m <= budget]
        if not within:
            cheapest = min(range(len(table.macs)), key=table.macs.__getitem__)
            raise BudgetError(f"--mac-budget: no config of the table fits {budget / 1e6:.1f}M; the cheapest is "
                              f"{table.configs[cheapest].id} at {table.macs[cheapest] / 1e6:.1f}M MACs")
        idx = [i for i in within if table.top1[i] is not None]
        if not idx:
            raise BudgetError(f"--mac-budget: every config of the table within {budget / 1e6:.1f}M failed")
        best = max(idx, key=lambda i: (table.top1[i], -i))
        base = uniform_baseline(table.space, budget)
        baseline = None
        if base is not None:
            j = table.index().get(base.network_key())
            baseline = (base, table.top1[j] if j is not None else None, j is not None)
        return cls(table, budget, [table.configs[i] for i in idx], [table.macs[i] for i in idx],
                   (table.configs[best], table.top1[best]), baseline, len(within) - len(idx))


def replay_one(problem: Problem, strategy: str, seed: int, trials: int) -> Curve:
    """One search of ``trials`` evaluations (at most the feasible points) on a fresh in-memory study."""
    from .samplers import make_sampler

    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    table, space = problem.table, problem.table.space
    trials = min(trials, len(problem.points))
    settings = StudySettings(space=table.space_dict, mac_budget=problem.budget, profile=table.fidelity.get("name",
                             "table"), data=str(table.path), strategy=strategy, seed=seed, trials=trials)
    sampler = make_sampler(strategy, space, problem.points, problem.costs, problem.budget, seed)
    if strategy != "gp":
        sampler = SnapToTable(sampler, space, problem.points, problem.budget)
    study = open_study(f"replay-{strategy}-s{seed}", optuna.storages.InMemoryStorage(), settings, sampler)
    stuck = False
    try:
        run_trials(study, settings, TableEvaluator(table), cache=None, progress=False)
    except BudgetError:  # MAX_WASTED_STREAK proposals in a row that were over budget or already evaluated
        stuck = True
    return curve_of(study, strategy, seed, stuck)


def curve_of(study: optuna.Study, strategy: str, seed: int, stuck: bool = False) -> Curve:
    """Best feasible accuracy after each distinct network evaluated, in trial order."""
    curve = Curve(strategy, seed, [], [], stuck=stuck)
    seen: set[tuple] = set()
    best = None
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = t.user_attrs
        if attrs.get("role") == "baseline" or "config" not in attrs:
            continue
        if t.state == TrialState.PRUNED:
            curve.infeasible += bool(attrs.get("infeasible"))
            continue
        if t.state not in (TrialState.COMPLETE, TrialState.FAIL):
            continue
        network = ArchConfig.from_dict(attrs["config"]).network_key()
        if network in seen:
            curve.repeats += 1
            continue
        seen.add(network)
        if t.state == TrialState.COMPLETE and "accuracy" in attrs and attrs["macs"] <= study.user_attrs[
                "settings"]["mac_budget"]:
            best = attrs["accuracy"] if best is None else max(best, attrs["accuracy"])
        curve.best.append(best)
        curve.evaluated.append(attrs["config_id"])
    return curve


# ---- many searches, and what they say ----------------------------------------------------------------------
@dataclass
class Report:
    problem: Problem
    trials: int
    seeds: list[int]
    tolerance: float  # in accuracy units (0.005 = half a point)
    curves: dict[str, list[Curve]] = field(default_factory=dict)

    @property
    def target(self) -> float | None:
        return self.problem.best[1] - self.tolerance if self.problem.best else None

    def evaluations(self, strategy: str) -> int:
        return max((len(c.best) for c in self.curves[strategy]), default=0)

    def mean_std(self, strategy: str, k: int) -> tuple[float, float] | None:
        values = [c.at(k) for c in self.curves[strategy]]
        values = [v for v in values if v is not None]
        if not values:
            return None
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def evals_to_target(self, strategy: str) -> list[int | None]:
        return [c.evals_to(self.target) if self.target is not None else None for c in self.curves[strategy]]

    def to_dict(self) -> dict[str, Any]:
        p = self.problem
        out: dict[str, Any] = {
            "table": str(p.table.path), "fidelity": p.table.fidelity.get("name"), "table_seed": p.table.seed,
            "mac_budget": p.budget, "trials": self.trials, "seeds": self.seeds,
            "tolerance_points": round(100 * self.tolerance, 6), "table_points": len(p.table.configs),
            "feasible_points": len(p.points), "failed_points_left_out": p.failed,
            "table_best": {"config_id": p.best[0].id, "top1": p.best[1],
                           "macs": closed_form_cost(p.best[0]).macs} if p.best else None,
            "baseline": ({"config_id": p.baseline[0].id, "top1": p.baseline[1], "in_table": p.baseline[2],
                          "macs": closed_form_cost(p.baseline[0]).macs} if p.baseline else None),
            "strategies": {},
        }
        for s, curves in self.curves.items():
            n = self.evaluations(s)
            stats = [self.mean_std(s, k) for k in range(1, n + 1)]
            out["strategies"][s] = {
                "evaluations": n,
                "mean": [m[0] if m else None for m in stats], "std": [m[1] if m else None for m in stats],
                "best_at_trials": self.mean_std(s, self.trials),
                "evals_to_target": self.evals_to_target(s),
                "median_evals_to_target": median_evals(self.evals_to_target(s)),
                "stuck": sum(c.stuck for c in curves),
                "curves": [{"seed": c.seed, "best": c.best, "evaluated": c.evaluated, "infeasible": c.infeasible,
                            "repeats": c.repeats, "stuck": c.stuck} for c in curves],
            }
        out["gp_vs_random"] = self.gp_vs_random()
        out["winner"] = self.winner()
        return out

    def gp_vs_random(self) -> dict[str, Any] | None:
        if "gp" not in self.curves or "random" not in self.curves:
            return None
        n = self.trials
        gp, rnd = self.mean_std("gp", n), self.mean_std("random", 2 * n)
        return {"n": n, "gp_at_n": gp[0] if gp else None, "random_at_2n": rnd[0] if rnd else None,
                "random_evaluations": self.evaluations("random"),
                "gp_minus_random": gp[0] - rnd[0] if gp and rnd else None}

    def winner(self) -> dict[str, Any] | None:
        scored = {s: self.mean_std(s, self.trials) for s in self.curves}
        scored = {s: v[0] for s, v in scored.items() if v}
        if not scored:
            return None
        name = max(scored, key=lambda s: (scored[s], -list(self.curves).index(s)))
        base = self.problem.baseline[1] if self.problem.baseline else None
        return {"strategy": name, "mean_best_at_trials": scored[name],
                "minus_baseline": scored[name] - base if base is not None else None,
                "table_best_minus_baseline": (self.problem.best[1] - base
                                              if base is not None and self.problem.best else None)}


def replay(table: BenchTable, budget: int, strategies: Sequence[str], trials: int, seeds: int,
           tolerance_points: float = TOLERANCE_POINTS, progress: Callable[[str], None] | None = None) -> Report:
    """Every strategy, seeds ``0..seeds-1``; random to ``2 * trials`` when gp is among the strategies.
    ``progress`` is called with "STRATEGY seed S" after each search."""
    problem = Problem.at(table, budget)
    trials = min(trials, len(problem.points))
    report = Report(problem, trials, list(range(seeds)), tolerance_points / 100)
    for strategy in strategies:
        n = 2 * trials if strategy == "random" and "gp" in strategies else trials
        report.curves[strategy] = []
        for seed in report.seeds:
            report.curves[strategy].append(replay_one(problem, strategy, seed, n))
            if progress:
                progress(f"{strategy} seed {seed}")
    return report


def ticks(n: int, also: Sequence[int] = ()) -> list[int]:
    """Rows of the printed table: 1, 2, 3, then a round step (at most ~10 rows), ``n`` and ``also``."""
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 10**9) if n / s <= 10)
    return sorted({k for k in (1, 2, 3, *range(step, n + 1, step), n, *also) if 1 <= k <= n})


def median_evals(hits: Sequence[int | None]) -> float | None:
    """Median evaluations to the target over seeds, a seed that never reached it counting as infinite
    (None when at least half never did)."""
    values = sorted(math.inf if h is None else h for h in hits)
    if not values:
        return None
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return None if math.isinf(median) else float(median)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def render(report: Report) -> str:
    p = report.problem
    strategies = list(report.curves)
    lines = [f"replay of {p.table.path} at {format_macs(p.budget)} MACs: {len(p.points)} of "
             f"{len(p.table.configs)} table points fit" + (f" ({p.failed} more failed in the table: left out)"
                                                            if p.failed else "")
             + f"; profile {p.table.fidelity.get('name')}, {len(report.seeds)} seed(s), {report.trials} evaluations"]
    if p.best:
        lines.append(f"table best feasible: {p.best[0].id} {100 * p.best[1]:.2f}%; target (within "
                     f"{100 * report.tolerance:g} points): {100 * report.target:.2f}%")
    lines += ["", "best feasible top-1 (%), mean ± std over seeds, after k evaluations",
              f"{'k':>5} " + " ".join(f"{s:>15}" for s in strategies)]
    longest = max(report.evaluations(s) for s in strategies)
    for k in ticks(longest, (report.trials,)):
        cells = []
        for s in strategies:
            ms = report.mean_std(s, k) if k <= report.evaluations(s) else None
            cells.append(f"{_pct(ms[0])} ± {100 * ms[1]:.2f}" if ms else "-")
        lines.append(f"{k:>5} " + " ".join(f"{c:>15}" for c in cells))
    lines += ["", f"evaluations to within {100 * report.tolerance:g} points of the table's best feasible:"]
    for s in strategies:
        hits = report.evals_to_target(s)
        median = median_evals(hits)
        reached = sum(h is not None for h in hits)
        stuck = sum(c.stuck for c in report.curves[s])
        lines.append(f"  {s:<7} median {f'{median:g}' if median is not None else f'> {report.evaluations(s)}'}"
                     f" (reached in {reached}/{len(hits)} seeds within {report.evaluations(s)}; per seed "
                     f"{' '.join('-' if h is None else str(h) for h in hits)})"
                     + (f"; stuck in {stuck} seed(s)" if stuck else ""))
    versus = report.gp_vs_random()
    if versus and versus["gp_at_n"] is not None and versus["random_at_2n"] is not None:
        capped = "" if versus["random_evaluations"] >= 2 * versus["n"] else \
            f" (random reached only {versus['random_evaluations']} evaluations)"
        lines.append(f"GP at {versus['n']}: {_pct(versus['gp_at_n'])}%  vs  random at {2 * versus['n']}: "
                     f"{_pct(versus['random_at_2n'])}%  ({100 * versus['gp_minus_random']:+.2f} points){capped}")
    win = report.winner()
    if win:
        lines.append(f"winner: {win['strategy']}, mean best at {report.trials}: {_pct(win['mean_best_at_trials'])}%")
    if p.baseline:
        base, acc, present = p.baseline
        if present and acc is not None and win:
            lines.append(f"uniform baseline {base.id}: {100 * acc:.2f}%; winner - baseline "
                         f"{100 * win['minus_baseline']:+.2f} points (table best - baseline "
                         f"{100 * win['table_best_minus_baseline']:+.2f})")
        else:
            lines.append(f"uniform baseline {base.id}: not scored in the table; no baseline comparison")
    else:
        lines.append("uniform baseline: no width fits the budget at 256 px")
    return "\n".join(lines)


COLOURS = {"gp": "#1f77b4", "tpe": "#2ca02c", "random": "#7f7f7f", "nsga3": "#d62728"}


def figure(report: Report):
    """Mean best feasible accuracy vs evaluations per strategy (band: ± one std), with the table's best,
    the target and the uniform baseline as horizontal lines."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in report.curves:
        n = report.evaluations(s)
        ks = list(range(1, n + 1))
        stats = [report.mean_std(s, k) for k in ks]
        mean = [100 * m[0] if m else None for m in stats]
        upper = [100 * (m[0] + m[1]) if m else None for m in stats]
        lower = [100 * (m[0] - m[1]) if m else None for m in stats]
        colour = COLOURS.get(s, "#9467bd")
        fig.add_trace(go.Scatter(x=ks + ks[::-1], y=upper + lower[::-1], fill="toself", line={"width": 0},
                                 fillcolor=colour, opacity=0.15, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=ks, y=mean, mode="lines+markers", name=s, line={"color": colour},
                                 marker={"size": 4}))
    p = report.problem
    if p.best:
        fig.add_hline(y=100 * p.best[1], line_dash="dot", annotation_text=f"table best {p.best[0].id}",
                      annotation_position="top left")
        fig.add_hline(y=100 * report.target, line_dash="dash", line_color="#aaaaaa",
                      annotation_text=f"within {100 * report.tolerance:g} points", annotation_position="bottom right")
    if p.baseline and p.baseline[1] is not None:
        fig.add_hline(y=100 * p.baseline[1], line_color="#ff7f0e",
                      annotation_text=f"uniform baseline {p.baseline[0].id}", annotation_position="bottom right")
    fig.update_layout(
        title=f"Replay at {format_macs(p.budget)} MACs: {p.table.path.name} ({p.table.fidelity.get('name')}), "
              f"{len(report.seeds)} seeds",
        xaxis_title="evaluations (distinct networks)", yaxis_title="best feasible top-1 (%)",
        template="plotly_white", legend_title="strategy")
    return fig


def write_outputs(report: Report, folder: Path) -> tuple[Path, Path]:
    """``replay-<table>-<budget>.html`` (self-contained: plotly.js embedded) and ``.json`` in ``folder``."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"replay-{report.problem.table.path.stem}-{format_macs(report.problem.budget)}"
    html, data = folder / f"{stem}.html", folder / f"{stem}.json"
    figure(report).write_html(html, include_plotlyjs=True, full_html=True)
    data.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    return html, data
