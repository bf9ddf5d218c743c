"""Replays (issues 8 and 13): the strategies searched against synthetic tables of two rungs (the cheap one a
tenth of the top's images) and two top-rung seeds, through the real search loop, with a known truth."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from helpers.synthetic_tables import (
    BUDGET,
    CHEAP,
    SAMPLE,
    SPACE,
    STAR,
    bowl,
    jitter,
    write_table,
)

from archsearch.bench.replay import (
    Problem,
    Rung,
    Setup,
    SnapToTable,
    TableEvaluator,
    median,
    planned_cost,
    render,
    replay,
    search,
    trials_for,
    write_outputs,
)
from archsearch.bench.tables import load_table
from archsearch.cli import main
from archsearch.model.config import ConfigError
from archsearch.model.cost import closed_form_cost
from archsearch.search import BudgetError, Job
from archsearch.search.fidelity import ladder as make_ladder
from archsearch.search.noise import NOISE_DF, NOISE_STD

optuna.logging.set_verbosity(optuna.logging.WARNING)
M = 1_000_000


def early(config) -> float:
    """The cheap rung: a compressed, lower copy of the top rung's surface (informative: same order)."""
    return 0.5 * bowl(config) + 0.1


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    return {"cheap": write_table(folder / "cheap.csv", accuracy=early, profile=CHEAP),
            "top0": write_table(folder / "top0.csv", accuracy=jitter(0), seed=0),
            "top1": write_table(folder / "top1.csv", accuracy=jitter(1), seed=1)}


@pytest.fixture(scope="module")
def problem(paths):
    rungs = [Rung.of([load_table(paths["cheap"])]), Rung.of([load_table(paths["top0"]), load_table(paths["top1"])])]
    return Problem.build(rungs, BUDGET)


@pytest.fixture(scope="module")
def single(paths):
    """One rung, one seed, no noise needed: the surface itself."""
    return Problem.build([Rung.of([load_table(paths["top0"])])], BUDGET)


def truth(config) -> float:
    return (jitter(0)(config) + jitter(1)(config)) / 2


# ---- the problem --------------------------------------------------------------------------------------------
def test_problem_points_truth_costs_and_noise(problem, paths):
    feasible = [c for c, m in SAMPLE if m <= BUDGET]
    assert problem.points == feasible and all(m <= BUDGET for m in problem.costs) and problem.left_out == 0
    best = max(feasible, key=truth)
    assert problem.best[0] == best and problem.best[1] == pytest.approx(truth(best))
    assert problem.true(STAR) == pytest.approx(truth(STAR))
    assert problem.weights == pytest.approx((0.1, 1.0))  # 1 epoch of 60 images a class vs 4 of 150
    # the top rung's noise: smoke's measured prior pooled with the 60 configs' seed pairs (60 df)
    pairs = [(jitter(0)(c), jitter(1)(c)) for c, _ in SAMPLE]
    ss = sum((a - b) ** 2 / 2 for a, b in pairs)
    top = problem.rungs[1].noise
    prior_df = NOISE_DF['smoke']
    assert top.repeats_df == 60 and top.std == pytest.approx(math.sqrt((prior_df * NOISE_STD['smoke']**2 + ss) / (prior_df + 60)))
    first = problem.rungs[0].noise  # never measured, no repeats: unknown, at least the largest measured noise
    assert not first.known and first.std == max(NOISE_STD.values()) and first.repeats_df == 0
    assert Problem.build(problem.rungs, BUDGET, "wall").weights == (1.0, 1.0)  # every row took 10 s
    with pytest.raises(BudgetError, match="no config of the tables fits 50.0M"):
        Problem.build(problem.rungs, 50 * M)
    with pytest.raises(ConfigError, match="--cost: 'flops'"):
        Problem.build(problem.rungs, BUDGET, "flops")


