"""Post-training quantization methods, one class each behind ``Method``: they set the ``QSpec``s of a prepared
network (``layers.prepare``) from calibration images.

* ``MinMax`` -- the naive baseline: every input, weight and output per tensor, asymmetric, its observed
  min/max on the calibration images.
* ``Hybrid`` -- the Q-HyViT approach: block by block in forward order (a MobileViT block is a bridge block:
  convs in, transformer, convs out), each layer's weight (per channel or per tensor, clipped), input and
  output (symmetric or asymmetric, clipped or percentile range) is chosen to minimise the squared error of
  the whole block's output against the float network's, with the block fed by the already quantized blocks
  before it. Activations stay per tensor (layer-wise granularity: what int8 kernels run, and with a range
  that always contains 0 no zero point overflows). Plain squared error, not the paper's Hessian-weighted one.

ONNX Runtime's own quantizer is not a torch method: see ``ort_static``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import QuantLayer, blocks, quant_layers
from .qparams import QSpec, fit

WEIGHT_CLIPS = (1.0, 0.9, 0.8)
ACTIVATION_CLIPS = (1.0, 0.85, 0.7, 0.55)
PERCENTILES = (0.999, 0.9999)
QUANTILE_SAMPLE = 1 << 16  # torch.quantile's input is sampled down to this many values


class Method:
    """Sets a prepared network's specs for ``bits`` from ``calibration`` (normalised training images); weights
    get ``weight_bits`` where given (7 for int8 on a CPU without VNNI: ``cpu.int8_weight_bits``)."""

    name: str = ""

    def apply(self, model: nn.Module, calibration: torch.Tensor, bits: int, weight_bits: int | None = None) -> None:
        raise NotImplementedError


class MinMax(Method):
    name = "minmax"

    def apply(self, model: nn.Module, calibration: torch.Tensor, bits: int, weight_bits: int | None = None) -> None:
        seen = _observe_all(model, calibration)
        for name, layer in quant_layers(model):
            x_low, x_high, y_low, y_high = seen[name]
            layer.input = QSpec(bits, False, None, x_low, x_high)
            layer.output = QSpec(bits, False, None, y_low, y_high)
            layer.weight = fit(layer.layer.weight, weight_bits or bits, symmetric=False)


class Hybrid(Method):
    name = "hybrid"

    def apply(self, model: nn.Module, calibration: torch.Tensor, bits: int, weight_bits: int | None = None) -> None:
        wbits = weight_bits or bits
        for _, layer in quant_layers(model):
            layer.clear()
        x_float = x_quant = calibration
        for _, block in blocks(model):
            target = _float_run(block, x_float)
            error = _BlockError(block, x_quant, target)
            for _, layer in quant_layers(block):
                inputs, outputs = _capture(block, layer, x_quant)
                weight = layer.layer.weight
                # granularity at the full range, then the clip for it (coordinate search: fewer block runs)
                axis = error.best(layer, "weight", [fit(weight, wbits, True, a) for a in (0, None)]).axis
                error.best(layer, "weight", [fit(weight, wbits, True, axis, c) for c in WEIGHT_CLIPS])
                for point, seen in (("input", inputs), ("output", outputs)):
                    scheme = error.best(layer, point, [QSpec(bits, sym, None, seen.low, seen.high)
                                                       for sym in (False, True)]).symmetric
                    error.best(layer, point, [QSpec(bits, scheme, None, low, high) for low, high in seen.ranges()])
            with torch.no_grad():
                x_quant, x_float = block(x_quant), target


class _BlockError:
    """The squared error of a block's output against the float network's, for one layer's candidate specs."""

    def __init__(self, block: nn.Module, x: torch.Tensor, target: torch.Tensor):
        self.block, self.x, self.target = block, x, target

    def best(self, layer: QuantLayer, point: str, candidates: list[QSpec]) -> QSpec:
        """Set ``point`` of ``layer`` to the candidate with the least block error, and return it."""
        scored = []
        for spec in candidates:
            setattr(layer, point, spec)
            with torch.no_grad():
                scored.append((float(torch.mean((self.block(self.x) - self.target) ** 2)), len(scored), spec))
        best = min(scored, key=lambda s: s[:2])[2]
        setattr(layer, point, best)
        return best


METHODS: dict[str, type[Method]] = {m.name: m for m in (MinMax, Hybrid)}


@dataclass(frozen=True)
class _Range:
    """An activation's observed range and its percentile ranges."""

    low: torch.Tensor
    high: torch.Tensor
    percentiles: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    def ranges(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The candidate ranges: min/max shrunk by each clip, then the percentile ranges."""
        return [(self.low * c, self.high * c) for c in ACTIVATION_CLIPS] + list(self.percentiles)


def _summarise(x: torch.Tensor) -> _Range:
    flat = x.detach().float().reshape(-1)
    sample = flat[:: max(1, flat.numel() // QUANTILE_SAMPLE)]
    pairs = tuple((torch.quantile(sample, 1 - p), torch.quantile(sample, p)) for p in PERCENTILES)
    return _Range(flat.min(), flat.max(), pairs)


def _float_run(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's output with every spec of it off (the float network's), specs restored after."""
    layers = [layer for _, layer in quant_layers(block)]
    saved = [(layer.input, layer.weight, layer.output) for layer in layers]
    for layer in layers:
        layer.clear()
    with torch.no_grad():
        out = block(x)
    for layer, (i, w, o) in zip(layers, saved):
        layer.input, layer.weight, layer.output = i, w, o
    return out


def _capture(block: nn.Module, layer: QuantLayer, x: torch.Tensor) -> tuple[_Range, _Range]:
    """The ranges of ``layer``'s input and (unquantized) output as the block runs now."""
    found: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        found["input"], found["output"] = args[0], output

    spec, layer.output = layer.output, None
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            block(x)
    finally:
        handle.remove()
        layer.output = spec
    return _summarise(found["input"]), _summarise(found["output"])


def _observe_all(model: nn.Module, images: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """Every layer's input and output min/max over ``images`` (one float pass, specs off)."""
    seen: dict[str, tuple[torch.Tensor, ...]] = {}
    handles = [layer.register_forward_hook(_recorder(name, seen)) for name, layer in quant_layers(model)]
    try:
        with torch.no_grad():
            _float_run(model, images)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _recorder(name: str, seen: dict) -> object:
    def hook(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x, y = args[0].detach(), output.detach()
        seen[name] = (x.min(), x.max(), y.min(), y.max())
    return hook
