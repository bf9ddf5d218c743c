"""The tabular benchmark (issue 8): the sample, resumable table generation, and replays of the strategies on
a small synthetic table with a known best. The benchmark figures themselves live in benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from imagefolder import make_image_folder

from archsearch import bench, training
from archsearch.bench import (
    COLUMNS,
    append_row,
    baseline_configs,
    distinct_in_range,
    generate_table,
    load_space,
    load_table,
    make_row,
    rank_agreement,
    read_rows,
    resolve_profile,
    select_configs,
)
from archsearch.cli import main
from archsearch.config import ConfigError
from archsearch.cost import closed_form_cost
from archsearch.replay import Problem, SnapToTable, median_evals, render, replay, replay_one, ticks, write_outputs
from archsearch.search import BudgetError, uniform_baseline

optuna.logging.set_verbosity(optuna.logging.WARNING)
M = 1_000_000
BUDGET = 300 * M
N = 12
SEEDS = 3
SPACE, _ = load_space(None)


def bowl(config) -> float:
    """A smooth accuracy surface: a quadratic bowl in the encoded cube around one feasible table point."""
    return 0.8 - 0.3 * float(((SPACE.encode([config])[0] - STAR_X) ** 2).sum())


SAMPLE = select_configs(SPACE, 60, 100 * M, 1000 * M, 0, baseline_configs(SPACE))
_FEASIBLE = [c for c, m in SAMPLE if m <= BUDGET]
STAR = _FEASIBLE[int(np.argmin(((SPACE.encode(_FEASIBLE) - [0.4, 0.3, 0.5, 0.5]) ** 2).sum(1)))]
STAR_X = SPACE.encode([STAR])[0]


def write_table(path, accuracy=bowl, sample=SAMPLE, profile="synthetic"):
    """A table as bench-table writes it; ``accuracy`` None: the config failed (diverged)."""
    for config, _ in sample:
        top1 = accuracy(config)
        record = ({"status": "ok", "top1": top1, "top5": 1.0, "device": "cpu"} if top1 is not None else
                  {"status": "failed", "reason": "diverged", "device": "cpu"})
        append_row(path, make_row(config, record, profile, 0, "synthetic"))
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return load_table(write_table(tmp_path_factory.mktemp("table") / "synthetic.csv"))


@pytest.fixture(scope="module")
def report(table):
    return replay(table, BUDGET, ["gp", "random"], N, SEEDS)


# ---- the sample -----------------------------------------------------------------------------------------------
def test_sample_is_deterministic_distinct_in_range_and_extendable():
    baselines = baseline_configs(SPACE)
    assert [c.id for c in baselines] == ["v2-r256-w0.25-m1-a1-c1000", "v2-r256-w0.5-m1-a1-c1000"]
    assert baselines == [uniform_baseline(SPACE, b) for b in (150 * M, 600 * M)]
    first = select_configs(SPACE, 40, 100 * M, 1000 * M, 0, baselines)
    assert first == select_configs(SPACE, 40, 100 * M, 1000 * M, 0, baselines)
    assert [c for c, _ in first[:2]] == baselines
    assert select_configs(SPACE, 80, 100 * M, 1000 * M, 0, baselines)[:40] == first  # a larger --configs extends
    assert select_configs(SPACE, 40, 100 * M, 1000 * M, 1, baselines) != first
    assert len({c.network_key() for c, _ in first}) == 40
    assert all(100 * M <= m <= 1000 * M and m == closed_form_cost(c).macs for c, m in first)
    # the log-MAC bands share the points: every replay budget gets its part
    macs = np.array([m for _, m in first])
    assert (macs <= 150 * M).sum() >= 5 and ((macs > 300 * M) & (macs <= 600 * M)).sum() >= 8
    pool, _ = distinct_in_range(SPACE, 100 * M, 1000 * M)
    assert len(select_configs(SPACE, 5000, 100 * M, 1000 * M)) == len(pool) > 1000


def test_profiles_by_name_or_json(tmp_path):
    assert resolve_profile("smoke") == training.PROFILES["smoke"]
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
    """``training.evaluate`` without training: a known accuracy, and Ctrl-C after ``stop_after`` configs."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def __call__(self, config, profile, data, seed, progress=True, **kwargs):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(config.id)
        return SimpleNamespace(status="ok", reason=None, top1=bowl(config), top5=1.0, train_loss=1.0, wall_s=0.1,
                               device="cpu", resolution=64)


