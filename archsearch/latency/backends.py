"""The backends a latency is measured on, and the machine it is measured on.

* ``ort-cpu`` -- the module is exported to ONNX in memory (TorchScript exporter, ``ONNX_OPSET``) and run by an
  onnxruntime ``InferenceSession`` on the CPU provider, all graph optimisations on, sequential execution,
  ``intra_op_num_threads = threads`` and ``inter_op_num_threads = 1``.
* ``torch-cpu`` -- eager PyTorch, float32, under ``inference_mode``, ``torch.set_num_threads(threads)`` for the
  span of the measurement (``torch_threads`` restores it: a training process keeps its own setting).
* ``torch-cuda`` -- eager PyTorch on the first GPU, bf16 autocast, channels-last; every run is timed with CUDA
  events and synchronised, so the time is the GPU's, not the launch queue's.

Each backend prepares a ``Target``: one inference, ready to run, that ``measure.time_targets`` times.

torch and onnxruntime are imported inside the functions that use them (``# local``): light commands import
the latency package (budgets, backend names, stored predictors) and must not load them.
"""

from __future__ import annotations

import io
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..model.config import ConfigError

BACKENDS = ("ort-cpu", "torch-cpu", "torch-cuda")
DEFAULT_BACKEND = "ort-cpu"
ONNX_OPSET = 17  # the first opset with a native LayerNormalization (v1's transformer); see export.py
INPUT_SEED = 0


class LatencyError(ConfigError):
    """A latency that cannot be measured or predicted as asked; the message names the option (one line)."""


