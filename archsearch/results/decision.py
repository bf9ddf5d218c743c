"""One place decides: a study's winner, its baselines and the winner's margin over each, with intervals.

Everything a study reports about who won is computed here, once per study (``judge``), and read by ``run``'s
summary, ``summary.json``, the dashboard, the export, ``archsearch status`` and the replays. The networks
compared are ``search.networks.Network``, to which the decision adds the GP's posterior; they are ranked
by ``networks.by_estimate``.

* **Where.** At the top rung of the fidelity ladder (or the highest rung the study reached, and then it
  says so): cheap rungs screen, they do not decide.
* **Winner.** Among every network trained there -- the strategy's and the baselines' alike, so the answer is
  the best network the study found, whoever proposed it -- the best by the GP's posterior mean at that rung
  (it pools every rung and seed with each rung's measured noise), or by the mean over seeds without a GP.
  Networks level by the GP's mean (a GP that finds no signal beyond the noise is level everywhere) are
  ranked by their own mean score at the deciding rung, and only then does the cheaper win: measured on the
  seed-2 default run, a flat GP's "cheapest of five" (124.5 M of a 300 M budget) lost to every baseline by
  6-8 points once retrained at the reference (benchmarks/RESULTS.md). Never simply the highest single score
  where the GP separates networks. A winner that is a baseline is said to be one; its margin over itself is
  zero.
* **Margins.** Winner minus baseline, each the mean over its seeds at the deciding rung. The 95 % interval
  adds two independent errors: training noise (each mean's seed-to-seed variance ``noise^2 / seeds``, with
  the rung's measured noise) and the validation sample (the per-image difference of the two networks'
  top-1 hits on the same images, averaged over the seeds both ran: a paired test). A margin whose interval
  holds 0 is said, in words, not to be significant. The margin at every other rung both were trained at
  is shown beside it, so a lead that shrinks or flips with fidelity is visible.
* **Latency.** Under a latency budget, a network whose *measured* latency broke it is flagged
  (``Decision.over_latency``) and is never the winner, whatever its score; a baseline measured over it is
  still compared, and its margin says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..gp.surrogate import GPSurrogate
from ..model.config import ArchConfig
from ..search.baselines import KINDS
from ..search.fidelity import Noise
from ..search.jobs import SEARCH, Ledger, Plan
from ..search.networks import Network, by_estimate

Z95 = 1.959964


@dataclass(frozen=True)
class Margin:
    """The winner against one baseline kind (or why there is no such baseline)."""

    kind: str
    baseline: Network | None
    margin: float | None
    interval: tuple[float, float] | None
    significant: bool | None
    words: str
    by_rung: dict[int, float] = field(default_factory=dict)  # point margins at the other rungs both ran
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {"kind": self.kind, "config_id": b.config.id if b else None, "config": b.config.to_dict() if b else None,
                "macs": b.macs if b else None, "accuracy": b.mean if b else None,
                "trained_resolution": b.trained_resolution if b else None, "seeds": list(b.seeds) if b else [],
                "margin": self.margin, "margin_interval": list(self.interval) if self.interval else None,
                "significant": self.significant, "words": self.words, "rule": self.rule,
                "margin_by_rung": {str(k): v for k, v in self.by_rung.items()}}


@dataclass(frozen=True)
class Decision:
    rung: int
    fidelity: str
    reached_top: bool
    winner: Network | None  # with the GP's posterior, as every network of ``ranked``
    margins: tuple[Margin, ...]
    noise: Noise
    ranked: tuple[Network, ...]  # every network trained at the deciding rung within the budgets, best first
    over_latency: tuple[Network, ...] = ()  # measured over the latency budget: flagged, never the winner

    @property
    def winner_is_baseline(self) -> tuple[str, ...]:
        """The baseline kinds the winner is (a baseline may win), else ()."""
        if self.winner is None:
            return ()
        key = self.winner.config.network_key()
        return tuple(m.kind for m in self.margins if m.baseline and m.baseline.config.network_key() == key)

    @property
    def tied(self) -> int:
        """How many other networks the GP's mean puts level with the winner (their own scores then ranked them)."""
        return sum(1 for n in self.ranked[1:] if n.estimate == self.ranked[0].estimate)