@pytest.fixture
def fruit(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    return make_image_folder(tmp_path / "fruit")


def test_bench_table_appends_rows_and_resumes_after_an_interruption(tmp_path, fruit, monkeypatch):
    out = tmp_path / "t.csv"
    fake = FakeTraining(stop_after=3)
    monkeypatch.setattr(training, "evaluate", fake)
    with pytest.raises(KeyboardInterrupt):
        generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False)
    rows = read_rows(out)
    assert [r["config_id"] for r in rows] == fake.calls and len(rows) == 3  # nothing lost but the one in progress
    assert list(rows[0]) == list(COLUMNS) and rows[0]["profile"] == "tiny" and rows[0]["data"] == "fruit"
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["profile"]["name"] == "tiny" and meta["device_type"] == "cpu" and "CPU" in meta["note"]
    assert meta["data_fingerprint"] and meta["seed"] == 0 and meta["space"]["family"] == "v2"

    with open(out, "a") as handle:  # a row cut short by a kill mid-write
        handle.write("v2-r128-w0.5,v2,12")
    fake.stop_after = None
    result = generate_table(out, 6, 100 * M, 1000 * M, "tiny", data=fruit, progress=False)
    assert (result.selected, result.skipped, result.added) == (6, 3, 3) and len(set(fake.calls)) == 6
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


def test_bench_table_cli_trains_with_the_tiny_profile(tmp_path, fruit, capsys):
    out = tmp_path / "real.csv"
    assert main(["bench-table", "--out", str(out), "--configs", "1", "--profile", "tiny", "--data", str(fruit),
                 "--quiet"]) == 0
    assert "1 scored now, 0 already" in capsys.readouterr().out
    (row,) = read_rows(out)
    assert row["config_id"] == "v2-r256-w0.25-m1-a1-c1000" and row["status"] == "ok" and row["device"] == "cpu"
    assert 0 <= float(row["top1"]) <= 1 and row["trained_resolution"] == "64"
    assert main(["bench-table", "--out", str(out), "--configs", "1", "--profile", "tiny", "--data", str(fruit),
                 "--quiet"]) == 0
    assert "0 scored now, 1 already" in capsys.readouterr().out


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


def test_rank_agreement_between_two_tables(tmp_path, capsys):
    a = write_table(tmp_path / "a.csv", sample=SAMPLE[:12])
    b = write_table(tmp_path / "b.csv", sample=SAMPLE[4:20], accuracy=lambda c: 0.5 + bowl(c) / 2, profile="other")
    c = write_table(tmp_path / "c.csv", sample=SAMPLE[:12], accuracy=lambda c: 1 - bowl(c))
    same = rank_agreement(load_table(a), load_table(b))
    assert same["configs"] == 8 and same["kendall_tau"] == pytest.approx(1.0)
    shared = [c for c, _ in SAMPLE[4:12]]
    assert same["mean_abs_diff"] == pytest.approx(np.mean([abs(bowl(c) - (0.5 + bowl(c) / 2)) for c in shared]))
    best = max(shared, key=bowl).id
    assert same["a_best"] == same["b_best"] == best
    flipped = rank_agreement(load_table(a), load_table(c))
    assert flipped["kendall_tau"] == pytest.approx(-1.0)
    assert flipped["a_best"] == max((c for c, _ in SAMPLE[:12]), key=bowl).id != flipped["b_best"]
    assert main(["bench-table", "--out", str(a), "--compare", str(b)]) == 0
    out = capsys.readouterr().out
    assert "8 configs scored in both: Kendall's tau 1.000" in out and f"{best} vs {best} (the same config)" in out


