"""The dashboard's figures and page, on two-rung studies searched for real with a synthetic evaluator."""

from __future__ import annotations

import dataclasses
import html
import importlib
import re
from collections import defaultdict

import numpy as np
import optuna
import plotly.graph_objects as go
import pytest
from helpers.dashboard_fixtures import (
    BUDGET,
    FlatEvaluator,
    ScaledEvaluator,
    build_study,
    empty_study,
    mixed_strategy_study,
    searched_study,
    single_trial_study,
)
from helpers.studies import open_synthetic, settings_for

from archsearch.cli import main
from archsearch.gp.surrogate import JOINT_PAIRS, GPSurrogate
from archsearch.model.config import ArchConfig
from archsearch.model.cost import closed_form_cost
from archsearch.model.space import FACTORS
from archsearch.report import dashboard
from archsearch.report.figures.cube import (
    CUBE_TRACES_PER_STEP,
    best_so_far,
    pareto_front,
)
from archsearch.report.figures.gp import (
    GP_MAP_TRACES_PER_PAIR,
    MARGINAL_TRACES_PER_FACTOR,
)
from archsearch.report.figures.view import KIND_LABELS
from archsearch.report.summary import summarize
from archsearch.results.judge import study_facts
from archsearch.search import Ledger, run_trials
from archsearch.search import noise as priors
from archsearch.search.session import plan_for
from archsearch.search.study import ResultCache, trained_trials
from archsearch.train.recipe import train_resolution

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                                        "ignore:Heartbeat of storage:UserWarning")


# ---- fixtures: one searched study per module (the search takes seconds) ---------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    return searched_study(tmp_path_factory)


@pytest.fixture(scope="module")
def view(searched):
    return dashboard.collect(*searched)


@pytest.fixture(scope="module")
def figures(view):
    return dashboard.build_figures(view)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    study, url = mixed_strategy_study(tmp_path_factory.mktemp("mixed"))
    return dashboard.collect(study, url)


def _dominates(q, p) -> bool:
    return q.mean >= p.mean and q.macs <= p.macs and (q.mean > p.mean or q.macs < p.macs)


def _recorded(study) -> dict[tuple, dict[int, list[float]]]:
    """Network -> rung -> the scores stored on its trials, read from the trials themselves."""
    scores: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(trained_trials(study), key=lambda t: t.number):
        key = ArchConfig.from_dict(t.user_attrs["config"]).network_key()
        scores[key][t.user_attrs["rung"]].append(t.user_attrs["accuracy"])
    return scores


# ---- what is read from the study ----------------------------------------------------------------
def test_collect_reads_every_job_with_rung_seed_and_trained_resolution(searched, view):
    study, _ = searched
    trials = {t.number: t for t in trained_trials(study)}
    assert [e.number for e in view.jobs] == sorted(trials)
    assert {e.job.rung for e in view.jobs} == {0, 1} and {e.job.seed for e in view.at(1)} == {0, 1}
    for e in view.jobs:
        attrs = trials[e.number].user_attrs
        assert (e.job.rung, e.job.seed, e.job.role, e.accuracy) == (attrs["rung"], attrs["seed"], attrs["role"],
                                                                    attrs["accuracy"])
        assert (e.params, e.cached) == (attrs["params"], attrs["cached"])
        assert e.trained_resolution == attrs["record"]["resolution"] == attrs["trained_resolution"]
        assert e.trained_resolution == train_resolution(e.job.config, 0.5) != e.job.config.resolution  # half
        assert f"rung {e.job.rung} ({('smoke', 'short')[e.job.rung]})" in view.hover(e)
    # 8 proposals and the 6 width x resolution candidates at smoke; at short the best third of the proposals (3)
    # and the 3 baselines, 2 seeds each; the synthetic evaluator never caches, resumes or fails, GP never skips
    assert view.counts == {"trained": 26, "by_rung": {"smoke": 14, "short": 12}, "cached": 0, "continued": 0,
                           "infeasible_skipped": 0, "failed": 0, "running": 0}
    assert view.decision.rung == 1 and view.decision.reached_top and view.surrogate is not None


