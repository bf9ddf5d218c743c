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
* **At a deciding rung** (``Ladder.finalists``) the networks were all trained afresh on the same images and
  scored on the same validation images, so the evidence there decides directly (``selection``): the winner
  is the most accurate there (each score moved by the rung's measured resolution shift against the fidelity
  its bias is about: half side hides what resolution buys), every network gets P(best) from posterior draws
  over seeds and validation images, and the margins' intervals are simultaneous over every comparison any
  winner could have been given, so choosing the winner after the scores does not narrow them. A winner with
  P(best) below ``CLEAR_P`` is said not to be clearly first.
* **Unknown noise or bias.** A rung whose noise nobody measured withholds significance; a rung whose bias
  against a higher fidelity is unmeasured makes no claim beyond itself, and says so.
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
from ..latency.budget import LatencyLimit
from ..latency.trial import checked
from ..model.config import ArchConfig
from ..search.baselines import KINDS
from ..search.jobs import SEARCH, Ledger, Plan
from ..search.networks import Network, by_estimate
from ..search.noise import Z95, Noise
from .selection import by_point, draw, point_estimate

CLEAR_P = 0.5  # below this P(best) the winner is "the most likely best", not a clear one


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
class Comparison:
    """At a deciding rung: one deciding network against one baseline network, its interval simultaneous over
    every comparison of the verdict (what a calibration checks against a higher fidelity)."""

    network: Network
    baseline: Network
    margin: float
    interval: tuple[float, float]


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
    p_best: tuple[float, ...] = ()  # at a deciding rung: P(best) of each network of ``ranked``
    intervals: str = "each margin's own 95 % interval"  # how the margins' intervals were made
    comparisons: tuple[Comparison, ...] = ()  # at a deciding rung: every one the intervals are simultaneous over

    def where(self) -> dict[str, Any]:
        """Where and how the verdict was taken, as ``summary.json`` and the export record say it."""
        return {"rung": self.rung, "fidelity": self.fidelity, "reached_top": self.reached_top,
                "tied_with_winner": self.tied, "deciding_rung": bool(self.p_best), "clear": self.clear,
                "intervals": self.intervals, "moved_to": self.moved_to}

    @property
    def moved_to(self) -> str | None:
        """At a deciding rung whose bias has a resolution shift: the fidelity its point estimates are moved to."""
        return self.noise.bias.against if self.p_best and self.noise.moves else None

    def estimate(self, network: Network) -> float:
        """A network's point estimate in this verdict: its mean score, moved by the resolution shift if any."""
        return point_estimate(network, self.noise) if self.moved_to else network.mean

    @property
    def clear(self) -> bool | None:
        """At a deciding rung: whether the evidence puts the winner first (P(best) >= ``CLEAR_P``)."""
        return self.p_best[0] >= CLEAR_P if self.p_best else None

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
    limit = plan.baselines.latency
    candidates = [within_limit(n, limit) for n in ledger.networks(rung, name).values() if n.macs <= budget]
    over_latency = tuple(n for n in candidates if n.over_latency)
    candidates = [n for n in candidates if not n.over_latency]
    if plan.ladder.deciding and rung == plan.ladder.top and candidates:
        return _decide_on_draws(ledger, plan, rung, name, noise, candidates, over_latency)
    if surrogate is not None and candidates:
        mean, std = surrogate.predict([n.config for n in candidates], rung=rung)
        candidates = [dataclasses.replace(n, posterior_mean=float(m), posterior_std=float(d))
                      for n, m, d in zip(candidates, mean, std)]
    ranked = by_estimate(candidates)
    winner = ranked[0] if ranked else None
    margins = tuple(_margin(kind, winner, ledger, plan, rung, name, noise) for kind in KINDS)
    return Decision(rung, name, rung == plan.ladder.top, winner, margins, noise[rung], tuple(ranked), over_latency)


def within_limit(network: Network | None, limit: LatencyLimit | None) -> Network | None:
    """``network`` with its measured latency checked against this budget's latency limit: a family's members
    each have their own (``run --latency-budget 5ms,8ms``), and a trial was checked against the loosest."""
    if network is None or limit is None or not network.latency or "latency_ms" not in network.latency:
        return network
    return dataclasses.replace(network, latency=checked(network.latency, limit.budget_s))


