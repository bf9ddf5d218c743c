"""Do a run's intervals hold? Every deciding network of finished runs, trained again at full resolution.

For each study named (a finished ``archsearch run`` with a deciding rung), every network it trained at the
deciding rung is trained again at ``--profile`` (default ``decide-full``: the ``decide`` recipe at full side,
4x its compute) with ``--seeds`` seeds no run used; each (network, seed) once even when several studies share
it, appended to ``--out`` as soon as it exists (re-running resumes; Ctrl-C loses only the job in flight).

Then, per study, every comparison its verdict printed an interval for (any deciding network against any
baseline, simultaneous over all of them) is read again at that fidelity: whether the margin there (the mean
over the seeds) lies inside the run's interval, and whether its sign agrees. Also which network is best
there against the run's P(best), and the bias of the deciding rung against the truth (``search.noise``'s
``rung_bias``: the scatter of the networks' scores about a line, less the seed noise); with ``decide-full``
the two differ in resolution alone, so it is the bias of half resolution.

    python benchmarks/calibrate.py --study RUN/studies/NAME [--study ...] --out benchmarks/calibrate_300M.csv
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import torch

from archsearch.model.config import ArchConfig
from archsearch.results.judge import study_facts
from archsearch.search import noise
from archsearch.search.noise import chi2_interval, resolution_slope, rung_bias
from archsearch.search.study import quiet_optuna
from archsearch.train.loop import evaluate
from archsearch.train.recipe import get_profile

COLUMNS = ("config_id", "config", "seed", "profile", "status", "top1", "val_images", "val_correct",
           "trained_resolution", "threads", "wall_s")


def deciding(summary: dict) -> list[ArchConfig]:
    """Every network a study trained at its deciding rung (its verdict's ``top``), best first."""
    return [ArchConfig.from_dict(n["config"]) for n in summary["top"]]


def printed(summary: dict) -> set[str]:
    """The networks of the margins a study printed: its winner and its baselines."""
    return {summary["winner"]["config_id"]} | {b["config_id"] for b in summary["baselines"] if b.get("config")}


def order(summaries: list[dict]) -> list[ArchConfig]:
    """The networks of every study: those of a printed margin first, then those in most studies, then the
    cheaper (so that a partial calibration checks what the runs said first)."""
    configs = {c.id: c for s in summaries for c in deciding(s)}
    seen = Counter(c.id for s in summaries for c in deciding(s))
    said = set().union(*(printed(s) for s in summaries))
    return sorted(configs.values(), key=lambda c: (c.id not in said, -seen[c.id], c.resolution))


def read(out: Path) -> dict[tuple[str, int], dict]:
    if not out.exists():
        return {}
    with open(out, newline="") as handle:
        return {(r["config_id"], int(r["seed"])): r for r in csv.DictReader(handle) if r["status"] == "ok"}


def append(out: Path, row: dict) -> None:
    """One row, under a lock: a process per seed may share ``out`` (``--seeds 10 --threads 1`` beside
    ``--seeds 11 --threads 1``)."""
    with open(out, "a", newline="") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if handle.tell() == 0:
            writer.writeheader()
        writer.writerow(row)


def train(configs: list[ArchConfig], seeds: list[int], profile: str, data: str | None, out: Path) -> None:
    """Each (network, seed) not in ``out`` yet, every network at one seed before any at the next."""
    rows = read(out)
    for seed in seeds:
        for config in configs:
            if (config.id, seed) in rows:
                continue
            print(f"training {config.id} seed {seed} at {profile} "
                  f"({torch.get_num_threads()} threads)", file=sys.stderr, flush=True)
            record = evaluate(config, profile, data, seed, progress=False)
            append(out, {"config_id": config.id, "config": json.dumps(config.to_dict()), "seed": seed,
                         "profile": profile, "status": record.status, "top1": record.top1,
                         "val_images": record.val_images, "val_correct": record.val_correct,
                         "trained_resolution": record.resolution, "threads": torch.get_num_threads(),
                         "wall_s": round(record.wall_s, 1)})
            print(f"  {record.status}: top-1 {100 * (record.top1 or 0):.2f} % in {record.wall_s:.0f} s",
                  file=sys.stderr, flush=True)
            rows = read(out)


def pooled_noise(scores: dict[str, list[float]]) -> tuple[float, int]:
    """(seed-to-seed std, degrees of freedom) pooled over the networks with more than one score."""
    ss = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in scores.values() if len(v) > 1)
    df = sum(len(v) - 1 for v in scores.values() if len(v) > 1)
    return (float(np.sqrt(ss / df)) if df else float("nan")), df


def pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def sides(rows: dict[tuple[str, int], dict]) -> dict[str, int]:
    """Each network's resolution, from the config its rows record."""
    return {cid: ArchConfig.from_json(row["config"]).resolution for (cid, _), row in rows.items()}


def resolution_report(ids: list[str], means: list[float], truths: list[float], seed_noise: float,
                      resolutions: dict[str, int]) -> None:
    """The gain to the truth on log2 resolution (``noise.resolution_slope``: what ``RESOLUTION_SLOPE`` holds),
    and whether moving the margins by it helps where it was not fitted: for every pair of networks, the slope
    fitted on the others, the pair's margin at the truth against its margin at the profile, plain and moved."""
    px = [resolutions[cid] for cid in ids]
    gains = np.subtract(truths, means)
    slope, se, left, df = resolution_slope(list(gains), px, seed_noise)
    print(f"gain per doubling of resolution {100 * slope:+.2f} points (se {100 * se:.2f}, {df} df); bias left about "
          f"the line {100 * left:.2f} points (the plain bias above counts this shift as scatter)")
    plain, moved, agree_plain, agree_moved = [], [], 0, 0
    for i, j in itertools.combinations(range(len(ids)), 2):
        rest = [k for k in range(len(ids)) if k not in (i, j)]
        fitted = resolution_slope(list(gains[rest]), [px[k] for k in rest], seed_noise)[0]
        there = truths[i] - truths[j]
        margin = means[i] - means[j]
        shifted = margin + fitted * np.log2(px[i] / px[j])
        plain.append(margin - there)
        moved.append(shifted - there)
        agree_plain += np.sign(margin) == np.sign(there)
        agree_moved += np.sign(shifted) == np.sign(there)
    n = len(plain)
    print(f"left-pair-out, {n} pairs: the sign at the truth agrees plain {agree_plain}, moved {agree_moved}; "
          f"root-mean-square error of a margin plain {100 * np.sqrt(np.mean(np.square(plain))):.2f} points, moved "
          f"{100 * np.sqrt(np.mean(np.square(moved))):.2f} (the truth's own noise in a margin "
          f"{100 * np.sqrt(2) * seed_noise:.2f}, both sides)")


