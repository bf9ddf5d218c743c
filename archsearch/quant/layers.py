"""Where a network is quantized: every conv and linear layer, after BatchNorm is folded into its conv.

``prepare(model)`` returns a copy in which each ``nn.Conv2d`` / ``nn.Linear`` is a ``QuantLayer``: its input,
its weight and its output (a linear layer's before its bias) each get a ``QSpec`` (None: left in float). The input and weight are what an int8
kernel reads; the output's quantization is what lets ONNX Runtime fuse DequantizeLinear -> Conv ->
QuantizeLinear into one int8 QLinearConv, so it is simulated too. Biases stay float here and ONNX Runtime
quantizes them to int32 with the input and weight scales when it fuses. Everything else (norms, SiLU,
softmax, the attention products, residual adds) runs in float, as it does in the int8 ONNX model.

The same prepared model is the simulation at any bit width (6 bits: no CPU runtime executes it) and, at 8
bits, what ``onnx_int8`` exports as the real int8 model, so the two quantize the same tensors the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from ..model.generator import ConvNormAct
from .qparams import QSpec, fake_quant


class QuantLayer(nn.Module):
    """A conv or linear layer with fake-quantized input, weight and output."""

    def __init__(self, layer: nn.Conv2d | nn.Linear):
        super().__init__()
        self.layer = layer
        self.input: QSpec | None = None
        self.weight: QSpec | None = None
        self.output: QSpec | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input is not None:
            x = fake_quant(x, self.input)
        weight = self.layer.weight if self.weight is None else fake_quant(self.layer.weight, self.weight)
        if isinstance(self.layer, nn.Conv2d):
            layer = self.layer
            y = nn.functional.conv2d(x, weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
            return y if self.output is None else fake_quant(y, self.output)
        # a linear layer's output is quantized before its bias: the exported MatMul -> QuantizeLinear is what
        # ONNX Runtime fuses into QLinearMatMul (the bias Add after it stays float)
        y = torch.matmul(x, weight.t())
        y = y if self.output is None else fake_quant(y, self.output)
        return y if self.layer.bias is None else y + self.layer.bias

    def clear(self) -> None:
        self.input = self.weight = self.output = None


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` (in eval mode) with each ConvNormAct's BatchNorm folded into its conv, in place: the conv
    then carries the weights an inference engine runs (and quantizes)."""
    for module in model.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.bn, nn.BatchNorm2d):
            conv, bn = module.conv, module.bn
            factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * factor.reshape(-1, 1, 1, 1))
                base = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused.bias.copy_(bn.bias + (base - bn.running_mean) * factor)
            module.conv, module.bn = fused, nn.Identity()
    return model


def prepare(model: nn.Module) -> nn.Module:
    """A float copy of ``model`` (eval mode, BatchNorm folded) whose convs and linears are ``QuantLayer``s
    with no specs yet: it computes what ``model`` computes until a method sets them."""
    prepared = fold_batchnorm(copy.deepcopy(model).eval())
    for parent in list(prepared.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                setattr(parent, name, QuantLayer(child))
    return prepared.requires_grad_(False)


def quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    """The ``QuantLayer``s of a prepared model in registration (forward) order, with their names."""
    for name, module in model.named_modules():
        if isinstance(module, QuantLayer):
            yield name, module


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's blocks in forward order (stem, every MV2 and MobileViT block, head): the units whose
    output a layer's quantization is judged by. A MobileViT block is a bridge block: conv stage in,
    transformer, conv stage out."""
    found: list[tuple[str, nn.Module]] = [("stem", model.stem)]
    for stage in ("layer1", "layer2", "layer3", "layer4", "layer5"):
        found += [(f"{stage}.{i}", block) for i, block in enumerate(getattr(model, stage))]
    return [*found, ("head", model.head)]
