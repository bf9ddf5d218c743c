"""The scaling formula on a synthetic study with a known scaling law: recovered where the evidence is, gone
(or changed) when the accuracies are shuffled or random, declined on thin evidence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers.surfaces import fit_gp, scored

import archsearch.results.formula as formula_module
from archsearch.gp.surrogate import GPSurrogate
from archsearch.model.cost import closed_form_cost, distinct_networks
from archsearch.model.space import FACTORS, FactorSpace
from archsearch.results.formula import (
    WINDOW,
    FormulaDeclined,
    ScalingFormula,
    apply_formula,
    derive_formula,
    formula_text,
)

SPACE = FactorSpace.default("v2")
BUDGET = 1_000_000_000
# At every MAC level the best config has these three factors (each step away costs more accuracy than the
# MACs it frees can buy) and the widest width that fits: width ~ MACs^0.5, the others flat.
OPTIMUM = {"resolution": 192, "mv2_depth": 1.25, "vit_depth": 0.5}
NOISE = 0.005


def truth(config, macs: int) -> float:
    return (0.1 * math.log(macs / 1e8) - math.log2(config.resolution / OPTIMUM["resolution"]) ** 2
            - (config.mv2_depth - OPTIMUM["mv2_depth"]) ** 2 - (config.vit_depth - OPTIMUM["vit_depth"]) ** 2)


@pytest.fixture(scope="module")
def study():
    """30 distinct networks between 35 % of the budget and the budget, scored with noise."""
    band = [(c, m) for c, m in distinct_networks(SPACE) if 0.35 * BUDGET <= m <= BUDGET]
    rng = np.random.default_rng(0)
    trained = [band[i] for i in rng.choice(len(band), 30, replace=False)]
    return trained, scored(trained, truth, NOISE, rng)


@pytest.fixture(scope="module")
def real(study):
    trained, accuracies = study
    surrogate = fit_gp(SPACE, trained, accuracies, NOISE)
    return surrogate, derive_formula(surrogate, SPACE, trained, BUDGET, shuffles=20)


def known_width_exponent(lo: float, hi: float) -> float:
    """d log width / d log MACs along the optimum, over the widths whose MACs a level in [lo, hi] can pick."""
    points = [(w, closed_form_cost(SPACE.config({**OPTIMUM, "width": w})).macs) for w in SPACE.range("width").values()]
    points = [(w, m) for w, m in points if WINDOW * lo <= m <= hi]
    assert len(points) >= 3
    return float(np.polyfit(np.log([m for _, m in points]), np.log([w for w, _ in points]), 1)[0])


def test_recovers_the_known_exponents_within_their_intervals(real, study):
    surrogate, formula = real
    assert isinstance(formula, ScalingFormula), formula.describe()
    laws = {law.factor: law for law in formula.laws}
    known = {"resolution": 0.0, "width": known_width_exponent(*formula.macs_range), "mv2_depth": 0.0, "vit_depth": 0.0}
    for factor in FACTORS:
        low, high = laws[factor].interval
        assert low <= known[factor] <= high, (factor, known[factor], laws[factor])
    assert laws["width"].interval[0] > 0.1  # width grows with MACs, told apart from a flat factor...
    assert laws["resolution"].interval[1] < known["width"]  # ...and from resolution, which stays put
    assert formula.relative_width < 0.35
    # no GP fitted to the accuracies shuffled across configs gives a formula as narrow
    test = formula.permutation
    assert test.shuffles == 20 and test.as_extreme == 0 and test.p_value == pytest.approx(1 / 21)
    assert min(test.shuffled) > formula.relative_width
    # the fit is where the evidence is: from the cheapest trained config to the budget
    assert formula.macs_range == (min(m for _, m in study[0]), BUDGET)
    widest = max(w for w in SPACE.range("width").values()
                 if closed_form_cost(SPACE.config({**OPTIMUM, "width": w})).macs <= BUDGET)
    assert abs(laws["width"].at_budget - widest) <= SPACE.range("width").step
    assert abs(laws["resolution"].at_budget - OPTIMUM["resolution"]) <= SPACE.range("resolution").step


@pytest.mark.parametrize("kind", ["shuffled", "random"])
def test_shuffled_or_random_accuracies_change_the_exponents_or_decline(real, study, kind):
    trained, accuracies = study
    rng = np.random.default_rng(1)
    fake = rng.permutation(accuracies) if kind == "shuffled" else rng.normal(accuracies.mean(), accuracies.std(),
                                                                             len(accuracies))
    formula = derive_formula(fit_gp(SPACE, trained, fake, NOISE), SPACE, trained, BUDGET)
    if formula.declined:
        assert "the evidence is too thin" in formula.reason
    else:
        moved = max(abs(a.exponent - b.exponent) for a, b in zip(formula.laws, real[1].laws))
        assert moved >= 0.2, formula.describe()


@pytest.mark.parametrize("shuffle", [12, 13])
def test_a_shuffled_surface_declines_by_the_permutation_test(monkeypatch, study, shuffle):
    monkeypatch.setattr(formula_module, "MAX_RELATIVE_WIDTH", 10.0)  # only the permutation test can decline
    trained, accuracies = study
    fake = np.random.default_rng(shuffle).permutation(accuracies)
    surrogate = GPSurrogate(SPACE, seed=0, n_restarts=1).fit([c for c, _ in trained], fake, noise_std=NOISE)
    formula = derive_formula(surrogate, SPACE, trained, BUDGET, shuffles=20)
    assert isinstance(formula, FormulaDeclined), formula.describe()
    test = formula.permutation
    assert test.shuffles == 20 and test.p_value > 0.05 and test.smaller_is_extreme
    assert formula.reason.startswith("the evidence is too thin: GPs fitted to the accuracies shuffled across configs")
    assert f"in {test.as_extreme} of 20 shuffles (p = {test.p_value:.2g}" in formula.reason
    assert json.loads(json.dumps(formula.to_dict()))["permutation"]["p_value"] == pytest.approx(test.p_value)


def test_declines_with_too_few_configs(real, study):
    trained = study[0][:5]
    formula = derive_formula(real[0], SPACE, trained, BUDGET)
    assert isinstance(formula, FormulaDeclined)
    assert "5 distinct trained configs" in formula.reason and formula.describe().startswith("no scaling formula: ")


def test_declines_on_a_narrow_mac_span(real, study):
    trained = [(c, m) for c, m in study[0] if m >= 0.8 * BUDGET]
    assert len(trained) >= 6
    formula = derive_formula(real[0], SPACE, trained, BUDGET)
    assert formula.declined and "span only" in formula.reason
    assert formula.to_dict() == {"declined": True, "reason": formula.reason, "budget": BUDGET, "permutation": None,
                                 "fitted": None}


def test_text_and_json(real):
    _, formula = real
    stored = json.loads(json.dumps(formula.to_dict()))
    assert stored["declined"] is False and stored["macs_range"] == list(formula.macs_range)
    assert set(stored["factors"]) == set(FACTORS)
    assert formula_text(stored) == formula.describe()
    assert stored["permutation"]["p_value"] == pytest.approx(1 / 21)
    assert formula.describe().endswith("gave a formula as narrow in 0 of 20 shuffles (p = 0.048)")
    width = stored["factors"]["width"]
    low, high = width["interval_90"]
    assert f"width      = {width['at_budget']:.3g} * (MACs / 1000M)^{width['exponent']:.2f} [{low:.2f}, {high:.2f}]" \
        in formula.describe()


def test_apply_fits_the_budget_and_flags_extrapolation(real):
    surrogate, formula = real
    inside = apply_formula(formula, BUDGET, SPACE, surrogate)
    assert inside.macs <= BUDGET and SPACE.contains(inside.config) and not inside.extrapolated
    assert {f: getattr(inside.config, f) for f in OPTIMUM} == OPTIMUM  # the known optimum's flat factors
    for budget in (100_000_000, 3_000_000_000):
        pick = apply_formula(formula, budget, SPACE, surrogate)
        assert pick.macs <= budget and pick.extrapolated and pick.std >= 0


def test_v1_scales_the_variant_the_evidence_prefers(monkeypatch):
    monkeypatch.setattr(formula_module, "MAX_RELATIVE_WIDTH", 1.0)  # about the variant, not about declining
    space = FactorSpace.default("v1")
    budget = 600_000_000
    band = [(c, m) for c, m in distinct_networks(space) if 0.35 * budget <= m <= budget]
    rng = np.random.default_rng(0)
    trained = [band[i] for i in rng.choice(len(band), 30, replace=False)]
    accuracies = [truth(c, m) + 0.1 * (c.variant == "xs") + rng.normal(0, NOISE) for c, m in trained]
    surrogate = GPSurrogate(space, seed=0).fit([c for c, _ in trained], accuracies, noise_std=NOISE)
    formula = derive_formula(surrogate, space, trained, budget, shuffles=0)
    assert isinstance(formula, ScalingFormula), formula.describe()
    assert formula.variant == "xs" and "variant xs" in formula.describe()
    assert all(level.best.variant == "xs" for level in formula.levels)
    assert apply_formula(formula, budget, space, surrogate).config.variant == "xs"


def make_study(tmp_path, trained, accuracies):
    """A stored study (v2, GP strategy) with these trained configs, as ``archsearch run`` records them."""
    import tomllib

    import optuna

    from archsearch.model.space import DEFAULT_SPACES
    from archsearch.search import Job
    from archsearch.search.fidelity import ladder
    from archsearch.search.params import config_params, distributions
    from archsearch.search.settings import StudySettings
    from archsearch.search.study import make_storage, open_study

    url = f"sqlite:///{tmp_path}/formula.db"
    settings = StudySettings(space=tomllib.loads(DEFAULT_SPACES["v2"].read_text()), mac_budget=BUDGET,
                             ladder=ladder(["smoke"]).to_dict(), data="synthetic", strategy="gp", seed=0,
                             trials=len(trained))
    study = open_study("f", make_storage(url), settings)
    for (config, macs), accuracy in zip(trained, accuracies):
        study.add_trial(optuna.trial.create_trial(
            params=config_params(config, SPACE), distributions=distributions(SPACE), value=float(accuracy),
            user_attrs={**Job(config, 0, 0).attrs(), "macs": macs, "accuracy": float(accuracy)}))
    return url


def test_cli_applies_the_formula(tmp_path, capsys, study, monkeypatch):
    from archsearch.cli import main

    url = make_study(tmp_path, *study)
    monkeypatch.setenv("ARCHSEARCH_SHUFFLES", "20")  # the default, whatever the environment says
    assert main(["formula", "--study", "f", "--storage", url, "--mac-budget", "600M", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["macs"] <= 600_000_000 and out["extrapolated"] is False and out["formula"]["declined"] is False
    assert out["formula"]["permutation"]["shuffles"] == 20 and out["formula"]["permutation"]["p_value"] <= 0.05
    monkeypatch.setenv("ARCHSEARCH_SHUFFLES", "0")  # the same formula, untested: the rest is about the text
    assert main(["formula", "--study", "f", "--storage", url, "--mac-budget", "3G"]) == 0
    captured = capsys.readouterr()
    assert "width      = " in captured.out and "extrapolates" in captured.err


def test_cli_says_why_there_is_no_formula(tmp_path, capsys, study):
    from archsearch.cli import main

    url = make_study(tmp_path, study[0][:5], study[1][:5])
    assert main(["formula", "--study", "f", "--storage", url, "--mac-budget", "600M"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no scaling formula: the evidence is too thin: 5 distinct trained configs" in err[0]
