"""The dashboard's figures and page, on studies searched for real with the synthetic evaluator."""

from __future__ import annotations

import importlib
import re

import numpy as np
import optuna
import plotly.graph_objects as go
import pytest

import archsearch.dashboard as dashboard
from archsearch.cli import main
from archsearch.cost import closed_form_cost
from archsearch.figures import (
    CUBE_TRACES_PER_STEP,
    GP_MAP_TRACES_PER_PAIR,
    MARGINAL_TRACES_PER_FACTOR,
    best_so_far,
    build_figures,
    pareto_front,
)
from archsearch.space import FACTORS
from archsearch.study import trained_trials
from archsearch.surrogate import JOINT_PAIRS
from dashboard_fixtures import BUDGET, empty_study, mixed_strategy_study, searched_study, single_trial_study

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
    return build_figures(view)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    study, url = mixed_strategy_study(tmp_path_factory.mktemp("mixed"))
    return dashboard.collect(study, url)


def _dominates(q, p) -> bool:
    return q.accuracy >= p.accuracy and q.macs <= p.macs and (q.accuracy > p.accuracy or q.macs < p.macs)


# ---- what is read from the study ----------------------------------------------------------------
def test_collect_reads_trained_trials_winner_and_baseline(searched, view):
    study, _ = searched
    trials = trained_trials(study)
    assert [p.number for p in view.points] == sorted(t.number for t in trials)
    assert view.counts["trained"] == len(trials) == 11 and view.counts["baseline"] == 1
    best = max((t for t in trials if t.user_attrs["macs"] <= BUDGET), key=lambda t: t.user_attrs["accuracy"])
    assert view.winner.number == best.number
    assert view.baseline.role == "baseline" and view.baseline.config.resolution == 256
    assert view.surrogate is not None and view.budget == BUDGET


def test_page_order_and_figure_types(figures):
    assert list(figures) == ["cube", "gp-maps", "marginals", "pareto", "history"]
    assert all(isinstance(f, go.Figure) for f in figures.values())


# ---- the factor cube ----------------------------------------------------------------------------
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
    active = fig.layout.sliders[0].active
    assert vits[active] == view.winner.config.vit_depth  # opens where the winner is
    assert [t.visible for t in fig.data].count(True) == CUBE_TRACES_PER_STEP


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


def test_cube_trained_points_colour_size_hover(view, figures):
    fig = figures["cube"]
    trained = [t for k, t in enumerate(fig.data) if k % CUBE_TRACES_PER_STEP == 2]
    assert sum(len(t.x) for t in trained) == len(view.points)
    by_id = {p.config_id: p for p in view.points}
    for trace in trained:
        for text, colour, size in zip(trace.text, trace.marker.color, trace.marker.size):
            point = by_id[re.search(r"<b>(.+?)</b>", text).group(1)]
            assert colour == pytest.approx(100 * point.accuracy)
            for word in ("MACs", "params", "top-1", "fidelity synthetic", "width", "ViT"):
                assert word in text
        order = np.argsort([by_id[re.search(r"<b>(.+?)</b>", t).group(1)].macs for t in trace.text])
        assert list(np.asarray(trace.marker.size)[order]) == sorted(trace.marker.size)  # bigger = more MACs
    symbols = [s for t in trained for s in t.marker.symbol]
    assert symbols.count("diamond") == 1 and symbols.count("square") == 1  # winner, baseline


# ---- GP maps ------------------------------------------------------------------------------------
def test_gp_maps_heatmap_budget_contour_and_points(view, figures):
    fig = figures["gp-maps"]
    assert len(fig.data) == GP_MAP_TRACES_PER_PAIR * len(JOINT_PAIRS)
    titles = [a.text for a in fig.layout.annotations]
    for i, (fx, fy) in enumerate(JOINT_PAIRS):
        heat, contour, points, winner = fig.data[4 * i: 4 * i + 4]
        assert [type(t) for t in (heat, contour, points, winner)] == [go.Heatmap, go.Contour, go.Scatter, go.Scatter]
        xs, ys, mean, std = view.surrogate.slice2d(fx, fy, base=view.winner.config)
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
        assert len(points.x) == len(view.points)
        assert all(p.config_id in text for p, text in zip(view.points, points.text))
        assert (winner.x[0], winner.y[0]) == (getattr(view.winner.config, fx), getattr(view.winner.config, fy))
        assert any(fx.split("_")[0] in t.lower() and fy.split("_")[0][:3] in t.lower() for t in titles)


# ---- marginals ----------------------------------------------------------------------------------
def test_marginals_band_contains_mean(figures):
    fig = figures["marginals"]
    assert len(fig.data) == MARGINAL_TRACES_PER_FACTOR * len(FACTORS)
    for i in range(len(FACTORS)):
        upper, lower, mean, points = fig.data[4 * i: 4 * i + 4]
        assert lower.fill == "tonexty"
        u, lo, m = (np.asarray(t.y) for t in (upper, lower, mean))
        assert (lo <= m).all() and (m <= u).all() and (u - lo > 0).all()
        assert points.mode == "markers"


