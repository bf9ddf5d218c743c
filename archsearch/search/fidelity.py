"""Fidelity ladders: the rungs a search spends its budget in, and how noisy a score is at each.

A search trains many configs at a cheap rung, promotes the best fraction to the next, and decides the winner
and the baselines at the top rung (successive halving with a closed-form cost: only configs that fit the
budget are ever trained). Each rung is a ``training.Profile``. Where two consecutive rungs train one schedule
and the lower stops early (``smoke-e2`` then ``smoke``: the first two epochs of smoke's four), a promoted
network continues from its checkpoint (``Ladder.continues``); otherwise it is retrained from scratch at the
next rung. Measured (RESULTS.md, "Continue ... or retrain?", 12 configs, 2-3 seeds each): screening on
epoch 2 of smoke ranks like a retrained ``quick`` rung for 6 % less compute in the default ladder, so the CPU
default continues from there; epoch 1 is near chance and does not rank.

Noise. A score is one training run: another seed gives another score. The seed-to-seed standard deviation
of each profile was measured on Imagenette (``NOISE_STD``, accuracy units, with its source in RESULTS.md)
and is the prior; where a study repeats configs with other seeds, the pooled within-config variance of its
rung updates it (``rung_noise``): ``s^2 = (PRIOR_DF * prior^2 + SS) / (PRIOR_DF + df)``, so a handful of
repeats moves the estimate and many repeats dominate it.

Bias. A cheap rung also misjudges some networks in a way no seed averages out (it rewards what trains
fastest): regressed on the same networks' scores at the reference (6.3x the images), a rung's scores scatter
by more than their seed noise. That excess (``fidelity_bias``; ``FIDELITY_BIAS_STD``, measured on 11 networks)
is a second error of every network's mean at the rung, and a margin's interval counts it for both networks:
the margin then says what is expected to hold at the reference, not only what another seed would give here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..model.config import ConfigError
from ..model.space import FactorSpace
from ..train.recipe import (
    PROFILES,
    Profile,
    check_distinct_resolutions,
    get_profile,
    is_profile_name,
)

# Seed-to-seed std of top-1 at each profile (one config, several seeds), measured on Imagenette on the CPU;
# benchmarks/RESULTS.md, "Noise of a score". Profiles not listed get DEFAULT_NOISE_STD until a study repeats.
NOISE_STD: dict[str, float] = {"quick": 0.029, "smoke": 0.033, "smoke-e1": 0.013, "smoke-e2": 0.032}
DEFAULT_NOISE_STD = 0.02
PRIOR_DF = 4.0  # the prior noise counts as this many degrees of freedom
# Std of a network's score at each profile that does not carry to the reference (beyond seed noise), measured on
# Imagenette on the CPU from the rung tables against table_v2_reference (benchmarks/fidelity_bias.py; RESULTS.md,
# the default run's "What it turned out to be"). Profiles not listed (the reference, GPU rungs) count none.
FIDELITY_BIAS_STD: dict[str, float] = {"quick": 0.036, "smoke": 0.049, "smoke-e1": 0.012, "smoke-e2": 0.036}
BIAS_MEANING = ("what a network's score there misjudges against a run on 6.3x the images (the reference), beyond "
                "seed noise; measured, benchmarks/RESULTS.md")


@dataclass(frozen=True)
class Ladder:
    """Rungs of rising fidelity, the fraction promoted from one rung to the next, and the seeds of every
    top-rung job (the winner and the baselines are decided there)."""

    rungs: tuple[Profile, ...]
    promote: float = 1 / 3
    top_seeds: int = 1

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ConfigError("rungs: need at least one profile")
        if not 0 < self.promote <= 1:
            raise ConfigError(f"--promote: {self.promote!r} is not in (0, 1]")
        if self.top_seeds < 1:
            raise ConfigError(f"--top-seeds: {self.top_seeds!r} is not a positive number")
        names = [p.name for p in self.rungs]
        if len(set(names)) != len(names):
            raise ConfigError(f"--rungs: a profile appears twice ({', '.join(names)})")

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    @property
    def name(self) -> str:
        return ">".join(p.name for p in self.rungs)

    def continues(self, rung: int) -> bool:
        """True when rung ``rung + 1`` continues the networks of ``rung`` from their checkpoints: both train
        one schedule and ``rung`` stops earlier (``smoke-e1`` then ``smoke``)."""
        if not 0 <= rung < self.top:
            return False
        here, there = self.rungs[rung], self.rungs[rung + 1]
        return here.schedule() == there.schedule() and here.last_epoch < there.last_epoch

    def promoted(self, n: int) -> int:
        """How many of ``n`` configs scored at one rung go on to the next."""
        return max(1, math.ceil(n * self.promote - 1e-9)) if n else 0

    def to_dict(self) -> dict[str, Any]:
        return {"rungs": [p.to_dict() for p in self.rungs], "promote": self.promote, "top_seeds": self.top_seeds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ladder:
        rungs = []
        for fields in data["rungs"]:
            fields = dict(fields)
            if isinstance(fields.get("crop_scale"), list):
                fields["crop_scale"] = tuple(fields["crop_scale"])
            rungs.append(Profile(**fields))
        return cls(tuple(rungs), float(data["promote"]), int(data["top_seeds"]))


# Defaults, chosen from the measurements in benchmarks/RESULTS.md ("Rungs").
# The CPU ladder screens on smoke's second epoch and continues the promoted networks to its fourth; the GPU
# ladder (unmeasured on a GPU) retrains at each rung.
DEFAULT_LADDERS: dict[str, tuple[str, ...]] = {"cpu": ("smoke-e2", "smoke"), "gpu": ("proxy-r0", "proxy-r1", "proxy")}
DEFAULT_TOP_SEEDS = {"cpu": 1, "gpu": 2}
DEFAULT_PROMOTE = {"cpu": 1 / 4, "gpu": 1 / 3}


def ladder(rungs: Sequence[str | Profile], promote: float = 1 / 3, top_seeds: int = 1) -> Ladder:
    """A ladder from profile names (or profiles), cheapest first."""
    return Ladder(tuple(get_profile(r) for r in rungs), promote, top_seeds)


def parse_rungs(text: str) -> tuple[str, ...]:
    """'smoke,short' -> ('smoke', 'short'); each a known profile name."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError("--rungs: name at least one profile, e.g. smoke,short")
    unknown = [n for n in names if not is_profile_name(n)]
    if unknown:
        raise ConfigError(f"--rungs: unknown profile {unknown[0]!r}; choose from {', '.join(PROFILES)}, or "
                          "NAME-eK (NAME stopped after epoch K, continued by the next rung)")
    return names


