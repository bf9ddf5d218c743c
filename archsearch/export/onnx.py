"""The ONNX export: the network as an ONNX graph (batch 1 at its resolution), checked against PyTorch and timed
with onnxruntime by the harness of ``archsearch latency``.

The graph holds the trial's trained weights where the study kept them (``train.weights``: the deciding
rung's networks), else freshly initialised ones (seeded), for deployment checks and latency only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ..latency.measure import measure_onnx
from ..model.config import ArchConfig
from ..model.generator import build_model
from ..train.weights import Weights
from . import ExportError

# Opset 17: the first with a native LayerNormalization (v1's transformer), supported by every onnxruntime
# since 1.11 and by the mobile runtimes. The legacy TorchScript exporter (dynamo=False) is used: torch 2.13's
# default dynamo exporter needs the onnxscript package, which is not a dependency; the TorchScript exporter
# lowers F.scaled_dot_product_attention to MatMul/Softmax and the v2 block to Conv/InstanceNormalization.
ONNX_OPSET = 17
ONNX_SEED = 0
LATENCY_RUNS = 50
LATENCY_WARMUP = 10


def export_onnx(config: ArchConfig, path: Path, opset: int = ONNX_OPSET, runs: int = LATENCY_RUNS,
                warmup: int = LATENCY_WARMUP, threads: int | None = None, seed: int = ONNX_SEED,
                trained: Weights | None = None) -> dict[str, Any]:
    """Write ``config`` as ONNX (batch 1, its resolution), check it against PyTorch, time it on CPU.

    The batch axis is dynamic; the spatial size is fixed at the searched resolution. ``threads`` sets
    onnxruntime's intra-op threads (default: every core of this machine). The timing is
    ``latency.measure``'s, the harness of ``archsearch latency``; its summary is the section's ``latency``.
    ``trained``: the network's trained weights (their class count); the graph then makes predictions.
    """
    if runs < 1 or warmup < 0:
        raise ExportError(f"--runs: need at least 1 timed run (got {runs}) and warm-up >= 0 (got {warmup})")
    threads = threads or os.cpu_count() or 1
    torch.manual_seed(seed)
    model = trained.model() if trained is not None else build_model(config).eval()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, config.resolution, config.resolution, generator=generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the TorchScript exporter announces its own deprecation and warns about traced shape arithmetic
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(path)))
    timing, session = measure_onnx(str(path), x, threads, runs, warmup, name=config.id)
    with torch.no_grad():
        reference = model(x).numpy()
    output = session.run(None, {"input": x.numpy()})[0]
    max_abs_diff = float(np.abs(output - reference).max())
    return {
        "file": path.name,
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=False), torch {torch.__version__}",
        "input": {"name": "input", "shape": [1, 3, config.resolution, config.resolution], "dynamic": ["batch"]},
        "weights": (f"trained ({trained.meta.get('profile')}, seed {trained.meta.get('seed')}, at "
                    f"{trained.resolution} px)" if trained is not None else
                    f"freshly initialised (torch.manual_seed({seed})): for deployment checks, not predictions"),
        "max_abs_diff": max_abs_diff,
        "reference_max_abs": float(np.abs(reference).max()),
        "latency_ms_median": round(timing.median_ms, 4),
        "latency_ms_min": round(timing.min_ms, 4),
        "runs": runs,
        "warmup": warmup,
        "batch": 1,
        "onnxruntime": ort.__version__,
        "providers": session.get_providers(),
        "threads": timing.threads,
        "latency": timing.summary(),
    }
