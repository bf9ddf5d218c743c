"""``archsearch export``: JSON record round trip, ml-cvnets YAML (its model module: test_export_cvnets.py),
timm file (in real timm: ``helpers.real_timm`` and the ``timm_dir`` fixture), ONNX.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers.real_timm import TORCHVISION_STANDIN, module_constants, timm_env
from helpers.studies import settings_for

from archsearch.cli import main
from archsearch.export.cvnets import recipe
from archsearch.export.onnx import export_onnx
from archsearch.export.record import load_exported_config
from archsearch.export.timm import timm_source
from archsearch.model.config import ArchConfig, ConfigError
from archsearch.model.cost import count
from archsearch.model.generator import build_model
from archsearch.search import study as st

BUDGET = 300_000_000
STUDY = "dash"  # dashboard_fixtures.searched_study
# The reference's per-width v2 recipe points (width: max LR, weight decay), re-typed here on purpose.
LR_POINTS = {0.5: 0.0090, 0.75: 0.0090, 1.0: 0.0075, 1.5: 0.0035, 2.0: 0.0020}
WD_POINTS = {0.5: 0.004, 0.75: 0.008, 1.0: 0.013, 1.5: 0.029, 2.0: 0.050}


def expected_lr_wd(width: float) -> tuple[float, float]:
    xs = sorted(LR_POINTS)
    return (float(np.interp(width, xs, [LR_POINTS[x] for x in xs])),
            float(np.interp(width, xs, [WD_POINTS[x] for x in xs])))


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The dashboard tests' two-rung GP study (synthetic scores, trained at half the side, two seeds at the
    top), with its facts, summary and winner.json."""
    from helpers.dashboard_fixtures import searched_study

    from archsearch.report.summary import summarize, write_summary
    from archsearch.results.judge import study_facts

    study, url = searched_study(tmp_path_factory)
    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st, "STUDIES_DIR", folder / "studies")
        facts = study_facts(study, url)
        summary = summarize(study, url, facts)
        _, winner_path = write_summary(summary)
    trained = [t for t in st.trained_trials(study)]
    return argparse.Namespace(url=url, study=study, facts=facts, summary=summary, winner_path=winner_path,
                              trained=trained, folder=folder)


@pytest.fixture(scope="module")
def exported_all(demo, tmp_path_factory):
    """``archsearch export --format all`` of the demo winner (run once, inspected by several tests)."""
    out = tmp_path_factory.mktemp("export_all")
    code = main(["export", "--study", STUDY, "--storage", demo.url, "--format", "all", "--out", str(out),
                 "--runs", "5", "--warmup", "1"])
    assert code == 0
    return out


def winner_number(demo) -> int:
    """The winner's first trial, as the study's one decision names it."""
    return demo.facts.decision.winner.trials[0]


# ---- json --------------------------------------------------------------------------------------------
def test_all_writes_every_format(demo, exported_all):
    slug = f"{STUDY}_trial{winner_number(demo)}"
    assert winner_number(demo) == demo.summary["winner"]["trial"]
    expected = {f"{slug}.json", f"{slug}.onnx", f"timm_{slug}.py", f"cvnets/{slug}.yaml",
                f"cvnets/archsearch_{slug}.py", "cvnets/README.md"}
    written = {str(p.relative_to(exported_all)) for p in exported_all.rglob("*") if p.is_file()}
    assert written == expected
    assert all((exported_all / name).stat().st_size > 0 for name in expected)


