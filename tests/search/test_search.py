"""The search loop on synthetic evaluators: budgets, rungs and promotion, strategies, resume, interruption,
stale and concurrent workers, the result cache."""

from __future__ import annotations

import optuna
import pytest
from helpers.evaluator import SyntheticEvaluator, surface
from helpers.studies import (
    BUDGET,
    THREE_RUNGS,
    TWO_RUNGS,
    open_synthetic,
    run_synthetic,
    settings_for,
)
from optuna.trial import TrialState

from archsearch.model.config import ArchConfig
from archsearch.model.cost import closed_form_cost, count
from archsearch.model.space import FactorSpace
from archsearch.results.formula import apply_formula, derive_formula
from archsearch.results.judge import study_facts
from archsearch.search import (
    SEARCH,
    BudgetError,
    Job,
    Ledger,
    feasible_grid,
    parse_macs,
    recover_interrupted,
    run_trials,
)
from archsearch.search.fidelity import ladder as make_ladder
from archsearch.search.heartbeat import StaleWatcher, requeue
from archsearch.search.loop import _run_one
from archsearch.search.params import config_params, distributions
from archsearch.search.settings import StudyError
from archsearch.search.study import ResultCache, result_key

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("text, macs", [("300M", 300_000_000), ("0.3G", 300_000_000), ("300000000", 300_000_000),
                                         ("1.2GMACs", 1_200_000_000), ("450m", 450_000_000), ("2g macs", 2 * 10**9),
                                         (" 75.5M ", 75_500_000)])
def test_budget_strings(text, macs):
    assert parse_macs(text) == macs


@pytest.mark.parametrize("text", ["", "300X", "M300", "3e8", "-5M", "0M", "300 MB", "1.2.3G"])
def test_bad_budget_strings(text):
    with pytest.raises(BudgetError, match="--mac-budget"):
        parse_macs(text)


@pytest.mark.parametrize("factors, fvcore_macs", [  # either side of the budget, counted by fvcore's trace
    ((128, 0.875, 0.75, 0.25), 299_911_168), ((128, 0.875, 0.75, 0.5), 318_347_264),
    ((320, 0.25, 1.25, 1.5), 293_984_000), ((320, 0.25, 1.25, 1.75), 312_748_800),
])
def test_feasible_grid_is_within_budget_and_distinct(factors, fvcore_macs):
    space = FactorSpace.default("v2")
    feasible = feasible_grid(space, BUDGET)
    assert feasible.configs and all(m <= BUDGET for m in feasible.macs)
    assert len({c.network_key() for c in feasible.configs}) == len(feasible.configs)
    config = space.config(dict(zip(("resolution", "width", "mv2_depth", "vit_depth"), factors)))
    assert count(config, "fvcore").macs == fvcore_macs  # the model built and traced, not the closed form
    priced = {c.network_key(): macs for c, macs in zip(feasible.configs, feasible.macs)}
    assert priced.get(config.network_key()) == (fvcore_macs if fvcore_macs <= BUDGET else None)


def test_budget_below_the_space_names_the_cheapest():
    space = FactorSpace.default("v2")
    cheapest = space.config({"resolution": 128, "width": 0.25, "mv2_depth": 0.5, "vit_depth": 0.25})  # all minima
    with pytest.raises(BudgetError, match=cheapest.id):
        feasible_grid(space, 25_825_280 - 1)  # its MACs by fvcore's trace
    assert feasible_grid(space, 25_825_280).configs == [cheapest]


def test_rungs_promote_the_best_fraction_and_decide_at_the_top(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=9, rungs=THREE_RUNGS)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    study, _, plan, progress = run_synthetic(tmp_path, settings, evaluator)
    ledger = Ledger(study.get_trials())
    assert len(ledger.search_networks(0)) == progress.proposed == 9
    for rung, expected in ((1, 3), (2, 1)):  # ceil(9 / 3) = 3, then ceil(3 / 3) = 1
        promoted = ledger.at(rung, role=SEARCH)
        assert len(promoted) == expected
        below = {e.job.config.network_key(): e.accuracy for e in ledger.at(rung - 1)}  # one seed below the top
        searched = [k for k in ledger.search_networks(rung - 1, ("done",))]
        best = sorted(searched, key=lambda k: -below[k])[:expected]
        assert {e.job.config.network_key() for e in promoted} == set(best)
    width_resolution = {c.config.network_key() for c in plan.baselines.width_resolution}
    assert width_resolution <= {e.job.config.network_key() for e in ledger.at(0)}  # screened at rung 0
    top_baselines = {e.job.config.network_key() for e in ledger.at(2) if e.job.role == "baseline"}
    assert plan.baselines.width.config.network_key() in top_baselines
    assert plan.baselines.compound.config.network_key() in top_baselines
    assert plan.best_width_resolution(ledger, 0).network_key() in top_baselines
    assert len(evaluator.calls) == len(set(evaluator.calls)) == len(ledger.entries)  # every job trained once
    assert not ledger.busy()
    decision = study_facts(study).decision
    assert decision.rung == 2 and decision.reached_top
    top = max(ledger.at(2), key=lambda e: e.accuracy)  # noise-free scores: the evidence puts this one first
    assert decision.winner.config.network_key() == top.job.config.network_key()


