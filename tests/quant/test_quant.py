"""Post-training quantization: zero points that cannot overflow, a scale search that beats min/max, the 8-bit
simulation agreeing with the real int8 ONNX Runtime model, and the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.imagefolder import make_image_folder

from archsearch import ArchConfig
from archsearch.model.generator import build_model
from archsearch.quant import onnx_int8
from archsearch.quant.cpu import int8_weight_bits
from archsearch.quant.layers import prepare, quant_layers
from archsearch.quant.methods import Hybrid, MinMax
from archsearch.quant.qparams import fake_quant, fit, naive_zero_point
from archsearch.train.loop import evaluate

TINY = ArchConfig("v2", resolution=64, width=0.5, mv2_depth=0.5, vit_depth=0.5, num_classes=10)


def test_an_all_positive_channel_gets_a_zero_point_in_range():
    """Per-channel asymmetric: channel 0 holds only values in [0.5, 2.0]. Taken as observed, its zero point
    would be far below int8 (the overflow); ours widens the range to 0 and stays in range, with every value
    within half a step of itself."""
    torch.manual_seed(0)
    weight = torch.randn(4, 8, 3, 3)
    weight[0] = torch.rand(8, 3, 3) * 1.5 + 0.5
    assert naive_zero_point(float(weight[0].min()), float(weight[0].max())) < -128
    spec = fit(weight, 8, symmetric=False, axis=0)
    scale, zero = spec.scale_zero_point()
    assert ((zero >= -128) & (zero <= 127)).all()
    assert int(zero[0]) == -128  # 0.0 is the lowest code: the whole grid serves the positive values
    error = (fake_quant(weight, spec) - weight).abs()
    assert (error <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-6).all()
    assert float(error[0].max()) <= 2.0 / 255 / 2 + 1e-6  # one channel's range, not the tensor's


def _model_with_outlier_channels() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    with torch.no_grad():
        model.stem.bn.weight[:2] *= 40  # two stem channels 40x louder: a hybrid ViT's dynamic ranges
        model.stem.bn.bias[:2] += 20
    return model


def test_the_scale_search_reduces_the_error_against_min_max():
    model = _model_with_outlier_channels()
    calibration, held_out = torch.randn(32, 3, 64, 64), torch.randn(32, 3, 64, 64)
    with torch.no_grad():
        reference = model(held_out)
    errors = {}
    for method in (MinMax(), Hybrid()):
        prepared = prepare(model)
        method.apply(prepared, calibration, 8)
        with torch.no_grad():
            errors[method.name] = float(((prepared(held_out) - reference) ** 2).mean())
    assert errors["hybrid"] < 0.8 * errors["minmax"], errors  # held-out images: not fitted to them


def test_the_8_bit_simulation_agrees_with_the_int8_onnx_runtime_model(tmp_path):
    fruit = make_image_folder(tmp_path / "fruit", 12, 6)
    weights = tmp_path / "net.pt"
    evaluate(TINY, "tiny", fruit, 0, progress=False, epochs=4, weights=weights)
    from archsearch.train.weights import load

    kept = load(weights)
    model = kept.model()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(300, 3, kept.resolution, kept.resolution, generator=generator)
    prepared = prepare(model)
    Hybrid().apply(prepared, inputs[:32], 8, int8_weight_bits())
    with torch.no_grad():
        simulated = prepared(inputs[32:])
    path = onnx_int8.export_qdq(prepared, kept.resolution, tmp_path / "int8.onnx")
    executed = onnx_int8.session(path).run(None, {"input": inputs[32:].numpy()})[0]
    agree = float((executed.argmax(1) == simulated.argmax(1).numpy()).mean())
    assert agree >= 0.99, agree
    assert onnx_int8.int8_kernels(path)["int8"] > 0  # it runs int8 kernels, not only dequantized floats
    initializers = onnx_int8.onnx.load(str(path)).graph.initializer
    assert any(t.data_type == onnx_int8.onnx.TensorProto.INT8 for t in initializers)


def test_the_weight_bits_follow_the_cpu(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert int8_weight_bits("flags : fpu sse avx2 fma") == 7
    assert int8_weight_bits("flags : fpu avx2 avx512f avx512_vnni") == 8
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert int8_weight_bits("flags : fp asimd") == 8


def test_export_refuses_activations_narrower_than_int8(tmp_path):
    prepared = prepare(build_model(TINY).eval())
    MinMax().apply(prepared, torch.randn(4, 3, 64, 64), 6)
    with pytest.raises(ValueError, match="8-bit activations"):
        onnx_int8.export_qdq(prepared, 64, tmp_path / "x.onnx")


def test_quantize_end_to_end_from_the_cli(tmp_path, capsys):
    from archsearch.cli import main

    fruit = make_image_folder(tmp_path / "fruit", 12, 6)
    weights = tmp_path / "net.pt"
    assert main(["train", "--preset", "mobilevitv2_050", "--resolution", "64", "--profile", "tiny", "--epochs",
                 "2", "--data", str(fruit), "--quiet", "--save", str(weights)]) == 0
    capsys.readouterr()
    assert main(["quantize", "--weights", str(weights), "--runs", "3", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    got = {(o["method"], o["bits"]) for o in report["outcomes"]}
    assert got == {("minmax", 8), ("minmax", 6), ("ort", 8), ("hybrid", 8), ("hybrid", 6)}
    assert report["val_images"] == 18 and report["calibration_images"] == 32
    for o in report["outcomes"]:
        low, high = o["drop_interval"]
        assert low <= o["drop"] <= high
        assert abs(o["drop"] - 100 * (report["float_top1"] - o["top1"])) < 1e-9
        if o["bits"] == 8:
            assert o["executed"] == "ONNX Runtime int8" and o["size_bytes"] < report["float_size_bytes"] / 2
            assert o["latency"]["threads"] == 1 and o["latency"]["runs"] == 3
        else:
            assert o["executed"].startswith("simulated") and o["size_bytes"] is None
    # one method at one width (8 calibration images: the options and the text are checked here, the scores above)
    assert main(["quantize", "--weights", str(weights), "--runs", "0", "--quiet", "--bits", "6",
                 "--method", "hybrid", "--calib", "8"]) == 0
    text = capsys.readouterr().out
    assert "hybrid  6-bit" in text and "simulated: fake quantization in torch" in text and "ort " not in text


@pytest.mark.parametrize("args, needle", [
    (["--bits", "5"], "--bits: 5 is not 8 or 6"),
    (["--calib", "0"], "--calib: 0"),
    (["--method", "gptq"], "--method: unknown 'gptq'"),
    (["--method", "ort", "--bits", "6"], "writes int8 only"),
])
def test_bad_quantize_input_is_one_line(tmp_path, capsys, args, needle):
    from archsearch.cli import main

    weights = tmp_path / "net.pt"
    weights.write_bytes(b"")
    assert main(["quantize", "--weights", str(weights), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_missing_or_foreign_weights_are_one_line(tmp_path, capsys):
    from archsearch.cli import main

    assert main(["quantize", "--weights", str(tmp_path / "none.pt")]) == 2
    (tmp_path / "foreign.pt").write_text("not weights")
    assert main(["quantize", "--weights", str(tmp_path / "foreign.pt")]) == 2
    assert main(["quantize"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "does not exist" in err[0] and "not a readable weights file" in err[1]
    assert "--study NAME" in err[2]


def test_int8_codes_hold_a_narrower_weight_grid(tmp_path):
    """7-bit weights exported as int8: every folded code lies in [-64, 63]."""
    prepared = prepare(build_model(TINY).eval())
    MinMax().apply(prepared, torch.randn(4, 3, 64, 64), 8, weight_bits=7)
    path = onnx_int8.export_qdq(prepared, 64, tmp_path / "w7.onnx")
    codes = [onnx_int8.numpy_helper.to_array(t) for t in onnx_int8.onnx.load(str(path)).graph.initializer
             if t.data_type == onnx_int8.onnx.TensorProto.INT8 and t.dims]
    weights = [c for c in codes if c.ndim > 1]
    assert len(weights) == len(list(quant_layers(prepared)))
    assert all(c.min() >= -64 and c.max() <= 63 for c in weights)
    assert any(np.abs(c).max() >= 60 for c in weights)
