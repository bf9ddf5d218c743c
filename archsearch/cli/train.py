"""``archsearch train``: proxy-train one architecture with a training profile and print its accuracy record."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..export.record import load_exported_config
from ..model.config import ArchConfig
from ..train import checkpoint
from ..train.loop import default_device, evaluate
from ..train.memory import plan_micro_batches
from ..train.recipe import PROFILES, Profile, get_profile
from ..train.record import EvalRecord
from ..train.threads import rebalance
from .common import (
    CLIError,
    add_config_options,
    add_data_option,
    add_json_option,
    add_quiet_option,
    add_threads_option,
    config_from_args,
    join_threads,
    print_json,
    sigterm_as_interrupt,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="proxy-train one architecture on an ImageNet-format dataset and report its accuracy",
        description="Train one MobileViT from scratch with a training profile and report top-1/top-5 "
        "validation accuracy, loss, throughput and wall time. The classifier gets the dataset's class count. "
        "Example: archsearch train --preset mobilevitv2_050 --profile smoke",
    )
    add_config_options(parser)
    parser.add_argument("--config", help="architecture from a JSON file: an 'archsearch export' record, a study's "
                        "winner.json or a bare config (instead of --preset/--family)")
    parser.add_argument("--profile", choices=PROFILES, default="smoke",
                        help="training profile: tiny (tests), smoke (about a minute on a CPU, default), "
                        "proxy (all of the data, several epochs; for a GPU), full (long)")
    add_data_option(parser)
    parser.add_argument("--classes", help="file of class folder names to keep, one a line (e.g. ImageNet-100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--epochs", type=int, help="epochs (default: the profile's)")
    parser.add_argument("--out", help="checkpoint folder: checkpoint every epoch, resume from the last checkpoint "
                        "there, write result.json and curve.html (default with --config: train-PROFILE-sSEED "
                        "beside the config file; without --config: no checkpoints)")
    parser.add_argument("--save", metavar="FILE", help="keep the trained network's final weights in FILE, with its "
                        "config, trained side and class list (for 'archsearch quantize --weights FILE')")
    add_threads_option(parser)
    add_quiet_option(parser)
    add_json_option(parser, "the record")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 for an "ok" record, 1 for a failed (diverged) run; bad input raises and exits 2, and so does
    a job that would not fit in memory even in micro-batches of two images (rather than be killed by the OS)."""
    if args.num_classes is not None:
        raise CLIError("--num-classes: train sets it to the dataset's class count; leave it out")
    if args.epochs is not None and args.epochs < 1:
        raise CLIError(f"--epochs: {args.epochs} is not a positive number")
    if args.config:
        if args.preset or args.family:
            raise CLIError("--config cannot be combined with --preset/--family")
        config = load_exported_config(args.config)
        overrides = {k: getattr(args, k) for k in ("resolution", "width", "mv2_depth", "vit_depth")
                     if getattr(args, k) is not None}
        config = config.replace(**overrides)
    else:
        config = config_from_args(args)
    if args.save and (Path(args.save).is_dir() or not Path(args.save).resolve().parent.is_dir()):
        raise CLIError(f"--save: {args.save} is a folder or its folder does not exist; give a file name")
    out = Path(args.out) if args.out else None
    if out is None and args.config:
        out = Path(args.config).resolve().parent / f"train-{args.profile}-s{args.seed}"
    extra = {"epochs": args.epochs} if args.epochs else {}
    threads = join_threads(args)
    micro_batches = fit_in_memory(config, get_profile(args.profile, **extra), args.data, args.classes)
    if out is not None:
        print(f"checkpoints in {out}" + (" (resuming)" if (out / checkpoint.LAST).exists() else ""))
    try:
        with sigterm_as_interrupt():
            record = evaluate(config, args.profile, args.data, args.seed, progress=not args.quiet,
                              classes=args.classes, checkpoint_dir=out, curve=out is not None,
                              on_epoch=lambda _stats: rebalance(), micro_batches=micro_batches,
                              weights=args.save, **extra)
    except KeyboardInterrupt:
        if out is None:
            raise
        print(f"interrupted: the last checkpoint in {out} is kept; run the same command to resume", file=sys.stderr)
        return 130
    if out is not None:
        (out / "result.json").write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True))
        if record.history:
            write_curve(out, record.history, f"{record.config_id}, profile {args.profile}")
    if args.json:
        print_json(record.to_dict())
        print(threads.note(), file=sys.stderr)  # stdout holds the record alone
    else:
        print(render(record))
        if args.save and record.status == "ok":
            print(f"  weights: {args.save}")
        if out is not None:
            print(f"  result: {out / 'result.json'}" + (f"\n  curve:  {out / 'curve.html'}" if record.history else ""))
        print(f"  {threads.note()}")
    return 0 if record.status == "ok" else 1


def fit_in_memory(config: ArchConfig, profile: Profile, data: str | None, classes: str | None) -> int:
    """The micro-batches ``config`` trains in to fit the memory there is (said in one line on stderr when
    more than one); refused with one line when even two images each do not fit. A GPU's memory is not
    priced: there ``evaluate`` reports running out as a failed record."""
    if default_device().type != "cpu":
        return 1
    plan = plan_micro_batches(config, profile, data=data, classes=classes)
    if not plan.fits:
        raise CLIError(plan.note())
    if plan.micro_batches > 1:
        print(plan.note(), file=sys.stderr)
    return plan.micro_batches


def write_curve(folder: Path, history: list[dict], title: str) -> Path:
    """The training curve (train loss and validation top-1 per epoch) as self-contained Plotly HTML."""
    epochs = [h["epoch"] for h in history]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=epochs, y=[h["train_loss"] for h in history], name="train loss", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=epochs, y=[100 * h["val_top1"] for h in history], name="val top-1 %",
                             mode="lines+markers"), secondary_y=True)
    fig.update_layout(title=title, xaxis_title="epoch", template="plotly_white")
    fig.update_yaxes(title_text="train loss (label-smoothed)", secondary_y=False)
    fig.update_yaxes(title_text="validation top-1 %", secondary_y=True)
    path = folder / "curve.html"
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def render(record: EvalRecord) -> str:
    """A readable summary of one record."""
    fid = record.fidelity
    if record.status == "ok":
        result = f"top-1 {record.top1:.1%}   top-5 {record.top5:.1%}   train loss {record.train_loss:.3f}"
    else:
        result = f"FAILED: {record.reason}"
    return "\n".join([
        f"{record.config_id}   profile {fid['name']}, seed {record.seed}, {record.device}",
        f"  {result}",
        f"  {record.epochs}/{fid['epochs']} epochs at {record.resolution} px "
        f"(config {record.config['resolution']} px x {fid['resolution_scale']:g}), batch {fid['batch_size']}",
        f"  {record.images_seen:,} images seen at {record.train_images_per_s:.0f} img/s; "
        f"wall time {record.wall_s:.1f} s",
        f"  data {record.dataset}: {record.train_images:,} train / {record.val_images:,} val images"
        + (f", {record.skipped_images} unreadable skipped" if record.skipped_images else ""),
    ])