@pytest.mark.parametrize("rungs, continues", [(("smoke-e1", "smoke"), [True]), (("quick", "smoke"), [False]),
                                               (("smoke-e1", "smoke-e2", "smoke"), [True, True]),
                                               (("smoke-e2", "smoke-e1"), [False]), (("smoke", "short"), [False]),
                                               (("smoke-e1", "short"), [False])])
def test_a_rung_continues_the_one_below_only_on_the_same_schedule_and_later(rungs, continues):
    lad = make_ladder(rungs)
    assert [lad.continues(r) for r in range(lad.top)] == continues and not lad.continues(lad.top)


class CheckpointLog(SyntheticEvaluator):
    """Records, in order, every job trained and every job whose checkpoint the loop discards."""

    def __init__(self, ladder):
        super().__init__(ladder)
        self.events: list[tuple[str, tuple]] = []

    def __call__(self, job):
        self.events.append(("train", job.key))
        return super().__call__(job)

    def discard(self, jobs):
        self.events += [("discard", j.key) for j in jobs if ("discard", j.key) not in self.events]


def test_checkpoints_are_kept_for_the_promoted_and_discarded_once_no_job_continues_them(tmp_path):
    settings = settings_for("gp", trials=8, rungs=("smoke-e1", "smoke"), promote=1 / 4)
    evaluator = CheckpointLog(settings.fidelity_ladder())
    study, _, plan, _ = run_synthetic(tmp_path, settings, evaluator)
    ledger = Ledger(study.get_trials())
    order = {event: i for i, event in enumerate(evaluator.events)}
    trained = [key for kind, key in evaluator.events if kind == "train"]
    assert {key for kind, key in evaluator.events if kind == "discard"} == set(trained)  # every one, in the end
    first_promotion = min(order["train", e.job.key] for e in ledger.at(1, role=SEARCH))
    continued = 0
    for e in ledger.at(0):
        successor = (e.job.config.network_key(), 1, e.job.seed)
        if ("train", successor) in order:  # promoted (or a baseline taken to the top): kept until it continued
            continued += 1
            assert order["train", successor] < order["discard", e.job.key]
        else:  # not promoted: discarded as soon as rung 0 is ranked, before any promotion trains
            assert order["discard", e.job.key] < first_promotion
    baselines = {plan.baselines.width.config.network_key(), plan.best_width_resolution(ledger).network_key()}
    assert continued == 2 + len(baselines)  # ceil(8 / 4) proposals, the width and best width x resolution ones
    for e in ledger.at(1):  # the top rung's own checkpoints go once the job is done
        assert order["train", e.job.key] < order["discard", e.job.key]


class ScriptedSampler(optuna.samplers.BaseSampler):
    """Proposes the given configs in order (a strategy whose proposals the test controls)."""

    def __init__(self, space, configs):
        self.space, self.configs = space, list(configs)

    def infer_relative_search_space(self, study, trial):
        return distributions(self.space)

    def sample_relative(self, study, trial, search_space):
        proposed = sum(1 for t in study.get_trials(deepcopy=False) if t.params and t.number != trial.number)
        return config_params(self.configs[proposed], self.space)

    def sample_independent(self, study, trial, name, dist):
        raise AssertionError("every factor is sampled relatively")


