"""Tabulate ``archsearch quantize --json`` reports: every network x method x bit width, and each method against
``minmax`` on the same validation images (paired 95 % interval of the difference in top-1).

    archsearch quantize --weights W.pt --json > W.json      # one report per network
    python3 benchmarks/quantize_table.py REPORT.json ... [--csv benchmarks/quantize_decide.csv]

Prints a markdown table for RESULTS.md; ``--csv`` also writes the rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from archsearch.quant.evaluate import paired_drop
from archsearch.train.record import decode_hits


def _versus(hits: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """``hits``' top-1 minus ``baseline``'s in points with its 95 % interval (``paired_drop`` turned round)."""
    gain, (low, high) = paired_drop(baseline, hits)
    return -gain, -high, -low


def rows(report: dict) -> list[dict]:
    n = report["val_images"]
    hits = {(o["method"], o["bits"]): decode_hits(o["val_correct"], n) for o in report["outcomes"]}
    out = []
    for o in report["outcomes"]:
        key = (o["method"], o["bits"])
        versus = _versus(hits[key], hits[("minmax", o["bits"])]) if ("minmax", o["bits"]) in hits else None
        latency = (o.get("latency") or {}).get("latency_ms")
        out.append({
            "network": report["network"], "side": report["resolution"], "float_top1": 100 * report["float_top1"],
            "method": o["method"], "bits": o["bits"], "top1": 100 * o["top1"], "drop": o["drop"],
            "drop_low": o["drop_interval"][0], "drop_high": o["drop_interval"][1], "agreement": o["agreement"],
            "vs_minmax": None if versus is None or o["method"] == "minmax" else versus,
            "size_mb": o["size_bytes"] / 1e6 if o["size_bytes"] else None,
            "float_size_mb": report["float_size_bytes"] / 1e6, "latency_ms": latency,
            "float_latency_ms": (report.get("float_latency") or {}).get("latency_ms"),
            "int8_kernels": (o.get("int8_kernels") or {}).get("int8"),
            "float_kernels": (o.get("int8_kernels") or {}).get("float"), "note": o["note"],
            "weight_bits_int8": report.get("int8_weight_bits")})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--csv")
    args = parser.parse_args(argv)
    table = [r for path in args.reports for r in rows(json.loads(Path(path).read_text()))]
    print("| network (side) | float | method | bits | top-1 | drop [95 %] | vs minmax [95 %] | agrees | size MB | "
          "latency ms (float) | int8 kernels |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        versus = "" if r["vs_minmax"] is None else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*r["vs_minmax"])
        latency = f"{r['latency_ms']:.2f} ({r['float_latency_ms']:.2f})" if r["latency_ms"] else "-"
        kernels = f"{r['int8_kernels']}/{r['int8_kernels'] + r['float_kernels']}" if r["int8_kernels"] is not None \
            else "-"
        size = f"{r['size_mb']:.2f}" if r["size_mb"] else "-"
        print(f"| {r['network']} ({r['side']}) | {r['float_top1']:.2f} | {r['method']} | {r['bits']} | "
              f"{r['top1']:.2f} | {r['drop']:+.2f} [{r['drop_low']:+.2f}, {r['drop_high']:+.2f}] | {versus} | "
              f"{100 * r['agreement']:.1f} % | {size} | {latency} | {kernels} |")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            fields = [k for k in table[0] if k != "vs_minmax"] + ["vs_minmax", "vs_minmax_low", "vs_minmax_high"]
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            for r in table:
                v = r["vs_minmax"] or (None, None, None)
                writer.writerow({**{k: r[k] for k in fields[:-3]}, "vs_minmax": v[0], "vs_minmax_low": v[1],
                                 "vs_minmax_high": v[2]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
