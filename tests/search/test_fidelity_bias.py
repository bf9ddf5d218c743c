"""The fidelity bias: the part of a cheap rung's score that does not carry to the reference."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from archsearch.search import fidelity
from archsearch.search.fidelity import fidelity_bias, rung_noise

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


def test_every_rung_of_the_cpu_ladder_carries_its_bias_and_the_reference_none():
    for name in ("smoke-e2", "smoke"):
        assert rung_noise(name, []).bias == fidelity.FIDELITY_BIAS_STD[name] > 0
        assert rung_noise(name, [[0.3, 0.32]]).bias == fidelity.FIDELITY_BIAS_STD[name]  # repeats do not touch it
    assert rung_noise("reference", []).bias == 0.0
    assert math.isfinite(rung_noise("tiny", []).std)