def _decide_on_draws(ledger: Ledger, plan: Plan, rung: int, name: str, noise: list[Noise],
                     candidates: list[Network], over_latency: tuple[Network, ...]) -> Decision:
    """The verdict of a deciding rung: ranked by score there (moved by its resolution shift), P(best) and
    simultaneous margins from draws."""
    ranked = by_point(candidates, noise[rung])
    bases = {kind: ledger.network(config, rung, name) for kind in KINDS if kind not in plan.baselines.impossible
             and (config := _baseline_config(kind, ledger, plan)) is not None}
    bases = {k: within_limit(b, plan.baselines.latency) for k, b in bases.items() if b is not None}
    distinct = list({b.config.network_key(): b for b in bases.values()}.values())  # one baseline may serve two kinds
    extra = [b for b in distinct if b.over_latency]  # compared, never the winner
    draws = draw(ranked + extra, noise[rung], seed=plan.seed)
    index = {n.config.network_key(): i for i, n in enumerate(draws.networks)}
    pairs = [(i, index[b.config.network_key()]) for i in range(len(ranked)) for b in distinct
             if index[b.config.network_key()] != i]
    found = draws.simultaneous(pairs)
    p_best = draws.p_best(range(len(ranked)))
    winner = ranked[0]
    margins = tuple(_margin(kind, winner, ledger, plan, rung, name, noise,
                            found.get((0, index[bases[kind].config.network_key()])) if kind in bases else None)
                    for kind in KINDS)
    how = (f"simultaneous over the {len(pairs)} comparisons of any of the {len(ranked)} deciding networks with a "
           "baseline (max-|t| over posterior draws of seeds and validation images), so they count the winner "
           "having been chosen")
    comparisons = tuple(Comparison(draws.networks[i], draws.networks[j], *found[(i, j)][:2]) for i, j in pairs)
    return Decision(rung, name, True, winner, margins, noise[rung], tuple(ranked), over_latency,
                    tuple(float(p) for p in p_best), how, comparisons)


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
            noise: list[Noise], drawn: tuple | None = None) -> Margin:
    """The winner against the ``kind`` baseline; ``drawn``: (margin, interval, se) from a deciding rung's draws."""
    if kind in plan.baselines.impossible:
        return Margin(kind, None, None, None, None, f"no {kind} baseline at this budget: {plan.baselines.impossible[kind]}")
    config = _baseline_config(kind, ledger, plan)
    rule = _rule(kind, plan, config)
    base = within_limit(ledger.network(config, rung, name), plan.baselines.latency) if config is not None else None
    if base is None:
        return Margin(kind, None, None, None, None, f"the {kind} baseline was not trained at rung {rung} ({name})",
                      rule=rule)
    if winner is None:
        return Margin(kind, base, None, None, None, "no winner to compare", rule=rule)
    if winner.config.network_key() == base.config.network_key():
        return Margin(kind, base, 0.0, (0.0, 0.0), False, f"the winner is the {kind} baseline itself", rule=rule)
    diff, interval, _ = drawn if drawn is not None else margin(winner, base, noise[rung].std, noise[rung].bias_std)
    significant: bool | None = interval[0] > 0 or interval[1] < 0
    said = words(kind, diff, interval)
    if not noise[rung].known:
        significant = None
        said = (f"significance withheld: the noise of {name} was never measured ({100 * diff:+.2f} points, "
                f"interval [{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}] with an assumed noise)")
    elif noise[rung].bias is not None and not noise[rung].bias.known:
        said += f" -- at {name}; its bias against {noise[rung].bias.against} is unmeasured: no claim beyond it"
    elif noise[rung].bias is not None and rung == plan.ladder.top:
        said += f" -- about {noise[rung].bias.against}: {name}'s measured bias against it is counted"
        if noise[rung].moves:
            said += (f", each network moved by {100 * noise[rung].bias.slope:+.2f} points per doubling of its "
                     "resolution")
    if base.over_latency:
        said += f" (the {kind} baseline was measured over the latency budget: {base.latency['latency_ms']:.2f} ms)"
    by_rung = {}
    for r in range(plan.ladder.top + 1):
        networks = ledger.networks(r, plan.ladder.rungs[r].name)
        w, b = networks.get(winner.config.network_key()), networks.get(base.config.network_key())
        if r != rung and w and b:
            by_rung[r] = w.mean - b.mean
    return Margin(kind, base, diff, interval, significant, said, by_rung, rule)
