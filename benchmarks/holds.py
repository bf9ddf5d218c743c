"""Does the answer hold? Retrain each study's winner and baselines at a higher fidelity, with seeds.

For every study named (each a finished ``archsearch run``), the winner and the three baselines it was
compared with are trained again at ``--profile`` (default ``reference``: every training image, 4.7x the
images of the CPU ladder's top rung) with ``--seeds`` seeds; each (network, seed) is trained once even when
several studies share it, and every result is appended to ``--out`` as soon as it exists (re-running
resumes). Then, per study, the winner's margin over each baseline at that fidelity, with the 95 % interval
of ``decision.margin`` (training noise from the seeds of every retrained network, pooled, plus the paired
validation error), beside the margin the study itself reported.

    python benchmarks/holds.py --study v2-300M-gp-quick-smoke-s0 --study ... --out benchmarks/holds_300M.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from archsearch.model.config import ArchConfig
from archsearch.model.cost import closed_form_cost
from archsearch.results.decision import margin, words
from archsearch.search.noise import rung_noise
from archsearch.search.networks import Network
from archsearch.search.study import study_dir
from archsearch.train.loop import evaluate
from archsearch.train.recipe import get_profile
from archsearch.train.record import decode_hits

COLUMNS = ("config_id", "config", "seed", "profile", "top1", "val_images", "val_correct", "trained_resolution",
           "wall_s")


def networks(summary: dict) -> list[tuple[str, ArchConfig]]:
    """(role, config) of the winner and each baseline a study reported."""
    out = [("winner", ArchConfig.from_dict(summary["winner"]["config"]))] if summary.get("winner") else []
    out += [(b["kind"], ArchConfig.from_dict(b["config"])) for b in summary["baselines"] if b.get("config")]
    return out


def read(out: Path) -> dict[tuple[str, int], dict]:
    if not out.exists():
        return {}
    with open(out, newline="") as handle:
        return {(r["config_id"], int(r["seed"])): r for r in csv.DictReader(handle)}


def append(out: Path, row: dict) -> None:
    new = not out.exists()
    with open(out, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def scored(config: ArchConfig, rows: dict[tuple[str, int], dict], seeds: list[int], profile: str) -> Network:
    mine = [rows[(config.id, s)] for s in seeds if (config.id, s) in rows]
    hits = {int(r["seed"]): decode_hits(r["val_correct"], int(r["val_images"])) for r in mine}
    return Network(config, closed_form_cost(config).macs, 0, profile, int(mine[0]["trained_resolution"]),
                  tuple(int(r["seed"]) for r in mine), tuple(float(r["top1"]) for r in mine),
                  tuple(range(len(mine))), hits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", action="append", required=True, help="a finished study (its summary.json)")
    parser.add_argument("--profile", default="reference", help="the fidelity to retrain at (default reference)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per network (default 2)")
    parser.add_argument("--data", help="ImageFolder root (default: Imagenette beside the project)")
    parser.add_argument("--out", required=True, help="CSV of every retrained (network, seed), appended")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: the margins from the rows --out already has (seeds missing are left out)")
    parser.add_argument("--only-seed", type=int, help="train only this seed (a second process on another core)")
    parser.add_argument("--reverse", action="store_true", help="train the networks in the reverse order")
    parser.add_argument("--only", action="append", help="train only this config id (repeatable)")
    args = parser.parse_args()
    out, seeds, profile = Path(args.out), list(range(args.seeds)), get_profile(args.profile)
    summaries = {name: json.loads((study_dir(name) / "summary.json").read_text()) for name in args.study}
    todo = {c.id: c for s in summaries.values() for _, c in networks(s)}
    rows = read(out)
    train_seeds = [] if args.report else [args.only_seed] if args.only_seed is not None else seeds
    for seed in train_seeds:  # every network at one seed before any at the next
        for config in (reversed if args.reverse else iter)(list(todo.values())):
            if (config.id, seed) in rows or (args.only and config.id not in args.only):
                continue
            print(f"training {config.id} seed {seed} at {profile.name}", file=sys.stderr, flush=True)
            record = evaluate(config, profile, args.data, seed, progress=False)
            append(out, {"config_id": config.id, "config": json.dumps(config.to_dict()), "seed": seed,
                         "profile": profile.name, "top1": record.top1, "val_images": record.val_images,
                         "val_correct": record.val_correct, "trained_resolution": record.resolution,
                         "wall_s": record.wall_s})
            rows = read(out)
    noise = rung_noise(profile, [[float(rows[(c, s)]["top1"]) for s in seeds if (c, s) in rows] for c in todo])
    print(f"noise of one {profile.name} score: {100 * noise.std:.2f} points ({noise.source})")
    for name, summary in summaries.items():
        found = networks(summary)
        if not any((found[0][1].id, s) in rows for s in seeds):
            print(f"\n{name}: its winner {found[0][1].id} is not retrained yet")
            continue
        winner = scored(found[0][1], rows, seeds, profile.name)
        print(f"\n{name}: winner {winner.config.id} ({winner.macs / 1e6:.1f}M) at {profile.name}: "
              f"{100 * winner.mean:.2f} % ({', '.join(f'{100 * x:.1f}' for x in winner.scores)})")
        reported = {b["kind"]: b for b in summary["baselines"]}
        for kind, config in found[1:]:
            if not any((config.id, s) in rows for s in seeds):
                print(f"  {kind:<17} {config.id:<34} not retrained yet")
                continue
            then = reported[kind]
            if config.id == winner.config.id:
                print(f"  {kind:<17} {config.id:<34} the winner itself (the study's answer was this baseline)")
                continue
            base = scored(config, rows, seeds, profile.name)
            diff, interval, _ = margin(winner, base, noise.std, noise.bias_std)
            then_text = (f"{100 * then['margin']:+.2f} [{100 * then['margin_interval'][0]:+.2f}, "
                         f"{100 * then['margin_interval'][1]:+.2f}]" if then.get("margin") is not None else "-")
            print(f"  {kind:<17} {config.id:<34} {100 * base.mean:6.2f} %  margin {words(kind, diff, interval)}"
                  f"; at the study's top rung: {then_text}")
    return 0 if all(math.isfinite(float(r["top1"])) for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