def margin(winner: Network, baseline: Network, noise_std: float,
           bias_std: float = 0.0) -> tuple[float, tuple[float, float], float]:
    """(margin, 95 % interval, standard error): training noise of both means, the fidelity bias of both
    networks (``fidelity.FIDELITY_BIAS_STD``: seeds do not average it out) and the paired validation error."""
    diff = winner.mean - baseline.mean
    var_train = noise_std**2 * (1 / len(winner.scores) + 1 / len(baseline.scores)) + 2 * bias_std**2
    common = [s for s in winner.hits if s in baseline.hits and len(winner.hits[s]) == len(baseline.hits[s])]
    if common:
        per_seed = [np.var(winner.hits[s].astype(float) - baseline.hits[s].astype(float), ddof=1) / len(winner.hits[s])
                    for s in common]
        var_eval = float(np.mean(per_seed)) / len(common)
    else:
        var_eval = 0.0
    se = math.sqrt(var_train + var_eval)
    return diff, (diff - Z95 * se, diff + Z95 * se), se


def words(kind: str, diff: float, interval: tuple[float, float]) -> str:
    lo, hi = interval
    span = f"{100 * diff:+.2f} points, 95 % interval [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    if lo > 0:
        return f"the winner beats the {kind} baseline: {span}"
    if hi < 0:
        return f"the {kind} baseline beats the winner: {span}"
    return f"not significant: {span} includes 0 -- the winner and the {kind} baseline cannot be told apart"


def decide(ledger: Ledger, plan: Plan, budget: int, noise: list[Noise], surrogate: GPSurrogate | None) -> Decision:
    """The decision at the highest rung any strategy network reached (normally the top)."""
    reached = [r for r in range(plan.ladder.top + 1) if ledger.at(r, role=SEARCH)]
    rung = max(reached) if reached else plan.ladder.top
    name = plan.ladder.rungs[rung].name
    candidates = [n for n in ledger.networks(rung, name).values() if n.macs <= budget]
    over_latency = tuple(n for n in candidates if n.over_latency)
    candidates = [n for n in candidates if not n.over_latency]
    if surrogate is not None and candidates:
        mean, std = surrogate.predict([n.config for n in candidates], rung=rung)
        candidates = [dataclasses.replace(n, posterior_mean=float(m), posterior_std=float(d))
                      for n, m, d in zip(candidates, mean, std)]
    ranked = by_estimate(candidates)
    winner = ranked[0] if ranked else None
    margins = tuple(_margin(kind, winner, ledger, plan, rung, name, noise) for kind in KINDS)
    return Decision(rung, name, rung == plan.ladder.top, winner, margins, noise[rung], tuple(ranked), over_latency)


def _baseline_config(kind: str, ledger: Ledger, plan: Plan) -> ArchConfig | None:
    b = plan.baselines
    if kind == "width":
        return b.width.config if b.width else None
    if kind == "compound":
        return b.compound.config if b.compound else None
    return plan.best_width_resolution(ledger, 0)


def _rule(kind: str, plan: Plan, config: ArchConfig | None) -> str:
    b = plan.baselines
    if kind == "width_resolution":
        chosen = next((c for c in b.width_resolution if config and c.config.network_key() == config.network_key()), None)
        pool = ", ".join(c.config.id for c in b.width_resolution)
        return (f"the most accurate at rung 0 of {len(b.width_resolution)} candidates ({pool})"
                + (f"; chosen: {chosen.rule}" if chosen else ""))
    found = b.width if kind == "width" else b.compound
    return found.rule if found else ""


def _margin(kind: str, winner: Network | None, ledger: Ledger, plan: Plan, rung: int, name: str,
            noise: list[Noise]) -> Margin:
    if kind in plan.baselines.impossible:
        return Margin(kind, None, None, None, None, f"no {kind} baseline at this budget: {plan.baselines.impossible[kind]}")
    config = _baseline_config(kind, ledger, plan)
    rule = _rule(kind, plan, config)
    base = ledger.network(config, rung, name) if config is not None else None
    if base is None:
        return Margin(kind, None, None, None, None, f"the {kind} baseline was not trained at rung {rung} ({name})",
                      rule=rule)
    if winner is None:
        return Margin(kind, base, None, None, None, "no winner to compare", rule=rule)
    if winner.config.network_key() == base.config.network_key():
        return Margin(kind, base, 0.0, (0.0, 0.0), False, f"the winner is the {kind} baseline itself", rule=rule)
    diff, interval, _ = margin(winner, base, noise[rung].std, noise[rung].bias)
    said = words(kind, diff, interval)
    if base.over_latency:
        said += f" (the {kind} baseline was measured over the latency budget: {base.latency['latency_ms']:.2f} ms)"
    by_rung = {}
    for r in range(plan.ladder.top + 1):
        networks = ledger.networks(r, plan.ladder.rungs[r].name)
        w, b = networks.get(winner.config.network_key()), networks.get(base.config.network_key())
        if r != rung and w and b:
            by_rung[r] = w.mean - b.mean
    return Margin(kind, base, diff, interval, interval[0] > 0 or interval[1] < 0, said,
                  by_rung, rule)
