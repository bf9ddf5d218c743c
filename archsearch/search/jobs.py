"""Jobs and the plan: what a study still has to train, rung by rung, read from the study alone.

A job is one training: a network at a rung with a seed. Every job is an Optuna trial whose user attributes
say which job it is (``Job.attrs``), so any worker on any machine reads the same ``Ledger`` from the storage
and the same ``Plan`` tells it what is due next:

1. the baselines' rung-0 jobs (the width x resolution candidates, of which the best is taken to the top;
   with one rung, every baseline at every top seed);
2. rung-0 proposals of the strategy, until ``trials`` distinct networks are taken;
3. once a rung is complete, the best ``ladder.promote`` fraction of its search networks (by their mean score
   there) at the next rung -- at every top seed when the next rung is the top; into a deciding rung
   (``Ladder.finalists``), the finalists instead: the best screened networks by the GP's posterior
   (``finalists``), retrained there from scratch, the first ``Ladder.repeats`` of them at one seed more;
4. at the top rung: the three baselines (the width x resolution one: its best candidate at rung 0), and, with
   one rung, the best ``promote`` fraction of the search networks again at the other top seeds.

Where the next rung continues a rung's schedule (``Ladder.continues``), a promoted job resumes from the
checkpoint its lower-rung job left; ``Plan.disposable`` says which checkpoints no job will read again.
A job already done, running, queued or failed (diverged) is never due again; two workers that pick the same
due job at once both create it, and the later trial gives way (``loop``). Nothing here talks to Optuna
beyond reading frozen trials.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from ..model.config import ArchConfig
from ..model.cost import closed_form_cost
from ..model.space import FactorSpace
from ..train.record import decode_hits
from .baselines import Baselines
from .fidelity import Ladder
from .finalists import choose_finalists
from .networks import Network, by_score
from .noise import PRIOR_DATA, Noise, bias_target, rung_bias, rung_noise

SEARCH, BASELINE = "search", "baseline"


@dataclass(frozen=True)
class Job:
    config: ArchConfig
    rung: int
    seed: int
    role: str = SEARCH  # what created it: the strategy (search) or a baseline rule
    kinds: tuple[str, ...] = ()  # the baseline kinds it serves

    @property
    def key(self) -> tuple:
        """The network actually trained, at this rung and seed: what is never trained twice."""
        return (self.config.network_key(), self.rung, self.seed)

    def attrs(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "config_id": self.config.id, "rung": self.rung,
                "seed": self.seed, "role": self.role, "baseline_kinds": list(self.kinds)}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Job | None:
        if not {"config", "rung", "seed"} <= attrs.keys():
            return None  # no job, or another worker is still writing its attributes one by one
        return cls(ArchConfig.from_dict(attrs["config"]), int(attrs["rung"]), int(attrs["seed"]),
                   attrs.get("role", SEARCH), tuple(attrs.get("baseline_kinds", ())))


@dataclass(frozen=True)
class Proposal:
    """Due: a new rung-0 config from the strategy."""


@dataclass(frozen=True)
class Wait:
    """Nothing is due, but jobs are running (or queued) whose results decide what comes next."""

    reason: str


@dataclass(frozen=True)
class Done:
    """Everything the plan asks for is done (or failed)."""


@dataclass(frozen=True)
class Entry:
    """One trial seen as a job: what every reader of a study takes a trained job to be."""

    job: Job
    number: int
    state: str  # "done" | "failed" | "running" | "queued"
    accuracy: float | None
    macs: int
    params: int | None = None
    record: dict[str, Any] = field(default_factory=dict)  # what the evaluator returned (``train.record``)
    latency: dict[str, Any] | None = None  # measured after training (``latency.trial``), or None
    cached: bool = False  # its record came from the result cache
    strategy: str | None = None  # the strategy that proposed it, where the trial says (else the study's)

    @property
    def trained_resolution(self) -> int | None:
        """The side it was trained and scored at (the rung scales the config's)."""
        return self.record.get("resolution")

    def to_dict(self) -> dict[str, Any]:
        """As ``summary.json`` stores it: config, cost, rung, seed, accuracy and how it was measured."""
        r = self.record
        return {"trial": self.number, "role": self.job.role, "baseline_kinds": list(self.job.kinds),
                "rung": self.job.rung, "seed": self.job.seed, "config": self.job.config.to_dict(),
                "config_id": self.job.config.id, "macs": self.macs, "accuracy": self.accuracy, "top5": r.get("top5"),
                "fidelity": r.get("fidelity", {}).get("name"), "trained_resolution": self.trained_resolution,
                "wall_s": r.get("wall_s"), "data": r.get("dataset"), "latency": self.latency,
                "weights": r.get("weights")}


def _state(trial: FrozenTrial) -> str | None:
    if trial.state == TrialState.COMPLETE and "accuracy" in trial.user_attrs:
        return "done"
    if trial.state == TrialState.FAIL and trial.user_attrs.get("failure"):
        return "failed"  # diverged: a result, not an accident
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "queued"
    return None  # pruned (given way, over budget), or failed by an interruption (queued again)


class Ledger:
    """Every job of a study, by state."""

    def __init__(self, trials: Iterable[FrozenTrial]):
        self.entries: list[Entry] = []
        for t in trials:
            state = _state(t)
            job = Job.from_attrs(t.user_attrs)
            if state is None or job is None:
                continue
            attrs = t.user_attrs
            self.entries.append(Entry(job, t.number, state, attrs.get("accuracy"),
                                      attrs.get("macs") or closed_form_cost(job.config).macs, attrs.get("params"),
                                      attrs.get("record", {}), attrs.get("latency"), bool(attrs.get("cached")),
                                      attrs.get("strategy")))

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Ledger:
        """A ledger of given entries (e.g. rescored: ``results.quantized``)."""
        ledger = cls(())
        ledger.entries = list(entries)
        return ledger

    def taken(self) -> set[tuple]:
        return {e.job.key for e in self.entries}

    def at(self, rung: int, states: tuple[str, ...] = ("done",), role: str | None = None) -> list[Entry]:
        return [e for e in self.entries if e.job.rung == rung and e.state in states
                and (role is None or e.job.role == role)]

    def busy(self) -> list[Entry]:
        return [e for e in self.entries if e.state in ("running", "queued")]

    def search_networks(self, rung: int = 0, states: tuple[str, ...] = ("done", "failed", "running", "queued")
                        ) -> dict[tuple, ArchConfig]:
        """Distinct networks the strategy put at ``rung``, in trial order."""
        out: dict[tuple, ArchConfig] = {}
        for e in sorted(self.at(rung, states, SEARCH), key=lambda e: e.number):
            out.setdefault(e.job.config.network_key(), e.job.config)
        return out

    def networks(self, rung: int, fidelity: str) -> dict[tuple, Network]:
        """Every network done at ``rung`` (``fidelity``: its profile's name), by network, in the order first
        trained; a seed counts once (its first job)."""
        by_network: dict[tuple, dict[int, Entry]] = {}
        for e in sorted(self.at(rung), key=lambda e: e.number):
            by_network.setdefault(e.job.config.network_key(), {}).setdefault(e.job.seed, e)
        timed: dict[tuple, dict[str, Any]] = {}  # the first latency measured, at any rung: untrained weights time alike
        for e in self.entries:
            if e.latency and "latency_ms" in e.latency:
                timed.setdefault(e.job.config.network_key(), e.latency)
        return {key: _network([by_seed[s] for s in sorted(by_seed)], rung, fidelity, timed.get(key))
                for key, by_seed in by_network.items()}

    def network(self, config: ArchConfig, rung: int, fidelity: str) -> Network | None:
        """``config``'s network at ``rung``, or None if it was not trained there."""
        return self.networks(rung, fidelity).get(config.network_key())


def _network(jobs: list[Entry], rung: int, fidelity: str, latency: dict[str, Any] | None) -> Network:
    """A network from its jobs at one rung, one per seed in seed order (config, cost and resolution: the first's)."""
    hits = {e.job.seed: decode_hits(e.record["val_correct"], int(e.record["val_images"])) for e in jobs
            if e.record.get("val_correct") and e.record.get("val_images")}
    first = jobs[0]
    return Network(first.job.config, first.macs, rung, fidelity, first.trained_resolution,
                   tuple(e.job.seed for e in jobs), tuple(e.accuracy for e in jobs), tuple(e.number for e in jobs),
                   hits, latency)


@dataclass(frozen=True)
class Plan:
    """What a study trains: ``trials`` rung-0 proposals, promotions up the ladder, the baselines."""

    ladder: Ladder
    trials: int
    baselines: Baselines
    seed: int  # the study's seed: the first seed of every job; repeats use seed + 1, seed + 2, ...
    space: FactorSpace | None = None  # the GP's space, to choose the finalists of a deciding rung
    data: str = PRIOR_DATA  # the study's data, for the noise its finalists' GP weighs scores by

    @property
    def top_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.ladder.top_seeds)]

    @property
    def members(self) -> tuple[Plan, ...]:
        """The plan of each MAC budget the study decides at, cheapest first: this plan alone, or a family's
        (``search.family.FamilyPlan``)."""
        return (self,)

    def _fits(self, macs: int) -> bool:
        return macs <= self.baselines.budget

    def next(self, ledger: Ledger) -> Job | Proposal | Wait | Done:
        taken = ledger.taken()
        for job in self._baseline_screening():
            if job.key not in taken:
                return job
        if len(ledger.search_networks(0)) < self.trials:
            return Proposal()
        for job in self._fixed_top_baselines():  # need no rung's result: due at once
            if job.key not in taken:
                return job
        for rung in range(self.ladder.top):
            blocked = self._incomplete(ledger, rung)
            if blocked:
                return Wait(blocked)
            for job in self._promotions(ledger, rung):
                if job.key not in taken:
                    return job
        blocked = self._incomplete(ledger, self.ladder.top, top=True)
        if blocked and self.ladder.top == 0:
            return Wait(blocked)  # the best candidates for repeats and the baselines' choice need every score
        for job in self._top_jobs(ledger):
            if job.key not in taken:
                return job
        busy = ledger.busy()
        return Wait(f"{len(busy)} job(s) running or queued") if busy else Done()

    # ---- the pieces -------------------------------------------------------------------------------------
    def _baseline_screening(self) -> list[Job]:
        """Rung-0 jobs of the baselines: with several rungs, the width x resolution candidates (the width
        baseline is one of them); with one rung, every baseline at every top seed."""
        b = self.baselines
        if self.ladder.top > 0:
            configs = [c.config for c in b.width_resolution]
            if self.ladder.deciding and b.compound is not None:  # screened too: the study's bias needs both rungs
                configs.append(b.compound.config)
            return [Job(c, 0, self.seed, "baseline", self._kinds(c)) for c in dict.fromkeys(configs)]
        return [Job(c.config, 0, s, "baseline", self._kinds(c.config)) for c in b.to_train() for s in self.top_seeds]

    def _kinds(self, config: ArchConfig) -> tuple[str, ...]:
        b, key = self.baselines, config.network_key()
        kinds = []
        if b.width and b.width.config.network_key() == key:
            kinds.append("width")
        if any(c.config.network_key() == key for c in b.width_resolution):
            kinds.append("width_resolution")
        if b.compound and b.compound.config.network_key() == key:
            kinds.append("compound")
        return tuple(kinds)

    def _incomplete(self, ledger: Ledger, rung: int, top: bool = False) -> str | None:
        """Why ``rung`` cannot be ranked yet (jobs of it still running or queued), or None."""
        busy = [e for e in ledger.busy() if e.job.rung == rung]
        if busy:
            return f"{len(busy)} job(s) at rung {rung} still running"
        return None

    def _promotions(self, ledger: Ledger, rung: int) -> list[Job]:
        """The best fraction of rung ``rung``'s search networks, at ``rung + 1`` (every top seed if that is
        the top)."""
        if self.ladder.deciding and rung + 1 == self.ladder.top:
            return self._finalists(ledger)
        networks = ledger.networks(rung, self.ladder.rungs[rung].name)
        candidates = [k for k in ledger.search_networks(rung, ("done",)) if self._fits(networks[k].macs)]
        chosen = by_score(networks[k] for k in candidates)[: self.ladder.promoted(len(candidates))]
        seeds = self.top_seeds if rung + 1 == self.ladder.top else [self.seed]
        return [Job(n.config, rung + 1, s, SEARCH) for n in chosen for s in seeds]

    def _finalists(self, ledger: Ledger) -> list[Job]:
        """The deciding rung's search jobs: the ``finalists`` best screened networks by the GP's posterior, at
        every top seed, the first ``repeats`` at one seed more."""
        if self.space is None:
            raise ValueError("a deciding rung needs the plan's factor space (plan_for gives it)")
        top = self.ladder.top
        noise = study_noise(ledger, self.ladder, self.data)
        screening = tuple((e.job.config, e.job.rung, float(e.accuracy), noise[e.job.rung].std)
                          for e in sorted(ledger.entries, key=lambda e: e.number)
                          if e.state == "done" and e.job.rung < top)
        macs = {e.job.config.network_key(): e.macs for e in ledger.entries}
        candidates = tuple(c for k, c in ledger.search_networks(0, ("done",)).items() if self._fits(macs[k]))
        continues = tuple(self.ladder.continues(r) for r in range(top - 1))
        shifts = tuple(noise[top].shift(c.resolution) for c in candidates)  # the verdict's, where it moves them
        chosen = choose_finalists(self.space, self.seed, screening, candidates, continues, self.ladder.finalists,
                                  shifts)
        extra = self.seed + self.ladder.top_seeds
        return [Job(c, top, s, SEARCH) for i, c in enumerate(chosen)
                for s in self.top_seeds + ([extra] if i < self.ladder.repeats else [])]

    def ranked(self, ledger: Ledger, rung: int) -> bool:
        """True once the jobs of ``rung`` can no longer change: every proposal is taken and no job of this or
        a lower rung is running or queued, so the promotions out of ``rung`` are final."""
        return len(ledger.search_networks(0)) >= self.trials and not any(e.job.rung <= rung for e in ledger.busy())

    def disposable(self, ledger: Ledger) -> list[Job]:
        """Finished jobs whose checkpoint no job will continue from: their rung does not continue, or the
        job continuing them has finished, or their rung is ranked and they were not promoted."""
        finished = {e.job.key for e in ledger.entries if e.state in ("done", "failed")}
        next_rung: dict[int, set[tuple] | None] = {}  # per rung: the keys of its promotions; None: not ranked
        out = []
        for e in ledger.entries:
            if e.state not in ("done", "failed"):
                continue
            rung = e.job.rung
            if e.state == "failed" or not self.ladder.continues(rung):
                out.append(e.job)
                continue
            if rung not in next_rung:
                next_rung[rung] = ({j.key for j in self._next_rung(ledger, rung)} if self.ranked(ledger, rung)
                                   else None)
            successor = (e.job.config.network_key(), rung + 1, e.job.seed)
            if successor in finished or (next_rung[rung] is not None and successor not in next_rung[rung]):
                out.append(e.job)
        return out

    def _next_rung(self, ledger: Ledger, rung: int) -> list[Job]:
        """Every job the plan puts at ``rung + 1`` once ``rung`` is ranked."""
        jobs = self._promotions(ledger, rung)
        if rung + 1 == self.ladder.top:
            jobs += self._fixed_top_baselines() + self._top_jobs(ledger)
        return jobs

    def best_width_resolution(self, ledger: Ledger, rung: int = 0) -> ArchConfig | None:
        """The most accurate width x resolution candidate at ``rung`` (mean over seeds; ties: cheaper)."""
        networks = ledger.networks(rung, self.ladder.rungs[rung].name)
        best = by_score(networks[k] for c in self.baselines.width_resolution
                        if (k := c.config.network_key()) in networks)
        return best[0].config if best else None

    def _fixed_top_baselines(self) -> list[Job]:
        """With several rungs: the width and compound baselines at the top, at every top seed."""
        top, b = self.ladder.top, self.baselines
        if top == 0:
            return []
        configs = [x.config for x in (b.width, b.compound) if x is not None]
        return [Job(c, top, s, "baseline", self._kinds(c)) for c in dict.fromkeys(configs) for s in self.top_seeds]

    def _top_jobs(self, ledger: Ledger) -> list[Job]:
        top = self.ladder.top
        jobs: list[Job] = []
        if top > 0:
            best = self.best_width_resolution(ledger, 0)
            if best is not None:
                jobs += [Job(best, top, s, "baseline", self._kinds(best)) for s in self.top_seeds]
        else:
            networks = ledger.networks(0, self.ladder.rungs[0].name)
            candidates = [k for k in ledger.search_networks(0, ("done",)) if self._fits(networks[k].macs)]
            for n in by_score(networks[k] for k in candidates)[: self.ladder.promoted(len(candidates))]:
                jobs += [Job(n.config, 0, s, SEARCH) for s in self.top_seeds]
        return jobs


