"""The search loop: take the next due job (``jobs.Plan``), train it (or read it from the cache), tell the study.

Any number of processes may run ``run_trials`` on one study. Each pass reads the study, fails and re-queues
the trials whose heartbeat stopped (``heartbeat``), and asks the plan what is due: a queued job (a retry) is
taken first, then the plan's next job or a proposal of the strategy. A fresh trial that picked a job another
trial holds (running, done, queued or diverged) gives way; a queued one never does, so every job is trained
exactly once. Proposals over the budget or of a network already taken are skipped (the GP never makes
them; Optuna's samplers can), and a strategy that makes ``MAX_WASTED_STREAK`` of them in a row is stuck.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from ..model.cost import closed_form_cost
from ..model.space import FactorSpace
from .budget import BudgetError
from .fidelity import Ladder
from .heartbeat import (
    GRACE_BEATS,
    Heartbeat,
    StaleWatcher,
    finished_error,
    heartbeat_interval,
    requeue,
)
from .jobs import SEARCH, Done, Job, Ledger, Plan, Proposal, Wait
from .params import config_from_params, distributions
from .settings import StudySettings
from .study import ResultCache, result_key

MAX_WASTED_STREAK = 200  # consecutive over-budget or repeated proposals before a strategy is declared stuck


class Evaluator(Protocol):
    """Scores a job: proxy training in ``archsearch run``, a table lookup in ``archsearch replay``."""

    ladder: Ladder

    def context(self) -> dict:
        """Everything besides network, fidelity and seed that changes a result (the cache key's context)."""
        ...

    def trained_resolution(self, job: Job) -> int: ...

    def __call__(self, job: Job) -> dict:
        """A record with at least ``status`` ("ok" | "failed"), ``top1`` and ``reason``."""
        ...

    def latency(self, job: Job) -> dict | None:
        """The measured latency of the job's config (``latency.trial.measure_trial``), or None."""
        ...

    # Optional: ``discard(jobs)`` deletes the checkpoints of finished jobs no job will continue from.


@dataclass
class SearchProgress:
    """How far a ``run_trials`` call got: counts only (the winner is the summary's decision, not a score)."""

    trained: int  # jobs done (every rung and role)
    proposed: int  # distinct rung-0 networks of the strategy
    target: int
    cached: int  # results this process read from the cache instead of training


def run_trials(study: optuna.Study, settings: StudySettings, plan: Plan, evaluator: Evaluator,
               cache: ResultCache | None = None, progress: bool = True, max_trials: int | None = None,
               poll_s: float = 2.0, heartbeats: bool = True,
               replan: Callable[[Ledger], Plan] | None = None) -> SearchProgress:
    """Train due jobs until the plan is done, or this process has trained ``max_trials`` of them.
    ``heartbeats`` off only where no other process can see the study (an in-memory replay); ``replan``: the
    plan again from the jobs so far, each pass (a time budget's ``planner.TimePlanner.replan``)."""
    space = settings.factor_space()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    interval = heartbeat_interval() if heartbeats else None
    watcher = StaleWatcher(GRACE_BEATS * (interval or 1))
    own = wasted_streak = cached = 0
    discard = getattr(evaluator, "discard", None)
    bar = tqdm(total=plan.trials, desc="rung 0", unit="net", disable=not progress, dynamic_ncols=True)
    try:
        while max_trials is None or own < max_trials:
            trials = study.get_trials(deepcopy=False)
            if interval:
                for stale in watcher.stale(trials):
                    if requeue(study, stale):
                        print(f"trial {stale.number} stopped beating: failed, its job queued again", file=sys.stderr)
                trials = study.get_trials(deepcopy=False)
            ledger = Ledger(trials)
            if replan is not None:
                plan = replan(ledger)
                bar.total = plan.trials
            if discard is not None:
                discard(plan.disposable(ledger))
            _show(bar, ledger, plan)
            step = plan.next(ledger)
            queued = any(t.state == TrialState.WAITING for t in trials)
            running = any(t.state == TrialState.RUNNING for t in trials)
            if isinstance(step, Done) and not queued and not running:
                break
            if isinstance(step, Done) and not queued:
                time.sleep(poll_s)  # a worker still inside a proposal ends it as surplus, a dead one goes stale
                continue
            if isinstance(step, Wait) and not queued:
                time.sleep(poll_s)  # the jobs that decide what comes next run elsewhere
                continue
            trial = study.ask()
            with Heartbeat(trial, interval):
                try:
                    outcome = _run_one(study, trial, settings, space, plan, step, ledger, evaluator, cache,
                                       worker)
                except KeyboardInterrupt:
                    _requeue_interrupted(study, trial)
                    raise
            if outcome in ("duplicate", "surplus", "nothing"):
                time.sleep(random.uniform(0, poll_s / 4))  # so that two workers do not ask in step again
            elif outcome in ("infeasible", "repeat"):
                wasted_streak += 1
            else:
                wasted_streak = 0
                own += 1
                cached += outcome == "cached"
            if wasted_streak >= MAX_WASTED_STREAK:
                raise BudgetError(f"strategy {settings.strategy!r} proposed {wasted_streak} over-budget or already "
                                  "trained configs in a row; try --strategy gp, which proposes only new feasible ones")
    finally:
        bar.close()
    ledger = Ledger(study.get_trials(deepcopy=False))
    if discard is not None:
        discard(plan.disposable(ledger))
    return SearchProgress(sum(e.state == "done" for e in ledger.entries), len(ledger.search_networks(0)),
                          plan.trials, cached)


def _show(bar: tqdm, ledger: Ledger, plan: Plan) -> None:
    proposed = len(ledger.search_networks(0, ("done", "failed")))
    bar.update(min(proposed, plan.trials) - bar.n)
    rungs = [len(ledger.at(r)) for r in range(1, plan.ladder.top + 1)]
    if rungs:
        bar.set_postfix_str(" ".join(f"rung {r + 1}: {n} done" for r, n in enumerate(rungs)))


def suggest_all(trial: optuna.Trial, space: FactorSpace) -> dict[str, Any]:
    """Suggest every factor of ``space`` (the strategy's sampler answers; a queued trial's fixed params win)."""
    for name, dist in distributions(space).items():
        if isinstance(dist, optuna.distributions.IntDistribution):
            trial.suggest_int(name, dist.low, dist.high, step=dist.step)
        elif isinstance(dist, optuna.distributions.FloatDistribution):
            trial.suggest_float(name, dist.low, dist.high, step=dist.step)
        else:
            trial.suggest_categorical(name, dist.choices)
    return trial.params


def _run_one(study: optuna.Study, trial: optuna.Trial, settings: StudySettings, space: FactorSpace, plan: Plan,
             step: Job | Proposal | Wait | Done, ledger: Ledger, evaluator: Evaluator, cache: ResultCache | None,
             worker: str) -> str:
    """Give ``trial`` a job and train it. Returns what happened: "trained", "cached", "failed", or why the
    trial trained nothing ("duplicate", "surplus", "infeasible", "repeat", "nothing")."""
    job = Job.from_attrs(trial.user_attrs)  # a queued job brings its own attributes
    from_queue = job is not None
    if job is not None and job.role == SEARCH and job.rung == 0 and trial.params == {}:
        try:
            suggest_all(trial, space)  # a retried proposal: its fixed params, so the strategy sees them
        except ValueError:
            pass
    if job is None:
        if isinstance(step, Job):
            job = step
        elif isinstance(step, Proposal):
            job = Job(config_from_params(suggest_all(trial, space), space), 0, plan.seed, SEARCH)
        else:  # we asked for a queued job that another worker took first
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.PRUNED)
            return "nothing"
    cost = closed_form_cost(job.config)
    attrs = {**job.attrs(), "macs": cost.macs, "params": cost.params, "worker": worker,
             "fidelity": plan.ladder.rungs[job.rung].name, "trained_resolution": evaluator.trained_resolution(job)}
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if not from_queue:
        if isinstance(step, Proposal):
            if cost.macs > settings.mac_budget or not _fits_latency(settings, job):
                trial.set_user_attr("infeasible", True)
                study.tell(trial, state=TrialState.PRUNED)
                return "infeasible"
            if job.key in ledger.taken():
                trial.set_user_attr("repeat", True)
                study.tell(trial, state=TrialState.PRUNED)
                return "repeat"
        if _held_elsewhere(study, trial.number, job):
            trial.set_user_attr("duplicate", True)
            study.tell(trial, state=TrialState.PRUNED)
            return "duplicate"
        if isinstance(step, Proposal) and _surplus(study, trial.number, plan.trials):
            trial.set_user_attr("surplus", True)  # another worker took the last proposal first
            study.tell(trial, state=TrialState.PRUNED)
            return "surplus"
    record, was_cached = _evaluate_cached(job, evaluator, cache)
    if record["status"] == "ok" and (latency := evaluator.latency(job)) is not None:
        trial.set_user_attr("latency", latency)  # after training: never inside its timer
    return _finish(study, trial, job, record, cost.macs, settings.strategy, was_cached)


