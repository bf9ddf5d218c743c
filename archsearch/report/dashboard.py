"""A study as one self-contained HTML dashboard: the 4-D factor cube, GP maps, marginals, Pareto front, rungs
and search history (``figures.cube``, ``figures.gp``, ``figures.rungs``, ``figures.latency``), under a header
with the study's settings, the decision (winner, each baseline with the winner's margin and its 95 % interval,
in words) and the noise of a score.

Everything shown comes from the judge (``results.judge.study_facts``: the study's one GP fit and decision)
and the summary made from it, so the page says what ``summary.json`` says; ``archsearch run`` hands both over,
and without them they are computed here, once. The page embeds plotly.js once, so it works offline and can be
mailed or archived as a single file. It is written to ``dashboards/NAME.html`` under the current directory by
default (``$ARCHSEARCH_DASHBOARDS`` moves the folder), by ``archsearch dashboard`` and at the end of
``archsearch run`` (``write_dashboard``).
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go

from .. import __version__
from ..model.config import ArchConfig
from ..model.space import FACTORS
from ..results.decision import Margin
from ..results.judge import StudyFacts, study_facts
from .figures.cube import cube_figure, history_figure, pareto_figure
from .figures.family import family_figure
from .figures.gp import gp_maps_figure, marginals_figure
from .figures.latency import latency_macs, pareto_latency
from .figures.quantized import quantized_figure
from .figures.rungs import rungs_figure
from .figures.view import KIND_LABELS, StudyView
from .summary import summarize

# Under the current directory, like studies/; $ARCHSEARCH_DASHBOARDS moves it.
DASHBOARDS_DIR = Path(os.environ.get("ARCHSEARCH_DASHBOARDS") or "dashboards").absolute()
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
# Section id -> (heading, what the reader sees), in page order.
SECTIONS = {
    "cube": ("The 4-D factor cube",
             "Resolution, width and MV2 depth in 3-D; move the slider for ViT depth. The jobs of the first rung, "
             "where the search explores (one accuracy scale): colour top-1 there; marker size: MACs; diamond: "
             "winner; square: the width × resolution baseline candidates. Faint dots are the grid points within "
             "the MAC budget, the red surface is the budget itself (closed-form cost model)."),
    "gp-maps": ("GP maps of the joint factors",
                "The study's Gaussian process (one fit over every rung and seed) predicting top-1 at the deciding "
                "rung, over two factors at a time, the other two held at the winner's values; hover for the "
                "uncertainty. The white line is the MAC budget (the shaded side is over it); white dots are the "
                "jobs trained at the deciding rung, projected onto the plane."),
    "marginals": ("Marginals",
                  "The GP at the deciding rung along one factor at a time (the others at the winner's values): "
                  "mean and 95 % band; dots are the jobs trained at that rung, projected onto the axis."),
    "pareto": ("Accuracy vs MACs",
               "The networks trained at the deciding rung, each at its mean over seeds; the black line is the "
               "Pareto front (no network is both cheaper and more accurate), the dashed line the budget. Star: "
               "winner; diamond, square, triangle: the width, width × resolution and compound baselines."),
    "pareto-latency": ("Accuracy vs measured latency",
                       "The same networks against MACs (left) and against their measured latency on the study's "
                       "backend (right, batch 1), each with its Pareto front and budget: the front a latency-aware "
                       "search aims at is not the MAC one. Red crosses: measured over the latency budget (never "
                       "the winner)."),
    "latency-macs": ("Latency vs MACs",
                     "Measured networks of the study (solid) and every grid point as the latency model predicts it "
                     "(faint), per family where a model of it is at hand: networks of equal MACs spread "
                     "vertically as far as MACs mislead about time. Dashed: the budgets."),
    "quantized": ("Quantized",
                  "Each network of the deciding rung float (grey) and quantized (red diamond; bar: the drop's paired "
                  "95 % interval over the validation images), and both fronts of accuracy against measured batch-1 "
                  "latency on ONNX Runtime: what a device running the int8 model sees."),
    "family": ("The family",
               "A family study: each budget's winner (star), and the width and compound baselines of each budget "
               "(the width family is MobileViT v2's own: width multipliers at 256 px), at the deciding rung "
               "against MACs; below, how each factor of the winner moves with the budget (dashed: the law fitted "
               "across the budgets, where not declined), and the factor importance at each budget."),
    "rungs": ("Rungs",
              "Each network's top-1 (mean over seeds) at every rung it reached. Rungs train on other images for "
              "other epochs, so compare networks within a rung, and a line's slope with the others'. Orange: "
              "winner; dashed: the baselines; dots at the first rung: networks not promoted; black dashes: the "
              "single seeds where a network ran several."),
    "history": ("Search history",
                "Best feasible accuracy at the first rung after each of its jobs, one line per strategy (later "
                "rungs train only the promoted networks and the baselines: see Rungs)."),
}
BUILDERS = {"cube": cube_figure, "gp-maps": gp_maps_figure, "marginals": marginals_figure, "pareto": pareto_figure,
            "pareto-latency": pareto_latency, "latency-macs": latency_macs, "quantized": quantized_figure,
            "family": family_figure,
            "rungs": rungs_figure,
            "history": history_figure}


def default_path(name: str) -> Path:
    return DASHBOARDS_DIR / f"{name}.html"


def collect(study: optuna.Study, storage_url: str, facts: StudyFacts | None = None,
            summary: dict[str, Any] | None = None) -> StudyView:
    """Everything the dashboard shows: the study's jobs, its facts and its summary (computed once here when
    not given; the GP is fitted by the judge and nowhere else)."""
    facts = facts or study_facts(study, storage_url)
    summary = summary or summarize(study, storage_url, facts)
    return StudyView(name=facts.study, storage=facts.storage, settings=facts.settings, ledger=facts.ledger,
                     counts=summary["counts"], decision=facts.decision, noise=tuple(facts.noise),
                     surrogate=facts.surrogate, importance=summary["importance"],
                     quantized=summary.get("quantized"), verdicts=facts.verdicts, family=summary.get("family"),
                     formula=summary.get("formula"))


def build_figures(view: StudyView) -> dict[str, go.Figure]:
    """Every figure the study has data for, by section id, in page order."""
    figures = {key: build(view) for key, build in BUILDERS.items()}
    return {key: fig for key, fig in figures.items() if fig is not None}


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
.significant { color: #1b5e20; font-weight: 600; }
.not-significant { color: #795548; font-weight: 600; }
.warning { color: #b71c1c; font-weight: 600; }
.rule { display: block; color: #777; font-size: 0.9em; }
"""


