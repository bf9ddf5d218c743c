"""The search loop on a synthetic objective: budgets, feasibility, baseline, strategies, resume, recovery."""

from __future__ import annotations

import tomllib

import optuna
import pytest
from optuna.trial import TrialState

from archsearch.cost import closed_form_cost
from archsearch.formula import apply_formula, derive_formula
from archsearch.samplers import make_sampler
from archsearch.search import (
    BudgetError,
    _run_one,
    enqueue_baseline,
    feasible_grid,
    parse_macs,
    recover_interrupted,
    run_trials,
    uniform_baseline,
)
from archsearch.space import DEFAULT_SPACES, FactorSpace
from archsearch.study import (
    ResultCache,
    StudyError,
    StudySettings,
    config_from_params,
    distributions,
    make_storage,
    networks_done,
    open_study,
    trained_trials,
)
from archsearch.summary import fit_surrogate, summarize, write_summary

BUDGET = 300_000_000
optuna.logging.set_verbosity(optuna.logging.WARNING)


def settings_for(strategy="gp", trials=8, budget=BUDGET, seed=0):
    space = tomllib.loads(DEFAULT_SPACES["v2"].read_text())
    return StudySettings(space=space, mac_budget=budget, profile="synthetic", data="synthetic",
                         strategy=strategy, seed=seed, trials=trials)


def start(tmp_path, settings, name="s"):
    url = f"sqlite:///{tmp_path}/studies.db"
    space = settings.factor_space()
    feasible = feasible_grid(space, settings.mac_budget)
    sampler = make_sampler(settings.strategy, space, feasible.configs, feasible.macs, settings.mac_budget,
                           settings.seed)
    study = open_study(name, make_storage(url), settings, sampler)
    enqueue_baseline(study, uniform_baseline(space, settings.mac_budget), space)
    return study, url


@pytest.mark.parametrize("text, macs", [("300M", 300_000_000), ("0.3G", 300_000_000), ("300000000", 300_000_000),
                                         ("1.2GMACs", 1_200_000_000), ("450m", 450_000_000), ("2g macs", 2 * 10**9),
                                         (" 75.5M ", 75_500_000)])
def test_budget_strings(text, macs):
    assert parse_macs(text) == macs


@pytest.mark.parametrize("text", ["", "300X", "M300", "3e8", "-5M", "0M", "300 MB", "1.2.3G"])
def test_bad_budget_strings(text):
    with pytest.raises(BudgetError, match="--mac-budget"):
        parse_macs(text)


def test_feasible_grid_is_within_budget_and_distinct():
    space = FactorSpace.default("v2")
    feasible = feasible_grid(space, BUDGET)
    assert feasible.configs and all(m <= BUDGET for m in feasible.macs)
    assert [closed_form_cost(c).macs for c in feasible.configs[:20]] == feasible.macs[:20]
    assert len({c.network_key() for c in feasible.configs}) == len(feasible.configs)
    every = [c for c in space.grid() if closed_form_cost(c).macs <= BUDGET]
    assert {c.network_key() for c in every} == {c.network_key() for c in feasible.configs}


def test_budget_below_the_space_names_the_cheapest():
    space = FactorSpace.default("v2")
    cheapest = min(space.grid(), key=lambda c: closed_form_cost(c).macs)
    with pytest.raises(BudgetError, match=cheapest.id):
        feasible_grid(space, closed_form_cost(cheapest).macs - 1)


def test_uniform_baseline_scales_width_only():
    space = FactorSpace.default("v2")
    baseline = uniform_baseline(space, BUDGET)
    assert (baseline.resolution, baseline.mv2_depth, baseline.vit_depth) == (256, 1.0, 1.0)
    assert closed_form_cost(baseline).macs <= BUDGET
    widths = space.range("width").values()
    wider = baseline.replace(width=widths[widths.index(baseline.width) + 1])
    assert closed_form_cost(wider).macs > BUDGET


