"""``run --objective quantized``: the verdict is taken on the deciding networks once quantized, so a study
whose float and quantized scores rank its networks differently names another winner."""

from __future__ import annotations

import dataclasses

from helpers.studies import run_synthetic, settings_for

from archsearch.report.summary import summarize
from archsearch.results.judge import study_facts
from archsearch.results.quantized import RESULTS_ATTR, SETTINGS_ATTR
from archsearch.search.jobs import Ledger


def _quantized(number: int, top1: float, float_top1: float) -> dict:
    drop = 100 * (float_top1 - top1)
    return {"method": "hybrid", "bits": 8, "executed": "ONNX Runtime int8", "top1": top1, "drop": drop,
            "drop_interval": [drop - 1, drop + 1], "agreement": 0.9, "size_bytes": 1000, "latency": None,
            "int8_kernels": None, "note": "", "val_correct": "", "float_latency_ms": None}


def test_the_quantized_objective_changes_the_winner(tmp_path, synthetic_evaluator):
    settings = settings_for(trials=6, rungs=("smoke", "short"), finalists=2)
    evaluator = synthetic_evaluator(settings.fidelity_ladder())
    study, url, plan, _ = run_synthetic(tmp_path, settings, evaluator)
    top = plan.ladder.top
    float_facts = study_facts(study, url)
    deciding = Ledger(study.get_trials()).at(top)
    assert len({e.job.config.network_key() for e in deciding}) >= 4  # 2 finalists and the baselines
    float_winner = float_facts.decision.winner.config
    # int8 reverses the order: the float winner loses the most, the float loser the least
    best = max(e.accuracy for e in deciding)
    results = {str(e.number): _quantized(e.number, best + 0.05 - e.accuracy, e.accuracy) for e in deciding}
    study.set_user_attr(RESULTS_ATTR, results)
    study.set_user_attr(SETTINGS_ATTR, {"bits": 8, "method": "hybrid", "objective": "float"})
    assert study_facts(study, url).decision.winner.config == float_winner  # measured, not decided on

    study.set_user_attr(SETTINGS_ATTR, {"bits": 8, "method": "hybrid", "objective": "quantized"})
    facts = study_facts(study, url)
    quantized_winner = facts.decision.winner.config
    float_loser = min(deciding, key=lambda e: e.accuracy).job.config
    assert quantized_winner != float_winner
    assert quantized_winner.network_key() == float_loser.network_key()
    assert facts.decision.winner.mean == max(r["top1"] for r in results.values())
    summary = summarize(study, url, facts)
    assert summary["quantized"]["objective"] == "quantized"
    rows = {r["trial"]: r for r in summary["quantized"]["networks"]}
    assert set(rows) == {e.number for e in deciding}
    for e in deciding:
        assert rows[e.number]["float_top1"] == e.accuracy
        assert rows[e.number]["quantized_top1"] == results[str(e.number)]["top1"]


def test_a_deciding_network_without_a_quantized_result_is_not_compared(tmp_path, synthetic_evaluator):
    settings = settings_for(trials=6, rungs=("smoke", "short"), finalists=2)
    study, url, plan, _ = run_synthetic(tmp_path, settings, synthetic_evaluator(settings.fidelity_ladder()))
    deciding = Ledger(study.get_trials()).at(plan.ladder.top)
    kept = sorted(deciding, key=lambda e: e.accuracy)[:2]  # only the two weakest were quantized
    study.set_user_attr(RESULTS_ATTR, {str(e.number): _quantized(e.number, e.accuracy, e.accuracy) for e in kept})
    study.set_user_attr(SETTINGS_ATTR, {"bits": 8, "method": "hybrid", "objective": "quantized"})
    facts = study_facts(study, url)
    assert {n.config.network_key() for n in facts.decision.ranked} <= {e.job.config.network_key() for e in kept}


def test_the_dashboard_shows_float_and_quantized_and_both_latency_fronts(tmp_path, synthetic_evaluator):
    from archsearch.report.dashboard import BUILDERS, SECTIONS, collect
    from archsearch.report.figures.quantized import quantized_figure

    settings = settings_for(trials=6, rungs=("smoke", "short"), finalists=2)
    study, url, plan, _ = run_synthetic(tmp_path, settings, synthetic_evaluator(settings.fidelity_ladder()))
    deciding = Ledger(study.get_trials()).at(plan.ladder.top)
    results = {}
    for i, e in enumerate(deciding):
        results[str(e.number)] = {**_quantized(e.number, e.accuracy - 0.01 * i, e.accuracy),
                                  "latency": {"latency_ms": 2.0 + i}, "float_latency_ms": 5.0 + i}
    study.set_user_attr(RESULTS_ATTR, results)
    study.set_user_attr(SETTINGS_ATTR, {"bits": 8, "method": "hybrid", "objective": "float"})
    assert BUILDERS["quantized"] is quantized_figure and "quantized" in SECTIONS
    figure = quantized_figure(collect(study, url))
    by_name = {t.name: t for t in figure.data}
    assert list(by_name["float"].y[:len(deciding)]) == [100 * e.accuracy for e in deciding]
    quantized = by_name["quantized (int8)"]
    assert [round(y, 9) for y in quantized.y] == [round(100 * (e.accuracy - 0.01 * i), 9)
                                                 for i, e in enumerate(deciding)]
    assert list(quantized.error_y.array) == [1.0] * len(deciding)  # drop - low end of its interval
    # latency: quantized 2, 3, ... ms against float 5, 6, ... ms; each front starts at its fastest network
    assert by_name["quantized front"].x[0] == 2.0 and by_name["float front"].x[0] == 5.0


def test_under_the_quantized_objective_the_latency_budget_reads_the_int8_latency(tmp_path, synthetic_evaluator):
    from archsearch.results.quantized import quantized_ledger

    settings = settings_for(trials=6, rungs=("smoke", "short"), finalists=2)
    study, _, plan, _ = run_synthetic(tmp_path, settings, synthetic_evaluator(settings.fidelity_ladder()))
    ledger = Ledger(study.get_trials())
    deciding = ledger.at(plan.ladder.top)
    # every network measured at 12 ms in float against a 10 ms budget; int8 makes the first one 8 ms
    ledger = Ledger.of(dataclasses.replace(e, latency={"latency_ms": 12.0, "budget_ms": 10.0, "within_budget": False})
                       for e in ledger.entries)
    results = {e.number: {**_quantized(e.number, e.accuracy, e.accuracy), "latency": {"latency_ms": 8.0 if i == 0
                                                                                      else 11.0}}
               for i, e in enumerate(deciding)}
    view = quantized_ledger(ledger, plan.ladder.top, results)
    fast = deciding[0].job.config.network_key()
    for e in view.entries:
        if e.job.config.network_key() == fast:
            assert e.latency["latency_ms"] == 8.0 and e.latency["within_budget"] is True
        elif any(d.job.config.network_key() == e.job.config.network_key() for d in deciding):
            assert e.latency["latency_ms"] == 11.0 and e.latency["within_budget"] is False
        else:
            assert e.latency["latency_ms"] == 12.0  # not quantized: its float latency stands