# ---- Pareto front -------------------------------------------------------------------------------
def test_pareto_front_is_non_dominated_and_holds_the_winner(view, figures):
    front = pareto_front(view.points)
    assert view.winner in front
    for p in front:
        assert not any(_dominates(q, p) for q in view.points)
    for p in view.points:
        assert p in front or any(_dominates(q, p) for q in front) or any(
            (q.macs, q.accuracy) == (p.macs, p.accuracy) for q in front)
    fig = figures["pareto"]
    traces = {t.name: t for t in fig.data}
    assert list(traces["Pareto front"].x) == [p.macs / 1e6 for p in front]
    assert list(traces["Pareto front"].x) == sorted(traces["Pareto front"].x)
    assert list(traces["Pareto front"].y) == sorted(traces["Pareto front"].y)  # cheaper never better
    assert set(traces[f"MAC budget {BUDGET / 1e6:g}M"].x) == {BUDGET / 1e6}
    assert (traces["winner"].x[0], traces["winner"].y[0]) == (view.winner.macs / 1e6, 100 * view.winner.accuracy)
    assert traces["uniform-scaling baseline"].x[0] == view.baseline.macs / 1e6
    assert len(traces["trained"].x) == len(view.points)


def test_pareto_front_helper_on_hand_made_points(view):
    a = view.points[0]
    cheap_bad = a.__class__(**{**a.__dict__, "number": 100, "macs": 1, "accuracy": 0.1})
    dear_good = a.__class__(**{**a.__dict__, "number": 101, "macs": 10, "accuracy": 0.9})
    dominated = a.__class__(**{**a.__dict__, "number": 102, "macs": 10, "accuracy": 0.5})
    twin = a.__class__(**{**a.__dict__, "number": 103, "macs": 10, "accuracy": 0.9})
    assert pareto_front([dominated, dear_good, cheap_bad, twin]) == [cheap_bad, dear_good]
    assert pareto_front([]) == []


# ---- history ------------------------------------------------------------------------------------
def test_history_is_monotone_and_ends_at_the_winner(view, figures):
    lines = [t for t in figures["history"].data if t.mode == "lines"]
    assert len(lines) == 1 and "gp" in lines[0].name
    y = list(lines[0].y)
    assert all(a <= b for a, b in zip(y, y[1:]))
    assert y[-1] == pytest.approx(100 * view.winner.accuracy) and len(y) == len(view.points)


def test_best_so_far_ignores_over_budget_trials(view):
    p = view.points[0]
    over = p.__class__(**{**p.__dict__, "number": 99, "macs": BUDGET + 1, "accuracy": 0.99})
    low = p.__class__(**{**p.__dict__, "number": 98, "accuracy": 0.2})
    assert best_so_far([over, low, p], BUDGET) == [None, 0.2, max(0.2, p.accuracy)]


def test_several_strategies_give_one_history_line_each(mixed):
    figures = build_figures(mixed)
    lines = [t for t in figures["history"].data if t.mode == "lines"]
    assert sorted(t.name for t in lines) == ["best feasible (gp)", "best feasible (random)"]
    for line in lines:
        y = [v for v in line.y if v is not None]
        assert y and all(a <= b for a, b in zip(y, y[1:]))
    assert {t.name for t in figures["pareto"].data} >= {"trained (gp)", "trained (random)"}
    assert "gp, random" in dashboard.header_html(mixed)


# ---- the page -----------------------------------------------------------------------------------
def test_page_is_self_contained_with_header(view, figures):
    page = dashboard.render_html(view, figures)
    assert page.count("window.PlotlyConfig") == 1  # plotly.js embedded exactly once
    assert len(page) > 3_000_000  # ... in full
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing fetched: no external script
    for key in figures:
        assert f'id="plot-{key}"' in page
    header = dashboard.header_html(view)
    for text in ("dash", "synthetic", "300M MACs", view.winner.config_id, view.baseline.config_id, "11 trained",
                 "Winner − baseline"):
        assert text in header
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


@pytest.mark.parametrize("make, says", [(empty_study, "no trained trial"),
                                        (single_trial_study, "a single trained trial")])
def test_small_studies_say_so_without_gp_plots(make, says, tmp_path):
    study, url = make(tmp_path)
    view = dashboard.collect(study, url)
    assert view.surrogate is None
    figures = build_figures(view)
    assert "gp-maps" not in figures and "marginals" not in figures and "cube" in figures
    assert ("pareto" in figures) == (len(view.points) == 1)
    page = dashboard.render_html(view, figures)
    assert 'id="notice"' in page and says in page
    assert 'id="plot-gp-maps"' not in page and 'id="plot-marginals"' not in page
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
