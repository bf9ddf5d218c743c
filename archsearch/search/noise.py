"""How wrong one score is: seed noise and fidelity bias, measured on Imagenette as priors and by each study.

**Noise.** A score is one training run: another seed gives another score. The seed-to-seed std of each profile
was measured on Imagenette on the CPU (``NOISE_STD``, with its degrees of freedom ``NOISE_DF``; sources in
benchmarks/RESULTS.md). That figure is a prior: where a study repeats networks with other seeds, the pooled
within-network sum of squares of a rung updates it as a scaled inverse chi-square would,
``s^2 = (df_prior * prior^2 + SS) / (df_prior + df)``, with ``df_prior + df`` degrees of freedom. On data other
than Imagenette the prior counts at most ``OTHER_DATA_DF`` degrees of freedom and the run says that the figure
is still Imagenette's.

**Bias.** A cheap rung also misjudges some networks in a way no seed averages out (it rewards what trains
fastest). Regressed on the same networks' scores at a higher fidelity, a rung's scores scatter by more than
their seed noise; that excess is the rung's bias (``fidelity_bias``). Imagenette figures against the
``reference`` profile are ``FIDELITY_BIAS_STD`` (with ``BIAS_DF``); a study with a deciding rung measures its
screening rungs' bias against it from the networks it trained at both, and pools the two like the noise.

**Resolution.** A rung trained at a fraction of each network's side misjudges it by an amount that follows its
resolution: at half side the low-resolution networks (64-80 px trained) are handicapped most, so their gain at
full side is largest. That part is systematic, not noise: ``RESOLUTION_SLOPE`` is the change of a network's gain
from the rung to its target per doubling of its resolution, fitted with its standard error on the calibration's
networks (``resolution_slope``). A verdict moves each network by it (``Bias.shift``) and draws the slope's
error; the bias std is then what is left about that line.

**Unknown.** A profile nobody measured has no prior. It never counts as noise 0 or bias 0: its noise is taken
as no smaller than the largest measured one with a single prior degree of freedom (so its interval is never
narrower than a measured profile's on the same data) and significance is withheld; an unmeasured bias is
said to be unmeasured, and no claim beyond the rung is made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from ..train.recipe import Profile

# Seed-to-seed std of top-1 at each profile (one network, several seeds) and its degrees of freedom, measured on
# Imagenette on the CPU; benchmarks/RESULTS.md, "Noise of a score" and "Does the answer hold?".
# ``decide``: 16 scores of 6 networks at 2 to 3 seeds each (10 df): benchmarks/noise_decide.csv and the deciding
# networks of the default run at seeds 0, 1 and 2 (benchmarks/calibrate.py; RESULTS, "A verdict worth its CPU, part 3").
# ``decide-full``: the calibration's 9 networks at seeds 10 and 11 (benchmarks/calibrate_300M_truth.csv);
# ``decide-full-1ep``: 5 of them at seeds 20 and 21 (benchmarks/deciding_full_1ep.csv; RESULTS, "... part 4").
NOISE_STD: dict[str, float] = {"quick": 0.029, "smoke": 0.033, "smoke-e1": 0.013, "smoke-e2": 0.032,
                               "reference": 0.0168, "decide": 0.0131, "decide-full": 0.0254,
                               "decide-full-1ep": 0.0290}
NOISE_DF: dict[str, float] = {"quick": 18, "smoke": 17, "smoke-e1": 24, "smoke-e2": 24, "reference": 8, "decide": 10,
                              "decide-full": 9, "decide-full-1ep": 5}
# Std of a network's score at each profile that does not carry to a higher fidelity (beyond seed noise), with its
# degrees of freedom, measured on Imagenette: against ``reference`` from the rung tables against
# table_v2_reference (benchmarks/fidelity_bias.py), unless ``BIAS_TARGET`` names the fidelity it was measured
# against. What the reference itself misses against full resolution has not been measured.
# ``decide`` against ``decide-full``: the 9 deciding networks of the default runs at seeds 0-2 retrained at full side
# with 2 seeds (benchmarks/calibrate_300M_*.csv; RESULTS, "A verdict worth its CPU, parts 3 to 5): about the line
# of ``RESOLUTION_SLOPE`` their gains scatter by no more than both sides' seed noise (0 on 7 df; 1.36 points
# without the line); ``decide-full-1ep`` against it: 5 of them, its scatter no larger than both sides' seed
# noise (0 on 3 df).
FIDELITY_BIAS_STD: dict[str, float] = {"quick": 0.036, "smoke": 0.049, "smoke-e1": 0.012, "smoke-e2": 0.036,
                                       "decide": 0.0, "decide-full-1ep": 0.0}
BIAS_DF: dict[str, float] = {"quick": 18, "smoke": 9, "smoke-e1": 18, "smoke-e2": 18, "decide": 7, "decide-full-1ep": 3}
# The systematic part of a bias: (slope, standard error, degrees of freedom) of a network's gain from the rung to
# its ``BIAS_TARGET`` per doubling of its resolution (``resolution_slope``; the bias std above is the scatter about
# it). ``decide``: the 9 calibration networks (benchmarks/deciding_profile.py --report; RESULTS, part 5).
RESOLUTION_SLOPE: dict[str, tuple[float, float, float]] = {"decide": (-0.0392, 0.0123, 7)}
REFERENCE_SIDE = 224  # the side at which a resolution shift is 0 (only differences between networks matter)
BIAS_AGAINST = "reference"  # the profile the bias priors were measured against, unless ``BIAS_TARGET`` says
# half side, and one epoch of two, against the same recipe at full side for two epochs
BIAS_TARGET: dict[str, str] = {"decide": "decide-full", "decide-full-1ep": "decide-full"}
PRIOR_DATA = "imagenette"  # the data every prior was measured on
OTHER_DATA_DF = 2.0  # on other data an Imagenette prior counts at most this many degrees of freedom
UNKNOWN_DF = 1.0  # the single prior degree of freedom of an unmeasured profile's (largest measured) noise
Z95 = 1.959964


def t95(df: float) -> float:
    """The two-sided 95 % Student-t quantile with ``df`` degrees of freedom (the normal's for infinite df)."""
    return Z95 if math.isinf(df) else float(stats.t.ppf(0.975, df))


def chi2_interval(std: float, df: float) -> tuple[float, float]:
    """A 95 % interval for a std estimated with ``df`` degrees of freedom (scaled inverse chi-square)."""
    if df <= 0:
        return (0.0, math.inf)
    var = std**2 * df
    return math.sqrt(var / stats.chi2.ppf(0.975, df)), math.sqrt(var / stats.chi2.ppf(0.025, df))


@dataclass(frozen=True)
class Bias:
    """A rung's bias against a higher fidelity (``against``): std, degrees of freedom, and where it comes from.
    ``std`` None: nobody measured it."""

    std: float | None
    df: float
    against: str
    source: str
    study_df: int = 0  # of which from this study's networks at both fidelities
    scatter: float | None = None  # measured by the study alone: the scatter the seed noise was taken out of
    seed_noise: float = 0.0
    slope: float = 0.0  # the systematic part: the gain at ``against`` per doubling of a network's resolution
    slope_se: float = 0.0
    slope_df: float = math.inf

    def shift(self, resolution: int) -> float:
        """How much higher a network of ``resolution`` px scores at ``against`` than this rung says, relative to
        one of ``REFERENCE_SIDE`` px."""
        return self.slope * math.log2(resolution / REFERENCE_SIDE)

    @property
    def known(self) -> bool:
        return self.std is not None

    def interval(self) -> tuple[float, float] | None:
        """The interval of the scatter less the seed noise where the study measured it alone: a bias estimated as
        0 (scatter below the noise) still has an upper end. None where nothing gives one: unmeasured, or a prior
        of 0 whose scatter is not kept (its chi-square interval would be [0, 0], a certainty nobody measured)."""
        if self.std is None or not self.df or (self.scatter is None and not self.std):
            return None
        if self.scatter is None:
            return chi2_interval(self.std, self.df)
        low, high = chi2_interval(self.scatter, self.df)
        return _less(low, self.seed_noise), _less(high, self.seed_noise)

    def to_dict(self) -> dict[str, Any]:
        return {"std": self.std, "df": self.df, "against": self.against, "source": self.source,
                "study_df": self.study_df, "interval": list(self.interval()) if self.interval() else None,
                "resolution_slope": self.slope, "resolution_slope_se": self.slope_se,
                "resolution_slope_df": None if math.isinf(self.slope_df) else self.slope_df}


@dataclass(frozen=True)
class Noise:
    """The noise of one rung's scores: std in accuracy units, its degrees of freedom and where it comes from;
    ``bias``: what the rung's scores misjudge against a higher fidelity."""

    std: float
    prior: float | None  # the Imagenette figure (None: the profile was never measured)
    repeats_df: int  # degrees of freedom from the study's own seed repeats at this rung
    source: str
    df: float = math.inf
    bias: Bias | None = None

    @property
    def known(self) -> bool:
        """False for a profile nobody measured and the study did not repeat: significance is withheld."""
        return self.prior is not None or self.repeats_df > 0

    @property
    def bias_std(self) -> float:
        """The bias to count in a margin (0 only where a measured bias is 0 or none applies)."""
        return self.bias.std if self.bias is not None and self.bias.std is not None else 0.0

    @property
    def moves(self) -> bool:
        """Whether the rung's bias has a resolution shift that moves each network's score."""
        return self.bias is not None and bool(self.bias.slope)

    def shift(self, resolution: int) -> float:
        """A network's move by the rung's systematic resolution bias (0 where none was measured)."""
        return self.bias.shift(resolution) if self.moves else 0.0

    def interval(self) -> tuple[float, float]:
        return chi2_interval(self.std, self.df)

    def to_dict(self) -> dict[str, Any]:
        return {"std": self.std, "prior": self.prior, "repeats_df": self.repeats_df, "source": self.source,
                "df": None if math.isinf(self.df) else self.df, "known": self.known,
                "interval": [x if math.isfinite(x) else None for x in self.interval()],
                "bias": self.bias_std, "bias_detail": self.bias.to_dict() if self.bias else None}


def _name(profile: Profile | str) -> str:
    return profile if isinstance(profile, str) else profile.name


def _pool(prior: float, prior_df: float, ss: float, df: float) -> tuple[float, float]:
    return math.sqrt((prior_df * prior**2 + ss) / (prior_df + df)), prior_df + df


def _sum_of_squares(scores_by_network: Iterable[Sequence[float]]) -> tuple[float, int]:
    ss, df = 0.0, 0
    for scores in scores_by_network:
        if len(scores) > 1:
            mean = sum(scores) / len(scores)
            ss += sum((s - mean) ** 2 for s in scores)
            df += len(scores) - 1
    return ss, df


def rung_noise(profile: Profile | str, scores_by_network: Iterable[Sequence[float]], data: str = PRIOR_DATA,
               bias: Bias | None = None) -> Noise:
    """The prior noise of ``profile`` updated with the study's repeats: ``scores_by_network`` holds, for each
    network trained at this rung, its scores over seeds (networks with one score add nothing). ``data``: the
    study's data set tag (an Imagenette prior weighs less on other data)."""
    name = _name(profile)
    ss, df = _sum_of_squares(scores_by_network)
    own = f", updated with {df} degree(s) of freedom from this study's repeats" if df else ""
    if name in NOISE_STD:
        prior, prior_df = NOISE_STD[name], NOISE_DF[name]
        where = f"measured for profile {name!r} on Imagenette ({prior_df:g} df, benchmarks/RESULTS.md)"
        if PRIOR_DATA not in data.lower():
            prior_df = min(prior_df, OTHER_DATA_DF)
            where = (f"still Imagenette's prior for profile {name!r} (counted as {prior_df:g} df: this study's data "
                     "is other)")
        std, total = _pool(prior, prior_df, ss, df)
        return Noise(std, prior, df, where + own, total, bias)
    largest = max(NOISE_STD.values())
    std, total = _pool(largest, UNKNOWN_DF, ss, df)
    return Noise(max(std, largest), None, df,
                 f"unknown: profile {name!r} was never measured; taken as at least the largest measured noise "
                 f"({100 * largest:.1f} points) with {UNKNOWN_DF:g} df" + own, total, bias)


def fidelity_bias(rung: Sequence[float], higher: Sequence[float], seed_noise: float) -> tuple[float, int]:
    """(bias std, degrees of freedom): the scatter of ``rung`` scores about their least-squares line on the same
    networks' ``higher``-fidelity scores, less the rung's ``seed_noise`` (0 where the scatter is no larger)."""
    return _less(_scatter(rung, higher), seed_noise), len(rung) - 2


def _less(std: float, noise: float) -> float:
    """``std`` with ``noise`` taken out in variance (0 where the noise is the larger)."""
    return math.sqrt(max(0.0, std**2 - noise**2))


def _scatter(rung: Sequence[float], higher: Sequence[float]) -> float:
    """The std of ``rung`` scores about their least-squares line on ``higher`` (n - 2 degrees of freedom)."""
    n = len(rung)
    if n != len(higher) or n < 3:
        raise ValueError(f"need the same networks at both fidelities, at least 3 (got {n} and {len(higher)})")
    mean_x, mean_y = sum(higher) / n, sum(rung) / n
    sxx = sum((x - mean_x) ** 2 for x in higher)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(higher, rung)) / sxx if sxx else 0.0
    return math.sqrt(sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in zip(higher, rung)) / (n - 2))


