"""The fidelity bias: the part of a cheap rung's score that does not carry to the reference."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from archsearch.model.config import ArchConfig
from archsearch.model.space import FactorSpace
from archsearch.search import noise as fidelity
from archsearch.search.fidelity import ladder
from archsearch.search.finalists import choose_finalists
from archsearch.search.jobs import Ledger, study_noise
from archsearch.search.noise import (
    fidelity_bias,
    resolution_slope,
    rung_bias,
    rung_noise,
)
from archsearch.search.planner import DataSize, expected_half_width, expected_width_line

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_fidelity_bias_recovers_a_known_bias_beyond_the_seed_noise():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.6, 0.75, 4000)
    bias, noise = 0.04, 0.03
    rung = 0.2 + 0.5 * reference + rng.normal(0, bias, 4000) + rng.normal(0, noise, 4000)
    found, df = fidelity_bias(list(rung), list(reference), noise)
    assert df == 3998 and found == pytest.approx(bias, rel=0.05)
    assert fidelity_bias(list(0.1 + 2 * reference), list(reference), 0.01)[0] == 0.0  # a perfect line: none
    with pytest.raises(ValueError, match="at least 3"):
        fidelity_bias([0.1, 0.2], [0.5, 0.6], 0.01)


def test_the_bias_priors_in_the_code_are_what_the_benchmark_tables_measure():
    spec = importlib.util.spec_from_file_location("fidelity_bias_bench", BENCHMARKS / "fidelity_bias.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    found = bench.measured()
    assert {"quick", "smoke", "smoke-e2"} <= set(found)
    for profile, (bias, df, tables) in found.items():
        assert df >= 9 and tables
        assert fidelity.FIDELITY_BIAS_STD[profile] == pytest.approx(round(bias, 3), abs=1e-9), profile


def test_the_screening_rungs_carry_their_bias_against_the_reference_and_the_reference_is_unmeasured():
    for name in ("smoke-e2", "smoke"):
        bias = rung_bias(name, "reference", [], 0.03)
        assert bias.std == fidelity.FIDELITY_BIAS_STD[name] > 0 and bias.df == fidelity.BIAS_DF[name]
    assert not rung_bias("reference", "full resolution", [], 0.02).known  # nobody measured it: not 0
    assert not rung_bias("smoke", "decide", [], 0.03).known  # the prior is against the reference only
    assert math.isfinite(rung_noise("tiny", []).std) and not rung_noise("tiny", []).known


def test_a_bias_measured_as_zero_still_has_an_upper_end():
    """Four networks whose scatter about the line is below the seed noise: the bias is 0, and its interval is the
    scatter's 95 % interval less the noise (the old interval, taken around the clipped 0, was [0, 0])."""
    higher = [0.50, 0.55, 0.60, 0.65]
    rung = [0.41, 0.44, 0.49, 0.56]  # slope 1, residuals about the line +-0.01 (orthogonal to it)
    pairs = list(zip(rung, higher))
    bias = rung_bias("smoke", "decide", pairs, 0.03)
    variance = 4 * 0.01**2 / 2  # n - 2 = 2 degrees of freedom
    upper = math.sqrt(variance * 2 / stats.chi2.ppf(0.025, 2) - 0.03**2)
    assert bias.std == 0.0 and bias.df == 2
    assert bias.interval() == pytest.approx((0.0, upper), abs=1e-12) and upper > 0.03


def test_the_deciding_rung_carries_its_bias_against_full_side_into_the_verdict_and_the_plan(monkeypatch):
    """``decide`` (half side) has a prior against ``decide-full`` (the same recipe at full side), not against the
    reference: a study deciding at ``decide`` counts it (its verdict is then about full side), and the planner's
    expected interval includes it."""
    assert fidelity.bias_target("decide") == "decide-full" and fidelity.bias_target("smoke-e2") == "reference"
    measured = rung_bias("decide", "decide-full", [], 0.013)
    assert measured.known and measured.std == fidelity.FIDELITY_BIAS_STD["decide"]
    assert measured.df == fidelity.BIAS_DF["decide"]
    assert (measured.slope, measured.slope_se, measured.slope_df) == fidelity.RESOLUTION_SLOPE["decide"]
    assert measured.slope < 0 and measured.shift(160) > measured.shift(224) == 0 > measured.shift(320)
    assert not rung_bias("decide", "reference", [], 0.013).known  # measured against full side only
    top = study_noise(Ledger([]), ladder(("smoke-e2", "decide"), finalists=2))[-1]
    assert top.bias.against == "decide-full" and top.bias_std == fidelity.FIDELITY_BIAS_STD["decide"]
    data = DataSize(train=(900,) * 10, val=(390,) * 10)
    lad = ladder(("smoke-e2", "smoke", "decide"), finalists=2, repeats=1)
    with_bias, comparisons, against = expected_half_width(lad, data, "imagenette")
    assert "bias (against decide-full)" in expected_width_line(lad, data, "imagenette")
    monkeypatch.delitem(fidelity.FIDELITY_BIAS_STD, "decide")  # the same figure without the bias (nor its shift)
    without, _, none = expected_half_width(lad, data, "imagenette")
    assert comparisons == 12 and with_bias > without and (against, none) == ("decide-full", None)


