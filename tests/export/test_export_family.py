"""The family exports: one timm file that registers every member (built in real timm, ``helpers.real_timm``), an
ml-cvnets config per member, and the family's table.

Expected costs come from archsearch's closed form and, independently, from real timm: fvcore on each registered
member, and timm's own ``mobilevitv2_050/075/100`` and ``mobilevit_xxs`` for the members that are those presets.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys

import pytest
import yaml
from helpers.real_timm import TORCHVISION_STANDIN, module_constants, timm_env

from archsearch.export import ExportError
from archsearch.export.family import (
    export_family_cvnets,
    export_family_timm,
    family_module_name,
)
from archsearch.model.config import ArchConfig, preset
from archsearch.model.cost import closed_form_cost
from archsearch.results.family import FamilyMember, family_table

CUSTOM = ArchConfig("v2", resolution=192, width=0.625, mv2_depth=0.75, vit_depth=0.5, num_classes=10)
# (config, MAC budget, timm's own model of the same network or None, top-1, latency ms, quantized top-1)
PLAN = (
    (preset("mobilevitv2_050"), 500_000_000, "mobilevitv2_050", 0.7012, 3.25, 0.6954),
    (preset("mobilevitv2_075"), 1_100_000_000, "mobilevitv2_075", 0.7551, None, None),
    (preset("mobilevitv2_100"), 2_000_000_000, "mobilevitv2_100", 0.7801, 7.5, None),
    (CUSTOM, 400_000_000, None, None, None, None),
    (preset("mobilevit_xxs"), 450_000_000, "mobilevit_xxs", 0.6903, 4.0, None),
)
NAMES = ("archsearch_v2_500m", "archsearch_v2_1100m", "archsearch_v2_2000m", "archsearch_v2_400m",
         "archsearch_v1_450m")
# Ops fvcore skips in timm's members that do no multiply-add, but v2's context vector (see context_macs)
SKIPPED_OPS = {"aten::add", "aten::mul", "aten::silu", "aten::silu_", "aten::softmax", "aten::sum",
               "aten::expand_as"}
STUDY = "Family demo"


def member(config: ArchConfig, budget: int, top1, latency, quantized) -> FamilyMember:
    closed = closed_form_cost(config)
    return FamilyMember(budget=budget, config=config, macs=closed.macs, params=closed.params, top1=top1,
                        fidelity="short" if top1 is not None else "smoke", latency_ms=latency,
                        quantized_top1=quantized)


MEMBERS = [member(config, budget, *measured) for config, budget, _, *measured in PLAN]


def context_macs(config: ArchConfig) -> int:
    """The MACs of v2's context vector (a sum over patches of keys times their scores, ``dim`` per position and
    attention layer): archsearch computes it as a matmul, which fvcore counts, timm as a product and a sum,
    which fvcore skips. v2 resizes an odd-sided map to the next even side. v1: 0."""
    if config.family == "v1":
        return 0
    total, stride = 0, 1
    for stage in config.stages():
        stride *= stage.stride
        side = 2 * math.ceil(config.resolution / stride / 2)
        total += stage.attn_dim * stage.attn_layers * side * side
    return total


RUNNER = '''
import importlib, json, runpy, sys
import torch
exec(open(sys.argv[1]).read())  # the torchvision stand-in
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
import timm

torch.set_num_threads(1)
folder, module, names, presets, broken = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
sys.path.insert(0, folder)
importlib.import_module(module)


def sdpa(inputs, outputs):  # softmax(QK^T)V: N*S*E for the scores, N*S*Ev for the weighted sum
    q, k, v = (get_shape(t) for t in inputs[:3])
    n = 1
    for d in q[:-2]:
        n *= d
    return n * q[-2] * k[-2] * (q[-1] + v[-1])


def measure(model, input_size):
    model.eval()
    x = torch.zeros(1, *input_size)
    analysis = FlopCountAnalysis(model, x).set_op_handle("aten::scaled_dot_product_attention", sdpa)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        shape = list(model(x).shape)
        macs = int(analysis.total())
    return {"params": sum(p.numel() for p in model.parameters()), "macs": macs, "shape": shape,
            "skipped": sorted(set(analysis.unsupported_ops()))}


def main_exit(path):
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit:
        return exit.code
    return 0


members = {}
for name in names:
    model = timm.create_model(name)
    cfg = model.pretrained_cfg
    members[name] = {**measure(model, cfg["input_size"]), "input_size": list(cfg["input_size"]),
                     "num_classes": cfg["num_classes"]}
first = timm.create_model(names[0], num_classes=7).eval()
with torch.no_grad():
    retrained = list(first(torch.zeros(1, *members[names[0]]["input_size"])).shape)
report = {"registered": timm.list_models("archsearch_*"), "members": members, "retrained": retrained,
          "presets": {name: measure(timm.create_model(name), (3, 256, 256)) for name in presets},
          "main_exit": main_exit(f"{folder}/{module}.py"), "broken_main_exit": main_exit(broken)}
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def timm_report(timm_dir, tmp_path_factory):
    """The family file, and what real timm makes of it (one subprocess: it imports torch once)."""
    tmp = tmp_path_factory.mktemp("family_timm")
    path = export_family_timm(MEMBERS, tmp / "out", study=STUDY)
    (tmp / "standin.py").write_text(TORCHVISION_STANDIN)
    (tmp / "runner.py").write_text(RUNNER)
    # a copy stating one wrong parameter count: its __main__ must fail
    first = f"'param_count': {MEMBERS[0].params},"
    source = path.read_text()
    assert source.count(first) == 1
    broken = tmp / "broken.py"
    broken.write_text(source.replace(first, f"'param_count': {MEMBERS[0].params + 1},"))
    presets = [official for _, _, official, *_ in PLAN if official]
    done = subprocess.run([sys.executable, str(tmp / "runner.py"), str(tmp / "standin.py"), str(path.parent),
                           path.stem, json.dumps(NAMES), json.dumps(presets), str(broken)],
                          capture_output=True, text=True, timeout=300, cwd=tmp, env=timm_env(timm_dir), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return path, json.loads(done.stdout.strip().splitlines()[-1])


def test_family_file_imports_only_timm_and_states_each_member(timm_report):
    path, _ = timm_report
    assert path.name == "timm_family_family_demo.py"
    source = path.read_text()
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"timm"}
    family = module_constants(source)["FAMILY"]
    assert sorted(family) == sorted(NAMES)
    for name, (config, budget, _, top1, _, _) in zip(NAMES, PLAN):
        closed = closed_form_cost(config)
        assert family[name] == {
            "config_id": config.id, "input_size": (3, config.resolution, config.resolution),
            "num_classes": config.num_classes, "param_count": closed.params, "macs": closed.macs, "top1": top1,
            "fidelity": "short" if top1 is not None else "smoke", "budget": budget}, name


def test_real_timm_builds_every_member_by_name(timm_report):
    """Registered under its name, each member has archsearch's parameter count, and fvcore on it gives the
    closed-form MACs at its default input size less only the context vectors fvcore skips in timm's v2."""
    _, report = timm_report
    assert sorted(report["registered"]) == sorted(NAMES)
    for name, (config, _, official, *_) in zip(NAMES, PLAN):
        got, closed = report["members"][name], closed_form_cost(config)
        assert got["input_size"] == [3, config.resolution, config.resolution], name
        assert got["num_classes"] == config.num_classes and got["shape"] == [1, config.num_classes], name
        assert got["params"] == closed.params, name
        assert set(got["skipped"]) <= SKIPPED_OPS, (name, got["skipped"])
        assert got["macs"] + context_macs(config) == closed.macs, name
        if official:  # the same network as timm's own model: the same parameters, and the same fvcore count
            assert (got["params"], got["macs"]) == (report["presets"][official]["params"],
                                                    report["presets"][official]["macs"]), name
    assert context_macs(CUSTOM) > 0 and context_macs(preset("mobilevit_xxs")) == 0
    assert report["retrained"] == [1, 7]  # num_classes= replaces the classifier


