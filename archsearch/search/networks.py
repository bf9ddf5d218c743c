"""One network at one rung, as everything after the search reads it, and the two orders networks are ranked in.

A job trains a network at a rung with a seed (``jobs.Entry``); a ``Network`` is the jobs of one network at
one rung, one per seed (``jobs.Ledger.networks``). The plan promotes by it (``by_score``), the decision picks
the winner by it (``by_estimate``, once it has added the GP's posterior), and the summary, the dashboard,
the export and the replays read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..latency.trial import over_budget
from ..model.config import ArchConfig


@dataclass(frozen=True)
class Network:
    """One network's results at one rung: its first job at each seed, in seed order."""

    config: ArchConfig
    macs: int
    rung: int
    fidelity: str  # the rung's profile name
    trained_resolution: int | None
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    trials: tuple[int, ...]
    hits: dict[int, np.ndarray] = field(default_factory=dict, compare=False)  # seed -> per-image top-1 hits
    latency: dict | None = None  # the measured latency of one of its jobs, at any rung (``latency.trial``)
    posterior_mean: float | None = None  # the GP's, added by the decision
    posterior_std: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def estimate(self) -> float:
        """What the decision ranks by: the GP's posterior mean (else the mean over seeds), to 1e-6, so equal
        is equal."""
        return round(self.posterior_mean if self.posterior_mean is not None else self.mean, 6)

    @property
    def over_latency(self) -> bool:
        return over_budget(self.latency)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "config_id": self.config.id, "macs": self.macs, "rung": self.rung,
                "fidelity": self.fidelity, "trained_resolution": self.trained_resolution, "seeds": list(self.seeds),
                "scores": list(self.scores), "accuracy": self.mean, "trials": list(self.trials),
                "posterior_mean": self.posterior_mean, "posterior_std": self.posterior_std,
                "latency_ms": self.latency.get("latency_ms") if self.latency else None,
                "latency_backend": self.latency.get("backend") if self.latency else None,
                "over_latency_budget": self.over_latency}


def by_score(networks: Iterable[Network]) -> list[Network]:
    """Promotion's order: mean score over seeds, best first; ties go to the cheaper network, then to the
    earlier one."""
    return sorted(networks, key=lambda n: (-n.mean, n.macs))


def by_estimate(networks: Iterable[Network]) -> list[Network]:
    """The decision's order: ``estimate`` (the GP's mean), best first; networks it puts level go by their own
    mean score (to 1e-6), then to the cheaper, then to the earlier one."""
    return sorted(networks, key=lambda n: (-n.estimate, -round(n.mean, 6), n.macs))
