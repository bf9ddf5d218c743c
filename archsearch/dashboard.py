"""A study as one self-contained HTML dashboard: the 4-D factor cube, GP maps, marginals, Pareto front and
search history (figures in ``figures``), under a header with the study's settings, counts and winner.

The page embeds plotly.js once, so it works offline and can be mailed or archived as a single file. It is
written to ``dashboards/NAME.html`` under the current directory by default (``$ARCHSEARCH_DASHBOARDS`` moves
the folder), by ``archsearch dashboard`` and at the end of ``archsearch run`` (``write_dashboard``).
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from . import __version__
from .config import ArchConfig
from .figures import StudyView, TrialPoint, build_figures
from .space import FACTORS
from .study import StudySettings, redact, trained_trials
from .summary import fit_surrogate

# Under the current directory, like studies/; $ARCHSEARCH_DASHBOARDS moves it.
DASHBOARDS_DIR = Path(os.environ.get("ARCHSEARCH_DASHBOARDS") or "dashboards").absolute()
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
# Section id -> (heading, what the reader sees), in page order.
SECTIONS = {
    "cube": ("The 4-D factor cube",
             "Resolution, width and MV2 depth in 3-D; move the slider for ViT depth. Colour: top-1 accuracy; "
             "marker size: MACs; diamond: winner; square: uniform-scaling baseline. Faint dots are the grid "
             "points within the MAC budget, the red surface is the budget itself (closed-form cost model)."),
    "gp-maps": ("GP maps of the joint factors",
                "The Gaussian-process surrogate's predicted top-1 over two factors at a time, the other two held "
                "at the winner's values; hover for the uncertainty. The white line is the MAC budget (the shaded "
                "side is over it); white dots are trained configs projected onto the plane."),
    "marginals": ("Marginals",
                  "The GP along one factor at a time (the others at the winner's values): mean and 95 % band; "
                  "dots are trained configs projected onto the axis."),
    "pareto": ("Accuracy vs MACs",
               "Every trained config; the black line is the Pareto front (no config is both cheaper and more "
               "accurate), the dashed line the budget."),
    "history": ("Search history", "Best feasible accuracy after each trained trial, one line per strategy."),
}


def default_path(name: str) -> Path:
    return DASHBOARDS_DIR / f"{name}.html"


def _point(trial: optuna.trial.FrozenTrial, default_strategy: str) -> TrialPoint:
    a = trial.user_attrs
    return TrialPoint(
        number=trial.number, role=a.get("role", "search"), strategy=str(a.get("strategy", default_strategy)),
        config=ArchConfig.from_dict(a["config"]), config_id=a["config_id"], macs=int(a["macs"]),
        params=int(a["params"]), accuracy=float(a["accuracy"]),
        fidelity=str(a.get("fidelity") or a.get("record", {}).get("fidelity", {}).get("name", "?")),
        cached=bool(a.get("cached", False)))


def collect(study: optuna.Study, storage_url: str) -> StudyView:
    """Everything the dashboard shows, read from ``study`` (and the GP fitted to its trained trials)."""
    settings = StudySettings.from_study(study)
    trials = sorted(trained_trials(study), key=lambda t: t.number)
    points = [_point(t, settings.strategy) for t in trials]
    feasible = sorted((p for p in points if p.macs <= settings.mac_budget), key=lambda p: -p.accuracy)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {
        "trained": len(points),
        "search": sum(p.role != "baseline" for p in points),
        "baseline": sum(p.role == "baseline" for p in points),
        "cached": sum(p.cached for p in points),
        "infeasible_skipped": sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
                                  if t.user_attrs.get("infeasible")),
        "failed": states.count(TrialState.FAIL),
        "running": states.count(TrialState.RUNNING),
        "waiting": states.count(TrialState.WAITING),
    }
    return StudyView(
        name=study.study_name, storage=redact(storage_url), settings=settings, points=points, counts=counts,
        winner=feasible[0] if feasible else None,  # as summary.summarize picks it
        baseline=next((p for p in points if p.role == "baseline"), None),
        surrogate=fit_surrogate(study, settings, settings.seed))


# ---- HTML ----------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
header { background: #263238; color: #eceff1; padding: 18px 28px; }
header h1 { margin: 0 0 6px 0; font-size: 1.5em; }
header .sub { color: #b0bec5; font-size: 0.9em; }
main { padding: 8px 28px 40px 28px; }
table.facts { border-collapse: collapse; margin: 14px 0; font-size: 0.92em; }
table.facts th { text-align: left; padding: 3px 18px 3px 0; color: #555; font-weight: 600; vertical-align: top; }
table.facts td { padding: 3px 18px 3px 0; }
code { background: #eceff1; padding: 1px 4px; border-radius: 3px; }
.notice { background: #fff3cd; border: 1px solid #e0c36c; border-radius: 6px; padding: 12px 16px;
          margin: 16px 0; font-size: 1.05em; }
section { background: white; border: 1px solid #e0e0e0; border-radius: 6px; margin: 18px 0; padding: 10px 14px; }
section h2 { margin: 6px 0 2px 0; font-size: 1.2em; }
section p.caption { margin: 2px 0 8px 0; color: #555; font-size: 0.9em; }
footer { color: #888; font-size: 0.8em; padding: 0 28px 20px 28px; }
"""