def test_json_record_says_how_the_winner_was_found(demo, exported_all):
    number = winner_number(demo)
    doc = json.loads((exported_all / f"{STUDY}_trial{number}.json").read_text())
    assert (doc["format"], doc["format_version"]) == ("archsearch-export", 2)
    trial = demo.study.trials[number]
    config = ArchConfig.from_dict(trial.user_attrs["config"])
    assert doc["config"] == config.to_dict() and doc["config_id"] == config.id
    traced, closed = count(config, "fvcore"), count(config, "closed_form")
    assert doc["cost"]["macs_fvcore"] == traced.macs and doc["cost"]["params_fvcore"] == traced.params
    assert doc["cost"]["macs_closed_form"] == closed.macs and doc["cost"]["params_closed_form"] == closed.params
    assert [s["out_channels"] for s in doc["stages"]] == [s.out_channels for s in config.stages()]
    proxy, winner = doc["proxy"], demo.facts.decision.winner
    assert proxy["accuracy"] == trial.user_attrs["accuracy"] and proxy["data"] == "synthetic"
    assert (proxy["rung"], proxy["fidelity"], proxy["seed"]) == (1, "short", trial.user_attrs["seed"])
    assert proxy["trained_resolution"] == trial.user_attrs["record"]["resolution"] == config.resolution // 2
    assert proxy["trained_resolution"] == json.loads(demo.winner_path.read_text())["trained_resolution"]
    network = proxy["network"]
    assert network["seeds"] == [0, 1] and network["trials"] == list(winner.trials)
    assert network["scores"] == [demo.study.trials[n].user_attrs["accuracy"] for n in winner.trials]
    assert network["accuracy"] == pytest.approx(np.mean(network["scores"]))
    assert network["posterior_mean"] == winner.posterior_mean
    found = doc["found"]
    assert (found["study"], found["trial"], found["strategy"], found["seed"]) == (STUDY, number, "gp", 0)
    assert found["is_winner"] and found["within_budget"] and found["mac_budget"] == BUDGET
    assert (found["rungs"], found["top_seeds"]) == ("smoke>short", 2)
    assert found["archsearch_version"] == demo.summary["archsearch_version"]
    assert {k: doc["decided_at"][k] for k in demo.summary["decided_at"]} == demo.summary["decided_at"]
    assert doc["decided_at"]["noise"] == demo.summary["noise"][1]
    assert "baseline" not in doc
    assert doc["baselines"] == json.loads(json.dumps(demo.summary["baselines"]))  # the decision's margins
    assert [b["kind"] for b in doc["baselines"]] == ["width", "width_resolution", "compound"]
    for b in doc["baselines"]:
        assert b["words"] and b["trained_resolution"] == b["config"]["resolution"] // 2
        lo, hi = b["margin_interval"]
        if b["config_id"] == demo.summary["winner"]["config_id"]:  # the winner is this baseline
            assert b["margin"] == lo == hi == 0.0 and "itself" in b["words"]
        else:
            assert lo < b["margin"] < hi


def test_the_exported_winner_is_the_decisions(demo, monkeypatch, tmp_path):
    """select_trial reads the winner from study_facts(...).decision, never choosing one itself: told that
    the runner-up won, it exports the runner-up; and given the facts it fits no GP."""
    import dataclasses

    from archsearch.export import record as ex
    from archsearch.gp.surrogate import GPSurrogate

    decision = demo.facts.decision
    runner_up = decision.ranked[1]
    told = dataclasses.replace(demo.facts, decision=dataclasses.replace(decision, winner=runner_up))
    monkeypatch.setattr(ex, "study_facts", lambda study, url: told)
    source = ex.select_trial(demo.study, demo.url)
    assert source.trial["trial"] == source.winner_trial == runner_up.trials[0]
    monkeypatch.setattr(GPSurrogate, "fit", lambda *a, **k: pytest.fail("the export fitted a GP"))
    source = ex.select_trial(demo.study, demo.url, facts=demo.facts)
    assert source.trial["trial"] == decision.winner.trials[0]
    assert ex.record(source)["proxy"]["trained_resolution"] == decision.winner.trained_resolution


def test_exported_config_reads_back_to_the_same_network(demo, exported_all, tmp_path):
    number = winner_number(demo)
    record_path = exported_all / f"{STUDY}_trial{number}.json"
    doc = json.loads(record_path.read_text())
    bare = tmp_path / "bare.json"
    bare.write_text(ArchConfig.from_dict(doc["config"]).to_json())
    for path in (record_path, demo.winner_path, demo.folder / "studies" / STUDY / "summary.json", bare):
        config = load_exported_config(path)
        assert config.to_dict() == doc["config"], path
        model = build_model(config)
        assert sum(p.numel() for p in model.parameters()) == doc["cost"]["params"]
        assert count(config, "closed_form").macs == doc["cost"]["macs"]
    assert count(load_exported_config(record_path), "fvcore").macs == doc["cost"]["macs_fvcore"]


@pytest.mark.parametrize("content, needle", [
    (None, "not found"),
    ("{nope", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"macs": 3}', "no architecture config"),
    ('{"family": "v2", "width": 9}', "width: 9"),
    ('{"config": {"family": "v2", "depth": 1}}', "unknown config field"),
])
def test_load_exported_config_errors_are_one_line(tmp_path, content, needle):
    path = tmp_path / "c.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_exported_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


