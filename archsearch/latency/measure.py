"""The timing harness: inference latency of a network (or of one block of it) on a backend.

One harness serves ``archsearch latency``, the latency tables, a trial's measured latency and the ONNX
export, so every latency archsearch reports is taken the same way, on one of ``backends.BACKENDS``.

Warm-up runs come first and are never timed. Several targets are timed interleaved (round-robin over the
targets, ``rounds`` visits each, one untimed run at every later visit to refill the caches another target
evicted), so drift of a shared machine hits them all alike; a single-threaded run during which another
process took the core is repeated (``time_targets``). The threads are pinned and read back from the runtime
into the record, with the CPU cores the process may run on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..model.config import ArchConfig
from .backends import (
    DEFAULT_BACKEND,
    INPUT_SEED,
    LatencyError,
    OrtTarget,
    Target,
    allowed_cores,
    backend_info,
    check_settings,
    prepare,
    torch_threads,
)

PREEMPTED_BELOW = 0.97  # thread CPU time / wall time of a run that had its core to itself
MAX_REPEATS = 1  # descheduled runs repeated per timed run at most; beyond that they are kept and counted
STATISTICS = ("wall", "cpu")
MIN_CLI_RUNS = 30
DEFAULT_RUNS = 30
DEFAULT_WARMUP = 10


@dataclass(frozen=True)
class LatencyRecord:
    """How long one inference of ``target`` took: statistics of ``runs`` timed runs after ``warmup``."""

    target: str  # a config id, or a block key
    backend: str
    batch: int
    threads: int  # as read back from the runtime
    runs: int
    warmup: int
    rounds: int
    median_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    max_ms: float
    device: str  # CPU model or GPU name
    runtime: str  # "onnxruntime 1.22.0" / "torch 2.13.0+cpu"
    precision: str  # "fp32" / "bf16-autocast"
    cores: tuple[int, ...]  # CPUs the process was allowed to run on
    measured_at: str
    cpu_median_ms: float | None = None  # thread CPU time of the kept runs (single-threaded CPU targets)
    discarded: int = 0  # runs repeated because another process took the core (``time_targets``)
    preempted: int = 0  # kept runs that were descheduled all the same (the repeats ran out)
    times_ms: tuple[float, ...] = field(repr=False, default=())

    @property
    def median_s(self) -> float:
        return self.median_ms / 1e3

    def latency_ms(self, statistic: str = "wall") -> float:
        """The median wall time, or (``cpu``) the median thread CPU time: the wall time of an inference on a
        core it has to itself, measurable even while other processes share the core."""
        if statistic == "wall":
            return self.median_ms
        if statistic == "cpu" and self.cpu_median_ms is not None:
            return self.cpu_median_ms
        raise LatencyError(f"--statistic: {statistic!r} is not available for {self.backend} with {self.threads} "
                           "thread(s); cpu time needs a single-threaded CPU backend")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cores"], data["times_ms"] = list(self.cores), list(self.times_ms)
        return data

    def summary(self) -> dict[str, Any]:
        """The short form a trial or an export record carries: latency, where and how it was measured."""
        return {"latency_ms": round(self.median_ms, 4), "p25_ms": round(self.p25_ms, 4),
                "p75_ms": round(self.p75_ms, 4), "backend": self.backend, "batch": self.batch,
                "threads": self.threads, "runs": self.runs, "device": self.device, "runtime": self.runtime,
                "precision": self.precision, "cores": list(self.cores), "cpu_median_ms": self.cpu_median_ms,
                "discarded": self.discarded, "preempted": self.preempted, "measured_at": self.measured_at}


def latency_stats(times_ms: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and range of the timed runs."""
    if not times_ms:
        raise ValueError("no timed runs")
    p25, _, p75 = statistics.quantiles(times_ms, n=4, method="inclusive") if len(times_ms) > 1 else (times_ms[0],) * 3
    return {"median_ms": statistics.median(times_ms), "p25_ms": p25, "p75_ms": p75, "min_ms": min(times_ms),
            "max_ms": max(times_ms)}


# ---- timing ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    times_ms: tuple[float, ...]  # wall time of each kept run
    cpu_ms: tuple[float, ...] | None  # thread CPU time of each kept run (single-threaded targets)
    discarded: int  # runs repeated because the thread was descheduled during them
    preempted: int  # kept runs that were descheduled all the same


def time_targets(targets: Sequence[Target], runs: int, warmup: int, rounds: int = 1,
                 clock: Callable[[], int] = time.perf_counter_ns,
                 cpu_clock: Callable[[], int] = time.thread_time_ns) -> list[Timing]:
    """Timed runs (ms) of each target, interleaved: ``warmup`` untimed runs each, then ``rounds`` passes over
    the targets, each visit one untimed run (after the first pass) and its share of the ``runs`` timed runs.

    On a shared CPU another process can take the core mid-run. For a single-threaded target that shows as
    thread CPU time below ``PREEMPTED_BELOW`` of the wall time: such a run is discarded and repeated, up to
    ``MAX_REPEATS`` times the runs; beyond that descheduled runs are kept and counted as ``preempted``."""
    for target in targets:
        for _ in range(warmup):
            target.run()
    share = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    walls: list[list[float]] = [[] for _ in targets]
    cpus: list[list[float]] = [[] for _ in targets]
    discarded, preempted = [0] * len(targets), [0] * len(targets)
    for r, n in enumerate(share):
        for k, target in enumerate(targets):
            if r and len(targets) > 1:
                target.run()  # the previous target evicted this one's weights from the caches
            kept = 0
            while kept < n:
                wall, cpu = target.timed(clock, cpu_clock)
                descheduled = target.single_threaded and cpu < PREEMPTED_BELOW * wall
                if descheduled and discarded[k] < MAX_REPEATS * runs:
                    discarded[k] += 1
                    continue
                walls[k].append(wall)
                cpus[k].append(cpu)
                preempted[k] += descheduled
                kept += 1
    return [Timing(tuple(w), tuple(c) if t.single_threaded else None, d, p)
            for t, w, c, d, p in zip(targets, walls, cpus, discarded, preempted)]