def test_only_configs_every_rung_scored_are_searched(tmp_path, paths):
    cheap = write_table(tmp_path / "cheap.csv", accuracy=lambda c: None if c == STAR else early(c), profile=CHEAP,
                        sample=SAMPLE[:40])
    problem = Problem.build([Rung.of([load_table(cheap)]), Rung.of([load_table(paths["top0"])])], BUDGET)
    expected = [c for c, m in SAMPLE[:40] if m <= BUDGET and c != STAR]
    assert problem.points == expected and problem.left_out == 30 - len(expected)
    curve = search(problem, "mf-random", 0, [3], Setup())
    assert STAR.id not in {j.config_id for j in curve.jobs} and {j.config_id for j in curve.jobs} <= {
        c.id for c in expected}


# ---- noise --------------------------------------------------------------------------------------------------
def test_noisy_draws_come_from_the_table_seeds(problem):
    lad, index = make_ladder([CHEAP, "smoke"]), (0, 1)
    first_seed = set()
    for replay_seed in (0, 1, 2):
        evaluator = TableEvaluator(problem, lad, index, replay_seed, noisy=True)
        for config in problem.points:
            one, other = (evaluator(Job(config, 1, replay_seed + k)) for k in (0, 1))
            assert {one["table_seed"], other["table_seed"]} == {0, 1}  # a search's two seeds: both table seeds
            assert {one["top1"], other["top1"]} == {jitter(0)(config), jitter(1)(config)}
            assert evaluator(Job(config, 1, replay_seed))["top1"] == one["top1"]  # the same job, the same draw
            first_seed.add(one["table_seed"])
    assert first_seed == {0, 1}  # which seed comes first depends on the replay seed and config
    evaluator = TableEvaluator(problem, lad, index, 0, noisy=True)
    deviations = np.array([evaluator(Job(c, 0, 0))["top1"] - early(c) for c in problem.points])
    assert 0.5 * 0.02 < deviations.std() < 2 * 0.02 and np.all(deviations != 0)  # one seed: + the rung's noise
    again = [evaluator(Job(c, 0, 1))["top1"] - early(c) for c in problem.points]
    assert not np.allclose(deviations, again)  # another seed of the search: another draw
    quiet = TableEvaluator(problem, lad, index, 0, noisy=False)
    assert quiet(Job(STAR, 1, 0))["top1"] == pytest.approx(truth(STAR))  # noise off: the mean over seeds
    assert quiet(Job(STAR, 0, 0))["top1"] == early(STAR)


# ---- searches -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["gp", "design", "tpe", "random", "nsga3", "mf-random"])
def test_replay_is_deterministic_per_seed_and_evaluates_only_points(problem, strategy):
    first, again = search(problem, strategy, 0, [4], Setup()), search(problem, strategy, 0, [4], Setup())
    assert first == again and not first.stuck
    ids = {c.id for c in problem.points}
    assert first.jobs and all(j.config_id in ids for j in first.jobs)
    assert first.picks[0].config_id in ids and first.picks[0].true == pytest.approx(truth(
        next(c for c in problem.points if c.id == first.picks[0].config_id)))
    if strategy not in ("gp", "design"):
        assert first.infeasible > 0  # over-budget proposals are skipped, never looked up
        assert search(problem, strategy, 1, [4], Setup()).jobs != first.jobs


def test_costs_are_top_rung_evaluations(problem):
    two, one = make_ladder([CHEAP, "smoke"]), make_ladder(["smoke"])
    assert planned_cost(9, (0.1, 1.0), two) == pytest.approx(0.9 + 3)
    assert trials_for(4, (0.1, 1.0), two, 30) == 9 and trials_for(0.5, (0.1, 1.0), two, 30) is None
    assert planned_cost(7, (1.0,), one) == 7 and trials_for(40, (1.0,), one, 30) == 30
    assert planned_cost(7, (1.0,), make_ladder(["smoke"], top_seeds=2)) == 7 + 3
    assert planned_cost(6, (0.1, 1.0), make_ladder([CHEAP, "smoke"], top_seeds=2)) == pytest.approx(0.6 + 2 * 2)
    result = search(problem, "mf-random", 0, [2, 4], Setup())
    assert [p.trials for p in result.picks] == [3, 9]
    assert all(p.spent <= p.cost + 1e-9 for p in result.picks)
    steps = np.diff([0.0] + [j.cost for j in result.jobs])
    assert np.allclose(steps, [0.1 if j.rung == 0 else 1.0 for j in result.jobs])
    assert result.jobs[-1].cost == pytest.approx(result.picks[-1].spent) == pytest.approx(3.9)
    assert search(problem, "mf-random", 0, [0.5], Setup()).picks[0].trials is None  # buys not even one search


