"""The law across a family's budgets on a synthetic multi-budget study with a known law: recovered at the
budgets, predicts a budget it never saw, downsizes onto each budget's best, gone when the accuracies are
shuffled; its statements say only what the intervals carry."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers.surfaces import fit_gp, scored
from scipy import stats

import archsearch.results.permutation as permutation_module
from archsearch.model.cost import closed_form_cost, distinct_networks
from archsearch.model.space import FACTORS, FactorSpace
from archsearch.results.formula import (
    WINDOW,
    FactorLaw,
    FormulaDeclined,
    ScalingFormula,
)
from archsearch.results.law import (
    deciding_law,
    downsize,
    efficientnet_exponents,
    family_law,
    held_out_law,
    law_statements,
)
from archsearch.results.permutation import PermutationTest
from archsearch.search.networks import Network
from archsearch.search.noise import Noise

SPACE = FactorSpace.default("v2")
NETWORKS = list(distinct_networks(SPACE))
BUDGETS = (75_000_000, 150_000_000, 300_000_000, 600_000_000)
PER_BAND = 12  # trained networks in each budget's band (budget / 2, budget]
BELOW = 2  # and under half the smallest budget: in the smallest budget's band too
NOISE = 0.005
TOL = 0.02  # on this surface the runner-up at every budget is further than this behind the best


def truth(config, macs: int) -> float:
    """Spending MACs pays; the best resolution grows as MACs^0.2 and the depths are best at 1.25 and 0.5, so
    the best network per budget grows in width and resolution and keeps its depths."""
    best_resolution = 160 * (macs / 75e6) ** 0.2
    return (0.3 * math.log(macs / 1e8) - math.log2(config.resolution / best_resolution) ** 2
            - 4 * (config.mv2_depth - 1.25) ** 2 - 4 * (config.vit_depth - 0.5) ** 2)


def best(budget: int, low: float = 0.0):
    """The truly best network with MACs in [low * budget, budget], by brute force over the grid."""
    return max(((c, m) for c, m in NETWORKS if low * budget <= m <= budget), key=lambda pair: truth(*pair))


@pytest.fixture(scope="module")
def study():
    """``PER_BAND`` networks in each budget's band and ``BELOW`` cheaper ones, scored with noise."""
    rng = np.random.default_rng(0)
    bands = [(0, BUDGETS[0] / 2)] + [(b / 2, b) for b in BUDGETS]
    trained = []
    for (low, high), n in zip(bands, (BELOW,) + (PER_BAND,) * len(BUDGETS)):
        band = [(c, m) for c, m in NETWORKS if low < m <= high]
        trained += [band[i] for i in rng.choice(len(band), n, replace=False)]
    return trained, scored(trained, truth, NOISE, rng)


@pytest.fixture(scope="module")
def real(study):
    surrogate = fit_gp(SPACE, *study, NOISE)
    return surrogate, family_law(surrogate, SPACE, study[0], BUDGETS, n_samples=128, shuffles=0)


def jobs(study):
    trained, accuracies = study
    return [(c, m, float(a), 0) for (c, m), a in zip(trained, accuracies)]


def test_the_surface_has_one_clear_best_per_budget():
    for budget in BUDGETS:
        scores = sorted((truth(c, m) for c, m in NETWORKS if m <= budget), reverse=True)
        assert scores[0] - scores[1] > TOL


def test_recovers_the_known_exponents_within_their_intervals(real):
    _, formula = real
    assert isinstance(formula, ScalingFormula), formula.describe()
    assert formula.budget == BUDGETS[-1] and formula.macs_range == (BUDGETS[0], BUDGETS[-1])
    assert [level.macs for level in formula.levels] == list(BUDGETS)
    # the law the formula estimates: the best network in each level's window, fitted on log MACs
    winners = [best(b, WINDOW) for b in BUDGETS]
    x = np.log([m for _, m in winners])
    known = {f: float(np.polyfit(x, np.log([getattr(c, f) for c, _ in winners]), 1)[0]) for f in FACTORS}
    assert known["width"] > 0.3 and known["resolution"] > 0.15  # the surface's law: both grow, depths flat
    assert abs(known["mv2_depth"]) < 1e-9 and abs(known["vit_depth"]) < 1e-9
    laws = {law.factor: law for law in formula.laws}
    for factor in FACTORS:
        low, high = laws[factor].interval
        assert low - 1e-9 <= known[factor] <= high + 1e-9, (factor, known[factor], laws[factor])  # round-off
    assert laws["width"].interval[0] > 0.2 and laws["resolution"].interval[0] > 0  # growth, told apart from 0
    assert sum(level.best == c for level, (c, _) in zip(formula.levels, winners)) >= 3
    statements = law_statements(formula)
    assert statements[0].startswith("resolution grows") and statements[1].startswith("width grows")
    assert statements[2].startswith("mv2_depth stays flat")