def test_page_order_and_figure_types(figures):
    core = ["cube", "gp-maps", "marginals", "pareto", "rungs", "history"]
    assert [key for key in figures if key in core] == core
    # nothing timed in a synthetic study: no latency front; latency vs MACs only from a latency model at hand
    assert set(figures) - set(core) <= {"latency-macs"}
    assert list(figures) == [key for key in dashboard.SECTIONS if key in figures]
    assert all(isinstance(f, go.Figure) for f in figures.values())


# ---- the factor cube: the first rung only --------------------------------------------------------
def test_cube_has_a_slider_step_per_vit_depth(view, figures):
    fig = figures["cube"]
    vits = view.space.range("vit_depth").values()
    assert len(fig.data) == CUBE_TRACES_PER_STEP * len(vits)
    assert [type(t).__name__ for t in fig.data[:3]] == ["Scatter3d", "Isosurface", "Scatter3d"]
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == [f"{v:g}" for v in vits]
    for i, step in enumerate(steps):
        visible = step.args[0]["visible"]
        assert [k for k, v in enumerate(visible) if v] == [3 * i, 3 * i + 1, 3 * i + 2]
        assert "rung 0 (smoke)" in step.args[1]["title.text"]
    active = fig.layout.sliders[0].active
    assert vits[active] == view.winner.config.vit_depth  # opens where the winner is
    assert [t.visible for t in fig.data].count(True) == CUBE_TRACES_PER_STEP
    assert "rung 0 (smoke)" in fig.layout.title.text and "coverage" in fig.layout.title.text


def test_cube_budget_surface_and_feasible_points(view, figures):
    fig = figures["cube"]
    space = view.space
    for i, vit in enumerate(space.range("vit_depth").values()):
        feasible, iso = fig.data[3 * i], fig.data[3 * i + 1]
        assert iso.isomin == iso.isomax == BUDGET
        assert len(iso.value) == np.prod([len(space.range(f).values()) for f in ("resolution", "width", "mv2_depth")])
        expected = {(c.resolution, c.width, c.mv2_depth) for c in space.grid()
                    if c.vit_depth == vit and closed_form_cost(c).macs <= BUDGET}
        assert set(zip(feasible.x, feasible.y, feasible.z)) == expected
        assert max(iso.value) > BUDGET  # the surface exists: both sides of the budget are in the grid


def test_cube_shows_the_first_rung_with_colour_size_hover(view, figures):
    fig = figures["cube"]
    trained = [t for k, t in enumerate(fig.data) if k % CUBE_TRACES_PER_STEP == 2]
    first = view.at(0)
    assert sum(len(t.x) for t in trained) == len(first) < len(view.jobs)  # no later rung on this scale
    by_id = {e.job.config.id: e for e in first}
    for trace in trained:
        for text, colour in zip(trace.text, trace.marker.color):
            point = by_id[re.search(r"<b>(.+?)</b>", text).group(1)]
            assert colour == pytest.approx(100 * point.accuracy)
            for word in ("MACs", "params", "top-1", "rung 0 (smoke)", f"seed {point.job.seed}",
                         f"trained at {point.trained_resolution} px", "width", "ViT"):
                assert word in text
        order = np.argsort([by_id[re.search(r"<b>(.+?)</b>", t).group(1)].macs for t in trace.text])
        assert list(np.asarray(trace.marker.size)[order]) == sorted(trace.marker.size)  # bigger = more MACs
    symbols = [s for t in trained for s in t.marker.symbol]
    candidates = plan_for(view.settings).baselines.width_resolution
    won = sum(c.config.network_key() == view.winner.config.network_key() for c in candidates)  # a baseline may win
    assert symbols.count("diamond") == 1 and symbols.count("square") == len(candidates) - won  # winner, candidates


