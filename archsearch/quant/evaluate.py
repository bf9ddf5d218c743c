"""Quantize one trained network with each method and measure it as it would be deployed.

``quantize_network`` reads kept weights (``train.weights``), draws the calibration images from the training
split (never validation), and for every method and bit width scores the quantized network on the full
validation set at the side it was trained at, paired with the float network image by image: the drop gets
a 95 % interval from the per-image differences. 8 bits run as a real int8 ONNX model in ONNX Runtime; 6 bits,
which no CPU runtime executes, are simulated by fake quantization in torch (``executed`` says which). Sizes
are the ONNX files'; latency is batch 1 on ONNX Runtime, float and int8 models timed interleaved.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from ..latency.measure import measure_onnx_files
from ..search.noise import Z95
from ..train import weights as trained_weights
from ..train.data import Split, iterate_batches, load_dataset, normalize
from ..train.record import encode_hits
from . import onnx_int8, ort_static
from .cpu import int8_weight_bits
from .layers import prepare
from .methods import METHODS

ALL_METHODS = ("minmax", "ort", "hybrid")
BITS = (8, 6)
SELECTION_IMAGES = 256  # training images (not the calibration ones) on which ONNX Runtime's calibration method is chosen
DRAW_SEED = 0
BATCH = 64
SIMULATED = "simulated: fake quantization in torch (no CPU runtime executes 6-bit)"
EXECUTED = "ONNX Runtime int8"


@dataclass(frozen=True)
class Outcome:
    """One method at one bit width on the validation set."""

    method: str
    bits: int
    executed: str
    top1: float
    drop: float  # float top-1 minus this, points
    drop_interval: tuple[float, float]  # paired 95 %
    agreement: float  # images whose top-1 class equals the float network's
    size_bytes: int | None = None
    latency: dict[str, Any] | None = None
    int8_kernels: dict[str, int] | None = None
    note: str = ""
    val_correct: str = ""  # which validation images it got right (``train.record.encode_hits``): paired tests


@dataclass(frozen=True)
class Report:
    network: str
    weights: str
    resolution: int
    val_images: int
    calibration_images: int
    float_top1: float
    float_size_bytes: int
    float_latency: dict[str, Any] | None
    int8_weight_bits: int  # 7 where this CPU's int8 kernels would saturate 8-bit weights (``cpu``)
    outcomes: list[Outcome] = field(default_factory=list)
    onnxruntime: str = ort.__version__

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best(self, bits: int) -> Outcome | None:
        """The method with the smallest drop at ``bits`` (ties: the first in ``ALL_METHODS`` order)."""
        found = [o for o in self.outcomes if o.bits == bits]
        return min(found, key=lambda o: (o.drop, ALL_METHODS.index(o.method))) if found else None


def paired_drop(reference: np.ndarray, hits: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The drop in top-1 (points) from ``reference`` to ``hits`` on the same images, with its 95 % interval."""
    diff = reference.astype(float) - hits.astype(float)
    mean = float(diff.mean())
    half = Z95 * float(diff.std(ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else float("inf")
    return 100 * mean, (100 * (mean - half), 100 * (mean + half))


def quantize_network(path: str | Path, methods: tuple[str, ...] = ALL_METHODS, bits: tuple[int, ...] = BITS,
                     calibration: int = 32, data: str | None = None, out: Path | None = None,
                     latency_runs: int = 30, progress: bool = True) -> Report:
    """Every method at every bit width for the network in ``path`` (see the module's docstring)."""
    kept = trained_weights.load(path)
    ds = load_dataset(data or kept.meta.get("data"), kept.resolution, classes=list(kept.classes), progress=progress)
    draw = np.random.default_rng(DRAW_SEED).permutation(len(ds.train))
    calib = _images(ds.train, draw[:calibration])
    selection = _images(ds.train, draw[calibration:calibration + SELECTION_IMAGES])
    model = kept.model()
    float_hits, float_preds = _hits(_torch_classifier(model), ds.val)
    float_selection = _predict(_torch_classifier(model), selection)
    weight_bits = int8_weight_bits()
    folder = out or Path(tempfile.mkdtemp(prefix="archsearch-quant-"))
    folder.mkdir(parents=True, exist_ok=True)
    float_file = onnx_int8.export(model, kept.resolution, folder / "float.onnx")
    files, results = {"float": float_file}, []
    steps = [(m, b) for m in methods for b in bits if not (m == "ort" and b != 8)]
    for method, width in tqdm(steps, disable=not progress, desc="quantize", leave=False):
        if method == "ort":
            file, chosen, scores = ort_static.quantize(
                float_file, calib.numpy(), folder / "ort-int8.onnx", weight_bits < 8,
                lambda candidate: _agreement(_predict(_onnx_classifier(candidate), selection), float_selection))
            note = f"calibration {chosen} (top-1 agreement with float on {len(selection)} other training images: " + \
                ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) + ")"
            hits, preds = _hits(_onnx_classifier(file), ds.val)
            results.append((method, width, EXECUTED, hits, preds, file, note))
            files[f"{method}-int8"] = file
            continue
        prepared = prepare(model)
        METHODS[method]().apply(prepared, calib, width, weight_bits if width == 8 else width)
        if width == 8:
            file = onnx_int8.export_qdq(prepared, kept.resolution, folder / f"{method}-int8.onnx")
            hits, preds = _hits(_onnx_classifier(file), ds.val)
            results.append((method, width, EXECUTED, hits, preds, file, ""))
            files[f"{method}-int8"] = file
        else:
            hits, preds = _hits(_torch_classifier(prepared), ds.val)
            results.append((method, width, SIMULATED, hits, preds, None, ""))
    example = torch.zeros(1, 3, kept.resolution, kept.resolution)
    timed = measure_onnx_files({k: str(v) for k, v in files.items()}, example, 1, latency_runs) \
        if latency_runs else {}
    outcomes = []
    for method, width, executed, hits, preds, file, note in results:
        drop, interval = paired_drop(float_hits, hits)
        key = f"{method}-int8"
        outcomes.append(Outcome(
            method, width, executed, float(hits.mean()), drop, interval, _agreement(preds, float_preds),
            file.stat().st_size if file else None, timed[key].summary() if key in timed and file else None,
            onnx_int8.int8_kernels(file) if file else None, note, encode_hits(hits)))
    return Report(kept.config.id, str(path), kept.resolution, len(ds.val), len(calib), float(float_hits.mean()),
                  float_file.stat().st_size, timed["float"].summary() if "float" in timed else None, weight_bits,
                  outcomes)


def _images(split: Split, index: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(np.ascontiguousarray(split.images[np.sort(index)])).permute(0, 3, 1, 2)
    return normalize(pixels)


Classifier = Callable[[torch.Tensor], np.ndarray]  # a batch of normalised images -> predicted classes


def _torch_classifier(model: nn.Module) -> Classifier:
    @torch.inference_mode()
    def classify(images: torch.Tensor) -> np.ndarray:
        return model(images).argmax(1).numpy()
    return classify


def _onnx_classifier(path: Path) -> Classifier:
    session = onnx_int8.session(path, threads=torch.get_num_threads())
    return lambda images: session.run(None, {"input": images.numpy()})[0].argmax(1)


def _predict(classify: Classifier, images: torch.Tensor) -> np.ndarray:
    return np.concatenate([classify(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def _hits(classify: Classifier, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Per-image top-1 hits on ``split`` and the predicted classes."""
    preds, labels = [], []
    for images, batch_labels in iterate_batches(split, BATCH):
        preds.append(classify(normalize(images)))
        labels.append(batch_labels.numpy())
    pred = np.concatenate(preds)
    return pred == np.concatenate(labels), pred


def _agreement(preds: np.ndarray, reference: np.ndarray) -> float:
    return float((preds == reference).mean())
