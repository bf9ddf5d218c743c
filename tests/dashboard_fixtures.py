"""Real studies for the dashboard tests: the search loop of ``archsearch run`` with the synthetic evaluator.

Not a conftest: the dashboard tests import these helpers, so other test modules are unaffected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
from optuna.trial import TrialState

from archsearch.samplers import make_sampler
from archsearch.search import enqueue_baseline, feasible_grid, run_trials, uniform_baseline
from archsearch.space import DEFAULT_SPACES
from archsearch.study import ResultCache, StudySettings, make_storage, open_study

BUDGET = 300_000_000


def settings(strategy: str = "gp", trials: int = 10, seed: int = 0) -> StudySettings:
    return StudySettings(space=tomllib.loads(Path(DEFAULT_SPACES["v2"]).read_text()), mac_budget=BUDGET,
                         profile="synthetic", data="synthetic", strategy=strategy, seed=seed, trials=trials)


def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dashboard.db'}"


def build_study(tmp_path: Path, name: str = "dash", strategy: str = "gp", trials: int = 10,
                baseline: bool = True, storage: str | None = None) -> tuple[optuna.Study, str]:
    """A study searched by ``strategy`` (GP by default) for ``trials`` networks plus the uniform baseline,
    in SQLite under ``tmp_path`` (or in memory with ``storage=":memory:"``)."""
    from conftest import SyntheticEvaluator

    url = storage or storage_url(tmp_path)
    s = settings(strategy, trials)
    space = s.factor_space()
    feasible = feasible_grid(space, s.mac_budget)
    sampler = make_sampler(strategy, space, feasible.configs, feasible.macs, s.mac_budget, s.seed)
    backend = optuna.storages.InMemoryStorage() if url == ":memory:" else make_storage(url)
    study = open_study(name, backend, s, sampler)
    if baseline:
        enqueue_baseline(study, uniform_baseline(space, s.mac_budget), space)
    if trials:
        run_trials(study, s, SyntheticEvaluator(), ResultCache(tmp_path / "cache"), progress=False)
    return study, url


def empty_study(tmp_path: Path, name: str = "empty") -> tuple[optuna.Study, str]:
    """A study as ``archsearch run`` creates it, before any trial finished."""
    url = storage_url(tmp_path)
    return open_study(name, make_storage(url), settings()), url


def single_trial_study(tmp_path: Path, name: str = "single") -> tuple[optuna.Study, str]:
    """One trained trial (the baseline) and nothing else."""
    study, url = empty_study(tmp_path, name)
    s = settings(trials=0)
    space = s.factor_space()
    enqueue_baseline(study, uniform_baseline(space, s.mac_budget), space)
    from conftest import SyntheticEvaluator

    run_trials(study, s, SyntheticEvaluator(), ResultCache(tmp_path / "cache"), progress=False)
    trained = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    assert len(trained) == 1, "the single-trial study should hold exactly the baseline"
    return study, url


def mixed_strategy_study(tmp_path: Path, name: str = "mixed") -> tuple[optuna.Study, str]:
    """Trials of two strategies in one study, told apart by a per-trial ``strategy`` user attribute: a GP
    search and a random search of the same problem (run in memory: quick), copied into one SQLite study."""
    gp, _ = build_study(tmp_path, name="gp", strategy="gp", trials=5, storage=":memory:")
    rnd, _ = build_study(tmp_path, name="random", strategy="random", trials=5, baseline=False, storage=":memory:")
    url = storage_url(tmp_path)
    study = open_study(name, make_storage(url), settings("gp", 10))
    copies = []
    for source, strategy in ((gp, "gp"), (rnd, "random")):
        for t in source.get_trials(deepcopy=False):
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
                copies.append(optuna.trial.create_trial(
                    state=t.state, params=t.params, distributions=t.distributions,
                    value=t.value if t.state == TrialState.COMPLETE else None,
                    user_attrs={**t.user_attrs, "strategy": strategy}))
    study.add_trials(copies)
    return study, url


_SEARCHED: dict[str, tuple[optuna.Study, str]] = {}


def searched_study(tmp_path_factory) -> tuple[optuna.Study, str]:
    """The 10-trial GP study, searched once per test session (both dashboard test modules read it)."""
    if "study" not in _SEARCHED:
        _SEARCHED["study"] = build_study(tmp_path_factory.mktemp("searched"))
    return _SEARCHED["study"]
