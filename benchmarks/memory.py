"""Is a training job's memory estimate (``archsearch.train.memory``) within 25 % of its measured peak?

Run: python benchmarks/memory.py [--data PATH] [--steps 8] [--repeat 2] [--threads 1] [--fit] [--only N ...]
     python benchmarks/memory.py --store-side 160

Each case trains one network for ``--steps`` steps of one epoch on a per-class subset of the data (every
image is read, so the whole store counts) and is scored on a few validation images, in a fresh process
(``train.peak.measure_peak``), ``--repeat`` times: the same job's peak varies by up to 15 % from one process
to the next (how the allocator's heap fragments). The error is the estimate's against each measurement. ``--fit`` also prints
the least-squares baseline and activation factor (what ``BASELINE_BYTES`` and ``ACTIVATION_FACTOR`` are).
Stores are decoded first, outside the measured process. Prints a Markdown table for benchmarks/RESULTS.md.

``--store-side N`` checks the estimate's store part at full scale instead: every image of both splits at N px
(decoded into the cache first if need be) read once through ``iterate_batches``, against the growth of this
process's resident set: the memory-mapped pages a training epoch reads stay resident.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from archsearch.model.config import ArchConfig
from archsearch.train import memory
from archsearch.train.data import iterate_batches, load_dataset, resolve_data_root
from archsearch.train.peak import measure_peak
from archsearch.train.recipe import get_profile, train_resolution

V2 = {"family": "v2"}
V1 = {"family": "v1"}
# (config, trained side, batch, micro-batches): both families, sides 128 to 288, batches 16 to 64
CASES = [
    (ArchConfig(**V2, width=0.5), 128, 32, 1),
    (ArchConfig(**V2, width=0.5), 192, 32, 1),
    (ArchConfig(**V2, width=0.5), 256, 16, 1),
    (ArchConfig(**V2, width=1.0), 128, 32, 1),
    (ArchConfig(**V2, resolution=288, width=0.29), 288, 16, 1),
    (ArchConfig(**V2, resolution=288, width=0.29), 288, 32, 4),
    (ArchConfig(**V1, variant="xxs"), 128, 32, 1),
    (ArchConfig(**V1, variant="xxs"), 256, 16, 1),
    (ArchConfig(**V1, variant="xs"), 192, 16, 1),
    (ArchConfig(**V1, variant="s"), 128, 64, 2),
    (ArchConfig(**V2, resolution=288, width=0.29), 288, 64, 1),  # half the proxy batch of issue 22
    (ArchConfig(**V1, variant="xxs"), 256, 64, 1),
]
VAL_PER_CLASS = 2


def job(config: ArchConfig, side: int, batch: int, steps: int, classes: int) -> dict:
    """The profile overrides of one case: smoke's recipe, one epoch of ``steps`` steps at ``side``."""
    return {"epochs": 1, "batch_size": batch, "resolution_scale": side / config.resolution,
            "train_per_class": math.ceil(steps * batch / classes), "val_per_class": VAL_PER_CLASS}


def store_check(root, side: int) -> tuple[int, int]:
    """(the estimate's store part, the resident growth) for every image of both splits at ``side``."""
    ds = load_dataset(root, side, progress=False)
    before = memory.resident_bytes()
    for split in (ds.train, ds.val):
        for _ in iterate_batches(split, 64, shuffle=True, generator=torch.Generator().manual_seed(0)):
            pass
    return 3 * side * side * (len(ds.train) + len(ds.val)), memory.resident_bytes() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--only", type=int, nargs="*", help="case numbers (0-based)")
    parser.add_argument("--store-side", type=int)
    args = parser.parse_args()
    root = resolve_data_root(args.data)
    if args.store_side:
        store, growth = store_check(root, args.store_side)
        print(f"store at {args.store_side} px: {store / 2**20:,.0f} MiB, resident growth {growth / 2**20:,.0f} MiB "
              f"({100 * (store / growth - 1):+.1f} %)")
        return 0
    classes = len([p for p in (root / "train").iterdir() if p.is_dir()])
    rows, fit = [], []
    print("| network | side | batch | micro-batches | estimate | measured peaks | error |")
    print("|---|---|---|---|---|---|---|")
    for number, (config, side, batch, micro) in enumerate(CASES):
        if args.only and number not in args.only:
            continue
        overrides = job(config, side, batch, args.steps, classes)
        prof = get_profile("smoke", **overrides)
        assert train_resolution(config, prof.resolution_scale) == side
        load_dataset(root, side, train_per_class=prof.train_per_class, val_per_class=prof.val_per_class,
                     progress=False)  # decoded here, not in the measured process
        est = memory.estimate(config, prof, micro_batch=math.ceil(batch / micro), data=root)
        peaks = [measure_peak(config, "smoke", root, micro_batches=micro, threads=args.threads, **overrides)["peak"]
                 for _ in range(args.repeat)]
        errors = [est.peak / p - 1 for p in peaks]
        name = config.replace(num_classes=classes).id
        rows.append((name, side, batch, micro, est.peak, peaks, max(errors, key=abs)))
        fit.extend((est, p) for p in peaks)
        shown = ", ".join(f"{p / 2**20:,.0f}" for p in peaks)
        span = " to ".join(f"{100 * e:+.1f} %" for e in sorted({min(errors), max(errors)}))
        print(f"| {name} | {side} | {batch} | {micro} | {est.peak / 2**20:,.0f} MiB | {shown} MiB | {span} |",
              flush=True)
    worst = max(abs(r[-1]) for r in rows)
    print(f"\nworst error {100 * worst:.1f} % over {len(rows)} cases ({args.steps} steps, {args.threads} thread(s))")
    if args.fit:
        # measured - (weights + batch + store) = baseline + factor * saved activations, in relative error
        a = np.array([[1.0 / m, e.activations / memory.ACTIVATION_FACTOR / m] for e, m in fit])
        b = np.array([(m - e.weights - e.batch - e.store) / m for e, m in fit])
        (baseline, factor), *_ = np.linalg.lstsq(a, b, rcond=None)
        print(f"least squares: baseline {baseline / 2**20:.0f} MiB, activation factor {factor:.3f}")
    return 0 if worst <= 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())
