"""The judge: a study's jobs read once, its one GP fitted once, its decision made once (a family's: once per
MAC budget, each by the plan a single-budget study of that budget would have).

Noise, GP and decision belong together: the GP weighs each rung's scores by that rung's noise and the
decision ranks by the GP, so whoever needs a winner -- the summary, ``summary.json``, the dashboard, the
export, ``archsearch status``, ``archsearch formula`` and the replays -- asks ``judge`` (or ``study_facts``
for a stored study) and reads the same verdict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import optuna

from ..gp.models import rung_priors
from ..gp.surrogate import GPSurrogate
from ..search.jobs import Ledger, Plan, study_noise
from ..search.noise import Noise
from ..search.session import plan_for
from ..search.settings import StudySettings
from ..search.study import redact
from .decision import Decision, decide
from .quantized import QuantizeSettings, quantized_ledger, results_of, settings_of


@dataclass(frozen=True)
class StudyFacts:
    """What a study found: its jobs, each rung's noise, its GP (None below two results) and its decision."""

    study: str
    storage: str  # redacted URL
    settings: StudySettings
    plan: Plan
    ledger: Ledger
    noise: list[Noise]
    surrogate: GPSurrogate | None
    decision: Decision  # at the study's (largest) MAC budget
    quantize: QuantizeSettings | None = None  # how the deciding networks were quantized (``run --quantize``)
    quantized: dict[int, dict] = field(default_factory=dict)  # trial number -> its quantized outcome
    decisions: tuple[Decision, ...] = ()  # one per MAC budget, cheapest first (a family's; else the one)

    @property
    def verdicts(self) -> tuple[tuple[int, Decision], ...]:
        """(budget, decision) at every budget the study decides at, cheapest first."""
        return tuple(zip(self.settings.budgets, self.decisions or (self.decision,)))


def fit_surrogate(ledger: Ledger, plan: Plan, settings: StudySettings, noise: list[Noise]) -> GPSurrogate | None:
    """The study's GP: every finished job at every rung, with its rung's noise (None below two results)."""
    done = [e for e in ledger.entries if e.state == "done"]
    if len(done) < 2:
        return None
    ladder = plan.ladder
    prior = rung_priors([ladder.continues(r) for r in range(ladder.top)]) if ladder.top else None
    return GPSurrogate(settings.factor_space(), seed=settings.seed, fidelities=len(ladder.rungs),
                       rung_prior=prior).fit(
        [e.job.config for e in done], [e.accuracy for e in done], [e.job.rung for e in done],
        [noise[e.job.rung].std for e in done])


def judge(ledger: Ledger, plan: Plan, settings: StudySettings, study: str = "", storage: str = "") -> StudyFacts:
    """The facts of the jobs in ``ledger`` (all of a study's, or the first of a replay's): noise, GP, decision."""
    noise = study_noise(ledger, plan.ladder, settings.data)
    surrogate = fit_surrogate(ledger, plan, settings, noise)
    decisions = tuple(decide(ledger, member, member.baselines.budget, noise, surrogate) for member in plan.members)
    return StudyFacts(study, storage, settings, plan, ledger, noise, surrogate, decisions[-1], decisions=decisions)


def study_facts(study: optuna.Study, storage_url: str = "", plan: Plan | None = None) -> StudyFacts:
    """``judge`` of a stored study, with its redacted storage URL; ``plan``: the one the search ran (a
    ``search.session.Session``'s), else the plan its stored settings define. A study whose objective is
    quantized accuracy (``run --objective quantized``) is judged on its quantized deciding networks."""
    settings = StudySettings.from_study(study)
    plan = plan or plan_for(settings)
    ledger = Ledger(study.get_trials(deepcopy=False))
    quantize, quantized = settings_of(study), results_of(study)
    if quantize is not None and quantize.objective == "quantized":
        ledger = quantized_ledger(ledger, plan.ladder.top, quantized)
    facts = judge(ledger, plan, settings, study.study_name, redact(storage_url))
    return dataclasses.replace(facts, quantize=quantize, quantized=quantized)