def test_mf_runs_the_ladder_and_decides_at_the_top(problem):
    result = search(problem, "mf-gp", 0, [2], Setup())
    assert [j.rung for j in result.jobs] == [0, 0, 0, 1]  # 3 proposals at the cheap rung, the best third promoted
    promoted = max(result.jobs[:3], key=lambda j: j.score)
    assert result.jobs[3].config_id == promoted.config_id
    pick = result.picks[0]
    assert pick.rung == 1 and pick.config_id == promoted.config_id and pick.trials == 3
    repeated = search(problem, "mf-random", 0, [5], Setup(top_seeds=2))
    top = [j for j in repeated.jobs if j.rung == 1]
    assert repeated.picks[0].trials == 6 and len(top) == 4  # 2 promoted x 2 seeds
    for config_id in {j.config_id for j in top}:
        assert {j.table_seed for j in top if j.config_id == config_id} == {0, 1}


def test_mf_gp_picks_at_least_as_well_as_single_fidelity_gp_at_equal_cost(problem):
    """A cheap rung that ranks like the top one: at the cost of 5 top-rung evaluations, successive halving with
    the multi-fidelity GP screens 10 configs and decides among 4 at the top, and its winner is truly better
    on average over replay seeds than single-fidelity GP's winner of 5 evaluations."""
    seeds = range(3)
    mf = [search(problem, "mf-gp", s, [5], Setup()).picks[0] for s in seeds]
    gp = [search(problem, "gp", s, [5], Setup()).picks[0] for s in seeds]
    assert [p.trials for p in mf] == [10] * 3 and [p.trials for p in gp] == [5] * 3
    assert np.mean([p.true for p in mf]) >= np.mean([p.true for p in gp])
    assert sum(p.is_best for p in mf) >= sum(p.is_best for p in gp)


@pytest.fixture(scope="module")
def report(single):
    return replay(single, ["gp", "random"], [3, 12], 3, Setup(noisy=False))


def test_noiseless_gp_picks_the_table_best_and_design_is_always_reported(report, single):
    assert list(report.searches) == ["gp", "random", "design"]  # design added
    gp = report.stats("gp", 1)
    assert gp["picked_best"] == 3 and gp["mean"] == pytest.approx(single.best[1]) and gp["trials"] == [12]
    assert report.stats("random", 1)["mean"] < gp["mean"]
    assert all(c is not None and c <= 12 for c in report.costs_to_target("gp"))
    assert report.difference("design", "gp")[1] == pytest.approx(report.stats("design", 1)["mean"] - gp["mean"])


def test_report_renders_and_writes_a_self_contained_plot(report, tmp_path):
    text = render(report)
    assert "true top-1 of the decided winner (%)" in text and "design - gp:" in text and "noise: off" in text
    assert "pick - grid-width baseline at cost 12" in text and "median over seeds" in text
    html, data = write_outputs(report, tmp_path)
    assert html.name == "replay-top0-300M.html" and html.stat().st_size > 1_000_000  # plotly.js embedded
    saved = json.loads(data.read_text())
    assert saved["strategies"]["gp"]["picks"][1]["picked_best"] == 3 and saved["points"] == 30
    assert len(saved["strategies"]["design"]["searches"]) == 3 and saved["costs"] == [3.0, 12.0]
    assert "design - gp" in saved["compared"]


def test_snapping_moves_feasible_proposals_to_the_nearest_free_point(single):
    snap = SnapToTable(optuna.samplers.RandomSampler(seed=0), SPACE, single.points, BUDGET)
    over = SPACE.config({"resolution": 320, "width": 2.0, "mv2_depth": 2.0, "vit_depth": 2.0})
    assert snap.snap(over) is over  # over budget: left for run_trials to skip
    assert snap.snap(STAR) == STAR
    near = STAR.replace(vit_depth=STAR.vit_depth + 0.25)
    assert closed_form_cost(near).macs <= BUDGET and snap.snap(near) == STAR
    moved = snap.snap(STAR, taken={STAR.network_key()})
    assert moved != STAR and moved in single.points