# ---- GP maps and marginals: the GP at the deciding rung ----------------------------------------
def test_gp_maps_show_the_gp_at_the_deciding_rung_with_its_jobs(view, figures):
    fig = figures["gp-maps"]
    assert len(fig.data) == GP_MAP_TRACES_PER_PAIR * len(JOINT_PAIRS)
    titles = [a.text for a in fig.layout.annotations]
    at_rung = view.at(view.rung)
    for i, (fx, fy) in enumerate(JOINT_PAIRS):
        heat, contour, points, winner = fig.data[4 * i: 4 * i + 4]
        assert [type(t) for t in (heat, contour, points, winner)] == [go.Heatmap, go.Contour, go.Scatter, go.Scatter]
        xs, ys, mean, std = view.surrogate.slice2d(fx, fy, base=view.winner.config)  # the top rung decided
        np.testing.assert_allclose(np.asarray(heat.z), 100 * mean)
        np.testing.assert_allclose(np.asarray(heat.customdata)[..., 0], 100 * std)
        assert "±" in heat.hovertemplate and (np.asarray(heat.customdata)[..., 0] >= 0).all()
        # the budget: a single constraint level at exactly the budget, over closed-form MACs of the same slice
        assert contour.contours.type == "constraint" and contour.contours.value == BUDGET
        j, k = len(xs) // 2, len(ys) // 2
        config = view.winner.config.replace(**{fx: xs[j] if fx != "resolution" else int(xs[j]),
                                               fy: ys[k] if fy != "resolution" else int(ys[k])})
        assert np.asarray(contour.z)[k, j] == closed_form_cost(config).macs
        assert np.asarray(contour.z).min() <= BUDGET < np.asarray(contour.z).max()  # the line crosses the map
        assert len(points.x) == len(at_rung) and all(e.job.config.id in t for e, t in zip(at_rung, points.text))
        assert (winner.x[0], winner.y[0]) == (getattr(view.winner.config, fx), getattr(view.winner.config, fy))
        assert any(fx.split("_")[0] in t.lower() and fy.split("_")[0][:3] in t.lower() for t in titles)
    assert "rung 1 (short)" in fig.layout.title.text


def test_gp_figures_follow_a_lower_deciding_rung(view):
    """A study decided below the top rung (it did not get there) shows the GP and the jobs of that rung."""
    low = dataclasses.replace(view, decision=dataclasses.replace(view.decision, rung=0))
    fig = dashboard.build_figures(low)
    heat, _, points, _ = fig["gp-maps"].data[:4]
    fx, fy = JOINT_PAIRS[0]
    configs = [view.winner.config.replace(**{fx: int(x), fy: float(y)}) for y in heat.y for x in heat.x]
    mean, _ = view.surrogate.predict(configs, rung=0)
    np.testing.assert_allclose(np.asarray(heat.z).ravel(), 100 * mean)
    assert not np.allclose(np.asarray(heat.z).ravel(), 100 * view.surrogate.predict(configs)[0])  # not the top's
    assert len(points.x) == len(view.at(0))
    assert "rung 0 (smoke)" in fig["marginals"].layout.title.text


def test_marginals_band_contains_the_mean_at_the_deciding_rung(view, figures):
    fig = figures["marginals"]
    assert len(fig.data) == MARGINAL_TRACES_PER_FACTOR * len(FACTORS)
    winner = view.winner.config
    for i, factor in enumerate(FACTORS):
        upper, lower, mean, points = fig.data[4 * i: 4 * i + 4]
        assert lower.fill == "tonexty"
        u, lo, m = (np.asarray(t.y) for t in (upper, lower, mean))
        assert (lo <= m).all() and (m <= u).all() and (u - lo > 0).all()
        assert points.mode == "markers" and len(points.x) == len(view.at(view.rung))
        at = np.flatnonzero(np.isclose(np.asarray(mean.x), getattr(winner, factor)))
        if at.size:  # the curve passes through the winner: the GP's mean there, at the deciding rung
            assert m[at[0]] == pytest.approx(100 * view.surrogate.predict([winner], rung=view.rung)[0][0])
    resolutions = np.asarray(fig.data[2].x)
    assert (resolutions % 32 == 0).all() and winner.resolution in resolutions