# ---- replays ------------------------------------------------------------------------------------------------
def test_problem_knows_the_best_feasible_and_the_baseline(table):
    problem = Problem.at(table, BUDGET)
    assert all(m <= BUDGET for m in problem.costs) and len(problem.points) == 30
    assert problem.best[0] == STAR and problem.best[1] == pytest.approx(0.8)
    base, accuracy, present = problem.baseline
    assert base == uniform_baseline(SPACE, BUDGET) and present and accuracy == pytest.approx(bowl(base))
    with pytest.raises(BudgetError, match="no config of the table fits 50.0M"):
        Problem.at(table, 50 * M)


@pytest.mark.parametrize("strategy", ["gp", "tpe", "random", "nsga3"])
def test_replay_is_deterministic_per_seed_and_evaluates_only_feasible_table_points(table, strategy):
    problem = Problem.at(table, BUDGET)
    first, again = replay_one(problem, strategy, 0, 8), replay_one(problem, strategy, 0, 8)
    assert first == again and len(first.best) == 8 and not first.stuck
    ids = {c.id: m for c, m in zip(problem.points, problem.costs)}
    assert len(set(first.evaluated)) == 8 and all(i in ids and ids[i] <= BUDGET for i in first.evaluated)
    assert all(a <= b for a, b in zip(first.best, first.best[1:]))  # the curve never goes down
    assert first.best[-1] == max(bowl(next(c for c in problem.points if c.id == i)) for i in first.evaluated)
    if strategy != "gp":
        assert first.infeasible > 0  # over-budget proposals are skipped, never looked up
        assert replay_one(problem, strategy, 1, 8).evaluated != first.evaluated


def test_snapping_moves_feasible_proposals_to_the_nearest_free_table_point(table):
    problem = Problem.at(table, BUDGET)
    snap = SnapToTable(optuna.samplers.RandomSampler(seed=0), SPACE, problem.points, BUDGET)
    over = SPACE.config({"resolution": 320, "width": 2.0, "mv2_depth": 2.0, "vit_depth": 2.0})
    assert snap.snap(over) is over  # over budget: left for run_trials to skip
    assert snap.snap(STAR) == STAR
    near = STAR.replace(vit_depth=STAR.vit_depth + 0.25)
    assert closed_form_cost(near).macs <= BUDGET and snap.snap(near) == STAR
    moved = snap.snap(STAR, taken={STAR.network_key()})
    assert moved != STAR and moved in problem.points


def test_gp_finds_the_known_best_and_random_needs_more_evaluations(report):
    gp, rnd = report.curves["gp"], report.curves["random"]
    assert [len(c.best) for c in gp] == [N] * SEEDS and [len(c.best) for c in rnd] == [2 * N] * SEEDS
    assert all(c.best[-1] == pytest.approx(0.8) for c in gp)  # the known best, within N in every seed
    gp_hits = [c.evals_to(0.8) for c in gp]
    random_hits = [c.evals_to(0.8) or math.inf for c in rnd]
    assert all(h is not None and h <= N for h in gp_hits)
    assert np.mean(random_hits) > np.mean(gp_hits)
    assert report.evals_to_target("gp") == [c.evals_to(0.8 - 0.005) for c in gp]
    versus = report.gp_vs_random()
    assert versus["n"] == N and versus["gp_at_n"] == pytest.approx(0.8) and versus["random_evaluations"] == 2 * N
    winner = report.winner()
    assert winner["strategy"] == "gp" and winner["minus_baseline"] == pytest.approx(0.8 - report.problem.baseline[1])


def test_report_renders_and_writes_a_self_contained_plot(report, tmp_path):
    text = render(report)
    assert "best feasible top-1 (%)" in text and "GP at 12" in text and "random at 24" in text
    assert "winner: gp" in text and "winner - baseline" in text and "median" in text
    html, data = write_outputs(report, tmp_path)
    assert html.name == "replay-synthetic-300M.html" and html.stat().st_size > 1_000_000  # plotly.js embedded
    saved = json.loads(data.read_text())
    assert saved["strategies"]["gp"]["mean"][-1] == pytest.approx(0.8) and saved["feasible_points"] == 30
    assert len(saved["strategies"]["random"]["curves"]) == SEEDS


