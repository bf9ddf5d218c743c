"""Which deciding rung? A candidate profile's noise, bias and cost against the calibration truth.

The calibration (``benchmarks/calibrate.py``) trained the default runs' deciding networks at ``decide-full`` with
seeds 10 and 11; ``--truth`` holds those scores (``calibrate_300M_truth.csv``: the rows part 3 of RESULTS
recorded, re-made from its figures when the machine's CSV was lost, and those part 4 added). This trains the same
networks at ``--profile`` with ``--seeds`` (none the truth used), appending each (network, seed) to ``--out``
under a lock as soon as it exists, so that one process a seed can share it and a re-run resumes. Then it prints
the profile's seed noise, its bias against the truth (``noise.rung_bias`` on the pairs, the prior left out),
Kendall's tau of the two orders, the wall time a job, and each network's error variance (noise^2 + bias^2)
times its CPU-seconds: what a deciding rung pays for an interval of a given width.

    python benchmarks/deciding_profile.py --profile decide-full-1ep --seeds 20 --threads 1 --out OUT.csv

With ``--report --profile decide --out calibrate_300M_decide.csv`` (the deciding networks' scores at ``decide``
as the runs printed them) it gives ``decide``'s bias against full side on every calibrated network.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch
from calibrate import pooled_noise, read, resolution_report, sides, train
from scipy import stats

from archsearch.model.config import ArchConfig
from archsearch.search.noise import rung_bias
from archsearch.train.recipe import get_profile

HERE = Path(__file__).resolve().parent
FACTORS = re.compile(r"v2-r([0-9]+)-w([0-9.]+)-m([0-9.]+)-a([0-9.]+)(?:-c[0-9]+)?")


def report(truth: dict[tuple[str, int], dict], rows: dict[tuple[str, int], dict], profile: str) -> None:
    def by_network(table: dict[tuple[str, int], dict]) -> dict[str, list[float]]:
        scores: dict[str, list[float]] = {}
        for (cid, _), row in sorted(table.items()):
            scores.setdefault(cid, []).append(float(row["top1"]))
        return scores

    high, low = by_network(truth), by_network(rows)
    truth_profile = next(iter(truth.values()))["profile"]
    truth_noise, truth_df = pooled_noise(high)
    noise, df = pooled_noise(low)
    print(f"{profile} against {truth_profile} (its own seed noise {100 * truth_noise:.2f} points, {truth_df} df)")
    both = [cid for cid in low if cid in high]
    for cid in both:
        print(f"  {cid:<34} {profile} " + ", ".join(f"{100 * x:.2f}" for x in low[cid])
              + f"   {truth_profile} {100 * np.mean(high[cid]):.2f} ({len(high[cid])} seeds)")
    if not rows:
        print("nothing trained yet")
        return
    walls = [float(r["wall_s"]) for r in rows.values() if r["wall_s"]]
    threads = sorted({r["threads"] for r in rows.values()})
    if walls:
        print(f"wall a job: {min(walls):.0f}-{max(walls):.0f} s, mean {np.mean(walls):.0f} s at "
              f"{'/'.join(threads)} thread(s)")
    print(f"seed noise {100 * noise:.2f} points ({df} df)")
    if len(both) < 3:
        return
    means = [float(np.mean(low[c])) for c in both]
    truths = [float(np.mean(high[c])) for c in both]
    tau = stats.kendalltau(means, truths)
    seed_noise = float(np.hypot((noise if df else 0.0) / np.sqrt(np.mean([len(low[c]) for c in both])),
                                truth_noise / np.sqrt(np.mean([len(high[c]) for c in both]))))
    bias = rung_bias(profile, truth_profile, list(zip(means, truths)), seed_noise, use_prior=False)
    interval = bias.interval()
    print(f"bias against {truth_profile} on {len(both)} networks: {100 * bias.std:.2f} points"
          + (f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else "")
          + f" ({bias.df:g} df); {truth_profile} {100 * np.mean(np.subtract(truths, means)):+.2f} points higher "
          f"on average; Kendall's tau {tau.statistic:.2f} (p = {tau.pvalue:.2f})")
    resolution_report(both, means, truths, seed_noise, sides(truth))
    if df and walls:
        error = (noise**2 + bias.std**2) * 1e4
        print(f"error a score {np.sqrt(error):.2f} points (noise and bias); error variance x CPU-seconds a job "
              f"{error * np.mean(walls) * int(threads[0]):.0f} points^2 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, help="the candidate deciding profile")
    parser.add_argument("--truth", default=str(HERE / "calibrate_300M_truth.csv"),
                        help="CSV of the networks' scores at the truth (default: calibrate_300M_truth.csv)")
    parser.add_argument("--seeds", default="20", help="comma-separated seeds, none the truth used (default 20)")
    parser.add_argument("--networks", help="comma-separated config ids to train (default: all of --truth; an id "
                                           "not in it, v2-rR-wW-mM-aA, is built from its factors)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every training (default 2)")
    parser.add_argument("--data", help="ImageFolder root (default: Imagenette beside the project)")
    parser.add_argument("--out", required=True, help="CSV of every (network, seed) trained, appended")
    parser.add_argument("--report", action="store_true", help="train nothing: read what --out has")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile).name
    truth = read(Path(args.truth))
    configs = {cid: ArchConfig.from_dict(json.loads(row["config"])) for (cid, _), row in truth.items()}
    wanted = args.networks.split(",") if args.networks else list(configs)
    for cid in wanted:
        if cid not in configs:
            factors = FACTORS.fullmatch(cid)
            if factors is None:
                print(f"deciding_profile: {cid!r} is neither a network of {args.truth} nor v2-rR-wW-mM-aA",
                      file=sys.stderr)
                return 2
            configs[cid] = ArchConfig(family="v2", resolution=int(factors[1]), width=float(factors[2]),
                                      mv2_depth=float(factors[3]), vit_depth=float(factors[4]))
    out = Path(args.out)
    if not args.report:
        try:
            train([configs[c] for c in wanted], [int(s) for s in args.seeds.split(",")], profile, args.data, out)
        except KeyboardInterrupt:
            print("interrupted: the finished jobs are in --out; re-run to resume", file=sys.stderr)
            return 130
    report(truth, read(out), profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
