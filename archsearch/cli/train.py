"""``archsearch train``: proxy-train one architecture with a fidelity profile and print its accuracy record."""

from __future__ import annotations

import argparse

from ..training import PROFILES, EvalRecord, evaluate
from .common import CLIError, add_config_options, config_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="proxy-train one architecture on an ImageNet-format dataset and report its accuracy",
        description="Train one MobileViT from scratch with a fidelity profile and report top-1/top-5 "
        "validation accuracy, loss, throughput and wall time. The classifier gets the dataset's class count. "
        "Example: archsearch train --preset mobilevitv2_050 --profile smoke",
    )
    add_config_options(parser)
    parser.add_argument("--profile", choices=PROFILES, default="smoke",
                        help="fidelity: tiny (tests), smoke (about a minute on a CPU, default), "
                        "proxy (all of the data, several epochs; for a GPU), full (long)")
    parser.add_argument("--data", help="ImageFolder root with train/ and val/ (default: $ARCHSEARCH_DATA, else "
                        "Imagenette in ../shared/datasets)")
    parser.add_argument("--classes", help="file of class folder names to keep, one a line (e.g. ImageNet-100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the record as one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 for an "ok" record, 1 for a failed (diverged) run; bad input raises and exits 2."""
    if args.num_classes is not None:
        raise CLIError("--num-classes: train sets it to the dataset's class count; leave it out")
    config = config_from_args(args)
    record = evaluate(config, args.profile, args.data, args.seed, progress=not args.quiet, classes=args.classes)
    if args.json:
        print_json(record.to_dict())
    else:
        print(render(record))
    return 0 if record.status == "ok" else 1


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
        f"  {record.images_seen:,} images seen at {record.train_images_per_s:.0f} img/s; wall time {record.wall_s:.1f} s",
        f"  data {record.dataset}: {record.train_images:,} train / {record.val_images:,} val images"
        + (f", {record.skipped_images} unreadable skipped" if record.skipped_images else ""),
    ])
