"""The rungs figure: every network at every rung it reached, as a line per network.

A score is only comparable with scores of the same rung (each rung trains on other images for other
epochs), so every other figure takes one rung; this one shows how each network's score moved from rung to
rung, so that a promotion whose score collapsed at the next rung stands out against the others, and the
winner and the baselines are drawn in their colours.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ...search.networks import Network
from .view import KIND_COLORS, KIND_LABELS, WINNER_COLOR, StudyView

OTHER_COLOR = "#9e9e9e"


def role_label(view: StudyView, key: tuple) -> str | None:
    """'winner', or the baselines a network is at the deciding rung ('width baseline'), or both
    ('winner, the width baseline'), or None."""
    kinds = view.baseline_kinds.get(key)
    baseline = " and ".join(KIND_LABELS[k] for k in kinds) + " baseline" if kinds else None
    if view.winner is not None and view.winner.config.network_key() == key:
        return f"winner, the {baseline}" if baseline else "winner"
    return baseline


def rungs_figure(view: StudyView) -> go.Figure | None:
    """Every network's mean score at every rung it reached: a line per network that got past the first
    rung (winner and baselines highlighted), the networks that stopped at the first rung as dots, and the
    single seeds where a network has several. None for a one-rung ladder or a study without a trained job."""
    names = [p.name for p in view.ladder.rungs]
    if len(names) < 2 or not view.jobs:
        return None
    per_rung = [view.networks(r) for r in range(len(names))]
    fig = go.Figure()
    stopped: dict[str, list[Network]] = {}
    for key in dict.fromkeys(e.job.config.network_key() for e in view.jobs):  # in the order first trained
        reached = [(r, at[key]) for r, at in enumerate(per_rung) if key in at]
        if reached[-1][0] == 0:
            network = reached[0][1]
            role = view.job(network.trials[0]).job.role
            stopped.setdefault("width × resolution candidates" if role == "baseline" else "search",
                               []).append(network)
        else:
            fig.add_trace(_network_line(view, key, reached, names))
    for group, nets in stopped.items():
        candidates = group != "search"
        fig.add_trace(go.Scatter(
            x=[names[0]] * len(nets), y=[100 * n.mean for n in nets], mode="markers",
            name=f"stopped at {names[0]} ({group})",
            marker=dict(size=8, opacity=0.7, color=KIND_COLORS["width_resolution"] if candidates else OTHER_COLOR,
                        symbol="square" if candidates else "circle"),
            text=[view.network_hover(n) for n in nets], hovertemplate="%{text}<extra></extra>"))
    seeds = [view.job(t) for at in per_rung for n in at.values() if len(n.trials) > 1 for t in n.trials]
    if seeds:
        fig.add_trace(go.Scatter(
            x=[names[e.job.rung] for e in seeds], y=[100 * e.accuracy for e in seeds], mode="markers",
            name="single seeds", marker=dict(size=9, color="black", symbol="line-ew-open", line=dict(width=1.5)),
            text=[view.hover(e) for e in seeds], hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(
        title=dict(text=f"Rungs ({' > '.join(names)}): each network's top-1 at every rung it reached "
                        "(mean over seeds)"),
        xaxis=dict(title=dict(text="rung (training profile)"), type="category", categoryorder="array",
                   categoryarray=names),
        yaxis=dict(title=dict(text="top-1 % at that rung")), height=520)
    return fig


def _network_line(view: StudyView, key: tuple, reached: Sequence[tuple[int, Network]],
                  names: Sequence[str]) -> go.Scatter:
    label = role_label(view, key)
    if label is not None and label.startswith("winner"):
        color, width, dash = WINNER_COLOR, 4, "solid"
    elif label is not None:
        color, width, dash = KIND_COLORS[view.baseline_kinds[key][0]], 3, "dash"
    else:
        color, width, dash = OTHER_COLOR, 1.5, "solid"
    config_id = reached[0][1].config.id
    return go.Scatter(
        x=[names[r] for r, _ in reached], y=[100 * n.mean for _, n in reached], mode="lines+markers",
        name=f"{label}: {config_id}" if label else config_id,
        line=dict(color=color, width=width, dash=dash), marker=dict(size=9 if label else 6, color=color),
        text=[view.network_hover(n) for _, n in reached], hovertemplate="%{text}<extra></extra>")
