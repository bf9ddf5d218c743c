"""The tabular benchmark (issue 8): the sample, resumable table generation, reading tables (exact rows only,
seeds pooled) and rank agreement between fidelities, alone and along a chain."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.imagefolder import make_image_folder
from helpers.synthetic_tables import CHEAP, SAMPLE, SPACE, bowl, write_table

from archsearch.bench import table as bench
from archsearch.bench.scoring import generate_table
from archsearch.bench.table import (
    COLUMNS,
    append_row,
    baseline_configs,
    distinct_in_range,
    grid_width_baseline,
    make_row,
    read_rows,
    resolve_profile,
    select_configs,
)
from archsearch.bench.tables import chain_agreement, load_table, rank_agreement
from archsearch.cli import main
from archsearch.model.config import ConfigError
from archsearch.model.cost import closed_form_cost
from archsearch.train import loop, recipe

M = 1_000_000


# ---- the sample -----------------------------------------------------------------------------------------------
def test_sample_is_deterministic_distinct_in_range_and_extendable():
    baselines = baseline_configs(SPACE)
    assert [c.id for c in baselines] == ["v2-r256-w0.25-m1-a1-c1000", "v2-r256-w0.5-m1-a1-c1000"]
    assert baselines == [grid_width_baseline(SPACE, b) for b in (150 * M, 600 * M)]
    first = select_configs(SPACE, 40, 100 * M, 1000 * M, 0, baselines)
    assert first == select_configs(SPACE, 40, 100 * M, 1000 * M, 0, baselines)
    assert [c for c, _ in first[:2]] == baselines
    assert select_configs(SPACE, 80, 100 * M, 1000 * M, 0, baselines)[:40] == first  # a larger --configs extends
    assert select_configs(SPACE, 40, 100 * M, 1000 * M, 1, baselines) != first
    assert len({c.network_key() for c, _ in first}) == 40
    assert all(100 * M <= m <= 1000 * M and m == closed_form_cost(c).macs for c, m in first)
    macs = np.array([m for _, m in first])  # the log-MAC bands share the points: every replay budget gets its part
    assert (macs <= 150 * M).sum() >= 5 and ((macs > 300 * M) & (macs <= 600 * M)).sum() >= 8
    pool, _ = distinct_in_range(SPACE, 100 * M, 1000 * M)
    assert len(select_configs(SPACE, 5000, 100 * M, 1000 * M)) == len(pool) > 1000
    narrow = select_configs(SPACE, 4, 150 * M, 300 * M, 0, baselines)  # baselines outside the range stay out
    assert not {c.network_key() for c, _ in narrow} & {c.network_key() for c in baselines}


def test_profiles_by_name_or_json(tmp_path):
    assert resolve_profile("smoke") == recipe.PROFILES["smoke"]
    inline = resolve_profile('{"base": "tiny", "name": "tiny2", "epochs": 2, "crop_scale": [0.5, 1.0]}')
    assert (inline.name, inline.epochs, inline.crop_scale, inline.batch_size) == ("tiny2", 2, (0.5, 1.0), 16)
    (tmp_path / "p.json").write_text('{"base": "smoke", "epochs": 1}')
    assert resolve_profile(str(tmp_path / "p.json")).name == "smoke-custom"
    for bad, message in (("fast", "unknown 'fast'"), ("{oops", "not valid JSON"), ('{"epoch": 1}', "epoch"),
                         ('{"base": "nope"}', "nope"), ("[1]", "unknown"),
                         (str(tmp_path / "missing.json"), "cannot read")):
        with pytest.raises(ConfigError, match=message):
            resolve_profile(bad)


# ---- bench-table --------------------------------------------------------------------------------------------
class FakeTraining:
    """``loop.evaluate`` without training: a known accuracy at the exact trained side (or ``side``), and
    Ctrl-C after ``stop_after`` configs."""

    def __init__(self, stop_after=None, side=None):
        self.calls, self.stop_after, self.side = [], stop_after, side

    def __call__(self, config, profile, data, seed, progress=True, **kwargs):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(config.id)
        side = self.side or recipe.train_resolution(config, profile.resolution_scale)
        return SimpleNamespace(status="ok", reason=None, top1=bowl(config), top5=1.0, train_loss=1.0, wall_s=0.1,
                               device="cpu", resolution=side, val_correct="AA==")


@pytest.fixture
def fruit(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    return make_image_folder(tmp_path / "fruit")


def test_bench_table_appends_rows_and_resumes_after_an_interruption(tmp_path, fruit, monkeypatch):
    out = tmp_path / "t.csv"
    fake = FakeTraining(stop_after=3)
    monkeypatch.setattr(loop, "evaluate", fake)
    with pytest.raises(KeyboardInterrupt):
        generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False)
    rows = read_rows(out)
    assert [r["config_id"] for r in rows] == fake.calls and len(rows) == 3  # nothing lost but the one in progress
    assert list(rows[0]) == list(COLUMNS) and rows[0]["profile"] == "tiny" and rows[0]["data"] == "fruit"
    assert rows[0]["val_correct"] == "AA=="
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["profile"]["name"] == "tiny" and meta["device_type"] == "cpu" and "CPU" in meta["note"]
    assert meta["data_fingerprint"] and meta["seed"] == 0 and meta["space"]["family"] == "v2"

    with open(out, "a") as handle:  # a row cut short by a kill mid-write
        handle.write("v2-r128-w0.5,v2,12")
    fake.stop_after = None
    result = generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False)
    assert (result.selected, result.skipped, result.added, result.rescored) == (6, 3, 3, 0)
    assert len(set(fake.calls)) == 6
    ids = [r["config_id"] for r in read_rows(out)]
    assert ids == [c.id for c, _ in select_configs(SPACE, 6, 100 * M, 1000 * M, 0, baseline_configs(SPACE))]
    assert generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False).added == 0

    for kwargs, message in (({"profile": "smoke"}, "profile differs"), ({"seed": 1}, "seed: stored 0"),
                            ({"min_macs": 50 * M}, "min_macs: stored")):
        args = {"profile": "tiny", "min_macs": 100 * M, **kwargs}
        with pytest.raises(ConfigError, match=message):
            generate_table(out, 7, args.pop("min_macs"), 1000 * M, args.pop("profile"), data=fruit,
                           progress=False, **args)
    table = load_table(out)
    assert len(table.configs) == 6 and table.fidelity["name"] == "tiny" and table.data == meta["data_fingerprint"]
    assert table.inexact == 0 and table.wall_s == [0.1] * 6


def test_bench_table_scores_rows_of_the_old_resolution_rounding_again(tmp_path, fruit, monkeypatch):
    """A table scored before the exact resolution: resuming re-scores its twins, and reads the new rows."""
    out = tmp_path / "old.csv"
    monkeypatch.setattr(loop, "evaluate", FakeTraining(side=64))  # as if every config trained at 64 px
    generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False)
    exact = [recipe.train_resolution(c, 0.25) == 64 for c, _ in SAMPLE[:6]]
    assert 0 < sum(exact) < 6
    assert load_table(out).inexact == 6 - sum(exact) and len(load_table(out).configs) == sum(exact)
    fake = FakeTraining()
    monkeypatch.setattr(loop, "evaluate", fake)
    result = generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False)
    assert result.rescored == result.added == 6 - sum(exact) == len(fake.calls)
    table = load_table(out)
    assert len(table.configs) == 6 and table.inexact == 6 - sum(exact)  # the old rows are still there, left out
    assert len(load_table(out, exact_only=False).configs) == 6  # an exact row beats its inexact one


def test_bench_table_cli_trains_with_the_tiny_profile(tmp_path, fruit, capsys):
    out = tmp_path / "real.csv"
    assert main(["bench-table", "--out", str(out), "--configs", "1", "--profile", "tiny", "--data", str(fruit),
                 "--quiet"]) == 0
    assert "1 scored now, 0 already" in capsys.readouterr().out
    (row,) = read_rows(out)
    assert row["config_id"] == "v2-r256-w0.25-m1-a1-c1000" and row["status"] == "ok" and row["device"] == "cpu"
    assert 0 <= float(row["top1"]) <= 1 and row["trained_resolution"] == "64" and row["val_correct"]
    assert main(["bench-table", "--out", str(out), "--configs", "1", "--profile", "tiny", "--data", str(fruit),
                 "--quiet"]) == 0
    assert "0 scored now, 1 already" in capsys.readouterr().out


def test_bench_table_curve_scores_every_epoch(tmp_path, fruit, capsys):
    out = tmp_path / "curve.csv"
    profile = '{"base": "tiny", "name": "tiny3", "epochs": 3}'
    assert main(["bench-table", "--out", str(out), "--configs", "1", "--profile", profile, "--data", str(fruit),
                 "--curve", "--quiet"]) == 0
    (row,) = read_rows(out)
    curve = json.loads(row["curve"])
    assert len(curve) == 3 and curve[-1] == pytest.approx(float(row["top1"]), abs=1e-6)


def test_bench_table_dry_run_and_errors(tmp_path, capsys):
    assert main(["bench-table", "--dry-run", "--configs", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "(uniform baseline)" in lines[0]
    for args, message in ((["--min-macs", "1X"], "--min-macs: cannot read"),
                          (["--min-macs", "2G"], "--min-macs: 2G is above"),
                          (["--configs", "0"], "--configs: 0"),
                          (["--profile", "fast"], "--profile: unknown 'fast'"),
                          (["--compare", str(tmp_path / "b.csv")], "--compare: name the first table")):
        assert main(["bench-table", "--dry-run", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


# ---- reading tables ---------------------------------------------------------------------------------------
def test_rows_trained_at_another_resolution_are_left_out_and_counted(tmp_path):
    def old_rounding(config):
        return max(64, round(config.resolution * 0.5 / 32) * 32)  # what tables before 4d68ef5 recorded

    path = write_table(tmp_path / "old.csv", sample=SAMPLE[:20], resolution=old_rounding)
    twins = [c for c, _ in SAMPLE[:20] if old_rounding(c) != recipe.train_resolution(c, 0.5)]
    assert twins and len(twins) < 20
    table = load_table(path)
    assert table.inexact == len(twins) and len(table.configs) == 20 - len(twins)
    assert not {c.network_key() for c in twins} & set(table.index())
    every = load_table(path, exact_only=False)
    assert len(every.configs) == 20 and not every.exact_only
    unknown = write_table(tmp_path / "unknown.csv", sample=SAMPLE[:2], profile=CHEAP, sidecar=False)
    with pytest.raises(ConfigError, match="cannot be checked; pass --all-rows"):
        load_table(unknown)
    assert len(load_table(unknown, exact_only=False).configs) == 2
    all_old = write_table(tmp_path / "all_old.csv", sample=SAMPLE[:2], resolution=lambda c: 31)
    with pytest.raises(ConfigError, match="none of the 2 rows .* exact resolution"):
        load_table(all_old)


def test_tables_that_cannot_be_read(tmp_path):
    (tmp_path / "empty.csv").write_text("config_id,family\n")
    with pytest.raises(ConfigError, match="has no rows"):
        load_table(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("config_id,family\nx,v2\n")
    with pytest.raises(ConfigError, match="lacks column"):
        load_table(tmp_path / "cols.csv")
    off = SAMPLE[0][0].replace(width=0.3)
    append_row(tmp_path / "off.csv", make_row(off, {"status": "ok", "top1": 0.5}, "smoke", 0, "synthetic"))
    with pytest.raises(ConfigError, match="not a point of the space"):
        load_table(tmp_path / "off.csv")
    write_table(tmp_path / "mixed.csv", sample=SAMPLE[:2], sidecar=False)
    write_table(tmp_path / "mixed.csv", sample=SAMPLE[2:4], profile="short", sidecar=False)
    with pytest.raises(ConfigError, match="mixes profiles"):
        load_table(tmp_path / "mixed.csv")
    failed = write_table(tmp_path / "failed.csv", sample=SAMPLE[:4], accuracy=lambda c: None if c == SAMPLE[3][0]
                         else bowl(c))
    assert load_table(failed).top1[3] is None and read_rows(failed)[3]["reason"] == "diverged"
    assert bench.meta_path(failed).name == "failed.json"


# ---- rank agreement ---------------------------------------------------------------------------------------
def test_rank_agreement_between_two_tables_and_seed_groups(tmp_path, capsys):
    a = write_table(tmp_path / "a.csv", sample=SAMPLE[:12])
    b = write_table(tmp_path / "b.csv", sample=SAMPLE[4:20], accuracy=lambda c: 0.5 + bowl(c) / 2, profile="short")
    c = write_table(tmp_path / "c.csv", sample=SAMPLE[:12], accuracy=lambda c: 1 - bowl(c))
    same = rank_agreement([load_table(a)], [load_table(b)])
    assert same["configs"] == 8 and same["kendall_tau"] == pytest.approx(1.0)
    shared = [c for c, _ in SAMPLE[4:12]]
    assert same["mean_abs_diff"] == pytest.approx(np.mean([abs(bowl(c) - (0.5 + bowl(c) / 2)) for c in shared]))
    best = max(shared, key=bowl).id
    assert same["a_best"] == same["b_best"] == best
    flipped = rank_agreement([load_table(a)], [load_table(c)])
    assert flipped["kendall_tau"] == pytest.approx(-1.0)
    assert flipped["a_best"] == max((c for c, _ in SAMPLE[:12]), key=bowl).id != flipped["b_best"]
    assert main(["bench-table", "--out", str(a), "--compare", str(b)]) == 0
    out = capsys.readouterr().out
    assert "8 configs scored in both: Kendall's tau 1.000" in out and f"{best} vs {best} (the same config)" in out
    # two seeds of one fidelity are averaged: seed 1 reverses seed 0's order at half the weight
    s1 = write_table(tmp_path / "a1.csv", sample=SAMPLE[:12], accuracy=lambda c: 0.3 - bowl(c) / 2, seed=1)
    pooled = rank_agreement([load_table(a), load_table(s1)], [load_table(b)])
    assert pooled["a_seeds"] == [0, 1] and pooled["kendall_tau"] == pytest.approx(1.0)
    assert pooled["mean_abs_diff"] == pytest.approx(np.mean([abs((0.3 + bowl(c) / 2) / 2 - (0.5 + bowl(c) / 2))
                                                             for c in shared]))
    assert main(["bench-table", "--out", f"{a},{a}", "--compare", str(b)]) == 2
    assert "both hold seed 0" in capsys.readouterr().err
    assert main(["bench-table", "--out", f"{a},{b}", "--compare", str(c)]) == 2
    assert "pool only tables of one profile" in capsys.readouterr().err


def test_compare_a_chain_of_fidelities(tmp_path, capsys):
    cheap = write_table(tmp_path / "cheap.csv", sample=SAMPLE[:12], profile=CHEAP)
    mid = write_table(tmp_path / "mid.csv", sample=SAMPLE[:12], accuracy=lambda c: 0.5 + bowl(c) / 2)
    top = write_table(tmp_path / "top.csv", sample=SAMPLE[:12], accuracy=lambda c: 1 - bowl(c), profile="short")
    results = chain_agreement([[load_table(p)] for p in (cheap, mid, top)])
    assert [r["pair"] for r in results] == ["1 vs 2", "2 vs 3", "1 vs 3 (first vs last)"]
    assert [round(r["kendall_tau"], 6) for r in results] == [1.0, -1.0, -1.0]
    assert main(["bench-table", "--out", str(cheap), "--compare", str(mid), "--compare", str(top)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fidelities, cheapest first: 1 = cheap (seed 0); 2 = smoke (seed 0); 3 = short (seed 0)"
    assert lines[1].startswith("1 vs 2: 12 configs scored in both: Kendall's tau 1.000")
    assert lines[3].startswith("2 vs 3: 12 configs scored in both: Kendall's tau -1.000")
    assert lines[5].startswith("1 vs 3 (first vs last): 12 configs scored in both: Kendall's tau -1.000")
    assert "(different configs)" in lines[6] and len(lines) == 7


def test_compare_leaves_out_inexact_rows_unless_asked(tmp_path, capsys):
    a = write_table(tmp_path / "a.csv", sample=SAMPLE[:12], resolution=lambda c: 64)
    b = write_table(tmp_path / "b.csv", sample=SAMPLE[:12], accuracy=lambda c: 0.5 + bowl(c) / 2)
    exact = sum(recipe.train_resolution(c, 0.5) == 64 for c, _ in SAMPLE[:12])
    assert 2 <= exact < 12
    assert main(["bench-table", "--out", str(a), "--compare", str(b)]) == 0
    captured = capsys.readouterr()
    assert f"{exact} configs scored in both" in captured.out
    assert f"left out {12 - exact} row(s) of {a}" in captured.err
    assert main(["bench-table", "--out", str(a), "--compare", str(b), "--all-rows"]) == 0
    assert "12 configs scored in both" in capsys.readouterr().out
