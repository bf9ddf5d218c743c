"""Continue or retrain a promoted network? Which ladder ranks configs better for its CPU.

A rung ladder can promote in two ways. **Retrain** (what ``archsearch run`` does): rung 0 is its own short
profile (``quick``), and a promoted network trains again from scratch at the top (``smoke``). **Continue**:
every config starts the top rung's schedule, is scored part-way (after epoch k of its 4), and a promoted
network carries on from that checkpoint to the end, so its top score is the top rung's own. Both end with
the same top-rung scores; they differ in what the screening score is worth and what it costs:

* retrain: every config pays ``quick`` (2,400 images seen, 0.4 of ``smoke``), a promoted one pays smoke on top;
* continue at epoch k: every config pays k/4 of smoke (and a mid-schedule score: the LR has not decayed),
  a promoted one the remaining (4 - k)/4.

Inputs: the 12-config sample scored at ``quick`` (two seeds), at ``smoke`` with ``--curve`` (its per-epoch
validation scores: seed 0 of each continued screen), at ``smoke-eK`` with other seeds (smoke stopped after
epoch K), and at the reference (``benchmarks/fidelity_study.sh A B C E F G``). Printed: Kendall's tau of
each screening score (every seed, and their mean) against the reference (with a 95 % bootstrap interval over configs) and against the
top rung, its cost in smoke-equivalents a config, and the cost of the default run's ladder either way (14
networks screened, 4 of them promoted, and the compound baseline trained at the top only).

    python benchmarks/continue_or_retrain.py [--screened 14] [--promoted 4] [--top-only 1]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

HERE = Path(__file__).resolve().parent


def scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {r["config_id"]: float(r["top1"]) for r in csv.DictReader(handle) if r["status"] == "ok"}


def curves(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        return {r["config_id"]: json.loads(r["curve"]) for r in csv.DictReader(handle) if r["status"] == "ok"}


def tau(a: dict[str, float], b: dict[str, float], boot: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """Kendall's tau over the configs both hold, and a 95 % percentile bootstrap interval over configs."""
    ids = sorted(set(a) & set(b))
    x, y = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(boot):
        pick = rng.integers(0, len(ids), len(ids))
        if len(set(pick)) > 2:
            t = kendalltau(x[pick], y[pick]).statistic
            if np.isfinite(t):
                draws.append(t)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(kendalltau(x, y).statistic), float(lo), float(hi), len(ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screened", type=int, default=14, help="configs scored at rung 0 (default: the run's 14)")
    parser.add_argument("--promoted", type=int, default=4,
                        help="screened configs trained on at the top (default 4: 2 proposals, 2 baselines)")
    parser.add_argument("--top-only", type=int, default=1,
                        help="configs trained at the top only, a full smoke either way (default 1: compound)")
    args = parser.parse_args()
    reference = scores(HERE / "table_v2_reference.csv")
    smoke = scores(HERE / "table_v2_rung_smoke_s0.csv")
    curve = curves(HERE / "table_v2_rung_smoke_curve_s0.csv")
    epochs = len(next(iter(curve.values())))
    final = {c: v[-1] for c, v in curve.items()}
    same = [c for c in final if c in smoke]
    identical = sum(abs(final[c] - smoke[c]) < 1e-9 for c in same)
    print(f"the curve run's last epoch equals the smoke table's score for {identical} of {len(same)} configs "
          f"(same seed: a continued network ends where a retrained one does)")
    screens = {"quick, retrain": ([scores(HERE / f"table_v2_rung_quick_s{s}.csv") for s in (0, 1)], 0.4)}
    for k in range(1, epochs):
        by_seed = [{c: v[k - 1] for c, v in curve.items()}]  # seed 0: the curve; other seeds: smoke-eK tables
        by_seed += [scores(p) for p in sorted(HERE.glob(f"table_v2_rung_smoke-e{k}_s*.csv"))]
        screens[f"smoke after epoch {k} of {epochs}, continue"] = (by_seed, k / epochs)
    print(f"\n{'screening score':<36} {'seed':>4} {'cost':>5} {'tau vs reference (95 % CI)':>30} {'tau vs smoke':>13} "
          f"{'ladder cost':>12}")
    for name, (seeds, cost) in screens.items():
        promoted_cost = 1.0 if "retrain" in name else 1.0 - cost
        ladder = args.screened * cost + args.promoted * promoted_cost + args.top_only
        taus = []
        for seed, screen in enumerate(seeds):
            t, lo, hi, n = tau(screen, reference)
            taus.append(t)
            print(f"{name:<36} {seed:>4} {cost:>5.2f} {t:>8.3f} [{lo:+.2f}, {hi:+.2f}] (n={n}) "
                  f"{tau(screen, final)[0]:>13.3f} {ladder:>12.2f}")
        if len(seeds) > 1:
            common = sorted(set.intersection(*(set(s) for s in seeds)))
            ss = sum(float(np.sum((np.array([s[c] for s in seeds]) - np.mean([s[c] for s in seeds])) ** 2))
                     for c in common)
            noise = (ss / (len(common) * (len(seeds) - 1))) ** 0.5
            mean_top1 = 100 * np.mean([s[c] for s in seeds for c in common])
            print(f"{'':<36} mean tau over {len(seeds)} seeds {np.mean(taus):.3f}; seed-to-seed std of a score "
                  f"{100 * noise:.1f} points ({len(common)} configs); mean top-1 {mean_top1:.1f} %")
    t, lo, hi, n = tau(final, reference)
    print(f"{'smoke (the top rung itself)':<36} {1.0:>5.2f} {t:>8.3f} [{lo:+.2f}, {hi:+.2f}] (n={n})")
    print(f"\ncost: smoke-equivalents of training (images seen x MACs); ladder cost: {args.screened} screened, "
          f"{args.promoted} of them promoted to the end of smoke, {args.top_only} trained at the top only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
