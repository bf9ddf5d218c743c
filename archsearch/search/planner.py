"""Planning to a time budget: how many networks to screen so that the deciding rung still fits.

A job's cost is ``seconds_per_unit * units + overhead``, where units are the MACs of one image at the trained
side, plus the fixed work of an image that does not shrink with the side (``PASS_MACS``: augmentation and the
per-layer cost of small feature maps, in MAC-equivalents), times the images it processes (three passes' worth
for each training image: forward and backward, one for each validation image). Both prior figures were fitted
on this 2-core CPU's jobs at half and at full side; the run calibrates the rate on its own finished jobs
(``CostModel.calibrated``) and re-plans as they finish (``TimePlanner.replan``): the whole plan's predicted
time, plus the time the clock shows beyond what its finished jobs were predicted to take, must fit the budget.

The deciding rung is reserved first: the baselines' screening and deciding jobs and the finalists (at a
typical cost of the networks the strategy proposes: near the budget). Whatever is left screens proposals,
each costing its rung-0 job plus its share of the promotions. Where not even the deciding rung and the
minimum screen fit, the plan drops the deciding rung and only screens, and says so; where not even one
screening job fits, the budget is refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from ..model.config import ArchConfig, ConfigError
from ..model.cost import closed_form_cost
from ..train.data import image_counts
from ..train.recipe import Profile, train_resolution
from .fidelity import Ladder
from .jobs import Job, Ledger, Plan
from .noise import bias_target, rung_bias, rung_noise

# Fitted on the jobs of the rung tables and of the full-side deciding candidates (benchmarks/*.csv: one torch
# thread each, two jobs on two cores): a job's wall time less the overhead, per unit; benchmarks/RESULTS.md, "A
# verdict worth its CPU, part 4". Without PASS_MACS a full-side job costs half as much per MAC as a half-side one.
PRIOR_SECONDS_PER_UNIT = 4.26e-11
PASS_MACS = 71e6
# A job inside a run (the data already loaded): the median 1.2 s between a trial's start and its training's (the
# proposal); the training's own fixed part fits as 0 on seed 1's 61 jobs. At 15 s (a job in its own process,
# below) the rate calibrated on 25-s screening jobs was 3x too low and predicted the deciding rung at 0.40x
# its 16 minutes (benchmarks/RESULTS.md, "The scaling-law explorer, part 2").
OVERHEAD_S = 1.0
STANDALONE_OVERHEAD_S = 15.0  # a job in its own process (start, data scan), as the prior's tables were timed
MIN_SCREEN = 4  # proposals below which a screen says nothing (the GP's initial design)
MAX_TRIALS = 60
# Share of validation images on which two networks at the reference disagree (hit vs miss): mean over the 132
# same-seed pairs of benchmarks/holds_300M.csv (0.16-0.24); the paired validation error of a margin.
DISAGREEMENT = 0.19
# Root-mean-square doublings of resolution between two deciding networks: the 36 pairs of the 9 calibrated
# networks of the default runs (128-320 px; benchmarks/calibrate_300M_truth.csv); a resolution shift's error in
# a typical margin is its slope's standard error times this.
RESOLUTION_SPREAD = 0.77
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'20m', '2h', '1h30m', '90s' or '45' (minutes) -> seconds; anything else is one line of ConfigError."""
    raw = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw):
        raw += "m"
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)([smhd])", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ConfigError(f"--time-budget: {text!r} is not a duration; write e.g. 45m, 2h, 1h30m or 90s")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--time-budget: {text!r} is not a positive duration")
    return seconds


@dataclass(frozen=True)
class DataSize:
    """Images per class of each split (what a profile's per-class caps apply to)."""

    train: tuple[int, ...]
    val: tuple[int, ...]

    @classmethod
    def scan(cls, root: str | Path) -> DataSize:
        return cls(*image_counts(root))

    def images(self, profile: Profile) -> tuple[int, int]:
        """(training images, validation images) a profile uses."""
        def capped(counts: tuple[int, ...], cap: int | None) -> int:
            return sum(min(c, cap) if cap else c for c in counts)
        return capped(self.train, profile.train_per_class), capped(self.val, profile.val_per_class)


def trained_macs(config: ArchConfig, macs: int, profile: Profile) -> float:
    """A network's MACs an image (``macs``, at its resolution) at the side ``profile`` trains it at."""
    side = train_resolution(config, profile.resolution_scale)
    return macs * (side / config.resolution) ** 2