def check_backend(backend: str, option: str = "--backend") -> None:
    """One-line errors naming ``option``: an unknown backend, or CUDA without a GPU."""
    if backend not in BACKENDS:
        raise LatencyError(f"{option}: unknown {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "torch-cuda":
        import torch  # local: no torch for light commands (module docstring)

        if not torch.cuda.is_available():
            raise LatencyError(f"{option}: torch-cuda needs a CUDA GPU and torch.cuda.is_available() is False here; "
                               "use ort-cpu or torch-cpu")


def check_settings(backend: str, batch: int, threads: int, runs: int, warmup: int, rounds: int = 1) -> None:
    check_backend(backend)
    for name, value, low in (("batch", batch, 1), ("threads", threads, 1), ("runs", runs, 1),
                             ("warmup", warmup, 0), ("rounds", rounds, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise LatencyError(f"--{name}: {value!r} is not an integer >= {low}")
    if rounds > runs:
        raise LatencyError(f"--rounds: {rounds} visits cannot share {runs} timed runs")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def allowed_cores() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return tuple(range(os.cpu_count() or 1))


def pin_cores(cores: Sequence[int]) -> None:
    """Pin this process (and threads it starts later) to ``cores``, as ``taskset -c`` would."""
    try:
        os.sched_setaffinity(0, set(cores))
    except (AttributeError, OSError, ValueError) as err:
        raise LatencyError(f"--cores: cannot pin to {','.join(map(str, cores))} ({err})") from None


def parse_cores(text: str) -> tuple[int, ...]:
    """'0', '0,1', '0-3' -> core numbers."""
    cores: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            cores.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise LatencyError(f"--cores: cannot read {text!r}; write e.g. 0, 0,1 or 0-3") from None
    if not cores or min(cores) < 0:
        raise LatencyError(f"--cores: cannot read {text!r}; write e.g. 0, 0,1 or 0-3")
    return tuple(sorted(cores))


def onnx_bytes(module: Any, example: Any, opset: int = ONNX_OPSET, dynamic_batch: bool = False) -> bytes:
    """``module`` as an ONNX model in memory (the TorchScript exporter: torch 2.13's dynamo exporter needs
    onnxscript, which is not a dependency)."""
    import torch  # local: no torch for light commands (module docstring)

    buffer = io.BytesIO()
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():  # the exporter announces its own deprecation and warns on traced shapes
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_axes=axes)
    return buffer.getvalue()


def ort_session(model: bytes | str, threads: int) -> Any:
    """A CPU ``InferenceSession`` with pinned threads: intra-op ``threads``, inter-op 1, sequential."""
    import onnxruntime as ort  # local: no onnxruntime for light commands (module docstring)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # no warnings about unused initialisers
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class Target:
    """One prepared inference: ``run()`` once, synchronously; ``timed()`` once: wall and CPU milliseconds."""

    name: str
    threads: int

    def run(self) -> None:
        raise NotImplementedError

    @property
    def single_threaded(self) -> bool:
        """All the work runs in the calling thread: its CPU time shows whether it was descheduled."""
        return self.threads == 1

    def timed(self, clock: Callable[[], int] = time.perf_counter_ns,
              cpu_clock: Callable[[], int] = time.thread_time_ns) -> tuple[float, float | None]:
        start, cpu = clock(), cpu_clock()
        self.run()
        return (clock() - start) / 1e6, (cpu_clock() - cpu) / 1e6


class OrtTarget(Target):
    def __init__(self, name: str, model: bytes | str, example: Any, threads: int) -> None:
        self.name, self.session = name, ort_session(model, threads)
        self.threads = self.session.get_session_options().intra_op_num_threads
        self.feed = {self.session.get_inputs()[0].name: example.numpy()}

    def run(self) -> None:
        self.session.run(None, self.feed)


class TorchTarget(Target):
    def __init__(self, name: str, module: Any, example: Any) -> None:
        import torch  # local: no torch for light commands (module docstring)

        self.name, self.module, self.example = name, module.eval(), example
        self.threads = torch.get_num_threads()  # inside ``torch_threads``

    def run(self) -> None:
        import torch  # local: no torch for light commands (module docstring)

        with torch.inference_mode():
            self.module(self.example)


class CudaTarget(Target):
    """bf16 autocast, channels-last; timed by CUDA events around the forward, then synchronised."""

    def __init__(self, name: str, module: Any, example: Any) -> None:
        import torch  # local: no torch for light commands (module docstring)

        self.name, self.threads = name, 1
        channels_last = example.dim() == 4
        memory = dict(memory_format=torch.channels_last) if channels_last else {}
        self.module = module.eval().to("cuda", **memory)
        self.example = example.to("cuda", **memory)
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def _forward(self) -> None:
        import torch  # local: no torch for light commands (module docstring)

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            self.module(self.example)

    def run(self) -> None:
        import torch  # local: no torch for light commands (module docstring)

        self._forward()
        torch.cuda.synchronize()

    @property
    def single_threaded(self) -> bool:
        return False  # the GPU's time: a descheduled host thread does not show in it

    def timed(self, clock: Callable[[], int] = time.perf_counter_ns,
              cpu_clock: Callable[[], int] = time.thread_time_ns) -> tuple[float, float | None]:
        import torch  # local: no torch for light commands (module docstring)

        self.start.record()
        self._forward()
        self.end.record()
        torch.cuda.synchronize()
        return float(self.start.elapsed_time(self.end)), None


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the span of a measurement, restored afterwards."""
    import torch  # local: no torch for light commands (module docstring)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def example_input(shape: Sequence[int], seed: int = INPUT_SEED) -> Any:
    import torch  # local: no torch for light commands (module docstring)

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def prepare(name: str, module: Any, shape: Sequence[int], backend: str, threads: int) -> Target:
    """A ready-to-run target: ``module`` on an input of ``shape`` (batch first) on ``backend``."""
    example = example_input(shape)
    if backend == "ort-cpu":
        return OrtTarget(name, onnx_bytes(module.eval(), example), example, threads)
    if backend == "torch-cpu":
        return TorchTarget(name, module, example)
    if backend == "torch-cuda":
        return CudaTarget(name, module, example)
    raise LatencyError(f"--backend: unknown {backend!r}; choose from {', '.join(BACKENDS)}")


def backend_info(backend: str) -> dict[str, str]:
    import torch  # local: no torch for light commands (module docstring)

    if backend == "ort-cpu":
        import onnxruntime as ort  # local: no onnxruntime for light commands (module docstring)

        return {"device": cpu_model(), "runtime": f"onnxruntime {ort.__version__}", "precision": "fp32"}
    if backend == "torch-cuda":
        return {"device": torch.cuda.get_device_name(0), "runtime": f"torch {torch.__version__}",
                "precision": "bf16-autocast"}
    return {"device": cpu_model(), "runtime": f"torch {torch.__version__}", "precision": "fp32"}