@pytest.mark.parametrize("strategy", ["gp", "tpe", "random", "nsga3"])
def test_strategies_train_only_new_feasible_networks(tmp_path, synthetic_evaluator, strategy):
    settings = settings_for(strategy, trials=6)
    study, _ = start(tmp_path, settings)
    progress = run_trials(study, settings, synthetic_evaluator, ResultCache(tmp_path / "cache"), progress=False)
    trained = trained_trials(study)
    assert progress.trained == networks_done(study) == 6
    assert len(synthetic_evaluator.calls) == len(set(synthetic_evaluator.calls)) == len(trained)
    assert all(t.user_attrs["macs"] <= BUDGET for t in trained)
    assert sum(t.user_attrs["role"] == "baseline" for t in trained) == 1
    for t in study.get_trials(states=(TrialState.PRUNED,)):
        assert t.user_attrs["infeasible"] and t.user_attrs["macs"] > BUDGET
    for t in trained:
        assert {"config", "config_id", "macs", "params", "accuracy", "record", "fidelity"} <= set(t.user_attrs)


def test_gp_beats_the_baseline_on_the_synthetic_surface(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=12)
    study, url = start(tmp_path, settings)
    run_trials(study, settings, synthetic_evaluator, progress=False)
    summary = summarize(study, url)
    assert summary["winner"]["accuracy"] == max(t.user_attrs["accuracy"] for t in trained_trials(study))
    assert summary["winner_minus_baseline"] > 0.05
    assert summary["importance"]["gp_lengthscales"].keys() == summary["importance"]["fanova"].keys()
    summary_path, winner_path = write_summary(summary)
    assert summary_path.exists() and winner_path.exists()


def test_resume_trains_nothing_twice(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=4)
    study, _ = start(tmp_path, settings)
    run_trials(study, settings, synthetic_evaluator, progress=False)
    first = list(synthetic_evaluator.calls)
    study, _ = start(tmp_path, settings)  # the same command again
    run_trials(study, settings, synthetic_evaluator, progress=False)
    assert synthetic_evaluator.calls == first
    more = settings_for("gp", trials=6)
    study, _ = start(tmp_path, more)
    run_trials(study, more, synthetic_evaluator, progress=False)
    assert len(synthetic_evaluator.calls) == len(first) + 2 == len(set(synthetic_evaluator.calls))


def test_other_settings_are_refused_on_resume(tmp_path, synthetic_evaluator):
    start(tmp_path, settings_for("gp", trials=2))
    with pytest.raises(StudyError, match="mac_budget"):
        start(tmp_path, settings_for("gp", trials=2, budget=200_000_000))


def test_result_cache_serves_another_study(tmp_path, synthetic_evaluator):
    cache = ResultCache(tmp_path / "cache")
    settings = settings_for("gp", trials=3)
    study, _ = start(tmp_path, settings, name="a")
    run_trials(study, settings, synthetic_evaluator, cache, progress=False)
    calls = len(synthetic_evaluator.calls)
    study, _ = start(tmp_path, settings, name="b")
    run_trials(study, settings, synthetic_evaluator, cache, progress=False)
    assert len(synthetic_evaluator.calls) == calls
    assert all(t.user_attrs["cached"] for t in trained_trials(study))