def test_helpers():
    assert ticks(12, (12,)) == [1, 2, 3, 4, 6, 8, 10, 12] and ticks(3) == [1, 2, 3]
    assert median_evals([3, None, 5]) == 5 and median_evals([None, None, 5]) is None
    assert median_evals([2, 4]) == 3


def test_replay_cli(table, tmp_path, capsys):
    args = ["replay", "--table", str(table.path), "--mac-budget", "300M", "--trials", "3", "--seeds", "1",
            "--out", str(tmp_path), "--quiet"]
    assert main([*args, "--strategy", "random,tpe", "--strategy", "nsga3"]) == 0
    out = capsys.readouterr().out
    assert "random" in out and "nsga3" in out and " gp " not in out and "plot:" in out
    assert main([*args, "--strategy", "gp", "--json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert list(saved["strategies"]) == ["gp"] and saved["mac_budget"] == BUDGET
    assert (tmp_path / "replay-synthetic-300M.html").exists()


@pytest.mark.parametrize("args, message", [
    (["--table", "missing.csv", "--mac-budget", "300M"], "--table: no such file"),
    (["--mac-budget", "300X"], "--mac-budget: cannot read '300X'"),
    (["--mac-budget", "50M"], "--mac-budget: no config of the table fits 50.0M"),
    (["--mac-budget", "300M", "--strategy", "gp,bayes"], "--strategy: 'bayes'"),
    (["--mac-budget", "300M", "--trials", "0"], "--trials: 0"),
    (["--mac-budget", "300M", "--seeds", "0"], "--seeds: 0"),
])
def test_replay_cli_errors_are_one_line(table, tmp_path, capsys, args, message):
    argv = ["replay", *(args if "--table" in args else ["--table", str(table.path), *args]), "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_tables_that_cannot_be_replayed(tmp_path):
    (tmp_path / "empty.csv").write_text("config_id,family\n")
    with pytest.raises(ConfigError, match="has no rows"):
        load_table(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("config_id,family\nx,v2\n")
    with pytest.raises(ConfigError, match="lacks column"):
        load_table(tmp_path / "cols.csv")
    off = SAMPLE[0][0].replace(width=0.3)
    append_row(tmp_path / "off.csv", make_row(off, {"status": "ok", "top1": 0.5}, "synthetic", 0, "synthetic"))
    with pytest.raises(ConfigError, match="not a point of the space"):
        load_table(tmp_path / "off.csv")
    write_table(tmp_path / "mixed.csv", sample=SAMPLE[:2])
    write_table(tmp_path / "mixed.csv", sample=SAMPLE[2:4], profile="other")
    with pytest.raises(ConfigError, match="mixes profiles"):
        load_table(tmp_path / "mixed.csv")
    failed = write_table(tmp_path / "failed.csv", sample=SAMPLE[:4], accuracy=lambda c: None if c == SAMPLE[3][0]
                         else bowl(c))
    assert load_table(failed).top1[3] is None and read_rows(failed)[3]["reason"] == "diverged"
    assert bench.meta_path(failed).name == "failed.json"


def test_configs_that_failed_in_the_table_are_left_out_of_replays(tmp_path):
    """(The GP sampler does not count failed trials as taken; a failed candidate would be proposed forever.)"""
    path = write_table(tmp_path / "t.csv", accuracy=lambda c: None if c == STAR else bowl(c))
    problem = Problem.at(load_table(path), BUDGET)
    assert problem.failed == 1 and STAR not in problem.points and len(problem.points) == 29
    assert problem.best[1] < 0.8
    curve = replay_one(problem, "gp", 0, 12)
    assert len(curve.best) == 12 and not curve.stuck and STAR.id not in curve.evaluated