def image_passes(profile: Profile, data: DataSize, from_epoch: int = 0) -> int:
    """Three passes per training image per epoch (forward and backward) plus one per validation image;
    ``from_epoch``: a continued job trains only the epochs after it."""
    train, val = data.images(profile)
    return 3 * train * (profile.last_epoch - from_epoch) + val


@dataclass(frozen=True)
class CostModel:
    """Seconds of one job from its units of work."""

    seconds_per_unit: float = PRIOR_SECONDS_PER_UNIT
    overhead_s: float = OVERHEAD_S
    jobs: int = 0  # finished jobs it was calibrated on (0: the prior)
    pass_macs: float = PASS_MACS  # MAC-equivalents of an image pass's fixed work

    def units(self, config: ArchConfig, macs: int, profile: Profile, data: DataSize, from_epoch: int = 0) -> float:
        """(MACs at the trained side + ``pass_macs``) times the job's image passes."""
        return (trained_macs(config, macs, profile) + self.pass_macs) * image_passes(profile, data, from_epoch)

    @classmethod
    def prior(cls, threads: int) -> CostModel:
        """The prior for a job on ``threads`` torch threads: the one-thread rate spread over them, 20 % lost to
        their synchronisation (assumed; the run's first jobs calibrate it)."""
        return cls(seconds_per_unit=PRIOR_SECONDS_PER_UNIT * 1.2 / max(1, threads) if threads > 1
                   else PRIOR_SECONDS_PER_UNIT)

    @property
    def source(self) -> str:
        return (f"calibrated on {self.jobs} finished job(s)" if self.jobs else
                "the prior rate for a 2-core CPU, until the first jobs finish")

    def seconds(self, units: float) -> float:
        return self.seconds_per_unit * units + self.overhead_s

    def calibrated(self, done: Sequence[tuple[float, float]]) -> CostModel:
        """Refit the rate on finished jobs' (units, wall seconds): total time over total units, the overhead
        kept (a ratio estimator: the long jobs that dominate the plan dominate the rate)."""
        if not done:
            return self
        units = sum(u for u, _ in done)
        wall = sum(max(0.0, w - self.overhead_s) for _, w in done)
        return dataclasses.replace(self, seconds_per_unit=wall / units if units else self.seconds_per_unit,
                                   jobs=len(done))


@dataclass(frozen=True)
class TimePlan:
    """What fits: the proposals to screen, the ladder (with or without its deciding rung) and the expected times."""

    trials: int
    ladder: Ladder
    screen_s: float
    decide_s: float
    words: str

    @property
    def total_s(self) -> float:
        return self.screen_s + self.decide_s


def plan_time(budget_s: float, ladder: Ladder, plan: Plan, typical: Sequence[tuple[ArchConfig, int]],
              data: DataSize, cost: CostModel, lost_s: float = 0.0, proposed: int = 0) -> TimePlan:
    """The most proposals (``proposed`` already made) whose whole plan, with the deciding rung reserved, fits
    ``budget_s`` less ``lost_s`` (time the run spent beyond its finished jobs' predicted cost); fewer finalists
    or repeats, then no deciding rung, where it does not fit. ``typical``: what a proposal costs at each of the
    plan's budgets (``typical_networks``)."""
    left = budget_s - lost_s
    least = min_screen(plan)
    options = [ladder]
    if ladder.deciding:
        options += [dataclasses.replace(ladder, repeats=0), dataclasses.replace(ladder, finalists=1, repeats=0),
                    screen_only(ladder)]
    for option in dict.fromkeys(options):
        fixed = _fixed_s(option, plan, typical, data, cost)
        per = _per_proposal_s(option, typical, data, cost)
        trials = min(MAX_TRIALS, max(proposed, math.floor((left - fixed) / per)) if per > 0 else MAX_TRIALS)
        if trials >= max(least, proposed) and fixed + per * trials <= left:
            decide = _deciding_s(option, plan, typical, data, cost)
            what = (f"deciding rung {option.rungs[-1].name}: {option.finalists} finalist(s) and the baselines, "
                    f"{option.repeats} repeat(s)" if option.deciding else "no deciding rung: a screen only")
            return TimePlan(trials, option, fixed - decide + per * trials, decide,
                            f"{trials} proposals screened; {what}")
    raise ConfigError(f"--time-budget: {_duration(budget_s)} is shorter than a screen of {least} networks "
                      f"on this machine (about {_per_proposal_s(screen_only(ladder), typical, data, cost) / 60:.1f} "
                      "min a network); give more time")


