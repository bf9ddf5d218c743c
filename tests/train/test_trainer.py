"""``archsearch train --config FILE --out DIR``: checkpoints every epoch and resumes after being killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers.imagefolder import make_image_folder

from archsearch import ArchConfig
from archsearch.train.loop import evaluate

CONFIG = ArchConfig("v2", resolution=64, width=0.25, mv2_depth=0.5, vit_depth=0.25)
EPOCHS = 40


@pytest.fixture
def fruit(tmp_path):
    return make_image_folder(tmp_path / "fruit")


def train_cmd(config_file, fruit, out):
    return [sys.executable, "-m", "archsearch", "train", "--config", str(config_file), "--profile", "tiny",
            "--epochs", str(EPOCHS), "--data", str(fruit), "--out", str(out), "--quiet", "--json"]


def test_killed_training_resumes_and_ends_as_an_uninterrupted_run(tmp_path, fruit, monkeypatch):
    config_file = tmp_path / "winner.json"
    config_file.write_text(json.dumps({"config": CONFIG.to_dict(), "accuracy": 0.5}))
    out = tmp_path / "run"
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    env = dict(os.environ)
    proc = subprocess.Popen(train_cmd(config_file, fruit, out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = torch.load(out / "last.pt", weights_only=False)["epoch"]
    assert 1 <= stopped_at < EPOCHS

    resumed = subprocess.run(train_cmd(config_file, fruit, out), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(resumed.stdout[resumed.stdout.index("{"):])
    assert record["epochs"] == EPOCHS and len(record["history"]) == EPOCHS
    assert [h["epoch"] for h in record["history"]] == list(range(1, EPOCHS + 1))
    assert json.loads((out / "result.json").read_text())["top1"] == record["top1"]
    assert (out / "curve.html").stat().st_size > 100_000

    straight = evaluate(CONFIG, "tiny", fruit, 0, progress=False, epochs=EPOCHS,
                        checkpoint_dir=tmp_path / "straight", curve=True)
    assert straight.top1 == record["top1"] and straight.train_loss == record["train_loss"]
    assert [h["val_top1"] for h in straight.history] == [h["val_top1"] for h in record["history"]]


def test_a_checkpoint_of_another_run_is_refused(tmp_path, fruit, capsys):
    from archsearch.cli import main

    out = tmp_path / "run"
    args = ["train", "--profile", "tiny", "--epochs", "1", "--data", str(fruit), "--out", str(out), "--quiet"]
    assert main([*args, "--preset", "mobilevitv2_050", "--resolution", "128"]) == 0
    capsys.readouterr()
    assert main([*args, "--preset", "mobilevitv2_075", "--resolution", "128"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a checkpoint of another run" in err[0]


def test_config_file_errors_are_one_line(tmp_path, capsys):
    from archsearch.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--config", str(bad), "--profile", "tiny"]) == 2
    assert main(["train", "--config", str(bad), "--preset", "mobilevitv2_050"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and str(bad) in err[0] and "--config cannot be combined" in err[1]
