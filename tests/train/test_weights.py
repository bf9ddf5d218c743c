"""Kept weights: ``archsearch train --save FILE`` and ``evaluate(weights=...)`` write a network that scores
what the run scored, read back from the file alone."""

from __future__ import annotations

import pytest
import torch
from helpers.imagefolder import make_image_folder

from archsearch import ArchConfig
from archsearch.model.config import ConfigError
from archsearch.train import weights
from archsearch.train.data import load_dataset
from archsearch.train.loop import accuracy, evaluate

CONFIG = ArchConfig("v2", resolution=64, width=0.25, mv2_depth=0.5, vit_depth=0.25)


@pytest.fixture
def fruit(tmp_path):
    return make_image_folder(tmp_path / "fruit")


def test_kept_weights_score_what_the_run_scored(tmp_path, fruit):
    path = tmp_path / "w" / "net.pt"
    record = evaluate(CONFIG, "tiny", fruit, seed=3, progress=False, epochs=3, weights=path)
    kept = weights.load(path)
    assert kept.resolution == record.resolution and kept.config.num_classes == 3
    assert kept.classes == ("apple", "berry", "cherry") and kept.meta["seed"] == 3
    assert kept.meta["top1"] == record.top1
    ds = load_dataset(fruit, kept.resolution, classes=list(kept.classes), progress=False)
    top1, _ = accuracy(kept.model(), ds.val, 4, torch.device("cpu"))
    assert top1 == record.top1
    fresh = ArchConfig.from_dict({**CONFIG.to_dict(), "num_classes": 3})
    from archsearch.model.generator import build_model

    torch.manual_seed(99)
    untrained = build_model(fresh)
    assert any(not torch.equal(a, b) for a, b in zip(untrained.state_dict().values(), kept.state.values()))


def test_unreadable_weights_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        weights.load(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        weights.load(tmp_path / "text.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="not an archsearch weights file"):
        weights.load(tmp_path / "foreign.pt")


def test_train_save_from_the_cli(tmp_path, fruit, capsys):
    from archsearch.cli import main

    args = ["train", "--preset", "mobilevitv2_050", "--resolution", "64", "--profile", "tiny", "--epochs", "1",
            "--data", str(fruit), "--quiet"]
    assert main([*args, "--save", str(tmp_path)]) == 2  # a folder
    assert main([*args, "--save", str(tmp_path / "no" / "such" / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("error: --save:" in line for line in err)
    assert main([*args, "--save", str(tmp_path / "x.pt")]) == 0
    assert f"weights: {tmp_path / 'x.pt'}" in capsys.readouterr().out
    assert weights.load(tmp_path / "x.pt").config.id.startswith("v2-r64")


def test_a_cached_top_rung_result_brings_its_weights_into_the_study(tmp_path, fruit):
    from archsearch.search.evaluator import TrainingEvaluator
    from archsearch.search.fidelity import ladder
    from archsearch.search.jobs import Job

    first = TrainingEvaluator(ladder(("tiny",)), str(fruit), progress=False, measure_latency=False,
                              weights=tmp_path / "a" / "weights")
    job = Job(CONFIG, 0, 0)
    record = first(job)
    assert record["weights"] == str(first.weights_file(job)) and weights.load(record["weights"])
    other = TrainingEvaluator(ladder(("tiny",)), str(fruit), progress=False, measure_latency=False,
                              weights=tmp_path / "b" / "weights")
    adopted = other.adopt(job, record)
    assert adopted["weights"] == str(tmp_path / "b" / "weights" / first.weights_file(job).name)
    assert weights.load(adopted["weights"]).meta == weights.load(record["weights"]).meta
    (tmp_path / "a" / "weights" / first.weights_file(job).name).unlink()
    (tmp_path / "b" / "weights" / first.weights_file(job).name).unlink()
    assert "weights" not in other.adopt(job, record)  # gone: the record no longer claims any
    below = ladder(("tiny", "tiny-top"))
    screening = TrainingEvaluator(below, str(fruit), progress=False, measure_latency=False, weights=tmp_path / "c")
    assert screening.weights_file(Job(CONFIG, 0, 0)) is None and screening.weights_file(Job(CONFIG, 1, 0))
