"""A synthetic evaluator: scores jobs from a known surface plus seeded noise, without training."""

from __future__ import annotations

import hashlib
import math
import random

from archsearch.model.config import ArchConfig


def surface(config: ArchConfig) -> float:
    """A smooth, known top-rung accuracy over the factors (optimum inside the space)."""
    return (
        0.9
        - 0.5 * (math.log2(config.resolution / 224)) ** 2
        - 0.3 * (config.width - 1.0) ** 2
        - 0.05 * (config.mv2_depth - 1.25) ** 2
        - 0.02 * (config.vit_depth - 0.75) ** 2
    )


def seeded_noise(*key: object) -> float:
    """A standard normal draw fixed by ``key`` (the same job always scores the same)."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return random.Random(digest).gauss(0.0, 1.0)


class SyntheticEvaluator:
    """Scores jobs without training: ``surface`` at the top rung, a compressed and lower copy of it at the
    rungs below (``early`` can replace a config's lower-rung score), plus seeded noise of ``noise`` std."""

    def __init__(self, ladder, noise: float = 0.0, early: dict[str, float] | None = None, bias: float = 0.0,
                 rung_noise: dict[int, float] | None = None) -> None:
        self.ladder = ladder
        self.noise = noise
        self.early = early or {}
        self.bias = bias  # std of a network's error at the rungs below the top that no seed averages out
        self.rung_noise = rung_noise or {}  # a rung's own noise std, where it is not ``noise``
        self.calls: list[tuple[str, int, int]] = []

    def context(self) -> dict:
        return {"data": "synthetic"}

    def trained_resolution(self, job) -> int:
        return job.config.resolution

    def latency(self, job) -> dict | None:
        return None

    def score(self, job) -> float:
        top = len(self.ladder.rungs) - 1
        value = surface(job.config)
        if job.rung < top:
            value = self.early.get(job.config.id, 0.5 * value + 0.1 * job.rung)
            value += self.bias * seeded_noise("bias", job.config.network_key(), job.rung)
        noise = self.rung_noise.get(job.rung, self.noise)
        return value + noise * seeded_noise(job.config.id, job.rung, job.seed)

    def __call__(self, job) -> dict:
        self.calls.append((job.config.id, job.rung, job.seed))
        score = self.score(job)
        return {"status": "ok", "reason": None, "top1": score, "top5": min(1.0, score + 0.1),
                "fidelity": self.ladder.rungs[job.rung].to_dict(), "seed": job.seed, "dataset": "synthetic",
                "resolution": job.config.resolution, "wall_s": 0.0}
