"""A searched family: one member per MAC budget of a multi-budget study, the network each budget's verdict names.

Like timm's model list (``mobilevitv2_050`` ... ``mobilevitv2_200``), each member has a name that says its family
and budget (``archsearch_v2_300m``), its factors, cost and measured accuracy at the study's deciding fidelity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model.config import ArchConfig
from ..model.cost import closed_form_cost

if TYPE_CHECKING:
    from .judge import StudyFacts


def member_name(family: str, budget: int) -> str:
    """``archsearch_v2_300m``: the registry name of the ``family`` member for a ``budget`` of MACs."""
    return f"archsearch_{family}_{round(budget / 1e6)}m"


@dataclass(frozen=True)
class FamilyMember:
    """One budget's member: the network its verdict names, as measured."""

    budget: int  # the MAC budget this member was chosen for
    config: ArchConfig
    macs: int
    params: int
    top1: float | None  # mean over seeds at ``fidelity`` (the deciding rung), None where it was not trained there
    fidelity: str
    p_best: float | None = None  # its probability of being the best at its budget (a deciding rung), else None
    latency_ms: float | None = None  # measured (batch 1, one thread), None where not measured
    quantized_top1: float | None = None  # where the study quantized it (``run --quantize``)

    @property
    def name(self) -> str:
        return member_name(self.config.family, self.budget)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "budget": self.budget, "config": self.config.to_dict(),
                "config_id": self.config.id, "macs": self.macs, "params": self.params, "top1": self.top1,
                "fidelity": self.fidelity, "p_best": self.p_best, "latency_ms": self.latency_ms,
                "quantized_top1": self.quantized_top1}


def family_members(facts: StudyFacts) -> tuple[FamilyMember, ...]:
    """The member each budget's verdict names, cheapest budget first (a budget without a winner has none). Its
    quantized top-1 is the mean over the winner's deciding jobs that were quantized."""
    members = []
    for budget, decision in facts.verdicts:
        w = decision.winner
        if w is None:
            continue
        quantized = [facts.quantized[t]["top1"] for t in w.trials if t in facts.quantized]
        members.append(FamilyMember(
            budget, w.config, w.macs, closed_form_cost(w.config).params, w.mean, decision.fidelity,
            decision.p_best[0] if decision.p_best else None, w.latency.get("latency_ms") if w.latency else None,
            sum(quantized) / len(quantized) if quantized else None))
    return tuple(members)