def test_median_counts_a_seed_that_never_got_there_as_infinite():
    assert median([3, None, 5]) == 5 and median([None, None, 5]) is None and median([2, 4]) == 3


# ---- the command --------------------------------------------------------------------------------------------
def test_replay_cli_over_two_rungs_with_seed_tables(paths, tmp_path, capsys):
    args = ["replay", "--table", str(paths["cheap"]), "--table", str(paths["top0"]), "--seed-table",
            str(paths["top1"]), "--mac-budget", "300M", "--trials", "2", "--seeds", "1", "--out", str(tmp_path),
            "--quiet"]
    assert main([*args, "--strategy", "mf-gp,random"]) == 0
    captured = capsys.readouterr()
    assert "design added" in captured.err
    out = captured.out
    assert "rung 0 cheap: cheap.csv (seed 0); a job costs 0.1" in out
    assert "rung 1 smoke: top0.csv (seed 0), top1.csv (seed 1); a job costs 1" in out
    assert "noise at smoke: 30 of 30 configs draw one of their table seeds\n" in out
    assert "noise at cheap: 0 of 30 configs draw one of their table seeds; the other 30 score their one table " \
           "score + N(0, 3.30 points): unknown: profile 'cheap' was never measured" in out
    assert "mf-gp: proposals at rung 0 for cost 1 / 2: - / 3" in out and "plot:" in out
    assert main([*args, "--strategy", "gp", "--json", "--noise", "off"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert set(saved["strategies"]) == {"gp", "design"} and saved["mac_budget"] == BUDGET
    assert not saved["setup"]["noisy"] and [r["profile"] for r in saved["rungs"]] == ["cheap", "smoke"]
    assert (tmp_path / "replay-top0-300M.html").exists()


@pytest.mark.parametrize("args, message", [
    (["--table", "missing.csv", "--mac-budget", "300M"], "--table: no such file"),
    (["--mac-budget", "300X"], "--mac-budget: cannot read '300X'"),
    (["--mac-budget", "50M"], "--mac-budget: no config of the tables fits 50.0M"),
    (["--mac-budget", "300M", "--strategy", "gp,bayes"], "--strategy: 'bayes'"),
    (["--mac-budget", "300M", "--strategy", "mf-gp"], "--strategy mf-gp: give --table once per rung"),
    (["--mac-budget", "300M", "--trials", "0"], "--trials: 0"),
    (["--mac-budget", "300M", "--seeds", "0"], "--seeds: 0"),
    (["--mac-budget", "300M", "--costs", "5,x"], "--costs: cannot read"),
    (["--mac-budget", "300M", "--promote", "2"], "--promote: 2"),
    (["--mac-budget", "300M", "--seed-table", "CHEAP"], "--seed-table: "),
    (["--mac-budget", "300M", "--seed-table", "TOP0"], "both hold seed 0"),
])
def test_replay_cli_errors_are_one_line(paths, tmp_path, capsys, args, message):
    args = [{"CHEAP": str(paths["cheap"]), "TOP0": str(paths["top0"])}.get(a, a) for a in args]
    argv = ["replay", *(args if "--table" in args else ["--table", str(paths["top0"]), *args]), "--out", str(tmp_path),
            "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_rung_that_trains_on_every_image_needs_wall_time_costs(tmp_path, paths, capsys):
    reference = write_table(tmp_path / "reference.csv", profile="reference")
    argv = ["replay", "--table", str(paths["top0"]), "--table", str(reference), "--mac-budget", "300M", "--quiet",
            "--out", str(tmp_path), "--strategy", "random", "--seeds", "1", "--trials", "2"]
    assert main(argv) == 2
    assert "--cost images: profile 'reference' trains on every image" in capsys.readouterr().err
    assert main([*argv, "--cost", "wall"]) == 0
    assert "by the rungs' median training wall time" in capsys.readouterr().out