# ---- Pareto front: the deciding rung's networks --------------------------------------------------
def test_pareto_front_uses_the_deciding_rung_with_the_winner_and_three_baselines(searched, view, figures):
    study, _ = searched
    nets = list(view.networks(view.rung).values())
    front = pareto_front(nets)
    for n in nets:  # the front: the networks no other beats (one of equal twins)
        if n in front:
            assert not any(_dominates(q, n) for q in nets)
        else:
            assert any(_dominates(q, n) or (q.macs, q.mean) == (n.macs, n.mean) for q in front)
    traces = {t.name: t for t in figures["pareto"].data}
    assert len(traces["trained at short"].x) == len(nets)
    recorded = _recorded(study)  # every network's mean over seeds at the deciding rung, from the trials
    assert sorted(traces["trained at short"].y) == pytest.approx(
        sorted(100 * np.mean(rungs[view.rung]) for rungs in recorded.values() if view.rung in rungs))
    assert list(traces["Pareto front"].x) == [n.macs / 1e6 for n in front]
    assert list(traces["Pareto front"].y) == sorted(traces["Pareto front"].y)  # cheaper never better
    assert set(traces[f"MAC budget {BUDGET / 1e6:g}M"].x) == {BUDGET / 1e6}
    assert (traces["winner"].x[0], traces["winner"].y[0]) == pytest.approx(
        (view.winner.macs / 1e6, 100 * view.winner.mean))
    for m in view.decision.margins:
        marker = traces[f"{KIND_LABELS[m.kind]} baseline"]
        assert (marker.x[0], marker.y[0]) == pytest.approx((m.baseline.macs / 1e6, 100 * m.baseline.mean))
        assert len(m.baseline.seeds) == 2


def test_pareto_front_helper_on_hand_made_networks(view):
    a = next(iter(view.networks(0).values()))
    cheap_bad = dataclasses.replace(a, trials=(100,), macs=1, scores=(0.1,))
    dear_good = dataclasses.replace(a, trials=(101,), macs=10, scores=(0.9,))
    dominated = dataclasses.replace(a, trials=(102,), macs=10, scores=(0.5,))
    twin = dataclasses.replace(a, trials=(103,), macs=10, scores=(0.9,))
    assert pareto_front([dominated, dear_good, cheap_bad, twin]) == [cheap_bad, dear_good]
    assert pareto_front([]) == []


# ---- rungs -------------------------------------------------------------------------------------
def test_rungs_figure_has_a_line_per_promoted_network_through_its_recorded_scores(searched, view, figures):
    study, _ = searched
    recorded = _recorded(study)
    promoted = {key for key, rungs in recorded.items() if 1 in rungs}
    lines = [t for t in figures["rungs"].data if t.mode == "lines+markers"]
    assert len(lines) == len(promoted)
    key_of = {e.job.config.id: e.job.config.network_key() for e in view.jobs}
    assert {key_of[re.search(r"<b>(.+?)</b>", line.text[0]).group(1)] for line in lines} == promoted
    for line in lines:
        key = key_of[re.search(r"<b>(.+?)</b>", line.text[0]).group(1)]
        assert list(line.x) == [("smoke", "short")[r] for r in sorted(recorded[key])]
        assert list(line.y) == pytest.approx([100 * np.mean(recorded[key][r]) for r in sorted(recorded[key])])
    names = [t.name for t in lines]
    assert sum(n.startswith("winner") and n.endswith(f": {view.winner.config.id}") for n in names) == 1
    for m in view.decision.margins:
        assert any(n.endswith(f": {m.baseline.config.id}") and KIND_LABELS[m.kind] in n for n in names)
    stopped = [t for t in figures["rungs"].data if t.name.startswith("stopped at smoke")]
    assert sum(len(t.x) for t in stopped) == len(recorded) - len(promoted)
    seeds = next(t for t in figures["rungs"].data if t.name == "single seeds")
    assert sorted(seeds.y) == pytest.approx(sorted(100 * s for r in recorded.values() for s in r.get(1, ())))
    assert list(figures["rungs"].layout.xaxis.categoryarray) == ["smoke", "short"]


