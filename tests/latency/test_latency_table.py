"""Latency tables: measured, resumed, refused with other settings, repaired after a kill; the lookup table
covers the grid; ``archsearch latency-table`` fits, scores, saves and loads the predictor; its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archsearch.cli import main
from archsearch.latency import LatencyError, LatencyRecord, load_model
from archsearch.latency.blocks import distinct_blocks, feature_names
from archsearch.latency.predict import KINDS, feature_matrix
from archsearch.latency.table import (
    NETWORK_COLUMNS,
    append_rows,
    load_latency_table,
    lut_path,
    measure_table,
    meta_path,
    model_path,
    network_row,
    open_table,
    read_rows,
    table_meta,
)
from archsearch.model.cost import distinct_networks
from archsearch.model.space import FactorSpace

TINY = {"family": "v2", "num_classes": 1000, "resolution": {"min": 64, "max": 96, "step": 32},
        "width": {"min": 0.25, "max": 0.25, "step": 0.125}, "mv2_depth": {"min": 0.5, "max": 0.5, "step": 0.5},
        "vit_depth": {"min": 0.25, "max": 0.5, "step": 0.25}}
SMALL = {**TINY, "resolution": {"min": 128, "max": 192, "step": 32}, "width": {"min": 0.25, "max": 0.75, "step": 0.125},
         "mv2_depth": {"min": 0.5, "max": 1.5, "step": 0.5}, "vit_depth": {"min": 0.5, "max": 1.5, "step": 0.5}}


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def write_space(tmp_path, data, name="space.toml"):
    lines = [f'family = "{data["family"]}"', f"num_classes = {data['num_classes']}"]
    for factor in ("resolution", "width", "mv2_depth", "vit_depth"):
        lines += [f"[{factor}]"] + [f"{k} = {v}" for k, v in data[factor].items()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def measure_tiny(out, runs=2, threads=1, lut=True, passes=1):
    space = FactorSpace.from_dict(TINY)
    sample = [c for c, _ in distinct_networks(space)]
    return space, sample, measure_table(out, space, TINY, sample, "ort-cpu", 1, threads, runs, 0, 1, 1, 10**12,
                                        chunk=3, lut=lut, passes=passes)


def test_a_table_is_measured_resumed_and_its_lookup_table_covers_the_grid(tmp_path):
    out = tmp_path / "t.csv"
    space, sample, done = measure_tiny(out)
    assert done.networks == done.networks_added == len(sample) and done.blocks_added == done.blocks
    rows = read_rows(out)
    assert [r["config_id"] for r in rows] == [c.id for c in sample]
    assert all(r["runs"] == "2" and r["threads"] == "1" and r["backend"] == "ort-cpu" for r in rows)
    lut = {r["block"] for r in read_rows(lut_path(out))}
    assert lut == {b.key for b in distinct_blocks(sample)}
    meta = json.loads(meta_path(out).read_text())
    assert meta["backend"] == "ort-cpu" and meta["threads"] == 1 and meta["runtime"].startswith("onnxruntime")
    # a re-run measures nothing; a kill mid-write leaves a cut line that the next run drops
    _, _, again = measure_tiny(out)
    assert again.networks_added == 0 == again.blocks_added
    text = out.read_text()
    out.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + text.rstrip("\n").rsplit("\n", 1)[1][:10])
    _, _, repaired = measure_tiny(out)
    assert repaired.networks_added == 1 and [r["config_id"] for r in read_rows(out)] == [c.id for c in sample]
    table = load_latency_table(out)
    assert table.configs == tuple(sample) and table.lut.keys() == lut
    assert load_latency_table(out, "cpu").latency_ms != table.latency_ms  # the other statistic, same runs


def test_a_second_pass_measures_every_network_again(tmp_path):
    out = tmp_path / "t.csv"
    _, sample, first = measure_tiny(out, lut=False)
    assert load_latency_table(out).repeatability() is None
    _, _, second = measure_tiny(out, lut=False, passes=2)
    assert first.networks_added == second.networks_added == len(sample)
    rows = read_rows(out)
    assert [r["config_id"] for r in rows] == [c.id for c in sample] * 2  # pass after pass, not network by network
    table = load_latency_table(out)
    assert table.configs == tuple(sample) and all(len(p) == 2 for p in table.passes_ms)
    by_id = {}
    for r in rows:
        by_id.setdefault(r["config_id"], []).append(float(r["median_ms"]))
    assert list(table.latency_ms) == [sum(by_id[c.id]) / 2 for c in sample]  # the median of two passes
    diffs = sorted(100 * abs(b - a) / a for a, b in (by_id[c.id] for c in sample))
    assert table.repeatability()["median_ape"] == (diffs[1] + diffs[2]) / 2 and table.repeatability()["networks"] == 4


def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "t.csv"
    measure_tiny(out, lut=False)
    with pytest.raises(LatencyError, match="other settings \\(threads: stored 1\\)") as info:
        measure_tiny(out, threads=2, lut=False)
    assert "\n" not in str(info.value)


def test_a_table_without_settings_is_refused(tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("config_id\nx\n")
    space = FactorSpace.from_dict(TINY)
    with pytest.raises(LatencyError, match="exists without its settings file"):
        open_table(out, table_meta(space, TINY, "ort-cpu", 1, 1, 1, 2, 0))


def write_synthetic_table(tmp_path, n=None):
    """A table of the SMALL space whose latencies are a known non-negative combination of the features."""
    space = FactorSpace.from_dict(SMALL)
    configs = [c for c, _ in distinct_networks(space)][:n]
    x = feature_matrix(configs, feature_names())
    weights = np.random.default_rng(0).uniform(0.1, 1.0, x.shape[1])
    y = 0.4 + (x / np.where(x.max(axis=0) > 0, x.max(axis=0), 1)) @ weights
    out = tmp_path / "synthetic.csv"
    open_table(out, table_meta(space, SMALL, "ort-cpu", 1, 1, 1, 10**12, 0))
    append_rows(out, [network_row(c, LatencyRecord(c.id, "ort-cpu", 1, 1, 30, 5, 5, v, v, v, v, v, "cpu", "ort",
                                                   "fp32", (0,), "now", cpu_median_ms=v))
                      for c, v in zip(configs, y)], NETWORK_COLUMNS)
    return out, configs, y


def test_cli_fits_scores_and_saves_the_predictor(tmp_path, capsys):
    out, configs, y = write_synthetic_table(tmp_path)
    code, stdout, err = run_cli(capsys, "latency-table", "--space", str(write_space(tmp_path, SMALL)), "--out",
                                str(out), "--fit-only", "--folds", "3")
    assert code == 0, err
    listed = {line.split()[0] for line in stdout.splitlines() if line.split() and line.split()[0] in KINDS}
    assert listed == {"features", "features+gp", "gp"}  # no lookup table measured: no lut kinds
    assert "<- kept" in stdout and "Kendall's tau" in stdout and str(model_path(out)) in stdout
    model = load_model(model_path(out))
    assert model.kind in ("features", "features+gp") and model.settings["statistic"] == "wall"
    held = model.evaluation["kinds"][model.kind]["held_out"]
    assert held["median_ape"] < 1e-3 and held["kendall_tau"] > 0.99
    np.testing.assert_allclose(model.predict_ms(configs), y, rtol=1e-5)


def test_cli_with_too_few_networks_to_score_is_one_line(tmp_path, capsys):
    out, _, _ = write_synthetic_table(tmp_path, n=6)
    code, stdout, err = run_cli(capsys, "latency-table", "--space", str(write_space(tmp_path, SMALL)), "--out",
                                str(out), "--fit-only")
    assert code == 2 and stdout == "" and err.count("\n") == 1 and "too few" in err


@pytest.mark.parametrize("argv, needle", [
    (["--configs", "0"], "--configs: 0 is not a positive integer"),
    (["--passes", "0"], "--passes: 0 is not a positive integer"),
    (["--rounds", "40"], "--rounds: 40 is not in 1..--runs (30)"),
    (["--min-macs", "lots"], "--min-macs: cannot read 'lots'"),
    (["--min-macs", "2G", "--max-macs", "1G"], "--min-macs: 2000M is above --max-macs 1000M"),
    (["--runs", "10"], "--runs: 10 is below 30"),
    (["--backend", "ort-gpu"], "--backend: unknown 'ort-gpu'"),
    (["--statistic", "mean"], "argument --statistic: invalid choice"),
    (["--family", "v1", "--space", "x.toml"], "not allowed with argument"),
    (["--space", "missing.toml"], "space: no such file missing.toml"),
])
def test_latency_table_cli_errors_are_one_line(capsys, tmp_path, argv, needle):
    code, out, err = run_cli(capsys, "latency-table", "--out", str(tmp_path / "t.csv"), *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err


def test_fit_only_on_a_missing_table_names_the_option(capsys, tmp_path):
    code, _, err = run_cli(capsys, "latency-table", "--out", str(tmp_path / "none.csv"), "--fit-only")
    assert code == 2 and "--out: no such file" in err and err.count("\n") == 1


def test_dry_run_lists_the_sample(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "latency-table", "--space", str(write_space(tmp_path, TINY)), "--configs", "3",
                           "--out", str(tmp_path / "t.csv"), "--dry-run")
    assert code == 0 and len(out.splitlines()) == 3 and not (tmp_path / "t.csv").exists()
