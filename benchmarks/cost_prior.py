"""The planner's prior cost of a job, fitted on jobs of this machine: ``planner.PRIOR_SECONDS_PER_UNIT`` and
``planner.PASS_MACS``.

A job's wall time less ``planner.STANDALONE_OVERHEAD_S`` (each job of these tables ran in its own process) is
modelled as ``rate * (MACs at the trained side + pass_macs) * image passes``: ``pass_macs`` is the work of an
image pass that does not shrink with the side (augmentation, the per-layer cost of small feature maps). Linear
in ``rate`` and ``rate * pass_macs``, it is fitted by least squares on relative errors over the jobs of
``--tables`` (default: the reference and smoke-e2 tables, the reference retrainings of holds_300M.csv, all at
half side, and the full-side deciding candidates of deciding_full_1ep.csv; one torch thread each, two jobs on
two cores). Prints both figures, each table's median ratio of measured to predicted wall time under the fit and
under the rate alone (``pass_macs`` 0).

    python benchmarks/cost_prior.py
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from archsearch.model.config import ArchConfig
from archsearch.model.cost import closed_form_cost
from archsearch.search.planner import STANDALONE_OVERHEAD_S, DataSize, image_passes, trained_macs
from archsearch.train.data import resolve_data_root
from archsearch.train.recipe import get_profile

HERE = Path(__file__).resolve().parent
TABLES = ("table_v2_reference.csv", "table_v2_rung_smoke-e2_s1.csv", "table_v2_rung_smoke-e2_s2.csv",
          "holds_300M.csv", "deciding_full_1ep.csv")


def jobs(path: Path, data: DataSize) -> list[tuple[float, float, float]]:
    """(MACs at the trained side, image passes, wall seconds less the overhead) of each finished job."""
    out = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("status", "ok") != "ok" or not row.get("wall_s"):
                continue
            profile = get_profile(row["profile"])
            config = (ArchConfig.from_dict(json.loads(row["config"])) if row.get("config") else
                      ArchConfig(family=row["family"], resolution=int(row["resolution"]), width=float(row["width"]),
                                 mv2_depth=float(row["mv2_depth"]), vit_depth=float(row["vit_depth"])))
            out.append((trained_macs(config, closed_form_cost(config).macs, profile), image_passes(profile, data),
                        float(row["wall_s"]) - STANDALONE_OVERHEAD_S))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), help="CSVs under benchmarks/")
    parser.add_argument("--data", help="the data set the jobs trained on (default: Imagenette)")
    args = parser.parse_args()
    data = DataSize.scan(resolve_data_root(args.data))
    by_table = {name: jobs(HERE / name, data) for name in args.tables}
    rows = np.array([j for js in by_table.values() for j in js])
    macs, passes, wall = rows.T
    # wall = rate * macs * passes + (rate * pass_macs) * passes, each row weighted by 1 / wall
    design = np.stack([macs * passes, passes], axis=1) / wall[:, None]
    (rate, per_pass), *_ = np.linalg.lstsq(design, np.ones_like(wall), rcond=None)
    alone = float(np.median(wall / (macs * passes)))
    print(f"{len(wall)} jobs: PRIOR_SECONDS_PER_UNIT = {rate:.3g} s, PASS_MACS = {per_pass / rate / 1e6:.0f}M "
          f"(the rate alone: {alone:.3g} s a MAC-image)")
    for name, js in by_table.items():
        m, p, w = np.array(js).T
        fitted = np.median(w / (rate * (m + per_pass / rate) * p))
        print(f"  {name:<32} {len(w):>3} jobs: measured / predicted "
              f"{fitted:.2f} (rate alone {np.median(w / (alone * m * p)):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
