"""The dashboard's quantization section (``run --quantize``): each deciding network float and quantized, and the
accuracy-latency front of the quantized networks against the float one."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .view import StudyView


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto front of (latency, accuracy) points: no other point is both faster and more accurate."""
    front, best = [], float("-inf")
    for latency, accuracy in sorted(points):
        if accuracy > best:
            front.append((latency, accuracy))
            best = accuracy
    return front


def quantized_figure(view: StudyView) -> go.Figure | None:
    q = view.quantized
    if not q or not q["networks"]:
        return None
    rows = q["networks"]
    labels = [f"{r['config_id']} s{r['seed']}" for r in rows]
    kind = "int8" if q["bits"] == 8 else f"{q['bits']}-bit (simulated)"
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.12,
                        subplot_titles=(f"float vs {q['method']} {kind}", "accuracy vs batch-1 latency"))
    fig.add_trace(go.Scatter(x=labels, y=[100 * r["float_top1"] for r in rows], mode="markers", name="float",
                             marker={"color": "#546e7a", "size": 10}), row=1, col=1)
    fig.add_trace(go.Scatter(
        x=labels, y=[100 * r["quantized_top1"] for r in rows], mode="markers", name=f"quantized ({kind})",
        marker={"color": "#d84315", "size": 10, "symbol": "diamond"},
        error_y={"type": "data", "symmetric": False,  # the drop's paired 95 % interval, about the quantized score
                 "array": [r["drop"] - r["drop_interval"][0] for r in rows],
                 "arrayminus": [r["drop_interval"][1] - r["drop"] for r in rows]}), row=1, col=1)
    timed = [r for r in rows if r["latency_ms"] and r["float_latency_ms"]]
    for name, latency, accuracy, colour in (("float", "float_latency_ms", "float_top1", "#546e7a"),
                                            ("quantized", "latency_ms", "quantized_top1", "#d84315")):
        points = [(r[latency], 100 * r[accuracy]) for r in timed]
        if not points:
            continue
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
                                 text=[f"{r['config_id']} s{r['seed']}" for r in timed], showlegend=False,
                                 marker={"color": colour, "size": 9}, name=name), row=1, col=2)
        front = _front(points)
        fig.add_trace(go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                                 line={"color": colour, "shape": "hv"}, name=f"{name} front"), row=1, col=2)
    fig.update_yaxes(title_text="validation top-1 % (deciding rung)", row=1, col=1)
    fig.update_xaxes(title_text="latency, ms (ONNX Runtime, batch 1, one thread)", row=1, col=2)
    fig.update_layout(template="plotly_white", height=460, margin={"t": 40})
    return fig
