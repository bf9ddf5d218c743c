"""``archsearch export``: a study's winner (or one trial) as JSON, ml-cvnets config + model, timm file, ONNX."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..export.family import export_family_cvnets, export_family_timm
from ..export.record import default_out, export, select_trial
from ..results.family import family_members, family_table
from ..results.judge import study_facts
from ..search.study import default_storage, make_storage, open_study, quiet_optuna
from .common import CLIError, add_storage_option, add_study_option, format_count

FORMAT_CHOICES = ("json", "cvnets", "timm", "onnx", "weights", "onnx-int8", "all")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export a study's winner to the trainers: JSON, ml-cvnets, timm, ONNX",
        description="Export the winner of a study (the network the study decided on at its top rung: the best "
        "by the GP's posterior mean, as summary.json names it) or any trained trial --trial N: json (config, cost, "
        "its score with rung, seeds and trained resolution, how it was found, the winner's margin over each "
        "baseline with a 95 % interval; read by 'archsearch train --config FILE'), cvnets (ml-cvnets ImageNet YAML, "
        "a model module for its registry, "
        "README), timm (a ByobNet file), onnx (graph checked against PyTorch, CPU latency with onnxruntime, "
        "recorded in the JSON; with the trained weights where the study kept them), weights (the trained network "
        "of a deciding-rung trial, for 'archsearch quantize --weights'), onnx-int8 (the deployable int8 model 'run "
        "--quantize int8' made of a deciding-rung trial). Example: archsearch export --study demo --format all",
    )
    add_study_option(parser)
    add_storage_option(parser)
    parser.add_argument("--trial", type=int, help="export this trial number instead of the winner")
    parser.add_argument("--format", required=True, choices=FORMAT_CHOICES, help="what to write ('all': every format)")
    parser.add_argument("--out", help="output folder (default: studies/NAME/export/)")
    parser.add_argument("--family", action="store_true",
                        help="a family study (run --mac-budget 75M,150M,...): every budget's winner as one family, "
                        "--format timm (one module registering each member by name with timm, e.g. "
                        "archsearch_v2_300m) or cvnets (one config and model module per member)")
    onnx = parser.add_argument_group("onnx")
    onnx.add_argument("--opset", type=int, default=None, help="ONNX opset, 14..20 (default 17)")
    onnx.add_argument("--runs", type=int, default=None, help="timed onnxruntime runs, batch 1 (default 50)")
    onnx.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 10)")
    onnx.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for name in ("runs", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name}: {value} is not a positive integer")
    if args.warmup is not None and args.warmup < 0:
        raise CLIError(f"--warmup: {args.warmup} is negative")
    if args.opset is not None and not 14 <= args.opset <= 20:
        raise CLIError(f"--opset: {args.opset} is not in 14..20 (scaled_dot_product_attention needs 14)")
    quiet_optuna()
    url = args.storage or default_storage()
    study = open_study(args.study, make_storage(url), None)
    if args.family:
        return _export_family(args, study, url)
    source = select_trial(study, url, args.trial)
    options = {k: getattr(args, k) for k in ("opset", "runs", "warmup", "threads") if getattr(args, k) is not None}
    written = export(source, [args.format], Path(args.out) if args.out else None, **options)
    config, t = source.config, source.trial
    label = "winner" if t["trial"] == source.winner_trial else "trial"
    print(f"{label} {t['trial']} of study {source.study}: {config.id}  {format_count(t['macs'])} MACs  "
          f"{format_count(t['params'])} params  proxy top-1 {100 * t['accuracy']:.2f}% at rung {t['rung']} "
          f"({t['fidelity']}, seed {t['seed']}, trained at {t['trained_resolution']} px)")
    for fmt, paths in written.items():
        for path in paths:
            print(f"{fmt:<7} {path}")
    if "onnx" in written:
        section = json.loads(written["json"][0].read_text())["onnx"]
        print(f"onnx: opset {section['opset']}, max |onnxruntime - torch| {section['max_abs_diff']:.2e}, "
              f"median latency {section['latency_ms_median']:.2f} ms (batch 1, {section['threads']} threads, "
              f"{section['runs']} runs)")
    return 0


def _export_family(args: argparse.Namespace, study, url: str) -> int:
    """Every budget's winner of a family study, as one timm module or one cvnets config per member."""
    if args.format not in ("timm", "cvnets") or args.trial is not None:
        raise CLIError("--family: with --format timm or cvnets (and no --trial)")
    facts = study_facts(study, url)
    if not facts.settings.is_family:
        raise CLIError(f"--family: study {args.study!r} has one budget ({facts.settings.budgets_label}); a family "
                       "comes from run --mac-budget 75M,150M,...")
    members = family_members(facts)
    if not members:
        raise CLIError(f"--family: study {args.study!r} has no winner at any budget yet")
    out = Path(args.out) if args.out else default_out(args.study)
    paths = ([export_family_timm(members, out, args.study)] if args.format == "timm"
             else export_family_cvnets(members, out, args.study))
    print(family_table(members))
    for path in paths:
        print(f"{args.format:<7} {path}")
    return 0