# ---- cvnets ------------------------------------------------------------------------------------------
def test_cvnets_yaml_holds_the_recipe(demo, exported_all):
    slug = f"{STUDY}_trial{winner_number(demo)}"
    doc = yaml.safe_load((exported_all / "cvnets" / f"{slug}.yaml").read_text())
    config = load_exported_config(exported_all / f"{slug}.json")
    for section in ("common", "dataset", "image_augmentation", "sampler", "loss", "optim", "scheduler", "model",
                    "ema", "stats"):
        assert section in doc, section
    lr, wd = expected_lr_wd(config.width)
    assert doc["optim"]["name"] == "adamw" and doc["optim"]["weight_decay"] == pytest.approx(wd)
    assert doc["optim"]["no_decay_bn_filter_bias"] is True
    sched = doc["scheduler"]
    assert sched["name"] == "cosine" and sched["cosine"]["max_lr"] == pytest.approx(lr)
    assert sched["max_epochs"] == 300 and sched["warmup_iterations"] == 20000
    assert doc["loss"]["classification"]["cross_entropy"]["label_smoothing"] == 0.1
    assert doc["ema"] == {"enable": True, "momentum": 0.0005}
    aug = doc["image_augmentation"]
    assert aug["rand_augment"]["enable"] and aug["random_erase"]["p"] == 0.25
    assert aug["mixup"]["alpha"] == 0.2 and aug["cutmix"]["alpha"] == 1.0
    assert aug["center_crop"]["size"] == config.resolution
    assert doc["sampler"]["bs"]["crop_size_width"] == config.resolution
    assert doc["common"]["grad_clip"] == 10.0
    assert doc["dataset"]["name"] == "imagenet" and doc["dataset"]["train_batch_size0"] * 8 == 1024
    module = (exported_all / "cvnets" / f"archsearch_{slug}.py").read_text()
    assert doc["model"]["classification"]["name"] == module_constants(module)["MODEL_NAME"]
    readme = (exported_all / "cvnets" / "README.md").read_text()
    assert f"archsearch_{slug}.py" in readme and "cvnets/models/classification/" in readme


@pytest.mark.parametrize("width", [0.25, 0.5, 0.625, 0.875, 1.25, 1.75, 2.0])
def test_v2_lr_and_weight_decay_interpolate_in_width(width):
    doc = recipe(ArchConfig("v2", resolution=256, width=width), "m")
    lr, wd = expected_lr_wd(width)
    assert doc["scheduler"]["cosine"]["max_lr"] == pytest.approx(lr, abs=1e-8)
    assert doc["optim"]["weight_decay"] == pytest.approx(wd, abs=1e-8)


def test_v1_recipe():
    doc = recipe(ArchConfig("v1", variant="xs", resolution=256), "m")
    assert doc["optim"]["weight_decay"] == 0.01 and doc["scheduler"]["cosine"] == {"max_lr": 0.002, "min_lr": 0.0002}
    vbs = doc["sampler"]["vbs"]
    assert doc["sampler"]["name"] == "variable_batch_sampler"
    assert (vbs["min_crop_size_width"], vbs["max_crop_size_width"], vbs["crop_size_width"]) == (160, 320, 256)
    assert "mixup" not in doc["image_augmentation"]


# ---- timm --------------------------------------------------------------------------------------------
TIMM_RUNNER = '''
import json, runpy, sys
import torch
exec(open(sys.argv[1]).read())  # the torchvision stand-in
results = []
for generated, weights in zip(sys.argv[2::2], sys.argv[3::2]):
    ns = runpy.run_path(generated)
    model = ns["create_model"]().eval()
    n = sum(p.numel() for p in model.parameters())
    data = torch.load(weights)
    state = model.state_dict()
    keys = [k for k in state if not k.endswith("num_batches_tracked")]
    assert len(keys) == len(data["tensors"]), (len(keys), len(data["tensors"]))
    for k, t in zip(keys, data["tensors"]):
        assert state[k].shape == t.shape, (k, tuple(state[k].shape), tuple(t.shape))
    model.load_state_dict(dict(zip(keys, data["tensors"])), strict=False)
    with torch.no_grad():
        diff = (model(data["x"]) - data["y"]).abs().max().item()
    try:
        runpy.run_path(generated, run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = exit.code
    results.append({"params": n, "stated": ns["PARAM_COUNT"], "max_diff": diff, "main_exit": code})
import timm
print(json.dumps({"timm": timm.__version__, "results": results}))
'''