def study_noise(ledger: Ledger, ladder: Ladder, data: str = PRIOR_DATA) -> list[Noise]:
    """Each rung's noise (``noise.rung_noise``): the profile's measured prior, updated with the seed repeats done
    at that rung (what the GP sampler and the decision both weigh a score by), and its bias: a screening rung's
    against the top rung, pooled with the networks this study trained at both; the top rung's against the
    fidelity its prior was measured against (``noise.bias_target``: the reference, or ``decide``'s full side;
    unmeasured where the top is that fidelity). The finalists were chosen on their screening
    scores, which truncates their spread of bias: with few baselines beside them the study's figure leans low,
    one reason the Imagenette prior stays in the pool."""
    networks = [ledger.networks(rung, profile.name) for rung, profile in enumerate(ladder.rungs)]
    top, top_profile = ladder.top, ladder.rungs[-1]
    out = []
    for rung, profile in enumerate(ladder.rungs):
        noise = rung_noise(profile, [n.scores for n in networks[rung].values()], data)
        if rung < top:
            pairs = [(n.mean, networks[top][k].mean) for k, n in networks[rung].items() if k in networks[top]]
            bias = rung_bias(profile, top_profile, pairs, noise.std, data)
        else:
            target = bias_target(profile)
            against = target if profile.name != target else "full resolution"
            bias = rung_bias(profile, against, [], noise.std, data)
        out.append(dataclasses.replace(noise, bias=bias))
    return out
