"""``archsearch count``: params and MACs of one architecture, by fvcore and in closed form, per stage."""

from __future__ import annotations

import argparse

from ..model.cost import Cost, count
from .common import (
    add_config_options,
    add_json_option,
    checked_config,
    format_count,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "count",
        help="params and MACs of one architecture (fvcore and closed form), per stage",
        description="Count the parameters and MACs of one MobileViT at batch 1, with fvcore (attention "
        "included) and with the closed-form cost model, and show the per-stage plan. Example: "
        "archsearch count --family v2 --width 0.5 --mv2-depth 1.0 --vit-depth 0.5 --resolution 192",
    )
    add_config_options(parser, space_option=True)
    add_json_option(parser, "the counts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = checked_config(args)
    traced = count(config, method="fvcore")
    closed = count(config, method="closed_form")
    if args.json:
        print_json(
            {
                **traced.to_dict(),
                "macs_closed_form": closed.macs,
                "params_closed_form": closed.params,
                "preset": args.preset,
            }
        )
        return 0
    print(render(traced, closed, args.preset))
    return 0


def render(traced: Cost, closed: Cost, name: str | None = None) -> str:
    config = traced.config
    agree = "equal" if (traced.macs, traced.params) == (closed.macs, closed.params) else "DIFFERENT"
    lines = [
        f"{name + '  ' if name else ''}{config.id}",
        f"params               {format_count(traced.params)}  ({traced.params:,})",
        f"MACs (fvcore)        {format_count(traced.macs)}  ({traced.macs:,})",
        f"MACs (closed form)   {format_count(closed.macs)}  ({closed.macs:,})  {agree}",
        "uncounted ops (no multiply-adds): "
        + (", ".join(f"{op} x{n}" for op, n in sorted(traced.uncounted_ops.items())) or "none"),
        "",
        f"{'stage':<7} {'channels':>8} {'blocks':>6} {'attn dim':>8} {'layers':>6} {'MACs':>10} {'params':>10}",
    ]
    for s in traced.stages:
        attn = (str(s.attn_dim), str(s.attn_layers)) if s.attn_dim else ("-", "-")
        lines.append(
            f"{s.name:<7} {s.channels:>8} {s.blocks:>6} {attn[0]:>8} {attn[1]:>6} "
            f"{format_count(s.macs):>10} {format_count(s.params):>10}"
        )
    return "\n".join(lines)
