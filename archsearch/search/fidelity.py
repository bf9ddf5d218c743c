"""Fidelity ladders: the rungs a search spends its budget in, and how noisy a score is at each.

A search trains many configs at a cheap rung, promotes the best fraction to the next, and decides the winner
and the baselines at the top rung (successive halving with a closed-form cost: only configs that fit the
budget are ever trained). Each rung is a ``training.Profile``. Where two consecutive rungs train one schedule
and the lower stops early (``smoke-e2`` then ``smoke``: the first two epochs of smoke's four), a promoted
network continues from its checkpoint (``Ladder.continues``); otherwise it is retrained from scratch at the
next rung. Measured (RESULTS.md, "Continue ... or retrain?", 12 configs, 2-3 seeds each): screening on
epoch 2 of smoke ranks like a retrained ``quick`` rung for 6 % less compute in the default ladder, so the CPU
default continues from there; epoch 1 is near chance and does not rank.

Noise and bias: ``search.noise``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Ladder:
    """Rungs of rising fidelity, the fraction promoted from one rung to the next, and the seeds of every
    top-rung job (the winner and the baselines are decided there).

    ``finalists`` > 0 makes the top a *deciding rung*: the ``finalists`` best screened networks by the GP's
    posterior (not a fraction by score) and the three baselines are trained there afresh, never continued
    from a screening checkpoint (a selected run carries the luck it was selected for), and compared on the
    same validation images; the first ``repeats`` finalists get one seed more, from which the study measures
    its own noise at the deciding rung."""

    rungs: tuple[Profile, ...]
    promote: float = 1 / 3
    top_seeds: int = 1
    finalists: int = 0
    repeats: int = 0

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ConfigError("rungs: need at least one profile")
        if not 0 < self.promote <= 1:
            raise ConfigError(f"--promote: {self.promote!r} is not in (0, 1]")
        if self.top_seeds < 1:
            raise ConfigError(f"--top-seeds: {self.top_seeds!r} is not a positive number")
        if self.finalists < 0 or self.repeats < 0 or self.repeats > self.finalists:
            raise ConfigError(f"--finalists {self.finalists} / repeats {self.repeats}: need 0 <= repeats <= finalists")
        if self.finalists and len(self.rungs) < 2:
            raise ConfigError("--finalists: a deciding rung needs a screening rung below it")
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
        if not 0 <= rung < self.top or (self.finalists and rung + 1 == self.top):
            return False
        here, there = self.rungs[rung], self.rungs[rung + 1]
        return here.schedule() == there.schedule() and here.last_epoch < there.last_epoch

    def promoted(self, n: int) -> int:
        """How many of ``n`` configs scored at one rung go on to the next."""
        return max(1, math.ceil(n * self.promote - 1e-9)) if n else 0

    def to_dict(self) -> dict[str, Any]:
        return {"rungs": [p.to_dict() for p in self.rungs], "promote": self.promote, "top_seeds": self.top_seeds,
                "finalists": self.finalists, "repeats": self.repeats}

    @property
    def deciding(self) -> bool:
        """True when the top rung is a deciding rung (``finalists``)."""
        return self.finalists > 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ladder:
        rungs = []
        for fields in data["rungs"]:
            fields = dict(fields)
            if isinstance(fields.get("crop_scale"), list):
                fields["crop_scale"] = tuple(fields["crop_scale"])
            rungs.append(Profile(**fields))
        return cls(tuple(rungs), float(data["promote"]), int(data["top_seeds"]), int(data.get("finalists", 0)),
                   int(data.get("repeats", 0)))


# Defaults, chosen from the measurements in benchmarks/RESULTS.md ("Rungs").
# The CPU ladder screens on smoke's second epoch and continues the promoted networks to its fourth; the GPU
# ladder (unmeasured on a GPU) retrains at each rung.
# On a CPU the verdict is then taken at a deciding rung: ``decide``, every training and validation image at half
# side for 2 epochs, trained afresh (DEFAULT_FINALISTS finalists and the baselines); ``reference`` (4 epochs) does
# not fit 5 networks in a 45-minute run on 2 cores.
DEFAULT_LADDERS: dict[str, tuple[str, ...]] = {"cpu": ("smoke-e2", "smoke", "decide"),
                                               "gpu": ("proxy-r0", "proxy-r1", "proxy")}
DEFAULT_TOP_SEEDS = {"cpu": 1, "gpu": 2}
DEFAULT_PROMOTE = {"cpu": 1 / 4, "gpu": 1 / 3}
DEFAULT_FINALISTS = {"cpu": 2, "gpu": 0}
DEFAULT_REPEATS = 1
DEFAULT_TIME_BUDGET = {"cpu": "45m", "gpu": None}


def ladder(rungs: Sequence[str | Profile], promote: float = 1 / 3, top_seeds: int = 1, finalists: int = 0,
           repeats: int = 0) -> Ladder:
    """A ladder from profile names (or profiles), cheapest first."""
    return Ladder(tuple(get_profile(r) for r in rungs), promote, top_seeds, finalists, repeats)


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


def check_ladder(space: FactorSpace, ladder: Ladder) -> None:
    """Refuse a ladder under which two resolutions of the space would train as one network."""
    for profile in ladder.rungs:
        try:
            check_distinct_resolutions(space.range("resolution").values(), profile)
        except ConfigError as err:
            raise ConfigError(f"--rungs: {err}") from None