def min_screen(plan: Plan) -> int:
    """Proposals below which a screen says nothing: the GP's initial design, and one for each budget."""
    return max(MIN_SCREEN, len(plan.members))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def screen_only(ladder: Ladder) -> Ladder:
    """The ladder without its deciding rung (a budget too short for a verdict only screens)."""
    if not ladder.deciding:
        return ladder
    return dataclasses.replace(ladder, rungs=ladder.rungs[:-1], finalists=0, repeats=0)


def _start_epoch(ladder: Ladder, rung: int) -> int:
    """The epoch a job at ``rung`` starts from: where the rung below stopped, if this rung continues it."""
    return ladder.rungs[rung - 1].last_epoch if rung and ladder.continues(rung - 1) else 0


def _job_s(config: ArchConfig, macs: int, ladder: Ladder, rung: int, data: DataSize, cost: CostModel) -> float:
    return cost.seconds(cost.units(config, macs, ladder.rungs[rung], data, _start_epoch(ladder, rung)))


def _per_proposal_s(ladder: Ladder, typical: Sequence[tuple[ArchConfig, int]], data: DataSize,
                    cost: CostModel) -> float:
    """A proposal's rung-0 job and its expected share of the promotions below a deciding rung (a family's
    proposals take its budgets in turn: the mean over them)."""
    screening = ladder.top if ladder.deciding else ladder.top + 1
    total = 0.0
    for config, macs in typical:
        share = 1.0
        for rung in range(screening):
            seeds = ladder.top_seeds if rung == ladder.top else 1
            total += share * _job_s(config, macs, ladder, rung, data, cost) * seeds / len(typical)
            share *= ladder.promote
    return total


def _deciding_s(ladder: Ladder, plan: Plan, typical: Sequence[tuple[ArchConfig, int]], data: DataSize,
                cost: CostModel) -> float:
    """Each budget's baselines (each network once) and finalists (at that budget's typical cost) at the top."""
    if not ladder.deciding:
        return 0.0
    top = ladder.top
    baselines: dict[tuple, tuple[ArchConfig, int]] = {}
    for member in plan.members:
        b = member.baselines
        found = [c for c in (b.width, b.compound) if c is not None] + list(b.width_resolution[:1])
        baselines.update({c.config.network_key(): (c.config, c.macs) for c in found})
    jobs = [(c, m, ladder.top_seeds) for c, m in baselines.values()]
    jobs += [(config, macs, ladder.top_seeds + (1 if i < ladder.repeats else 0))
             for config, macs in typical for i in range(ladder.finalists)]
    return sum(n * _job_s(c, m, ladder, top, data, cost) for c, m, n in jobs)


def _fixed_s(ladder: Ladder, plan: Plan, typical: Sequence[tuple[ArchConfig, int]], data: DataSize,
             cost: CostModel) -> float:
    """The jobs every plan of this ladder trains whatever the proposals: the baselines' screening (every
    budget's, each network once) and the deciding rung."""
    screened: dict[tuple, tuple[ArchConfig, int]] = {}
    for member in plan.members:
        b = member.baselines
        found = list(b.width_resolution) + ([b.compound] if ladder.deciding and b.compound is not None else [])
        screened.update({c.config.network_key(): (c.config, c.macs) for c in found})
    return (sum(_job_s(c, m, ladder, 0, data, cost) for c, m in screened.values())
            + _deciding_s(ladder, plan, typical, data, cost))


def typical_networks(configs: Sequence[ArchConfig], macs: Sequence[int],
                     budgets: Sequence[int]) -> tuple[tuple[ArchConfig, int], ...]:
    """What a proposal is expected to cost at each budget: the network within it at the 75th percentile of
    MACs (the strategy proposes near the budget)."""
    out = []
    for budget in budgets:
        order = sorted((i for i in range(len(configs)) if macs[i] <= budget), key=lambda i: macs[i])
        i = order[min(len(order) - 1, int(0.75 * len(order)))]
        out.append((configs[i], macs[i]))
    return tuple(out)