TIMM_CONFIGS = (
    ArchConfig("v2", resolution=128, width=0.625, mv2_depth=0.5, vit_depth=2.0, num_classes=100),
    ArchConfig("v1", variant="xxs", resolution=128, width=1.25, mv2_depth=1.5, vit_depth=0.5),
)


def test_timm_file_builds_the_same_network_in_real_timm(timm_dir, tmp_path):
    """Real timm builds each generated file with the stated parameter count, and archsearch's weights, loaded
    in module order, give the same logits (one subprocess for both configs: it imports torch once)."""
    (tmp_path / "standin.py").write_text(TORCHVISION_STANDIN)
    (tmp_path / "runner.py").write_text(TIMM_RUNNER)
    argv, costs = [], []
    for i, config in enumerate(TIMM_CONFIGS):
        cost = count(config, "closed_form")
        source = timm_source(config, params=cost.params, macs=cost.macs, module=f"generated{i}")
        tree = ast.parse(source)
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported == {"timm"}
        assert module_constants(source)["PARAM_COUNT"] == cost.params
        (tmp_path / f"generated{i}.py").write_text(source)
        torch.manual_seed(i)
        model = build_model(config).eval()
        for m in model.modules():  # non-trivial BatchNorm statistics, so that a mis-wired norm shows
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        x = torch.randn(2, 3, config.resolution, config.resolution)
        with torch.no_grad():
            y = model(x)
        tensors = [v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
        torch.save({"tensors": tensors, "x": x, "y": y}, tmp_path / f"weights{i}.pt")
        argv += [str(tmp_path / f"generated{i}.py"), str(tmp_path / f"weights{i}.pt")]
        costs.append(cost)
    done = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "standin.py"), *argv],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=timm_env(timm_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for config, cost, result in zip(TIMM_CONFIGS, costs, report["results"]):
        assert result["params"] == result["stated"] == cost.params, config.id
        assert result["main_exit"] == 0, config.id
        assert result["max_diff"] < 1e-4, config.id  # even feature-map sides at 128 px: no resize anywhere


# ---- onnx --------------------------------------------------------------------------------------------
def test_onnx_matches_pytorch_with_sdpa(tmp_path):
    """v1 (multi-head attention through F.scaled_dot_product_attention) exports and matches PyTorch."""
    import onnx
    import onnxruntime as ort

    config = ArchConfig("v1", variant="xxs", resolution=128, width=0.5)
    path = tmp_path / "m.onnx"
    section = export_onnx(config, path, runs=3, warmup=1, threads=1)
    assert section["opset"] == 17 and section["file"] == "m.onnx" and section["runs"] == 3
    assert section["threads"] == 1 and section["onnxruntime"] == ort.__version__
    assert 0 <= section["max_abs_diff"] < 1e-4 and section["latency_ms_median"] > 0
    graph = onnx.load(str(path)).graph
    assert {"MatMul", "Softmax", "LayerNormalization"} <= {node.op_type for node in graph.node}
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, config.resolution, config.resolution]
    # independently: the same seed gives the exported weights; a batch of 2 goes through the dynamic axis
    torch.manual_seed(0)
    model = build_model(config).eval()
    x = torch.randn(2, 3, config.resolution, config.resolution)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


