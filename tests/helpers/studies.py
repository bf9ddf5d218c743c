"""Test helper: a study of the real v2 space with a synthetic evaluator (no training), as ``run`` builds it."""

from __future__ import annotations

import tomllib

from archsearch.model.space import DEFAULT_SPACES
from archsearch.search.fidelity import ladder as make_ladder
from archsearch.search.session import Session
from archsearch.search.settings import StudySettings
from archsearch.search.study import ResultCache

BUDGET = 300_000_000
TWO_RUNGS = ("smoke", "short")
THREE_RUNGS = ("smoke", "short", "reference")


def settings_for(strategy="gp", trials=8, budget=BUDGET, seed=0, rungs=TWO_RUNGS, promote=1 / 3, top_seeds=1,
                 latency=None, finalists=0, repeats=0, budgets=None):
    """``budgets``: a family's MAC budgets (``budget`` is then their largest)."""
    space = tomllib.loads(DEFAULT_SPACES["v2"].read_text())
    lad = make_ladder(rungs, promote, top_seeds, finalists, repeats)
    return StudySettings(space=space, mac_budget=max(budgets) if budgets else budget, ladder=lad.to_dict(),
                         data="synthetic", strategy=strategy, seed=seed, trials=trials, latency=latency,
                         mac_budgets=tuple(sorted(budgets)) if budgets else None)


def study_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/studies.db"


def open_synthetic(tmp_path, settings, name="s", storage=None):
    """The study (created or resumed), its URL and its plan."""
    url = study_url(tmp_path)
    session = Session(settings, name, storage or url)
    return session.study, url, session.plan


def run_synthetic(tmp_path, settings, evaluator, name="s", cache=None, **kwargs):
    url = study_url(tmp_path)
    session = Session(settings, name, url)
    progress = session.run(evaluator, cache if cache is not None else ResultCache(tmp_path / "cache"),
                           progress=False, poll_s=0.05, **kwargs)
    return session.study, url, session.plan, progress
