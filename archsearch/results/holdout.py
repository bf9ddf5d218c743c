"""The law checked where it was not fitted: a held-out budget's predicted network against what the search found.

``results.law.held_out_law`` fits the law without one budget's band and applies it there. Its prediction is
then trained at the deciding rung (jobs of role ``LAW``, at the study's top seeds, scored on the same
validation images as every deciding network), and compared, with the deciding rung's posterior draws
(``selection``), against the search's own best at that budget (its verdict without the law's network) and
against each baseline of that budget. The intervals are simultaneous over these comparisons.

A study keeps each check's prediction in its ``LAW_CHECKS_ATTR`` attribute (budget -> ``HeldOut.to_dict``), so
the summary and the dashboard read the same check without refitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from ..model.config import ArchConfig
from ..search.jobs import Ledger
from ..search.networks import Network
from ..search.noise import Noise
from .decision import Decision
from .selection import by_point, draw

if TYPE_CHECKING:
    from .judge import StudyFacts

LAW = "law"  # the role of a job that trains a held-out budget's predicted network
LAW_CHECKS_ATTR = "law_checks"


@dataclass(frozen=True)
class Comparison:
    """The predicted network minus one other deciding network, with its simultaneous 95 % interval."""

    against: str  # "search" (the search's own best at the budget) or a baseline kind
    config_id: str
    margin: float
    interval: tuple[float, float]

    @property
    def significant(self) -> bool:
        return self.interval[0] > 0 or self.interval[1] < 0

    def to_dict(self) -> dict[str, Any]:
        return {"against": self.against, "config_id": self.config_id, "margin": self.margin,
                "interval": list(self.interval), "significant": self.significant}


@dataclass(frozen=True)
class LawCheck:
    """One held-out budget's check: the predicted network as trained, and how it compares."""

    budget: int
    predicted: ArchConfig
    trained: Network | None  # at the deciding rung (None: not trained there yet)
    comparisons: tuple[Comparison, ...]
    law_declined: bool = False  # the prediction is a declined law's median (checked because it was asked for)

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "predicted": self.predicted.id, "law_declined": self.law_declined,
                "accuracy": None if self.trained is None else self.trained.mean,
                "comparisons": [c.to_dict() for c in self.comparisons]}


def check_lines(check: dict[str, Any]) -> list[str]:
    """A check as ``LawCheck.to_dict`` gives it (and ``summary.json`` keeps it), in words."""
    declined = " was declined; its median exponents, checked as asked," if check.get("law_declined") else ""
    head = f"the law fitted without {check['budget'] / 1e6:g}M{declined} predicts {check['predicted']}"
    if check["accuracy"] is None:
        return [head + ": not trained at the deciding rung ('archsearch formula --validate' trains it)"]
    lines = [head + f": {100 * check['accuracy']:.2f}% at the deciding rung"]
    for c in check["comparisons"]:
        low, high = c["interval"]
        what = "the search's own best" if c["against"] == "search" else f"the {c['against']} baseline"
        said = ("cannot be told apart" if not c["significant"] else
                "the law's network is better" if c["margin"] > 0 else "the law's network is worse")
        lines.append(f"  vs {what} {c['config_id']}: {100 * c['margin']:+.2f} points [{100 * low:+.2f}, "
                     f"{100 * high:+.2f}], {said}")
    return lines


def stored_checks(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Budget -> the held-out law's prediction kept by ``archsearch formula --validate`` (or ``run``)."""
    return {int(k): v for k, v in study.user_attrs.get(LAW_CHECKS_ATTR, {}).items()}


def law_trained(ledger: Ledger, rung: int) -> set[tuple]:
    """The networks law checks trained at ``rung`` (the search's own evidence is the rest)."""
    return {e.job.config.network_key() for e in ledger.at(rung, role=LAW)}


def check_law(budget: int, predicted: ArchConfig, decision: Decision, ledger: Ledger, noise: Noise,
              seed: int = 0, law_declined: bool = False) -> LawCheck:
    """``predicted`` at ``budget``'s deciding rung against the search's own best there (the best by score of
    the verdict's networks that no law job trained, by the verdict's order) and against the verdict's baselines."""
    key = predicted.network_key()
    trained = ledger.network(predicted, decision.rung, decision.fidelity)
    if trained is None:
        return LawCheck(budget, predicted, None, (), law_declined)
    not_searched = law_trained(ledger, decision.rung) | {key}
    searched = by_point([n for n in decision.ranked if n.config.network_key() not in not_searched], noise)
    others = [("search", searched[0])] if searched else []
    others += [(m.kind, m.baseline) for m in decision.margins if m.baseline is not None]
    others = [(what, n) for what, n in others if n.config.network_key() != key]
    draws = draw([trained] + [n for _, n in others], noise, seed=seed)
    found = draws.simultaneous([(0, i + 1) for i in range(len(others))])
    return LawCheck(budget, predicted, trained, tuple(
        Comparison(what, n.config.id, *found[(0, i + 1)][:2]) for i, (what, n) in enumerate(others)), law_declined)


def check_kept(facts: StudyFacts, budget: int, held: dict[str, Any]) -> LawCheck:
    """``check_law`` of a kept prediction (``HeldOut.to_dict``) at ``budget``'s verdict in ``facts``."""
    decision = dict(facts.verdicts)[budget]
    return check_law(budget, ArchConfig.from_dict(held["pick"]["config"]), decision, facts.ledger,
                     facts.noise[decision.rung], seed=facts.settings.seed,
                     law_declined=bool(held["formula"]["declined"]))