def test_the_known_best_reaches_the_top_and_a_config_best_early_and_worst_late_does_not_win(
        tmp_path, synthetic_evaluator):
    """Known learning curves: at rung 0 the trap leads and the best is second; at the top the trap is last."""
    settings = settings_for("random", trials=6, rungs=TWO_RUNGS)
    space = settings.factor_space()
    configs = [space.config({"resolution": r, "width": w, "mv2_depth": 1.25, "vit_depth": 0.75})
               for r, w in ((192, 0.375), (128, 0.5), (288, 0.25), (256, 0.25), (160, 0.5), (224, 0.25))]
    best, trap = configs[0], configs[1]
    assert all(closed_form_cost(c).macs <= BUDGET for c in configs)
    assert surface(best) == max(map(surface, configs)) and surface(trap) == min(map(surface, configs))
    early = {trap.id: 0.95, best.id: 0.90}  # the others score 0.5 * surface < 0.4 at rung 0
    evaluator = synthetic_evaluator(settings.fidelity_ladder(), early=early)
    study, url, plan = open_synthetic(tmp_path, settings)
    study.sampler = ScriptedSampler(space, configs)
    run_trials(study, settings, plan, evaluator, progress=False, poll_s=0.05)
    ledger = Ledger(study.get_trials())
    promoted = {e.job.config for e in ledger.at(1, role=SEARCH)}
    assert promoted == {best, trap}  # ceil(6 / 3) = 2: the two leaders at rung 0
    decision = study_facts(study, url).decision
    assert [s.config for s in decision.ranked if s.config in promoted] == [best, trap]
    # the winner is the best network trained at the top, the baselines included (they are trained there too)
    assert decision.winner.config == max((s.config for s in decision.ranked), key=surface) != trap


@pytest.mark.parametrize("strategy, rungs", [("gp", TWO_RUNGS), ("design", TWO_RUNGS), ("tpe", TWO_RUNGS),
                                             ("random", TWO_RUNGS), ("nsga3", ("smoke",))])
def test_strategies_train_only_new_feasible_networks(tmp_path, synthetic_evaluator, strategy, rungs):
    settings = settings_for(strategy, trials=6, rungs=rungs)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    study, _, _, progress = run_synthetic(tmp_path, settings, evaluator)
    ledger = Ledger(study.get_trials())
    assert progress.proposed == len(ledger.search_networks(0)) == 6
    assert len(evaluator.calls) == len(set(evaluator.calls)) == len(ledger.entries)
    assert all(e.macs <= BUDGET for e in ledger.entries if e.job.role == SEARCH)
    for t in study.get_trials(states=(TrialState.PRUNED,)):
        assert t.user_attrs.get("infeasible") or t.user_attrs.get("repeat")
        if t.user_attrs.get("infeasible"):
            assert t.user_attrs["macs"] > BUDGET
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert {"config", "config_id", "macs", "params", "accuracy", "record", "rung", "seed",
                "trained_resolution"} <= set(t.user_attrs)


def test_resume_trains_nothing_twice(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=4)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    run_synthetic(tmp_path, settings, evaluator)
    first = list(evaluator.calls)
    run_synthetic(tmp_path, settings, evaluator)  # the same command again
    assert evaluator.calls == first
    more = settings_for("gp", trials=7)
    study, *_ = run_synthetic(tmp_path, more, evaluator)
    assert len(evaluator.calls) > len(first) and len(evaluator.calls) == len(set(evaluator.calls))
    assert len(Ledger(study.get_trials()).search_networks(0)) == 7


def test_other_settings_are_refused_on_resume(tmp_path):
    open_synthetic(tmp_path, settings_for("gp", trials=2))
    with pytest.raises(StudyError, match="mac_budget"):
        open_synthetic(tmp_path, settings_for("gp", trials=2, budget=200_000_000))
    with pytest.raises(StudyError, match="ladder"):
        open_synthetic(tmp_path, settings_for("gp", trials=2, rungs=THREE_RUNGS))


