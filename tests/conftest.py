"""Shared fixtures: studies live in a temporary folder; a synthetic evaluator scores configs without training."""

from __future__ import annotations

import math

import pytest

from archsearch.config import ArchConfig


class SyntheticEvaluator:
    """A smooth, known accuracy surface over the factors (optimum inside the space), for search tests."""

    fidelity = {"name": "synthetic"}
    data_fingerprint = "synthetic"
    seed = 0

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, config: ArchConfig, heartbeat=lambda: None) -> dict:
        self.calls.append(config.id)
        score = (
            0.9
            - 0.5 * (math.log2(config.resolution / 224)) ** 2
            - 0.3 * (config.width - 1.0) ** 2
            - 0.05 * (config.mv2_depth - 1.25) ** 2
            - 0.02 * (config.vit_depth - 0.75) ** 2
        )
        return {"status": "ok", "reason": None, "top1": score, "top5": min(1.0, score + 0.1),
                "fidelity": self.fidelity, "seed": self.seed, "dataset": "synthetic", "resolution": config.resolution,
                "wall_s": 0.0}


@pytest.fixture
def synthetic_evaluator() -> SyntheticEvaluator:
    return SyntheticEvaluator()


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