def notice(view: StudyView) -> str | None:
    """The message shown instead of the GP plots when the study is too small for them."""
    if not view.jobs:
        return (f"Study {view.name!r} has no trained job yet: nothing to plot but the space and its MAC budget. "
                "Run the search (archsearch run) and build the dashboard again.")
    if view.surrogate is None:
        return (f"Study {view.name!r} has a single trained job: the GP maps and marginals need at least two, "
                "so they are left out. Run more jobs and build the dashboard again.")
    if view.winner is None:
        return (f"Study {view.name!r} has no network of the search trained at "
                f"{view.ladder.rungs[view.rung].name} yet: the GP maps and marginals are slices through the winner, "
                "so they are left out. Run more jobs and build the dashboard again.")
    return None


def _deciding(view: StudyView) -> str:
    return f"rung {view.rung} ({view.ladder.rungs[view.rung].name})"


def _factors(config: ArchConfig) -> str:
    return ", ".join(f"{f} {getattr(config, f):g}" for f in FACTORS)


def _seeds(seeds: tuple[int, ...], scores: tuple[float, ...]) -> str:
    listed = ", ".join(f"{100 * x:.2f}" for x in scores)
    return f"over seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} ({listed})"


def winner_html(view: StudyView) -> str:
    """The winner: config, cost, trained resolution, its scores over seeds at the deciding rung, the GP's mean."""
    w = view.winner
    if w is None:
        return f"none yet: no network of the search was trained at {html.escape(_deciding(view))}"
    params = view.job(w.trials[0]).params
    gp = (f"; GP posterior mean {100 * w.posterior_mean:.2f} % ± {100 * w.posterior_std:.2f}"
          if w.posterior_mean is not None else "")
    trials = ", ".join(f"#{n}" for n in w.trials)
    notes = []
    d = view.decision
    if d.p_best:
        others = ", ".join(f"{n.config.id} {p:.2f}" for n, p in zip(d.ranked[1:], d.p_best[1:]))
        notes.append(f"P(best) {d.p_best[0]:.2f} at {d.fidelity} over posterior draws of seeds and validation images"
                     + ("" if d.clear else ": the most likely best, not a clear one")
                     + (f" (the others: {others})" if others else ""))
    elif view.decision.tied:
        notes.append(f"level with {view.decision.tied} other network(s) by the GP's mean (their scores differ by no "
                     f"more than the noise): ranked among them by its own score, then by cost")
    if d.moved_to:
        notes.append(f"{100 * d.estimate(w):.2f} % moved to {d.moved_to} by {d.fidelity}'s resolution shift: the "
                     "verdict ranks and compares the networks by their moved scores")
    kinds = view.decision.winner_is_baseline
    if kinds:
        notes.append(f"it is the {' and '.join(kinds)} baseline: the search found no better network")
    return (f"<code>{html.escape(w.config.id)}</code> ({_factors(w.config)}); {w.macs / 1e6:.1f}M MACs, "
            f"{params / 1e6:.2f}M params, trained at <b>{w.trained_resolution} px</b>; top-1 "
            f"<b>{100 * w.mean:.2f} %</b> {_seeds(w.seeds, w.scores)}{gp} (trial{'s' if len(w.trials) > 1 else ''} "
            f"{trials})" + "".join(f"<br>{html.escape(n)}" for n in notes))


