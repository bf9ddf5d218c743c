"""A study's own noise and bias: priors with their degrees of freedom, pooled with what the study measured."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.evaluator import SyntheticEvaluator
from helpers.studies import run_synthetic, settings_for

from archsearch.results.decision import margin
from archsearch.results.judge import study_facts
from archsearch.results.selection import draw
from archsearch.search.networks import Network
from archsearch.search.noise import NOISE_STD, chi2_interval, rung_noise, t95

DECIDING = ("smoke-e2", "reference")


def test_a_study_recovers_its_own_noise_and_bias_within_their_intervals(tmp_path):
    """Screening at smoke-e2 with a known per-network bias, deciding at reference with a known seed noise, both
    away from the Imagenette priors (which weigh 2 df on other data): the study's estimates cover the truth and
    count the study's degrees of freedom; the noise sits nearer the truth than its prior. (The finalists were
    chosen on their screening scores, which truncates their spread of bias: the bias estimate leans low.)"""
    noise, bias = 0.03, 0.06
    settings = settings_for("gp", trials=14, rungs=DECIDING, finalists=8, repeats=8)
    evaluator = SyntheticEvaluator(settings.fidelity_ladder(), noise=noise, bias=bias,
                                   rung_noise={0: NOISE_STD["smoke-e2"]})
    study, url, plan, _ = run_synthetic(tmp_path, settings, evaluator)
    facts = study_facts(study, url, plan)
    top = facts.noise[1]
    assert top.repeats_df >= 8 and top.df == top.repeats_df + 2
    low, high = top.interval()
    assert low < noise < high
    assert abs(top.std - noise) < abs(NOISE_STD["reference"] - noise)
    screening = facts.noise[0].bias
    assert screening.against == "reference" and screening.study_df >= 8  # 8 finalists + 3 baselines at both
    low, high = screening.interval()
    assert low < bias < high


def test_an_unmeasured_profile_never_gives_a_narrower_interval_than_a_measured_one():
    rng = np.random.default_rng(0)
    for case in range(40):
        spread = rng.uniform(0.0, 0.08)
        repeats = [list(0.6 + spread * rng.standard_normal(int(rng.integers(1, 4)))) for _ in range(int(rng.integers(1, 6)))]
        a = _network([0.62 + 0.01 * case % 3, 0.63])
        b = _network([0.60, 0.61])
        unknown = rung_noise("tiny", repeats)
        assert not unknown.known or unknown.repeats_df > 0
        for profile in NOISE_STD:
            measured = rung_noise(profile, repeats)
            assert measured.known
            _, (lo_m, hi_m), _ = margin(a, b, measured.std)
            _, (lo_u, hi_u), _ = margin(a, b, unknown.std)
            assert hi_u - lo_u >= hi_m - lo_m - 1e-12, (case, profile)
            assert unknown.std * t95(unknown.df) >= measured.std * t95(measured.df) - 1e-12, (case, profile)
            width = {}
            for name, n in (("measured", measured), ("unknown", unknown)):
                found = draw([a, b], n, seed=case, n=4000).simultaneous([(0, 1)])[(0, 1)]
                width[name] = found[1][1] - found[1][0]
            assert width["unknown"] >= 0.95 * width["measured"], (case, profile, width)


def test_without_any_measurement_the_noise_is_unknown_and_not_zero():
    n = rung_noise("tiny", [])
    assert not n.known and n.std >= max(NOISE_STD.values()) and n.prior is None
    assert "unknown" in n.source


def test_the_chi_square_interval_covers_the_true_std_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(2000):
        sample = rng.normal(0, 0.02, size=(4, 2))
        ss = float(((sample - sample.mean(axis=1, keepdims=True)) ** 2).sum())
        low, high = chi2_interval(math.sqrt(ss / 4), 4)
        covered += low < 0.02 < high
    assert covered / 2000 == pytest.approx(0.95, abs=0.015)


def _network(scores):
    return Network(None, 1, 0, "x", 64, tuple(range(len(scores))), tuple(scores), tuple(range(len(scores))))
