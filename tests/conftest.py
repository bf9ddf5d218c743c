"""Shared fixtures: studies live in a temporary folder; a synthetic evaluator scores configs without training."""

from __future__ import annotations

import os

# Under pytest-xdist (README's test command: one worker per core) each worker is one core's share: one torch
# thread in it and in every process a test starts (archsearch reads $OMP_NUM_THREADS as --threads). Set before
# anything imports torch, which reads it once.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from helpers.evaluator import SyntheticEvaluator
from helpers.real_timm import install_timm


def pytest_collection_modifyitems(config, items):
    """Files with slow end-to-end tests first (the order within each group kept): under pytest-xdist, which
    hands a worker one file at a time, the longest work then starts at once instead of ending the run on one
    worker while the other waits."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture
def synthetic_evaluator():
    """A factory: ``synthetic_evaluator(ladder, noise=..., early=...)``."""
    return SyntheticEvaluator


@pytest.fixture(autouse=True)
def isolated_studies(tmp_path, monkeypatch):
    """Every test gets its own studies/ and dashboards/ folders (databases, summaries, cache, HTML)."""
    from archsearch.report import dashboard
    from archsearch.search import study

    folder = tmp_path / "studies"
    folder.mkdir()
    monkeypatch.setattr(study, "STUDIES_DIR", folder)
    monkeypatch.setattr(dashboard, "DASHBOARDS_DIR", tmp_path / "dashboards")
    monkeypatch.setenv("ARCHSEARCH_STUDIES", str(folder))
    monkeypatch.setenv("ARCHSEARCH_DASHBOARDS", str(tmp_path / "dashboards"))
    monkeypatch.setenv("ARCHSEARCH_TRIAL_LATENCY", "0")  # runs skip timing each network; test_latency_search times
    # summaries skip the importance and formula permutation tests (20 GP refits each);
    # tests/results/test_importance_permutation.py and test_formula.py ask for their shuffles explicitly
    monkeypatch.setenv("ARCHSEARCH_SHUFFLES", "0")
    return folder


@pytest.fixture(autouse=True)
def isolated_workers(tmp_path, monkeypatch):
    """Training started by a test (in this process or a child) joins a worker registry of the test's own, not
    the user's; torch's thread count is restored afterwards."""
    import torch

    from archsearch.train import threads

    monkeypatch.setenv(threads.REGISTRY_ENV, str(tmp_path / "workers"))
    monkeypatch.setattr(threads, "_registration", None)
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def imagenette():
    """The real default dataset (Imagenette beside the project); end-to-end tests skip without it."""
    from archsearch.train.data import resolve_data_root

    try:
        return resolve_data_root(None)
    except ValueError as err:
        pytest.skip(f"no default dataset: {err}")


@pytest.fixture(scope="session")
def imagenette_subset(imagenette, tmp_path_factory):
    """Imagenette cut to the first 12 training images of each class and the first 10 to 19 validation images
    (file-name order), linked, not copied. The tiny profiles read the first 8 and 4 of each class, the same
    images as on the whole dataset, so a run on it trains exactly as on Imagenette; what reads a whole split
    (quantizing scores every validation image) reads 145 images instead of 3,925. Unequal classes, as in
    Imagenette: a network that answers one class scores differently here than on the tiny profiles' 4 a class."""
    from archsearch.train.data import class_names

    root = tmp_path_factory.mktemp("imagenette-subset")
    for index, name in enumerate(class_names(imagenette)):
        for split, count in (("train", 12), ("val", 10 + index)):
            folder = root / split / name
            folder.mkdir(parents=True)
            images = sorted(p.name for p in (imagenette / split / name).iterdir() if not p.name.startswith("."))
            for image in images[:count]:
                (folder / image).symlink_to(imagenette / split / name / image)
    return root


@pytest.fixture(scope="session")
def timm_dir():
    """Real timm for the timm export tests (``helpers.real_timm``): its folder in .cache/, None where timm is
    importable already; they skip without it."""
    return install_timm()