def report(folders: list[Path], rows: dict[tuple[str, int], dict], seeds: list[int], profile: str) -> int:
    """Every comparison of every study against the truth in ``rows``; then the deciding rung's noise over the
    studies and its bias against the truth."""
    quiet_optuna()
    truth: dict[str, list[float]] = {}
    for (cid, seed), row in sorted(rows.items(), key=lambda kv: kv[0][1]):
        if seed in seeds:
            truth.setdefault(cid, []).append(float(row["top1"]))
    noise, df_truth = pooled_noise(truth)
    print(f"truth: {profile}, seeds {seeds}; {len(truth)} networks; its own seed noise "
          f"{100 * noise:.2f} points ({df_truth} df)")
    decided: dict[tuple[str, int], float] = {}  # (network, seed) -> its score at the deciding rung, any study
    tally = Counter()
    for folder in folders:
        storage = f"sqlite:///{folder.parent / 'archsearch.db'}"
        decision = study_facts(optuna.load_study(study_name=folder.name, storage=storage), storage).decision
        print(f"\n{folder.name}: decided at {decision.fidelity}, noise {100 * decision.noise.std:.2f} points "
              f"({decision.noise.df:g} df); winner {decision.winner.config.id}")
        for net, p_best in zip(decision.ranked, decision.p_best):
            decided.update({(net.config.id, s): x for s, x in zip(net.seeds, net.scores)})
            there = truth.get(net.config.id)
            print(f"  {net.config.id:<34} P(best) {p_best:.3f}  {decision.fidelity} {100 * net.mean:6.2f} %  "
                  f"{profile} " + (f"{100 * np.mean(there):6.2f} % ({len(there)} seeds)" if there else "not yet"))
        known = [n for n in decision.ranked if n.config.id in truth]
        if len(known) > 1:
            best = max(known, key=lambda n: np.mean(truth[n.config.id]))
            p_of = dict(zip((n.config.id for n in decision.ranked), decision.p_best))
            print(f"  best at {profile} of the {len(known)} retrained: {best.config.id} "
                  f"(the run gave it P(best) {p_of[best.config.id]:.3f})")
        seen: set[frozenset] = set()
        for c in decision.comparisons:  # a baseline against another is listed both ways: counted once
            a, b = c.network.config.id, c.baseline.config.id
            if a not in truth or b not in truth or frozenset((a, b)) in seen:
                continue
            seen.add(frozenset((a, b)))
            there = float(np.mean(truth[a]) - np.mean(truth[b]))
            covered = bool(c.interval[0] <= there <= c.interval[1])
            agrees = bool(np.sign(there) == np.sign(c.margin))
            significant = bool(c.interval[0] > 0 or c.interval[1] < 0)
            printed = a == decision.winner.config.id
            tally.update({k: int(v) for k, v in {
                "n": True, "covered": covered, "sign": agrees, "significant": significant,
                "significant_sign": significant and agrees, "printed": printed,
                "printed_covered": printed and covered, "printed_sign": printed and agrees}.items()})
            print(f"  {a:<34} - {b:<30} {pts(c.margin)} [{pts(c.interval[0])}, {pts(c.interval[1])}]  "
                  f"at {profile} {pts(there)}  {'inside' if covered else 'OUTSIDE'}"
                  f"{'' if agrees else ', sign differs'}")
    if tally["n"]:
        print(f"\ncomparisons: {tally['n']}; the truth inside the run's interval in {tally['covered']} "
              f"({100 * tally['covered'] / tally['n']:.0f} %); the sign agrees in {tally['sign']} "
              f"({100 * tally['sign'] / tally['n']:.0f} %)")
        print(f"  the winners' margins (printed): {tally['printed']}; inside {tally['printed_covered']}; "
              f"sign agrees {tally['printed_sign']}")
        print(f"  significant at the deciding rung: {tally['significant']}; of them the sign agrees "
              f"{tally['significant_sign']}")
    by_network: dict[str, list[float]] = {}
    for (cid, _), x in decided.items():
        by_network.setdefault(cid, []).append(x)
    std, df = pooled_noise(by_network)
    low, high = chi2_interval(std, df) if df else (float("nan"), float("nan"))
    print(f"\nseed noise of the deciding rung over the studies' distinct (network, seed) scores: "
          f"{100 * std:.2f} points [{100 * low:.2f}, {100 * high:.2f}] ({df} df)")
    both = [cid for cid in by_network if cid in truth]
    if len(both) >= 3:
        pairs = [(float(np.mean(by_network[c])), float(np.mean(truth[c]))) for c in both]
        # the scatter about the line less both sides' seed noise (each a mean over its seeds)
        decided_seeds = float(np.mean([len(by_network[c]) for c in both]))
        truth_seeds = float(np.mean([len(truth[c]) for c in both]))
        seed_noise = np.hypot(std / np.sqrt(decided_seeds), (noise if df_truth else 0.0) / np.sqrt(truth_seeds))
        bias = rung_bias("decide", profile, pairs, float(seed_noise), use_prior=False)
        shift = np.mean([t - d for d, t in pairs])
        interval = bias.interval()
        print(f"bias of the deciding rung against {profile} on {len(both)} networks: {100 * bias.std:.2f} points"
              + (f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else "")
              + f" ({bias.df:g} df); {profile} scores {pts(shift)} points higher on average")
        resolution_report(both, [p[0] for p in pairs], [p[1] for p in pairs], float(seed_noise), sides(rows))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", action="append", required=True,
                        help="a finished study's folder (RUN/studies/NAME, with summary.json; its database "
                             "is RUN/studies/archsearch.db)")
    parser.add_argument("--profile", default="decide-full", help="the truth's fidelity (default decide-full)")
    parser.add_argument("--seeds", default="10,11", help="the truth's seeds, none a run used (default 10,11)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every training (default 2)")
    parser.add_argument("--data", help="ImageFolder root (default: Imagenette beside the project)")
    parser.add_argument("--out", required=True, help="CSV of every retrained (network, seed), appended")
    parser.add_argument("--report", action="store_true", help="train nothing: read what --out has")
    parser.add_argument("--as-printed", action="store_true",
                        help="judge the studies with the priors the runs of 12-05 printed their intervals with "
                             "(decide's noise 0.75 points on 2 df, its bias unmeasured) instead of search.noise's")
    args = parser.parse_args()
    if args.as_printed:
        noise.NOISE_STD["decide"], noise.NOISE_DF["decide"] = 0.0075, 2
        noise.FIDELITY_BIAS_STD.pop("decide", None)
    torch.set_num_threads(args.threads)
    get_profile(args.profile)  # a bad name fails here, before any study is read
    seeds = [int(s) for s in args.seeds.split(",")]
    folders = [Path(s) for s in args.study]
    summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
    out = Path(args.out)
    if not args.report:
        try:
            train(order(summaries), seeds, args.profile, args.data, out)
        except KeyboardInterrupt:
            print("interrupted: the finished jobs are in --out; re-run to resume", file=sys.stderr)
            return 130
    return report(folders, read(out), seeds, args.profile)


if __name__ == "__main__":
    sys.exit(main())
