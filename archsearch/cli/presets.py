"""``archsearch presets``: the official MobileViTs with their params and MACs."""

from __future__ import annotations

import argparse

from ..model.config import PRESETS
from ..model.cost import count
from .common import add_json_option, format_count, print_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "presets",
        help="list the official architectures with params and MACs",
        description="List the official MobileViT v1/v2 presets (256 px, 1000 classes) with their parameters "
        "and MACs from the closed-form cost model (equal to fvcore's count; --fvcore traces each one too).",
    )
    parser.add_argument("--fvcore", action="store_true", help="also count each preset with fvcore (slower)")
    add_json_option(parser, "the presets")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name, config in PRESETS.items():
        cost = count(config, method="closed_form")
        row = {"name": name, "config_id": config.id, "params": cost.params, "macs": cost.macs}
        if args.fvcore:
            row["macs_fvcore"] = count(config, method="fvcore").macs
        rows.append(row)
    if args.json:
        print_json(rows)
        return 0
    header = f"{'preset':<17} {'config':<28} {'params':>9} {'MACs':>9}" + ("  MACs (fvcore)" if args.fvcore else "")
    print(header)
    for r in rows:
        line = f"{r['name']:<17} {r['config_id']:<28} {format_count(r['params']):>9} {format_count(r['macs']):>9}"
        if args.fvcore:
            line += f"  {format_count(r['macs_fvcore']):>13}"
        print(line)
    return 0