def measure_modules(items: Sequence[tuple[str, Any, Sequence[int]]], backend: str = DEFAULT_BACKEND,
                    threads: int = 1, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                    rounds: int = 1) -> list[LatencyRecord]:
    """Time ``(name, module, input shape)`` items interleaved on ``backend``; one record per item."""
    check_settings(backend, 1, threads, runs, warmup, rounds)
    with torch_threads(threads):
        targets = [prepare(name, module, shape, backend, threads) for name, module, shape in items]
        timings = time_targets(targets, runs, warmup, rounds)
    return [_record(t, tm, backend, int(shape[0]), warmup, rounds)
            for t, tm, (_, _, shape) in zip(targets, timings, items)]


def measure_onnx(path: str, example: Any, threads: int, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                 name: str = "") -> tuple[LatencyRecord, Any]:
    """Time an ONNX file on ``ort-cpu`` (the export's check): the record and the session, for more runs."""
    check_settings("ort-cpu", int(example.shape[0]), threads, runs, warmup)
    target = OrtTarget(name or str(path), str(path), example, threads)
    timing = time_targets([target], runs, warmup)[0]
    return _record(target, timing, "ort-cpu", int(example.shape[0]), warmup, 1), target.session


def measure_onnx_files(paths: dict[str, str], example: Any, threads: int = 1, runs: int = DEFAULT_RUNS,
                       warmup: int = DEFAULT_WARMUP, rounds: int = 3) -> dict[str, LatencyRecord]:
    """Time several ONNX files of one input on ``ort-cpu``, interleaved (a float model and its int8 models
    under the same conditions); one record per name."""
    check_settings("ort-cpu", int(example.shape[0]), threads, runs, warmup, rounds)
    targets = [OrtTarget(name, str(path), example, threads) for name, path in paths.items()]
    timings = time_targets(targets, runs, warmup, rounds)
    return {t.name: _record(t, tm, "ort-cpu", int(example.shape[0]), warmup, rounds) for t, tm in zip(targets, timings)}


def _record(target: Target, timing: Timing, backend: str, batch: int, warmup: int, rounds: int) -> LatencyRecord:
    return LatencyRecord(
        target=target.name, backend=backend, batch=batch, threads=target.threads, runs=len(timing.times_ms),
        warmup=warmup, rounds=rounds, **latency_stats(timing.times_ms), **backend_info(backend), cores=allowed_cores(),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cpu_median_ms=None if timing.cpu_ms is None else statistics.median(timing.cpu_ms), discarded=timing.discarded,
        preempted=timing.preempted, times_ms=tuple(round(x, 5) for x in timing.times_ms))


def network(config: ArchConfig, batch: int, seed: int = INPUT_SEED) -> tuple[str, Any, tuple[int, ...]]:
    """``(config id, freshly initialised model, input shape)``: untrained weights time as trained ones do."""
    # local: torch and the model builder load only to measure (light commands import the latency package)
    import torch

    from ..model.generator import build_model

    torch.manual_seed(seed)
    return config.id, build_model(config), (batch, 3, config.resolution, config.resolution)


def measure_latency(config: ArchConfig, backend: str = DEFAULT_BACKEND, batch: int = 1, threads: int = 1,
                    runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP) -> LatencyRecord:
    """Inference latency of ``config`` (freshly initialised weights) on ``backend``: median and spread of
    ``runs`` timed runs after ``warmup`` untimed ones. Errors are ``LatencyError`` (one line)."""
    check_settings(backend, batch, threads, runs, warmup)
    return measure_modules([network(config, batch)], backend, threads, runs, warmup)[0]


def measure_configs(configs: Sequence[ArchConfig], backend: str = DEFAULT_BACKEND, batch: int = 1,
                    threads: int = 1, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                    rounds: int = 5) -> list[LatencyRecord]:
    """Several configs timed interleaved (``rounds`` round-robin passes): comparable under drift."""
    check_settings(backend, batch, threads, runs, warmup, min(rounds, runs))
    return measure_modules([network(c, batch) for c in configs], backend, threads, runs, warmup,
                           min(rounds, runs))


def format_record(record: LatencyRecord) -> str:
    """One line: the median, the spread, and how it was measured."""
    threads = f"{record.threads} thread{'s' if record.threads != 1 else ''}"
    cores = ",".join(map(str, record.cores))
    cpu = "" if record.cpu_median_ms is None else f"; CPU time {record.cpu_median_ms:.3f} ms median"
    shared = (f"; {record.discarded} runs repeated and {record.preempted} kept although another process took the "
              "core" if record.discarded else "")
    return (f"{record.target}  {record.median_ms:.3f} ms median (IQR {record.p25_ms:.3f}-{record.p75_ms:.3f}, "
            f"min {record.min_ms:.3f}, max {record.max_ms:.3f}) over {record.runs} runs after {record.warmup} "
            f"warm-up{cpu}{shared}; {record.backend} {record.precision}, batch {record.batch}, {threads}, cores "
            f"{cores}; {record.device}, {record.runtime}")