def test_a_budget_without_evidence_is_no_level(real, study):
    surrogate, _ = real
    trained = [(c, m) for c, m in study[0] if not BUDGETS[0] < m <= BUDGETS[1]]
    formula = family_law(surrogate, SPACE, trained, BUDGETS, n_samples=64, shuffles=0)
    assert isinstance(formula, ScalingFormula), formula.describe()
    assert [level.macs for level in formula.levels] == [BUDGETS[0], BUDGETS[2], BUDGETS[3]]


def test_too_few_or_too_close_budgets_decline(real, study):
    surrogate, _ = real
    two = family_law(surrogate, SPACE, study[0], BUDGETS[2:], shuffles=0)
    assert isinstance(two, FormulaDeclined) and "2 MAC levels (budgets) given, a formula needs 3" in two.reason
    close = family_law(surrogate, SPACE, study[0], (450_000_000, 500_000_000, 600_000_000), shuffles=0)
    assert isinstance(close, FormulaDeclined) and "the levels (budgets) span only 450M-600M MACs" in close.reason
    assert law_statements(close) == [f"no law across budgets: {close.reason}"]
    with pytest.raises(ValueError, match="budgets: need positive MAC budgets"):
        family_law(surrogate, SPACE, study[0], ())


def test_shuffled_accuracies_decline_where_the_real_ones_pass_the_permutation_test(monkeypatch, real, study):
    monkeypatch.setattr(permutation_module, "ALPHA", 0.12)  # 8 shuffles can pass: p = 1 / 9
    surrogate, _ = real
    formula = family_law(surrogate, SPACE, study[0], BUDGETS, n_samples=64, shuffles=8)
    assert isinstance(formula, ScalingFormula), formula.describe()
    assert formula.permutation.shuffles == 8 and formula.permutation.as_extreme == 0
    trained, accuracies = study
    fake = np.random.default_rng(1).permutation(accuracies)
    declined = family_law(fit_gp(SPACE, trained, fake, NOISE), SPACE, trained, BUDGETS, n_samples=64, shuffles=8)
    assert isinstance(declined, FormulaDeclined), declined.describe()
    assert declined.reason.startswith("the evidence is too thin")


@pytest.mark.parametrize("index", [1, 2])
def test_the_law_without_an_inner_budget_predicts_its_best(study, index):
    held_out = BUDGETS[index]
    held = held_out_law(jobs(study), SPACE, BUDGETS, held_out, noise_std=[NOISE] * len(study[0]),
                        n_samples=128, shuffles=0)
    assert held.dropped == PER_BAND
    assert isinstance(held.formula, ScalingFormula), held.formula.describe()
    others = [b for b in BUDGETS if b != held_out]
    assert [level.macs for level in held.formula.levels] == others and held.formula.budget == BUDGETS[-1]
    pick = held.pick
    assert pick.macs <= held_out and not pick.extrapolated
    assert truth(pick.config, pick.macs) >= truth(*best(held_out)) - TOL, pick.config.id
    stored = json.loads(json.dumps(held.to_dict()))
    assert stored["pick"]["config_id"] == pick.config.id and stored["dropped"] == PER_BAND
    assert [level["macs"] for level in stored["formula"]["levels"]] == others


def test_the_smallest_budgets_band_is_everything_up_to_it(study):
    held = held_out_law(jobs(study), SPACE, BUDGETS, BUDGETS[0], noise_std=NOISE, n_samples=64, shuffles=0)
    assert held.dropped == PER_BAND + BELOW
    assert held.formula.macs_range == (BUDGETS[1], BUDGETS[3]) and held.pick.extrapolated
    assert held.pick.macs <= BUDGETS[0]


