"""The latency figures of benchmarks/RESULTS.md (issue 15), from the latency tables and their models.

    taskset -c 0 python benchmarks/bench_latency.py [--statistic cpu] [--band 270M:300M] [--runs 60]

For each family with a table (``benchmarks/latency_{v1,v2}_ort-cpu_b1_t1.csv``, made by ``archsearch
latency-table``): Kendall's tau (and Spearman's rho) of closed-form MACs against measured latency over the
sample; the kept predictor's held-out errors (from the saved model); and, among the space's distinct networks
whose MACs lie in the band (default 270M..300M: a 300M budget used to within 10 %), the fastest and the
slowest by predicted latency, then both measured again, interleaved, to confirm; and how far two passes over
the table's networks differ (``--passes 2``). Also mobilevit_xxs against
mobilevitv2_050, the pair the issue quotes from timm's table. Prints the figures and writes them to
``benchmarks/latency_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archsearch.latency import load_model, measure_configs  # noqa: E402
from archsearch.latency.table import default_table_path, load_latency_table, model_path  # noqa: E402
from archsearch.model.config import preset  # noqa: E402
from archsearch.model.cost import closed_form_cost, distinct_networks  # noqa: E402
from archsearch.search import parse_macs  # noqa: E402

OUT = Path(__file__).resolve().parent / "latency_results.json"


def confirm(configs, runs: int, statistic: str) -> list[dict]:
    records = measure_configs(configs, "ort-cpu", 1, 1, runs, warmup=5, rounds=6)
    return [{"config_id": c.id, "macs": closed_form_cost(c).macs, "latency_ms": r.latency_ms(statistic),
             "wall_median_ms": r.median_ms, "wall_p25_ms": r.p25_ms, "wall_p75_ms": r.p75_ms,
             "cpu_median_ms": r.cpu_median_ms, "runs": r.runs, "discarded": r.discarded, "preempted": r.preempted}
            for c, r in zip(configs, records)]


def family_figures(family: str, statistic: str, band: tuple[int, int], runs: int) -> dict | None:
    path = default_table_path(family, "ort-cpu", 1, 1)
    if not path.is_file():
        return None
    table = load_latency_table(path, statistic)
    model = load_model(model_path(path))
    wall = load_latency_table(path, "wall").latency_ms
    out = {"table": path.name, "networks": len(table.configs), "statistic": statistic, "model": model.kind,
           "model_statistic": model.settings.get("statistic"),
           "macs_kendall_tau": float(kendalltau(table.macs, table.latency_ms).statistic),
           "macs_spearman_rho": float(spearmanr(table.macs, table.latency_ms).statistic),
           "held_out": model.evaluation["kinds"], "chosen": model.evaluation["chosen"],
           "wall_over_cpu_median": None}
    if statistic == "cpu":
        ratios = sorted(w / c for w, c in zip(wall, table.latency_ms))
        out["wall_over_cpu_median"] = ratios[len(ratios) // 2]
    in_band = [(c, m) for c, m in distinct_networks(model.space) if band[0] <= m <= band[1]]
    predicted = model.predict_ms([c for c, _ in in_band])
    ranked = sorted(zip(predicted, in_band), key=lambda pc: pc[0])
    (fast_p, (fast, _)), (slow_p, (slow, _)) = ranked[0], ranked[-1]
    measured = confirm([fast, slow], runs, statistic)
    out["search_range_macs_kendall_tau"] = _tau_in(table, 100_000_000, 1_000_000_000)
    out["band_macs_kendall_tau"] = _tau_in(table, *band)
    out["repeatability"] = table.repeatability()
    out["band"] = {"min_macs": band[0], "max_macs": band[1], "networks": len(in_band),
                   "fastest": {**measured[0], "predicted_ms": float(fast_p)},
                   "slowest": {**measured[1], "predicted_ms": float(slow_p)}}
    return out


def _tau_in(table, low: int, high: int) -> dict:
    """MACs against latency over the table's networks with MACs in [low, high]."""
    pairs = [(m, t) for m, t in zip(table.macs, table.latency_ms) if low <= m <= high]
    tau = kendalltau(*zip(*pairs)).statistic if len(pairs) > 1 else None
    return {"min_macs": low, "max_macs": high, "networks": len(pairs), "kendall_tau": tau}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statistic", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--band", default="270M:300M", help="MAC band of 'equal MACs' (default 270M:300M)")
    parser.add_argument("--runs", type=int, default=60, help="timed runs of each confirmation (default 60)")
    args = parser.parse_args()
    low, high = (parse_macs(t) for t in args.band.split(":"))
    results = {"machine": {"cpu_cores": sorted(os.sched_getaffinity(0))}, "families": {}}
    for family in ("v2", "v1"):
        figures = family_figures(family, args.statistic, (low, high), args.runs)
        if figures is None:
            continue
        results["families"][family] = figures
        b = figures["band"]
        print(f"{family}: MACs vs latency over {figures['networks']} networks: Kendall tau "
              f"{figures['macs_kendall_tau']:.3f}, Spearman rho {figures['macs_spearman_rho']:.3f}")
        for key in ("search_range_macs_kendall_tau", "band_macs_kendall_tau"):
            r = figures[key]
            print(f"{family}: MACs vs latency over the {r['networks']} networks in {r['min_macs'] / 1e6:g}M.."
                  f"{r['max_macs'] / 1e6:g}M: Kendall tau {r['kendall_tau']}")
        if figures["repeatability"]:
            r = figures["repeatability"]
            print(f"{family}: two passes over {r['networks']} networks differ by {r['median_ape']:.2f} % (median), "
                  f"{r['p90_ape']:.2f} % (p90)")
        held = figures["held_out"][figures["chosen"]]["held_out"]
        print(f"{family}: kept {figures['chosen']}: held-out median APE {held['median_ape']:.2f} %, p90 "
              f"{held['p90_ape']:.2f} %, tau {held['kendall_tau']:.3f}")
        for name in ("fastest", "slowest"):
            r = b[name]
            print(f"{family}: {name} of {b['networks']} networks in {low / 1e6:g}M..{high / 1e6:g}M: {r['config_id']} "
                  f"({r['macs'] / 1e6:.1f}M) predicted {r['predicted_ms']:.2f} ms, measured {r['latency_ms']:.2f} ms "
                  f"(wall {r['wall_median_ms']:.2f} ms, IQR {r['wall_p25_ms']:.2f}-{r['wall_p75_ms']:.2f})")
    pair = confirm([preset("mobilevit_xxs"), preset("mobilevitv2_050")], args.runs, args.statistic)
    results["timm_pair"] = pair
    for r in pair:
        print(f"{r['config_id']} ({r['macs'] / 1e9:.3f}G MACs): {r['latency_ms']:.2f} ms ({args.statistic}; wall "
              f"{r['wall_median_ms']:.2f} ms, IQR {r['wall_p25_ms']:.2f}-{r['wall_p75_ms']:.2f})")
    OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"written {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
