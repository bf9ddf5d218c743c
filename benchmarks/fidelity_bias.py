"""How much of a rung's score does not carry to the reference? (``fidelity.FIDELITY_BIAS_STD``)

For every rung table in ``benchmarks/`` (``table_v2_rung_*_s<seed>.csv``, one seed of a profile on the
12-network sample; one table per profile and seed), the scatter of its scores about their line on the same networks' reference scores
(``table_v2_reference.csv``), less the profile's seed noise (``fidelity.NOISE_STD``): the std of a bias no seed
averages out. Tables of one profile are pooled by degrees of freedom; tables with fewer than 8 shared
networks are left out.

    python benchmarks/fidelity_bias.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from archsearch.bench.tables import load_table
from archsearch.search.noise import FIDELITY_BIAS_STD, NOISE_STD, fidelity_bias

HERE = Path(__file__).resolve().parent
MIN_SHARED = 8


def scores(path: Path) -> tuple[str, int, dict[tuple, float]]:
    """(profile name, seed, top-1 by network) of a table, read as ``bench-table --compare`` reads it: only the
    rows trained at today's exact resolution."""
    table = load_table(path)
    return (table.fidelity["name"], table.seed,
            {c.network_key(): t for c, t in zip(table.configs, table.top1) if t is not None})


def measured() -> dict[str, tuple[float, int, list[str]]]:
    """profile -> (pooled bias std, degrees of freedom, the tables used)."""
    *_, reference = scores(HERE / "table_v2_reference.csv")
    pooled: dict[str, list] = {}
    seen: set[tuple[str, int]] = set()
    for path in sorted(HERE.glob("table_v2_rung_*_s[0-9].csv")):
        profile, seed, rung = scores(path)
        if profile not in NOISE_STD or (profile, seed) in seen:
            continue  # a second table of one profile and seed (e.g. with per-epoch curves) holds the same runs
        seen.add((profile, seed))
        shared = [k for k in reference if k in rung]
        if len(shared) < MIN_SHARED:
            continue
        bias, df = fidelity_bias([rung[c] for c in shared], [reference[c] for c in shared], NOISE_STD[profile])
        pooled.setdefault(profile, []).append((bias, df, path.name))
    return {p: (math.sqrt(sum(b * b * d for b, d, _ in rows) / sum(d for _, d, _ in rows)),
                sum(d for _, d, _ in rows), [n for _, _, n in rows]) for p, rows in pooled.items()}


def main() -> int:
    print(f"{'profile':<10} {'bias (points)':>13} {'df':>4} {'in the code':>12}  tables")
    for profile, (bias, df, tables) in sorted(measured().items()):
        print(f"{profile:<10} {100 * bias:>13.2f} {df:>4} {100 * FIDELITY_BIAS_STD.get(profile, 0):>12.1f}  "
              + ", ".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