def expected_half_width(ladder: Ladder, data: DataSize, data_tag: str) -> tuple[float, int, str | None]:
    """(half-width in accuracy, comparisons, the fidelity a counted bias is against or None): what a margin's
    simultaneous 95 % interval at the deciding rung is expected to be, from the rung's noise prior, its seeds,
    its bias prior where one was measured (with its resolution shift's error), and the paired validation error
    (Bonferroni over the comparisons, with the Student-t of the noise's degrees of freedom and the study's
    repeats: an upper bound on the max-|t| intervals the verdict computes)."""
    top = ladder.rungs[-1]
    noise = rung_noise(top, [], data_tag)
    bias = rung_bias(top, bias_target(top), [], noise.std, data_tag)  # counted where a prior was measured
    _, val = data.images(top)
    networks = ladder.finalists + 3
    comparisons = networks * 3 - 3
    slope = bias.slope_se * RESOLUTION_SPREAD  # the resolution shift's error in a typical margin
    se = math.sqrt(2 * noise.std**2 / ladder.top_seeds + 2 * (bias.std or 0.0) ** 2 + slope**2
                   + DISAGREEMENT / max(1, val))
    df = noise.df + ladder.repeats
    quantile = stats.norm.ppf if math.isinf(df) else lambda q: stats.t.ppf(q, df)
    return float(quantile(1 - 0.025 / comparisons)) * se, comparisons, bias.against if bias.known else None


def expected_width_line(ladder: Ladder, data: DataSize, data_tag: str) -> str:
    half, comparisons, against = expected_half_width(ladder, data, data_tag)
    priors = f"noise and bias (against {against}) priors" if against else "noise prior"
    return (f"expected margin interval at {ladder.rungs[-1].name}: about +/-{100 * half:.1f} points (simultaneous "
            f"over {comparisons} comparisons; {priors} and {DISAGREEMENT:.0%} disagreeing validation images)")


def time_clock():
    """Seconds since this call: the run's clock."""
    start = time.monotonic()
    return lambda: time.monotonic() - start


class TimePlanner:
    """Re-plans a run as its jobs finish: the cost model calibrated on them, the proposals left to fit the time
    left. ``clock``: seconds since the run began (scripted in tests)."""

    def __init__(self, budget_s: float, plan: Plan, typical: Sequence[tuple[ArchConfig, int]], data: DataSize,
                 clock, cost: CostModel | None = None):
        self.budget_s, self.plan, self.typical, self.data, self.clock = budget_s, plan, typical, data, clock
        self.cost = cost or CostModel()
        self.first = plan_time(budget_s, plan.ladder, plan, typical, data, self.cost)
        self.plan = dataclasses.replace(plan, ladder=self.first.ladder, trials=self.first.trials)
        self.earlier: set[int] | None = None  # jobs done before this run (a resumed study's): not on its clock

    def replan(self, ledger: Ledger) -> Plan:
        """The plan with as many proposals as the time left allows (never fewer than already made); the ladder
        is the one planned at the start (the study's settings fix it). A deciding ladder screens at least
        ``MIN_SCREEN`` proposals even where that overruns the budget: its finalists are the screen's best, and a
        deciding rung of baselines alone would decide nothing the search found.

        The time left is the budget less the whole plan's predicted time and less what the clock shows beyond
        this run's finished jobs' predicted time (proposals, the job in flight, a slower machine than
        calibrated). Where the jobs take what was predicted, the plan keeps its size as they finish."""
        ladder = self.plan.ladder
        finished = [e for e in ledger.entries if e.state == "done" and e.record.get("wall_s") and not e.cached]
        if self.earlier is None:
            self.earlier = {e.number for e in finished}
        units = [self.cost.units(e.job.config, e.macs, ladder.rungs[e.job.rung], self.data,
                                 _start_epoch(ladder, e.job.rung)) for e in finished]
        self.cost = self.cost.calibrated([(u, float(e.record["wall_s"])) for u, e in zip(units, finished)])
        lost = self.clock() - sum(self.cost.seconds(u) for u, e in zip(units, finished)
                                  if e.number not in self.earlier)
        proposed = len(ledger.search_networks(0))
        try:
            again = plan_time(self.budget_s, self.plan.ladder, self.plan, self.typical, self.data, self.cost,
                              lost, proposed)
            trials = again.trials if again.ladder == self.plan.ladder else proposed
        except ConfigError:
            trials = proposed
        floor = max(proposed, min_screen(self.plan) if ladder.deciding else 0)
        return dataclasses.replace(self.plan, trials=max(floor, min(trials, MAX_TRIALS)))

    def fits(self, jobs: Sequence[Job]) -> bool:
        """Whether ``jobs`` (after the plan's, e.g. a held-out budget's check) still fit the time left, at the
        calibrated rate."""
        ladder = self.plan.ladder
        needed = sum(_job_s(j.config, closed_form_cost(j.config).macs, ladder, j.rung, self.data, self.cost)
                     for j in jobs)
        return self.clock() + needed <= self.budget_s
