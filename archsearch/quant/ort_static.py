"""ONNX Runtime's own static quantization, the comparison a user would otherwise reach for.

QDQ format, per-channel int8 weights, uint8 activations and every operator type ONNX Runtime can quantize
(its defaults for a CPU), calibrated on the same images as the other methods with each of its calibration
methods; the one whose model agrees best with the float network's top-1 on other training images (not the
calibration ones; never validation images) is kept. 8 bits only: it writes int8.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

CALIBRATIONS = {"MinMax": CalibrationMethod.MinMax, "Entropy": CalibrationMethod.Entropy,
                "Percentile": CalibrationMethod.Percentile}


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray):
        self._batches = iter([{"input": images[i:i + 1]} for i in range(len(images))])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantize(float_model: Path, calibration: np.ndarray, out: Path, reduce_range: bool,
             agreement: Callable[[Path], float]) -> tuple[Path, str, dict[str, float]]:
    """ONNX Runtime's int8 model of ``float_model``: ``(path, calibration method kept, agreement of each)``.
    ``reduce_range``: 7-bit weights (its advice for a CPU without VNNI, as ``cpu.int8_weight_bits`` says);
    ``agreement(path)`` scores a candidate model on training images other than the calibration ones."""
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        with contextlib.redirect_stderr(io.StringIO()):  # its notes on shape inference
            quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        for name, method in CALIBRATIONS.items():
            candidate = Path(folder) / f"{name}.onnx"
            # a warning per normalisation constant it does not quantize; its calibrators' progress on stdout
            with _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(prepared), str(candidate), _Images(calibration), quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=method)
            scores[name] = agreement(candidate)
        best = max(scores, key=lambda k: (scores[k], -list(CALIBRATIONS).index(k)))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes((Path(folder) / f"{best}.onnx").read_bytes())
    return out, best, scores