def test_family_file_main_checks_every_parameter_count(timm_report):
    _, report = timm_report
    assert report["main_exit"] == 0
    assert report["broken_main_exit"] == 1


def test_cvnets_family_writes_a_config_per_member(tmp_path):
    paths = export_family_cvnets(MEMBERS, tmp_path, study=STUDY)
    folder = tmp_path / "cvnets"
    expected = {f"{n}.{ext}" for n in NAMES for ext in ("yaml", "py", "md")} | {"README.md"}
    assert {p.name for p in paths} == expected == {p.name for p in folder.iterdir()}
    for name, m in zip(NAMES, MEMBERS):
        config = m.config
        doc = yaml.safe_load((folder / f"{name}.yaml").read_text())
        classification = doc["model"]["classification"]
        assert classification["name"] == name
        assert doc["image_augmentation"]["center_crop"]["size"] == config.resolution
        if config.family == "v2":
            assert classification["mitv2"]["width_multiplier"] == config.width
        constants = module_constants((folder / f"{name}.py").read_text())
        assert constants["MODEL_NAME"] == name and constants["RESOLUTION"] == config.resolution
        assert constants["PARAM_COUNT"] == closed_form_cost(config).params
        arch = constants["ARCHITECTURE"]
        assert [arch[f"layer{i}"]["out_channels"] for i in range(6)] == [s.out_channels for s in config.stages()]
        notes = (folder / f"{name}.md").read_text()
        assert f"`{name}.yaml`" in notes and f"{config.resolution}x{config.resolution} input" in notes
    index = (folder / "README.md").read_text()
    assert all(f"`{name}.yaml`" in index for name in NAMES)


def test_family_table_lists_every_member():
    lines = family_table(MEMBERS).splitlines()
    assert len(lines) == 1 + len(MEMBERS)
    assert lines[0].split()[:2] == ["model", "family"]
    # by family, then budget
    assert [line.split()[0] for line in lines[1:]] == [
        "archsearch_v1_450m", "archsearch_v2_400m", "archsearch_v2_500m", "archsearch_v2_1100m",
        "archsearch_v2_2000m"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["archsearch_v2_500m"] == ["archsearch_v2_500m", "v2", "256", "0.5", "1", "1", "480.7", "1.371",
                                          "3.25", "70.12", "-", "short", "69.54"]
    assert rows["archsearch_v2_400m"] == ["archsearch_v2_400m", "v2", "192", "0.625", "0.75", "0.5", "381.6",
                                          "1.306", "-", "-", "-", "smoke", "-"]
    assert rows["archsearch_v1_450m"][1] == "v1xxs" and rows["archsearch_v1_450m"][7] == "1.272"
    assert rows["archsearch_v2_2000m"][6:8] == ["1844.4", "4.902"]


def test_member_names_must_be_distinct_identifiers(tmp_path):
    twin = member(CUSTOM.replace(width=0.75), 400_000_000, None, None, None)  # the same name as CUSTOM's
    with pytest.raises(ExportError, match="archsearch_v2_400m"):
        export_family_timm([*MEMBERS, twin], tmp_path)
    with pytest.raises(ExportError, match="no members"):
        export_family_cvnets([], tmp_path)
    assert family_module_name("") == "timm_family_archsearch"
    assert family_module_name("My study-2") == "timm_family_my_study_2"
