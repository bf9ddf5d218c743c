"""Closed-form cost model vs fvcore: time per config, speed-up, and the time to cost a whole grid.

Run: python benchmarks/bench_cost.py [--configs 20]. Reference: archsearch's own fvcore count (trace of the
generated model at batch 1). Target (issue 2): closed form >= 1000x faster per config; a whole space's grid
costed in well under a second.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from archsearch.model.cost import closed_form_cost, fvcore_cost
from archsearch.model.space import FactorSpace


def per_config_seconds(fn, configs, repeat: int = 1) -> list[float]:
    times = []
    for config in configs:
        start = time.perf_counter()
        for _ in range(repeat):
            fn(config)
        times.append((time.perf_counter() - start) / repeat)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=20, help="random configs per family timed with fvcore")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    for family in ("v2", "v1"):
        space = FactorSpace.default(family)
        configs = space.sample(args.configs, seed=0)
        fvcore_cost(configs[0])  # warm-up: first trace pays one-off costs
        traced = statistics.median(per_config_seconds(fvcore_cost, configs))
        closed = statistics.median(per_config_seconds(closed_form_cost, configs, repeat=200))
        grid = list(space.grid())
        start = time.perf_counter()
        for config in grid:
            closed_form_cost(config)
        grid_s = time.perf_counter() - start
        print(
            f"{family}: fvcore {traced * 1e3:.1f} ms/config, closed form {closed * 1e6:.1f} us/config, "
            f"speed-up {traced / closed:,.0f}x; whole grid ({len(grid)} configs) in {grid_s:.3f} s "
            f"(fvcore would take ~{traced * len(grid) / 60:.0f} min)"
        )


if __name__ == "__main__":
    main()