def test_interrupted_trial_is_kept_marked_and_redone(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=4)
    study, _ = start(tmp_path, settings)
    real = synthetic_evaluator.__call__

    class Interrupting:
        fidelity, data_fingerprint, seed = synthetic_evaluator.fidelity, "synthetic", 0
        calls = 0

        def __call__(self, config, heartbeat=lambda: None):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return real(config)

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, settings, Interrupting(), progress=False)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["interrupted"]
    assert len(trained_trials(study)) == 2
    study, _ = start(tmp_path, settings)
    run_trials(study, settings, synthetic_evaluator, progress=False)
    redone = [t for t in trained_trials(study) if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(redone) == 1 and redone[0].params == failed[0].params
    assert networks_done(study) == 4


def test_stale_running_trial_is_recovered(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=2)
    study, _ = start(tmp_path, settings)
    orphan = study.ask({"resolution": optuna.distributions.IntDistribution(128, 320, step=32)})
    assert recover_interrupted(study) == 1
    assert study.get_trials()[orphan.number].state == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert any(t.user_attrs.get("retry_of") == orphan.number for t in waiting)


def test_a_network_drawn_twice_at_once_is_trained_once(tmp_path, synthetic_evaluator):
    """Workers asking at the same moment can draw the same config (params are written at the end of ask):
    a fresh proposal gives way to a running trial of the same network, a queued trial never does."""
    settings = settings_for("random", trials=3)
    study, _ = start(tmp_path, settings)
    dists = distributions(settings.factor_space())
    queued = study.ask(dists)  # the baseline, from the queue
    study.sampler = optuna.samplers.PartialFixedSampler(queued.params, optuna.samplers.RandomSampler(0))
    fresh, second = study.ask(dists), study.ask(dists)  # two more workers draw the same network
    assert fresh.params == second.params == queued.params

    run = lambda trial: _run_one(study, trial, settings, synthetic_evaluator, None, lambda: None, "w", 0)  # noqa: E731
    assert run(fresh) == (0, None) and run(second) == (0, None)
    assert run(queued)[1] is False and len(synthetic_evaluator.calls) == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states[fresh.number] == states[second.number] == TrialState.PRUNED
    assert states[queued.number] == TrialState.COMPLETE
    assert study.get_trials()[fresh.number].user_attrs["duplicate"]


def test_trial_stopped_inside_ask_is_requeued_only_if_it_had_a_config(tmp_path, synthetic_evaluator):
    """Killed inside ask(): a trial taken from the queue keeps its fixed config, a fresh one has none to redo."""
    settings = settings_for("gp", trials=2)
    study, _ = start(tmp_path, settings)
    (baseline,) = study.get_trials(states=(TrialState.WAITING,))
    popped = study.ask()  # takes the queued baseline; no parameter suggested yet
    assert recover_interrupted(study) == 1
    (again,) = study.get_trials(states=(TrialState.WAITING,))
    assert again.user_attrs["retry_of"] == popped.number
    assert again.system_attrs["fixed_params"] == baseline.system_attrs["fixed_params"]

    study.ask()  # takes the re-queued baseline
    study.tell(study.get_trials(states=(TrialState.RUNNING,))[0].number, state=TrialState.FAIL)
    fresh = study.ask()  # nothing queued: a fresh trial, no config drawn yet
    assert recover_interrupted(study) == 1
    assert study.get_trials()[fresh.number].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.WAITING,))


@pytest.mark.parametrize("strategy", ["random", "gp"])
def test_failed_training_is_recorded_not_fatal(tmp_path, synthetic_evaluator, strategy):
    """Diverged trials count towards --trials and are never proposed again (the GP excludes them)."""
    settings = settings_for(strategy, trials=3)
    study, _ = start(tmp_path, settings)

    class Diverging:
        fidelity, data_fingerprint, seed = {"name": "synthetic"}, "synthetic", 0

        def __call__(self, config, heartbeat=lambda: None):
            return {"status": "failed", "reason": "diverged: loss is nan", "top1": None}

    run_trials(study, settings, Diverging(), progress=False)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 4 and all(t.user_attrs["failure"].startswith("diverged") for t in failed)
    assert len({t.user_attrs["config_id"] for t in failed}) == 4
    assert summarize(study, "sqlite://")["winner"] is None


def test_scaling_formula_from_a_study(tmp_path, synthetic_evaluator):
    settings = settings_for("gp", trials=12)
    study, _ = start(tmp_path, settings)
    run_trials(study, settings, synthetic_evaluator, progress=False)
    space = settings.factor_space()
    surrogate = fit_surrogate(study, settings)
    trained = [(config_from_params(t.params, space), t.user_attrs["macs"]) for t in trained_trials(study)]
    formula = derive_formula(surrogate, space, trained, BUDGET)
    if formula.declined:  # the search crowds the budget: the evidence may not pin the exponents down
        assert formula.reason.startswith("the evidence is too thin")
        return
    lo, hi = formula.macs_range
    assert min(m for _, m in trained) == lo < hi <= BUDGET
    for budget in (100_000_000, 150_000_000, 600_000_000):
        pick = apply_formula(formula, budget, space, surrogate)
        assert pick.macs <= budget and space.contains(pick.config) and pick.std >= 0
        assert pick.extrapolated == (not lo <= budget <= hi)