def test_held_out_refuses_bad_input(study):
    observations = jobs(study)
    with pytest.raises(ValueError, match=r"held_out: 200M MACs is not one of the budgets \(75M, 150M, 300M, 600M\)"):
        held_out_law(observations, SPACE, BUDGETS, 200_000_000)
    with pytest.raises(ValueError, match="leaving one out needs 4 budgets .* got 3"):
        held_out_law(observations, SPACE, BUDGETS[1:], BUDGETS[2])
    with pytest.raises(ValueError, match="noise_std: need one per observation"):
        held_out_law(observations, SPACE, BUDGETS, BUDGETS[2], noise_std=[NOISE, NOISE])


def test_downsizing_from_the_top_lands_near_each_budgets_best(real):
    surrogate, formula = real
    start, _ = best(BUDGETS[-1])
    steps = downsize(formula, start, BUDGETS, SPACE, surrogate)
    assert [s.budget for s in steps] == list(BUDGETS[::-1]) and steps[0].config == start
    for step in steps:
        assert step.macs == closed_form_cost(step.config).macs <= step.budget and SPACE.contains(step.config)
        # among the 3 best of the 75-971 networks that fit: a chain of grid snaps can drift a step off the
        # best (from the 600M best, 256 px at width 0.5, it reaches 300M at 224 px and width 0.375, the
        # runner-up there, under some draws), where the law applied at a budget directly does not
        better = sum(truth(c, m) > truth(step.config, step.macs) for c, m in NETWORKS if m <= step.budget)
        assert better < 3, (step.budget, step.config.id, better)
    assert json.loads(json.dumps(steps[-1].to_dict()))["config_id"] == steps[-1].config.id


def test_downsizing_from_a_network_over_every_budget_fits_each(real):
    surrogate, formula = real
    start = SPACE.config({"resolution": 256, "width": 1.0, "mv2_depth": 1.0, "vit_depth": 1.0})
    assert closed_form_cost(start).macs > BUDGETS[-1]
    steps = downsize(formula, start, BUDGETS, SPACE, surrogate)
    assert len(steps) == len(BUDGETS)
    assert all(s.macs <= s.budget and s.std >= 0 for s in steps)
    with pytest.raises(ValueError, match="no law to downsize by"):
        downsize(FormulaDeclined(BUDGETS[-1], "thin"), start, BUDGETS, SPACE, surrogate)


def law(factor: str, exponent: float, low: float, high: float) -> FactorLaw:
    return FactorLaw(factor, 1.0, exponent, (low, high), (-1.0, 1.0))


def formula_of(*laws: FactorLaw) -> ScalingFormula:
    return ScalingFormula(BUDGETS[-1], (BUDGETS[0], BUDGETS[-1]), laws, (), None, 30, 256)


def test_statements_say_only_what_the_intervals_carry():
    statements = law_statements(formula_of(
        law("resolution", 0.02, -0.05, 0.09), law("width", 0.5, 0.32, 0.66),
        law("mv2_depth", 0.1, -0.2, 0.3), law("vit_depth", -0.2, -0.3, -0.1)))
    assert statements == [
        "resolution stays flat (exponent 0.02 [-0.05, 0.09])",
        "width grows fastest: x1.41 per doubling of MACs [x1.25, x1.58]",
        "the evidence does not say what mv2_depth does (exponent 0.10 [-0.20, 0.30])",
        "vit_depth shrinks: x0.87 per doubling of MACs [x0.81, x0.93]",
    ]


def test_fastest_only_where_the_intervals_are_apart():
    overlapping = law_statements(formula_of(
        law("resolution", 0.2, 0.05, 0.35), law("width", 0.4, 0.3, 0.5),
        law("mv2_depth", 0.0, 0.0, 0.0), law("vit_depth", 0.0, -0.01, 0.16)))  # 0.16: just too wide to be flat
    assert overlapping[0].startswith("resolution grows: ") and overlapping[1].startswith("width grows: ")
    assert overlapping[2] == "mv2_depth stays flat (exponent 0.00 [0.00, 0.00])"
    assert overlapping[3].startswith("the evidence does not say what vit_depth does")
    # a factor the evidence says nothing about may grow as fast: no "fastest" while its interval reaches as high
    unknown = law_statements(formula_of(
        law("resolution", 0.0, -0.05, 0.05), law("width", 0.5, 0.32, 0.66),
        law("mv2_depth", 0.1, -0.2, 0.4), law("vit_depth", 0.0, -0.05, 0.05)))
    assert unknown[1] == "width grows: x1.41 per doubling of MACs [x1.25, x1.58]"


