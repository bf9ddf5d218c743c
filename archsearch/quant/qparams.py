"""Quantization parameters of one tensor, and fake quantization with them.

A ``QSpec`` is how a tensor is quantized: bits, symmetric or asymmetric, per tensor or per channel (``axis``),
and the range it covers. ``fit`` turns an observed range into scale and zero point; ``fake_quant`` rounds a
tensor onto that grid and back (``torch.fake_quantize_*``, which the ONNX exporter writes as a
QuantizeLinear / DequantizeLinear pair at 8 bits).

Zero-point overflow (Q-HyViT's second cause) cannot happen here: an asymmetric range is always widened to
contain 0, so a channel whose values are all positive gets the lowest code as its zero point instead of one
below the int8 range that would be clipped (``naive_zero_point`` computes the overflowing one, for the tests
and the explanation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EPS = 1e-12


@dataclass(frozen=True)
class QSpec:
    bits: int
    symmetric: bool
    axis: int | None  # None: one scale for the tensor; else one per index along this axis
    low: torch.Tensor  # the range covered (a scalar, or one value per channel)
    high: torch.Tensor

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def scale_zero_point(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale (float32) and signed zero point (int32), the zero point always inside [qmin, qmax]."""
        low, high = torch.clamp(self.low, max=0.0), torch.clamp(self.high, min=0.0)  # 0 is always representable
        if self.symmetric:
            bound = torch.maximum(-low, high)
            scale = torch.clamp(bound / self.qmax, min=EPS)
            zero = torch.zeros_like(scale, dtype=torch.int32)
        else:
            scale = torch.clamp((high - low) / (self.qmax - self.qmin), min=EPS)
            zero = torch.clamp(torch.round(self.qmin - low / scale), self.qmin, self.qmax).to(torch.int32)
        return scale.float(), zero

    def describe(self) -> str:
        kind = "sym" if self.symmetric else "asym"
        return f"{self.bits}b {kind} per-{'channel' if self.axis is not None else 'tensor'}"


def observe(x: torch.Tensor, axis: int | None = None, clip: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The range of ``x`` (per index along ``axis``), shrunk towards 0 by ``clip`` (1: min/max)."""
    if axis is None:
        low, high = x.min(), x.max()
    else:
        flat = x.transpose(0, axis).reshape(x.shape[axis], -1)
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
    return low * clip, high * clip


def fit(x: torch.Tensor, bits: int, symmetric: bool, axis: int | None = None, clip: float = 1.0) -> QSpec:
    """The spec whose range is ``x``'s (clipped by ``clip``)."""
    low, high = observe(x.detach().float(), axis, clip)
    return QSpec(bits, symmetric, axis, low, high)


def fake_quant(x: torch.Tensor, spec: QSpec) -> torch.Tensor:
    """``x`` rounded onto ``spec``'s grid and back to float: what an int tensor of those bits can hold, in plain
    ops (round half to even, clamp; several times faster on a CPU than torch's fake-quantize op). Exported
    to ONNX it is torch's fake-quantize op over the int8 range, a QuantizeLinear / DequantizeLinear pair: a
    narrower grid's values must lie on it already (``onnx_int8.export_qdq`` rounds such weights first)."""
    scale, zero = spec.scale_zero_point()
    if torch.onnx.is_in_onnx_export():
        if spec.axis is None:
            return torch.fake_quantize_per_tensor_affine(x, scale.reshape(()), zero.reshape(()), -128, 127)
        return torch.fake_quantize_per_channel_affine(x, scale, zero, spec.axis, -128, 127)
    shape = [1] * x.dim()
    if spec.axis is not None:
        shape[spec.axis] = -1
    scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (torch.clamp(torch.round(x / scale) + zero, spec.qmin, spec.qmax) - zero) * scale


def naive_zero_point(low: float, high: float, bits: int = 8) -> int:
    """The zero point of an asymmetric range taken as observed (not widened to contain 0): below the signed
    range for an all-positive channel -- the overflow Q-HyViT describes -- before any clipping."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = max((high - low) / (qmax - qmin), EPS)
    return round(qmin - low / scale)