# ---- history: the first rung --------------------------------------------------------------------
def test_history_is_monotone_over_the_first_rung(view, figures):
    lines = [t for t in figures["history"].data if t.mode == "lines"]
    assert len(lines) == 1 and "gp" in lines[0].name
    y = list(lines[0].y)
    first = view.at(0)
    assert all(a <= b for a, b in zip(y, y[1:])) and len(y) == len(first)
    assert y[-1] == pytest.approx(100 * max(e.accuracy for e in first if e.macs <= BUDGET))


def test_best_so_far_ignores_over_budget_jobs(view):
    e = view.jobs[0]
    over = dataclasses.replace(e, number=99, macs=BUDGET + 1, accuracy=0.99)
    low = dataclasses.replace(e, number=98, accuracy=0.2)
    assert best_so_far([over, low, e], BUDGET) == [None, 0.2, max(0.2, e.accuracy)]


def test_several_strategies_give_one_history_line_each(mixed):
    figures = dashboard.build_figures(mixed)
    lines = [t for t in figures["history"].data if t.mode == "lines"]
    assert sorted(t.name for t in lines) == ["best feasible (design)", "best feasible (random)"]
    for line in lines:
        y = [v for v in line.y if v is not None]
        assert y and all(a <= b for a, b in zip(y, y[1:]))
    assert {t.name for t in figures["pareto"].data} >= {"trained at short (design)", "trained at short (random)"}
    assert "design, random" in dashboard.header_html(mixed)


# ---- the header ---------------------------------------------------------------------------------
def _row(page: str, key: str) -> str:
    return re.search(rf'<tr id="row-{key}">(.*?)</tr>', page, re.DOTALL).group(1)


def test_header_shows_settings_decision_winner_baselines_and_noise(searched, view):
    header = dashboard.header_html(view)
    summary = summarize(*searched)
    s = summary["settings"]
    assert html.escape(s["ladder"]) in _row(header, "rungs")
    assert f"promote {s['promote']:.2g}" in header and f"{s['top_seeds']} seeds per job at the top" in header
    assert "rung 1 (short), the top rung" in _row(header, "decided")
    w, winner = summary["winner"], _row(header, "winner")
    assert w["trained_resolution"] == view.winner.trained_resolution != w["config"]["resolution"]
    for text in (w["config_id"], f"trained at <b>{w['trained_resolution']} px</b>", f"{100 * w['accuracy']:.2f} %",
                 *(f"{100 * x:.2f}" for x in w["scores"]), "seeds 0, 1"):
        assert text in winner
    assert [b["kind"] for b in summary["baselines"]] == ["width", "width_resolution", "compound"]
    for b in summary["baselines"]:
        row = _row(header, f"baseline-{b['kind']}")
        if b["config_id"] == w["config_id"]:  # the winner is this baseline: no margin to show
            assert html.escape(b["words"]) in row and "itself" in row and b["kind"] in w["baseline_of"]
            continue
        lo, hi = b["margin_interval"]
        for text in (b["config_id"], f"trained at <b>{b['trained_resolution']} px</b>", html.escape(b["words"]),
                     f"[{100 * lo:+.2f}, {100 * hi:+.2f}]", f"{100 * b['margin']:+.2f} points"):
            assert text in row, (b["kind"], text)
        assert ("not-significant" in row) == (not b["significant"]) == ("not significant" in row)
    noise = summary["noise"][1]
    assert f"{100 * noise['std']:.2f} points" in _row(header, "noise")
    assert html.escape(noise["source"]) in _row(header, "noise")


