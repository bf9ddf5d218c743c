"""The search loop: feasible candidates, the uniform-scaling baseline, and trials run through an Optuna study.

Data flows one way: the closed-form cost model filters the factor grid to the configs within the MAC budget;
a strategy (an Optuna sampler) proposes a config; an evaluator scores it (proxy training, or a table lookup
in replays); the result is stored on the trial and cached by (config, fidelity, data, seed).
"""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from .config import ArchConfig, ConfigError
from .cost import closed_form_cost, distinct_networks
from .space import FactorSpace
from .study import (
    ResultCache,
    StudySettings,
    config_from_params,
    config_params,
    distributions,
    drawn_params,
    result_key,
    networks_done,
    trained_trials,
    trial_network,
)

BASELINE_RESOLUTION = 256
MAX_WASTED_STREAK = 200  # consecutive over-budget or repeated proposals before a strategy is declared stuck


class BudgetError(ConfigError):
    """A MAC budget that cannot be parsed or that no config of the space meets."""


_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)\s*(?:macs?)?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_macs(text: str) -> int:
    """'300M', '0.3G', '300000000', '1.2GMACs' (any case) -> MACs as an integer."""
    match = _BUDGET.match(str(text))
    if not match:
        raise BudgetError(f"--mac-budget: cannot read {text!r}; write e.g. 300M, 0.3G, 1.2GMACs or 300000000")
    value = round(float(match.group(1)) * _SCALE[match.group(2).lower()])
    if value <= 0:
        raise BudgetError(f"--mac-budget: {text!r} is not a positive number of MACs")
    return value


@dataclass(frozen=True)
class Feasible:
    """The grid points within budget (with their MACs), and where the budget sits in the space."""

    configs: list[ArchConfig]
    macs: list[int]
    cheapest: tuple[ArchConfig, int]
    dearest: tuple[ArchConfig, int]

    @property
    def budget_above_space(self) -> bool:
        return len(self.configs) > 0 and self.macs and max(self.macs) == self.dearest[1]


def feasible_grid(space: FactorSpace, budget: int) -> Feasible:
    """Every grid point costed in closed form, one per distinct network (the first in grid order);
    an error naming the cheapest config if none fits."""
    configs, macs = [], []
    cheapest = dearest = None
    for config, cost in distinct_networks(space):
        if cheapest is None or cost < cheapest[1]:
            cheapest = (config, cost)
        if dearest is None or cost > dearest[1]:
            dearest = (config, cost)
        if cost <= budget:
            configs.append(config)
            macs.append(cost)
    if not configs:
        raise BudgetError(
            f"--mac-budget: {budget / 1e6:.1f}M is below the cheapest config of the space, "
            f"{cheapest[0].id} at {cheapest[1] / 1e6:.1f}M MACs"
        )
    return Feasible(configs, macs, cheapest, dearest)


def uniform_baseline(space: FactorSpace, budget: int) -> ArchConfig | None:
    """The official family scaled by width alone: 256 px, depths 1.0, the widest grid width within budget."""
    resolution = min(space.range("resolution").values(), key=lambda r: abs(r - BASELINE_RESOLUTION))
    best = None
    for width in space.range("width").values():
        config = ArchConfig(space.family, resolution=resolution, width=width, num_classes=space.num_classes,
                            variant=space.variants[0])
        if closed_form_cost(config).macs <= budget:
            best = config
    return best


class Evaluator(Protocol):
    """Scores a config: proxy training in ``archsearch run``, a table lookup in ``archsearch replay``."""

    fidelity: dict
    data_fingerprint: str
    seed: int

    def __call__(self, config: ArchConfig, heartbeat: Callable[[], None]) -> dict:
        """A record with at least ``status`` ("ok" | "failed"), ``top1`` and ``reason``."""
        ...


