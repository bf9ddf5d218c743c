"""Does the time planner predict a run? A finished run's planner replayed on its own jobs.

For each study named (RUN/studies/NAME of an ``archsearch run --time-budget``), the planner is rebuilt as the
run built it (the study's settings; the prior at ``--threads``) and re-planned at the end of each job, in the
order the jobs finished, with the clock their timestamps give (a resumed study's pause included). Printed:

* the plan's size (proposals) and the calibrated rate as the jobs finish;
* the deciding rung: what the plan reserved when its first job started, what the cost model then predicted for
  the jobs it actually trained, and what they took;
* the overhead a job shows inside a run: ``wall = rate * units + overhead`` fitted by least squares on relative
  errors over the study's jobs (``planner.OVERHEAD_S`` is the figure the planner assumes).

``--jobs CSV`` appends every job (study, rung, profile, config, MACs, trained side, wall seconds) to a table.

    python benchmarks/planner_replay.py --study RUN/studies/NAME --budget 45m [--jobs benchmarks/run_jobs.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import optuna

from archsearch.search.budget import feasible_grid
from archsearch.search.jobs import Ledger
from archsearch.search.planner import (
    OVERHEAD_S,
    CostModel,
    DataSize,
    TimePlanner,
    _deciding_s,
    _start_epoch,
    parse_duration,
    typical_networks,
)
from archsearch.search.session import plan_for
from archsearch.search.settings import StudySettings
from archsearch.search.study import quiet_optuna

FIELDS = ("study", "trial", "rung", "profile", "config", "macs", "trained_resolution", "wall_s")


def replay(folder: Path, budget_s: float, threads: int, jobs_csv: Path | None) -> None:
    storage = f"sqlite:///{folder.parent / 'archsearch.db'}"
    study = optuna.load_study(study_name=folder.name, storage=storage)
    settings = StudySettings.from_dict(study.user_attrs["settings"])
    plan = plan_for(settings)
    feasible = feasible_grid(settings.factor_space(), max(settings.budgets))
    typical = typical_networks(feasible.configs, feasible.macs, settings.budgets)
    data = DataSize.scan(settings.data)
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_start), key=lambda t: t.number)
    start = min(t.datetime_start for t in trials)
    now = {"s": 0.0}
    planner = TimePlanner(budget_s, plan, typical, data, lambda: now["s"], CostModel.prior(threads))
    ladder, top = planner.plan.ladder, planner.plan.ladder.top
    print(f"{folder.name}: {len(trials)} trials; the first plan: {planner.first.words}, "
          f"{planner.first.screen_s / 60:.1f} min screening + {planner.first.decide_s / 60:.1f} min deciding")
    finished = sorted((t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    reserved = None
    for k, trial in enumerate(finished):
        now["s"] = (trial.datetime_complete - start).total_seconds()
        ledger = Ledger(t for t in trials if t.datetime_complete and t.datetime_complete <= trial.datetime_complete)
        size = planner.replan(ledger).trials
        first_top = reserved is None and any(e.job.rung == top for e in ledger.entries)
        if first_top:  # the plan's reservation and the model's prediction for the jobs actually trained there
            tops = [e for e in Ledger(trials).entries if e.job.rung == top and e.state == "done"]
            reserved = (_deciding_s(ladder, planner.plan, typical, data, planner.cost),
                        sum(planner.cost.seconds(planner.cost.units(e.job.config, e.macs, ladder.rungs[top], data))
                            for e in tops), sum(float(e.record["wall_s"]) for e in tops), len(tops))
        if k % max(1, len(finished) // 12) == 0 or k == len(finished) - 1 or first_top:
            print(f"  {now['s'] / 60:6.1f} min  job {k + 1:3d} (rung {trial.user_attrs.get('rung')})  plan "
                  f"{size:2d} proposals  rate {planner.cost.seconds_per_unit:.3g} s a unit")
    made = len(Ledger(trials).search_networks(0))
    print(f"  proposals made {made}; the last job ended at {now['s'] / 60:.1f} min of {budget_s / 60:.0f}")
    if reserved:
        print(f"  deciding rung: reserved {reserved[0] / 60:.1f} min; its {reserved[3]} jobs predicted "
              f"{reserved[1] / 60:.1f} min when it began, took {reserved[2] / 60:.1f} min "
              f"(measured / predicted {reserved[2] / reserved[1]:.2f})")
    rows = [(e, planner.cost.units(e.job.config, e.macs, ladder.rungs[e.job.rung], data,
                                   _start_epoch(ladder, e.job.rung)), float(e.record["wall_s"]))
            for e in Ledger(trials).entries if e.state == "done" and e.record.get("wall_s") and not e.cached]
    units, wall = np.array([u for _, u, _ in rows]), np.array([w for _, _, w in rows])
    design = np.stack([units, np.ones_like(units)], axis=1) / wall[:, None]
    (rate, overhead), *_ = np.linalg.lstsq(design, np.ones_like(wall), rcond=None)
    for name, (r, o) in (("fitted", (rate, overhead)), (f"overhead {OVERHEAD_S:g} s", (None, OVERHEAD_S))):
        r = r if r is not None else float(np.sum(wall - o) / units.sum())
        error = np.log(wall / (r * units + o))
        by_rung = ", ".join(f"rung {g} {np.exp(np.median(error[[e.job.rung == g for e, _, _ in rows]])):.2f}"
                            for g in sorted({e.job.rung for e, _, _ in rows}))
        print(f"  {name}: rate {r:.3g} s a unit, overhead {o:+.1f} s; RMS log error {np.sqrt((error ** 2).mean()):.2f}"
              f"; measured / predicted by rung: {by_rung}")
    if jobs_csv is not None:
        new = not jobs_csv.exists()
        with open(jobs_csv, "a", newline="") as handle:
            writer = csv.DictWriter(handle, FIELDS)
            if new:
                writer.writeheader()
            for e, _, w in rows:
                writer.writerow({"study": folder.name, "trial": e.number, "rung": e.job.rung,
                                 "profile": ladder.rungs[e.job.rung].name, "config": json.dumps(e.job.config.to_dict()),
                                 "macs": e.macs, "trained_resolution": e.trained_resolution, "wall_s": w})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", action="append", required=True,
                        help="a finished study's folder (RUN/studies/NAME; its database is RUN/studies/archsearch.db)")
    parser.add_argument("--budget", required=True, help="the run's --time-budget (45m, 2h, ...)")
    parser.add_argument("--threads", type=int, default=2, help="the run's torch threads (default 2)")
    parser.add_argument("--jobs", help="append every job to this CSV")
    args = parser.parse_args()
    quiet_optuna()
    for folder in args.study:
        replay(Path(folder), parse_duration(args.budget), args.threads, Path(args.jobs) if args.jobs else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
