"""Shared fixtures: studies live in a temporary folder; a synthetic evaluator scores configs without training."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from archsearch.config import ArchConfig


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

    def __init__(self, ladder, noise: float = 0.0, early: dict[str, float] | None = None) -> None:
        self.ladder = ladder
        self.noise = noise
        self.early = early or {}
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
        return value + self.noise * seeded_noise(job.config.id, job.rung, job.seed)

    def __call__(self, job) -> dict:
        self.calls.append((job.config.id, job.rung, job.seed))
        score = self.score(job)
        return {"status": "ok", "reason": None, "top1": score, "top5": min(1.0, score + 0.1),
                "fidelity": self.ladder.rungs[job.rung].to_dict(), "seed": job.seed, "dataset": "synthetic",
                "resolution": job.config.resolution, "wall_s": 0.0}


@pytest.fixture
def synthetic_evaluator():
    """A factory: ``synthetic_evaluator(ladder, noise=..., early=...)``."""
    return SyntheticEvaluator


@pytest.fixture(autouse=True)
def isolated_studies(tmp_path, monkeypatch):
    """Every test gets its own studies/ and dashboards/ folders (databases, summaries, cache, HTML)."""
    import archsearch.dashboard as dashboard
    import archsearch.study as study

    folder = tmp_path / "studies"
    folder.mkdir()
    monkeypatch.setattr(study, "STUDIES_DIR", folder)
    monkeypatch.setattr(dashboard, "DASHBOARDS_DIR", tmp_path / "dashboards")
    monkeypatch.setenv("ARCHSEARCH_STUDIES", str(folder))
    monkeypatch.setenv("ARCHSEARCH_DASHBOARDS", str(tmp_path / "dashboards"))
    monkeypatch.setenv("ARCHSEARCH_TRIAL_LATENCY", "0")  # runs skip timing each network; test_latency_search times
    return folder


@pytest.fixture(autouse=True)
def isolated_workers(tmp_path, monkeypatch):
    """Training started by a test (in this process or a child) joins a worker registry of the test's own, not
    the user's; torch's thread count is restored afterwards."""
    import torch

    import archsearch.threads as threads

    monkeypatch.setenv(threads.REGISTRY_ENV, str(tmp_path / "workers"))
    monkeypatch.setattr(threads, "_registration", None)
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def imagenette():
    """The real default dataset (Imagenette beside the project); end-to-end tests skip without it."""
    from archsearch.data import resolve_data_root

    try:
        return resolve_data_root(None)
    except ValueError as err:
        pytest.skip(f"no default dataset: {err}")
