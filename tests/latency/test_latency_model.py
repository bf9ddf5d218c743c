"""Latency predictors on synthetic tables with a known answer, their selection on held-out networks, the
saved model, latency budgets (with MAC budgets), the measured-latency check, and the latency figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from archsearch.latency import (
    LatencyBudgetError,
    LatencyLimit,
    LatencyRecord,
    check_latency,
    load_model,
    parse_latency,
)
from archsearch.latency.blocks import distinct_blocks, feature_names, network_blocks
from archsearch.latency.evaluate import interleaved_split, select_model
from archsearch.latency.figures import (
    AccuracyPoint,
    LatencyPoint,
    accuracy_pareto_figure,
    grid_points,
    latency_macs_figure,
    pareto_front,
    table_points,
)
from archsearch.latency.predict import (
    KINDS,
    error_summary,
    feature_matrix,
    fit_model,
    save_model,
)
from archsearch.latency.table import LatencyTable
from archsearch.model.config import ArchConfig
from archsearch.model.cost import distinct_networks
from archsearch.model.space import FactorSpace
from archsearch.search import BudgetError, feasible_grid

SPACE_DICT = {"family": "v2", "num_classes": 1000,
              "resolution": {"min": 128, "max": 192, "step": 32}, "width": {"min": 0.25, "max": 0.75, "step": 0.125},
              "mv2_depth": {"min": 0.5, "max": 1.5, "step": 0.5}, "vit_depth": {"min": 0.5, "max": 1.5, "step": 0.5}}
SPACE = FactorSpace.from_dict(SPACE_DICT)
NETWORKS = list(distinct_networks(SPACE))
CONFIGS = [c for c, _ in NETWORKS]
MACS = [m for _, m in NETWORKS]


# ---- synthetic truths --------------------------------------------------------------------------------
def feature_truth(configs, seed=0):
    """Latency that is exactly a non-negative combination of the features plus a constant."""
    rng = np.random.default_rng(seed)
    x = feature_matrix(CONFIGS, feature_names())
    scale = np.where(x.max(axis=0) > 0, x.max(axis=0), 1.0)
    weights = rng.uniform(0.1, 1.0, x.shape[1])
    return 0.3 + (feature_matrix(configs, feature_names()) / scale) @ weights


def lut_truth(seed=0):
    rng = np.random.default_rng(seed)
    entries = {b.key: float(rng.uniform(0.05, 2.0)) for b in distinct_blocks(CONFIGS)}
    overhead = float(rng.uniform(0.2, 1.0))
    return entries, overhead, lambda cs: np.array([overhead + sum(entries[b.key] for b in network_blocks(c))
                                                   for c in cs])


def smooth_truth(configs):
    x = SPACE.encode(configs)
    return np.exp(0.5 + 1.2 * x[:, 0] + 0.8 * x[:, 1] ** 2 + 0.3 * x[:, 2] + 0.2 * np.sin(3 * x[:, 3]))


def synthetic_table(latency, lut=None) -> LatencyTable:
    meta = {"space": SPACE_DICT, "num_classes": 1000, "backend": "ort-cpu", "batch": 1, "threads": 1,
            "device": "synthetic", "runtime": "synthetic", "precision": "fp32"}
    latency = tuple(float(v) for v in latency)
    return LatencyTable(Path("synthetic.csv"), SPACE, meta, "wall", tuple(CONFIGS), tuple(MACS), latency, latency,
                        latency, dict(lut or {}))


def fit(kind, idx, y, lut=None):
    settings = {"backend": "ort-cpu", "batch": 1, "threads": 1, "device": "synthetic", "num_classes": 1000}
    return fit_model(kind, SPACE, SPACE_DICT, settings, [CONFIGS[i] for i in idx], [y[i] for i in idx], lut)


SPLIT_KEPT, SPLIT_HELD = interleaved_split(MACS, 0.3)


# ---- predictors --------------------------------------------------------------------------------------
def test_interleaved_split_holds_out_an_even_share_of_the_cost_range():
    kept, held = SPLIT_KEPT, SPLIT_HELD
    assert sorted(kept + held) == list(range(len(CONFIGS))) and not set(kept) & set(held)
    assert len(held) == math.floor(len(CONFIGS) * 0.3)
    order = sorted(range(len(MACS)), key=lambda i: (MACS[i], i))
    ranks = sorted(order.index(i) for i in held)
    assert max(np.diff(ranks)) <= math.ceil(1 / 0.3)  # no stretch of the cost range without a held-out one


def test_feature_regression_recovers_a_linear_truth():
    y = feature_truth(CONFIGS)
    model = fit("features", SPLIT_KEPT, y)
    predicted = model.predict_ms([CONFIGS[i] for i in SPLIT_HELD])
    np.testing.assert_allclose(predicted, y[SPLIT_HELD], rtol=1e-6)
    assert all(c >= 0 for c in model.features.coef) and model.features.intercept >= 0


def test_lookup_table_sums_blocks_and_fits_the_overhead():
    entries, overhead, truth = lut_truth()
    y = truth(CONFIGS)
    model = fit("lut", SPLIT_KEPT, y, entries)
    assert model.lut.overhead_ms == pytest.approx(overhead, rel=1e-9)
    np.testing.assert_allclose(model.predict_ms([CONFIGS[i] for i in SPLIT_HELD]), y[SPLIT_HELD], rtol=1e-9)
    missing = dict(entries)
    missing.pop(network_blocks(CONFIGS[0])[0].key)
    with pytest.raises(Exception, match="not in the lookup table"):
        fit("lut", range(len(CONFIGS)), y, missing)


def test_gp_learns_a_smooth_log_latency():
    y = smooth_truth(CONFIGS)
    model = fit("gp", SPLIT_KEPT, y)
    errors = error_summary(model.predict_ms([CONFIGS[i] for i in SPLIT_HELD]), y[SPLIT_HELD])
    assert errors["median_ape"] < 1.0 and errors["kendall_tau"] > 0.95


def test_gp_correction_repairs_a_misspecified_base():
    """Truth = features x a smooth factor the features cannot express: the GP on the residual recovers it."""
    y = feature_truth(CONFIGS) * np.exp(0.4 * np.sin(4 * SPACE.encode(CONFIGS)[:, 1]))
    held = [CONFIGS[i] for i in SPLIT_HELD]
    plain = error_summary(fit("features", SPLIT_KEPT, y).predict_ms(held), y[SPLIT_HELD])
    corrected = error_summary(fit("features+gp", SPLIT_KEPT, y).predict_ms(held), y[SPLIT_HELD])
    assert corrected["median_ape"] < plain["median_ape"] / 2


@pytest.mark.parametrize("truth, kinds, expected", [
    ("features", KINDS, {"features", "features+gp"}),
    ("lut", ("lut", "features", "gp"), {"lut"}),
])
def test_selection_keeps_the_kind_that_predicts_held_out_networks(truth, kinds, expected, tmp_path):
    entries, _, lut_fn = lut_truth(seed=1)
    y = feature_truth(CONFIGS, seed=1) if truth == "features" else lut_fn(CONFIGS)
    model = select_model(synthetic_table(y, entries), kinds=kinds, holdout=0.25, folds=3)
    ev = model.evaluation
    assert ev["chosen"] in expected and model.kind == ev["chosen"]
    assert set(ev["kinds"]) == set(kinds)
    assert ev["kinds"][ev["chosen"]]["held_out"]["median_ape"] < 1e-3
    assert len(ev["held_out_ids"]) + ev["kept"] == len(CONFIGS)
    # saved and loaded: the same predictions, every kind of component included
    loaded = load_model(save_model(model, tmp_path / "m.json"))
    assert loaded.kind == model.kind and loaded.evaluation == ev
    np.testing.assert_array_equal(loaded.predict_ms(CONFIGS), model.predict_ms(CONFIGS))


def test_without_a_lookup_table_the_lut_kinds_are_not_fitted():
    model = select_model(synthetic_table(smooth_truth(CONFIGS)), holdout=0.25, folds=2)
    assert set(model.evaluation["kinds"]) == {"features", "features+gp", "gp"}


def test_saved_gp_models_predict_the_same_after_loading(tmp_path):
    y = feature_truth(CONFIGS) * np.exp(0.2 * SPACE.encode(CONFIGS)[:, 0] ** 2)
    for kind in ("gp", "features+gp"):
        model = fit(kind, SPLIT_KEPT, y)
        loaded = load_model(save_model(model, tmp_path / f"{kind}.json"))
        np.testing.assert_array_equal(loaded.predict_ms(CONFIGS), model.predict_ms(CONFIGS))
        assert loaded.predict_seconds(CONFIGS[:3]).tolist() == (model.predict_ms(CONFIGS[:3]) / 1e3).tolist()


def test_model_prices_other_class_counts_with_its_own_head_and_refuses_another_family():
    model = fit("features", range(len(CONFIGS)), feature_truth(CONFIGS))
    ten = [c.replace(num_classes=10) for c in CONFIGS[:5]]
    np.testing.assert_array_equal(model.predict_ms(ten), model.predict_ms(CONFIGS[:5]))
    with pytest.raises(Exception, match="is v1; this model is of v2"):
        model.predict_ms([ArchConfig("v1", variant="xxs")])


def test_bad_model_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path, needle in ((tmp_path / "none.json", "no such file"), (bad, "cannot read")):
        with pytest.raises(Exception, match=needle) as info:
            load_model(path)
        assert "\n" not in str(info.value)


# ---- budgets -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("4ms", 4e-3), ("4 ms", 4e-3), ("0.004s", 4e-3), ("250us", 250e-6),
                                           ("250µs", 250e-6), ("1.5 MS", 1.5e-3), ("2s", 2.0)])
def test_parse_latency(text, seconds):
    assert parse_latency(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["4", "abc", "-1ms", "0ms", "4 mss", "", "ms"])
def test_parse_latency_errors_name_the_option(text):
    with pytest.raises(LatencyBudgetError) as info:
        parse_latency(text)
    assert str(info.value).startswith("--latency-budget: ") and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def linear_model():
    """A lookup-table model of random block latencies: latency far from proportional to MACs."""
    entries, _, truth = lut_truth(seed=2)
    return fit("lut", range(len(CONFIGS)), truth(CONFIGS), entries)


def test_mac_and_latency_budgets_together(linear_model):
    predicted = linear_model.predict_seconds(CONFIGS)
    mac_budget = int(np.median(MACS))
    latency_budget = float(np.quantile(predicted, 0.5))
    feasible = feasible_grid(SPACE, mac_budget, LatencyLimit(latency_budget, linear_model))
    chosen = {c.network_key() for c in feasible.configs}
    assert chosen
    for config, macs, seconds in zip(CONFIGS, MACS, predicted):
        fits = macs <= mac_budget and seconds <= latency_budget
        assert (config.network_key() in chosen) == fits
    assert all(m <= mac_budget for m in feasible.macs)
    assert max(linear_model.predict_seconds(feasible.configs)) <= latency_budget
    # each budget alone admits more than both together
    everything = max(MACS)
    assert len(feasible_grid(SPACE, everything, LatencyLimit(latency_budget, linear_model)).configs) > len(chosen)
    assert len(feasible_grid(SPACE, mac_budget).configs) > len(chosen)


def test_budgets_below_every_config_are_one_line(linear_model):
    predicted = linear_model.predict_seconds(CONFIGS)
    fastest = CONFIGS[int(predicted.argmin())]
    with pytest.raises(LatencyBudgetError) as info:
        feasible_grid(SPACE, max(MACS), LatencyLimit(0.5 * float(predicted.min()), linear_model))
    assert str(info.value).startswith("--latency-budget: ") and fastest.id in str(info.value)
    with pytest.raises(BudgetError, match="^--mac-budget: "):
        feasible_grid(SPACE, min(MACS) - 1, LatencyLimit(1.0, linear_model))
    # both: within the MAC budget, the fastest is named
    mac_budget = int(np.quantile(MACS, 0.5))
    within = [(c, p) for c, m, p in zip(CONFIGS, MACS, predicted) if m <= mac_budget]
    with pytest.raises(LatencyBudgetError, match="within the MAC budget") as info:
        feasible_grid(SPACE, mac_budget, LatencyLimit(0.5 * min(p for _, p in within), linear_model))
    assert min(within, key=lambda cp: cp[1])[0].id in str(info.value)


def record_of(median_ms: float) -> LatencyRecord:
    return LatencyRecord("x", "ort-cpu", 1, 1, 3, 1, 1, median_ms, median_ms, median_ms, median_ms, median_ms,
                         "cpu", "onnxruntime", "fp32", (0,), "now")


def test_measured_latency_over_the_budget_is_flagged():
    budget = parse_latency("4ms")
    over, under = check_latency(record_of(4.2), budget), check_latency(record_of(3.9), budget)
    assert not over.within and over.over_by_pct == pytest.approx(5.0) and "OVER" in over.describe()
    assert under.within and under.over_by_pct == 0
    assert check_latency(budget, budget).within  # at the budget is within it
    assert not check_latency(budget * 1.0001, budget).within


# ---- figures -----------------------------------------------------------------------------------------
def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    points = [AccuracyPoint(f"c{i}", float(rng.uniform(0.3, 0.8)), int(rng.integers(1, 50)) * 10**7,
                            float(rng.uniform(1, 20))) for i in range(60)]
    for cost in (lambda p: p.macs, lambda p: p.latency_ms):
        dominated = {p.config_id for p in points for q in points if q.accuracy >= p.accuracy
                     and cost(q) <= cost(p) and (q.accuracy > p.accuracy or cost(q) < cost(p))}
        front = pareto_front(points, cost)
        assert {p.config_id for p in front} == {p.config_id for p in points} - dominated
        assert [cost(p) for p in front] == sorted(cost(p) for p in front)


def test_latency_macs_figure_shows_both_families_measured_and_predicted():
    points = [LatencyPoint(f"{f}-{i}", f, 10**8 * (i + 1), 2.0 + i, measured) for f in ("v1", "v2")
              for i in range(3) for measured in (False, True)]
    fig = latency_macs_figure(points, latency_budget_ms=3.5, mac_budget=2 * 10**8, backend="ort-cpu")
    names = [t.name for t in fig.data]
    for family in ("v1", "v2"):
        assert f"{family} measured" in names and f"{family} predicted (grid)" in names
    assert any(n.startswith("latency budget 3.5 ms") for n in names)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_points_from_a_model_and_a_table(linear_model):
    grid = grid_points(linear_model, SPACE)
    assert [p.config_id for p in grid] == [c.id for c in CONFIGS] and not any(p.measured for p in grid)
    assert [p.latency_ms for p in grid] == linear_model.predict_ms(CONFIGS).tolist()
    table = synthetic_table(smooth_truth(CONFIGS))
    measured = table_points(table)
    assert all(p.measured for p in measured) and [p.macs for p in measured] == MACS
    assert [p.latency_ms for p in measured] == list(table.latency_ms)


def test_accuracy_pareto_figure_crosses_out_configs_over_the_latency_budget():
    points = [AccuracyPoint("a", 0.6, 2 * 10**8, 3.0), AccuracyPoint("b", 0.7, 3 * 10**8, 5.0, over_budget=True),
              AccuracyPoint("c", 0.5, 10**8, 2.0, label="baseline")]
    fig = accuracy_pareto_figure(points, mac_budget=3 * 10**8, latency_budget_ms=4.0)
    flagged = [t for t in fig.data if t.name == "measured over the latency budget"]
    assert len(flagged) == 2  # one per panel
    assert list(flagged[1].x) == [5.0] and list(flagged[0].x) == [300.0]
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
