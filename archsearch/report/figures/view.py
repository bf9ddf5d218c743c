"""The dashboard's view of a study: its trained jobs and networks, the judge's facts, and how a job or a
network is shown (hover labels, colours, symbols).

``StudyView`` is what ``dashboard.collect`` reads from the judge (``results.judge.study_facts``: the jobs,
the one GP, the decision) and the summary. Every figure takes a view: a job is the ledger's ``Entry``, a
network at a rung the ledger's ``Network`` (its first job at each seed, shown at the mean over seeds).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ...gp.surrogate import GPSurrogate
from ...model.config import ArchConfig
from ...model.cost import closed_form_cost
from ...model.space import FACTORS, FactorSpace
from ...results.decision import Decision
from ...search.fidelity import Ladder
from ...search.jobs import Entry, Ledger
from ...search.networks import Network
from ...search.noise import Noise
from ...search.settings import StudySettings

LABELS = {"resolution": "resolution (px)", "width": "width", "mv2_depth": "MV2 depth", "vit_depth": "ViT depth"}
SHORT = {"resolution": "res", "width": "width", "mv2_depth": "MV2", "vit_depth": "ViT"}
COLORSCALE = "Viridis"
BUDGET_COLOR = "#d62728"
WINNER_COLOR = "#ff7f0e"
BASELINE_COLOR = "#1f77b4"
STRATEGY_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# The three baselines (``baselines.KINDS``) wherever they are marked.
KIND_COLORS = {"width": BASELINE_COLOR, "width_resolution": "#17becf", "compound": "#9467bd"}
KIND_LABELS = {"width": "width", "width_resolution": "width × resolution", "compound": "compound"}
KIND_SYMBOLS = {"width": "diamond", "width_resolution": "square", "compound": "triangle-up"}


@dataclass(frozen=True)
class StudyView:
    """What the dashboard shows of a study (see ``dashboard.collect``): its jobs, and the facts the judge
    established once (the GP, the decision, the noise)."""

    name: str
    storage: str  # redacted URL
    settings: StudySettings
    ledger: Ledger
    counts: dict[str, Any]  # summary["counts"]
    decision: Decision
    noise: tuple[Noise, ...]  # per rung
    surrogate: GPSurrogate | None
    importance: dict[str, Any]  # summary["importance"]
    quantized: dict[str, Any] | None = None  # summary["quantized"]: the deciding networks once quantized
    verdicts: tuple[tuple[int, Decision], ...] = ()  # (budget, decision) at every budget, cheapest first
    family: dict[str, Any] | None = None  # summary["family"]: a family study's members, law and importance
    formula: dict[str, Any] | None = None  # summary["formula"]: the scaling formula (a family's: the law)

    @cached_property
    def jobs(self) -> tuple[Entry, ...]:
        """The trained jobs of every rung, in trial order."""
        return tuple(sorted((e for e in self.ledger.entries if e.state == "done"), key=lambda e: e.number))

    @cached_property
    def space(self) -> FactorSpace:
        return self.settings.factor_space()

    @cached_property
    def ladder(self) -> Ladder:
        return self.settings.fidelity_ladder()

    @property
    def budget(self) -> int:
        return self.settings.mac_budget

    @property
    def rung(self) -> int:
        """The deciding rung: where the GP maps, marginals and Pareto front are drawn."""
        return self.decision.rung

    @property
    def winner(self) -> Network | None:
        return self.decision.winner

    @property
    def base(self) -> ArchConfig | None:
        """Where the GP slices are taken: the winner."""
        return self.winner.config if self.winner else None

    @cached_property
    def baseline_kinds(self) -> dict[tuple, tuple[str, ...]]:
        """Network -> the baseline kinds it is at the deciding rung (one network may be two kinds)."""
        kinds: dict[tuple, tuple[str, ...]] = {}
        for m in self.decision.margins:
            if m.baseline is not None:
                key = m.baseline.config.network_key()
                kinds[key] = kinds.get(key, ()) + (m.kind,)
        return kinds

    def at(self, rung: int) -> list[Entry]:
        return [e for e in self.jobs if e.job.rung == rung]

    @cached_property
    def _networks(self) -> list[dict[tuple, Network]]:
        return [self.ledger.networks(r, profile.name) for r, profile in enumerate(self.ladder.rungs)]

    @cached_property
    def _numbered(self) -> dict[int, Entry]:
        return {e.number: e for e in self.jobs}

    def networks(self, rung: int) -> dict[tuple, Network]:
        """The networks trained at ``rung``, by network, in the order first trained."""
        return self._networks[rung]

    def network(self, config: ArchConfig, rung: int) -> Network | None:
        """``config``'s network at ``rung`` (its jobs there over seeds), or None if it was not trained there."""
        return self.networks(rung).get(config.network_key())

    def job(self, number: int) -> Entry:
        return self._numbered[number]

    def strategy(self, e: Entry) -> str:
        """The strategy that proposed a job: the trial's own where it says, else the study's."""
        return str(e.strategy or self.settings.strategy)

    def is_winner(self, e: Entry) -> bool:
        return self.winner is not None and e.job.config.network_key() == self.winner.config.network_key()

    def hover(self, e: Entry, score: str | None = None, trials: str | None = None) -> str:
        """Full config, cost, score, rung, seed and trained resolution of a job, as HTML lines for a hover
        label (``score`` and ``trials`` replace the job's own lines, for a network over several seeds)."""
        config = e.job.config
        factors = " · ".join(f"{SHORT[f]} {getattr(config, f):g}" for f in FACTORS)
        extra = ", ".join(f"{k} {v}" for k, v in config.to_dict().items() if k not in FACTORS and v is not None)
        trained = f"{e.trained_resolution} px" if e.trained_resolution else "?"
        return "<br>".join([
            f"<b>{html.escape(config.id)}</b>",
            factors,
            extra,
            f"MACs {e.macs / 1e6:.1f}M · params {e.params / 1e6:.2f}M",
            score or f"top-1 {100 * e.accuracy:.2f} % · seed {e.job.seed}",
            f"rung {e.job.rung} ({html.escape(self.ladder.rungs[e.job.rung].name)}) · trained at {trained}",
            trials or f"trial #{e.number} ({e.job.role}, {html.escape(self.strategy(e))}"
                      f"{', cached' if e.cached else ''})",
        ])

    def network_hover(self, n: Network) -> str:
        """A network's first job's hover, with the score over seeds and every trial number."""
        first = self.job(n.trials[0])
        if len(n.trials) == 1:
            return self.hover(first)
        scores = ", ".join(f"{100 * x:.2f}" for x in n.scores)
        return self.hover(
            first, score=f"top-1 {100 * n.mean:.2f} % (mean over seeds {', '.join(map(str, n.seeds))}: {scores})",
            trials=f"trials {', '.join(f'#{t}' for t in n.trials)} ({first.job.role}, "
                   f"{html.escape(self.strategy(first))})")


def symbol_of(view: StudyView, e: Entry) -> str:
    if view.is_winner(e):
        return "diamond"
    return "square" if e.job.role == "baseline" else "circle"


def macs_grid(base: ArchConfig, factor_x: str, xs: Sequence[float], factor_y: str, ys: Sequence[float]) -> np.ndarray:
    """Closed-form MACs over a 2-D slice through ``base``: ``[len(ys), len(xs)]``."""
    return np.array([[closed_form_cost(with_factors(base, {factor_x: x, factor_y: y})).macs for x in xs] for y in ys],
                    dtype=np.float64)


def with_factors(base: ArchConfig, values: dict[str, float]) -> ArchConfig:
    values = {k: (int(round(v)) if k == "resolution" else float(v)) for k, v in values.items()}
    return base.replace(**values)