@dataclass
class SearchProgress:
    trained: int
    target: int
    best: float | None


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[Callable[[], None]]:
    """Beat for the trial while it trains, so that a dead worker's trial is failed and re-queued."""
    storage = study._storage
    # Optuna wraps RDB storages in a cache that exposes only get_heartbeat_interval(); in-memory ones have none.
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if not interval:
        yield lambda: None
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            storage.record_heartbeat(trial._trial_id)

    storage.record_heartbeat(trial._trial_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield lambda: storage.record_heartbeat(trial._trial_id)
    finally:
        stop.set()
        thread.join()


def recover_interrupted(study: optuna.Study) -> int:
    """Fail the trials a killed run left RUNNING and queue them again (caller holds the study exclusively)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        _queue_again(study, t)
    return len(stale)


def _queue_again(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue an unfinished trial's config again; one stopped before it drew a config left nothing to redo."""
    params = drawn_params(trial)
    if params:
        study.enqueue_trial(params, user_attrs={"role": trial.user_attrs.get("role", "search"),
                                                "retry_of": trial.number})


def enqueue_baseline(study: optuna.Study, baseline: ArchConfig | None, space: FactorSpace) -> None:
    if baseline is None:
        return
    if any(t.user_attrs.get("role") == "baseline" and t.state != TrialState.FAIL
           for t in study.get_trials(deepcopy=False)):
        return
    study.enqueue_trial(config_params(baseline, space), user_attrs={"role": "baseline"})


def best_feasible(study: optuna.Study, budget: int) -> float | None:
    accs = [t.user_attrs["accuracy"] for t in trained_trials(study) if t.user_attrs["macs"] <= budget]
    return max(accs) if accs else None


def run_trials(study: optuna.Study, settings: StudySettings, evaluator: Evaluator,
               cache: ResultCache | None = None, progress: bool = True, max_trials: int | None = None,
               poll_s: float = 2.0) -> SearchProgress:
    """Train proposals until the study holds ``settings.trials`` distinct trained networks (and nothing is
    queued), or this process has run ``max_trials``. Any number of processes may run this on one study: the
    remaining slots are shared out by trial number, and a process whose slot is taken waits for the others
    (a dead worker's trial is failed by the heartbeat and queued again, so someone must be there to redo it).
    """
    space = settings.factor_space()
    budget = settings.mac_budget
    dists = distributions(space)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    wasted_streak = own = 0
    done = networks_done(study)
    bar = tqdm(total=settings.trials, initial=min(done, settings.trials), desc="trials", unit="trial",
               disable=not progress, dynamic_ncols=True)
    try:
        while max_trials is None or own < max_trials:
            optuna.storages.fail_stale_trials(study)
            done, queued = networks_done(study), _queued(study)
            bar.update(min(done, settings.trials) - bar.n)
            if not queued and done >= settings.trials:
                break
            if not queued and done + len(_running_search(study)) >= settings.trials:
                time.sleep(poll_s)  # the last slots are being trained elsewhere
                continue
            trial = study.ask(dists)
            try:
                with _heartbeat(study, trial) as beat:  # from the start: a worker may die before training begins
                    done, wasted = _run_one(study, trial, settings, evaluator, cache, beat, worker, done)
            except KeyboardInterrupt:
                _requeue_interrupted(study, trial)
                raise
            if wasted is None:  # surplus or drawn twice: the slot went to another worker
                time.sleep(random.uniform(0, poll_s / 4))  # so that two workers do not ask in step again
            else:
                own += not wasted
                wasted_streak = wasted_streak + 1 if wasted else 0
            if wasted_streak >= MAX_WASTED_STREAK:
                raise BudgetError(f"strategy {settings.strategy!r} proposed {wasted_streak} over-budget or already "
                                  "trained configs in a row; try --strategy gp, which proposes only new feasible ones")
            bar.update(min(done, settings.trials) - bar.n)
            best = best_feasible(study, budget)
            if best is not None:
                bar.set_postfix_str(f"best feasible {100 * best:.1f}%")
    finally:
        bar.close()
    return SearchProgress(networks_done(study), settings.trials, best_feasible(study, budget))


def _run_one(study: optuna.Study, trial: optuna.Trial, settings: StudySettings, evaluator: Evaluator,
             cache: ResultCache | None, beat: Callable[[], None], worker: str,
             done: int) -> tuple[int, bool | None]:
    """Cost, check and train one asked trial. Returns the networks done and whether the trial was wasted
    (over budget, or a network already done); None when it was surplus and gave its slot back."""
    space = settings.factor_space()
    config = config_from_params(trial.params, space)
    cost = closed_form_cost(config)
    role = trial.user_attrs.get("role", "search")
    for key, value in (("config", config.to_dict()), ("config_id", config.id), ("macs", cost.macs),
                       ("params", cost.params), ("role", role), ("worker", worker)):
        trial.set_user_attr(key, value)
    trial.set_constraint("macs_over_budget", float(max(0, cost.macs - settings.mac_budget)))
    system_attrs = study._storage.get_trial_system_attrs(trial._trial_id)
    from_queue = "fixed_params" in system_attrs or "failed_trial" in system_attrs  # the baseline, retries
    if not from_queue and _drawn_twice(study, trial.number, config, space):
        trial.set_user_attr("duplicate", True)
        study.tell(trial, state=TrialState.PRUNED)
        return done, None
    if not from_queue and _surplus(study, trial.number, settings.trials):
        trial.set_user_attr("surplus", True)  # another worker took the last slot first
        study.tell(trial, state=TrialState.PRUNED)
        return done, None
    if cost.macs > settings.mac_budget:
        trial.set_user_attr("infeasible", True)
        study.tell(trial, state=TrialState.PRUNED)
        return done, True
    record = _evaluate_cached(trial, study, config, evaluator, cache, beat)
    _finish(study, trial, record, cost.macs, settings.strategy)
    now = networks_done(study)
    return now, not (now > done or role == "baseline")


def _requeue_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ctrl-C in the middle of a trial: mark it, fail it and queue it again, so the next run trains it first."""
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state != TrialState.RUNNING:
        return  # it was told before the interrupt landed
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    _queue_again(study, frozen)


def _queued(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _running_search(study: optuna.Study) -> list[int]:
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("role", "search") != "baseline"]


def _drawn_twice(study: optuna.Study, number: int, config: ArchConfig, space: FactorSpace) -> bool:
    """True when another running trial holds the same network. Workers that ask at the same moment can draw
    the same proposal, since a trial's params are written only at the end of its ``ask``. Each checks after
    its own are written, so of two such trials at least one sees the other and gives way (both may; each
    then asks again). A trial from the queue never gives way, so a fresh proposal yields to it."""
    network, names = config.network_key(), set(distributions(space))
    return any(t.number != number and set(t.params) >= names
               and config_from_params(t.params, space).network_key() == network
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _surplus(study: optuna.Study, number: int, target: int) -> bool:
    """True when the trials started before this one already fill every remaining slot. Read after the ask,
    running trials first: one that finishes between the two reads is counted twice (safe: this trial gives
    its slot back and the loop asks again), never missed."""
    earlier = [n for n in _running_search(study) if n < number]
    return networks_done(study) + len(earlier) >= target


def _finish(study: optuna.Study, trial: optuna.Trial, record: dict, macs: int, strategy: str) -> None:
    if record["status"] != "ok":
        trial.set_user_attr("failure", record.get("reason") or "failed")
        study.tell(trial, state=TrialState.FAIL)
    else:
        trial.set_user_attr("accuracy", record["top1"])
        study.tell(trial, [record["top1"], macs] if strategy == "nsga3" else record["top1"])


def _evaluate_cached(trial: optuna.Trial, study: optuna.Study, config: ArchConfig, evaluator: Evaluator,
                     cache: ResultCache | None, beat: Callable[[], None]) -> dict:
    key = result_key(config, evaluator.fidelity, evaluator.data_fingerprint, evaluator.seed)
    network = config.network_key()
    same = [t for t in trained_trials(study) if trial_network(t) == network]
    record = same[0].user_attrs["record"] if same else (cache.get(key) if cache else None)
    trial.set_user_attr("cached", record is not None)
    if record is None:
        record = evaluator(config, beat)
        if cache and record["status"] == "ok":
            cache.put(key, record)
    trial.set_user_attr("record", record)
    trial.set_user_attr("fidelity", evaluator.fidelity.get("name", "custom"))
    return record


class TrainingEvaluator:
    """Proxy training as a search objective (``training.evaluate``), beating the trial's heartbeat per epoch."""

    def __init__(self, profile: str, data: str | None, seed: int, progress: bool = True):
        from .data import fingerprint
        from .training import get_profile

        self.profile = get_profile(profile)
        self.data = data
        self.seed = seed
        self.progress = progress
        self.fidelity = self.profile.to_dict()
        self.data_fingerprint = fingerprint(data)

    def __call__(self, config: ArchConfig, heartbeat: Callable[[], None]) -> dict:
        from .training import evaluate

        record = evaluate(config, self.profile, self.data, self.seed, progress=self.progress,
                          on_epoch=lambda _stats: heartbeat())
        return record.to_dict()