def test_efficientnet_exponents():
    # alpha 1.2 (both depths), beta 1.1 (width), gamma 1.15 (resolution); MACs double per unit of phi
    assert efficientnet_exponents() == pytest.approx(
        {"resolution": 0.2016, "width": 0.1375, "mv2_depth": 0.2630, "vit_depth": 0.2630}, abs=1e-4)


# the law from the deciding rung: networks trained there with per-image hits, as a family's verdicts see them

IMAGES = 2000


def deciding(winners: list, others_per_budget: int = 4, gap: float = 0.1, seed: int = 0) -> list[Network]:
    """At each budget: ``winners[k]`` scoring ``gap`` above ``others_per_budget`` other networks in the budget's
    window, each scored on the same ``IMAGES`` validation images (independent hits)."""
    rng = np.random.default_rng(seed)
    nets = []
    for budget, (config, macs) in zip(BUDGETS, winners):
        window = [(c, m) for c, m in NETWORKS if WINDOW * budget <= m <= budget and c != config]
        rivals = [window[i] for i in rng.choice(len(window), others_per_budget, replace=False)]
        for (c, m), p in [((config, macs), 0.6 + gap)] + [(r, 0.6) for r in rivals]:
            hits = rng.random(IMAGES) < p
            nets.append(Network(c, m, 2, "decide", c.resolution, (0,), (float(hits.mean()),), (len(nets),),
                                {0: hits}))
    return nets


DECIDE_NOISE = Noise(0.005, 0.005, 0, "test", df=20)


def test_the_deciding_law_recovers_the_law_of_each_budgets_best():
    winners = [best(b, WINDOW) for b in BUDGETS]
    formula = deciding_law(deciding(winners), DECIDE_NOISE, BUDGETS, relabelings=99)
    assert isinstance(formula, ScalingFormula), formula.describe()
    assert formula.source.startswith("posterior draws of the deciding rung") and formula.samples == 4000
    assert [level.best for level in formula.levels] == [c for c, _ in winners]
    assert all(level.share > 0.99 for level in formula.levels)  # 10 points ahead on 2,000 images
    x = np.log([m for _, m in winners])
    laws = {law.factor: law for law in formula.laws}
    for factor in FACTORS:
        known = float(np.polyfit(x, np.log([getattr(c, factor) for c, _ in winners]), 1)[0])
        low, high = laws[factor].interval
        assert low - 1e-9 <= known <= high + 1e-9, (factor, known, laws[factor])
    assert laws["mv2_depth"].interval == (0.0, 0.0) and laws["vit_depth"].interval == (0.0, 0.0)
    # four grid points off a straight line: growth is told apart from 0, with the lack of fit in the interval
    assert laws["width"].interval[0] > 0 and laws["resolution"].interval[0] > 0
    assert laws["width"].interval[1] - laws["width"].interval[0] > 0.2
    assert formula.permutation.passed and "relabelled within each budget" in formula.describe()


def test_networks_the_evidence_cannot_tell_apart_give_no_law():
    winners = [best(b, WINDOW) for b in BUDGETS]
    formula = deciding_law(deciding(winners, gap=0.0), Noise(0.02, 0.02, 0, "test", df=20), BUDGETS,
                           relabelings=99)
    assert isinstance(formula, FormulaDeclined) and formula.reason.startswith("the evidence is too thin")
    assert formula.fitted is not None and max(level.share for level in formula.fitted.levels) < 0.9
    statements = law_statements(formula)
    assert statements[0] == f"no law across budgets: {formula.reason}" and len(statements) == 1 + len(FACTORS)


