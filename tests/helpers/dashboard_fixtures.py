"""Real studies for the dashboard and export tests: the search loop of ``archsearch run`` with a synthetic
evaluator that trains, as the CPU profiles do, at half the config's side.

Not a conftest: the tests import these helpers, so other test modules are unaffected.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from archsearch.search import run_trials
from archsearch.search.study import ResultCache, open_study
from archsearch.train.recipe import train_resolution
from helpers.evaluator import SyntheticEvaluator
from helpers.studies import open_synthetic, run_synthetic, settings_for

BUDGET = 300_000_000


class ScaledEvaluator(SyntheticEvaluator):
    """Synthetic scores; each job trained at its rung's scaled side (``recipe.train_resolution``), as
    ``TrainingEvaluator`` reports it: a record's resolution is then not the config's."""

    def trained_resolution(self, job) -> int:
        return train_resolution(job.config, self.ladder.rungs[job.rung].resolution_scale)

    def __call__(self, job) -> dict:
        return {**super().__call__(job), "resolution": self.trained_resolution(job)}


class FlatEvaluator(ScaledEvaluator):
    """Every network scores the same at a rung: no margin can be significant."""

    def score(self, job) -> float:
        return 0.4 + 0.1 * job.rung


def build_study(tmp_path: Path, name: str = "dash", strategy: str = "gp", trials: int = 8, top_seeds: int = 2,
                evaluator: type[ScaledEvaluator] = ScaledEvaluator, memory: bool = False) -> tuple[optuna.Study, str]:
    """A two-rung study (smoke > short) searched by ``strategy`` for ``trials`` networks, with its baselines,
    ``top_seeds`` seeds per top-rung job and noise of 0.01 in every score: in SQLite under ``tmp_path`` as
    ``run`` keeps it, or in memory (``memory``; quicker: every attribute is a SQLite commit)."""
    settings = settings_for(strategy, trials=trials, top_seeds=top_seeds)
    scorer = evaluator(settings.fidelity_ladder(), noise=0.01)
    if not memory:
        study, url, *_ = run_synthetic(tmp_path, settings, scorer, name)
        return study, url
    study, _, plan = open_synthetic(tmp_path, settings, name, storage=optuna.storages.InMemoryStorage())
    run_trials(study, settings, plan, scorer, ResultCache(tmp_path / "cache"), progress=False, poll_s=0.05,
               heartbeats=False)
    return study, ":memory:"


def empty_study(tmp_path: Path, name: str = "empty") -> tuple[optuna.Study, str]:
    """A study as ``archsearch run`` creates it, before any job finished."""
    study, url, _ = open_synthetic(tmp_path, settings_for(), name)
    return study, url


def single_trial_study(tmp_path: Path, name: str = "single") -> tuple[optuna.Study, str]:
    """One trained job (the plan's first: a width x resolution baseline candidate) and nothing else."""
    settings = settings_for()
    study, url, plan = open_synthetic(tmp_path, settings, name)
    run_trials(study, settings, plan, ScaledEvaluator(settings.fidelity_ladder()), ResultCache(tmp_path / "cache"),
               progress=False, max_trials=1)
    trained = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(trained) == 1, "the single-job study should hold exactly one trained job"
    return study, url


def mixed_strategy_study(tmp_path: Path, name: str = "mixed") -> tuple[optuna.Study, str]:
    """Jobs of two strategies in one study, told apart by a per-trial ``strategy`` user attribute: the space-
    filling design and a random search of the same problem (quick: no GP proposes), copied into one study,
    all in memory."""
    sources = [(build_study(tmp_path, strategy, strategy, trials=4, top_seeds=1, memory=True)[0], strategy)
               for strategy in ("design", "random")]
    study = open_study(name, optuna.storages.InMemoryStorage(), settings_for("design", trials=8, top_seeds=1))
    copies = []
    for source, strategy in sources:
        for t in source.get_trials(deepcopy=False):
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
                copies.append(optuna.trial.create_trial(
                    state=t.state, params=t.params, distributions=t.distributions,
                    value=t.value if t.state == TrialState.COMPLETE else None,
                    user_attrs={**t.user_attrs, "strategy": strategy}))
    study.add_trials(copies)
    return study, ":memory:"


_SEARCHED: dict[str, tuple[optuna.Study, str]] = {}


def searched_study(tmp_path_factory) -> tuple[optuna.Study, str]:
    """The 8-network GP study, searched once per test session (both dashboard test modules read it)."""
    if "study" not in _SEARCHED:
        _SEARCHED["study"] = build_study(tmp_path_factory.mktemp("searched"))
    return _SEARCHED["study"]
