"""The timing harness (issue 15): statistics, warm-up, interleaving, descheduled runs, pinned threads, the
``archsearch latency`` command and its one-line errors. No test asserts a time: only how times are taken."""

from __future__ import annotations

import json
import os
import statistics

import pytest
import torch
from torch import nn

from archsearch.cli import main
from archsearch.latency import measure
from archsearch.latency.backends import LatencyError, Target
from archsearch.latency.blocks import build_block, network_blocks
from archsearch.latency.measure import latency_stats, measure_modules, time_targets
from archsearch.model.config import ArchConfig
from archsearch.model.generator import build_model

SMALLEST_V2 = ["--family", "v2", "--resolution", "128", "--width", "0.25", "--mv2-depth", "0.5", "--vit-depth",
               "0.25"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class FakeClock:
    """Wall and thread-CPU clocks that advance only when a scripted run says so."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0

    def advance(self, wall_ns: int, cpu_ns: int) -> None:
        self.wall += wall_ns
        self.cpu += cpu_ns


class ScriptedTarget(Target):
    """Each run takes the next scripted (wall, cpu) duration and logs itself."""

    def __init__(self, name: str, clock: FakeClock, durations: list[tuple[int, int]], log: list[str]) -> None:
        self.name, self.threads, self.clock, self.durations, self.log = name, 1, clock, list(durations), log

    def run(self) -> None:
        wall, cpu = self.durations.pop(0)
        self.clock.advance(wall, cpu)
        self.log.append(self.name)


def scripted(names_durations, log):
    clock = FakeClock()
    targets = [ScriptedTarget(n, clock, d, log) for n, d in names_durations]
    return clock, targets


def test_warmup_runs_are_not_timed_and_the_statistics_are_of_the_timed_runs():
    warmup, runs = 3, 7
    timed_ns = [int(1e6 * (5 + k * 0.37 + (k % 3))) for k in range(runs)]
    durations = [(10**9, 10**9)] * warmup + [(t, t) for t in timed_ns]  # warm-up runs are 1 s: outliers
    log: list[str] = []
    clock, (target,) = scripted([("a", durations)], log)
    (timing,) = time_targets([target], runs, warmup, clock=lambda: clock.wall, cpu_clock=lambda: clock.cpu)
    assert len(log) == warmup + runs and timing.discarded == 0 == timing.preempted
    assert list(timing.times_ms) == [t / 1e6 for t in timed_ns]
    stats = latency_stats(timing.times_ms)
    expected_ms = [t / 1e6 for t in timed_ns]
    assert stats["median_ms"] == statistics.median(expected_ms)
    assert stats["min_ms"] == min(expected_ms) and stats["max_ms"] == max(expected_ms)
    assert stats["p25_ms"] <= stats["median_ms"] <= stats["p75_ms"]
    assert [stats["p25_ms"], stats["p75_ms"]] == [statistics.quantiles(expected_ms, n=4, method="inclusive")[i]
                                                  for i in (0, 2)]


def test_targets_are_interleaved_round_robin_with_a_rewarm_run_per_visit():
    runs, rounds = 6, 3
    per_visit = runs // rounds
    n_runs = 1 + runs + (rounds - 1)  # warm-up, timed, one re-warm per later visit
    log: list[str] = []
    clock, targets = scripted([(n, [(1000, 1000)] * n_runs) for n in "ab"], log)
    timings = time_targets(targets, runs, warmup=1, rounds=rounds, clock=lambda: clock.wall,
                           cpu_clock=lambda: clock.cpu)
    assert [len(t.times_ms) for t in timings] == [runs, runs]
    visit = lambda name, first: [name] * (per_visit + (0 if first else 1))  # noqa: E731
    expected = ["a", "b"] + visit("a", True) + visit("b", True)
    for _ in range(rounds - 1):
        expected += visit("a", False) + visit("b", False)
    assert log == expected


def test_descheduled_runs_are_repeated_then_kept_and_counted():
    runs = 4
    good, bad = (2_000_000, 2_000_000), (6_000_000, 2_000_000)  # bad: the thread ran a third of the wall time
    log: list[str] = []
    clock, (target,) = scripted([("a", [good, bad, good, bad, good, good])], log)
    (timing,) = time_targets([target], runs, 0, clock=lambda: clock.wall, cpu_clock=lambda: clock.cpu)
    assert timing.discarded == 2 and timing.preempted == 0 and timing.times_ms == (2.0,) * runs
    # when the repeats run out (MAX_REPEATS per timed run), descheduled runs are kept and counted
    clock, (target,) = scripted([("a", [bad] * (runs * (measure.MAX_REPEATS + 1)))], [])
    (timing,) = time_targets([target], runs, 0, clock=lambda: clock.wall, cpu_clock=lambda: clock.cpu)
    assert timing.discarded == measure.MAX_REPEATS * runs and timing.preempted == runs
    assert timing.cpu_ms == (2.0,) * runs and timing.times_ms == (6.0,) * runs


def tiny_conv():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


@pytest.mark.parametrize("backend", ["ort-cpu", "torch-cpu"])
def test_a_tiny_model_is_timed_with_pinned_threads_recorded(backend):
    original = torch.get_num_threads()
    torch.set_num_threads(original + 1)  # a training process's own setting, unlike the measurement's
    runs = 12
    try:
        (record,) = measure_modules([("tiny", tiny_conv(), (1, 3, 16, 16))], backend, threads=1, runs=runs,
                                    warmup=2)
        assert torch.get_num_threads() == original + 1  # restored for the process that shares the interpreter
    finally:
        torch.set_num_threads(original)
    assert record.target == "tiny" and record.backend == backend and record.batch == 1
    assert record.threads == 1 and record.cores == tuple(sorted(os.sched_getaffinity(0)))
    assert record.runs == runs == len(record.times_ms) and record.warmup == 2
    assert record.min_ms <= record.p25_ms <= record.median_ms <= record.p75_ms <= record.max_ms
    assert record.median_ms == pytest.approx(statistics.median(record.times_ms), abs=1e-4)
    assert record.cpu_median_ms is not None and record.precision == "fp32"
    assert record.runtime.split()[0] == ("onnxruntime" if backend == "ort-cpu" else "torch")


def test_ort_threads_are_read_back_from_the_session():
    (record,) = measure_modules([("tiny", tiny_conv(), (2, 3, 16, 16))], "ort-cpu", threads=2, runs=3, warmup=0)
    assert record.threads == 2 and record.batch == 2
    assert record.cpu_median_ms is None  # several threads: the caller's CPU time says nothing
    with pytest.raises(LatencyError, match="cpu time needs a single-threaded"):
        record.latency_ms("cpu")


def test_measure_latency_of_a_config_and_interleaved_configs():
    config = ArchConfig("v2", resolution=64, width=0.25, mv2_depth=0.5, vit_depth=0.25)
    record = measure.measure_latency(config, "ort-cpu", batch=1, threads=1, runs=3, warmup=1)
    assert record.target == config.id and record.runs == 3 and record.median_s == record.median_ms / 1e3
    other = config.replace(resolution=96)
    records = measure.measure_configs([config, other], "ort-cpu", runs=4, warmup=0, rounds=2)
    assert [r.target for r in records] == [config.id, other.id] and all(r.rounds == 2 for r in records)
    assert record.summary()["latency_ms"] == round(record.median_ms, 4)


@pytest.mark.parametrize("config", [
    ArchConfig("v2", resolution=224, width=0.75, mv2_depth=1.5, vit_depth=0.5),
    ArchConfig("v1", resolution=224, width=0.625, mv2_depth=1.25, vit_depth=1.5, variant="xs"),
    ArchConfig("v1", resolution=160, width=1.0, mv2_depth=0.5, vit_depth=0.25, variant="xxs", num_classes=10),
])
def test_blocks_make_up_the_network(config):
    """The lookup table's blocks hold exactly the network's parameters, and each runs at its input shape."""
    blocks = network_blocks(config)
    total = 0
    for block in blocks:
        module, shape = build_block(block)
        total += sum(p.numel() for p in module.parameters())
        with torch.no_grad():
            module(torch.zeros(shape))
    assert total == sum(p.numel() for p in build_model(config).parameters())
    layers = sum(s.attn_layers for s in config.stages())
    assert sum(b.kind.endswith("-layer") for b in blocks) == layers


def test_cuda_backend_without_a_gpu_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli(capsys, "latency", *SMALLEST_V2, "--backend", "torch-cuda")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--backend: torch-cuda needs a CUDA GPU" in err


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "tpu"], "--backend: unknown 'tpu'"),
    (["--runs", "5"], "--runs: 5 is below 30"),
    (["--threads", "0"], "--threads: 0 is not a positive integer"),
    (["--batch", "0"], "--batch: 0 is not a positive integer"),
    (["--warmup", "-1"], "--warmup: -1 is negative"),
    (["--cores", "x"], "--cores: cannot read 'x'"),
    (["--width", "2.5"], "--width: 2.5 is not in the space"),
])
def test_latency_cli_errors_are_one_line(capsys, argv, needle):
    base = list(SMALLEST_V2)
    if "--width" in argv:
        base = base[:base.index("--width")] + base[base.index("--width") + 2:]
    code, out, err = run_cli(capsys, "latency", *base, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err


def test_latency_cli_json(capsys):
    code, out, _ = run_cli(capsys, "latency", *SMALLEST_V2, "--json", "--warmup", "1")
    assert code == 0
    data = json.loads(out)
    config = ArchConfig.from_dict(data["config"])
    assert data["target"] == config.id and data["backend"] == "ort-cpu" and data["threads"] == 1
    assert data["runs"] == measure.MIN_CLI_RUNS == len(data["times_ms"]) and data["warmup"] == 1
    assert data["cores"] == sorted(os.sched_getaffinity(0)) and data["batch"] == 1


def test_latency_cli_line_names_how_it_was_measured(capsys):
    code, out, _ = run_cli(capsys, "latency", *SMALLEST_V2, "--backend", "torch-cpu", "--warmup", "0")
    assert code == 0 and out.count("\n") == 1
    assert "v2-r128-w0.25-m0.5-a0.25-c1000" in out and "torch-cpu fp32, batch 1, 1 thread" in out
    assert "over 30 runs after 0 warm-up" in out
