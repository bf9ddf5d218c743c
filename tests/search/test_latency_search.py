"""Latency budgets in the search: candidates and baselines under both budgets, a config measured over the
latency budget flagged and never the winner, bad options, and a real run that times every trained network."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib

import numpy as np
import optuna
import pytest
from helpers.studies import BUDGET, run_synthetic, settings_for

from archsearch.cli import main
from archsearch.cli.common import CLIError
from archsearch.cli.run import latency_family_budgets
from archsearch.latency import LatencyLimit, check_latency
from archsearch.latency.predict import fit_model, save_model
from archsearch.model.cost import closed_form_cost, distinct_networks
from archsearch.model.space import DEFAULT_SPACES, FactorSpace
from archsearch.report.dashboard import build_figures, collect
from archsearch.report.summary import render, summarize
from archsearch.results.judge import study_facts
from archsearch.search import feasible_grid
from archsearch.search.baselines import MIN_FILL
from archsearch.search.session import plan_for
from archsearch.search.strategies.base import SearchProblem

SPACE_DICT = tomllib.loads(DEFAULT_SPACES["v2"].read_text())
SPACE = FactorSpace.from_dict(SPACE_DICT)


@pytest.fixture(scope="module")
def model():
    """A feature model fitted to a latency that MACs do not predict: attention depth costs time per MAC."""
    nets = list(distinct_networks(SPACE))[::7]
    truth = [1.0 + m / 1e8 * (1 + 1.5 * c.vit_depth) for c, m in nets]
    settings = {"backend": "ort-cpu", "batch": 1, "threads": 1, "device": "synthetic", "num_classes": 1000}
    return fit_model("features", SPACE, SPACE_DICT, settings, [c for c, _ in nets], truth)


@pytest.fixture(scope="module")
def limit(model):
    """A latency budget that binds within the 300M MAC budget: the median predicted latency there."""
    within = feasible_grid(SPACE, BUDGET).configs
    predicted = sorted(model.predict_seconds(within))
    return LatencyLimit(float(predicted[len(predicted) // 2]), model)


def test_candidates_and_baselines_fit_both_budgets(limit):
    macs_only = feasible_grid(SPACE, BUDGET)
    both = feasible_grid(SPACE, BUDGET, limit)
    assert 0 < len(both.configs) < len(macs_only.configs)
    assert all(m <= BUDGET for m in both.macs) and max(limit.predicted_s(both.configs)) <= limit.budget_s
    plan = plan_for(settings_for(latency=limit.to_settings()))
    unlimited = plan_for(settings_for())
    chosen = [b for b in (plan.baselines.width, plan.baselines.compound) if b] + list(plan.baselines.width_resolution)
    assert chosen
    for b in chosen:
        assert closed_form_cost(b.config).macs <= BUDGET and limit.fits(b.config)
        assert b.latency_fill == pytest.approx(limit.fill(b.config))
        assert max(b.macs / BUDGET, b.latency_fill) >= MIN_FILL  # uses the budget that binds
    before = {b.config.id for b in [unlimited.baselines.width] + list(unlimited.baselines.width_resolution) if b}
    assert {b.config.id for b in chosen} != before  # the latency budget moved the baselines


class MeasuredEvaluator:
    """Synthetic scores (the conftest's), and a measured latency: the model's prediction, except for the
    networks in ``slow``, measured at ten times the budget."""

    def __init__(self, inner, limit, slow=()):
        self.inner, self.limit, self.slow = inner, limit, set(slow)
        self.ladder, self.context, self.trained_resolution = inner.ladder, inner.context, inner.trained_resolution

    def __call__(self, job):
        return self.inner(job)

    def latency(self, job):
        seconds = 10 * self.limit.budget_s if job.config.id in self.slow else self.limit.predicted_s([job.config])[0]
        check = check_latency(seconds, self.limit.budget_s)
        return {"latency_ms": 1e3 * seconds, "backend": "ort-cpu", "budget_ms": 1e3 * check.budget_s,
                "within_budget": check.within}


def test_a_config_measured_over_the_latency_budget_is_flagged_and_never_the_winner(tmp_path, synthetic_evaluator,
                                                                                   limit):
    settings = settings_for("random", trials=6, rungs=("smoke",), promote=1.0, latency=limit.to_settings())
    ladder = settings.fidelity_ladder()
    study, url, *_ = run_synthetic(tmp_path, settings, MeasuredEvaluator(synthetic_evaluator(ladder), limit), "a")
    first = study_facts(study, url).decision.winner
    assert first is not None and not first.over_latency

    # the same search again, with the winner measured slow: everything else as before
    study, url, *_ = run_synthetic(tmp_path, settings, MeasuredEvaluator(synthetic_evaluator(ladder), limit,
                                                                         slow={first.config.id}), "b")
    facts = study_facts(study, url)
    decision = facts.decision
    assert [s.config.id for s in decision.over_latency] == [first.config.id]
    assert decision.winner is not None and decision.winner.config.id != first.config.id
    assert decision.winner.latency["within_budget"]
    summary = summarize(study, url, facts)
    assert [r["config_id"] for r in summary["over_latency_budget"]] == [first.config.id]
    assert summary["winner"]["over_latency_budget"] is False
    assert summary["settings"]["latency"]["budget_ms"] == pytest.approx(1e3 * limit.budget_s)
    assert f"{first.config.id:<34} measured" in render(summary) and "OVER the latency budget" in render(summary)
    figures = build_figures(collect(study, url, facts, summary))
    flagged = [t for t in figures["pareto-latency"].data if t.name == "measured over the latency budget"]
    assert len(flagged) == 2 and list(flagged[1].x) == [pytest.approx(10e3 * limit.budget_s)]  # one per panel
    measured = [t for t in figures["latency-macs"].data if t.name == "v2 measured"]
    assert len(measured[0].x) == len({e.job.config.network_key() for e in facts.ledger.entries})


def test_a_family_of_latency_budgets_gives_each_member_its_own(tmp_path, synthetic_evaluator, model, limit):
    """``--mac-budget 150M,300M --latency-budget T,L``: each member's candidates, baselines and verdict within
    its own latency budget; a network measured between the two is flagged at the tighter member only."""
    budgets = (150_000_000, BUDGET)
    tight = LatencyLimit(float(np.median(limit.predicted_s(feasible_grid(SPACE, budgets[0]).configs))), model)
    assert tight.budget_s < limit.budget_s
    latency = dataclasses.replace(limit.to_settings(), budgets_s=(tight.budget_s, limit.budget_s))
    settings = settings_for("gp", trials=8, rungs=("smoke",), promote=1.0, latency=latency, budgets=budgets)
    assert settings.latency_limit().budget_s == limit.budget_s  # what every proposal must fit: the loosest
    plan = plan_for(settings)
    for member, own in zip(plan.members, (tight, limit)):
        assert member.baselines.latency.budget_s == own.budget_s
        chosen = [b for b in (member.baselines.width, member.baselines.compound) if b]
        assert chosen and all(own.fits(b.config) for b in chosen + list(member.baselines.width_resolution))
    problem = SearchProblem(SPACE, *[list(x) for x in zip(*distinct_networks(SPACE))], BUDGET,
                            settings.fidelity_ladder(), budgets=budgets, limits=settings.member_limits())
    assert all(tight.fits(problem.candidates[i]) and problem.costs[i] <= budgets[0] for i in problem.within(0))
    assert len(problem.within(0)) < sum(1 for c in problem.costs if c <= budgets[0])  # the latency binds there

    evaluator = MeasuredEvaluator(synthetic_evaluator(settings.fidelity_ladder()), limit)
    study, url, *_ = run_synthetic(tmp_path, settings, evaluator)
    facts = study_facts(study, url)
    (cheap, dear) = (d for _, d in facts.verdicts)
    between = {n.config.id for n in facts.ledger.networks(0, "smoke").values()
               if n.macs <= budgets[0] and tight.budget_s < n.latency["latency_ms"] / 1e3 <= limit.budget_s}
    assert between  # trained for the 300M member, within 150M MACs, over the tighter latency budget
    assert {n.config.id for n in cheap.over_latency} == between and cheap.winner.config.id not in between
    assert all(n.latency["latency_ms"] / 1e3 <= tight.budget_s for n in cheap.ranked)
    assert not dear.over_latency and dear.winner.latency["within_budget"]
    text = render(summarize(study, url, facts))
    assert f"==== budget 150M MACs and {1e3 * tight.budget_s:g} ms ====" in text
    assert f"and {1e3 * tight.budget_s:g}, {1e3 * limit.budget_s:g} ms on ort-cpu" in text


def test_latency_budgets_alone_give_each_member_the_dearest_network_within_its_own(model, limit):
    networks = list(distinct_networks(SPACE))
    predicted = dict(zip((c.id for c, _ in networks), model.predict_seconds([c for c, _ in networks])))
    dearest = max((n for n in networks if predicted[n[0].id] <= limit.budget_s), key=lambda n: n[1])
    tight = predicted[dearest[0].id] * 0.9999  # just too tight for the dearest network within the looser
    latency = dataclasses.replace(limit.to_settings(), budgets_s=(tight, limit.budget_s))
    within = [[m for c, m in networks if predicted[c.id] <= b] for b in (tight, limit.budget_s)]
    assert latency_family_budgets(SPACE, latency) == (max(within[0]), dearest[1]) and max(within[0]) < dearest[1]
    same = dataclasses.replace(latency, budgets_s=(limit.budget_s, limit.budget_s * 1.000001))
    with pytest.raises(CLIError, match="two budgets admit the same dearest network"):
        latency_family_budgets(SPACE, same)


def _run(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "archsearch", "run", "--mac-budget", "300M", "--profile", "tiny",
                           "--quiet", "--no-dashboard", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ARCHSEARCH_STUDIES": str(tmp_path), **(env or {})})


@pytest.mark.parametrize("args, message", [
    (["--latency-budget", "4"], "--latency-budget: cannot read '4'"),
    (["--latency-budget", "4ms", "--latency-backend", "tpu"], "--latency-backend: unknown 'tpu'"),
    (["--latency-budget", "1us", "--latency-model", "MODEL"], "--latency-budget: 1 us is below the fastest"),
    (["--latency-model", "MODEL"], "--latency-model: it predicts a latency budget"),
    (["--latency-budget", "4ms", "--latency-model", "nowhere.json"], "latency model: no such file"),
    (["--no-mac", "--latency-budget", "1us", "--latency-model", "MODEL"], "--latency-budget: 1 us is below the fastest"),
    (["--no-mac"], "--mac-budget: give a MAC budget, a --latency-budget, or both"),
    (["--latency-budget", "5ms,8ms", "--latency-model", "MODEL"], "--latency-budget: 2 budgets for 1 MAC budget(s)"),
    (["--latency-budget", "8ms,8ms", "--latency-model", "MODEL"], "--latency-budget: '8ms,8ms' gives a budget twice"),
    (["--latency-budget", "5ms,", "--latency-model", "MODEL"], "--latency-budget: '5ms,' has an empty entry"),
    (["--latency-budget", "5ms,abc", "--latency-model", "MODEL"], "--latency-budget: cannot read 'abc'"),
])
def test_bad_latency_options_are_one_line_and_exit_2(tmp_path, imagenette, model, args, message, capsys):
    path = save_model(model, tmp_path / "model.json")
    budget = [] if "--no-mac" in args else ["--mac-budget", "300M"]  # a latency budget may stand alone
    code = main(["run", *budget, "--profile", "tiny", "--quiet", "--no-dashboard",
                 *[str(path) if a == "MODEL" else a for a in args if a != "--no-mac"]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().count("\n") == 0 and message in err, err


@pytest.mark.slow
def test_a_run_times_every_trained_network_and_checks_the_budget(tmp_path, imagenette, model):
    """Real training (tiny) and real timings on ONNX Runtime; the budget from the synthetic model."""
    path = save_model(model, tmp_path / "model.json")
    done = _run(tmp_path, "--trials", "1", "--study", "lat", "--latency-budget", "20ms", "--latency-model", str(path),
                env={"ARCHSEARCH_TRIAL_LATENCY": "1"})
    assert done.returncode == 0, done.stderr
    assert "latency budget 20 ms on features latency model" in done.stdout
    study = optuna.load_study(study_name="lat", storage=f"sqlite:///{tmp_path}/archsearch.db")
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert trained
    for t in trained:
        lat = t.user_attrs["latency"]
        assert lat["backend"] == "ort-cpu" and lat["batch"] == 1 and lat["threads"] == 1 and lat["runs"] >= 30
        assert lat["latency_ms"] > 0 and lat["within_budget"] == (lat["latency_ms"] <= 20)
    summary = json.loads((tmp_path / "lat" / "summary.json").read_text())
    if summary["winner"] is not None:
        assert summary["winner"]["latency_ms"] <= 20 and not summary["winner"]["over_latency_budget"]
    flagged = {r["config_id"] for r in summary["over_latency_budget"]}
    assert flagged == {t.user_attrs["config_id"] for t in trained  # baselines too: any network may win
                       if not t.user_attrs["latency"]["within_budget"]}