def margin_html(view: StudyView, m: Margin) -> str:
    """One baseline: the network, its score, the winner's margin over it with the 95 % interval in words,
    the point margins at the other rungs, and the rule that made it."""
    rule = f'<span class="rule">rule: {html.escape(m.rule)}</span>' if m.rule else ""
    b = m.baseline
    if b is None:
        return html.escape(m.words) + rule
    network = (f"<code>{html.escape(b.config.id)}</code> ({_factors(b.config)}); {b.macs / 1e6:.1f}M MACs "
               f"({100 * b.macs / view.budget:.0f} % of the budget), trained at <b>{b.trained_resolution} px</b>; "
               f"top-1 {100 * b.mean:.2f} % {_seeds(b.seeds, b.scores)}")
    if m.significant is None:
        return f"{network}<br>{html.escape(m.words)}{rule}"
    style = "significant" if m.significant else "not-significant"
    other = "; ".join(f"{100 * v:+.2f} points at rung {r} ({view.ladder.rungs[r].name})" for r, v in m.by_rung.items())
    return (f'{network}<br><span class="{style}">{html.escape(m.words)}</span>'
            + (f" (point margin {other})" if other else "") + rule)


def header_html(view: StudyView) -> str:
    s, c, d, ladder = view.settings, view.counts, view.decision, view.ladder
    strategies = sorted({view.strategy(e) for e in view.jobs} | {s.strategy})
    search = sum(e.job.role == "search" for e in view.jobs)
    by_rung = ", ".join(f"{n} at {html.escape(name)}" for name, n in c["by_rung"].items())
    jobs = (f"{c['trained']} trained ({by_rung}; {search} search, {c['trained'] - search} baseline; "
            f"{c['cached']} from cache); {c['infeasible_skipped']} over budget (skipped, not trained), "
            f"{c['failed']} failed, {c['running']} running")
    rungs = (f"<code>{html.escape(ladder.name)}</code>: {s.trials} proposals at {html.escape(ladder.rungs[0].name)}, "
             f"promote {ladder.promote:.2g} of each rung to the next, {ladder.top_seeds} seed"
             f"{'s' if ladder.top_seeds > 1 else ''} per job at the top rung")
    if ladder.deciding:
        rungs += (f"; {html.escape(ladder.rungs[-1].name)} is the deciding rung: the {ladder.finalists} best screened "
                  f"networks by the GP's posterior and the baselines, trained afresh on the same images"
                  + (f", {ladder.repeats} finalist(s) at one seed more (the study's own noise)" if ladder.repeats else ""))
    continued = [f"{ladder.rungs[r + 1].name} continues {ladder.rungs[r].name}" for r in range(ladder.top)
                 if ladder.continues(r)]
    if continued:
        jobs_continued = c.get("continued", 0)
        rungs += (f"; {html.escape(', '.join(continued))} from its checkpoint ({jobs_continued} job"
                  f"{'s' if jobs_continued != 1 else ''} continued)")
    decided = _deciding(view) + (", the top rung" if d.reached_top else
                              ' <span class="warning">— NOT the top rung: the study did not get there</span>')
    noise = view.noise[view.rung]
    rows = [
        ("data", "Data", html.escape(s.data)),
        ("rungs", "Rungs", rungs),
        ("budget", "MAC budget", f"{s.budgets_label} MACs per image (batch 1)"
         + (": a family; the verdict shown is the largest budget's, every budget's is in the summary"
            if s.is_family else "")),
        ("strategy", "Strategy", html.escape(", ".join(strategies)) + f"; seed {s.seed}"),
        ("space", "Space", html.escape(f"{view.space.family}: " + "; ".join(
            f"{f} {view.space.range(f).describe()}" for f in FACTORS))),
        ("jobs", "Jobs", jobs),
        ("decided", "Decided at", decided),
        ("winner", "Winner", winner_html(view)),
        *[(f"baseline-{m.kind}", f"{KIND_LABELS[m.kind]} baseline", margin_html(view, m)) for m in d.margins],
        ("noise", "Noise of one score", f"{100 * noise.std:.2f} points top-1 (seed-to-seed std) at "
                                        f"{html.escape(_deciding(view))}: {html.escape(noise.source)}"
                                        + (f"; fidelity bias {100 * noise.bias_std:.2f} points a network "
                                           f"against {html.escape(noise.bias.against)} "
                                           f"({html.escape(noise.bias.source)}), counted in every margin"
                                           if noise.bias_std else "")
                                        + (f"; bias against {html.escape(noise.bias.against)} unmeasured: no claim "
                                           "beyond this rung" if noise.bias is not None and not noise.bias.known
                                           else "")
                                        + f"; margins' intervals: {html.escape(d.intervals)}"),
    ]
    lengthscales = view.importance.get("gp_lengthscales")
    if lengthscales:
        report = view.surrogate.rung_correlation_report() if view.surrogate is not None else []
        between = "" if not report else "; correlation of the rungs' scores " + ", ".join(
            f"{html.escape(ladder.rungs[c.lower].name)}–{html.escape(ladder.rungs[c.lower + 1].name)} "
            f"{html.escape(c.describe())}" for c in report)
        rows.append(("gp", "GP length scales", ", ".join(f"{f} {lengthscales[f]:.3f}" for f in FACTORS)
                     + " (short = accuracy changes fast along it)" + between))
    importance = importance_row(view.importance)
    if importance:
        rows.append(("importance", "Factor importance", importance))
    table = "\n".join(f'<tr id="row-{key}"><th>{label}</th><td>{value}</td></tr>' for key, label, value in rows)
    return (f'<header><h1>archsearch study <span id="study-name">{html.escape(view.name)}</span></h1>'
            f'<div class="sub">{html.escape(view.storage)}</div></header>\n'
            f'<main>\n<table class="facts" id="facts">\n{table}\n</table>')