# ---- noise ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Noise:
    """The noise of one rung's scores: std in accuracy units, and where it comes from."""

    std: float
    prior: float
    repeats_df: int  # degrees of freedom from the study's own seed repeats at this rung
    source: str
    bias: float = 0.0  # std of a network's error at this rung that no seed averages out (``FIDELITY_BIAS_STD``)

    def to_dict(self) -> dict[str, Any]:
        return {"std": self.std, "prior": self.prior, "repeats_df": self.repeats_df, "source": self.source,
                "bias": self.bias}


def prior_noise(profile: Profile | str) -> tuple[float, str]:
    name = profile if isinstance(profile, str) else profile.name
    if name in NOISE_STD:
        return NOISE_STD[name], f"measured for profile {name!r} on Imagenette (benchmarks/RESULTS.md)"
    return DEFAULT_NOISE_STD, f"assumed ({DEFAULT_NOISE_STD:g}): profile {name!r} has no measured noise"


def rung_noise(profile: Profile | str, scores_by_config: Iterable[Sequence[float]]) -> Noise:
    """The prior noise of ``profile`` updated with the study's repeats: ``scores_by_config`` holds, for each
    config trained at this rung, its scores over seeds (configs with one score add nothing)."""
    name = profile if isinstance(profile, str) else profile.name
    prior, source = prior_noise(name)
    bias = FIDELITY_BIAS_STD.get(name, 0.0)
    ss, df = 0.0, 0
    for scores in scores_by_config:
        if len(scores) > 1:
            mean = sum(scores) / len(scores)
            ss += sum((s - mean) ** 2 for s in scores)
            df += len(scores) - 1
    if not df:
        return Noise(prior, prior, 0, source, bias)
    std = math.sqrt((PRIOR_DF * prior**2 + ss) / (PRIOR_DF + df))
    return Noise(std, prior, df, f"{source}, updated with {df} degree(s) of freedom from this study's repeats", bias)


def fidelity_bias(rung: Sequence[float], reference: Sequence[float], seed_noise: float) -> tuple[float, int]:
    """(bias std, degrees of freedom): the scatter of ``rung`` scores about their least-squares line on the same
    networks' ``reference`` scores, less the rung's ``seed_noise`` (0 where the scatter is no larger)."""
    n = len(rung)
    if n != len(reference) or n < 3:
        raise ValueError(f"need the same networks at both fidelities, at least 3 (got {n} and {len(reference)})")
    mean_x, mean_y = sum(reference) / n, sum(rung) / n
    sxx = sum((x - mean_x) ** 2 for x in reference)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(reference, rung)) / sxx
    residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in zip(reference, rung)) / (n - 2)
    return math.sqrt(max(0.0, residual - seed_noise**2)), n - 2


def check_ladder(space: FactorSpace, ladder: Ladder) -> None:
    """Refuse a ladder under which two resolutions of the space would train as one network."""
    for profile in ladder.rungs:
        try:
            check_distinct_resolutions(space.range("resolution").values(), profile)
        except ConfigError as err:
            raise ConfigError(f"--rungs: {err}") from None
