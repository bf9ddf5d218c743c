"""The noise of a profile, and its bias against the reference: train networks of a table at that profile.

Trains each network of ``--networks`` (config ids of ``benchmarks/holds_300M.csv``, which has their reference
scores at seeds 0 and 1) at ``--profile`` with ``--seeds`` seeds, appending every result to ``--out`` as soon as
it exists (re-running resumes). Then prints the pooled seed-to-seed std (``noise.NOISE_STD`` for the profile,
with its degrees of freedom), the bias against the reference (``noise.fidelity_bias``), the wall time a job
and the share of validation images two networks disagree on.

    python benchmarks/profile_noise.py --profile decide --networks ID --networks ID ... --out benchmarks/noise_decide.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from archsearch.model.config import ArchConfig
from archsearch.search.noise import fidelity_bias
from archsearch.train.loop import evaluate
from archsearch.train.recipe import get_profile
from archsearch.train.record import decode_hits

HERE = Path(__file__).resolve().parent
COLUMNS = ("config_id", "config", "seed", "profile", "top1", "val_images", "val_correct", "trained_resolution",
           "wall_s", "threads")


def read(path: Path) -> dict[tuple[str, int], dict]:
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {(r["config_id"], int(r["seed"])): r for r in csv.DictReader(handle)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True)
    parser.add_argument("--networks", action="append", required=True, help="config id of holds_300M.csv")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", action="store_true", help="train nothing; report what --out has")
    args = parser.parse_args()
    reference = read(HERE / "holds_300M.csv")
    configs = {cid: ArchConfig.from_dict(json.loads(reference[(cid, 0)]["config"])) for cid in args.networks}
    profile, out = get_profile(args.profile), Path(args.out)
    for seed in ([] if args.report else range(args.seeds)):
        for cid, config in configs.items():
            if (cid, seed) in read(out):
                continue
            print(f"training {cid} seed {seed} at {profile.name}", file=sys.stderr, flush=True)
            record = evaluate(config, profile, args.data, seed, progress=False)
            new = not out.exists()
            with open(out, "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerow({"config_id": cid, "config": json.dumps(config.to_dict()), "seed": seed,
                                 "profile": profile.name, "top1": record.top1, "val_images": record.val_images,
                                 "val_correct": record.val_correct, "trained_resolution": record.resolution,
                                 "wall_s": record.wall_s, "threads": torch.get_num_threads()})
    rows = read(out)
    scores = {cid: [float(rows[(cid, s)]["top1"]) for s in range(args.seeds) if (cid, s) in rows] for cid in configs}
    ss = sum(sum((x - np.mean(v)) ** 2 for x in v) for v in scores.values() if len(v) > 1)
    df = sum(len(v) - 1 for v in scores.values() if len(v) > 1)
    noise = float(np.sqrt(ss / df)) if df else float("nan")
    print(f"{profile.name}: noise {100 * noise:.2f} points ({df} df); wall a job "
          + ", ".join(f"{float(r['wall_s']):.0f} s" for r in rows.values()))
    for cid, v in scores.items():
        ref = [float(reference[(cid, s)]["top1"]) for s in (0, 1)]
        print(f"  {cid:<34} {profile.name} {', '.join(f'{100 * x:.2f}' for x in v):<16} reference "
              + ", ".join(f"{100 * x:.2f}" for x in ref))
    full = [cid for cid, v in scores.items() if v]
    if len(full) >= 3 and df:
        bias, bias_df = fidelity_bias([float(np.mean(scores[c])) for c in full],
                                      [np.mean([float(reference[(c, s)]["top1"]) for s in (0, 1)]) for c in full],
                                      noise / np.sqrt(np.mean([len(scores[c]) for c in full])))
        print(f"bias against the reference: {100 * bias:.2f} points ({bias_df} df)")
    hits = [decode_hits(r["val_correct"], int(r["val_images"])) for r in rows.values()]
    pairs = [float(np.mean(a != b)) for i, a in enumerate(hits) for b in hits[i + 1:]]
    if pairs:
        print(f"validation images two results disagree on: {np.mean(pairs):.3f} (mean over {len(pairs)} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
