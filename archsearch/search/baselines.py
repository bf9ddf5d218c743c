"""The hand-scaling rules a search must beat, each brought to the MAC budget it is compared at.

A margin over a baseline means something only if the baseline spends (nearly) the same budget, so every
rule here is tuned finely, not on the factor grid's steps, and is kept only if it uses at least
``MIN_FILL`` of the budget. Three rules, as ``kind``:

* ``width`` -- the seed paper's uniform width multiplier: 256 px, MV2 and ViT depth 1.0, the widest width
  (searched in steps of ``WIDTH_STEP``) whose closed-form MACs fit.
* ``width_resolution`` -- MobileNet-style width x resolution: for every grid resolution, the widest fitting
  width at depths 1.0. These are candidates: the most accurate one (the search trains them all at its
  cheapest fidelity) is the baseline. The ``width`` baseline is the candidate at 256 px.
* ``compound`` -- EfficientNet-style compound scaling of v2-1.0 at 256 px: depth multiplier ``ALPHA**phi``,
  width ``BETA**phi``, resolution ``256 * GAMMA**phi`` rounded to a multiple of 32. The coefficients are
  EfficientNet's (Tan & Le, 2019: alpha 1.2, beta 1.1, gamma 1.15, found by grid search on EfficientNet-B0),
  taken, not fitted. ``phi`` is the largest (in steps of ``PHI_STEP``) whose config fits; where the
  resolution's rounding leaves the config under ``MIN_FILL`` of the budget, the width alone is then raised
  finely until the budget is used (the rule then says so).

A baseline is a hand rule, not a point of the search grid: its width (and the compound rule's depth) may
fall between grid steps or outside the space's ranges; resolutions are multiples of 32 as everywhere. Where a
budget makes a rule impossible, ``Baselines.impossible`` says why, in one line. Compound factors are rounded
to 3 decimals.

Under a latency budget as well (``run --latency-budget``), "fits" means within both budgets, the latency one
by the study's latency model, and "uses the budget" means at least ``MIN_FILL`` of the binding one: the MAC
budget or the predicted latency budget, whichever the config comes closer to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..model.config import MAX_MULTIPLIER, MAX_RESOLUTION, MIN_RESOLUTION, ArchConfig
from ..model.cost import closed_form_cost
from ..model.space import FactorSpace

if TYPE_CHECKING:
    from ..latency.budget import LatencyLimit

KINDS = ("width", "width_resolution", "compound")
MIN_FILL = 0.9
BASE_RESOLUTION = 256
WIDTH_STEP = 1 / 1000
PHI_STEP = 1 / 1000
PHI_MIN, PHI_MAX = -8.0, 4.0
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15


@dataclass(frozen=True)
class Baseline:
    kind: str
    config: ArchConfig
    macs: int
    rule: str  # how it was derived, in words
    budget: int = 0
    latency_fill: float | None = None  # of the latency budget, predicted; None without one

    @property
    def fill(self) -> float:
        """The fraction of the binding budget it uses (MACs, or predicted latency where that is closer)."""
        macs = self.macs / self.budget if self.budget else math.nan
        return macs if self.latency_fill is None else max(macs, self.latency_fill)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "config": self.config.to_dict(), "config_id": self.config.id,
                "macs": self.macs, "budget_fill": round(self.fill, 4), "rule": self.rule,
                "latency_budget_fill": None if self.latency_fill is None else round(self.latency_fill, 4)}


@dataclass(frozen=True)
class Limits:
    """What a baseline must fit: the MAC budget and, optionally, a latency budget (by prediction)."""

    macs: int
    latency: LatencyLimit | None = None

    def fits(self, config: ArchConfig) -> bool:
        return closed_form_cost(config).macs <= self.macs and (self.latency is None or self.latency.fits(config))

    def baseline(self, kind: str, config: ArchConfig, rule: str) -> Baseline:
        latency_fill = None if self.latency is None else self.latency.fill(config)
        return Baseline(kind, config, closed_form_cost(config).macs, rule, self.macs, latency_fill)

    def budget_words(self) -> str:
        return "the budget" if self.latency is None else "the MAC or latency budget"


@dataclass(frozen=True)
class Baselines:
    """The baselines of one budget: ``width`` and ``compound`` (or None), the ``width_resolution``
    candidates, and a line for each rule that the budget makes impossible."""

    budget: int
    width: Baseline | None
    width_resolution: tuple[Baseline, ...]
    compound: Baseline | None
    impossible: dict[str, str] = field(default_factory=dict)
    latency: LatencyLimit | None = None  # the budget's latency limit: what its verdict checks measured latency by

    def to_train(self) -> list[Baseline]:
        """Every distinct network the baselines need trained (the width baseline is also a candidate)."""
        out, seen = [], set()
        for b in ([self.width] if self.width else []) + list(self.width_resolution) + (
                [self.compound] if self.compound else []):
            key = (b.kind, b.config.network_key())
            if key not in seen:
                seen.add(key)
                out.append(b)
        return out


def _config(space: FactorSpace, resolution: int, width: float, depth: float = 1.0) -> ArchConfig:
    return ArchConfig(space.family, resolution=resolution, width=round(width, 6), mv2_depth=round(depth, 6),
                      vit_depth=round(depth, 6), num_classes=space.num_classes, variant=space.variants[0])


def _last_true(lo: int, hi: int, test) -> int | None:
    """The largest ``i`` in ``[lo, hi]`` with ``test(i)``, for a ``test`` that is true up to some point and
    false after it (MACs grow with every factor); None if ``test(lo)`` is false."""
    if not test(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if test(mid) else (lo, mid - 1)
    return lo


def widest_fitting(space: FactorSpace, limits: Limits, resolution: int, depth: float = 1.0,
                   min_width: float | None = None) -> tuple[ArchConfig, int] | None:
    """The widest width (steps of ``WIDTH_STEP``, at least ``min_width``) whose config fits the limits; of
    the widths that build that same network, the smallest. None if none fits."""
    def config(i: int) -> ArchConfig:
        return _config(space, resolution, i * WIDTH_STEP, depth)

    low = math.ceil((WIDTH_STEP if min_width is None else min_width) / WIDTH_STEP - 1e-9)
    top = _last_true(low, round(MAX_MULTIPLIER / WIDTH_STEP), lambda i: limits.fits(config(i)))
    if top is None:
        return None
    network = config(top).network_key()
    first = top - _last_true(0, top - low, lambda k: config(top - k).network_key() == network)
    return config(first), closed_form_cost(config(first)).macs


def width_baseline(space: FactorSpace, limits: Limits) -> tuple[Baseline | None, str | None]:
    resolution = min(space.range("resolution").values(), key=lambda r: abs(r - BASE_RESOLUTION))
    found = widest_fitting(space, limits, resolution)
    if found is None:
        return None, f"width: even a width of {WIDTH_STEP:g} at {resolution} px is over {limits.budget_words()}"
    baseline = limits.baseline("width", found[0], f"{resolution} px, depths 1.0, widest width that fits")
    if baseline.fill < MIN_FILL:
        return None, (f"width: the widest width ({baseline.config.width:g}) at {resolution} px uses only "
                      f"{100 * baseline.fill:.0f} % of {limits.budget_words()}")
    return baseline, None


def width_resolution_candidates(space: FactorSpace, limits: Limits) -> tuple[tuple[Baseline, ...], str | None]:
    out = []
    for resolution in space.range("resolution").values():
        found = widest_fitting(space, limits, resolution)
        if found:
            baseline = limits.baseline("width_resolution", found[0],
                                       f"{resolution} px, depths 1.0, widest width that fits")
            if baseline.fill >= MIN_FILL:
                out.append(baseline)
    why = None if out else (f"width_resolution: no grid resolution has a width that uses 90 % of "
                            f"{limits.budget_words()}")
    return tuple(out), why


def compound_config(space: FactorSpace, phi: float) -> ArchConfig | None:
    """v2-1.0 (v1: the space's first variant) scaled by ``phi``; None where a factor leaves what the
    generator builds."""
    resolution = round(BASE_RESOLUTION * GAMMA**phi / 32) * 32
    width, depth = round(BETA**phi, 3), round(ALPHA**phi, 3)
    if not (MIN_RESOLUTION <= resolution <= MAX_RESOLUTION and 0 < min(width, depth)
            and max(width, depth) <= MAX_MULTIPLIER):
        return None
    return _config(space, resolution, width, depth)


def compound_baseline(space: FactorSpace, limits: Limits) -> tuple[Baseline | None, str | None]:
    """The largest phi whose compound-scaled v2-1.0 fits (see the module docstring)."""
    def fits(i: int) -> bool:
        config = compound_config(space, i * PHI_STEP)
        return config is not None and limits.fits(config)

    lowest = next((i for i in range(round(PHI_MIN / PHI_STEP), 1) if compound_config(space, i * PHI_STEP)), 0)
    index = _last_true(lowest, round(PHI_MAX / PHI_STEP), fits)
    if index is None:
        return None, f"compound: even the smallest compound-scaled config is over {limits.budget_words()}"
    phi = index * PHI_STEP
    config = compound_config(space, phi)
    rule = (f"phi {phi:.3f}: depth {ALPHA}^phi = {ALPHA**phi:.3f}, width {BETA}^phi = {BETA**phi:.3f}, "
            f"resolution 256*{GAMMA}^phi = {BASE_RESOLUTION * GAMMA**phi:.0f} -> {config.resolution} px")
    baseline = limits.baseline("compound", config, rule)
    if baseline.fill < MIN_FILL:
        topped = widest_fitting(space, limits, config.resolution, config.mv2_depth, min_width=config.width)
        raised = None if topped is None else limits.baseline(
            "compound", topped[0], rule + f"; width raised to {topped[0].width:g} to use {limits.budget_words()}")
        if raised is None or raised.fill < MIN_FILL:
            return None, (f"compound: at phi {phi:.3f} the resolution's rounding leaves {100 * baseline.fill:.0f} % "
                          f"of {limits.budget_words()}, and no width makes it up")
        baseline = raised
    return baseline, None


def baselines_for(space: FactorSpace, budget: int, latency: LatencyLimit | None = None) -> Baselines:
    """All three rules at ``budget`` (and within ``latency`` where given; v1 spaces: the first variant is
    the base)."""
    limits = Limits(budget, latency)
    width, why_w = width_baseline(space, limits)
    candidates, why_wr = width_resolution_candidates(space, limits)
    compound, why_c = compound_baseline(space, limits)
    impossible = {k: v for k, v in (("width", why_w), ("width_resolution", why_wr), ("compound", why_c)) if v}
    return Baselines(budget, width, candidates, compound, impossible, latency)