def _fits_latency(settings: StudySettings, job: Job) -> bool:
    limit = settings.latency_limit()
    return limit is None or limit.fits(job.config)


def _held_elsewhere(study: optuna.Study, number: int, job: Job) -> bool:
    """True when another trial holds the same job (running, done, queued, or diverged). Workers that pick a
    job at the same moment each check after writing their own attributes, so the later check always sees
    the earlier write: at most one of them trains it (both may give way; the job is then due again)."""
    for t in study.get_trials(deepcopy=False):
        held = t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.WAITING) or (
            t.state == TrialState.FAIL and t.user_attrs.get("failure"))
        other = Job.from_attrs(t.user_attrs) if held and t.number != number else None
        if other is not None and other.key == job.key:
            return True
    return False


def _surplus(study: optuna.Study, number: int, target: int) -> bool:
    """True when the trials before this one already hold every rung-0 proposal the plan asks for."""
    earlier = Ledger(t for t in study.get_trials(deepcopy=False) if t.number < number)
    return len(earlier.search_networks(0)) >= target


def _evaluate_cached(job: Job, evaluator: Evaluator, cache: ResultCache | None) -> tuple[dict, bool]:
    """The job's record from the cache, else trained. The result as its profile trains it (whole batches) is
    looked for first, then, where this machine must train it in micro-batches (the evaluator's optional
    ``micro_batches``), the result of as many; a record is kept under the micro-batches it was trained in
    (``EvalRecord.micro_batches``): under BatchNorm another count is another result."""
    fidelity = evaluator.ladder.rungs[job.rung].to_dict()
    resolution, context = evaluator.trained_resolution(job), evaluator.context()

    def key(micro_batches: int) -> str:
        split = {"micro_batches": micro_batches} if micro_batches > 1 else {}  # unsplit keys as they were
        return result_key(job.config, resolution, {**fidelity, **split}, job.seed, context)

    record = cache.get(key(1)) if cache else None
    if record is None and cache and hasattr(evaluator, "micro_batches"):
        planned = evaluator.micro_batches(job)
        record = cache.get(key(planned)) if planned > 1 else None
    if record is not None:
        adopt = getattr(evaluator, "adopt", None)  # a trained network's weights come with its cached result
        return (adopt(job, record) if adopt else record), True
    record = evaluator(job)
    if cache and record["status"] == "ok":
        cache.put(key(record.get("micro_batches", 1)), record)
    return record, False