def notice(view: StudyView) -> str | None:
    """The message shown instead of the GP plots when the study is too small for them."""
    n = len(view.points)
    if n == 0:
        return (f"Study {view.name!r} has no trained trial yet: nothing to plot but the space and its MAC budget. "
                "Run the search (archsearch run) and build the dashboard again.")
    if n == 1:
        return (f"Study {view.name!r} has a single trained trial: the GP maps and marginals need at least two, "
                "so they are left out. Run more trials and build the dashboard again.")
    return None


def _fmt_config(p: TrialPoint | None) -> str:
    if p is None:
        return "none yet"
    factors = ", ".join(f"{f} {getattr(p.config, f):g}" for f in FACTORS)
    return (f"<code>{html.escape(p.config_id)}</code> ({factors}); {p.macs / 1e6:.1f}M MACs, "
            f"{p.params / 1e6:.2f}M params, top-1 {100 * p.accuracy:.2f} % (trial #{p.number})")


def header_html(view: StudyView) -> str:
    s, c = view.settings, view.counts
    strategies = sorted({p.strategy for p in view.points} | {s.strategy})
    fidelities = sorted({p.fidelity for p in view.points})
    fidelity = s.profile + (f" (trials measured at: {', '.join(fidelities)})" if fidelities else "")
    trials = (f"{c['trained']} trained ({c['search']} search of {s.trials} asked, {c['baseline']} baseline, "
              f"{c['cached']} from cache); {c['infeasible_skipped']} over budget (skipped, not trained), "
              f"{c['failed']} failed, {c['running']} running, {c['waiting']} queued")
    rows = [
        ("Data", html.escape(s.data)),
        ("Fidelity", html.escape(fidelity)),
        ("MAC budget", f"{s.mac_budget / 1e6:g}M MACs per image (batch 1)"),
        ("Strategy", html.escape(", ".join(strategies)) + f"; seed {s.seed}"),
        ("Space", html.escape(f"{view.space.family}: " + "; ".join(
            f"{f} {view.space.range(f).describe()}" for f in FACTORS))),
        ("Trials", trials),
        ("Winner", _fmt_config(view.winner)),
        ("Baseline", _fmt_config(view.baseline) + (" — width multiplier alone" if view.baseline else "")),
    ]
    if view.winner and view.baseline:
        gain = 100 * (view.winner.accuracy - view.baseline.accuracy)
        rows.append(("Winner − baseline", f"{gain:+.2f} points top-1"))
    if view.surrogate is not None:
        ls = view.surrogate.lengthscales()
        rows.append(("GP length scales", ", ".join(f"{f} {ls[f]:.3f}" for f in FACTORS)
                     + " (short = accuracy changes fast along it)"))
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<header><h1>archsearch study <span id="study-name">{html.escape(view.name)}</span></h1>'
            f'<div class="sub">{html.escape(view.storage)}</div></header>\n'
            f'<main>\n<table class="facts" id="facts">\n{table}\n</table>')


def render_html(view: StudyView, figures: dict[str, go.Figure] | None = None) -> str:
    """The whole page: plotly.js embedded once (with the first figure), then one section per figure."""
    figures = build_figures(view) if figures is None else figures
    parts = [header_html(view)]
    message = notice(view)
    if message:
        parts.append(f'<div class="notice" id="notice">{html.escape(message)}</div>')
    for i, (key, fig) in enumerate(figures.items()):
        heading, caption = SECTIONS[key]
        plot = fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"plot-{key}", config=PLOTLY_CONFIG)
        parts.append(f'<section id="{key}"><h2>{heading}</h2><p class="caption">{caption}</p>\n{plot}\n</section>')
    parts.append("</main>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>archsearch {__version__}, {stamp}. Self-contained: plotly.js is embedded, "
                 "no network needed.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>archsearch: {html.escape(view.name)}</title>\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")


def write_dashboard(study: optuna.Study, storage_url: str, out: str | Path | None = None) -> Path:
    """Write the study's dashboard (default ``dashboards/NAME.html``) atomically; returns its path."""
    path = Path(out) if out else default_path(study.study_name)
    page = render_html(collect(study, storage_url))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