def test_header_says_not_significant_when_every_interval_holds_zero(tmp_path, monkeypatch):
    study, url = build_study(tmp_path, "flat", strategy="design", trials=4, top_seeds=1, evaluator=FlatEvaluator,
                             memory=True)
    unmeasured = dashboard.collect(study, url)  # the top rung's profile (short) was never measured, one seed each
    header = dashboard.header_html(unmeasured)
    for m in unmeasured.decision.margins:
        assert m.significant is None and "significance withheld" in _row(header, f"baseline-{m.kind}")
    monkeypatch.setitem(priors.NOISE_STD, "short", 0.01)
    monkeypatch.setitem(priors.NOISE_DF, "short", 10)
    view = dashboard.collect(study, url)
    assert [m.kind for m in view.decision.margins] == ["width", "width_resolution", "compound"]
    header = dashboard.header_html(view)
    for m in view.decision.margins:
        lo, hi = m.interval
        assert lo < 0 < hi and m.significant is False
        row = _row(header, f"baseline-{m.kind}")
        assert "not significant" in row and 'class="not-significant"' in row
        assert f"[{100 * lo:+.2f}, {100 * hi:+.2f}]" in row and html.escape(m.words) in row


class ContinuingEvaluator(ScaledEvaluator):
    """Reports a job as continued from its checkpoint (as ``TrainingEvaluator`` does) where the same network
    and seed were trained at the rung below."""

    def __call__(self, job) -> dict:
        below = job.rung > 0 and (job.config.id, job.rung - 1, job.seed) in self.calls
        return {**super().__call__(job), "resumed_from_epoch": 2 if below else 0}


def test_header_says_which_rung_continues_which_and_how_many_jobs_did(tmp_path):
    settings = settings_for("design", trials=4, rungs=("smoke-e2", "smoke"), top_seeds=1)
    study, _, plan = open_synthetic(tmp_path, settings, "continued", storage=optuna.storages.InMemoryStorage())
    run_trials(study, settings, plan, ContinuingEvaluator(settings.fidelity_ladder(), noise=0.01),
               ResultCache(tmp_path / "cache"), progress=False, poll_s=0.05, heartbeats=False)
    continued = sum(1 for e in Ledger(study.get_trials()).entries if e.record.get("resumed_from_epoch"))
    assert continued >= 2  # a promoted proposal and the width baseline (a width x resolution candidate)
    row = _row(dashboard.header_html(dashboard.collect(study, ":memory:")), "rungs")
    assert f"smoke continues smoke-e2 from its checkpoint ({continued} jobs continued)" in row


# ---- one GP fit per study -----------------------------------------------------------------------
def test_the_dashboard_fits_no_gp_of_its_own(searched, tmp_path, monkeypatch):
    study, url = searched
    facts = study_facts(study, url)
    summary = summarize(study, url, facts)

    def refuse(*args, **kwargs):
        raise AssertionError("the dashboard fitted a GP")

    monkeypatch.setattr(GPSurrogate, "fit", refuse)
    path = dashboard.write_dashboard(study, url, tmp_path / "given.html", facts=facts, summary=summary)
    page = path.read_text()
    assert f"trained at <b>{facts.decision.winner.trained_resolution} px</b>" in page
    assert "GP posterior mean" in page