def test_clear_winners_off_any_power_law_are_not_carried():
    """Certain winners whose shapes zigzag: no draw doubts which is best, but four points off a line make no
    sharp law -- the lack of fit widens each exponent, and the relabelled networks do as well."""
    shapes = [(256, 0.5, 2.0, 0.5), (160, 0.75, 0.5, 2.0), (288, 0.5, 1.5, 0.5), (192, 1.0, 0.5, 1.5)]
    winners = []
    for budget, values in zip(BUDGETS, shapes):
        fitting = [(c, m) for c, m in NETWORKS if WINDOW * budget <= m <= budget]
        winners.append(min(fitting, key=lambda pair: sum(abs(math.log(getattr(pair[0], f) / v))
                                                         for f, v in zip(FACTORS, values))))
    formula = deciding_law(deciding(winners), DECIDE_NOISE, BUDGETS, relabelings=99)
    assert isinstance(formula, FormulaDeclined), formula.describe()
    assert all(level.share > 0.99 for level in formula.fitted.levels)
    assert not any(law.carried for law in formula.fitted.laws)
    x = np.log([m for _, m in winners])
    for law in formula.fitted.laws:  # the winners are certain, so the interval is the fit's own 90 % interval
        fit = stats.linregress(x, np.log([getattr(c, law.factor) for c, _ in winners]))
        half = stats.t.ppf(0.95, len(BUDGETS) - 2) * fit.stderr
        assert law.interval[0] < fit.slope - 0.8 * half and law.interval[1] > fit.slope + 0.8 * half, law
    assert all("alone: not carried" in line for line in law_statements(formula)[1:])


def test_too_few_budgets_with_deciding_networks_decline():
    nets = [n for n in deciding([best(b, WINDOW) for b in BUDGETS]) if n.macs > BUDGETS[1]]
    formula = deciding_law(nets, DECIDE_NOISE, BUDGETS, relabelings=9)
    assert isinstance(formula, FormulaDeclined) and formula.fitted is None
    assert "2 of the 4 budgets have a deciding-rung network" in formula.reason


@pytest.mark.parametrize("index", [1, 2])
def test_the_deciding_law_without_an_inner_budget_predicts_its_best(index):
    held_out = BUDGETS[index]
    nets = deciding([best(b, WINDOW) for b in BUDGETS])
    observations = [(n.config, n.macs, truth(n.config, n.macs), 0) for n in nets]  # the GP only snaps
    held = held_out_law(observations, SPACE, BUDGETS, held_out, noise_std=NOISE, deciding=nets,
                        deciding_noise=DECIDE_NOISE)
    assert held.dropped == 5 and isinstance(held.formula, ScalingFormula), held.formula.describe()
    assert [level.macs for level in held.formula.levels] == [b for b in BUDGETS if b != held_out]
    assert held.pick.macs <= held_out
    better = sum(truth(c, m) > truth(held.pick.config, held.pick.macs) for c, m in NETWORKS if m <= held_out)
    assert better < 3, (held.pick.config.id, better)


def test_a_declined_law_says_the_factors_it_carries_alone():
    passed = PermutationTest("w", 0.1, (0.5,) * 99, 0, smaller_is_extreme=True)
    failed = PermutationTest("w", 0.5, (0.1,) * 99, 0, smaller_is_extreme=True)
    fitted = formula_of(FactorLaw("resolution", 200, 0.1, (-0.5, 0.7), (-0.6, 0.6), failed),
                        FactorLaw("width", 0.5, 0.4, (0.2, 0.6), (-0.6, 0.6), passed),
                        FactorLaw("mv2_depth", 1, 0.0, (-0.2, 0.2), (-1.0, 1.0), passed),
                        FactorLaw("vit_depth", 1, 0.0, (-0.05, 0.05), (-1.0, 1.0), passed))
    statements = law_statements(FormulaDeclined(BUDGETS[-1], "thin", fitted=fitted))
    assert statements == [
        "no law across budgets: thin",
        "resolution alone: not carried (exponent 0.10 [-0.50, 0.70]; 1.00 x a blind pick's, p = 1 against "
        "relabelled networks)",
        "width alone: width grows: x1.32 per doubling of MACs [x1.15, x1.52]; 0.33 x a blind pick's, p = 0.01 "
        "against relabelled networks",
        "mv2_depth alone: mv2_depth x1.00 per doubling of MACs [x0.87, x1.15], neither growth nor shrinkage shown; "
        "0.20 x a blind pick's, p = 0.01 against relabelled networks",
        "vit_depth alone: vit_depth stays flat (exponent 0.00 [-0.05, 0.05]); 0.05 x a blind pick's, p = 0.01 "
        "against relabelled networks",
    ]