def _finish(study: optuna.Study, trial: optuna.Trial, job: Job, record: dict, macs: int, strategy: str,
            was_cached: bool) -> str:
    """Tell the study. A trial that other workers failed meanwhile (its heartbeat stalled) gets no result:
    the record is in the cache already, where the worker that took the job over finds it."""
    try:
        trial.set_user_attr("cached", was_cached)
        trial.set_user_attr("record", record)
        if record["status"] != "ok":
            trial.set_user_attr("failure", record.get("reason") or "failed")
            study.tell(trial, state=TrialState.FAIL)
            return "failed"
        trial.set_user_attr("accuracy", record["top1"])
        study.tell(trial, [record["top1"], macs] if strategy == "nsga3" else record["top1"])
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as err:
        if not finished_error(err):
            raise
        print(f"trial {trial.number} was taken over while it trained (its heartbeat stalled); its result "
              f"({job.config.id}, rung {job.rung}) is kept in the result cache", file=sys.stderr)
        return "late"
    return "cached" if was_cached else "trained"


def _requeue_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ctrl-C in the middle of a job: mark it, fail it and queue the job again, so the next run does it first."""
    frozen = _frozen(study, trial.number)
    if frozen.state != TrialState.RUNNING:
        return  # it was told before the interrupt landed
    trial.set_user_attr("interrupted", True)
    requeue(study, _frozen(study, trial.number))


def _frozen(study: optuna.Study, number: int) -> FrozenTrial:
    return study.get_trials(deepcopy=False)[number]


def recover_interrupted(study: optuna.Study) -> int:
    """Fail the trials a killed run left RUNNING and queue their jobs again (the caller holds the study
    exclusively: one process per SQLite study)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sum(requeue(study, t) for t in stale)
