"""Jobs that fit in memory: the estimate against measured peaks, micro-batch gradients, and what ``archsearch
train`` and the search's evaluator do with a job too big for the memory there is."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers.imagefolder import make_image_folder
from torch import nn

from archsearch.cli import main
from archsearch.model.config import ArchConfig, ConfigError, preset
from archsearch.model.generator import build_model
from archsearch.search.evaluator import TrainingEvaluator
from archsearch.search.fidelity import Ladder
from archsearch.search.jobs import Job
from archsearch.train import memory
from archsearch.train.data import load_dataset
from archsearch.train.loop import accumulate_gradients, evaluate
from archsearch.train.peak import measure_peak
from archsearch.train.recipe import get_profile

V2_050 = preset("mobilevitv2_050")
V1_XXS = ArchConfig("v1", variant="xxs")


@pytest.fixture
def fruit(tmp_path, monkeypatch):
    """A 3-class synthetic ImageFolder; stores go to a temporary cache."""
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    return make_image_folder(tmp_path / "fruit")


def _room_for(config: ArchConfig, profile: str, micro_batch: int, data) -> int:
    """Available bytes that just hold ``config`` trained in micro-batches of ``micro_batch`` (nothing resident)."""
    return math.ceil(memory.estimate(config, profile, micro_batch=micro_batch, data=data).peak * memory.HEADROOM)


# ---- the estimate against measured peaks -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config, side, batch, micro", [
    (V2_050, 128, 32, 1),
    (ArchConfig("v2", width=0.35), 128, 64, 2),
    (V1_XXS, 128, 32, 1),
    (V1_XXS, 160, 16, 1),
], ids=["v2-0.5@128", "v2-0.35@128/2", "v1xxs@128", "v1xxs@160"])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(tmp_path, monkeypatch, config, side, batch, micro):
    """ru_maxrss of a fresh process that trains 4 steps and scores, against the estimate made beforehand."""
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    steps, classes = 4, 3
    data = make_image_folder(tmp_path / "fruit", train_per_class=math.ceil(steps * batch / classes), val_per_class=4)
    overrides = {"epochs": 1, "batch_size": batch, "resolution_scale": side / config.resolution,
                 "train_per_class": None, "val_per_class": None}
    prof = get_profile("smoke", **overrides)
    load_dataset(data, side, progress=False)  # decoded here: the measured process only trains
    est = memory.estimate(config, prof, micro_batch=math.ceil(batch / micro), data=data)
    measured = measure_peak(config, "smoke", data, micro_batches=micro, **overrides)
    assert measured["status"] == "ok"
    assert est.activations > est.baseline  # the network, not the constant, is what is being estimated
    assert abs(est.peak / measured["peak"] - 1) <= 0.25, (est, measured)


@pytest.mark.slow
def test_a_large_parent_does_not_inflate_the_measured_peak(tmp_path, monkeypatch):
    """Linux carries ``ru_maxrss`` over ``exec`` from the forked parent: measured from a process holding 1.5 GB
    (as a long test session does), a small job must still measure as small."""
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    data = make_image_folder(tmp_path / "fruit", train_per_class=4, val_per_class=2)
    ballast = bytearray(1_500_000_000)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # resident, not merely reserved
    measured = measure_peak(V1_XXS, "tiny", data, resolution_scale=0.25)
    del ballast
    assert measured["status"] == "ok" and measured["peak"] < 1_200_000_000, measured


def test_the_estimate_grows_with_the_batch_side_and_data_and_falls_with_the_micro_batch(fruit):
    base = memory.estimate(V2_050, "tiny", data=fruit)
    assert base.side == 64 and base.batch_size == 16 and base.micro_batch == 16
    assert memory.split_sizes(get_profile("tiny"), fruit) == (3, 21, 9)  # files, unreadable ones included
    assert base.store == 3 * 64 * 64 * (21 + 9)  # uint8 RGB at the trained side, both splits
    assert memory.estimate(V2_050, "tiny", 32, data=fruit).peak > base.peak
    assert memory.estimate(V2_050.replace(resolution=512), "tiny", data=fruit).peak > base.peak
    halved = memory.estimate(V2_050, "tiny", micro_batch=8, data=fruit)
    assert halved.activations == pytest.approx(base.activations / 2, rel=1e-6)
    assert halved.batch == base.batch  # the whole batch is cropped at once, whatever the split
    assert memory.estimate_peak_bytes(V2_050, "tiny", data=fruit) == base.peak


def test_saved_activations_scale_with_the_pixels_and_leave_the_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    small = memory.saved_bytes_per_image(V1_XXS.replace(num_classes=3), 64)
    large = memory.saved_bytes_per_image(V1_XXS.replace(num_classes=3), 128)
    assert torch.equal(torch.rand(2), expected)
    assert 3 < large / small < 5  # about 4x the pixels
    assert memory.saved_bytes_per_image(V2_050.replace(num_classes=3), 32) > 0  # a 1x1 last map: BatchNorm runs


# ---- the machine -------------------------------------------------------------------------------------------
def test_available_memory_is_read_and_falls_back(monkeypatch):
    total = memory._sysconf_bytes("SC_PHYS_PAGES")
    assert 0 < memory.available_bytes() <= total
    assert 0 < memory.resident_bytes() <= total
    monkeypatch.setattr(memory, "_meminfo", lambda: {"MemFree": 100, "Cached": 20, "Buffers": 3})
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    assert memory.available_bytes() == 123  # a kernel before MemAvailable: free plus cache
    monkeypatch.setattr(memory, "_meminfo", dict)
    assert 0 < memory.available_bytes() <= total  # no /proc: free pages
    monkeypatch.setattr(memory, "_meminfo", lambda: {"MemAvailable": 10 << 30})
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 2 << 30)
    assert memory.available_bytes() == 2 << 30  # a container's limit wins


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_cgroup_limit_is_the_room_left_under_it(tmp_path, version):
    membership = tmp_path / "cgroup"
    if version == "v2":
        membership.write_text("0::/job\n")
        folder, files = tmp_path / "fs" / "job", ("memory.max", "memory.current", "inactive_file")
    else:
        membership.write_text("4:memory:/job\n0::/\n")
        folder = tmp_path / "fs" / "memory" / "job"
        files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    folder.mkdir(parents=True)
    (folder / files[0]).write_text("1000\n")
    (folder / files[1]).write_text("700\n")
    (folder / "memory.stat").write_text(f"anon 600\n{files[2]} 50\n")
    assert memory._cgroup_room(membership, tmp_path / "fs") == 1000 - 700 + 50
    (folder / files[0]).write_text("max\n" if version == "v2" else f"{2**63 - 4096}\n")
    assert memory._cgroup_room(membership, tmp_path / "fs") is None  # no limit


def test_splits_halve_the_batch_down_to_two_images():
    assert memory.splits(128) == [1, 2, 4, 8, 16, 32, 64]
    assert memory.splits(10) == [1, 2, 4, 5]  # 5 slices of 2
    assert memory.splits(11) == [1, 2, 4, 5]  # 3 + 2 + 2 + 2 + 2
    assert memory.splits(3) == memory.splits(2) == memory.splits(1) == [1]


def test_the_plan_takes_the_fewest_micro_batches_that_fit(fruit):
    room = {k: _room_for(V2_050, "tiny", 16 // k, fruit) for k in (1, 2, 4, 8)}
    assert room[1] > room[2] > room[4] > room[8]
    for k in (1, 2, 4, 8):
        plan = memory.plan_micro_batches(V2_050, "tiny", data=fruit, available=room[k], resident=0)
        assert plan.fits and plan.micro_batches == k, k
    plan = memory.plan_micro_batches(V2_050, "tiny", data=fruit, available=room[8] - 1, resident=0)
    assert not plan.fits and plan.estimate.micro_batch == 2 and "even in micro-batches of 2 images" in plan.note()
    held = memory.plan_micro_batches(V2_050, "tiny", data=fruit, available=room[2], resident=room[1] - room[2])
    assert held.micro_batches == 1  # what the process holds already is part of the peak, not claimed again
    assert memory.plan_micro_batches(V2_050, "tiny", data=fruit, available=room[1], resident=0).note() is None


# ---- micro-batch gradients ---------------------------------------------------------------------------------
def _gradients(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, micro_batches: int) -> list:
    model.zero_grad(set_to_none=True)
    loss = accumulate_gradients(model, inputs, labels, micro_batches, label_smoothing=0.1)
    return [loss] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("micro_batches", [2, 3, 10])
def test_micro_batch_gradients_equal_the_whole_batch_without_batchnorm(micro_batches):
    """Batch 10 in 2, 3 (uneven: 4 + 3 + 3) and 10 slices, float64: the loss and every gradient match."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 8, 3, stride=2),
                          nn.GroupNorm(2, 8), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = model.double()
    inputs, labels = torch.randn(10, 3, 12, 12, dtype=torch.float64), torch.randint(0, 4, (10,))
    whole = _gradients(model, inputs, labels, 1)
    split = _gradients(model, inputs, labels, micro_batches)
    for a, b in zip(whole, split, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_mobilevit_with_frozen_batchnorm_gets_the_same_gradients_in_micro_batches():
    """The generated network itself (BatchNorm in eval mode: no batch statistics), through the loop's code
    path; in training mode BatchNorm sees each slice's statistics, and the gradients differ."""
    torch.manual_seed(0)
    model = build_model(V2_050.replace(num_classes=5)).double()
    inputs = torch.randn(4, 3, 64, 64, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([0, 3, 1, 4])
    model.eval()
    for a, b in zip(_gradients(model, inputs, labels, 1), _gradients(model, inputs, labels, 4), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    model.train()
    whole, split = _gradients(model, inputs, labels, 1), _gradients(model, inputs, labels, 4)
    assert not all(torch.allclose(a, b, rtol=1e-6) for a, b in zip(whole, split))


def test_a_run_in_micro_batches_is_recorded_and_is_another_result(fruit):
    whole = evaluate(V2_050, "tiny", fruit, seed=1, progress=False)
    split = evaluate(V2_050, "tiny", fruit, seed=1, progress=False, micro_batches=2)
    assert whole.micro_batches == 1 and split.micro_batches == 2
    assert split.status == "ok" and split.images_seen == whole.images_seen == 16
    assert split.train_loss != whole.train_loss  # BatchNorm saw 8 images, not 16
    with pytest.raises(ConfigError, match="micro_batches: 17 is not in 1..16"):
        evaluate(V2_050, "tiny", fruit, progress=False, micro_batches=17)


# ---- archsearch train and the search's evaluator -----------------------------------------------------------
def _available(monkeypatch, value: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: value)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 0)


def test_train_splits_a_batch_that_does_not_fit_and_says_so_in_one_line(fruit, monkeypatch, capsys):
    _available(monkeypatch, _room_for(V2_050, "tiny", 8, fruit))
    code = main(["train", "--preset", "mobilevitv2_050", "--profile", "tiny", "--data", str(fruit), "--quiet",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "ok" and record["micro_batches"] == 2
    notes = [line for line in err.splitlines() if line.startswith("memory:")]
    assert len(notes) == 1 and "2 micro-batches of 8" in notes[0] and "BatchNorm sees 8" in notes[0]


def test_train_refuses_a_job_that_fits_not_even_two_images_at_a_time(fruit, monkeypatch, capsys):
    _available(monkeypatch, _room_for(V2_050, "tiny", 2, fruit) - 1)
    code = main(["train", "--preset", "mobilevitv2_050", "--profile", "tiny", "--data", str(fruit), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("archsearch train: error: not enough memory: v2-r256-w0.5-m1-a1-c3 at 64 px, batch 16")


def test_the_search_evaluator_splits_or_fails_the_job_instead_of_being_killed(fruit, monkeypatch, tmp_path, capsys):
    evaluator = TrainingEvaluator(Ladder((get_profile("tiny"),)), str(fruit), progress=False, measure_latency=False,
                                  checkpoints=tmp_path / "checkpoints")
    job = Job(V2_050, 0, 0)
    _available(monkeypatch, _room_for(V2_050, "tiny", 4, fruit))
    assert evaluator.micro_batches(job) == 4
    _available(monkeypatch, 10**15)  # planned once: training agrees with what the cache key was told
    record = evaluator(job)
    assert record["status"] == "ok" and record["micro_batches"] == 4
    assert (tmp_path / "checkpoints" / f"{evaluator.checkpoint_dir(job).name}-m4").is_dir()
    assert not evaluator.checkpoint_dir(job).exists()  # never continued as an unsplit run
    evaluator.discard([job])
    assert not any((tmp_path / "checkpoints").iterdir())
    assert "4 micro-batches of 4" in capsys.readouterr().err

    _available(monkeypatch, 1)
    refused = evaluator(Job(V2_050, 0, 1))
    assert refused["status"] == "failed" and refused["reason"].startswith("not enough memory")
    assert refused["top1"] is None and refused["epochs"] == 0 and refused["resolution"] == 64
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("archsearch: not enough memory") and "the job fails" in err[0]