def test_resolution_slope_recovers_a_known_shift_within_its_interval_and_the_bias_left_about_it():
    """Gains from a half-side rung to full side that fall by 4 points per doubling of resolution: the fitted
    slope's t interval holds it in about 95 % of draws, and a per-network bias beyond the noise is found."""
    rng = np.random.default_rng(3)
    sides = [128, 160, 192, 224, 256, 288, 320, 128, 160, 256, 320, 224]
    x = np.log2(np.array(sides) / 224)
    held, lefts = 0, []
    for _ in range(400):
        gains = 0.06 - 0.04 * x + rng.normal(0, 0.02, len(sides)) + rng.normal(0, 0.015, len(sides))
        slope, se, left, df = resolution_slope(list(gains), sides, 0.02)
        assert df == len(sides) - 2
        held += abs(slope + 0.04) <= stats.t.ppf(0.975, df) * se
        lefts.append(left)
    assert 0.92 <= held / 400 <= 0.98, held
    assert np.median(lefts) == pytest.approx(0.015, abs=0.004)
    with pytest.raises(ValueError, match="one resolution"):
        resolution_slope([0.01, 0.02, 0.03], [224, 224, 224], 0.01)


def test_the_resolution_slope_in_the_code_is_what_the_calibration_tables_measure():
    """``RESOLUTION_SLOPE['decide']``: each calibrated network's gain from ``decide`` to ``decide-full`` (the means
    over its seeds) fitted on log2 of its resolution, here by numpy's least squares."""
    sides: dict[str, int] = {}

    def means(name: str) -> dict[str, float]:
        scores: dict[str, list[float]] = {}
        with open(BENCHMARKS / name) as f:
            for row in csv.DictReader(f):
                scores.setdefault(row["config_id"], []).append(float(row["top1"]))
                sides[row["config_id"]] = json.loads(row["config"])["resolution"]
        return {k: float(np.mean(v)) for k, v in scores.items()}

    truth, decided = means("calibrate_300M_truth.csv"), means("calibrate_300M_decide.csv")
    ids = sorted(truth)
    assert len(ids) == 9 and set(ids) <= set(decided)
    x = np.log2([sides[c] / 224 for c in ids])
    gains = np.array([truth[c] - decided[c] for c in ids])
    (slope, _), residual, *_ = np.polyfit(x, gains, 1, full=True)
    se = math.sqrt(residual[0] / (len(ids) - 2) / np.sum((x - x.mean()) ** 2))
    want_slope, want_se, df = fidelity.RESOLUTION_SLOPE["decide"]
    assert (want_slope, want_se, df) == (pytest.approx(slope, abs=5e-5), pytest.approx(se, abs=5e-5), len(ids) - 2)



def test_the_finalists_are_chosen_for_the_fidelity_the_verdict_moves_them_to():
    """Screened at half side, a 320-px network leads a 160-px one by 1 point; the verdict at ``decide`` would
    move them apart by the resolution shift (3.92 points per doubling, the other way). With the shifts the
    160-px network is the finalist; without them the 320-px one."""
    space = FactorSpace.default("v2")
    high, low = ArchConfig("v2", resolution=320, width=0.25), ArchConfig("v2", resolution=160, width=0.5)
    fillers = [ArchConfig("v2", resolution=r, width=w) for r, w in ((192, 0.375), (256, 0.375), (288, 0.25))]
    screening = tuple((c, 0, score, 0.005) for c, score in
                      [(high, 0.50), (low, 0.49), *((f, 0.40) for f in fillers)])
    bias = rung_bias("decide", "decide-full", [], 0.0131)
    shifts = tuple(bias.shift(c.resolution) for c in (high, low))
    assert shifts[1] - shifts[0] == pytest.approx(-fidelity.RESOLUTION_SLOPE["decide"][0])
    assert choose_finalists(space, 0, screening, (high, low), (), 1) == (high,)
    assert choose_finalists(space, 0, screening, (high, low), (), 1, shifts) == (low,)