def test_result_cache_serves_another_study_and_keys_on_everything(tmp_path, synthetic_evaluator):
    cache = ResultCache(tmp_path / "cache")
    settings = settings_for("gp", trials=3)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    run_synthetic(tmp_path, settings, evaluator, name="a", cache=cache)
    calls = len(evaluator.calls)
    study, *_ = run_synthetic(tmp_path, settings, evaluator, name="b", cache=cache)
    assert len(evaluator.calls) == calls
    assert all(t.user_attrs["cached"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    config = ArchConfig("v2", resolution=160, width=0.5)
    fidelity, context = settings.fidelity_ladder().rungs[0].to_dict(), {"data": "x", "device": "cpu", "code": "1"}
    key = result_key(config, 80, fidelity, 0, context)
    assert key == result_key(config, 80, dict(fidelity), 0, dict(context))
    for other in (result_key(config, 96, fidelity, 0, context), result_key(config, 80, fidelity, 1, context),
                  result_key(config.replace(resolution=192), 80, fidelity, 0, context),
                  result_key(config, 80, {**fidelity, "epochs": 5}, 0, context),
                  *(result_key(config, 80, fidelity, 0, {**context, k: "other"}) for k in context)):
        assert other != key


class Interrupting:
    """Raises KeyboardInterrupt at the first job of ``rung`` (as Ctrl-C would), before scoring it."""

    def __init__(self, inner, rung):
        self.inner, self.rung, self.ladder = inner, rung, inner.ladder
        self.context, self.trained_resolution, self.latency = inner.context, inner.trained_resolution, inner.latency

    def __call__(self, job):
        if job.rung == self.rung:
            raise KeyboardInterrupt
        return self.inner(job)


def test_an_interruption_between_rungs_resumes_where_it_stopped(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=5)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    with pytest.raises(KeyboardInterrupt):
        run_synthetic(tmp_path, settings, Interrupting(evaluator, rung=1))
    study, *_ = open_synthetic(tmp_path, settings)
    (stopped,) = study.get_trials(states=(TrialState.FAIL,))
    assert stopped.user_attrs["interrupted"] and stopped.user_attrs["rung"] == 1
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs["retry_of"] == stopped.number and queued.user_attrs["config"] == stopped.user_attrs["config"]
    before = list(evaluator.calls)
    study, *_ = run_synthetic(tmp_path, settings, evaluator)
    assert evaluator.calls[: len(before)] == before and len(evaluator.calls) == len(set(evaluator.calls))
    assert (stopped.user_attrs["config_id"], 1, 0) == evaluator.calls[len(before)]  # redone first
    ledger = Ledger(study.get_trials())
    assert not ledger.busy() and len(ledger.at(1, role=SEARCH)) == 2


def test_a_stale_trial_is_failed_and_its_job_queued_exactly_once(tmp_path):
    settings = settings_for("gp", trials=2)
    study, *_ = open_synthetic(tmp_path, settings)
    config = settings.factor_space().config({"resolution": 160, "width": 0.5, "mv2_depth": 1, "vit_depth": 1})
    trial = study.ask()
    for key, value in Job(config, 1, 0).attrs().items():
        trial.set_user_attr(key, value)
    fresh = study.ask()  # killed before it drew a config: nothing to redo
    now = [0.0]
    watcher = StaleWatcher(grace_s=10, clock=lambda: now[0])
    assert watcher.stale(study.get_trials()) == []
    trial.set_user_attr("beat", 1)  # alive: it beat
    now[0] = 8
    assert watcher.stale(study.get_trials()) == []
    now[0] = 19  # 11 s without a beat for `trial` (from 8), 19 s for `fresh` (from 0)
    stale = watcher.stale(study.get_trials())
    assert {t.number for t in stale} == {trial.number, fresh.number}
    assert [requeue(study, t) for t in stale] == [True, True]
    assert [requeue(study, t) for t in stale] == [False, False]  # a second watcher finds them finished
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert Job.from_attrs(queued.user_attrs) == Job(config, 1, 0) and queued.user_attrs["retry_of"] == trial.number


def test_two_workers_that_pick_the_same_job_train_it_once(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=3)
    study, _, plan = open_synthetic(tmp_path, settings)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    space = settings.factor_space()
    job = Job(plan.baselines.width.config, 1, 0, "baseline", ("width",))
    first, second = study.ask(), study.ask()  # both decided on the same due job
    ledger = Ledger(study.get_trials())
    run = lambda trial: _run_one(study, trial, settings, space, plan, job, ledger, evaluator, None, "w")
    assert run(second) == "trained"  # it wrote its attributes first: no other trial held the job
    assert run(first) == "duplicate"  # it sees the other holder, earlier or later, and gives way
    assert study.get_trials()[first.number].state == TrialState.PRUNED
    assert evaluator.calls.count((job.config.id, 1, 0)) == 1
    queued_job = Job(plan.baselines.compound.config, 1, 0, "baseline", ("compound",))
    fresh = study.ask()  # a worker picks the compound job for a fresh trial ...
    study.enqueue_trial({}, user_attrs=queued_job.attrs())  # ... while a retry of that job is queued
    popped = study.ask()
    rerun = lambda trial, step: _run_one(study, trial, settings, space, plan, step, Ledger(study.get_trials()),
                                         evaluator, None, "w")
    assert rerun(popped, None) == "trained"  # a queued job never gives way
    assert rerun(fresh, queued_job) == "duplicate"
    assert evaluator.calls.count((queued_job.config.id, 1, 0)) == 1


def test_a_result_that_arrives_after_a_takeover_is_kept_in_the_cache_not_a_crash(tmp_path, synthetic_evaluator):
    """A stalled heartbeat let another worker fail the trial and queue its job while it still trained."""
    settings = settings_for("gp", trials=2)
    study, _, plan = open_synthetic(tmp_path, settings)
    inner = synthetic_evaluator(settings.fidelity_ladder())
    cache = ResultCache(tmp_path / "cache")
    job = Job(plan.baselines.width.config, 1, 0, "baseline", ("width",))

    class TakenOver:
        ladder, context, trained_resolution, latency = inner.ladder, inner.context, inner.trained_resolution, \
            inner.latency

        def __call__(self, job):
            (mine,) = study.get_trials(states=(TrialState.RUNNING,))
            assert requeue(study, mine)  # another worker's watcher
            return inner(job)

    trial = study.ask()
    outcome = _run_one(study, trial, settings, settings.factor_space(), plan, job, Ledger(study.get_trials()),
                       TakenOver(), cache, "w")
    assert outcome == "late" and study.get_trials()[trial.number].state == TrialState.FAIL
    retry = study.ask()  # the queued job: served by the cache, not trained again
    assert _run_one(study, retry, settings, settings.factor_space(), plan, None, Ledger(study.get_trials()), inner,
                    cache, "w") == "cached"
    assert inner.calls == [(job.config.id, 1, 0)]


def test_trials_left_running_by_a_killed_run_are_recovered(tmp_path):
    settings = settings_for("gp", trials=2)
    study, _, plan = open_synthetic(tmp_path, settings)
    with_job = study.ask()
    for key, value in Job(plan.baselines.width.config, 1, 0).attrs().items():
        with_job.set_user_attr(key, value)
    study.ask()  # killed inside the proposal: no job
    assert recover_interrupted(study) == 2
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs["retry_of"] == with_job.number


@pytest.mark.parametrize("strategy", ["random", "gp"])
def test_failed_training_is_recorded_not_fatal(tmp_path, synthetic_evaluator, strategy):
    """Diverged jobs count, are never proposed again, and leave no winner."""
    settings = settings_for(strategy, trials=3)
    inner = synthetic_evaluator(settings.fidelity_ladder())

    class Diverging:
        ladder, context, trained_resolution, latency = inner.ladder, inner.context, inner.trained_resolution, \
            inner.latency

        def __call__(self, job):
            return {"status": "failed", "reason": "diverged: loss is nan", "top1": None}

    study, *_ = run_synthetic(tmp_path, settings, Diverging())
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert all(t.user_attrs["failure"].startswith("diverged") for t in failed)
    proposals = [t for t in failed if t.user_attrs["role"] == SEARCH]
    assert len(proposals) == len({t.user_attrs["config_id"] for t in proposals}) == 3
    assert study_facts(study).decision.winner is None


def test_scaling_formula_from_a_study(tmp_path, synthetic_evaluator):
    """The formula is fitted on the study's own evidence (or declines), and applies to any budget."""
    settings = settings_for("gp", trials=12)
    study, url, *_ = run_synthetic(tmp_path, settings, synthetic_evaluator(settings.fidelity_ladder()))
    facts = study_facts(study, url)
    space = settings.factor_space()
    trained = {e.job.config.network_key(): (e.job.config, e.macs) for e in facts.ledger.entries if e.state == "done"}
    formula = derive_formula(facts.surrogate, space, list(trained.values()), BUDGET)
    if formula.declined:  # the search crowds the budget: the evidence may not pin the exponents down
        assert formula.reason.startswith("the evidence is too thin")
        return
    lo, hi = formula.macs_range
    assert min(m for _, m in trained.values()) == lo < hi <= BUDGET
    for budget in (100_000_000, 150_000_000, 600_000_000):
        pick = apply_formula(formula, budget, space, facts.surrogate)
        assert pick.macs <= budget and space.contains(pick.config) and pick.std >= 0
        assert pick.extrapolated == (not lo <= budget <= hi)
