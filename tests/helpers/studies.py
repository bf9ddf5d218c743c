"""Test helper: a study of the real v2 space with a synthetic evaluator (no training), as ``run`` builds it."""

from __future__ import annotations

import tomllib

from archsearch.search.fidelity import ladder as make_ladder
from archsearch.search.samplers import make_sampler
from archsearch.search import feasible_grid, run_trials
from archsearch.model.space import DEFAULT_SPACES
from archsearch.search.study import ResultCache, StudySettings, make_storage, open_study
from archsearch.report.summary import plan_for

BUDGET = 300_000_000
TWO_RUNGS = ("smoke", "short")
THREE_RUNGS = ("smoke", "short", "reference")


def settings_for(strategy="gp", trials=8, budget=BUDGET, seed=0, rungs=TWO_RUNGS, promote=1 / 3, top_seeds=1,
                 latency=None):
    space = tomllib.loads(DEFAULT_SPACES["v2"].read_text())
    return StudySettings(space=space, mac_budget=budget, ladder=make_ladder(rungs, promote, top_seeds).to_dict(),
                         data="synthetic", strategy=strategy, seed=seed, trials=trials, latency=latency)


def open_synthetic(tmp_path, settings, name="s", storage=None):
    """The study (created or resumed), its URL and its plan."""
    url = f"sqlite:///{tmp_path}/studies.db"
    space = settings.factor_space()
    feasible = feasible_grid(space, settings.mac_budget, settings.latency_limit())
    sampler = make_sampler(settings.strategy, space, feasible.configs, feasible.macs, settings.mac_budget,
                           settings.fidelity_ladder(), settings.seed)
    study = open_study(name, storage or make_storage(url), settings, sampler)
    return study, url, plan_for(settings)


def run_synthetic(tmp_path, settings, evaluator, name="s", cache=None, **kwargs):
    study, url, plan = open_synthetic(tmp_path, settings, name)
    progress = run_trials(study, settings, plan, evaluator, cache if cache is not None else
                          ResultCache(tmp_path / "cache"), progress=False, poll_s=0.05, **kwargs)
    return study, url, plan, progress