def importance_row(importance: dict[str, Any]) -> str | None:
    """The GP's factor ranking (Shapley shares with their 95 % intervals) after its verdict: declined, or why it
    stands (``results.importance``); None without a GP ranking."""
    shapley = importance.get("shapley")
    if not shapley:
        return None
    bounds = (importance.get("intervals_95") or {}).get("shapley")
    shares = ", ".join(f"{f} {shapley[f]:.2f}" + (f" [{bounds[f][0]:.2f}, {bounds[f][1]:.2f}]" if bounds else "")
                       for f in sorted(shapley, key=lambda f: -shapley[f]))
    verdict = importance.get("verdict")
    declined = ' class="warning"' if importance.get("declined") else ""
    return ((f"<span{declined}>{html.escape(verdict)}</span>. " if verdict else "")
            + "Shapley shares of the GP mean" + (" [95 % over posterior draws]" if bounds else "") + ": "
            + html.escape(shares))


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
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>archsearch {__version__}, {stamp}. Self-contained: plotly.js is embedded, "
                 "no network needed.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>archsearch: {html.escape(view.name)}</title>\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")


def write_dashboard(study: optuna.Study, storage_url: str, out: str | Path | None = None, *,
                    facts: StudyFacts | None = None, summary: dict[str, Any] | None = None) -> Path:
    """Write the study's dashboard (default ``dashboards/NAME.html``) atomically; returns its path. ``facts``
    and ``summary`` (as ``run`` has them) are used as given, else computed once."""
    path = Path(out) if out else default_path(study.study_name)
    page = render_html(collect(study, storage_url, facts, summary))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