def bias_target(profile: Profile | str) -> str:
    """The fidelity ``profile``'s bias prior is measured against (``reference`` unless ``BIAS_TARGET`` says)."""
    return BIAS_TARGET.get(_name(profile), BIAS_AGAINST)


def rung_bias(profile: Profile | str, against: Profile | str, pairs: Sequence[tuple[float, float]],
              seed_noise: float, data: str = PRIOR_DATA, use_prior: bool = True) -> Bias:
    """The bias of ``profile``'s scores against ``against``'s: the Imagenette prior where one was measured against
    that profile, pooled with the study's ``pairs`` (a network's mean score at each, at least 3 networks);
    ``use_prior`` False: the pairs alone (what measures a prior)."""
    name, top = _name(profile), _name(against)
    prior = FIDELITY_BIAS_STD.get(name) if use_prior and top == bias_target(name) else None
    prior_df = BIAS_DF.get(name, 0.0) if prior is not None else 0.0
    if prior is not None and PRIOR_DATA not in data.lower():
        prior_df = min(prior_df, OTHER_DATA_DF)
    scatter = _scatter([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 3 else None
    found, df = (_less(scatter, seed_noise), len(pairs) - 2) if scatter is not None else (0.0, 0)
    if prior is None and not df:
        return Bias(None, 0.0, top, f"unmeasured: nobody measured {name!r} against {top!r}")
    if prior is None:
        return Bias(found, df, top, f"measured by this study on {len(pairs)} networks at both ({df} df)", df,
                    scatter, seed_noise)
    std, total = _pool(prior, prior_df, found**2 * df, df)
    where = f"Imagenette's {100 * prior:.2f} points ({prior_df:g} df)"
    slope, slope_se, slope_df = RESOLUTION_SLOPE.get(name, (0.0, 0.0, math.inf))
    if name in RESOLUTION_SLOPE:
        slope_df = min(slope_df, OTHER_DATA_DF) if PRIOR_DATA not in data.lower() else slope_df
        where += (f" left after a shift of {100 * slope:+.2f} points per doubling of a network's resolution "
                  f"(standard error {100 * slope_se:.2f}, {slope_df:g} df)")
    return Bias(std, total, top, where + (f" pooled with this study's {len(pairs)} networks at both ({df} df)"
                                          if df else ""), df, slope=slope, slope_se=slope_se, slope_df=slope_df)


def resolution_slope(gains: Sequence[float], resolutions: Sequence[int], seed_noise: float) -> tuple[float, ...]:
    """(slope, its standard error, bias std left, degrees of freedom): the least-squares line of networks'
    ``gains`` from a rung to a higher fidelity on log2 of their resolution, and the scatter about it less
    ``seed_noise`` (the noise of one gain, both sides'). What measures ``RESOLUTION_SLOPE``."""
    n = len(gains)
    if n != len(resolutions) or n < 3:
        raise ValueError(f"need a gain and a resolution for each of at least 3 networks (got {n}, {len(resolutions)})")
    x = [math.log2(r / REFERENCE_SIDE) for r in resolutions]
    mean_x, mean_y = sum(x) / n, sum(gains) / n
    sxx = sum((v - mean_x) ** 2 for v in x)
    if not sxx:
        raise ValueError("the networks share one resolution: no slope to fit")
    slope = sum((v - mean_x) * (y - mean_y) for v, y in zip(x, gains)) / sxx
    scatter = math.sqrt(sum((y - mean_y - slope * (v - mean_x)) ** 2 for v, y in zip(x, gains)) / (n - 2))
    return slope, scatter / math.sqrt(sxx), _less(scatter, seed_noise), n - 2
