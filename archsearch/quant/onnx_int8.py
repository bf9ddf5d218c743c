"""The quantized network as a real int8 ONNX model, run by ONNX Runtime.

``export_qdq`` writes a prepared network whose specs are set at 8 bits (``layers``) to ONNX: each fake
quantization becomes a QuantizeLinear / DequantizeLinear pair, and the weights' QuantizeLinear is folded into
int8 initializers, so the file holds int8 weights (its size is the deployed size). ONNX Runtime fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv (and MatMul likewise) and runs those in int8;
``int8_kernels`` counts how many it fused, from its optimized graph.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from .layers import quant_layers
from .qparams import fake_quant

OPSET = 17
INT8_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm")


def export(model: nn.Module, side: int, path: Path) -> Path:
    """``model`` (float, or prepared with 8-bit specs) as ONNX at batch 1 (dynamic) and ``side`` px."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, side, side)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def export_qdq(model: nn.Module, side: int, path: Path) -> Path:
    """The int8 model: ``export`` with every constant weight's QuantizeLinear folded into an int8 tensor.
    Activations must be 8-bit; weights may be narrower (7-bit where ``cpu.int8_weight_bits`` says): they are
    rounded onto their grid first, so that their codes are what int8 holds."""
    model = copy.deepcopy(model)
    for name, layer in quant_layers(model):
        if any(spec is not None and spec.bits != 8 for spec in (layer.input, layer.output)):
            raise ValueError(f"{name}: only 8-bit activations run as int8")
        if layer.weight is not None and layer.weight.bits < 8:
            with torch.no_grad():
                layer.layer.weight.copy_(fake_quant(layer.layer.weight, layer.weight))
    export(model, side, path)
    graph_model = onnx.load(str(path))
    fold_weight_quantization(graph_model)
    dedicate_dequantize(graph_model)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return path


def fold_weight_quantization(model: onnx.ModelProto) -> int:
    """Replace each QuantizeLinear of a constant by the quantized constant (int8); how many were folded."""
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    folded, keep = 0, []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and all(name in constants for name in node.input):
            x, scale, zero = (constants[name] for name in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and x.ndim > 1:
                shape = [1] * x.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
            info = np.iinfo(zero.dtype)
            q = np.clip(np.rint(x / scale) + zero.astype(np.int64), info.min, info.max).astype(zero.dtype)
            graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
            folded += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return folded


def dedicate_dequantize(model: onnx.ModelProto) -> int:
    """Give each consumer of a shared DequantizeLinear its own copy; how many copies were added. ONNX
    Runtime fuses a conv into QLinearConv only where the DequantizeLinear after its QuantizeLinear is not
    shared, and SiLU (Sigmoid and Mul) reads its input twice."""
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    added, nodes = 0, []
    for node in graph.node:
        nodes.append(node)
        users = consumers.get(node.output[0], []) if node.op_type == "DequantizeLinear" else []
        for k, user in enumerate(users[1:], start=1):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name, copy.output[0] = f"{node.name}_{k}", f"{node.output[0]}_{k}"
            for i, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[i] = copy.output[0]
            nodes.append(copy)
            added += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return added


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def int8_kernels(path: Path) -> dict[str, int]:
    """How many int8 kernels ONNX Runtime runs for ``path`` and how many convs/matmuls stay float, from the
    graph it optimizes (what it executes)."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        options.log_severity_level = 3  # its note that the optimized file is for this machine only
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ops = Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    return {"int8": sum(ops[op] for op in INT8_OPS), "float": ops["Conv"] + ops["MatMul"] + ops["Gemm"]
            + ops["FusedConv"] + ops["FusedMatMul"] + ops["FusedGemm"]}