def test_without_facts_the_study_is_modelled_once(searched, tmp_path, monkeypatch):
    fits = []
    fit = GPSurrogate.fit
    monkeypatch.setattr(GPSurrogate, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    dashboard.write_dashboard(*searched, tmp_path / "alone.html")
    assert len(fits) == 1


# ---- the page -----------------------------------------------------------------------------------
def test_page_is_self_contained_and_shows_the_trained_resolution(view, figures):
    page = dashboard.render_html(view, figures)
    assert page.count("window.PlotlyConfig") == 1  # plotly.js embedded exactly once
    assert len(page) > 3_000_000  # ... in full
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing fetched: no external script
    for key in figures:
        assert f'id="plot-{key}"' in page
    for text in ("dash", "synthetic", "300M MACs", view.winner.config.id, f"{view.counts['trained']} trained"):
        assert text in page
    assert f"trained at <b>{view.winner.trained_resolution} px</b>" in page
    assert f"trained at {view.winner.trained_resolution} px" in figures["pareto"].to_json()  # in the hovers too
    assert 'id="notice"' not in page


def test_write_dashboard_default_path(searched, tmp_path, monkeypatch):
    monkeypatch.setattr(dashboard, "DASHBOARDS_DIR", tmp_path / "boards")
    path = dashboard.write_dashboard(*searched)
    assert path == tmp_path / "boards" / "dash.html" and path.stat().st_size > 3_000_000
    assert not list(path.parent.glob(".*.tmp"))


def test_dashboards_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_DASHBOARDS", str(tmp_path / "elsewhere"))
    try:
        assert importlib.reload(dashboard).default_path("s") == tmp_path / "elsewhere" / "s.html"
    finally:
        monkeypatch.delenv("ARCHSEARCH_DASHBOARDS")
        importlib.reload(dashboard)
    assert dashboard.DASHBOARDS_DIR.name == "dashboards"


@pytest.mark.parametrize("make, says", [(empty_study, "no trained job"), (single_trial_study, "a single trained job")])
def test_small_studies_say_so_without_gp_plots(make, says, tmp_path):
    study, url = make(tmp_path)
    view = dashboard.collect(study, url)
    assert view.surrogate is None
    figures = dashboard.build_figures(view)
    assert "gp-maps" not in figures and "marginals" not in figures and "cube" in figures
    assert ("history" in figures) == ("rungs" in figures) == (len(view.jobs) == 1)
    assert "pareto" not in figures  # nothing reached the deciding rung
    page = dashboard.render_html(view, figures)
    assert 'id="notice"' in page and says in page
    assert 'id="plot-gp-maps"' not in page and 'id="plot-marginals"' not in page
    for kind in ("width", "width_resolution", "compound"):
        assert "was not trained at rung 1 (short)" in _row(page, f"baseline-{kind}")
    assert dashboard.write_dashboard(study, url, tmp_path / "out.html").is_file()


# ---- the command ----------------------------------------------------------------------------------
def test_cli_writes_the_dashboard(searched, tmp_path, monkeypatch, capsys):
    _, url = searched
    monkeypatch.setattr(dashboard, "DASHBOARDS_DIR", tmp_path / "boards")
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda uri: opened.append(uri) or True)
    assert main(["dashboard", "--study", "dash", "--storage", url, "--open"]) == 0
    path = tmp_path / "boards" / "dash.html"
    assert path.is_file() and capsys.readouterr().out.strip() == f"dashboard: {path}"
    assert opened == [path.resolve().as_uri()]
    out = tmp_path / "custom" / "page.html"
    assert main(["dashboard", "--study", "dash", "--storage", url, "--out", str(out)]) == 0
    assert out.is_file()


def _one_line_error(capsys, argv, *expected) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("archsearch dashboard: error: ")
    for text in expected:
        assert text in err
    return err


def test_cli_errors_are_one_line(searched, tmp_path, capsys):
    _, url = searched
    _one_line_error(capsys, ["dashboard", "--study", "nope", "--storage", url], "--study", "nope")
    _one_line_error(capsys, ["dashboard", "--study", "bad name", "--storage", url], "--study")
    _one_line_error(capsys, ["dashboard", "--study", "dash", "--storage", "bogus://x"], "--storage")
    missing = tmp_path / "missing.db"
    _one_line_error(capsys, ["dashboard", "--study", "dash", "--storage", f"sqlite:///{missing}"], "--storage")
    assert not missing.exists()  # a typo does not create an empty database
    optuna.create_study(study_name="foreign", storage=url)
    _one_line_error(capsys, ["dashboard", "--study", "foreign", "--storage", url], "not created by archsearch run")
    _one_line_error(capsys, ["dashboard", "--study", "dash", "--storage", url, "--out", str(tmp_path)], "--out")
