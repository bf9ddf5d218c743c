"""A searched family: one member per MAC budget of a multi-budget study, the network each budget's verdict names.

Like timm's model list (``mobilevitv2_050`` ... ``mobilevitv2_200``), each member has a name that says its family
and budget (``archsearch_v2_300m``), its factors, cost and measured accuracy at the study's deciding fidelity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    @property
    def order(self) -> tuple[str, int]:
        """How a family lists its members: by model family, then budget."""
        return self.config.family, self.budget

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> FamilyMember:
        """As ``to_dict`` stores it (``summary.json``)."""
        return cls(stored["budget"], ArchConfig.from_dict(stored["config"]), stored["macs"], stored["params"],
                   stored["top1"], stored["fidelity"], stored.get("p_best"), stored.get("latency_ms"),
                   stored.get("quantized_top1"))

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


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


# header, cell, alignment
COLUMNS: tuple[tuple[str, Callable[[FamilyMember], str], str], ...] = (
    ("model", lambda m: m.name, "<"),
    ("family", lambda m: m.config.family + (m.config.variant or ""), "<"),
    ("res", lambda m: str(m.config.resolution), ">"),
    ("width", lambda m: f"{m.config.width:g}", ">"),
    ("mv2", lambda m: f"{m.config.mv2_depth:g}", ">"),
    ("vit", lambda m: f"{m.config.vit_depth:g}", ">"),
    ("MACs (M)", lambda m: f"{m.macs / 1e6:.1f}", ">"),
    ("params (M)", lambda m: f"{m.params / 1e6:.3f}", ">"),
    ("latency (ms)", lambda m: "-" if m.latency_ms is None else f"{m.latency_ms:.2f}", ">"),
    ("top-1 (%)", lambda m: _percent(m.top1), ">"),
    ("P(best)", lambda m: "-" if m.p_best is None else f"{m.p_best:.2f}", ">"),
    ("at", lambda m: m.fidelity or "-", "<"),
    ("quantized top-1 (%)", lambda m: _percent(m.quantized_top1), ">"),
)


def family_table(members: Sequence[FamilyMember]) -> str:
    """Like timm's model list: one line per member (by family and budget) under a header, '-' where a value
    was not measured: its factors (mv2, vit: the depth multipliers), cost, latency, top-1 (the mean over seeds
    at the deciding fidelity, 'at') and its probability of being the best at its budget."""
    rows = [[cell(m) for _, cell, _ in COLUMNS] for m in sorted(members, key=lambda m: m.order)]
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, (header, _, _) in enumerate(COLUMNS)]
    lines = [[header for header, _, _ in COLUMNS], *rows]
    return "\n".join("  ".join(f"{cell:{align}{w}}" for cell, w, (_, _, align) in zip(line, widths, COLUMNS)).rstrip()
                     for line in lines)