def test_json_record_carries_the_onnx_check(demo, exported_all):
    """The winner's (v2) ONNX section, and an independent check: the same seed rebuilds the exported weights,
    and a batch of 2 goes through the dynamic batch axis with PyTorch's outputs."""
    import onnxruntime as ort

    doc = json.loads((exported_all / f"{STUDY}_trial{winner_number(demo)}.json").read_text())
    section = doc["onnx"]
    assert (exported_all / section["file"]).is_file()
    assert section["max_abs_diff"] < 1e-4 and section["latency_ms_median"] > 0
    assert section["runs"] == 5 and section["opset"] == 17 and section["threads"] >= 1
    config = ArchConfig.from_dict(doc["config"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    x = torch.randn(2, 3, config.resolution, config.resolution)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(exported_all / section["file"]), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-4


def test_json_record_carries_the_latency_and_where_it_was_measured(demo, exported_all):
    """The record's ``latency``: the ONNX export's measurement (the demo study measured none itself), with the
    backend, batch and threads it was taken with, from the same harness as ``archsearch latency``."""
    import onnxruntime as ort

    doc = json.loads((exported_all / f"{STUDY}_trial{winner_number(demo)}.json").read_text())
    latency, section = doc["latency"], doc["onnx"]
    assert latency == section["latency"]
    assert latency["backend"] == "ort-cpu" and latency["batch"] == 1 and latency["threads"] == section["threads"]
    assert latency["latency_ms"] == section["latency_ms_median"] > 0 and latency["runs"] == section["runs"]
    assert latency["runtime"] == f"onnxruntime {ort.__version__}" and latency["precision"] == "fp32"


# ---- cli ---------------------------------------------------------------------------------------------
def test_trial_option_exports_a_non_winner(demo, capsys, isolated_studies):
    winner = winner_number(demo)
    other = next(t for t in demo.trained if t.number not in demo.facts.decision.winner.trials
                 and t.user_attrs["role"] != "baseline" and t.user_attrs["rung"] == 0)
    code, out, _ = run_cli(capsys, "export", "--study", STUDY, "--storage", demo.url, "--trial", str(other.number),
                           "--format", "json")
    trained_at = other.user_attrs["trained_resolution"]
    assert code == 0 and f"trial {other.number} of study {STUDY}" in out
    assert f"at rung 0 (smoke, seed 0, trained at {trained_at} px)" in out
    path = isolated_studies / STUDY / "export" / f"{STUDY}_trial{other.number}.json"  # the default --out
    doc = json.loads(path.read_text())
    assert doc["config"] == other.user_attrs["config"] and doc["found"]["trial"] == other.number
    assert doc["found"]["is_winner"] is False and doc["found"]["winner_trial"] == winner
    proxy = doc["proxy"]
    assert (proxy["rung"], proxy["fidelity"], proxy["trained_resolution"]) == (0, "smoke", trained_at)
    assert doc["proxy"]["network"]["scores"] == [other.user_attrs["accuracy"]]
    assert doc["baselines"] == json.loads(json.dumps(demo.summary["baselines"]))  # still the winner's margins
    assert doc["onnx"] is None
    # and its own per-width recipe
    code, _, _ = run_cli(capsys, "export", "--study", STUDY, "--storage", demo.url, "--trial", str(other.number),
                         "--format", "cvnets")
    assert code == 0
    cv = yaml.safe_load((path.parent / "cvnets" / f"{STUDY}_trial{other.number}.yaml").read_text())
    lr, wd = expected_lr_wd(other.user_attrs["config"]["width"])
    assert cv["scheduler"]["cosine"]["max_lr"] == pytest.approx(lr) and cv["optim"]["weight_decay"] == pytest.approx(wd)


def test_cli_errors_are_one_line(demo, capsys, tmp_path):
    untrained = [t.number for t in demo.study.trials if "accuracy" not in t.user_attrs]
    empty_url = f"sqlite:///{tmp_path}/empty.db"
    st.open_study("empty", st.make_storage(empty_url), settings_for())
    cases = [
        (["--study", "nope", "--storage", demo.url, "--format", "json"], "no study named 'nope'"),
        (["--study", STUDY, "--storage", demo.url, "--trial", "999", "--format", "json"], "no trained trial 999"),
        (["--study", STUDY, "--storage", demo.url, "--trial", "-1", "--format", "json"], "no trained trial -1"),
        (["--study", "empty", "--storage", empty_url, "--format", "all"], "has no winner yet"),
        (["--study", STUDY, "--storage", demo.url, "--format", "pdf"], "invalid choice: 'pdf'"),
        (["--study", STUDY, "--storage", demo.url, "--format", "onnx", "--runs", "0"], "--runs: 0"),
    ]
    if untrained:
        cases.append((["--study", STUDY, "--storage", demo.url, "--trial", str(untrained[0]), "--format", "json"],
                      f"no trained trial {untrained[0]}"))
    for argv, needle in cases:
        code = cli_exit(["export", *argv])
        _, err = capsys.readouterr()
        assert code == 2, argv
        assert needle in err and err.count("\n") == 1, (argv, err)


def cli_exit(argv: list[str]) -> int:
    """main()'s exit code, also where argparse exits by itself (a usage error)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code
